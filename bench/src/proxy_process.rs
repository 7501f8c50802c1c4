//! The proxy under measurement: the release binary as a child process (pinned to CPU 1 when
//! asked), on a NATS namespace of its own, in front of the benchmark's fakes; waiting until it
//! serves a key; stopping it and cleaning up after it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ccp_runtime::config::Settings;
use ccp_schemas::events::{BudgetSet, Event};
use ccp_schemas::ids::UserId;
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;
use ccp_tests::Service;

use crate::cli::Progress;

/// Fails early, with a hint, when the test NATS server does not accept connections.
pub async fn check_nats() -> anyhow::Result<()> {
    let nats_url = ccp_tests::nats_url();
    let first = nats_url.split(',').next().unwrap_or(&nats_url);
    let hostport = first.trim().trim_start_matches("nats://").rsplit('@').next().unwrap_or_default().to_owned();
    let hostport = if hostport.contains(':') { hostport } else { format!("{hostport}:4222") };
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&hostport)).await {
        Ok(Ok(_)) => Ok(()),
        _ => bail!("NATS at {nats_url} is not reachable; run scripts/stack.sh start"),
    }
}

/// Test settings whose NATS prefix is `<prefix>_` and 12 characters of a new ULID, with a new
/// local master key (for the Bedrock keys registered).
pub fn settings(label: &str, prefix: &str) -> anyhow::Result<Settings> {
    let mut settings = ccp_tests::test_settings(label);
    let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
    settings.nats.prefix = format!("{prefix}_{}", &ulid[ulid.len() - 12..]);
    settings.secrets.master_key = LocalMasterKey::generate_b64().map_err(|e| anyhow::anyhow!("master key: {e}"))?;
    Ok(settings)
}

/// The master key of `settings`, to register Bedrock keys with.
pub fn master_key(settings: &Settings) -> anyhow::Result<LocalMasterKey> {
    LocalMasterKey::new(settings.secrets.master_key_id.clone(), &settings.secrets.master_key)
        .map_err(|e| anyhow::anyhow!("master key: {e}"))
}

/// Gives `user_id` a monthly budget of `usd`; returns the admin stream sequence of the event.
pub async fn set_budget(log: &Log, user_id: UserId, usd: &str) -> anyhow::Result<u64> {
    let budget: BudgetSet = serde_json::from_value(serde_json::json!({"user_id": user_id, "monthly_limit_usd": usd}))
        .context("budget event")?;
    Ok(log.append(Event::BudgetSet(budget)).await)
}

/// Starts the process in the middle of a measurement (the proxy or a reference): with `pin`,
/// on CPU 1 (the client and the upstream are on CPU 0).
pub fn spawn(bin: &Path, args: &[&str], env: &[(String, String)], pin: bool) -> std::io::Result<Service> {
    if pin {
        let bin = bin.display().to_string();
        let pinned: Vec<&str> = ["-c", "1", bin.as_str()].into_iter().chain(args.iter().copied()).collect();
        Service::spawn(Path::new("taskset"), &pinned, env)
    } else {
        Service::spawn(bin, args, env)
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The proxy, running; dropping it kills the process and removes its spool directory.
pub struct ProxyProcess {
    /// The process and its log.
    pub service: Service,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    spool_dir: PathBuf,
}

impl ProxyProcess {
    /// Starts `bin` on the NATS namespace and secrets of `settings`, in front of the fake
    /// Anthropic at `anthropic_url`, with `workers` worker threads and the further `CCP__…`
    /// variables `env`, and waits until it is ready (else fails with the end of its log).
    pub async fn start(
        bin: &Path,
        settings: &Settings,
        anthropic_url: &str,
        workers: usize,
        env: &[(&str, String)],
        pin: bool,
    ) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!("{} does not exist; build it: cargo build --release -p ccp-proxy", bin.display());
        }
        let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
        let spool_dir = std::env::temp_dir().join(format!("ccp-bench-spool-{}", settings.nats.prefix));
        let mut all = ccp_tests::service_env(settings);
        all.extend([
            ("CCP__SECRETS__MASTER_KEY".into(), settings.secrets.master_key.expose().to_owned()),
            ("CCP__SECRETS__MASTER_KEY_ID".into(), settings.secrets.master_key_id.clone()),
            ("CCP__PROXY__ANTHROPIC_BASE_URL".into(), anthropic_url.to_owned()),
            ("CCP__PROXY__LISTEN".into(), listen.clone()),
            ("CCP__PROXY__SPOOL_DIR".into(), spool_dir.display().to_string()),
            ("CCP__PROXY__WORKERS".into(), workers.to_string()),
        ]);
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let service = spawn(bin, &[], &all, pin).with_context(|| format!("start {}", bin.display()))?;
        let proxy = Self { service, url: format!("http://{listen}"), spool_dir };
        match ccp_tests::wait_http_ok(&format!("{}/ready", proxy.url), Duration::from_secs(30)).await {
            Ok(_) => Ok(proxy),
            Err(e) => Err(proxy.fail(anyhow::anyhow!("the proxy did not become ready: {e}"))),
        }
    }

    /// The proxy's pid (whose CPU and memory are measured).
    pub fn pid(&self) -> u32 {
        self.service.child.id()
    }

    /// Stops the proxy after `e`, which it returns with the end of the proxy's log.
    pub fn fail(mut self, e: anyhow::Error) -> anyhow::Error {
        let tail = tail(&self.service.log_text(), 20);
        let _ = self.service.terminate(Duration::from_secs(5));
        anyhow::anyhow!("{e:#}\n--- proxy log:\n{tail}")
    }

    /// Stops the proxy (SIGTERM, then killed after `grace`); after a run that went `ok` its log
    /// is removed, else its path is printed.
    pub fn stop(mut self, ok: bool, grace: Duration, progress: &Progress) {
        if self.service.terminate(grace).is_none() {
            progress.say(format!("proxy did not stop in {} s; killing it", grace.as_secs()));
        }
        if ok {
            let _ = std::fs::remove_file(&self.service.log);
        } else {
            eprintln!("proxy log: {}", self.service.log.display());
        }
    }

    /// Waits until the proxy has applied the admin stream up to `seq`.
    pub async fn wait_applied(&self, seq: u64) -> anyhow::Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready: serde_json::Value = client.get(format!("{}/ready", self.url)).send().await?.json().await?;
            if ready["admin_stream_seq"].as_u64().unwrap_or(0) >= seq {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the proxy did not apply the admin stream up to {seq}: {ready}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the proxy knows `key` (it follows the admin stream asynchronously): a small
    /// Messages request with it in the path answers 200 from the upstream instead of 401.
    pub async fn wait_accepted(&self, key: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resp = client
                .post(format!("{}/ak/{key}/v1/messages", self.url))
                .header("content-type", "application/json")
                .header("x-api-key", "sk-ant-bench")
                .body(r#"{"model":"m","max_tokens":1,"messages":[]}"#)
                .send()
                .await?;
            let status = resp.status();
            let _ = resp.bytes().await;
            if status == 200 {
                return Ok(());
            }
            if status != 401 || Instant::now() > deadline {
                bail!("the proxy does not accept the new key: status {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.service.child.kill();
        let _ = self.service.child.wait();
        let _ = std::fs::remove_dir_all(&self.spool_dir);
    }
}
