//! The real clients through the proxy: Claude Code 2.1.332 (the native `claude` binary, headless)
//! and the official Anthropic Python SDK, against the fake Anthropic behind an in-process proxy
//! on a real NATS JetStream. Checks what the client shows, what reached "Anthropic", and that
//! every upstream request left exactly one usage event with the token counts Anthropic sent.
//! Claude Code also runs against a proxy that fails over to the fake Bedrock: Anthropic
//! rate-limits every request, Bedrock answers (text, and a Bash tool round trip), and Claude
//! Code notices nothing.
//!
//! The clients come from `scripts/install-clients.sh` (`.local/clients/`), or from where
//! `CCP_TEST_CLAUDE_BIN` and `CCP_TEST_PYTHON` point. A missing client fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ccp_runtime::config::Settings;
use ccp_schemas::events::{Endpoint, ErrorClass, FallbackReason, Provider, RequestCompleted, RoutingStrategy};
use ccp_schemas::ids::{AccessKeyId, RequestId};
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;
use ccp_tests::fake_anthropic::{FakeAnthropic, RecordedRequest, Scenario, ScenarioName, DEFAULT_TEXT, TOOL_RAN_OK};
use ccp_tests::fake_bedrock::{self, BedrockRequest, FakeBedrock};
use ccp_tests::unique_name;
use common::BEDROCK_KEY;

const CLAUDE_CODE_VERSION: &str = "2.1.332";
/// The credential Claude Code and the SDK send; the proxy passes it on untouched.
const API_KEY: &str = "sk-ant-test";
const INSTALL_HINT: &str = "run scripts/install-clients.sh (scripts/test does)";

// ---------------------------------------------------------------------------------------------
// Harness (as in hot_path.rs): a fake Anthropic and a proxy in-process on a fresh NATS prefix;
// for the failover tests also a fake Bedrock (`common`, as in failover.rs).

struct Harness {
    log: Log,
    fake: FakeAnthropic,
    /// With [`failover_harness`].
    bedrock: Option<FakeBedrock>,
    master: LocalMasterKey,
    url: String,
}

async fn harness(label: &str) -> Harness {
    harness_with(label, false, |_| {}).await
}

/// A harness whose proxy fails over to a fake Bedrock.
async fn failover_harness(label: &str, tweak: impl FnOnce(&mut Settings)) -> Harness {
    harness_with(label, true, tweak).await
}

async fn harness_with(label: &str, with_bedrock: bool, tweak: impl FnOnce(&mut Settings)) -> Harness {
    let fake = FakeAnthropic::start().unwrap();
    let bedrock = with_bedrock.then(|| FakeBedrock::start(&[BEDROCK_KEY]).unwrap());
    let (mut settings, master) = common::proxy_settings(label, &fake, bedrock.as_ref());
    tweak(&mut settings);
    let log = Log::new(&settings).await;
    let url = common::start(settings).await;
    Harness { log, fake, bedrock, master, url }
}

impl Harness {
    /// Issues a key and waits until the proxy accepts it; then forgets what the fake saw.
    async fn key(&self) -> (AccessKeyId, String) {
        self.key_routed(None).await
    }

    /// A key whose user has `routing` (default: plan first).
    async fn key_routed(&self, routing: Option<RoutingStrategy>) -> (AccessKeyId, String) {
        let (user_id, key_id, key) = self.log.user_with_key("dana").await;
        if let Some(r) = routing {
            let seq = self.log.set_routing(user_id, r).await;
            self.wait_applied(seq).await;
        }
        let key = key.expose().to_owned();
        self.wait_accepted(&key).await;
        (key_id, key)
    }

    /// A key with [`BEDROCK_KEY`] registered and nothing else configured (plan first: no region,
    /// no default model); then forgets what both fakes saw.
    async fn key_with_bedrock(&self) -> (AccessKeyId, String) {
        let (user_id, key_id, key) = self.log.user_with_key("dana").await;
        let seq = self.log.register_bedrock_key(user_id, key_id, &self.master, BEDROCK_KEY).await;
        self.wait_applied(seq).await;
        let key = key.expose().to_owned();
        self.wait_accepted(&key).await;
        self.bedrock().clear();
        (key_id, key)
    }

    fn bedrock(&self) -> &FakeBedrock {
        self.bedrock.as_ref().expect("a failover_harness")
    }

    /// Waits until the proxy has applied the admin stream up to `seq`.
    async fn wait_applied(&self, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready: serde_json::Value =
                reqwest::get(format!("{}/ready", self.url)).await.unwrap().json().await.unwrap();
            if ready["admin_stream_seq"].as_u64().unwrap_or(0) >= seq {
                return;
            }
            assert!(Instant::now() < deadline, "proxy did not apply seq {seq}: {ready}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the proxy accepts `key` and the probe's usage event is in the stream (so it
    /// is not taken for a client's); then forgets what the fake Anthropic saw.
    async fn wait_accepted(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let probe = loop {
            let response = reqwest::Client::new()
                .post(format!("{}/ak/{key}/v1/messages?beta=true", self.url))
                .header("content-type", "application/json")
                .header("x-api-key", API_KEY)
                .body(r#"{"model":"m","max_tokens":1,"messages":[]}"#)
                .send()
                .await
                .unwrap();
            if response.status() != 401 {
                let id = response.headers().get("x-ccp-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                break id.parse::<RequestId>().unwrap_or_else(|e| panic!("x-ccp-request-id {id:?}: {e}"));
            }
            assert!(Instant::now() < deadline, "key not accepted in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        while !self.seen().await.contains(&probe) {
            assert!(Instant::now() < deadline, "the probe's usage event was not published in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.fake.clear();
    }

    /// Ids of the usage events published so far (to tell a client's events from earlier ones).
    async fn seen(&self) -> HashSet<RequestId> {
        self.log.requests().await.into_iter().map(|r| r.request_id).collect()
    }

    /// Waits until the proxy published `n` usage events not in `before`, then a little more
    /// (anything extra would be published by then too) and returns them all; `upstream`
    /// describes what the fakes got, for the failure message.
    async fn new_usage_events(
        &self,
        before: &HashSet<RequestId>,
        n: usize,
        upstream: &dyn std::fmt::Debug,
    ) -> Vec<RequestCompleted> {
        let new_events = || async {
            self.log.requests().await.into_iter().filter(|r| !before.contains(&r.request_id)).collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while new_events().await.len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = new_events().await;
        assert_eq!(
            events.len(),
            n,
            "one usage event per client request; upstream got {upstream:#?}, events {events:#?}"
        );
        events
    }

    /// Waits until the proxy published one usage event (not in `before`) per request the fake
    /// received, then checks they are exactly those requests: same endpoint, success (200 or
    /// not: the proxy may answer an upstream error with a status of its own) and token counts
    /// (compared as multisets: the order of events need not be the order of requests).
    async fn check_usage_events(
        &self,
        key_id: AccessKeyId,
        before: &HashSet<RequestId>,
    ) -> (Vec<RecordedRequest>, Vec<RequestCompleted>) {
        let recorded = self.fake.requests();
        let events =
            self.new_usage_events(before, recorded.len(), &recorded.iter().map(describe).collect::<Vec<_>>()).await;
        let mut sent: Vec<_> = recorded
            .iter()
            .map(|r| {
                let u = r.usage.unwrap_or_default();
                (
                    endpoint_of(&r.path),
                    r.status == 200,
                    [u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens],
                )
            })
            .collect();
        // A stream that ended early (an in-stream error, a cut) has its output estimated from the
        // relayed content, flagged; the fake counts only message_start's 1 token for it.
        for e in events.iter().filter(|e| e.usage_estimated) {
            assert!(e.incomplete && e.usage.output_tokens >= 1, "{e:?}");
        }
        let mut seen: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    format!("{:?}", e.endpoint),
                    e.status == 200,
                    [
                        e.usage.input_tokens,
                        if e.usage_estimated { 1 } else { e.usage.output_tokens },
                        e.usage.cache_read_input_tokens,
                        e.usage.cache_creation_input_tokens,
                    ],
                )
            })
            .collect();
        sent.sort();
        seen.sort();
        assert_eq!(
            seen, sent,
            "usage events (endpoint, answered 200, [input, output, cache_read, cache_creation]) \
             vs what the fake Anthropic answered"
        );
        for e in &events {
            assert_eq!(e.key_id, Some(key_id), "event of the client's key: {e:?}");
            assert_eq!(e.provider, Provider::Anthropic);
            assert!(!e.fallback);
        }
        (recorded, events)
    }
}

fn endpoint_of(path: &str) -> String {
    let e = match path {
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::CountTokens,
        _ => Endpoint::Other,
    };
    format!("{e:?}")
}

fn describe(r: &RecordedRequest) -> String {
    let body = r.body_json().unwrap_or_default();
    format!(
        "{} {}?{} -> {} model={} stream={} messages={} usage={:?}",
        r.method,
        r.path,
        r.query,
        r.status,
        body["model"],
        body["stream"],
        body["messages"].as_array().map_or(0, Vec::len),
        r.usage
    )
}

/// What the fakes and the event log must show after a Claude Code run (`result`: its
/// `--output-format json` object) on a key with [`BEDROCK_KEY`] whose every Anthropic attempt
/// was rate-limited: each request Claude Code sent reached Anthropic once (no retry: Claude
/// Code never saw the 429) and was answered by Bedrock, the same conversation, with the key's
/// Bedrock key; one usage event per request, saying Bedrock answered after a rate limit, with
/// the token counts Bedrock sent. A request the proxy sent straight to Bedrock because the
/// key's circuit was open (`circuit_open`) counts as answered without an Anthropic attempt.
/// Returns Bedrock's requests (in order) and the events.
async fn check_failover(
    h: &Harness,
    key_id: AccessKeyId,
    key: &str,
    before: &HashSet<RequestId>,
    result: &serde_json::Value,
) -> (Vec<BedrockRequest>, Vec<RequestCompleted>) {
    let anthropic = h.fake.requests();
    // The model calls (the proxy's reads of the key's model listing are not answers).
    let bedrock: Vec<BedrockRequest> = h.bedrock().requests().into_iter().filter(|r| r.model_id.is_some()).collect();
    let upstream =
        (anthropic.iter().map(describe).collect::<Vec<_>>(), bedrock.iter().map(describe_bedrock).collect::<Vec<_>>());
    eprintln!("upstream (anthropic, bedrock): {upstream:#?}");
    let events = h.new_usage_events(before, bedrock.len(), &upstream).await;

    // Anthropic: every attempt a 429, and no request twice (a retry resends the same body).
    check_claude_code_requests(&anthropic, key, 429);
    for r in &anthropic {
        assert_eq!(r.scenario.as_ref().map(|s| s.name), Some(ScenarioName::RateLimit), "{}", describe(r));
    }
    let bodies: HashSet<&[u8]> = anthropic.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies.len(), anthropic.len(), "Claude Code retried a request: {upstream:#?}");

    // Bedrock: one answer per request Claude Code sent, in the same order.
    let reason = |e: &RequestCompleted| e.fallback_reason;
    let rate_limited = events.iter().filter(|e| reason(e) == Some(FallbackReason::RateLimited)).count();
    let circuit_open = events.iter().filter(|e| reason(e) == Some(FallbackReason::CircuitOpen)).count();
    assert_eq!(rate_limited + circuit_open, events.len(), "{events:#?}");
    assert_eq!(rate_limited, anthropic.len(), "one Anthropic attempt per rate-limited request: {events:#?}");
    assert!(!bedrock.is_empty(), "Bedrock got nothing: {upstream:#?}");
    for (i, b) in bedrock.iter().enumerate() {
        assert_eq!(b.status, 200, "{}", describe_bedrock(b));
        assert!(b.streaming, "Claude Code streams: {}", describe_bedrock(b));
        assert!(b.key_accepted && b.key_was(BEDROCK_KEY), "the key's Bedrock API key is the bearer token");
        let body = String::from_utf8_lossy(&b.body);
        assert!(!body.contains(key) && !body.contains(API_KEY), "a credential leaked to Bedrock");
        for (name, value) in &b.headers {
            assert!(!value.contains(key) && !value.contains(API_KEY), "a credential leaked to Bedrock in {name}");
        }
        if let Some(a) = anthropic.get(i) {
            let (a, b) = (a.body_json().unwrap(), b.body_json().unwrap());
            assert_eq!(b["messages"], a["messages"], "request {i}: Bedrock got the conversation Anthropic refused");
            assert_eq!(b["system"], a["system"], "request {i}");
        }
    }

    // The events: Bedrock, after a rate limit, with Bedrock's token counts.
    for e in &events {
        assert_eq!(e.key_id, Some(key_id), "{e:?}");
        assert_eq!(e.provider, Provider::Bedrock, "{e:?}");
        assert!(e.fallback, "{e:?}");
        assert_eq!(e.status, 200, "{e:?}");
        assert_eq!(e.region.as_deref(), Some("us-east-1"), "{e:?}");
        // Nothing configured: Claude Code's default model is found in the key's own Bedrock
        // model listing, in the key's geography, and priced as that model (not the echo).
        assert_eq!(e.requested_model.as_deref(), Some("claude-opus-5-5"), "{e:?}");
        assert_eq!(e.bedrock_model_id.as_deref(), Some("us.anthropic.claude-opus-5-5-v1:0"), "{e:?}");
        assert_eq!(e.bedrock_resolution, Some(ccp_schemas::events::TargetSource::Listing), "{e:?}");
        assert!(!e.model_substituted, "{e:?}");
        assert_eq!(e.priced_model.as_deref(), Some("claude-opus-5-5"), "{e:?}");
    }
    let mut sent: Vec<_> = bedrock
        .iter()
        .map(|b| {
            let u = b.usage.unwrap_or_default();
            (
                b.model_id.clone(),
                [u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens],
            )
        })
        .collect();
    let mut seen: Vec<_> = events
        .iter()
        .map(|e| {
            let u = &e.usage;
            (
                e.bedrock_model_id.clone(),
                [u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens],
            )
        })
        .collect();
    sent.sort();
    seen.sort();
    assert_eq!(
        seen, sent,
        "usage events (Bedrock model id, [input, output, cache_read, cache_creation]) vs what the fake Bedrock answered"
    );
    check_claude_code_events(&events, result);
    (bedrock, events)
}

fn describe_bedrock(b: &BedrockRequest) -> String {
    let body = b.body_json().unwrap_or_default();
    format!(
        "{} {} -> {} {:?} messages={} usage={:?}",
        b.method,
        b.model_id.as_deref().unwrap_or(&b.path),
        b.status,
        b.error_type,
        body["messages"].as_array().map_or(0, Vec::len),
        b.usage
    )
}

// ---------------------------------------------------------------------------------------------
// The clients as child processes.

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A client executable: `$var`, else `<repo>/<default>`; fails the test if it is missing.
fn client_path(var: &str, default: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(var).filter(|v| !v.is_empty()).map_or_else(|| repo_root().join(default), PathBuf::from);
    assert!(path.is_file(), "{what} not found at {} (set {var} or {INSTALL_HINT})", path.display());
    path
}

fn claude_bin() -> PathBuf {
    let bin = client_path("CCP_TEST_CLAUDE_BIN", ".local/clients/bin/claude", "Claude Code");
    let out = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} --version: {e} ({INSTALL_HINT})", bin.display()));
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(CLAUDE_CODE_VERSION),
        "{} is Claude Code {version:?}, the tests need {CLAUDE_CODE_VERSION} ({INSTALL_HINT})",
        bin.display()
    );
    bin
}

fn python_bin() -> PathBuf {
    client_path("CCP_TEST_PYTHON", ".local/clients/py/bin/python", "Python with the Anthropic SDK")
}

/// A fresh directory, removed on drop unless the test failed (then it is kept to look at).
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(label));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn sub(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn dump(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status.code(),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `cmd` (stdin closed, output to files in `dir`) without blocking the runtime the
/// proxy serves on; kills it and fails after `timeout`.
async fn run_client(mut cmd: Command, dir: &TempDir, name: &str, timeout: Duration) -> Run {
    let out_path = dir.0.join(format!("{name}.stdout"));
    let err_path = dir.0.join(format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e} ({INSTALL_HINT})"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let run = Run {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: start.elapsed(),
    };
    eprintln!("{name}: {}", run.dump());
    run
}

/// `claude <args>` headless, as a developer would run it against the proxy: only `PATH` is
/// inherited; `HOME` and the working directory are fresh and empty.
fn claude(base_url: &str, dir: &TempDir, args: &[&str]) -> Command {
    let mut cmd = Command::new(claude_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.sub("home"))
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("ANTHROPIC_API_KEY", API_KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .current_dir(dir.sub("work"));
    cmd
}

const CLAUDE_TIMEOUT: Duration = Duration::from_secs(120);

/// Claude Code's `--output-format json` result object.
fn result_json(run: &Run) -> serde_json::Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("claude's output is not one JSON object ({e}): {}", run.dump()))
}

/// What every request Claude Code sent upstream must look like (`status`: what the fake
/// Anthropic answered each).
fn check_claude_code_requests(recorded: &[RecordedRequest], key: &str, status: u16) {
    assert!(!recorded.is_empty(), "the fake Anthropic got no request");
    for r in recorded {
        eprintln!("upstream: {}", describe(r));
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str()),
            ("POST", "/v1/messages", "beta=true"),
            "Claude Code called something else: {}",
            describe(r)
        );
        assert_eq!(r.header("x-api-key"), Some(API_KEY), "credential passed on");
        assert!(r.header("x-ccp-access-key").is_none());
        let ua = r.header("user-agent").unwrap_or_default();
        assert!(ua.starts_with(&format!("claude-cli/{CLAUDE_CODE_VERSION}")), "user-agent {ua:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains(key), "the access key leaked upstream");
        // The proxy reads model and stream of bodies in this shape without parsing them.
        let (model, stream) = ccp_proxy::claude_code_shape(&r.body)
            .unwrap_or_else(|| panic!("Claude Code's body is no longer model first, stream last: {}", describe(r)));
        assert!(model.starts_with("claude-") && stream, "{model} {stream}");
        assert!(r.headers.iter().all(|(_, v)| !v.contains(key)), "the access key leaked upstream in a header");
        assert_eq!(r.status, status, "{}", describe(r));
    }
}

/// What every usage event of a Claude Code run must say, and that they add up to the usage
/// Claude Code itself reports (`result`: its `--output-format json` object).
fn check_claude_code_events(events: &[RequestCompleted], result: &serde_json::Value) {
    let sessions: HashSet<_> = events.iter().map(|e| e.session_id.as_deref()).collect();
    assert_eq!(sessions, HashSet::from([result["session_id"].as_str()]), "the events carry Claude Code's session id");
    let sum = |f: fn(&RequestCompleted) -> u64| events.iter().map(f).sum::<u64>();
    let usage = &result["usage"];
    assert_eq!(usage["input_tokens"], sum(|e| e.usage.input_tokens));
    assert_eq!(usage["output_tokens"], sum(|e| e.usage.output_tokens));
    assert_eq!(usage["cache_read_input_tokens"], sum(|e| e.usage.cache_read_input_tokens));
    assert_eq!(usage["cache_creation_input_tokens"], sum(|e| e.usage.cache_creation_input_tokens));
    for e in events {
        assert_eq!(e.endpoint, Endpoint::Messages);
        assert!(e.stream, "Claude Code streams");
        assert!(e.requested_model.as_deref().is_some_and(|m| m.starts_with("claude-")), "{e:?}");
        assert!(!e.incomplete && e.error_class.is_none(), "{e:?}");
        assert_eq!(e.client_version.as_deref(), Some(format!("claude-cli/{CLAUDE_CODE_VERSION}").as_str()));
        assert!(e.stop_reason.is_some(), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[actix_web::test]
async fn claude_code_answers_through_the_proxy() {
    claude_bin(); // fails now if Claude Code is missing
    let h = harness("cc_hi").await;
    let (key_id, key) = h.key().await;
    let before = h.seen().await;
    let dir = TempDir::new("cc_hi");

    let cmd = claude(&format!("{}/ak/{key}", h.url), &dir, &["-p", "say hi", "--output-format", "json"]);
    let run = run_client(cmd, &dir, "claude", CLAUDE_TIMEOUT).await;
    assert!(run.status.success(), "claude failed: {}", run.dump());
    let result = result_json(&run);
    assert_eq!(result["is_error"], false, "{}", run.dump());
    assert!(result["result"].as_str().is_some_and(|r| r.contains(DEFAULT_TEXT)), "result: {}", run.dump());

    let (recorded, events) = h.check_usage_events(key_id, &before).await;
    check_claude_code_requests(&recorded, &key, 200);
    check_claude_code_events(&events, &result);
}

#[actix_web::test]
async fn claude_code_completes_a_bash_tool_round_trip() {
    claude_bin(); // fails now if Claude Code is missing
    let h = harness("cc_tool").await;
    let (key_id, key) = h.key().await;
    let before = h.seen().await;
    let dir = TempDir::new("cc_tool");

    let prompt = format!("Please run this command.\nrun: echo {TOOL_RAN_OK}");
    let cmd = claude(
        &format!("{}/ak/{key}", h.url),
        &dir,
        &["-p", &prompt, "--allowedTools", "Bash", "--output-format", "json"],
    );
    let run = run_client(cmd, &dir, "claude", CLAUDE_TIMEOUT).await;
    assert!(run.status.success(), "claude failed: {}", run.dump());
    let result = result_json(&run);
    assert_eq!(result["is_error"], false, "{}", run.dump());
    assert!(
        result["result"].as_str().is_some_and(|r| r.contains(&format!("Tool said: {TOOL_RAN_OK}"))),
        "the tool's output should come back through the model: {}",
        run.dump()
    );

    let (recorded, events) = h.check_usage_events(key_id, &before).await;
    check_claude_code_requests(&recorded, &key, 200);
    check_claude_code_events(&events, &result);
    // The fake asked for the tool, Claude Code ran it and sent its output back.
    let tool_result = recorded.iter().find_map(|r| {
        let body = r.body_json()?;
        let last = body["messages"].as_array()?.last()?.clone();
        last["content"].as_array()?.iter().find(|b| b["type"] == "tool_result").cloned()
    });
    let tool_result = tool_result.unwrap_or_else(|| {
        panic!("no request carried a tool_result: {:?}", recorded.iter().map(describe).collect::<Vec<_>>())
    });
    assert!(tool_result.to_string().contains(TOOL_RAN_OK), "tool_result {tool_result}");
    assert!(
        events.iter().any(|e| e.stop_reason.as_deref() == Some("tool_use")),
        "the tool_use answer was recorded: {events:#?}"
    );
}

#[actix_web::test]
async fn claude_code_shows_the_proxy_message_for_a_refused_key() {
    claude_bin(); // fails now if Claude Code is missing
    let h = harness("cc_refused").await;
    let before = h.seen().await;
    let dir = TempDir::new("cc_refused");
    // Well-formed, never issued.
    let unknown = AccessKey::generate().unwrap().expose().to_owned();

    let cmd = claude(&format!("{}/ak/{unknown}", h.url), &dir, &["-p", "hi", "--output-format", "json"]);
    let run = run_client(cmd, &dir, "claude", CLAUDE_TIMEOUT).await;
    assert!(!run.status.success(), "claude should fail with an unknown key: {}", run.dump());
    // `x-should-retry: false`: no ten retries over three minutes.
    assert!(run.elapsed < Duration::from_secs(30), "claude gave up only after {:?}: {}", run.elapsed, run.dump());
    // Claude Code shows "Failed to authenticate. API Error: 401 <the proxy's message>".
    let result = result_json(&run);
    assert_eq!(result["is_error"], true, "{}", run.dump());
    assert_eq!(result["api_error_status"], 401, "{}", run.dump());
    let shown = result["result"].as_str().unwrap_or_default();
    assert!(
        shown.contains("API Error: 401")
            && shown.contains("access key is not known")
            && shown.contains("platform team"),
        "the proxy's 401 message should reach the developer: {}",
        run.dump()
    );

    // The same in plain text mode, as a developer sees it.
    let cmd = claude(&format!("{}/ak/{unknown}", h.url), &dir, &["-p", "hi"]);
    let text = run_client(cmd, &dir, "claude-text", CLAUDE_TIMEOUT).await;
    assert!(!text.status.success(), "{}", text.dump());
    assert!(text.elapsed < Duration::from_secs(30), "{}", text.dump());
    assert!(
        format!("{}{}", text.stdout, text.stderr).contains("platform team"),
        "the proxy's 401 message should reach the developer: {}",
        text.dump()
    );
    assert!(h.fake.requests().is_empty(), "nothing reached Anthropic");

    // One attempt per run (no retries), each recorded as refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events: Vec<_> = h.log.requests().await.into_iter().filter(|r| !before.contains(&r.request_id)).collect();
    assert_eq!(events.len(), 2, "one attempt per run: {events:#?}");
    for e in &events {
        assert_eq!(e.status, 401);
        assert_eq!(e.error_class, Some(ErrorClass::UnknownAccessKey));
        assert_eq!(e.key_id, None);
        assert_eq!(
            e.key_prefix.as_ref().map(ToString::to_string),
            Some(AccessKey::parse(&unknown).unwrap().display_prefix().to_string())
        );
        assert_eq!(e.client_version.as_deref(), Some(format!("claude-cli/{CLAUDE_CODE_VERSION}").as_str()));
    }
}

#[actix_web::test]
async fn anthropic_python_sdk_works_through_the_proxy() {
    let python = python_bin();
    let h = harness("sdk").await;
    // The SDK checks expect Anthropic's own 429 and in-stream errors: a plan-only user gets them
    // unchanged (plan-first users without a Bedrock key get the proxy's explaining 503 instead,
    // covered in hot_path.rs).
    let (key_id, key) = h.key_routed(Some(RoutingStrategy::PlanOnly)).await;
    let before = h.seen().await;
    let dir = TempDir::new("sdk");

    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/python/check_anthropic_sdk.py"))
        .arg(format!("{}/ak/{key}", h.url))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.sub("home"))
        .current_dir(dir.sub("work"));
    let run = run_client(cmd, &dir, "check_anthropic_sdk", Duration::from_secs(120)).await;
    assert!(run.status.success(), "SDK checks failed: {}", run.dump());
    let summary = run.stdout.lines().last().unwrap_or_default();
    let passed: usize = summary
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary line {summary:?}: {}", run.dump()));
    assert!(passed >= 6, "{}", run.dump());

    let (recorded, events) = h.check_usage_events(key_id, &before).await;
    for r in &recorded {
        eprintln!("upstream: {}", describe(r));
        // SDK 2.14 sends `api_key` as `Authorization: Bearer` (not `x-api-key`); either way
        // the client's credential reaches Anthropic untouched.
        assert_eq!(r.header("authorization"), Some(format!("Bearer {API_KEY}").as_str()), "{:?}", r.headers);
        assert!(r.header("x-ccp-access-key").is_none());
        assert!(!String::from_utf8_lossy(&r.body).contains(&key));
        assert!(r.headers.iter().all(|(_, v)| !v.contains(&key)));
    }
    let with_usage = recorded
        .iter()
        .filter(|r| r.usage.is_some() && matches!(r.path.as_str(), "/v1/messages" | "/v1/messages/count_tokens"))
        .count();
    let events_with_usage = events.iter().filter(|e| e.usage.input_tokens + e.usage.output_tokens > 0).count();
    assert_eq!(events_with_usage, with_usage, "{events:#?}");
    assert!(events.iter().any(|e| e.endpoint == Endpoint::CountTokens && e.status == 200), "count_tokens recorded");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.error_class, Some(ErrorClass::UpstreamRateLimited | ErrorClass::NoBedrockFallback))),
        "the rate limit recorded: {events:#?}"
    );
}

/// Anthropic rate-limits the first request of a key without a Bedrock fallback: the proxy
/// answers it with an error (keeping Anthropic's `retry-after`), Claude Code waits and retries
/// through the proxy, and the retry is answered.
#[actix_web::test]
async fn claude_code_retries_an_anthropic_rate_limit_through_the_proxy() {
    claude_bin(); // fails now if Claude Code is missing
    let h = harness("cc_429").await;
    let (key_id, key) = h.key().await;
    let before = h.seen().await;
    let dir = TempDir::new("cc_429");
    h.fake.enqueue(Scenario::new(ScenarioName::RateLimit).with_retry_after("1"));

    let cmd = claude(&format!("{}/ak/{key}", h.url), &dir, &["-p", "say hi", "--output-format", "json"]);
    let run = run_client(cmd, &dir, "claude", CLAUDE_TIMEOUT).await;
    assert!(run.status.success(), "claude failed: {}", run.dump());
    let result = result_json(&run);
    assert_eq!(result["is_error"], false, "{}", run.dump());
    assert_eq!(result["result"], DEFAULT_TEXT, "{}", run.dump());
    assert!(run.elapsed >= Duration::from_secs(1), "Claude Code waited the retry-after second: {}", run.dump());

    let (recorded, events) = h.check_usage_events(key_id, &before).await;
    let statuses: Vec<u16> = recorded.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200], "one rate limit, one retry");
    assert_eq!(
        recorded[0].body_json().unwrap()["messages"],
        recorded[1].body_json().unwrap()["messages"],
        "the retry is the same conversation"
    );
    let refused: Vec<_> = events.iter().filter(|e| e.status != 200).collect();
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert!(refused[0].error_class.is_some() && refused[0].status >= 429, "{events:#?}");
    eprintln!("the proxy answered Anthropic's 429 with {} ({:?})", refused[0].status, refused[0].error_class);
    let answered: Vec<_> = events.iter().filter(|e| e.status == 200).cloned().collect();
    check_claude_code_events(&answered, &result);
}

/// Enough 429s for every request of one Claude Code run: each Anthropic attempt is refused.
fn rate_limit_everything(h: &Harness) {
    for _ in 0..10 {
        h.fake.enqueue(Scenario::new(ScenarioName::RateLimit));
    }
}

/// What Claude Code must not notice of a failover: no error, no retry (the fake's 429 says
/// `retry-after: 7`; Claude Code would have waited and sent the request again, which
/// [`check_failover`] rules out), nothing about a rate limit or Bedrock, and the usage counted
/// under the model Claude Code asked for.
fn check_failover_invisible(run: &Run, result: &serde_json::Value, anthropic: &[RecordedRequest]) {
    assert_eq!(result["is_error"], false, "{}", run.dump());
    assert_eq!(result["subtype"], "success", "{}", run.dump());
    assert!(result.get("api_error_status").is_none_or(serde_json::Value::is_null), "{}", run.dump());
    let said = result["result"].as_str().unwrap_or_default().to_lowercase();
    assert!(!said.contains("rate limit") && !said.contains("429"), "{}", run.dump());
    let stderr = run.stderr.to_lowercase();
    assert!(!["rate", "429", "bedrock", "retry"].iter().any(|w| stderr.contains(w)), "{}", run.dump());
    let requested: HashSet<String> =
        anthropic.iter().filter_map(|r| r.body_json()?["model"].as_str().map(str::to_owned)).collect();
    let counted: HashSet<String> =
        result["modelUsage"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    assert!(
        !counted.is_empty() && counted.is_subset(&requested),
        "usage counted under {counted:?}, Claude Code asked for {requested:?}: {}",
        run.dump()
    );
}

/// Anthropic rate-limits every request of a key with a Bedrock key: Claude Code gets Bedrock's
/// answer at once, as if Anthropic had given it.
#[actix_web::test]
async fn claude_code_gets_bedrocks_answer_when_anthropic_rate_limits() {
    claude_bin(); // fails now if Claude Code is missing
                  // A breaker that does not open here, so every request is tried on Anthropic first.
    let h = failover_harness("cc_fo_hi", |s| s.proxy.circuit_failure_threshold = 1000).await;
    let (key_id, key) = h.key_with_bedrock().await;
    let before = h.seen().await;
    let dir = TempDir::new("cc_fo_hi");
    rate_limit_everything(&h);

    let cmd = claude(&format!("{}/ak/{key}", h.url), &dir, &["-p", "say hi", "--output-format", "json"]);
    let run = run_client(cmd, &dir, "claude", CLAUDE_TIMEOUT).await;
    assert!(run.status.success(), "claude failed: {}", run.dump());
    let result = result_json(&run);
    check_failover_invisible(&run, &result, &h.fake.requests());
    assert!(
        result["result"].as_str().is_some_and(|r| r.contains(fake_bedrock::DEFAULT_TEXT)),
        "Bedrock's answer: {}",
        run.dump()
    );

    let (bedrock, events) = check_failover(&h, key_id, &key, &before, &result).await;
    assert_eq!(h.fake.requests().len(), bedrock.len(), "one Anthropic attempt per Bedrock answer");
    assert!(events.iter().all(|e| e.fallback_reason == Some(FallbackReason::RateLimited)), "{events:#?}");
}

/// The same, through Claude Code's Bash tool: the `tool_use` comes from Bedrock, Claude Code
/// runs the command, and its `tool_result` goes to Bedrock too (Anthropic refuses it again).
#[actix_web::test]
async fn claude_code_completes_a_bash_tool_round_trip_across_a_failover() {
    claude_bin(); // fails now if Claude Code is missing
    let h = failover_harness("cc_fo_tool", |s| s.proxy.circuit_failure_threshold = 1000).await;
    let (key_id, key) = h.key_with_bedrock().await;
    let before = h.seen().await;
    let dir = TempDir::new("cc_fo_tool");
    rate_limit_everything(&h);

    let prompt = format!("Please run this command.\nrun: echo {TOOL_RAN_OK}");
    let cmd = claude(
        &format!("{}/ak/{key}", h.url),
        &dir,
        &["-p", &prompt, "--allowedTools", "Bash", "--output-format", "json"],
    );
    let run = run_client(cmd, &dir, "claude", CLAUDE_TIMEOUT).await;
    assert!(run.status.success(), "claude failed: {}", run.dump());
    let result = result_json(&run);
    check_failover_invisible(&run, &result, &h.fake.requests());
    assert!(
        result["result"].as_str().is_some_and(|r| r.contains(&format!("Tool said: {TOOL_RAN_OK}"))),
        "the tool's output should come back through Bedrock: {}",
        run.dump()
    );

    let (bedrock, events) = check_failover(&h, key_id, &key, &before, &result).await;
    assert_eq!(h.fake.requests().len(), bedrock.len(), "one Anthropic attempt per Bedrock answer");
    assert!(events.iter().all(|e| e.fallback_reason == Some(FallbackReason::RateLimited)), "{events:#?}");
    assert!(bedrock.len() >= 2, "the tool_use and the answer to its result: {bedrock:#?}");
    // Bedrock asked for the tool, Claude Code ran it and sent its output back (to Bedrock).
    let tool_result = bedrock.iter().find_map(|b| {
        let body = b.body_json()?;
        let last = body["messages"].as_array()?.last()?.clone();
        last["content"].as_array()?.iter().find(|c| c["type"] == "tool_result").cloned()
    });
    let tool_result = tool_result.unwrap_or_else(|| {
        panic!(
            "no Bedrock request carried a tool_result: {:?}",
            bedrock.iter().map(describe_bedrock).collect::<Vec<_>>()
        )
    });
    assert!(tool_result.to_string().contains(TOOL_RAN_OK), "tool_result {tool_result}");
    assert!(
        tool_result["tool_use_id"].as_str().is_some_and(|id| id.starts_with("toolu_bdrk_")),
        "the result answers Bedrock's tool_use: {tool_result}"
    );
    assert!(
        events.iter().any(|e| e.stop_reason.as_deref() == Some("tool_use")),
        "the tool_use answer was recorded: {events:#?}"
    );
}
