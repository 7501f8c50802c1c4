//! The whole system under faults while Claude-Code-like streams flow (bounded loops, loopback
//! only, fake upstreams), each followed by a reconciliation: every request a client completed
//! is in ClickHouse exactly once, with the token counts the upstream sent and their cost.
//!
//! - NATS restarted (a private `nats-server`, killed and started again on its store);
//! - ClickHouse unreachable for 30 s: the projector reaches ClickHouse through a [`TcpGate`]
//!   the test cuts — equivalent, from the projector's side, to the server going away (open
//!   connections reset, new ones closed), without stopping the ClickHouse other tests share;
//! - the projector SIGKILLed and restarted;
//! - one of two proxy replicas SIGTERMed with streams in flight: they complete, and a key
//!   revoked afterwards is refused by the surviving replica within a second.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::ToSocketAddrs as _;
use std::time::{Duration, Instant};

use ccp_tests::system::{
    finish_stream, load_usage, stream_request, Completed, Load, Options, PrivateNats, System, TcpGate,
};

/// Load clients (Claude Code streams one request at a time per session).
const CLIENTS: usize = 8;
/// Upper bound of requests per client (the loops end well before, when the test stops them).
const MAX_EACH: u64 = 400;
/// Milliseconds between the SSE events of a load answer.
const PACE_MS: u64 = 10;
/// How long the projector may take to catch up after a fault.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Stops the load, checks every request completed, and returns them.
async fn completed(load: Load, sys: &System) -> Vec<Completed> {
    let report = load.stop().await;
    assert!(report.failed.is_empty(), "requests failed: {:#?}\n{}", report.failed, sys.logs());
    assert!(!report.completed.is_empty());
    eprintln!("{} requests completed", report.completed.len());
    report.completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_during_traffic() {
    let store = std::env::temp_dir().join(ccp_tests::unique_name("natsrestart"));
    let mut nats = PrivateNats::start(&store);
    let mut options = Options::new("fnats");
    options.nats_url = Some(nats.url());
    let sys = System::start(options).await;
    let (_, _, key) = sys.developer("Nadia").await;
    let base = format!("{}/ak/{key}", sys.proxy_url(0));

    let load = Load::start(&base, CLIENTS, MAX_EACH, PACE_MS);
    load.wait_more(40, Duration::from_secs(30)).await;
    nats.kill();
    // The proxy keeps answering while NATS is gone; unacknowledged events go to the spool.
    ccp_tests::system::wait_until(Duration::from_secs(30), "events spooled during the outage", || async {
        sys.proxy_metric(0, "ccp_proxy_spool_depth_events").await >= 1.0
    })
    .await;
    load.wait_more(80, Duration::from_secs(30)).await;
    nats.restart();
    load.wait_more(80, Duration::from_secs(30)).await;
    let done = completed(load, &sys).await;
    ccp_tests::system::wait_until(Duration::from_secs(30), "the spool drained", || async {
        sys.proxy_metric(0, "ccp_proxy_spool_depth_events").await == 0.0
    })
    .await;
    // The admin API and the proxy's key table are back too: a key issued now works.
    let (_, _, late_key) = sys.developer("Nadia Late").await;
    assert!(!late_key.is_empty());

    sys.reconcile(&done, CATCH_UP).await;
    // The system is whole again: a request made now is projected too.
    let http = reqwest::Client::new();
    let (id, resp) = stream_request(&http, &base, 999_999, 0).await.unwrap();
    finish_stream(resp).await.unwrap();
    sys.reconcile(&[Completed { request_id: id, usage: load_usage(999_999) }], CATCH_UP).await;
    sys.finish().await;
    drop(nats);
    let _ = std::fs::remove_dir_all(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_unreachable_for_30_seconds() {
    let target = ccp_tests::clickhouse_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let gate = TcpGate::start(target);
    let mut options = Options::new("fclick");
    options.services_clickhouse_url = Some(format!("http://127.0.0.1:{}", gate.port));
    let sys = System::start(options).await;
    let (_, _, key) = sys.developer("Chloe").await;
    let base = format!("{}/ak/{key}", sys.proxy_url(0));

    let load = Load::start(&base, CLIENTS, MAX_EACH, PACE_MS);
    load.wait_more(40, Duration::from_secs(30)).await;
    gate.cut();
    let cut_at = Instant::now();
    // The outage itself is the fault under test: 30 s of traffic with ClickHouse away.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows_early = sys.clickhouse_requests().await.len();
    tokio::time::sleep(Duration::from_secs(25)).await;
    let rows_late = sys.clickhouse_requests().await.len();
    assert_eq!(rows_early, rows_late, "the projector still reached ClickHouse through the cut gate");
    gate.restore();
    eprintln!("ClickHouse was unreachable for {:?}; {} requests finished by then", cut_at.elapsed(), load.finished());
    load.wait_more(40, Duration::from_secs(30)).await;
    let done = completed(load, &sys).await;

    sys.reconcile(&done, CATCH_UP).await;
    let mut sys = sys;
    let projector = sys.projector.as_mut().unwrap();
    assert!(projector.child.try_wait().unwrap().is_none(), "the projector died:\n{}", projector.log_text());
    sys.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projector_killed_and_a_proxy_replica_terminated_mid_stream() {
    let mut options = Options::new("freplica");
    options.proxies = 2;
    let mut sys = System::start(options).await;
    let (_, _, key) = sys.developer("Rui").await;
    let (_, doomed_key_id, doomed_key) = sys.developer("Sam").await;
    let on = |i: usize| format!("{}/ak/{key}", sys.proxy_url(i));
    let (base_a, base_b) = (on(0), on(1));

    // Load on the surviving replica throughout; the projector is SIGKILLed mid-load.
    let load = Load::start(&base_b, CLIENTS, MAX_EACH, PACE_MS);
    load.wait_more(40, Duration::from_secs(30)).await;
    sys.kill_projector();
    load.wait_more(40, Duration::from_secs(30)).await;
    sys.start_projector().await;
    load.wait_more(20, Duration::from_secs(30)).await;

    // Slow streams in flight on replica A when it is told to stop.
    let http = reqwest::Client::new();
    let mut in_flight = Vec::new();
    for n in 0..4 {
        let n = 1_000_000 + n;
        let (id, resp) = stream_request(&http, &base_a, n, 250).await.unwrap();
        in_flight.push((Completed { request_id: id, usage: load_usage(n) }, tokio::spawn(finish_stream(resp))));
    }
    let mut a = sys.proxies[0].service.take().unwrap();
    ccp_tests::system::sigterm(&a.child);
    let mut streamed = Vec::new();
    for (c, task) in in_flight {
        let text = task.await.unwrap();
        assert!(text.is_ok(), "stream {} on the terminated replica was cut: {text:?}", c.request_id);
        streamed.push(c);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = a.terminate(Duration::from_secs(30));
        (status, a.log_text())
    })
    .await
    .unwrap();
    assert!(status.0.is_some_and(|s| s.success()), "replica A did not exit cleanly:\n{}", status.1);
    assert!(stream_request(&http, &base_a, 2_000_000, 0).await.is_err(), "replica A is gone");

    // Revocation reaches the surviving replica within a second.
    sys.wait_key_status(1, &doomed_key, |s| s == 200, "the second key on replica B").await;
    sys.admin(reqwest::Method::POST, &format!("/v1/keys/{doomed_key_id}/revoke"), None).await;
    let took = sys.wait_key_status(1, &doomed_key, |s| s == 401, "a revoked key on replica B").await;
    eprintln!("revocation reached replica B after {took:?}");
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");

    let mut done = completed(load, &sys).await;
    done.extend(streamed);
    let rows = sys.reconcile(&done, CATCH_UP).await;
    let replicas: std::collections::HashSet<&str> = rows.iter().map(|r| r.replica.as_str()).collect();
    assert!(replicas.len() >= 2, "both replicas served: {replicas:?}");
    sys.finish().await;
}
