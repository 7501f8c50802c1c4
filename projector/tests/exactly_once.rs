//! The requests projection is exactly once: 100k usage events (plus undecodable ones) replayed
//! into ClickHouse while the projector is SIGKILLed at random points several times end up in
//! ClickHouse exactly once — rows, distinct request ids, token and cost sums equal the log's.
//! A dead run's insert that is still running in ClickHouse when the next run starts is waited
//! for, not projected a second time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ccp_schemas::events::{Event, Provider, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::Log;
use ccp_tests::{clickhouse, clickhouse_url, delete_namespace, service_env, test_settings, Service};
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

/// What the usage events of a log add up to, and what ClickHouse's `requests` table does.
#[derive(Default, Debug, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
struct Totals {
    rows: u64,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
    cost_nanos: u64,
}

/// Publishes `events` usage events and `garbage` undecodable ones in between: the usage events'
/// totals and how many undecodable ones it wrote.
async fn publish_log(log: &Log, rng: &mut Rng, events: u64, garbage: u64) -> (Totals, u64) {
    let users: Vec<UserId> = (0..20).map(|_| UserId::new()).collect();
    let keys: Vec<AccessKeyId> = (0..40).map(|_| AccessKeyId::new()).collect();
    let mut totals = Totals::default();
    let mut garbage_written = 0;
    let mut acks = Vec::with_capacity(2000);
    for i in 0..events + garbage {
        let key = keys[(rng.next() % 40) as usize];
        let subject = log.ns.subject(&Aggregate::Request(Some(key)));
        let payload: Vec<u8> = if garbage > 0 && i % (events / garbage + 1) == 7 {
            // An undecodable event in the middle of the log.
            garbage_written += 1;
            b"{\"not\":\"an event\"}".to_vec()
        } else if totals.rows >= events {
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
            let user = users[(rng.next() % 20) as usize];
            let event = RequestCompleted {
                provider: if rng.next().is_multiple_of(4) { Provider::Bedrock } else { Provider::Anthropic },
                response_model: Some("claude-sonnet-4-5-20250929".into()),
                usage,
                cost_usd: Some(cost),
                latency_ms: rng.next() % 10_000,
                ttfb_ms: Some(rng.next() % 1000),
                client_version: Some("claude-cli/2.1.332".into()),
                ..ccp_tests::events::completed(user, key)
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
    (totals, garbage_written)
}

async fn clickhouse_totals(db: &str) -> Totals {
    clickhouse()
        .query(&format!(
            "SELECT count() AS rows, sum(input_tokens) AS input, sum(output_tokens) AS output, \
             sum(cache_read_tokens) AS cache_read, sum(cache_creation_tokens) AS cache_creation, \
             sum(cost_nanos) AS cost_nanos FROM {db}.requests"
        ))
        .fetch_one()
        .await
        .unwrap_or_default()
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
    let (expected, garbage) = publish_log(&log, &mut rng, EVENTS, GARBAGE).await;
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
    assert_eq!(got, expected, "after {kills} SIGKILLs\n{}", projector.log_text());

    let distinct: u64 =
        clickhouse().query(&format!("SELECT uniqExact(request_id) FROM {db}.requests")).fetch_one().await.unwrap();
    assert_eq!(distinct, expected.rows);
    all_logs.push_str(&projector.log_text());
    let logs = all_logs;
    drop(projector);

    // The undecodable events were terminated, not redelivered for ever, and reported.
    let mut stream = log.js.get_stream(log.ns.stream(StreamKind::Requests)).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, expected.rows + garbage);
    assert!(garbage >= GARBAGE, "the log has undecodable events");
    assert!(logs.contains("terminating undecodable event"), "undecodable events are logged");
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

/// An INSERT left running by a killed projector: its body is on the wire, the final chunk not
/// yet; it commits when [`OrphanInsert::finish`] sends it.
struct OrphanInsert(TcpStream);

impl OrphanInsert {
    fn start(db: &str, query_id: &str, stream_seq: u64) -> Self {
        let addr = clickhouse_url().trim_start_matches("http://").trim_end_matches('/').to_owned();
        let mut stream = TcpStream::connect(&addr).unwrap();
        let query = format!("INSERT INTO {db}.requests (stream_seq, request_id) FORMAT JSONEachRow");
        let target = format!("/?query={}&query_id={}", url_encode(&query), url_encode(query_id));
        // ClickHouse starts (and lists) an insert once about a megabyte of its body has arrived.
        let row = format!("{{\"stream_seq\":{stream_seq},\"request_id\":\"orphan\"}}\n{}", " ".repeat(2_000_000));
        write!(
            stream,
            "POST {target} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{row}\r\n",
            row.len()
        )
        .unwrap();
        stream.flush().unwrap();
        Self(stream)
    }

    fn finish(mut self) -> String {
        self.0.write_all(b"0\r\n\r\n").unwrap();
        self.0.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = [0u8; 512];
        let n = self.0.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_dead_runs_running_insert_is_waited_for_not_projected_twice() {
    let settings = test_settings("orphan");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let env = service_env(&settings);
    let migrate = std::process::Command::new(BIN).arg("migrate").envs(env.clone()).output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let mut rng = Rng(0x5eed);
    let (expected, _) = publish_log(&log, &mut rng, 10, 0).await;

    // A dead run's batch for events 1..=4 (its last row carries stream_seq 4) is still running.
    let orphan = OrphanInsert::start(&db, &format!("ccp-projector.{db}.requests.01DEADRUN"), 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_inserts(&db).await == 0 {
        assert!(Instant::now() < deadline, "the orphan insert shows in system.processes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut env = env;
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(clickhouse_totals(&db).await.rows, 0, "nothing projected while the dead run's insert runs");
    let answer = orphan.finish();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The projection resumes after the orphan's progress: events 5..=10 once each.
    let deadline = Instant::now() + Duration::from_secs(30);
    while clickhouse_totals(&db).await.rows < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seqs: Vec<u64> = clickhouse()
        .query(&format!("SELECT stream_seq FROM {db}.requests ORDER BY stream_seq"))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(seqs, vec![4, 5, 6, 7, 8, 9, 10], "{}", projector.log_text());
    assert!(projector.log_text().contains("waiting for an earlier run's insert"), "{}", projector.log_text());
    assert_eq!(expected.rows, 10);
    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

async fn running_inserts(db: &str) -> u64 {
    clickhouse()
        .query("SELECT count() FROM system.processes WHERE startsWith(query_id, ?)")
        .bind(format!("ccp-projector.{db}.requests."))
        .fetch_one()
        .await
        .unwrap()
}
