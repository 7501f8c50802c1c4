//! `ccp-bench-streams`: a thousand open streams (issue 20, point 4). In one run, against the
//! same fake Anthropic: `--streams` Claude Code requests (`"stream":true`, bodies between
//! `--min-body` and `--max-body`) held open at once, each answered by an SSE stream with an
//! event every 20–50 ms (varied per stream) for `--secs` seconds; sent directly to the upstream
//! (the baseline), through the proxy, and through nginx as a plain reverse proxy (reference).
//! Reports the peak and end RSS of the proxy (and nginx), the proxy's CPU per relayed SSE event,
//! the time to first byte each adds to the direct one (p50, p99), and the streams that stalled
//! (a gap between two chunks over `--stall-ms`) or did not end with `message_stop`; checks the
//! targets (proxy RSS ≤ 300 MiB, no stall, added TTFB p99 ≤ 2× nginx's). Prints a table and
//! writes `.local/bench/streams.json`.
//!
//! Run it through `scripts/bench` (release build, NATS stack), or after it:
//! `target/release/ccp-bench-streams [--quick]`. See `--help`.
//!
//! `plan` says what each stream sends and expects, `client` runs a phase and times every
//! chunk, `report` adds it up.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod client;
mod plan;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ccp_bench::cli::{self, Progress};
use ccp_bench::procfs;
use ccp_bench::proxy_process::{self, ProxyProcess};
use ccp_bench::reference::{self, Reference};
use ccp_bench::upstream::{Responses, Upstream};
use ccp_tests::events::Log;

use crate::plan::Plan;
use crate::report::{Report, Setup, TargetResult};

const USAGE: &str = "ccp-bench-streams [options]   (normally run through scripts/bench)

Holds N streaming Claude Code requests open at once, each answered by a paced SSE stream,
directly to an in-process fake Anthropic, through the proxy (target/release/ccp-proxy) and
through nginx; reports memory, CPU per relayed event, added time to first byte and stalls.
Needs NATS (scripts/stack.sh start; CCP_TEST_NATS_URL, default nats://127.0.0.1:4222).

Options:
  --streams N        streams open at once                                  [1000]
  --secs D           how long each stream lasts, s                         [30]
  --ramp-secs R      the streams start evenly over R s                     [5]
  --min-body BYTES   smallest request body                                 [200000]
  --max-body BYTES   largest request body (sizes spread evenly between)    [2000000]
  --min-pace-ms N    shortest time between two SSE events of a stream      [20]
  --max-pace-ms N    longest (each stream has its own pace in between)     [50]
  --stall-ms N       a gap between two chunks longer than this is a stall  [1000]
  --workers N        proxy worker threads (CCP__PROXY__WORKERS)            [1]
  --quick            100 streams for 5 s, started over 1 s (a smoke run)
  --proxy-bin PATH   proxy binary                       [$CARGO_TARGET_DIR|target/release/ccp-proxy]
  --fixture PATH     Claude Code request capture (JSON with headers and body)
                     [tests/fixtures/claude-code/request_say_hi_v2.1.332.json]
  --nginx PATH|off   nginx measured as a plain reverse proxy (reference)   [nginx in PATH]
  --json PATH        JSON results                                          [.local/bench/streams.json]";

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    streams: usize,
    secs: u64,
    ramp: Duration,
    min_body: usize,
    max_body: usize,
    min_pace_ms: u64,
    max_pace_ms: u64,
    stall_ms: u64,
    workers: usize,
    proxy_bin: PathBuf,
    fixture: PathBuf,
    nginx: Option<PathBuf>,
    json: PathBuf,
}

/// Largest request body the fake upstream reads (and the proxy's default `max_body_bytes`).
const MAX_BODY: usize = 32 * 1024 * 1024;

impl Options {
    fn parse() -> anyhow::Result<Option<Self>> {
        let defaults = Self {
            streams: 1000,
            secs: 30,
            ramp: Duration::from_secs(5),
            min_body: 200_000,
            max_body: 2_000_000,
            min_pace_ms: 20,
            max_pace_ms: 50,
            stall_ms: 1000,
            workers: 1,
            proxy_bin: ccp_tests::target_dir().join("release").join("ccp-proxy"),
            fixture: ccp_bench::fixture::default_path(),
            nginx: reference::find_nginx(),
            json: PathBuf::from(".local/bench/streams.json"),
        };
        let Some(o) = cli::parse_args(USAGE, defaults, |o, arg, value| {
            match arg {
                "--streams" => o.streams = value()?.parse()?,
                "--secs" => o.secs = value()?.parse()?,
                "--ramp-secs" => o.ramp = Duration::try_from_secs_f64(value()?.parse()?)?,
                "--min-body" => o.min_body = value()?.parse()?,
                "--max-body" => o.max_body = value()?.parse()?,
                "--min-pace-ms" => o.min_pace_ms = value()?.parse()?,
                "--max-pace-ms" => o.max_pace_ms = value()?.parse()?,
                "--stall-ms" => o.stall_ms = value()?.parse()?,
                "--workers" => o.workers = value()?.parse()?,
                "--quick" => {
                    o.streams = 100;
                    o.secs = 5;
                    o.ramp = Duration::from_secs(1);
                }
                "--proxy-bin" => o.proxy_bin = value()?.into(),
                "--fixture" => o.fixture = value()?.into(),
                "--nginx" => o.nginx = Some(value()?).filter(|v| v != "off").map(PathBuf::from),
                "--json" => o.json = value()?.into(),
                _ => bail!(cli::Unknown),
            }
            Ok(())
        })?
        else {
            return Ok(None);
        };
        if o.streams == 0 || o.secs == 0 || o.workers == 0 || o.min_pace_ms == 0 {
            bail!("--streams, --secs, --workers and --min-pace-ms must be positive");
        }
        if o.min_body > o.max_body || o.max_body > MAX_BODY {
            bail!("--min-body must be at most --max-body, and that at most {MAX_BODY}");
        }
        if o.min_pace_ms > o.max_pace_ms {
            bail!("--min-pace-ms must be at most --max-pace-ms");
        }
        if o.ramp >= Duration::from_secs(o.secs) {
            bail!("--ramp-secs must be shorter than --secs, or the streams are never all open at once");
        }
        Ok(Some(o))
    }
}

/// Fails unless the open-file soft limit of `pid` (`what`) allows `need` descriptors.
fn check_nofile(what: &str, pid: u32, need: u64, setup: &mut Setup) -> anyhow::Result<()> {
    let (soft, _) = procfs::nofile_limit(pid)?;
    setup.nofile.push((what.to_owned(), soft));
    if soft < need {
        bail!("{what} may open {soft} files, {need} needed for {} streams (ulimit -n)", setup.streams);
    }
    Ok(())
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let progress = Progress::start();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let loadavg_before = procfs::loadavg();
    // Each stream is two connections here (client and upstream sides), and two in the middle.
    let need = 2 * opts.streams as u64 + 128;
    let nofile = cli::raise_nofile()?;
    progress.say(format!("open files allowed: {nofile} (the proxy and nginx inherit it); load {loadavg_before}"));
    proxy_process::check_nats().await?;
    let upstream = Upstream::start()?;
    let plan = Arc::new(Plan::new(&opts, &Responses::new())?);
    let (body_min, body_max) = plan.body_range();
    let mut setup = Setup {
        streams: opts.streams,
        secs: opts.secs,
        ramp_s: opts.ramp.as_secs_f64(),
        body_bytes_min: body_min,
        body_bytes_max: body_max,
        body_source: plan.body_source,
        pace_ms_min: opts.min_pace_ms,
        pace_ms_max: opts.max_pace_ms,
        stall_ms: opts.stall_ms,
        proxy_workers: opts.workers,
        nofile: Vec::new(),
        cpus,
        loadavg_before,
        loadavg_after: String::new(),
    };
    check_nofile("ccp-bench-streams", std::process::id(), need, &mut setup)?;
    progress.say(format!(
        "upstream on {}; {} streams, {} request bodies of {body_min}-{body_max} bytes ({})",
        upstream.url(),
        opts.streams,
        plan.bodies.len(),
        plan.body_source
    ));

    let settings = proxy_process::settings("benchstreams", "bstr")?;
    let log = Log::new(&settings).await;
    let result = async {
        let proxy = ProxyProcess::start(&opts.proxy_bin, &settings, &upstream.url(), opts.workers, &[], false).await?;
        let (_, _, key) = log.user_with_key("bench-streams").await;
        if let Err(e) = proxy.wait_accepted(key.expose()).await {
            return Err(proxy.fail(e));
        }
        if let Err(e) = check_nofile("ccp-proxy", proxy.pid(), need, &mut setup) {
            return Err(proxy.fail(e));
        }
        progress.say(format!("proxy pid {} at {} (workers {}), key accepted", proxy.pid(), proxy.url, opts.workers));
        let nginx = match &opts.nginx {
            Some(bin) => {
                let nginx = reference::start_nginx(bin, &upstream.url(), 2 * opts.streams + 64, false).await?;
                check_nofile("nginx", nginx.pid(), need, &mut setup)?;
                progress.say(format!("nginx reference pid {} at {}", nginx.pid(), nginx.url));
                Some(nginx)
            }
            None => None,
        };
        let outcome = tokio::select! {
            r = phases(&opts, &plan, &upstream, &proxy, key.expose(), nginx.as_ref(), &progress) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        drop(nginx);
        progress.say("stopping the proxy");
        proxy.stop(outcome.is_ok(), Duration::from_secs(20), &progress);
        outcome
    }
    .await;
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    drop(upstream);
    let (direct, proxy, nginx) = result?;
    setup.loadavg_after = procfs::loadavg();
    let report = Report::new(setup, direct, proxy, nginx);
    report.print(&mut std::io::stdout())?;
    if let Some(dir) = opts.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&opts.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", opts.json.display()))?;
    progress.say(format!("results written to {}", opts.json.display()));
    Ok(())
}

/// The three phases in turn: direct, through the proxy, through nginx.
async fn phases(
    opts: &Options,
    plan: &Arc<Plan>,
    upstream: &Upstream,
    proxy: &ProxyProcess,
    key: &str,
    nginx: Option<&Reference>,
    progress: &Progress,
) -> anyhow::Result<(TargetResult, TargetResult, Option<TargetResult>)> {
    let client = client::client(opts.secs)?;
    let clk_tck = procfs::clk_tck();
    let mut targets = vec![
        ("direct", format!("{}/v1/messages?beta=true", upstream.url()), None),
        ("proxy", format!("{}/ak/{key}/v1/messages?beta=true", proxy.url), Some(proxy.pid())),
    ];
    if let Some(nginx) = nginx {
        targets.push(("nginx", format!("{}/v1/messages?beta=true", nginx.url), Some(nginx.pid())));
    }
    let mut results = Vec::new();
    for (name, url, middle) in targets {
        progress.say(format!("{name}: {} streams for {} s...", opts.streams, opts.secs));
        let run = client::phase(&client, &url, plan, middle, clk_tck).await?;
        let result = TargetResult::new(name, &run, opts.stall_ms);
        progress.say(format!(
            "{name}: {} complete, {} failed, {} stalled, at most {} open; TTFB p99 {:.1} ms, longest gap {:.0} ms",
            result.complete, result.failed, result.stalled, result.max_open, result.ttfb.p99_ms, result.max_gap.max_ms
        ));
        results.push(result);
        // Let the connections of this phase close before the next one.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut results = results.into_iter();
    match (results.next(), results.next(), results.next()) {
        (Some(direct), Some(proxy), nginx) => Ok((direct, proxy, nginx)),
        _ => bail!("a phase is missing"),
    }
}

fn main() -> ExitCode {
    cli::main("ccp-bench-streams", Options::parse, |_| false, run)
}
