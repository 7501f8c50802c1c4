//! The requests projection is exactly once: 100k usage events (plus undecodable ones) replayed
//! into ClickHouse while the projector is SIGKILLed at random points several times end up in
//! ClickHouse exactly once — rows, distinct request ids, token and cost sums equal the log's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use ccp_schemas::events::{Endpoint, Event, Provider, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::Log;
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};
use rust_decimal::Decimal;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");
const EVENTS: u64 = 100_000;
const GARBAGE: u64 = 3;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Totals {
    garbage: u64,
    rows: u64,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
    cost_nanos: u64,
}

async fn publish_log(log: &Log, rng: &mut Rng) -> Totals {
    let users: Vec<UserId> = (0..20).map(|_| UserId::new()).collect();
    let keys: Vec<AccessKeyId> = (0..40).map(|_| AccessKeyId::new()).collect();
    let mut totals = Totals::default();
    let mut acks = Vec::with_capacity(2000);
    for i in 0..EVENTS + GARBAGE {
        let key = keys[(rng.next() % 40) as usize];
        let subject = log.ns.subject(&Aggregate::Request(Some(key)));
        let payload: Vec<u8> = if i % (EVENTS / GARBAGE + 1) == 7 {
            // An undecodable event in the middle of the log.
            totals.garbage += 1;
            b"{\"not\":\"an event\"}".to_vec()
        } else if totals.rows >= EVENTS {
            continue;
        } else {
            let usage = TokenUsage {
                input_tokens: rng.next() % 5000,
                output_tokens: rng.next() % 2000,
                cache_read_input_tokens: rng.next() % 100_000,
                cache_creation_input_tokens: rng.next() % 10_000,
            };
            let cost = Decimal::new((rng.next() % 10_000_000) as i64, 9);
            totals.rows += 1;
            totals.input += usage.input_tokens;
            totals.output += usage.output_tokens;
            totals.cache_read += usage.cache_read_input_tokens;
            totals.cache_creation += usage.cache_creation_input_tokens;
            totals.cost_nanos += ccp_schemas::pricing::to_nanos(cost);
            let event = RequestCompleted {
                request_id: RequestId::new(),
                key_id: Some(key),
                user_id: Some(users[(rng.next() % 20) as usize]),
                key_prefix: None,
                endpoint: Endpoint::Messages,
                provider: if rng.next().is_multiple_of(4) { Provider::Bedrock } else { Provider::Anthropic },
                requested_model: Some("claude-sonnet-4-5".into()),
                response_model: Some("claude-sonnet-4-5-20250929".into()),
                bedrock_model_id: None,
                region: None,
                fallback: false,
                fallback_reason: None,
                status: 200,
                error_class: None,
                stream: true,
                incomplete: false,
                stop_reason: Some("end_turn".into()),
                usage,
                cost_usd: cost,
                pricing_version: Some(0),
                latency_ms: rng.next() % 10_000,
                ttfb_ms: Some(rng.next() % 1000),
                session_id: None,
                client_version: Some("claude-cli/2.1.332".into()),
            };
            Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: "gen".into() }).encode().unwrap()
        };
        acks.push(log.js.publish(subject, payload.into()).await.unwrap());
        if acks.len() >= 2000 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    totals
}

async fn clickhouse_totals(db: &str) -> Totals {
    #[derive(serde::Deserialize, clickhouse::Row)]
    struct Row {
        rows: u64,
        input: u64,
        output: u64,
        cache_read: u64,
        cache_creation: u64,
        cost_nanos: u64,
    }
    let r: Row = clickhouse()
        .query(&format!(
            "SELECT count() AS rows, sum(input_tokens) AS input, sum(output_tokens) AS output, \
             sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_creation, \
             sum(cost_nanos) AS cost_nanos FROM {db}.requests"
        ))
        .fetch_one()
        .await
        .unwrap_or(Row { rows: 0, input: 0, output: 0, cache_read: 0, cache_creation: 0, cost_nanos: 0 });
    Totals {
        garbage: 0,
        rows: r.rows,
        input: r.input,
        output: r.output,
        cache_read: r.cache_read,
        cache_creation: r.cache_creation,
        cost_nanos: r.cost_nanos,
    }
}

#[tokio::test]
async fn a_projector_killed_at_random_points_projects_every_event_exactly_once() {
    let settings = test_settings("exactly");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let expected = publish_log(&log, &mut rng).await;
    eprintln!("published {} events in {:?}", expected.rows, started.elapsed());

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("CCP__PROJECTOR__BATCH_SIZE".into(), "2000".into()));
    let mut kills = 0;
    let mut all_logs = String::new();
    for _ in 0..4 {
        let mut projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
        let wait = 150 + rng.next() % 700;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        projector.child.kill().unwrap(); // SIGKILL
        projector.child.wait().unwrap();
        all_logs.push_str(&projector.log_text());
        kills += 1;
        eprintln!("killed after {wait} ms: {} rows so far", clickhouse_totals(&db).await.rows);
    }
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got = clickhouse_totals(&db).await;
    while got.rows < expected.rows && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        got = clickhouse_totals(&db).await;
    }
    // Let anything that would double count arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    got = clickhouse_totals(&db).await;
    got.garbage = expected.garbage;
    assert_eq!(got, expected, "after {kills} SIGKILLs\n{}", projector.log_text());

    let distinct: u64 =
        clickhouse().query(&format!("SELECT uniqExact(request_id) FROM {db}.requests")).fetch_one().await.unwrap();
    assert_eq!(distinct, expected.rows);
    all_logs.push_str(&projector.log_text());
    let logs = all_logs;
    drop(projector);

    // The undecodable events were terminated, not redelivered for ever, and reported.
    let mut stream = log.js.get_stream(log.ns.stream(StreamKind::Requests)).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, expected.rows + expected.garbage);
    assert!(expected.garbage >= GARBAGE, "the log has undecodable events");
    assert!(logs.contains("terminating undecodable event"), "undecodable events are logged");
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
