//! The whole system as users run it, for the journey and fault tests: the fake Anthropic and
//! fake Bedrock, the projector, the admin API and one or more proxy replicas, each a separate
//! process on a free loopback port, in one fresh namespace of the test NATS and ClickHouse (or a
//! private `nats-server`, or ClickHouse behind a [`TcpGate`] the test can cut). Also: the
//! initial admin's session, `ccpctl` and the real Claude Code as a developer runs them, a load
//! generator of Claude-Code-like streams with known token counts, and the reconciliation of what
//! clients completed against the `requests` table in ClickHouse.
//!
//! The service binaries are those of the workspace's debug build (`cargo nextest run
//! --workspace` builds them; a missing one is built on first use).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccp_runtime::config::{PricingSettings, Settings};
use ccp_schemas::events::{Provider, TokenUsage};
use ccp_schemas::pricing::{to_nanos, PriceList};
use futures_util::StreamExt as _;
use serde_json::{json, Value};

use crate::fake_anthropic::RecordedRequest;
use crate::fake_bedrock::BedrockRequest;
use crate::{free_port, service_env, test_settings, unique_name, wait_http_ok, Service};

/// The initial admin of every system.
pub const ADMIN_USER: &str = "platform-admin";
/// Their password.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// base64 of 32 bytes: the master key sealing Bedrock API keys.
pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// The Bedrock API key the fake Bedrock accepts (registered for developers' access keys).
pub const BEDROCK_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1qb3VybmV5LWtleS0wMDAx";
/// The Bedrock model for requests whose model maps to nothing (Claude Code's default model).
pub const BEDROCK_DEFAULT_MODEL: &str = "global.anthropic.claude-opus-4-5-20251101-v1:0";
/// The developer's own Anthropic credential, passed through unchanged.
pub const API_KEY: &str = "sk-ant-journey";
/// The Claude Code release the tests drive.
pub const CLAUDE_CODE_VERSION: &str = "2.1.332";
/// The model of the load generator's requests (priced by the default price list).
pub const LOAD_MODEL: &str = "claude-sonnet-4-5";

/// A workspace binary (`name` of package `package`) of the debug build, built now if missing:
/// integration tests only get their own package's binaries from cargo.
pub fn workspace_bin(package: &str, name: &str) -> PathBuf {
    let path = crate::target_dir().join("debug").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
        assert!(status.success(), "building {name} failed");
    }
    assert!(path.exists(), "{} is missing after building it", path.display());
    path
}

/// Sends SIGTERM to a process without waiting for it.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
}

/// Waits (polling, up to `timeout`) for `cond` to hold; panics with `what` and `detail()`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Infrastructure the faults act on.

/// A private `nats-server` with JetStream (`CCP_TEST_NATS_SERVER`), so that a test can stop and
/// restart it without disturbing the shared one.
pub struct PrivateNats {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    store: PathBuf,
}

impl PrivateNats {
    /// Starts one on a free port with its store under `store`.
    pub fn start(store: &Path) -> Self {
        let mut nats = Self { child: None, port: free_port(), store: store.to_owned() };
        nats.restart();
        nats
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store (after [`Self::kill`]).
    pub fn restart(&mut self) {
        let bin = std::env::var("CCP_TEST_NATS_SERVER")
            .expect("CCP_TEST_NATS_SERVER (exported by `eval \"$(scripts/stack.sh env)\"`; scripts/test sets it)");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "--store_dir"])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a [`TcpGate`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateMode {
    /// Forwards both ways.
    Open,
    /// Resets open connections; accepts and closes new ones.
    Cut,
    /// Forwards requests, but closes a connection as soon as the server answers, so the client
    /// never learns whether the server did what it asked.
    LoseAnswers,
}

/// A TCP forwarder on a loopback port that a test can cut: while cut, open connections are
/// closed and new ones are accepted and closed at once, as a server that went away looks to its
/// clients. Runs on a thread of its own, so a test's blocking calls never stall it.
pub struct TcpGate {
    /// The port clients connect to.
    pub port: u16,
    mode: tokio::sync::watch::Sender<GateMode>,
}

impl TcpGate {
    /// Forwards 127.0.0.1:`port` to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the gate");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("gate address").port();
        let (mode, watch) = tokio::sync::watch::channel(GateMode::Open);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("gate runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("gate listener");
                loop {
                    let Ok((inbound, _)) = listener.accept().await else { continue };
                    if *watch.borrow() == GateMode::Cut {
                        drop(inbound);
                        continue;
                    }
                    tokio::spawn(forward(inbound, target, watch.clone()));
                }
            });
        });
        Self { port, mode }
    }

    /// Cuts every connection, now and until [`Self::restore`].
    pub fn cut(&self) {
        self.mode.send_replace(GateMode::Cut);
    }

    /// From now on, requests reach the server but no answer reaches the client (the
    /// connection closes when the answer starts), until [`Self::restore`].
    pub fn lose_answers(&self) {
        self.mode.send_replace(GateMode::LoseAnswers);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.mode.send_replace(GateMode::Open);
    }
}

async fn forward(inbound: tokio::net::TcpStream, target: SocketAddr, mode: tokio::sync::watch::Receiver<GateMode>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { return };
    let (mut client_in, mut client_out) = inbound.into_split();
    let (mut server_in, mut server_out) = outbound.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_in, &mut server_out).await;
    });
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = server_in.read(&mut buf).await.unwrap_or(0);
            if n == 0 || *mode.borrow() != GateMode::Open || client_out.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let mut cut = mode.clone();
    tokio::select! {
        () = down => {}
        _ = cut.wait_for(|m| *m == GateMode::Cut) => {}
    }
    up.abort();
}

// ---------------------------------------------------------------------------------------------
// The system.

/// How to start a [`System`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Names the namespace (letters and digits).
    pub label: String,
    /// Proxy replicas.
    pub proxies: usize,
    /// NATS to use instead of the shared test server (a [`PrivateNats`]).
    pub nats_url: Option<String>,
    /// ClickHouse URL the services use instead of the test server's (a [`TcpGate`] in front
    /// of it); the test itself always reads the real one.
    pub services_clickhouse_url: Option<String>,
    /// More `CCP__…` settings for every service.
    pub env: Vec<(String, String)>,
}

impl Options {
    /// One proxy on the shared servers.
    pub fn new(label: &str) -> Self {
        Self { label: label.to_owned(), proxies: 1, nats_url: None, services_clickhouse_url: None, env: Vec::new() }
    }
}

/// One proxy replica.
pub struct Replica {
    /// The process (`None` once stopped).
    pub service: Option<Service>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    port: u16,
    spool: PathBuf,
}

/// The running system.
pub struct System {
    /// Namespace and secrets shared by the services.
    pub settings: Settings,
    /// `CCP__…` variables every service gets.
    pub env: Vec<(String, String)>,
    /// The fake Anthropic process.
    pub anthropic: Service,
    /// Its URL.
    pub anthropic_url: String,
    /// The fake Bedrock process (accepting [`BEDROCK_KEY`]).
    pub bedrock: Service,
    /// Its URL.
    pub bedrock_url: String,
    /// The projector (`None` while stopped).
    pub projector: Option<Service>,
    projector_port: u16,
    /// The admin API.
    pub admin: Service,
    /// Its environment (`CCP__…`), for [`Self::restart_admin`].
    pub admin_env: Vec<(String, String)>,
    /// Its URL.
    pub admin_url: String,
    /// Proxy replicas.
    pub proxies: Vec<Replica>,
    /// A session token of the initial admin.
    pub token: String,
    /// Client of the services.
    pub http: reqwest::Client,
    /// Scratch directory (spools, `ccpctl` configuration, Claude Code's home).
    pub dir: PathBuf,
}

async fn ready(service: &Service, url: &str, what: &str) {
    if let Err(e) = wait_http_ok(url, Duration::from_secs(60)).await {
        panic!("{what} did not start: {e}\n{}", service.log_text());
    }
}

impl System {
    /// Starts everything and logs in as the initial admin.
    pub async fn start(options: Options) -> Self {
        let mut settings = test_settings(&options.label);
        if let Some(url) = &options.nats_url {
            settings.nats.url.clone_from(url);
        }
        let dir = std::env::temp_dir().join(unique_name(&options.label));
        std::fs::create_dir_all(&dir).expect("scratch directory");

        let fake_a = workspace_bin("ccp-tests", "ccp-fake-anthropic");
        let fake_b = workspace_bin("ccp-tests", "ccp-fake-bedrock");
        let (a_port, b_port) = (free_port(), free_port());
        let anthropic = Service::spawn(&fake_a, &["--listen", &format!("127.0.0.1:{a_port}")], &[]).expect("fake");
        let bedrock =
            Service::spawn(&fake_b, &["--listen", &format!("127.0.0.1:{b_port}"), "--accept-key", BEDROCK_KEY], &[])
                .expect("fake Bedrock");
        let anthropic_url = format!("http://127.0.0.1:{a_port}");
        let bedrock_url = format!("http://127.0.0.1:{b_port}");
        ready(&anthropic, &format!("{anthropic_url}/_fake/requests"), "ccp-fake-anthropic").await;
        ready(&bedrock, &format!("{bedrock_url}/_fake/requests"), "ccp-fake-bedrock").await;

        let mut env = service_env(&settings);
        if let Some(url) = &options.services_clickhouse_url {
            env.retain(|(k, _)| k != "CCP__CLICKHOUSE__URL");
            env.push(("CCP__CLICKHOUSE__URL".into(), url.clone()));
        }
        env.extend(
            [
                ("CCP__SECRETS__MASTER_KEY", MASTER_KEY),
                ("CCP__SECRETS__MASTER_KEY_ID", "local-test"),
                ("CCP__PROJECTOR__FLUSH_INTERVAL_MS", "100"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.extend(options.env.iter().cloned());

        let projector_port = free_port();
        let projector = spawn_projector(&env, projector_port).await;

        let admin_port = free_port();
        let admin_url = format!("http://127.0.0.1:{admin_port}");
        // The Claude Code settings the API prints point at the first replica.
        let proxy_ports: Vec<u16> = (0..options.proxies.max(1)).map(|_| free_port()).collect();
        let mut admin_env = env.clone();
        admin_env.extend(
            [
                ("CCP__ADMIN__LISTEN", format!("127.0.0.1:{admin_port}")),
                ("CCP__ADMIN__INITIAL_ADMIN_USERNAME", ADMIN_USER.to_owned()),
                ("CCP__ADMIN__INITIAL_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
                ("CCP__ADMIN__PUBLIC_PROXY_URL", format!("http://127.0.0.1:{}", proxy_ports[0])),
                // Failover readiness is checked against the same fake Bedrock the proxies use.
                ("CCP__PROXY__BEDROCK_ENDPOINT_URL", bedrock_url.clone()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let admin = spawn_admin(&admin_env, &admin_url).await;

        let mut system = Self {
            settings,
            env,
            anthropic,
            anthropic_url,
            bedrock,
            bedrock_url,
            projector: Some(projector),
            projector_port,
            admin,
            admin_env,
            admin_url,
            proxies: Vec::new(),
            token: String::new(),
            http: reqwest::Client::builder().no_proxy().build().expect("client"),
            dir,
        };
        for port in proxy_ports {
            let spool = system.dir.join(format!("spool-{port}"));
            let url = format!("http://127.0.0.1:{port}");
            system.proxies.push(Replica { service: None, url, port, spool });
            let i = system.proxies.len() - 1;
            system.start_proxy(i).await;
        }
        system.token = system.login(ADMIN_USER, ADMIN_PASSWORD).await;
        system
    }

    /// Starts (or restarts) the projector and waits until it is ready.
    pub async fn start_projector(&mut self) {
        self.projector = Some(spawn_projector(&self.env, self.projector_port).await);
    }

    /// SIGKILLs the projector (no chance to flush or acknowledge anything).
    pub fn kill_projector(&mut self) {
        if let Some(mut p) = self.projector.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Stops the admin API and starts it again with [`Self::admin_env`]; waits until it answers
    /// and signs in again.
    pub async fn restart_admin(&mut self) {
        if matches!(self.admin.child.try_wait(), Ok(None)) {
            sigterm(&self.admin.child);
            let _ = self.admin.child.wait();
        }
        self.admin = spawn_admin(&self.admin_env, &self.admin_url).await;
        self.token = self.login(ADMIN_USER, ADMIN_PASSWORD).await;
    }

    /// Starts (or restarts) proxy replica `i` and waits until it is ready.
    pub async fn start_proxy(&mut self, i: usize) {
        let r = &self.proxies[i];
        let mut env = self.env.clone();
        env.extend(
            [
                ("CCP__PROXY__LISTEN", format!("127.0.0.1:{}", r.port)),
                ("CCP__PROXY__ANTHROPIC_BASE_URL", self.anthropic_url.clone()),
                ("CCP__PROXY__BEDROCK_ENDPOINT_URL", self.bedrock_url.clone()),
                ("CCP__PROXY__SPOOL_DIR", r.spool.display().to_string()),
                ("CCP__PROXY__WORKERS", "1".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let service = Service::spawn(&workspace_bin("ccp-proxy", "ccp-proxy"), &[], &env).expect("starting ccp-proxy");
        ready(&service, &format!("{}/ready", r.url), "ccp-proxy").await;
        self.proxies[i].service = Some(service);
    }

    /// A metric of replica `i` (`/metrics`; -1 when absent or unreachable).
    pub async fn proxy_metric(&self, i: usize, name: &str) -> f64 {
        let Ok(resp) = self.http.get(format!("{}/metrics", self.proxies[i].url)).send().await else { return -1.0 };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find(|l| !l.starts_with('#') && l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    }

    /// The URL of replica `i`.
    pub fn proxy_url(&self, i: usize) -> &str {
        &self.proxies[i].url
    }

    /// Every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut add = |name: &str, s: &Service| {
            out.push_str(&format!("\n===== {name} ({})\n{}", s.log.display(), tail(&s.log_text(), 60)));
        };
        add("ccp-admin", &self.admin);
        if let Some(p) = &self.projector {
            add("ccp-projector", p);
        }
        for (i, r) in self.proxies.iter().enumerate() {
            if let Some(s) = &r.service {
                add(&format!("ccp-proxy[{i}]"), s);
            }
        }
        out
    }

    /// Panics if any service's log contains one of `secrets` (access keys, Bedrock API keys,
    /// passwords).
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        let mut services = vec![("ccp-admin", &self.admin)];
        services.extend(self.projector.iter().map(|p| ("ccp-projector", p)));
        services.extend(self.proxies.iter().filter_map(|r| r.service.as_ref()).map(|s| ("ccp-proxy", s)));
        for (name, service) in services {
            let log = service.log_text();
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                assert!(!log.contains(secret), "a secret appears in the log of {name}: {}", service.log.display());
            }
        }
    }

    // --- the admin API ------------------------------------------------------------------------

    /// A session token (panics unless the login succeeds).
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login failed: {body}\n{}", self.logs());
        body["token"].as_str().expect("a token").to_owned()
    }

    async fn api(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.admin_url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin API unreachable");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A command of the initial admin; panics unless it answers 2xx. Returns the body.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.api(method.clone(), path, Some(&self.token), body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }

    /// Runs `ccpctl` as the initial admin (`CCPCTL_TOKEN`), `stdin` piped in.
    pub fn ctl(&self, args: &[&str], stdin: &str) -> CtlRun {
        self.ctl_as(Some(&self.token), args, stdin)
    }

    /// Runs `ccpctl` with `token` (or only what `ccpctl login` saved in the system's directory).
    pub fn ctl_as(&self, token: Option<&str>, args: &[&str], stdin: &str) -> CtlRun {
        use std::io::Write as _;
        let mut cmd = Command::new(workspace_bin("ccp-admin-api", "ccpctl"));
        cmd.args(args)
            .env("CCPCTL_URL", &self.admin_url)
            .env("CCPCTL_CONFIG_DIR", self.dir.join("ccpctl"))
            .env_remove("CCPCTL_TOKEN")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("CCPCTL_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("running ccpctl");
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output().expect("ccpctl output");
        CtlRun {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A user with a Bedrock-capable key through the API; returns (user id, key id, access key).
    pub async fn developer(&self, name: &str) -> (String, String, String) {
        let user = self.admin(reqwest::Method::POST, "/v1/users", Some(json!({ "name": name }))).await;
        let user_id = user["user_id"].as_str().expect("user_id").to_owned();
        let issued = self
            .admin(
                reqwest::Method::POST,
                &format!("/v1/users/{user_id}/keys"),
                Some(json!({"bedrock_default_model": BEDROCK_DEFAULT_MODEL})),
            )
            .await;
        let key_id = issued["key"]["key_id"].as_str().expect("key_id").to_owned();
        let key = issued["access_key"].as_str().expect("access_key").to_owned();
        self.admin(
            reqwest::Method::PUT,
            &format!("/v1/keys/{key_id}/bedrock-key"),
            Some(json!({"api_key": BEDROCK_KEY})),
        )
        .await;
        for i in 0..self.proxies.len() {
            if self.proxies[i].service.is_some() {
                self.wait_key_status(i, &key, |s| s != 401, "a new key accepted").await;
            }
        }
        (user_id, key_id, key)
    }

    /// The status replica `i` answers a small request on `key` with (0: no answer).
    pub async fn ping_status(&self, i: usize, key: &str) -> u16 {
        self.http
            .post(format!("{}/ak/{key}/v1/messages", self.proxies[i].url))
            .header("content-type", "application/json")
            .header("x-api-key", API_KEY)
            .body(r#"{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[{"role":"user","content":"ping"}]}"#)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Polls replica `i` with a small request on `key` until its status satisfies `want`;
    /// returns how long that took.
    pub async fn wait_key_status(&self, i: usize, key: &str, want: impl Fn(u16) -> bool, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let status = self.ping_status(i, key).await;
            if want(status) {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{what}: replica {i} still answers {status}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // --- the fakes ----------------------------------------------------------------------------

    /// Queues scenarios (JSON, as `POST /_fake/enqueue` takes them) on the fake Anthropic.
    pub async fn enqueue_anthropic(&self, scenarios: Value) {
        let resp = self.http.post(format!("{}/_fake/enqueue", self.anthropic_url)).json(&scenarios).send().await;
        assert!(resp.is_ok_and(|r| r.status().is_success()), "enqueue failed");
    }

    /// Forgets what the fakes received and had queued.
    pub async fn reset_fakes(&self) {
        for url in [&self.anthropic_url, &self.bedrock_url] {
            let _ = self.http.post(format!("{url}/_fake/reset")).send().await;
        }
    }

    /// What the fake Anthropic received.
    pub async fn anthropic_requests(&self) -> Vec<RecordedRequest> {
        let resp = self.http.get(format!("{}/_fake/requests", self.anthropic_url)).send().await.expect("fake");
        resp.json().await.expect("recorded requests")
    }

    /// What the fake Bedrock received.
    pub async fn bedrock_requests(&self) -> Vec<BedrockRequest> {
        let resp = self.http.get(format!("{}/_fake/requests", self.bedrock_url)).send().await.expect("fake");
        let all: Vec<BedrockRequest> = resp.json().await.expect("recorded requests");
        // The model calls; the proxy's reads of the key's model listing are not answers.
        all.into_iter().filter(|r| r.model_id.is_some()).collect()
    }

    // --- ClickHouse ---------------------------------------------------------------------------

    /// Rows of the `requests` table (read from the real test server).
    pub async fn clickhouse_requests(&self) -> Vec<ChRequest> {
        let query = format!(
            "SELECT request_id, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, \
             cost_nanos, status, incomplete, provider, replica FROM {}.requests FORMAT TabSeparated",
            self.settings.clickhouse.database
        );
        let Ok(resp) = self.http.post(crate::clickhouse_url()).body(query).send().await else { return Vec::new() };
        if !resp.status().is_success() {
            return Vec::new(); // the table is not there yet
        }
        let text = resp.text().await.unwrap_or_default();
        text.lines().filter_map(ChRequest::parse).collect()
    }

    /// Waits until ClickHouse has a row for every completed request, then checks each appears
    /// exactly once with the token counts the fake answered and the cost of those under the
    /// configured price list. Returns the rows.
    pub async fn reconcile(&self, completed: &[Completed], timeout: Duration) -> Vec<ChRequest> {
        let deadline = Instant::now() + timeout;
        let rows = loop {
            let rows = self.clickhouse_requests().await;
            let have: std::collections::HashSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
            let missing = completed.iter().filter(|c| !have.contains(c.request_id.as_str())).count();
            if missing == 0 {
                break rows;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} of {} completed requests are not in ClickHouse after {timeout:?}\n{}",
                completed.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut by_id: HashMap<&str, Vec<&ChRequest>> = HashMap::new();
        for r in &rows {
            by_id.entry(r.request_id.as_str()).or_default().push(r);
        }
        let prices = PriceList { version: 0, models: PricingSettings::default().models };
        for c in completed {
            let got = &by_id[c.request_id.as_str()];
            assert_eq!(got.len(), 1, "request {} is in ClickHouse {} times: {got:?}", c.request_id, got.len());
            let row = got[0];
            assert_eq!(row.usage, c.usage, "tokens of {}", c.request_id);
            let cost = prices.cost(LOAD_MODEL, Provider::Anthropic, None, &c.usage).expect("priced");
            assert_eq!(row.cost_nanos, to_nanos(cost), "cost of {}", c.request_id);
            assert_eq!((row.status, row.incomplete), (200, false), "{row:?}");
        }
        rows
    }

    /// Removes the namespace's streams, buckets and ClickHouse database, and the scratch
    /// directory (kept when the test failed).
    pub async fn finish(self) {
        if let Ok(client) = async_nats::connect(&self.settings.nats.url).await {
            let js = async_nats::jetstream::new(client);
            let ns = crate::namespace(&self.settings);
            crate::delete_namespace(&js, &ns).await;
            for extra in ["admin_sessions", "idempotency"] {
                let _ = js.delete_key_value(format!("{}_{extra}", ns.prefix())).await;
            }
        }
        let drop_db = format!("DROP DATABASE IF EXISTS {}", self.settings.clickhouse.database);
        let _ = self.http.post(crate::clickhouse_url()).body(drop_db).send().await;
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn spawn_admin(env: &[(String, String)], url: &str) -> Service {
    let admin =
        Service::spawn(&workspace_bin("ccp-admin-api", "ccp-admin"), &["serve"], env).expect("starting ccp-admin");
    ready(&admin, &format!("{url}/health"), "ccp-admin").await;
    admin
}

async fn spawn_projector(env: &[(String, String)], port: u16) -> Service {
    let mut env = env.to_vec();
    env.push(("CCP__PROJECTOR__LISTEN".into(), format!("127.0.0.1:{port}")));
    let service = Service::spawn(&workspace_bin("ccp-projector", "ccp-projector"), &["serve"], &env)
        .expect("starting ccp-projector");
    ready(&service, &format!("http://127.0.0.1:{port}/ready"), "ccp-projector").await;
    service
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A finished `ccpctl` run.
#[derive(Debug)]
pub struct CtlRun {
    /// Its arguments.
    pub args: Vec<String>,
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CtlRun {
    /// Panics unless it succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "ccpctl {:?} failed\nstderr: {}\nstdout: {}", self.args, self.stderr, self.stdout);
        self
    }

    /// Its standard output as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", self.stdout))
    }
}

/// One row of ClickHouse's `requests` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChRequest {
    /// `req_…`
    pub request_id: String,
    /// Tokens.
    pub usage: TokenUsage,
    /// Cost in nano-dollars.
    pub cost_nanos: u64,
    /// Status sent to the client.
    pub status: u16,
    /// Whether the answer did not finish.
    pub incomplete: bool,
    /// `anthropic`, `bedrock` or `none`.
    pub provider: String,
    /// The replica that served it.
    pub replica: String,
}

impl ChRequest {
    fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split('\t').collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            request_id: (*f.first()?).to_owned(),
            usage: TokenUsage {
                input_tokens: n(1)?,
                output_tokens: n(2)?,
                cache_read_input_tokens: n(3)?,
                cache_creation_input_tokens: n(4)?,
            },
            cost_nanos: n(5)?,
            status: u16::try_from(n(6)?).ok()?,
            incomplete: n(7)? != 0,
            provider: (*f.get(8)?).to_owned(),
            replica: (*f.get(9)?).to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Load: Claude-Code-like streams with known token counts.

/// A request a load client completed: the proxy answered 200 and the stream reached
/// `message_stop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// `x-ccp-request-id`.
    pub request_id: String,
    /// The token counts the fake Anthropic was told to answer.
    pub usage: TokenUsage,
}

/// The token counts of load request `n` (distinct per request, so a row with another's
/// counts is caught).
pub fn load_usage(n: u64) -> TokenUsage {
    TokenUsage {
        input_tokens: 1000 + n,
        output_tokens: 50 + n % 97,
        cache_read_input_tokens: 3 * n,
        cache_creation_input_tokens: n % 11,
    }
}

/// One streamed request of load number `n` through `base` (`…/ak/<key>`), with the fake
/// pacing its events `pace_ms` apart. Returns the request id and the stream's text.
pub async fn stream_request(
    http: &reqwest::Client,
    base: &str,
    n: u64,
    pace_ms: u64,
) -> Result<(String, reqwest::Response), String> {
    let u = load_usage(n);
    let body = json!({
        "model": LOAD_MODEL,
        "max_tokens": 256,
        "stream": true,
        "messages": [{"role": "user", "content": format!("load request {n}")}],
    });
    let resp = http
        .post(format!("{base}/v1/messages?beta=true"))
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .header("user-agent", format!("claude-cli/{CLAUDE_CODE_VERSION} (external, sdk-cli)"))
        .header(
            "x-fake-usage",
            format!(
                "{},{},{},{}",
                u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens
            ),
        )
        .header("x-fake-pace-ms", pace_ms.to_string())
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("request {n}: {e}"))?;
    if resp.status() != 200 {
        let status = resp.status();
        return Err(format!("request {n}: status {status}: {}", resp.text().await.unwrap_or_default()));
    }
    let id = resp
        .headers()
        .get("x-ccp-request-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("request {n}: no x-ccp-request-id"))?
        .to_owned();
    Ok((id, resp))
}

/// Reads a stream to its end; `Ok` if it reached `message_stop`.
pub async fn finish_stream(resp: reqwest::Response) -> Result<String, String> {
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("stream cut after {} bytes: {e}", text.len()))?;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    if text.contains("event: message_stop") {
        Ok(text)
    } else {
        Err(format!("stream ended without message_stop: {text}"))
    }
}

/// Concurrent clients each sending streamed requests, one after another, until stopped (or a
/// bounded number each).
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<(Vec<Completed>, Vec<String>)>,
    done: Arc<AtomicU64>,
}

/// What a load run did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Requests answered completely.
    pub completed: Vec<Completed>,
    /// Requests that failed, with why.
    pub failed: Vec<String>,
}

impl Load {
    /// Starts `clients` clients on `base` (`…/ak/<key>`), at most `max_each` requests each.
    pub fn start(base: &str, clients: usize, max_each: u64, pace_ms: u64) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        for _ in 0..clients {
            let (stop, done, http, base) = (stop.clone(), done.clone(), http.clone(), base.to_owned());
            tasks.spawn(async move {
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                for _ in 0..max_each {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = NEXT.fetch_add(1, Ordering::Relaxed);
                    let result = match stream_request(&http, &base, n, pace_ms).await {
                        Ok((id, resp)) => finish_stream(resp).await.map(|_| id),
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(request_id) => ok.push(Completed { request_id, usage: load_usage(n) }),
                        Err(e) => failed.push(e),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (ok, failed)
            });
        }
        Self { stop, tasks, done }
    }

    /// Requests finished (either way) so far.
    pub fn finished(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more requests finished than now.
    pub async fn wait_more(&self, n: u64, timeout: Duration) {
        let target = self.finished() + n;
        wait_until(timeout, "load progress", || async { self.finished() >= target }).await;
    }

    /// Stops the clients after their current request and collects what they did.
    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        while let Some(joined) = self.tasks.join_next().await {
            let (ok, failed) = joined.expect("load client");
            report.completed.extend(ok);
            report.failed.extend(failed);
        }
        report
    }
}

// ---------------------------------------------------------------------------------------------
// Claude Code, as a developer runs it.

/// The Claude Code executable (`CCP_TEST_CLAUDE_BIN`, else `.local/clients/bin/claude`); fails
/// the test if it is missing or another version.
pub fn claude_bin() -> PathBuf {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/clients/bin/claude");
    let bin = std::env::var_os("CCP_TEST_CLAUDE_BIN").filter(|v| !v.is_empty()).map_or(default, PathBuf::from);
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/install-clients.sh)", bin.display()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with(CLAUDE_CODE_VERSION), "{} is Claude Code {version:?}", bin.display());
    bin
}

/// A finished Claude Code run.
#[derive(Debug)]
pub struct ClaudeRun {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl ClaudeRun {
    /// Everything it printed, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status.code(),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    /// Its `--output-format json` result object.
    pub fn result(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("claude's output is not one JSON object ({e}): {}", self.dump()))
    }
}

/// A Claude Code process started with [`System::spawn_claude`].
pub struct ClaudeProcess {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

impl ClaudeProcess {
    /// Waits (without blocking the runtime) for it to exit; kills it and fails after `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> ClaudeRun {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("claude status") {
                break status;
            }
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "claude did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let run = ClaudeRun {
            status,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            elapsed: self.started.elapsed(),
        };
        eprintln!("claude: {}", run.dump());
        run
    }
}

impl System {
    /// Starts `claude <args>` headless the way a developer runs it: `ANTHROPIC_BASE_URL` as the
    /// platform team printed it, their own Anthropic key, a fresh `HOME` and working directory,
    /// only `PATH` inherited; `env` adds variables (e.g. `ANTHROPIC_CUSTOM_HEADERS`).
    pub fn spawn_claude(&self, base_url: &str, args: &[&str], env: &[(&str, &str)]) -> ClaudeProcess {
        let run_dir = self.dir.join(unique_name("claude"));
        let (home, work) = (run_dir.join("home"), run_dir.join("work"));
        for d in [&home, &work] {
            std::fs::create_dir_all(d).expect("claude directories");
        }
        let (out, err) = (run_dir.join("stdout"), run_dir.join("stderr"));
        let child = Command::new(claude_bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("ANTHROPIC_BASE_URL", base_url)
            .env("ANTHROPIC_API_KEY", API_KEY)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .envs(env.iter().copied())
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawning claude (run scripts/install-clients.sh)");
        ClaudeProcess { child, out, err, started: Instant::now() }
    }

    /// Runs `claude -p <prompt> --output-format json` to the end (see [`Self::spawn_claude`]).
    pub async fn claude(&self, base_url: &str, prompt: &str, env: &[(&str, &str)]) -> ClaudeRun {
        self.spawn_claude(base_url, &["-p", prompt, "--output-format", "json"], env).wait(CLAUDE_TIMEOUT).await
    }
}

/// Longest a Claude Code run may take.
pub const CLAUDE_TIMEOUT: Duration = Duration::from_secs(120);
