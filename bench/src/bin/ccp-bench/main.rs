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
//!
//! The run (`run`): the proxy and its keys (`stack`), the references (`reference`), then
//! `measure` prepares the requests and goes through the phases (`phases`), each measured in
//! alternating rounds with the CPU of every process involved (`rounds`); `report` adds it up.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod measure;
mod phases;
mod reference;
mod report;
mod rounds;
mod run;
mod stack;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use ccp_bench::{cli, fixture};

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
                     [tests/fixtures/claude-code/request_say_hi_v2.1.332.json]
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
    /// The options on the command line; `None` when the help was asked for (and printed).
    pub fn parse() -> anyhow::Result<Option<Self>> {
        let defaults = Self {
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
            fixture: fixture::default_path(),
            nats_pid: None,
            nginx: reference::find(),
            floor: reference::find_floor(),
            out: PathBuf::from(".local/bench/latest.json"),
        };
        let Some(o) = cli::parse_args(USAGE, defaults, |o, arg, value| {
            match arg {
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
                "--nginx" => o.nginx = path_or_off(value()?),
                "--floor" => o.floor = path_or_off(value()?),
                "--out" => o.out = value()?.into(),
                _ => bail!(cli::Unknown),
            }
            Ok(())
        })?
        else {
            return Ok(None);
        };
        if o.workers == 0 || o.n1 == 0 || o.n32 == 0 || o.ttfb_n == 0 || o.failover_n == 0 {
            bail!("--workers, --n1, --n32, --ttfb-n and --failover-n must be positive");
        }
        if !["all", "bedrock"].contains(&o.budget_enforce.as_str()) {
            bail!("--budget-enforce takes all or bedrock");
        }
        Ok(Some(o))
    }
}

/// `off`, or the path of a reference's binary.
fn path_or_off(value: String) -> Option<PathBuf> {
    (value != "off").then(|| value.into())
}

fn main() -> ExitCode {
    cli::main("ccp-bench", Options::parse, |o| o.pin, run::run)
}
