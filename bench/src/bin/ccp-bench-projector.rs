//! `ccp-bench-projector`: replay throughput of the requests projection into ClickHouse and
//! end-to-end freshness (event published → row queryable), against the local NATS and
//! ClickHouse, with the release `ccp-projector` as a child process. A benchmark, not a test.
//!
//! Targets (issue 6): replay ≥ 50k events/s; a request visible in ClickHouse within 2 s (p99).
//!
//! The events are published once and replayed three times (`--quick`: once), each into a fresh
//! database by a fresh projector, and the median is reported with the CPU each part spent per
//! event (projector, ClickHouse server, NATS server): on two shared cores the wall clock moves
//! with ClickHouse's background merges, the CPU per event much less.

#![allow(clippy::print_stdout)] // a command-line report

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccp_bench::procfs;
use ccp_schemas::events::{Event, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::subjects::Aggregate;
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, Log};
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};

fn event(user: UserId, key: AccessKeyId, i: u64) -> (RequestId, Envelope) {
    let request_id = RequestId::new();
    let e = RequestCompleted {
        request_id,
        response_model: Some("claude-sonnet-4-5-20250929".into()),
        usage: TokenUsage {
            input_tokens: i % 5000,
            output_tokens: i % 700,
            cache_read_input_tokens: 20_000,
            cache_creation_input_tokens: 0,
        },
        cost_usd: Some(rust_decimal::Decimal::new((i % 100_000) as i64, 9)),
        latency_ms: 1200,
        ttfb_ms: Some(300),
        session_id: Some("bench-session".into()),
        client_version: Some("claude-cli/2.1.332".into()),
        ..completed(user, key)
    };
    (request_id, Envelope::new(Event::RequestCompleted(e), Actor::Proxy { replica: "bench".into() }))
}

async fn rows(db: &str) -> u64 {
    clickhouse().query(&format!("SELECT count() FROM {db}.requests")).fetch_one().await.unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

/// The pid in a `scripts/stack.sh` pid file, if this is the script's stack.
fn stack_pid(file: &str) -> Option<u32> {
    std::fs::read_to_string(Path::new(".local/stack").join(file)).ok()?.trim().parse().ok()
}

async fn run(events: u64, fresh_n: usize, runs: usize) -> anyhow::Result<bool> {
    let bin = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("release/ccp-projector");
    anyhow::ensure!(bin.exists(), "{} not built (cargo build --release -p ccp-projector)", bin.display());
    let settings = test_settings("benchproj");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let (user, key) = (UserId::new(), AccessKeyId::new());
    let subject = log.ns.subject(&Aggregate::Request(Some(key)));

    println!("publishing {events} usage events...");
    let mut acks = Vec::with_capacity(2000);
    for i in 0..events {
        let (_, e) = event(user, key, i);
        acks.push(log.js.publish(subject.clone(), e.encode()?.into()).await?);
        if acks.len() == 2000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("RUST_LOG".into(), "warn".into()));
    // Projector and alert settings from the environment reach the projector, e.g.
    // `CCP__ALERTS__ENABLED=false` measures the projections without the alert rules.
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("CCP__PROJECTOR__") || k.starts_with("CCP__ALERTS__")));
    let servers =
        [("ClickHouse", stack_pid("clickhouse/clickhouse-server.pid")), ("NATS", stack_pid("nats/nats-server.pid"))];
    let clk_tck = procfs::clk_tck();
    let cpu_ns = |before: Option<procfs::CpuSample>, pid: Option<u32>| -> Option<u64> {
        let after = procfs::CpuSample::read(pid?).ok()?;
        Some(procfs::CpuDelta::between(before?, after, clk_tck).ticks_ns)
    };

    let mut rates = Vec::new();
    let mut projector = None;
    for run in 1..=runs {
        drop(projector.take());
        clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await?;
        ccp_runtime::migrate::migrate(&settings.clickhouse).await.context("migrations")?;
        let server_before: Vec<_> =
            servers.iter().map(|(_, pid)| pid.and_then(|p| procfs::CpuSample::read(p).ok())).collect();
        let started = Instant::now();
        let service = Service::spawn(&bin, &["serve"], &env)?;
        let pid = service.child.id();
        let deadline = started + Duration::from_secs(600);
        while rows(&db).await < events {
            anyhow::ensure!(Instant::now() < deadline, "replay did not finish:\n{}", service.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let replay = started.elapsed();
        let rate = events as f64 / replay.as_secs_f64();
        let per_event = |ns: Option<u64>| {
            ns.map_or_else(|| "?".to_owned(), |ns| format!("{:.1}", ns as f64 / 1000.0 / events as f64))
        };
        let own = procfs::CpuSample::read(pid).ok().map(|s| s.ticks * (1_000_000_000 / clk_tck.max(1)));
        let peak_mib = procfs::rss_kib(pid).map_or(f64::NAN, |(_, hwm)| hwm as f64 / 1024.0);
        let parts: Vec<String> = servers
            .iter()
            .zip(&server_before)
            .map(|((name, pid), before)| format!("{name} {}", per_event(cpu_ns(*before, *pid))))
            .collect();
        println!(
            "replay {run}/{runs}: {events} events in {:.2} s (incl. projector start) = {rate:.0} events/s; \
             CPU µs/event: projector {}, {}; projector peak RSS {peak_mib:.0} MiB",
            replay.as_secs_f64(),
            per_event(own),
            parts.join(", ")
        );
        rates.push(rate);
        projector = Some(service);
    }
    rates.sort_by(f64::total_cmp);
    let rate = percentile(&rates, 0.5);
    println!("replay: median {rate:.0} events/s over {runs} run(s)");

    println!("freshness: {fresh_n} events, one every 50 ms...");
    let mut waits = Vec::new();
    for i in 0..fresh_n {
        let (request_id, e) = event(user, key, i as u64);
        let sent = Instant::now();
        log.js.publish(subject.clone(), e.encode()?.into()).await?.await?;
        let id = request_id.to_string();
        let deadline = sent + Duration::from_secs(10);
        loop {
            let n: u64 = clickhouse()
                .query(&format!("SELECT count() FROM {db}.requests WHERE request_id = ?"))
                .bind(&id)
                .fetch_one()
                .await
                .unwrap_or(0);
            if n > 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        waits.push(sent.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waits.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&waits, 0.5), percentile(&waits, 0.99));
    println!("freshness: published → queryable p50 {p50:.0} ms, p99 {p99:.0} ms (polled every 10 ms)");

    let replay_ok = rate >= 50_000.0;
    let fresh_ok = p99 <= 2000.0;
    println!();
    println!("TARGETS");
    println!(
        "{}  replay throughput into ClickHouse      {rate:>9.0} events/s >= 50000",
        if replay_ok { "PASS" } else { "MISS" }
    );
    println!(
        "{}  freshness p99 (published → queryable) {p99:>9.0} ms       <= 2000",
        if fresh_ok { "PASS" } else { "MISS" }
    );
    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await?;
    Ok(replay_ok && fresh_ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let (mut events, fresh, runs) = if quick { (20_000, 20, 1) } else { (100_000, 100, 3) };
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--events").and_then(|i| args.get(i + 1)) {
        match n.parse() {
            Ok(n) if n > 0 => events = n,
            _ => {
                eprintln!("ccp-bench-projector: --events takes a positive number, not {n:?}");
                return ExitCode::from(2);
            }
        }
    }
    match run(events, fresh, runs).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccp-bench-projector: {e:#}");
            ExitCode::FAILURE
        }
    }
}
