//! `ccp-bench`: measures, in one run and against the same upstream, the proxy versus calling
//! that upstream directly: latency (streaming and JSON, concurrency 1 and 32), throughput at
//! concurrency 32, added time to first byte on a paced stream, the proxy's CPU time per request
//! and its memory; the same passthrough figures for a key whose user has a monthly budget and a
//! Bedrock key (budget and breaker checks on every request); and the failover path (Anthropic
//! answers 429, the proxy replays on a fake Bedrock) against the two upstreams' own time, measured
//! directly in the same run. When nginx is installed, it is measured in the same rounds as a
//! plain reverse proxy in front of the same upstream: a reference for what any proxy adds here;
//! and so is `ccp-bench-floor`, actix-web and awc configured as the proxy is and doing nothing
//! else: what any proxy on this stack adds here (the framework floor).
//! Prints a table with the targets and writes `.local/bench/latest.json`.
//!
//! Run it through `scripts/bench` (release build, NATS stack). See `--help`.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod load;
mod procfs;
mod reference;
mod report;
mod upstream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use ccp_schemas::events::{BudgetSet, Event};
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;
use ccp_tests::Service;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::load::{RequestSpec, Summary};
use crate::procfs::{CpuDelta, CpuSample};
use crate::report::{FailoverResult, PhaseResult, Report, RssResult, Setup, TargetResult};
use crate::upstream::{Responses, Upstream, PACE_HEADER, SCENARIO_HEADER};

/// The Bedrock API key registered for the keys that fail over (the fake only wants a bearer).
const BEDROCK_KEY: &str = "ABSKQmVuY2hCZWRyb2NrQVBJS2V5LWJlbmNoLTAwMDE=";
/// Monthly budget of the users with budget checks, USD (never reached).
const BUDGET_USD: &str = "1000000";
/// Bedrock model of those keys for requested models the configuration does not map.
const DEFAULT_BEDROCK_MODEL: &str = "global.anthropic.claude-opus-4-5-20251101-v1:0";
/// Anthropic failures that would open a key's circuit: never reached during a run, so every
/// failover request really asks Anthropic first (an open circuit would skip it).
const CIRCUIT_FAILURE_THRESHOLD: u32 = 1_000_000_000;

const USAGE: &str = "ccp-bench [options]   (normally run through scripts/bench)

Runs the proxy (target/release/ccp-proxy) as a child process in front of an in-process fake
Anthropic and compares it with calling that upstream directly. Needs NATS (scripts/stack.sh
start; CCP_TEST_NATS_URL, default nats://127.0.0.1:4222).

Options:
  --workers N        proxy worker threads (CCP__PROXY__WORKERS)            [1]
  --pin              client+upstream on CPU 0, proxy on CPU 1 (taskset)    [off]
  --n1 N             requests per target at concurrency 1                  [2000]
  --n32 N            requests per target at concurrency 32                 [5000]
  --ttfb-n N         paced streams per target for TTFB (c=1)               [200]
  --pace-ms N        milliseconds between SSE events of paced streams      [20]
  --rss-n N          paced streams through the proxy at c=32 for peak RSS  [96]
  --warmup N         warmup requests per target and phase (at least)       [200]
  --rounds N         measured rounds per phase, alternating direct/proxy   [4]
  --failover-n N     failover requests per target and mode (c=1)           [500]
  --budget-enforce M budgets.enforce of the proxy: all | bedrock            [all]
                     (all: the budget check runs on every request, so the
                     +checks passthrough rows measure it; bedrock: the default,
                     budgets checked on the failover path only)
  --quick            small counts (smoke test): n1=200 n32=500 ttfb-n=20 warmup=50
                     failover-n=100
  --proxy-bin PATH   proxy binary                       [$CARGO_TARGET_DIR|target/release/ccp-proxy]
  --fixture PATH     Claude Code request capture (JSON with headers and body)
                     [/work/shared/fixtures/claude-code/request_say_hi_v2.1.332.json]
  --nats-pid PID     also report the NATS server's CPU per request
  --nginx PATH|off   nginx measured as a plain reverse proxy (reference rows) [nginx in PATH]
  --floor PATH|off   actix-web + awc passthrough doing nothing else (reference rows: the
                     framework floor)                            [ccp-bench-floor beside ccp-bench]
  --out PATH         JSON results                                          [.local/bench/latest.json]";

/// Command-line options.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Options {
    workers: usize,
    pin: bool,
    n1: usize,
    n32: usize,
    ttfb_n: usize,
    pace_ms: u64,
    rss_n: usize,
    warmup: usize,
    rounds: usize,
    failover_n: usize,
    budget_enforce: String,
    proxy_bin: PathBuf,
    fixture: PathBuf,
    nats_pid: Option<u32>,
    /// nginx for the reference rows, when installed and not turned off.
    nginx: Option<PathBuf>,
    /// The framework floor for its reference rows, when built and not turned off.
    floor: Option<PathBuf>,
    out: PathBuf,
}

impl Options {
    fn parse() -> anyhow::Result<Option<Self>> {
        let mut o = Self {
            workers: 1,
            pin: false,
            n1: 2000,
            n32: 5000,
            ttfb_n: 200,
            pace_ms: 20,
            rss_n: 96,
            warmup: 200,
            rounds: 4,
            failover_n: 500,
            budget_enforce: "all".into(),
            proxy_bin: ccp_tests::target_dir().join("release").join("ccp-proxy"),
            fixture: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/claude-code/request_say_hi_v2.1.332.json"),
            nats_pid: None,
            nginx: reference::find(),
            floor: reference::find_floor(),
            out: PathBuf::from(".local/bench/latest.json"),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "-h" | "--help" => {
                    println!("{USAGE}");
                    return Ok(None);
                }
                "--workers" => o.workers = value()?.parse()?,
                "--pin" => o.pin = true,
                "--n1" => o.n1 = value()?.parse()?,
                "--n32" => o.n32 = value()?.parse()?,
                "--ttfb-n" => o.ttfb_n = value()?.parse()?,
                "--pace-ms" => o.pace_ms = value()?.parse()?,
                "--rss-n" => o.rss_n = value()?.parse()?,
                "--warmup" => o.warmup = value()?.parse()?,
                "--rounds" => o.rounds = value()?.parse()?,
                "--failover-n" => o.failover_n = value()?.parse()?,
                "--budget-enforce" => o.budget_enforce = value()?,
                "--quick" => {
                    o.n1 = 200;
                    o.n32 = 500;
                    o.ttfb_n = 20;
                    o.warmup = 50;
                    o.rss_n = 64;
                    o.failover_n = 100;
                }
                "--proxy-bin" => o.proxy_bin = value()?.into(),
                "--fixture" => o.fixture = value()?.into(),
                "--nats-pid" => o.nats_pid = Some(value()?.parse()?),
                "--nginx" => {
                    o.nginx = match value()?.as_str() {
                        "off" => None,
                        path => Some(path.into()),
                    }
                }
                "--floor" => {
                    o.floor = match value()?.as_str() {
                        "off" => None,
                        path => Some(path.into()),
                    }
                }
                "--out" => o.out = value()?.into(),
                other => bail!("unknown argument {other}\n\n{USAGE}"),
            }
        }
        if o.workers == 0 || o.n1 == 0 || o.n32 == 0 || o.ttfb_n == 0 || o.failover_n == 0 {
            bail!("--workers, --n1, --n32, --ttfb-n and --failover-n must be positive");
        }
        if !["all", "bedrock"].contains(&o.budget_enforce.as_str()) {
            bail!("--budget-enforce takes all or bedrock");
        }
        Ok(Some(o))
    }
}

/// Progress lines on stderr, with the time since start.
struct Progress(Instant);

impl Progress {
    fn say(&self, msg: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {msg}", self.0.elapsed().as_secs_f64());
    }
}

fn main() -> ExitCode {
    let opts = match Options::parse() {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccp-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if opts.pin {
        if let Err(e) = pin_self("0") {
            eprintln!("ccp-bench: cannot pin to CPU 0: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    // The client runs on this thread alone; the upstream has its own thread.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ccp-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccp-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Restricts this process (every thread, and those it starts later) to `cpus`.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("run taskset")?;
    if !status.success() {
        bail!("taskset failed: {status}");
    }
    Ok(())
}

/// The proxy child process and what is needed to clean up after it.
struct Stack {
    log: Log,
    proxy: Service,
    spool_dir: PathBuf,
    proxy_url: String,
    /// A plain key: no budget, no Bedrock key (the passthrough baseline).
    key: String,
    /// A key whose user has a monthly budget and which has a Bedrock key (passthrough "+checks").
    checked_key: String,
    /// The same setup, another user: the failover requests (its breaker counts their 429s).
    failover_key: String,
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let progress = Progress(Instant::now());
    let nats_url = ccp_tests::nats_url();
    check_reachable(&nats_url).await?;
    let upstream = Upstream::start()?;
    progress.say(format!("upstream listening on {}, fake Bedrock on {}", upstream.url(), upstream.bedrock_url()));

    let mut settings = ccp_tests::test_settings("bench");
    let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
    settings.nats.prefix = format!("bench_{}", &ulid[ulid.len() - 12..]);
    settings.secrets.master_key = LocalMasterKey::generate_b64().map_err(|e| anyhow::anyhow!("master key: {e}"))?;
    let log = Log::new(&settings).await;
    progress.say(format!("NATS {nats_url}, prefix {} (streams created)", settings.nats.prefix));
    let spool_dir = std::env::temp_dir().join(format!("ccp-bench-spool-{}", settings.nats.prefix));

    let started = start_proxy(&opts, &settings, &upstream, log.clone(), spool_dir.clone()).await;
    let mut references = reference::References::default();
    if started.is_ok() {
        if let Some(bin) = &opts.nginx {
            match reference::start_nginx(bin, &upstream.url(), opts.pin).await {
                Ok(nginx) => {
                    progress.say(format!("nginx reference (pid {}) at {}", nginx.pid(), nginx.url));
                    references.nginx = Some(nginx);
                }
                Err(e) => progress.say(format!("no nginx reference rows: {e:#}")),
            }
        }
        if let Some(bin) = &opts.floor {
            match reference::start_floor(bin, &upstream.url(), opts.workers, opts.pin).await {
                Ok(floor) => {
                    progress.say(format!("framework floor (pid {}) at {}", floor.pid(), floor.url));
                    references.floor = Some(floor);
                }
                Err(e) => progress.say(format!("no framework floor rows: {e:#}")),
            }
        }
    }
    let result = match started {
        Ok(stack) => {
            let outcome = tokio::select! {
                r = measure(&opts, &stack, &references, &upstream, &progress) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            };
            drop(references);
            let mut stack = stack;
            progress.say("stopping the proxy");
            if stack.proxy.terminate(Duration::from_secs(20)).is_none() {
                progress.say("proxy did not stop in 20 s; killing it");
            }
            if outcome.is_err() {
                eprintln!("proxy log: {}", stack.proxy.log.display());
            } else {
                let _ = std::fs::remove_file(&stack.proxy.log);
            }
            drop(stack.proxy);
            let _ = std::fs::remove_dir_all(&stack.spool_dir);
            outcome
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&spool_dir);
            Err(e)
        }
    };
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    progress.say(format!("deleted the streams and buckets of prefix {}", settings.nats.prefix));
    drop(upstream);
    let report = result?;
    report.print(&mut std::io::stdout())?;
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&report.to_json())?)
        .with_context(|| format!("write {}", opts.out.display()))?;
    progress.say(format!("results written to {}", opts.out.display()));
    Ok(())
}

/// Fails early, with a hint, when NATS does not accept connections.
async fn check_reachable(nats_url: &str) -> anyhow::Result<()> {
    let first = nats_url.split(',').next().unwrap_or(nats_url);
    let hostport = first.trim().trim_start_matches("nats://").rsplit('@').next().unwrap_or_default().to_owned();
    let hostport = if hostport.contains(':') { hostport } else { format!("{hostport}:4222") };
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&hostport)).await {
        Ok(Ok(_)) => Ok(()),
        _ => bail!("NATS at {nats_url} is not reachable; run scripts/stack.sh start"),
    }
}

async fn start_proxy(
    opts: &Options,
    settings: &ccp_runtime::config::Settings,
    upstream: &Upstream,
    log: Log,
    spool_dir: PathBuf,
) -> anyhow::Result<Stack> {
    if !opts.proxy_bin.exists() {
        bail!("{} does not exist; build it: cargo build --release -p ccp-proxy", opts.proxy_bin.display());
    }
    let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
    let env: Vec<(String, String)> = vec![
        ("CCP__NATS__URL".into(), settings.nats.url.clone()),
        ("CCP__NATS__PREFIX".into(), settings.nats.prefix.clone()),
        ("CCP__SECRETS__ACCESS_KEY_PEPPER".into(), settings.secrets.access_key_pepper.expose().to_owned()),
        ("CCP__PROXY__ANTHROPIC_BASE_URL".into(), upstream.url()),
        ("CCP__PROXY__LISTEN".into(), listen.clone()),
        ("CCP__PROXY__SPOOL_DIR".into(), spool_dir.display().to_string()),
        ("CCP__PROXY__WORKERS".into(), opts.workers.to_string()),
        ("CCP__PROXY__BEDROCK_ENDPOINT_URL".into(), upstream.bedrock_url()),
        ("CCP__PROXY__CIRCUIT_FAILURE_THRESHOLD".into(), CIRCUIT_FAILURE_THRESHOLD.to_string()),
        ("CCP__SECRETS__MASTER_KEY".into(), settings.secrets.master_key.expose().to_owned()),
        ("CCP__SECRETS__MASTER_KEY_ID".into(), settings.secrets.master_key_id.clone()),
        ("CCP__BUDGETS__ENFORCE".into(), opts.budget_enforce.clone()),
    ];
    let proxy = reference::spawn(&opts.proxy_bin, &[], &env, opts.pin)
        .with_context(|| format!("start {}", opts.proxy_bin.display()))?;
    let proxy_url = format!("http://{listen}");
    let mut stack = Stack {
        log,
        proxy,
        spool_dir,
        proxy_url,
        key: String::new(),
        checked_key: String::new(),
        failover_key: String::new(),
    };
    let ready = ccp_tests::wait_http_ok(&format!("{}/ready", stack.proxy_url), Duration::from_secs(30)).await;
    if let Err(e) = ready {
        let tail = tail(&stack.proxy.log_text(), 20);
        let _ = stack.proxy.terminate(Duration::from_secs(5));
        bail!("the proxy did not become ready: {e}\n--- proxy log:\n{tail}");
    }
    let (_, _, key) = stack.log.user_with_key("bench").await;
    stack.key = key.expose().to_owned();
    let prepared = async {
        let master = LocalMasterKey::new(settings.secrets.master_key_id.clone(), &settings.secrets.master_key)
            .map_err(|e| anyhow::anyhow!("master key: {e}"))?;
        let (checked, _) = bedrock_user(&stack.log, "bench-checked", &master).await?;
        let (failover, seq) = bedrock_user(&stack.log, "bench-failover", &master).await?;
        stack.checked_key = checked;
        stack.failover_key = failover;
        wait_applied(&stack.proxy_url, seq).await?;
        for key in [&stack.key, &stack.checked_key, &stack.failover_key] {
            wait_accepted(&stack.proxy_url, key).await?;
        }
        anyhow::Ok(())
    };
    if let Err(e) = prepared.await {
        let tail = tail(&stack.proxy.log_text(), 20);
        let _ = stack.proxy.terminate(Duration::from_secs(5));
        bail!("{e:#}\n--- proxy log:\n{tail}");
    }
    Ok(stack)
}

/// A user with a monthly budget and one key with a Bedrock key (and a default Bedrock model);
/// returns the key and the admin stream sequence of the last event.
async fn bedrock_user(log: &Log, name: &str, master: &LocalMasterKey) -> anyhow::Result<(String, u64)> {
    let (user_id, key_id, key) = log.user_with_key(name).await;
    log.register_bedrock_key(user_id, key_id, master, BEDROCK_KEY).await;
    log.set_bedrock_settings(user_id, key_id, None, Some(DEFAULT_BEDROCK_MODEL)).await;
    let budget: BudgetSet =
        serde_json::from_value(serde_json::json!({"user_id": user_id, "monthly_limit_usd": BUDGET_USD}))
            .context("budget event")?;
    let seq = log.append(Event::BudgetSet(budget)).await;
    Ok((key.expose().to_owned(), seq))
}

/// Waits until the proxy has applied the admin stream up to `seq`.
async fn wait_applied(proxy_url: &str, seq: u64) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: serde_json::Value = client.get(format!("{proxy_url}/ready")).send().await?.json().await?;
        if ready["admin_stream_seq"].as_u64().unwrap_or(0) >= seq {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the proxy did not apply the admin stream up to {seq}: {ready}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until the proxy knows the key (the admin stream is followed asynchronously).
async fn wait_accepted(proxy_url: &str, key: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = client
            .post(format!("{proxy_url}/ak/{key}/v1/messages"))
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

/// The Claude Code request: headers (minus framing ones) and the body as JSON.
fn claude_code_request(path: &Path) -> (HeaderMap, serde_json::Value, Vec<String>, &'static str) {
    let text = std::fs::read_to_string(path).ok();
    let parsed = text.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let order = text.as_deref().and_then(|s| serde_json::from_str::<FixtureOrder>(s).ok());
    let mut headers = HeaderMap::new();
    if let (Some(f), Some(order)) = (parsed.filter(|f| f["body"].is_object()), order) {
        for h in f["headers"].as_array().into_iter().flatten() {
            let (Some(n), Some(v)) = (h[0].as_str(), h[1].as_str()) else {
                continue;
            };
            if ["content-length", "connection", "host", "transfer-encoding"].iter().any(|x| n.eq_ignore_ascii_case(x)) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(n), HeaderValue::try_from(v)) {
                headers.append(n, v);
            }
        }
        return (headers, f["body"].clone(), order.body.0, "Claude Code fixture");
    }
    for (n, v) in [
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "claude-cli/2.1.332 (external, sdk-cli)"),
        ("x-claude-code-session-id", "6fe7ba0a-81a1-4871-8646-c1d0f9bb7df5"),
        ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-ant-bench"),
        ("x-app", "cli"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
    ] {
        headers.insert(n, HeaderValue::from_static(v));
    }
    let filler = "You are Claude Code, Anthropic's official CLI. ".repeat(200);
    let tools: Vec<serde_json::Value> = (0..16)
        .map(|i| {
            serde_json::json!({
                "name": format!("Tool{i}"),
                "description": "Runs a tool. ".repeat(180),
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            })
        })
        .collect();
    let body = serde_json::json!({
        "model": "claude-opus-4-1-20250805",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": filler}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}],
        "tools": tools,
        "metadata": {"user_id": "user_bench"},
        "stream": true,
    });
    let order = ["model", "max_tokens", "system", "messages", "tools", "metadata", "stream"];
    (headers, body, order.map(String::from).into(), "synthesized")
}

/// The names of a JSON object's members in the order written (`serde_json::Value` sorts them).
struct MemberOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for MemberOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = MemberOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MemberOrder, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    names.push(name);
                }
                Ok(MemberOrder(names))
            }
        }
        d.deserialize_map(Names)
    }
}

#[derive(serde::Deserialize)]
struct FixtureOrder {
    body: MemberOrder,
}

/// `body` written as Claude Code writes it: its members in `order` (then any others), compact.
fn in_order(body: &serde_json::Value, order: &[String]) -> anyhow::Result<Vec<u8>> {
    let map = body.as_object().context("the request body is not a JSON object")?;
    let rest = map.keys().filter(|k| !order.contains(k));
    let mut out = vec![b'{'];
    for (i, name) in order.iter().filter(|k| map.contains_key(*k)).chain(rest).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name)?;
        out.push(b':');
        serde_json::to_writer(&mut out, &map[name])?;
    }
    out.push(b'}');
    Ok(out)
}

/// Who is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The upstream, directly.
    Direct,
    /// The proxy, with the plain key.
    Proxy,
    /// The proxy, with the key whose user has a budget and a Bedrock key.
    Checked,
    /// nginx in front of the upstream (reference).
    Nginx,
    /// The framework floor in front of the upstream (reference).
    Floor,
}

impl Target {
    /// The process in the middle, whose CPU is reported.
    fn middle(self) -> Option<Middle> {
        match self {
            Target::Direct => None,
            Target::Proxy | Target::Checked => Some(Middle::Proxy),
            Target::Nginx => Some(Middle::Nginx),
            Target::Floor => Some(Middle::Floor),
        }
    }
}

/// The process between the client and the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Middle {
    Proxy,
    Nginx,
    Floor,
}

/// One measured setting.
struct Phase {
    name: &'static str,
    stream: bool,
    concurrency: usize,
    count: usize,
    pace_ms: u64,
}

/// What `measure` prepared for every phase.
struct Bench<'a> {
    client: reqwest::Client,
    headers: HeaderMap,
    stream_body: Bytes,
    json_body: Bytes,
    /// What the proxy sends Bedrock for these bodies (the same for both: `stream` is dropped).
    bedrock_body: Bytes,
    /// Headers of a direct Bedrock call.
    bedrock_headers: HeaderMap,
    /// The Bedrock model the failover requests go to.
    bedrock_model_id: String,
    responses: Responses,
    upstream: &'a Upstream,
    stack: &'a Stack,
    /// The reference proxies, those running.
    references: &'a reference::References,
    opts: &'a Options,
    clk_tck: u64,
    progress: &'a Progress,
    /// The proxy's CPU use when idle, ns per second (timers, NATS keep-alive).
    proxy_idle_ns_per_s: f64,
}

/// What the measured rounds of one target add up to.
#[derive(Default)]
struct Accumulated {
    samples: Vec<load::Sample>,
    wall: Duration,
    proxy_sched_ns: u64,
    proxy_ticks_ns: u64,
    proxy_sys_ns: u64,
    client_ns: u64,
    upstream_ns: u64,
    nats_ns: Option<u64>,
    other_ns: u64,
    steal_ticks: u64,
}

/// CPU of everything involved, at one moment.
struct CpuSnapshot {
    /// The process in the middle (the proxy during direct runs).
    middle: CpuSample,
    own_total: u64,
    own: CpuSample,
    system: procfs::SystemCpu,
    own_upstream: u64,
    nats: Option<CpuSample>,
}

impl Bench<'_> {
    /// The process whose CPU a block through `middle` reports: the proxy's during direct runs.
    fn middle_pid(&self, middle: Option<Middle>) -> anyhow::Result<u32> {
        let reference = match middle {
            None | Some(Middle::Proxy) => return Ok(self.stack.proxy.child.id()),
            Some(Middle::Nginx) => &self.references.nginx,
            Some(Middle::Floor) => &self.references.floor,
        };
        reference.as_ref().map(reference::Reference::pid).context("the reference is not running")
    }

    fn snapshot(&self, middle: Option<Middle>) -> anyhow::Result<CpuSnapshot> {
        let own = procfs::threads(std::process::id());
        Ok(CpuSnapshot {
            middle: CpuSample::read(self.middle_pid(middle)?)?,
            own_total: own.iter().map(|(_, ns)| ns).sum(),
            own: CpuSample::read(std::process::id())?,
            system: procfs::SystemCpu::read()?,
            own_upstream: own.iter().filter(|(name, _)| name == "bench-upstream").map(|(_, ns)| ns).sum(),
            nats: self.opts.nats_pid.and_then(|p| CpuSample::read(p).ok()),
        })
    }

    fn spec(&self, target: Target, phase: &Phase) -> anyhow::Result<Arc<RequestSpec>> {
        let url = match target {
            Target::Direct => format!("{}/v1/messages?beta=true", self.upstream.url()),
            Target::Proxy => format!("{}/ak/{}/v1/messages?beta=true", self.stack.proxy_url, self.stack.key),
            Target::Checked => format!("{}/ak/{}/v1/messages?beta=true", self.stack.proxy_url, self.stack.checked_key),
            Target::Nginx => match &self.references.nginx {
                Some(nginx) => format!("{}/v1/messages?beta=true", nginx.url),
                None => bail!("no nginx running"),
            },
            // The proxy's URL shape: the floor strips /ak/{key} as the proxy does.
            Target::Floor => match &self.references.floor {
                Some(floor) => format!("{}/ak/{}/v1/messages?beta=true", floor.url, self.stack.key),
                None => bail!("no framework floor running"),
            },
        };
        let mut extra = Vec::new();
        if phase.pace_ms > 0 {
            extra.push((PACE_HEADER, phase.pace_ms.to_string()));
        }
        let (body, expect) = if phase.stream {
            (self.stream_body.clone(), self.responses.sse_body_len)
        } else {
            (self.json_body.clone(), self.responses.json_body_len)
        };
        RequestSpec::new(&url, &self.headers, &extra, body, expect)
    }

    /// Runs `count` requests and adds what they cost to `acc`.
    async fn block(
        &self,
        spec: &Arc<RequestSpec>,
        middle: Option<Middle>,
        concurrency: usize,
        count: usize,
        acc: &mut Accumulated,
    ) -> anyhow::Result<()> {
        let before = self.snapshot(middle)?;
        let run = load::run(&self.client, spec, concurrency, count).await?;
        let after = self.snapshot(middle)?;
        let proxy = CpuDelta::between(before.middle, after.middle, self.clk_tck);
        let upstream_ns = after.own_upstream.saturating_sub(before.own_upstream);
        // NATS (Go) starts and ends threads: utime+stime counts the ended ones too.
        let nats_ns = match (before.nats, after.nats) {
            (Some(b), Some(a)) => Some(CpuDelta::between(b, a, self.clk_tck).ticks_ns),
            _ => None,
        };
        // Machine busy time not spent by this process, the proxy or NATS: other work competing
        // for the cores (a compile, a test run) skews the figures.
        let busy_ns = after.system.busy.saturating_sub(before.system.busy) * (1_000_000_000 / self.clk_tck.max(1));
        let ours_ns =
            CpuDelta::between(before.own, after.own, self.clk_tck).ticks_ns + proxy.ticks_ns + nats_ns.unwrap_or(0);
        acc.samples.extend(run.samples);
        acc.wall += run.wall;
        acc.proxy_sched_ns += proxy.sched_ns;
        acc.proxy_ticks_ns += proxy.ticks_ns;
        acc.proxy_sys_ns += proxy.sys_ns;
        acc.upstream_ns += upstream_ns;
        acc.client_ns += after.own_total.saturating_sub(before.own_total).saturating_sub(upstream_ns);
        acc.nats_ns = nats_ns.map(|n| acc.nats_ns.unwrap_or(0) + n);
        acc.other_ns += busy_ns.saturating_sub(ours_ns);
        acc.steal_ticks += after.system.steal.saturating_sub(before.system.steal);
        Ok(())
    }

    fn result(&self, acc: Accumulated, middle: Option<Middle>, warmup: usize) -> TargetResult {
        let proxied = middle.is_some();
        // nginx and the floor do nothing when idle; the proxy follows NATS and ticks timers.
        let idle_ns_per_s = if middle == Some(Middle::Proxy) { self.proxy_idle_ns_per_s } else { 0.0 };
        let n = acc.samples.len().max(1) as f64;
        let per_req_ms = |ns: u64| ns as f64 / n / 1e6;
        let wall = acc.wall.as_secs_f64().max(1e-9);
        TargetResult {
            latency: Summary::of(acc.samples.iter().map(|s| s.total_ns).collect()),
            ttfb: Summary::of(acc.samples.iter().map(|s| s.ttfb_ns).collect()),
            wall_s: wall,
            rps: n / wall,
            warmup,
            client_cpu_ms_per_req: per_req_ms(acc.client_ns),
            upstream_cpu_ms_per_req: per_req_ms(acc.upstream_ns),
            proxy_cpu_ms_per_req: proxied.then(|| per_req_ms(acc.proxy_sched_ns)),
            proxy_cpu_ticks_ms_per_req: proxied.then(|| per_req_ms(acc.proxy_ticks_ns)),
            proxy_cpu_net_ms_per_req: proxied
                .then(|| (acc.proxy_sched_ns as f64 - idle_ns_per_s * wall).max(0.0) / n / 1e6),
            proxy_sys_share: proxied.then(|| acc.proxy_sys_ns as f64 / (acc.proxy_ticks_ns as f64).max(1.0)),
            nats_cpu_ms_per_req: acc.nats_ns.map(per_req_ms),
            other_cpu_cores: acc.other_ns as f64 / 1e9 / wall,
            steal_cores: acc.steal_ticks as f64 / self.clk_tck.max(1) as f64 / wall,
        }
    }

    /// Warms every spec up, then measures them in alternating rounds, the order rotated each round
    /// (A B C, B C A, C A B, ...), so that drift, passing load elsewhere and position hit all
    /// alike. `middle[i]`: what spec i goes through (its CPU is reported).
    async fn rounds(
        &self,
        specs: &[Arc<RequestSpec>],
        middle: &[Option<Middle>],
        concurrency: usize,
        count: usize,
        warmup: usize,
    ) -> anyhow::Result<Vec<TargetResult>> {
        for spec in specs {
            load::run(&self.client, spec, concurrency, warmup).await?;
        }
        let rounds = self.opts.rounds.clamp(1, count);
        let mut accs: Vec<Accumulated> = specs.iter().map(|_| Accumulated::default()).collect();
        for round in 0..rounds {
            let n = count / rounds + usize::from(round < count % rounds);
            // Each round starts with the next target (A B C, B C A, C A B, ...): no target always
            // runs right after another one.
            for i in 0..specs.len() {
                let t = (round + i) % specs.len();
                self.block(&specs[t], middle[t], concurrency, n, &mut accs[t]).await?;
            }
        }
        Ok(accs.into_iter().zip(middle).map(|(acc, &m)| self.result(acc, m, warmup)).collect())
    }

    /// Direct, proxied, (unpaced phases) proxied with the budget/breaker key and (when running)
    /// through nginx and the framework floor, warmed up, then measured in alternating rounds.
    async fn phase(&self, phase: &Phase) -> anyhow::Result<PhaseResult> {
        let mut targets = vec![Target::Direct, Target::Proxy];
        if phase.pace_ms == 0 {
            targets.push(Target::Checked);
        }
        if self.references.nginx.is_some() {
            targets.push(Target::Nginx);
        }
        if self.references.floor.is_some() {
            targets.push(Target::Floor);
        }
        let specs = targets.iter().map(|&t| self.spec(t, phase)).collect::<anyhow::Result<Vec<_>>>()?;
        let middle: Vec<Option<Middle>> = targets.iter().map(|t| t.middle()).collect();
        let warmup = if phase.pace_ms > 0 { (phase.count / 20).max(5) } else { self.opts.warmup.max(phase.count / 10) };
        let results = self.rounds(&specs, &middle, phase.concurrency, phase.count, warmup).await?;
        let mut by_target: Vec<(Target, TargetResult)> = targets.into_iter().zip(results).collect();
        let mut take = |target: Target| by_target.iter().position(|(t, _)| *t == target).map(|i| by_target.remove(i).1);
        let (Some(direct), Some(proxy)) = (take(Target::Direct), take(Target::Proxy)) else {
            bail!("missing results");
        };
        let proxy_checked = take(Target::Checked);
        let nginx = take(Target::Nginx);
        let floor = take(Target::Floor);
        self.progress.say(format!(
            "{:<24} direct: p50 {:.3} ms  p99 {:.3} ms  ttfb p50 {:.3} ms  {:.0} req/s",
            phase.name, direct.latency.p50_ms, direct.latency.p99_ms, direct.ttfb.p50_ms, direct.rps
        ));
        let say = |label: &str, t: &TargetResult| {
            self.progress.say(format!(
                "{:<24} {label} p50 {:.3} ms  p99 {:.3} ms  ttfb p50 {:.3} ms  {:.0} req/s  cpu {:.3} ms/req",
                phase.name,
                t.latency.p50_ms,
                t.latency.p99_ms,
                t.ttfb.p50_ms,
                t.rps,
                t.proxy_cpu_ms_per_req.unwrap_or(0.0)
            ));
        };
        say("proxy: ", &proxy);
        if let Some(checked) = &proxy_checked {
            say("+checks:", checked);
        }
        if let Some(nginx) = &nginx {
            say("nginx: ", nginx);
        }
        if let Some(floor) = &floor {
            say("floor: ", floor);
        }
        Ok(PhaseResult {
            name: phase.name.to_owned(),
            stream: phase.stream,
            concurrency: phase.concurrency,
            count: phase.count,
            pace_ms: phase.pace_ms,
            direct,
            proxy,
            proxy_checked,
            nginx,
            floor,
        })
    }

    /// One proxied failover request, checked: Bedrock answered (after Anthropic's 429), as
    /// Anthropic would. Returns the answer's body length.
    async fn calibrate_failover(&self, spec: &RequestSpec, stream: bool) -> anyhow::Result<usize> {
        let resp =
            self.client.post(spec.url.clone()).headers(spec.headers.clone()).body(spec.body.clone()).send().await?;
        let status = resp.status();
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let (provider, reason) = (header("x-ccp-provider"), header("x-ccp-fallback-reason"));
        let text = resp.text().await?;
        if status != 200 || provider != "bedrock" || reason != "rate_limited" {
            bail!(
                "the failover request was not answered by Bedrock: status {status}, x-ccp-provider {provider:?}, \
                 x-ccp-fallback-reason {reason:?}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        let ok = if stream {
            text.starts_with("event: message_start\n")
                && text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
                && text.matches("event: content_block_delta").count() == 10
        } else {
            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v["type"] == "message")
        };
        if !ok || text.contains("amazon-bedrock-invocationMetrics") {
            bail!(
                "the failover answer is not what Anthropic would send: {}",
                text.chars().take(600).collect::<String>()
            );
        }
        Ok(text.len())
    }

    /// The failover path at c=1: Anthropic answers 429 and the proxy replays on Bedrock, against
    /// the same 429 asked directly and the same Bedrock call (the body the proxy sends) asked
    /// directly, in alternating rounds.
    async fn failover_phase(&self, name: &str, stream: bool) -> anyhow::Result<FailoverResult> {
        let count = self.opts.failover_n;
        let body = if stream { self.stream_body.clone() } else { self.json_body.clone() };
        let scenario = [(SCENARIO_HEADER, "rate_limit".to_owned())];
        let direct_429 = RequestSpec::with_status(
            &format!("{}/v1/messages?beta=true", self.upstream.url()),
            &self.headers,
            &scenario,
            body.clone(),
            self.responses.rate_limited_body_len,
            429,
        )?;
        let operation = if stream { "invoke-with-response-stream" } else { "invoke" };
        let bedrock = &self.responses.bedrock;
        let direct_bedrock = RequestSpec::new(
            &format!("{}/model/{}/{operation}", self.upstream.bedrock_url(), self.bedrock_model_id.replace(':', "%3A")),
            &self.bedrock_headers,
            &[],
            self.bedrock_body.clone(),
            if stream { bedrock.stream_body_len } else { bedrock.json_body_len },
        )?;
        let url = format!("{}/ak/{}/v1/messages?beta=true", self.stack.proxy_url, self.stack.failover_key);
        let probe = RequestSpec::new(&url, &self.headers, &scenario, body.clone(), 0)?;
        let answer_len = self.calibrate_failover(&probe, stream).await?;
        let mut via_proxy = RequestSpec::with_status(&url, &self.headers, &scenario, body, answer_len, 200)?;
        if let Some(spec) = Arc::get_mut(&mut via_proxy) {
            spec.expect_header = Some(("x-ccp-fallback-reason", "rate_limited"));
        }
        let warmup = self.opts.warmup.max(count / 10);
        let results = self
            .rounds(&[direct_429, direct_bedrock, via_proxy], &[None, None, Some(Middle::Proxy)], 1, count, warmup)
            .await?;
        let [direct_429, direct_bedrock, proxy]: [TargetResult; 3] =
            results.try_into().map_err(|_| anyhow::anyhow!("missing results"))?;
        let r = FailoverResult {
            name: name.to_owned(),
            stream,
            count,
            direct_429,
            direct_bedrock,
            proxy,
            bedrock_body_bytes: self.bedrock_body.len(),
            answer_body_bytes: answer_len,
        };
        self.progress.say(format!(
            "{name:<24} 429 p50 {:.3} ms + Bedrock p50 {:.3} ms = {:.3} ms; proxy p50 {:.3} ms p99 {:.3} ms: added {:+.3} ms, cpu {:.3} ms/req",
            r.direct_429.latency.p50_ms,
            r.direct_bedrock.latency.p50_ms,
            r.upstreams_p50(),
            r.proxy.latency.p50_ms,
            r.proxy.latency.p99_ms,
            r.added_p50(),
            r.proxy.proxy_cpu_ms_per_req.unwrap_or(0.0)
        ));
        Ok(r)
    }

    /// Peak RSS of the proxy while `rss_n` paced streams run through it, 32 at a time.
    async fn rss_under_streams(&self) -> anyhow::Result<(u64, Summary)> {
        let phase = Phase {
            name: "rss",
            stream: true,
            concurrency: 32,
            count: self.opts.rss_n.max(32),
            pace_ms: self.opts.pace_ms,
        };
        let spec = self.spec(Target::Proxy, &phase)?;
        let pid = self.stack.proxy.child.id();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((rss, _)) = procfs::rss_kib(pid) {
                        peak = peak.max(rss);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                peak
            })
        };
        let run = load::run(&self.client, &spec, phase.concurrency, phase.count).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.await.context("rss sampler")?;
        let run = run?;
        Ok((peak, Summary::of(run.samples.iter().map(|s| s.ttfb_ns).collect())))
    }
}

async fn measure(
    opts: &Options,
    stack: &Stack,
    references: &reference::References,
    upstream: &Upstream,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let load_before = procfs::loadavg();
    let proxy_pid = stack.proxy.child.id();
    progress.say(format!(
        "proxy pid {proxy_pid} at {} (workers={}, pinned={}), key accepted",
        stack.proxy_url, opts.workers, opts.pin
    ));
    let (headers, mut body, order, body_source) = claude_code_request(&opts.fixture);
    body["stream"] = serde_json::Value::Bool(true);
    let stream_body = Bytes::from(in_order(&body, &order)?);
    body["stream"] = serde_json::Value::Bool(false);
    let json_body = Bytes::from(in_order(&body, &order)?);
    progress.say(format!("request body: {} bytes ({body_source}), {} headers", stream_body.len(), headers.len()));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss_kib, _) = procfs::rss_kib(proxy_pid)?;
    let idle_window = Duration::from_secs(2);
    let before = CpuSample::read(proxy_pid)?;
    tokio::time::sleep(idle_window).await;
    let after = CpuSample::read(proxy_pid)?;
    let proxy_idle_ns_per_s = after.sched_ns.saturating_sub(before.sched_ns) as f64 / idle_window.as_secs_f64();
    progress.say(format!(
        "proxy idle: RSS {:.1} MiB, CPU {:.3} ms/s",
        idle_rss_kib as f64 / 1024.0,
        proxy_idle_ns_per_s / 1e6
    ));

    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let bedrock_body = Bytes::from(bedrock_body(&body, beta)?);
    let bedrock_model_id = bedrock_model_for(body["model"].as_str());
    let mut bedrock_headers = HeaderMap::new();
    for (n, v) in [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("authorization", &*format!("Bearer {BEDROCK_KEY}")),
    ] {
        bedrock_headers.insert(HeaderName::from_static(n), HeaderValue::try_from(v)?);
    }
    progress.say(format!(
        "failover: Bedrock model {bedrock_model_id}, Bedrock body {} bytes; circuit_failure_threshold {CIRCUIT_FAILURE_THRESHOLD} \
         (the breaker never opens), budgets.enforce={}, monthly budget ${BUDGET_USD}",
        bedrock_body.len(),
        opts.budget_enforce
    ));

    let bench = Bench {
        client: load::client()?,
        headers,
        stream_body,
        json_body,
        bedrock_body,
        bedrock_headers,
        bedrock_model_id,
        responses: Responses::new(),
        upstream,
        stack,
        references,
        opts,
        clk_tck: procfs::clk_tck(),
        progress,
        proxy_idle_ns_per_s,
    };

    progress.say(format!("peak RSS: {} paced streams through the proxy, 32 at a time", opts.rss_n.max(32)));
    let (peak_rss_kib, rss_ttfb) = bench.rss_under_streams().await?;
    let (_, hwm_after_streams) = procfs::rss_kib(proxy_pid)?;
    progress.say(format!(
        "proxy RSS peak during 32 paced streams: {:.1} MiB (VmHWM {:.1} MiB)",
        peak_rss_kib as f64 / 1024.0,
        hwm_after_streams as f64 / 1024.0
    ));

    let phases = [
        Phase { name: "stream c=1", stream: true, concurrency: 1, count: opts.n1, pace_ms: 0 },
        Phase { name: "json c=1", stream: false, concurrency: 1, count: opts.n1, pace_ms: 0 },
        Phase { name: "stream c=32", stream: true, concurrency: 32, count: opts.n32, pace_ms: 0 },
        Phase { name: "json c=32", stream: false, concurrency: 32, count: opts.n32, pace_ms: 0 },
        Phase {
            name: "paced stream c=1 (TTFB)",
            stream: true,
            concurrency: 1,
            count: opts.ttfb_n,
            pace_ms: opts.pace_ms,
        },
    ];
    let mut results = Vec::new();
    let mut failover = Vec::new();
    for phase in &phases {
        progress.say(format!(
            "{}: {} requests per target{}",
            phase.name,
            phase.count,
            if phase.pace_ms > 0 {
                format!(
                    ", events {} ms apart (~{:.0} s per target)",
                    phase.pace_ms,
                    phase.count as f64 * (phase.pace_ms * 15) as f64 / 1000.0
                )
            } else {
                String::new()
            }
        ));
        results.push(bench.phase(phase).await?);
        if phase.name == "json c=32" {
            for (name, stream) in [("failover stream c=1", true), ("failover json c=1", false)] {
                progress.say(format!(
                    "{name}: {} requests per target (direct 429, direct Bedrock, proxy: 429 then Bedrock)",
                    opts.failover_n
                ));
                failover.push(bench.failover_phase(name, stream).await?);
            }
        }
    }
    let (end_rss_kib, end_hwm_kib) = procfs::rss_kib(proxy_pid)?;
    Ok(Report {
        generated_at: chrono::Utc::now().to_rfc3339(),
        options: opts.clone(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_after: procfs::loadavg(),
        body_bytes: bench.stream_body.len(),
        body_source: body_source.to_owned(),
        duration_s: started.elapsed().as_secs_f64(),
        phases: results,
        failover,
        setup: Setup {
            circuit_failure_threshold: CIRCUIT_FAILURE_THRESHOLD,
            budgets_enforce: opts.budget_enforce.clone(),
            monthly_budget_usd: BUDGET_USD.to_owned(),
            bedrock_model_id: bench.bedrock_model_id.clone(),
            bedrock_body_bytes: bench.bedrock_body.len(),
        },
        proxy_idle_cpu_ms_per_s: proxy_idle_ns_per_s / 1e6,
        rss: RssResult {
            idle_mib: idle_rss_kib as f64 / 1024.0,
            peak_streams_mib: peak_rss_kib as f64 / 1024.0,
            hwm_after_streams_mib: hwm_after_streams as f64 / 1024.0,
            end_mib: end_rss_kib as f64 / 1024.0,
            hwm_end_mib: end_hwm_kib as f64 / 1024.0,
            streams: opts.rss_n.max(32),
            ttfb_under_32_streams: rss_ttfb,
        },
    })
}

/// The Bedrock model id the proxy picks for `model` with the default configuration and the
/// benchmark key (region us-east-1, default model [`DEFAULT_BEDROCK_MODEL`]).
fn bedrock_model_for(model: Option<&str>) -> String {
    let settings = ccp_runtime::config::BedrockSettings::default();
    ccp_proxy::bedrock_model_for(&settings, model, "us-east-1", Some(DEFAULT_BEDROCK_MODEL))
        .unwrap_or_else(|| DEFAULT_BEDROCK_MODEL.to_owned())
}

/// The body the proxy sends Bedrock for `body` with the default configuration.
fn bedrock_body(body: &serde_json::Value, beta_header: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let settings = ccp_runtime::config::BedrockSettings::default();
    ccp_proxy::bedrock_body(&settings, &serde_json::to_vec(body)?, beta_header).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bodies_sent_keep_claude_codes_member_order() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/claude-code/request_say_hi_v2.1.332.json");
        let missing = std::path::Path::new("/nonexistent.json");
        for (path, source) in [(fixture.as_path(), "Claude Code fixture"), (missing, "synthesized")] {
            let (_, mut body, order, got) = claude_code_request(path);
            assert_eq!(got, source);
            assert_eq!(order.first().map(String::as_str), Some("model"), "{order:?}");
            let model = body["model"].as_str().unwrap().to_owned();
            for stream in [true, false] {
                body["stream"] = serde_json::Value::Bool(stream);
                let bytes = in_order(&body, &order).unwrap();
                assert_eq!(ccp_proxy::claude_code_shape(&bytes), Some((model.as_str(), stream)), "{source}");
                assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), body, "{source}");
            }
        }
    }

    #[test]
    fn bedrock_model_follows_the_mapping_then_the_default() {
        assert_eq!(
            bedrock_model_for(Some("claude-sonnet-4-5-20250929")),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(bedrock_model_for(Some("claude-opus-4-1-20250805")), "us.anthropic.claude-opus-4-1-20250805-v1:0");
        // Claude Code 2.1.332's default: the newest catalogued opus with a Bedrock target.
        assert_eq!(bedrock_model_for(Some("claude-opus-5-5")), "global.anthropic.claude-opus-4-5-20251101-v1:0");
        assert_eq!(bedrock_model_for(Some("mystery")), DEFAULT_BEDROCK_MODEL);
        assert_eq!(bedrock_model_for(None), DEFAULT_BEDROCK_MODEL);
    }

    #[test]
    fn bedrock_body_is_adapted_like_the_proxy_does() {
        let body = serde_json::json!({
            "model": "m", "stream": true, "max_tokens": 8, "metadata": {"user_id": "u"},
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "t", "defer_loading": true, "input_schema": {}}],
        });
        let out: serde_json::Value = serde_json::from_slice(
            &bedrock_body(&body, Some("claude-code-20250219, interleaved-thinking-2025-05-14")).unwrap(),
        )
        .unwrap();
        assert_eq!(out["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(out["anthropic_beta"], serde_json::json!(["interleaved-thinking-2025-05-14"]));
        for gone in ["model", "stream", "metadata"] {
            assert!(out.get(gone).is_none(), "{gone}");
        }
        assert!(out["tools"][0].get("defer_loading").is_none());
        assert_eq!(out["messages"], body["messages"]);
    }
}
