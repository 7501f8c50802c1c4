//! An insert that ClickHouse committed but whose answer the projector never got (the
//! connection broke after the request went through) is not projected a second time when the
//! projector retries: found by `tests/tests/faults.rs` (ClickHouse away for 30 s under load left
//! duplicate rows).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::ToSocketAddrs as _;
use std::path::Path;
use std::time::Duration;

use ccp_schemas::events::{Event, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_tests::events::{completed, Log};
use ccp_tests::system::{wait_until, TcpGate};
use ccp_tests::{clickhouse, clickhouse_url, delete_namespace, service_env, test_settings, wait_http_ok, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

async fn rows(db: &str) -> (u64, u64) {
    clickhouse()
        .query(&format!("SELECT count(), uniqExact(request_id) FROM {db}.requests"))
        .fetch_one()
        .await
        .unwrap_or((0, 0))
}

async fn publish(log: &Log, n: usize) {
    let (user, key) = (UserId::new(), AccessKeyId::new());
    for i in 0..n {
        let event = RequestCompleted {
            usage: TokenUsage { input_tokens: 100 + i as u64, output_tokens: 7, ..TokenUsage::default() },
            cost_usd: Some(rust_decimal::Decimal::new(1, 6)),
            latency_ms: 5,
            ttfb_ms: Some(1),
            ..completed(user, key)
        };
        log.append(Event::RequestCompleted(event)).await;
    }
}

async fn last_sequence(url: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("{url}/metrics")).await else { return 0 };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("ccp_projector_last_sequence{projection=\"requests\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_insert_whose_answer_was_lost_is_not_written_twice() {
    let settings = test_settings("lostanswer");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let target = clickhouse_url().trim_start_matches("http://").trim_end_matches('/').to_socket_addrs().unwrap();
    let gate = TcpGate::start(target.into_iter().next().unwrap());

    let port = ccp_tests::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut env = service_env(&settings);
    env.retain(|(k, _)| k != "CCP__CLICKHOUSE__URL");
    env.extend([
        ("CCP__CLICKHOUSE__URL".to_owned(), format!("http://127.0.0.1:{}", gate.port)),
        ("CCP__PROJECTOR__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("CCP__PROJECTOR__FLUSH_INTERVAL_MS".to_owned(), "100".to_owned()),
    ]);
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    wait_http_ok(&format!("{url}/ready"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", projector.log_text()));

    // ClickHouse takes the insert; the projector never hears back.
    gate.lose_answers();
    publish(&log, 50).await;
    // (The events may come in more than one batch; the first one's insert blocks the rest.)
    wait_until(Duration::from_secs(30), "an insert committed in ClickHouse", || async { rows(&db).await.0 >= 1 }).await;
    wait_until(Duration::from_secs(30), "the projector saw its insert fail", || async {
        projector.log_text().contains("projection batch failed")
    })
    .await;
    assert_eq!(last_sequence(&url).await, 0, "the projector cannot know the insert landed");

    // The connection is back: the retry finds the rows there and acknowledges them.
    gate.restore();
    wait_until(Duration::from_secs(30), "the projector caught up", || async { last_sequence(&url).await >= 50 }).await;
    publish(&log, 1).await;
    wait_until(Duration::from_secs(30), "the next event projected", || async { rows(&db).await.0 >= 51 }).await;
    assert_eq!(rows(&db).await, (51, 51), "each event exactly once\n{}", projector.log_text());

    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    let _ = clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await;
}
