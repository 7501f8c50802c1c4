//! Helpers for the cross-service tests: where the real NATS and ClickHouse servers are, unique
//! namespaces per test, free ports, and running the service binaries as child processes.
//!
//! The servers are the ones `scripts/stack.sh start` runs (or any others named by
//! `CCP_TEST_NATS_URL` / `CCP_TEST_CLICKHOUSE_URL`). A test that cannot reach them fails; it is
//! never skipped.

// Test helpers fail loudly: a panic here is a failed test with its reason.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccp_runtime::config::Settings;
use ccp_schemas::Namespace;

pub mod balancer;
pub mod connect_proxy;
pub mod events;
pub mod fake_anthropic;
pub mod fake_bedrock;
pub mod fake_kms;
pub mod link;
pub mod nats_cluster;
pub mod pki;
pub mod secret_scan;
pub mod system;

/// NATS URL of the test stack.
pub fn nats_url() -> String {
    std::env::var("CCP_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// ClickHouse HTTP URL of the test stack.
pub fn clickhouse_url() -> String {
    std::env::var("CCP_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A fresh lowercase name (`t_<label>_<12 random characters>`, at most 32 characters), usable
/// as NATS prefix and ClickHouse database.
pub fn unique_name(label: &str) -> String {
    let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let label: String = label.chars().filter(char::is_ascii_alphanumeric).take(16).collect();
    format!("t_{label}_{}", &ulid[ulid.len() - 12..])
}

/// Settings pointing at the test stack, with a fresh NATS prefix and ClickHouse database,
/// ephemeral ports and test secrets.
pub fn test_settings(label: &str) -> Settings {
    let name = unique_name(label);
    let mut s = Settings::default();
    s.nats.url = nats_url();
    s.nats.prefix = name.clone();
    s.clickhouse.url = clickhouse_url();
    s.clickhouse.database = name;
    s.secrets.access_key_pepper = ccp_schemas::secrets::SecretString::new("test-pepper-test-pepper-test-pepper!");
    s.proxy.listen = ([127, 0, 0, 1], 0).into();
    s.admin.listen = ([127, 0, 0, 1], 0).into();
    s.projector.listen = ([127, 0, 0, 1], 0).into();
    s
}

/// The namespace of test settings.
pub fn namespace(settings: &Settings) -> Namespace {
    settings.nats.namespace().unwrap_or_default()
}

/// Connects to the test NATS server; panics with a hint if it is not running.
pub async fn nats() -> async_nats::Client {
    async_nats::connect(nats_url())
        .await
        .unwrap_or_else(|e| panic!("NATS at {} is not reachable ({e}); run scripts/stack.sh start", nats_url()))
}

/// Deletes every stream and bucket of a namespace (test cleanup).
pub async fn delete_namespace(js: &async_nats::jetstream::Context, ns: &Namespace) {
    for kind in ccp_schemas::subjects::StreamKind::ALL {
        let _ = js.delete_stream(ns.stream(kind)).await;
    }
    for bucket in ccp_schemas::subjects::Bucket::ALL {
        let _ = js.delete_key_value(ns.bucket(bucket)).await;
    }
    // The proxy's own buckets, and every service's announcement.
    for bucket in ["spend", "rate_limits", "services"] {
        let _ = js.delete_key_value(format!("{}_{bucket}", ns.prefix())).await;
    }
    for service in ["proxy", "admin"] {
        let _ = js.delete_object_store(ccp_runtime::snapshot::bucket_name(ns, service)).await;
    }
}

/// A ClickHouse client of the test server (no database selected).
pub fn clickhouse() -> clickhouse::Client {
    clickhouse::Client::default().with_url(clickhouse_url()).with_validation(false)
}

/// Runs one of the analyst queries in `schemas/queries/<name>.sql` on database `db` over HTTP;
/// its rows as JSON.
pub async fn analyst_query(db: &str, name: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/../schemas/queries/{name}.sql", env!("CARGO_MANIFEST_DIR"));
    let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).replace("{db}", db);
    let body = reqwest::Client::new()
        .post(clickhouse_url())
        .body(format!("{sql}\nFORMAT JSONEachRow"))
        .send()
        .await
        .expect("ClickHouse answers")
        .text()
        .await
        .expect("ClickHouse's answer");
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}"))).collect()
}

/// A port for a service a test (or the benchmark) starts: free now, and not handed out again
/// while this process runs — not by this function in any process, and not by the kernel to an
/// outgoing connection. A port the kernel picks for `bind(0)` is an ephemeral one: once the
/// probe socket closes, the next outgoing connection of any process may take it, and a service
/// started a moment later then fails with "Address already in use" (seen in the suite, where
/// tests run in parallel processes). So the port comes from just below the ephemeral range and
/// is claimed with a lock on `<tmp>/ccp-test-ports/<port>`, released when the process ends.
pub fn free_port() -> u16 {
    static CLAIMED: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    const SPAN: u16 = 12_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32_768);
    let low = ephemeral_low.saturating_sub(SPAN).max(1024);
    let span = ephemeral_low.saturating_sub(low);
    let dir = std::env::temp_dir().join("ccp-test-ports");
    if span > 0 && std::fs::create_dir_all(&dir).is_ok() {
        // Processes start at different places, so they rarely probe the same ports.
        let start = (ulid::Ulid::new().random() % u128::from(span)) as u16;
        for i in 0..span {
            let port = low + (start + i) % span;
            let Ok(lock) =
                std::fs::File::options().create(true).truncate(false).write(true).open(dir.join(port.to_string()))
            else {
                continue;
            };
            if lock.try_lock().is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                CLAIMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(lock);
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The workspace's target directory (where the service binaries are built).
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target")
}

/// A service binary running as a child process; killed when dropped.
pub struct Service {
    /// The process.
    pub child: Child,
    /// Where its combined log goes.
    pub log: PathBuf,
}

impl Service {
    /// Starts `binary` (a path) with `args` and `CCP__…` environment `env`, logging to a file.
    pub fn spawn(binary: &Path, args: &[&str], env: &[(String, String)]) -> std::io::Result<Self> {
        // Under the target directory, where `ccp-secret-scan` looks after the suite.
        let dir = target_dir().join("test-logs");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!(
            "{}-{}.log",
            binary.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            ulid::Ulid::new()
        ));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()?;
        Ok(Self { child, log })
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `url` until it answers 2xx, up to `timeout`. Returns the body.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<String, String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => return resp.text().await.map_err(|e| e.to_string()),
            Ok(resp) => last = format!("status {}", resp.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{url} did not become ready: {last}"))
}

/// `CCP__…` variables that point a service binary at `settings`' NATS, ClickHouse and secrets.
pub fn service_env(settings: &Settings) -> Vec<(String, String)> {
    vec![
        ("CCP__NATS__URL".into(), settings.nats.url.clone()),
        ("CCP__NATS__PREFIX".into(), settings.nats.prefix.clone()),
        ("CCP__CLICKHOUSE__URL".into(), settings.clickhouse.url.clone()),
        ("CCP__CLICKHOUSE__DATABASE".into(), settings.clickhouse.database.clone()),
        ("CCP__SECRETS__ACCESS_KEY_PEPPER".into(), settings.secrets.access_key_pepper.expose().to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let ports: Vec<u16> = (0..50).map(|_| super::free_port()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
        for port in ports {
            assert!(port < low, "{port} is in the ephemeral range (from {low})");
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            // Claimed: another process could not lock it now.
            let lock = std::env::temp_dir().join("ccp-test-ports").join(port.to_string());
            let other = std::fs::File::open(lock).unwrap();
            assert!(other.try_lock().is_err(), "port {port} is not claimed");
        }
    }
}
