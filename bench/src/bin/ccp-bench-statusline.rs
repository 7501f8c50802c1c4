//! `ccp-bench-statusline`: what `GET /ccp/statusline` costs the proxy, against `GET /health`
//! (the framework's floor for a GET: routing, one small answer) in the same run and rounds.
//!
//! Starts the release proxy as a child process with one worker (pinned to CPU 1 with `--pin`,
//! the client on CPU 0) in front of the in-process fake Anthropic and fake Bedrock, on the NATS
//! stack; gives one developer the fullest line there is — Plan limits reported by Anthropic, a
//! failover to Bedrock (so the line says "On Bedrock since …" and the key's events are being
//! watched), a budget with spend — then sends, round after round, `--n` requests per target at
//! `--concurrency`: `/health`, the text line (with colour and a time zone), the JSON form, a
//! revalidation answered 304, and an unknown key (401). Reports per target the proxy's CPU time
//! per call (from `/proc`, µs), what one core would serve at that cost (1 s / CPU per call), the
//! requests per second this client reached, and latency percentiles.
//!
//! Run: `cargo build --release -p ccp-proxy -p ccp-bench && scripts/stack.sh start &&
//! eval "$(scripts/stack.sh env)" && target/release/ccp-bench-statusline --pin`.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ccp_bench::cli::{self, Progress};
use ccp_bench::load::Summary;
use ccp_bench::procfs::{self, CpuDelta, CpuSample};
use ccp_bench::proxy_process::{self, ProxyProcess};
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;
use ccp_tests::fake_anthropic::{FakeAnthropic, Scenario, ScenarioName};
use ccp_tests::fake_bedrock::FakeBedrock;

const BEDROCK_KEY: &str = "ABSKQmVuY2hCZWRyb2NrQVBJS2V5LWJlbmNoLTAwMDE=";

const USAGE: &str = "ccp-bench-statusline [options]

The cost of GET /ccp/statusline in the proxy (target/release/ccp-proxy, one worker) against
GET /health, measured in the same rounds. Needs NATS (scripts/stack.sh start).

Options:
  --n N              requests per target and round                     [20000]
  --concurrency N    requests in flight                                [16]
  --rounds N         measured rounds (targets alternate within each)   [3]
  --warmup N         warmup requests per target                        [2000]
  --pin              client on CPU 0, proxy on CPU 1 (taskset)         [off]
  --quick            n=2000 rounds=2 warmup=200
  --proxy-bin PATH   proxy binary          [$CARGO_TARGET_DIR|target/release/ccp-proxy]";

#[derive(Debug, Clone)]
struct Options {
    n: usize,
    concurrency: usize,
    rounds: usize,
    warmup: usize,
    pin: bool,
    proxy_bin: PathBuf,
}

impl Options {
    fn parse() -> anyhow::Result<Option<Self>> {
        let defaults = Self {
            n: 20_000,
            concurrency: 16,
            rounds: 3,
            warmup: 2_000,
            pin: false,
            proxy_bin: ccp_tests::target_dir().join("release").join("ccp-proxy"),
        };
        let Some(o) = cli::parse_args(USAGE, defaults, |o, arg, value| {
            match arg {
                "--n" => o.n = value()?.parse()?,
                "--concurrency" => o.concurrency = value()?.parse()?,
                "--rounds" => o.rounds = value()?.parse()?,
                "--warmup" => o.warmup = value()?.parse()?,
                "--pin" => o.pin = true,
                "--quick" => {
                    o.n = 2_000;
                    o.rounds = 2;
                    o.warmup = 200;
                }
                "--proxy-bin" => o.proxy_bin = value()?.into(),
                _ => bail!(cli::Unknown),
            }
            Ok(())
        })?
        else {
            return Ok(None);
        };
        if o.n == 0 || o.concurrency == 0 || o.rounds == 0 {
            bail!("--n, --concurrency and --rounds must be positive");
        }
        Ok(Some(o))
    }
}

fn main() -> ExitCode {
    cli::main("ccp-bench-statusline", Options::parse, |o| o.pin, run)
}

/// One kind of request.
struct Target {
    name: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
}

/// What the rounds of one target measured.
#[derive(Default)]
struct Measured {
    requests: usize,
    wall: Duration,
    cpu: CpuDelta,
    latencies_ns: Vec<u64>,
}

impl Measured {
    fn cpu_us_per_call(&self) -> f64 {
        self.cpu.sched_ns as f64 / self.requests.max(1) as f64 / 1e3
    }
}

async fn load(
    client: &reqwest::Client,
    base: &str,
    target: &Target,
    concurrency: usize,
    count: usize,
) -> anyhow::Result<Vec<u64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let target = Arc::new((format!("{base}{}", target.path), target.headers.clone(), target.status));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count.max(1)) {
        let (client, next, target) = (client.clone(), next.clone(), target.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(count / concurrency + 1);
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                let mut req = client.get(&target.0);
                for (n, v) in &target.1 {
                    req = req.header(*n, v);
                }
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let _ = resp.bytes().await?;
                if status != target.2 {
                    bail!("{}: status {status}, expected {}", target.0, target.2);
                }
                samples.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("load task")??);
    }
    Ok(all)
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let progress = Progress::start();
    proxy_process::check_nats().await?;
    let anthropic = FakeAnthropic::start().context("fake Anthropic")?;
    let bedrock = FakeBedrock::start(&[BEDROCK_KEY]).context("fake Bedrock")?;
    let settings = proxy_process::settings("bench-sl", "benchsl")?;
    let master = proxy_process::master_key(&settings)?;
    let log = Log::new(&settings).await;
    let outcome = async {
        let env = [("CCP__PROXY__BEDROCK_ENDPOINT_URL", bedrock.url())];
        let proxy = ProxyProcess::start(&opts.proxy_bin, &settings, &anthropic.url(), 1, &env, opts.pin).await?;
        let measured = async {
            let key = prepare(&log, &master, &anthropic, &proxy).await?;
            progress.say(format!("proxy pid {} at {}; the developer's line:", proxy.pid(), proxy.url));
            measure(&opts, &proxy.url, &key, proxy.pid(), &progress).await
        }
        .await;
        proxy.stop(measured.is_ok(), Duration::from_secs(10), &progress);
        measured
    }
    .await;
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    outcome
}

/// A developer with a Bedrock key and a budget, whose Plan is used up and whose last request
/// failed over to Bedrock; the access key.
async fn prepare(
    log: &Log,
    master: &LocalMasterKey,
    anthropic: &FakeAnthropic,
    proxy: &ProxyProcess,
) -> anyhow::Result<String> {
    let (user_id, key_id, key) = log.user_with_key("bench-statusline").await;
    log.register_bedrock_key(user_id, key_id, master, BEDROCK_KEY).await;
    let seq = proxy_process::set_budget(log, user_id, "200").await?;
    proxy.wait_applied(seq).await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let reset = (chrono::Utc::now().timestamp() / 3600 + 3) * 3600;
    let plan = Scenario::new(ScenarioName::Auto)
        .with_header("anthropic-ratelimit-unified-status", "allowed_warning")
        .with_header("anthropic-ratelimit-unified-5h-utilization", "0.93")
        .with_header("anthropic-ratelimit-unified-5h-reset", reset.to_string())
        .with_header("anthropic-ratelimit-unified-7d-utilization", "0.41")
        .with_header("anthropic-ratelimit-unified-7d-reset", (reset + 4 * 86_400).to_string());
    for scenario in [plan, Scenario::new(ScenarioName::UsageLimit)] {
        anthropic.enqueue(scenario);
        let resp = client
            .post(format!("{}/v1/messages", proxy.url))
            .header("x-ccp-access-key", key.expose())
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-bench")
            .body(r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#)
            .send()
            .await?;
        let status = resp.status();
        let _ = resp.bytes().await?;
        if status != 200 {
            bail!("a request through the proxy answered {status}");
        }
    }
    Ok(key.expose().to_owned())
}

async fn measure(opts: &Options, url: &str, key: &str, pid: u32, progress: &Progress) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let query = "?tz=Europe/Berlin&color=1";
    // The line once the failover's event has reached the key's watch.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (line, etag) = loop {
        let resp = client.get(format!("{url}/ccp/statusline{query}")).header("x-ccp-access-key", key).send().await?;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let line = resp.text().await?;
        if line.contains("Bedrock") || Instant::now() > deadline {
            break (line, etag);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    progress.say(format!("  {}", line.trim_end()));
    if !line.contains("Bedrock") || !line.contains("Plan 5h") || !line.contains("$200") {
        bail!("the line does not show the Plan, Bedrock and the budget: {line:?}");
    }
    let keyed = |extra: Option<(&'static str, String)>| {
        let mut h = vec![("x-ccp-access-key", key.to_owned())];
        h.extend(extra);
        h
    };
    let unknown = ccp_schemas::secrets::access_key::AccessKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let targets = [
        Target { name: "GET /health (baseline)", path: "/health".into(), headers: vec![], status: 200 },
        Target { name: "statusline text", path: format!("/ccp/statusline{query}"), headers: keyed(None), status: 200 },
        Target {
            name: "statusline JSON",
            path: "/ccp/statusline?tz=Europe/Berlin&format=json".into(),
            headers: keyed(None),
            status: 200,
        },
        Target {
            name: "statusline 304",
            path: format!("/ccp/statusline{query}"),
            headers: keyed(Some(("if-none-match", etag))),
            status: 304,
        },
        Target {
            name: "statusline bad key",
            path: "/ccp/statusline".into(),
            headers: vec![("x-ccp-access-key", unknown.expose().to_owned())],
            status: 401,
        },
    ];
    for t in &targets {
        load(&client, url, t, opts.concurrency, opts.warmup).await.with_context(|| format!("warmup {}", t.name))?;
    }
    let clk = procfs::clk_tck();
    let mut results: Vec<Measured> = targets.iter().map(|_| Measured::default()).collect();
    for round in 1..=opts.rounds {
        for (t, m) in targets.iter().zip(results.iter_mut()) {
            let before = CpuSample::read(pid)?;
            let t0 = Instant::now();
            let samples = load(&client, url, t, opts.concurrency, opts.n).await.with_context(|| t.name)?;
            let wall = t0.elapsed();
            let cpu = CpuDelta::between(before, CpuSample::read(pid)?, clk);
            m.requests += samples.len();
            m.wall += wall;
            m.cpu.sched_ns += cpu.sched_ns;
            m.latencies_ns.extend(samples);
        }
        progress.say(format!("round {round}/{} done", opts.rounds));
    }
    println!();
    println!(
        "GET /ccp/statusline vs GET /health: proxy with 1 worker{}, {} requests per target in {} rounds, concurrency {}",
        if opts.pin { " on CPU 1 (client on CPU 0)" } else { "" },
        opts.n * opts.rounds,
        opts.rounds,
        opts.concurrency
    );
    println!(
        "{:<24} {:>12} {:>16} {:>14} {:>9} {:>9}",
        "target", "proxy CPU/call", "one core (1/CPU)", "measured rps", "p50 ms", "p99 ms"
    );
    let base = results[0].cpu_us_per_call();
    for (t, m) in targets.iter().zip(&results) {
        let cpu = m.cpu_us_per_call();
        let latency = Summary::of(m.latencies_ns.clone());
        println!(
            "{:<24} {:>11.1}µs {:>12.0} rps {:>14.0} {:>9.3} {:>9.3}",
            t.name,
            cpu,
            1e6 / cpu.max(1e-9),
            m.requests as f64 / m.wall.as_secs_f64().max(1e-9),
            latency.p50_ms,
            latency.p99_ms
        );
    }
    println!();
    let text = results[1].cpu_us_per_call();
    println!(
        "statusline text: {text:.1} µs of proxy CPU per call, {:.1} µs more than /health; one core serves about {:.0} per second",
        text - base,
        1e6 / text.max(1e-9)
    );
    Ok(())
}
