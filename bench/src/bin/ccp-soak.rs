//! `ccp-soak`: a soak of Claude-Code-like streaming traffic through the release proxy (a
//! command, not a test; run it with `scripts/soak`). Tens of concurrent streams of the 48 KB
//! Claude Code fixture request for minutes against the benchmark's fast upstream (answers
//! paced like a model's), sampling the proxy's RSS and the latency percentiles per interval;
//! prints one line per interval and whether memory and latency stayed flat (last interval
//! against the first one after warm-up).

#![allow(clippy::print_stdout)] // a command-line report

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use ccp_bench::cli::{self, Progress};
use ccp_bench::load::{self, Summary};
use ccp_bench::proxy_process::{self, ProxyProcess};
use ccp_bench::upstream::{Upstream, PACE_HEADER};
use ccp_bench::{fixture, procfs};
use ccp_tests::events::Log;
use reqwest::header::{HeaderMap, HeaderValue};

const USAGE: &str = "usage: ccp-soak [--minutes M] [--concurrency C] [--interval-secs S] [--pace-ms P] \
[--workers W] [--proxy-bin PATH] [--fixture PATH] [--out PATH]

  --minutes M         how long to drive traffic (default 3)
  --concurrency C     concurrent streams, each one request after another (default 32)
  --interval-secs S   sampling interval (default 15); the first interval is warm-up
  --pace-ms P         milliseconds between the upstream's SSE events (default 20: a ~250 ms stream)
  --workers W         proxy worker threads (default 1)
  --max-rss-ratio R   flat when last/first RSS <= R (default 1.15)
  --max-p99-ratio R   flat when last/first p99 <= R (default 1.5; p50: half-way to it)";

struct Options {
    minutes: f64,
    concurrency: usize,
    interval: Duration,
    pace_ms: u64,
    workers: usize,
    max_rss_ratio: f64,
    max_p99_ratio: f64,
    proxy_bin: PathBuf,
    fixture: PathBuf,
    out: PathBuf,
}

impl Options {
    fn parse() -> anyhow::Result<Option<Self>> {
        let defaults = Self {
            minutes: 3.0,
            concurrency: 32,
            interval: Duration::from_secs(15),
            pace_ms: 20,
            workers: 1,
            max_rss_ratio: 1.15,
            max_p99_ratio: 1.5,
            proxy_bin: ccp_tests::target_dir().join("release").join("ccp-proxy"),
            fixture: fixture::default_path(),
            out: PathBuf::from(".local/soak/latest.json"),
        };
        let Some(o) = cli::parse_args(USAGE, defaults, |o, arg, value| {
            match arg {
                "--minutes" => o.minutes = value()?.parse()?,
                "--concurrency" => o.concurrency = value()?.parse()?,
                "--interval-secs" => o.interval = Duration::from_secs(value()?.parse()?),
                "--pace-ms" => o.pace_ms = value()?.parse()?,
                "--workers" => o.workers = value()?.parse()?,
                "--max-rss-ratio" => o.max_rss_ratio = value()?.parse()?,
                "--max-p99-ratio" => o.max_p99_ratio = value()?.parse()?,
                "--proxy-bin" => o.proxy_bin = value()?.into(),
                "--fixture" => o.fixture = value()?.into(),
                "--out" => o.out = value()?.into(),
                _ => bail!(cli::Unknown),
            }
            Ok(())
        })?
        else {
            return Ok(None);
        };
        if o.minutes <= 0.0 || o.concurrency == 0 || o.interval.is_zero() || o.workers == 0 {
            bail!("--minutes, --concurrency, --interval-secs and --workers must be positive");
        }
        Ok(Some(o))
    }
}

fn main() -> ExitCode {
    cli::main("ccp-soak", Options::parse, |_| false, run)
}

/// The Claude Code fixture: headers (minus framing ones) and the body, as a stream.
fn stream_request(path: &Path) -> anyhow::Result<(HeaderMap, Bytes)> {
    let fixture::Request { headers, mut body, .. } = fixture::read(path)?;
    body["stream"] = serde_json::Value::Bool(true);
    Ok((headers, Bytes::from(serde_json::to_vec(&body)?)))
}

/// One interval's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct Interval {
    end_s: f64,
    requests: usize,
    errors: u64,
    req_per_s: f64,
    latency: Summary,
    ttfb: Summary,
    rss_mib: f64,
}

async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let (headers, body) = stream_request(&opts.fixture)?;
    let progress = Progress::start();
    proxy_process::check_nats().await?;
    let upstream = Upstream::start()?;
    let settings = proxy_process::settings("soak", "soak")?;
    let log = Log::new(&settings).await;
    let outcome = async {
        let proxy = ProxyProcess::start(&opts.proxy_bin, &settings, &upstream.url(), opts.workers, &[], false).await?;
        let soaked = async {
            let (_, _, key) = log.user_with_key("soak").await;
            proxy.wait_accepted(key.expose()).await?;
            let url = format!("{}/ak/{}/v1/messages?beta=true", proxy.url, key.expose());
            soak(&opts, &load::client()?, &url, &headers, &body, proxy.pid()).await
        }
        .await;
        proxy.stop(soaked.is_ok(), Duration::from_secs(20), &progress);
        soaked
    }
    .await;
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    drop(upstream);
    let flat = report(&opts, &outcome?)?;
    Ok(if flat { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn soak(
    opts: &Options,
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: &Bytes,
    pid: u32,
) -> anyhow::Result<Vec<Interval>> {
    let mut headers = headers.clone();
    headers.insert(PACE_HEADER, HeaderValue::try_from(opts.pace_ms.to_string())?);
    let samples: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(opts.minutes * 60.0);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        let (client, url, headers, body) = (client.clone(), url.to_owned(), headers.clone(), body.clone());
        let (samples, errors) = (samples.clone(), errors.clone());
        tasks.spawn(async move {
            while Instant::now() < end {
                let t0 = Instant::now();
                let result = async {
                    let mut resp = client.post(&url).headers(headers.clone()).body(body.clone()).send().await?;
                    let ok = resp.status() == 200;
                    let mut ttfb = None;
                    while let Some(chunk) = resp.chunk().await? {
                        if ttfb.is_none() && !chunk.is_empty() {
                            ttfb = Some(t0.elapsed());
                        }
                    }
                    anyhow::Ok((ok, ttfb.unwrap_or_default()))
                }
                .await;
                match result {
                    Ok((true, ttfb)) => {
                        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
                        if let Ok(mut s) = samples.lock() {
                            s.push((ns(t0.elapsed()), ns(ttfb)));
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let mut intervals = Vec::new();
    let mut last_errors = 0;
    eprintln!(
        "{:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>10} {:>7}",
        "t", "requests", "errors", "req/s", "p50 ms", "p99 ms", "ttfb p50", "RSS MiB"
    );
    while Instant::now() < end {
        let wait = opts.interval.min(end.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
        let drained: Vec<(u64, u64)> = samples.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
        let errs = errors.load(Ordering::Relaxed);
        let (rss, _) = procfs::rss_kib(pid)?;
        let i = Interval {
            end_s: started.elapsed().as_secs_f64(),
            requests: drained.len(),
            errors: errs - last_errors,
            req_per_s: drained.len() as f64 / wait.as_secs_f64().max(1e-3),
            latency: Summary::of(drained.iter().map(|s| s.0).collect()),
            ttfb: Summary::of(drained.iter().map(|s| s.1).collect()),
            rss_mib: rss as f64 / 1024.0,
        };
        last_errors = errs;
        eprintln!(
            "{:>6.0}s {:>8} {:>7} {:>9.1} {:>9.2} {:>9.2} {:>10.2} {:>7.1}",
            i.end_s, i.requests, i.errors, i.req_per_s, i.latency.p50_ms, i.latency.p99_ms, i.ttfb.p50_ms, i.rss_mib
        );
        intervals.push(i);
    }
    while tasks.join_next().await.is_some() {}
    Ok(intervals)
}

/// Prints the verdict (first interval after warm-up against the last one) and writes the JSON.
fn report(opts: &Options, intervals: &[Interval]) -> anyhow::Result<bool> {
    if intervals.len() < 3 {
        bail!("only {} intervals: run longer or sample more often", intervals.len());
    }
    let (first, last) = (&intervals[1], &intervals[intervals.len() - 1]);
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { f64::INFINITY };
    let rss = ratio(first.rss_mib, last.rss_mib);
    let p50 = ratio(first.latency.p50_ms, last.latency.p50_ms);
    let p99 = ratio(first.latency.p99_ms, last.latency.p99_ms);
    let total: usize = intervals.iter().map(|i| i.requests).sum();
    let errors: u64 = intervals.iter().map(|i| i.errors).sum();
    let max_p50 = 1.0 + (opts.max_p99_ratio - 1.0) / 2.0;
    let flat = rss <= opts.max_rss_ratio && p50 <= max_p50 && p99 <= opts.max_p99_ratio && errors == 0;
    println!(
        "soak: {:.1} min, {} concurrent streams (48 KB Claude Code request, SSE paced {} ms), {} requests, {} errors",
        opts.minutes, opts.concurrency, opts.pace_ms, total, errors
    );
    println!("| figure | first interval (after warm-up) | last interval | last / first | flat when |");
    println!("|---|---|---|---|---|");
    println!(
        "| proxy RSS | {:.1} MiB | {:.1} MiB | {rss:.2} | ≤ {:.2} |",
        first.rss_mib, last.rss_mib, opts.max_rss_ratio
    );
    println!(
        "| latency p50 | {:.1} ms | {:.1} ms | {p50:.2} | ≤ {max_p50:.2} |",
        first.latency.p50_ms, last.latency.p50_ms
    );
    println!(
        "| latency p99 | {:.1} ms | {:.1} ms | {p99:.2} | ≤ {:.2} |",
        first.latency.p99_ms, last.latency.p99_ms, opts.max_p99_ratio
    );
    println!(
        "| throughput | {:.0} req/s | {:.0} req/s | {:.2} | — |",
        first.req_per_s,
        last.req_per_s,
        ratio(first.req_per_s, last.req_per_s)
    );
    println!("verdict: {}", if flat { "FLAT (memory and latency steady)" } else { "NOT FLAT" });
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let json = serde_json::json!({
        "minutes": opts.minutes,
        "concurrency": opts.concurrency,
        "pace_ms": opts.pace_ms,
        "requests": total,
        "errors": errors,
        "ratios": {"rss": rss, "p50": p50, "p99": p99},
        "flat": flat,
        "intervals": intervals,
    });
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("write {}", opts.out.display()))?;
    eprintln!("results written to {}", opts.out.display());
    Ok(flat)
}
