//! The whole system on a three-node JetStream cluster (`scripts/stack.sh cluster`, every stream
//! and bucket at three replicas) losing nodes under load: Claude-Code-like streams through two
//! proxy replicas and admin commands throughout, while the leader of the request stream is
//! SIGKILLed, started again, and then every node is restarted in turn (a rolling restart).
//! Afterwards: every request was answered, ClickHouse holds each exactly once, every admin command
//! was applied exactly once (a retryable refusal retried with its `Idempotency-Key`), and the
//! projector has caught up with the whole stream.
//!
//! Bounded (about a minute); `scripts/soak cluster` runs the same faults on a longer schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccp_schemas::events::Event;
use ccp_schemas::subjects::StreamKind;
use ccp_tests::events::Log;
use ccp_tests::nats_cluster::{durable_consumer_peers, replica_counts, stream_leader, NatsCluster};
use ccp_tests::system::{wait_until, Completed, Load, Options, System};
use serde_json::json;

/// Load clients per proxy replica.
const CLIENTS: usize = 4;
/// Requests per client: unbounded, the clients run until the test stops them (however many
/// rounds of faults it runs).
const MAX_EACH: u64 = u64::MAX;
/// Milliseconds between the SSE events of a load answer.
const PACE_MS: u64 = 10;
/// Replicas of every stream and bucket.
const REPLICAS: usize = 3;
/// Longest a phase may take to show load progress, an election, the projector to catch up.
const BOUND: Duration = Duration::from_secs(60);
/// The buckets the services open for themselves (beside the projector's state buckets).
const OWN_BUCKETS: [&str; 4] = ["spend", "rate_limits", "admin_sessions", "idempotency"];

/// The load on both replicas.
struct Loads(Vec<Load>);

impl Loads {
    fn finished(&self) -> u64 {
        self.0.iter().map(Load::finished).sum()
    }

    /// Waits until `n` more requests (over both replicas) finished than now.
    async fn wait_more(&self, n: u64, what: &str) {
        let target = self.finished() + n;
        wait_until(BOUND, &format!("load progress ({what})"), || async { self.finished() >= target }).await;
    }

    async fn stop(self, sys: &System) -> Vec<Completed> {
        let mut done = Vec::new();
        for load in self.0 {
            let report = load.stop().await;
            assert!(report.failed.is_empty(), "requests failed: {:#?}\n{}", report.failed, sys.logs());
            done.extend(report.completed);
        }
        done
    }
}

/// How one admin command ended.
#[derive(Debug)]
struct Command {
    /// The unique user name it created.
    name: String,
    /// Answers before the last one (all retryable: 503, or 409 while the first was running).
    refused: Vec<u16>,
    /// 201, or 409 "already exists" when an earlier attempt had been applied after all.
    last: u16,
}

/// Admin commands (`POST /v1/users`, a fresh name each, with an `Idempotency-Key`) one after
/// another until stopped; a retryable refusal is sent again with the same key, as a client
/// following the API's advice does.
struct AdminChurn {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Vec<Command>, String>>,
}

impl AdminChurn {
    fn start(sys: &System) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (http, url, token) = (sys.http.clone(), format!("{}/v1/users", sys.admin_url), sys.token.clone());
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut done = Vec::new();
            for n in 0.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                done.push(create_user(&http, &url, &token, &format!("churn-{n:04}")).await?);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(done)
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<Command> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("admin task").unwrap_or_else(|e| panic!("an admin command: {e}"))
    }
}

/// One user creation, sent again (same `Idempotency-Key`) while refused with a retryable error.
async fn create_user(http: &reqwest::Client, url: &str, token: &str, name: &str) -> Result<Command, String> {
    let key = ulid::Ulid::new().to_string();
    let started = Instant::now();
    let mut refused = Vec::new();
    loop {
        let sent = http
            .post(url)
            .bearer_auth(token)
            .header("idempotency-key", &key)
            .timeout(Duration::from_secs(30))
            .json(&json!({ "name": name }))
            .send()
            .await;
        let (status, body) = match sent {
            Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
            Err(e) => return Err(format!("{name}: the admin API did not answer: {e}")),
        };
        let retryable = status == 503 || (status == 409 && body.contains("still being processed"));
        match status {
            201 => return Ok(Command { name: name.to_owned(), refused, last: status }),
            // Applied by an attempt whose answer was a refusal: the name is taken by itself.
            409 if !refused.is_empty() && body.contains("already exists") => {
                return Ok(Command { name: name.to_owned(), refused, last: status })
            }
            _ if retryable => refused.push(status),
            _ => return Err(format!("{name}: {status} {body} (after {refused:?})")),
        }
        if started.elapsed() > BOUND {
            return Err(format!("{name}: still refused after {BOUND:?}: {refused:?}, last {status} {body}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `SELECT count(), uniqExact(request_id), max(stream_seq)` of the `requests` table.
async fn requests_table(sys: &System) -> (u64, u64, u64) {
    let query = format!(
        "SELECT count(), uniqExact(request_id), max(stream_seq) FROM {}.requests FORMAT TabSeparated",
        sys.settings.clickhouse.database
    );
    let text = sys.http.post(ccp_tests::clickhouse_url()).body(query).send().await.unwrap().text().await.unwrap();
    let v: Vec<u64> = text.split_whitespace().map(|f| f.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

/// Every stream and bucket, and every durable consumer, is held by three nodes.
async fn assert_replicated(log: &Log, when: &str) {
    let streams = replica_counts(&log.js).await;
    for bucket in OWN_BUCKETS {
        let name = format!("KV_{}_{bucket}", log.ns.prefix());
        assert!(streams.iter().any(|(s, _, _)| *s == name), "{when}: no bucket {name}: {streams:?}");
    }
    for (name, configured, held) in &streams {
        assert_eq!((*configured, *held), (REPLICAS, REPLICAS), "{when}: {name} (configured, held): {streams:?}");
    }
    let consumers = durable_consumer_peers(&log.js).await;
    assert!(!consumers.is_empty(), "{when}: the projector's durable consumers are missing");
    for (name, held) in &consumers {
        assert_eq!(*held, REPLICAS, "{when}: consumer {name} is held by {held} nodes: {consumers:?}");
    }
}

/// Last sequence of `stream` (0 while it does not answer).
async fn last_seq(log: &Log, stream: &str) -> u64 {
    let Ok(mut s) = log.js.get_stream(stream).await else { return 0 };
    s.info().await.map(|i| i.state.last_sequence).unwrap_or(0)
}

/// One round of faults under the running load: the leader of `stream` SIGKILLed (a new one
/// elected, the request stream still taking events with the node down), the node started
/// again, then every node restarted in turn. Returns the leaders `stream` had.
async fn faults(cluster: &NatsCluster, log: &Log, loads: &Loads, stream: &str, requests: &str) -> Vec<String> {
    // The monitoring endpoints' answer, checked against the stream's own (a moment apart, so
    // asked again while a restarted node's view settles).
    let deadline = Instant::now() + BOUND;
    let (leader, old) = loop {
        let leader = cluster.leader(stream).await;
        let old = format!("n{leader}");
        let api = stream_leader(&log.js, stream).await;
        if api.as_deref() == Some(old.as_str()) {
            break (leader, old);
        }
        assert!(Instant::now() < deadline, "/jsz names {old} the leader of {stream}, STREAM.INFO {api:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    cluster.kill(leader).await;
    let killed_at = Instant::now();
    wait_until(BOUND, &format!("a new leader of {stream}"), || async {
        stream_leader(&log.js, stream).await.is_some_and(|l| l != old)
    })
    .await;
    let elected = stream_leader(&log.js, stream).await.unwrap_or_default();
    eprintln!("{stream}: leader {old} SIGKILLed, {elected} elected within {:?}", killed_at.elapsed());
    let mut leaders = vec![old, elected];
    // Two of three nodes keep taking the events: the request stream grows with the node down.
    let before = last_seq(log, requests).await;
    wait_until(BOUND, "the request stream taking events with a node down", || async {
        last_seq(log, requests).await >= before + 40
    })
    .await;
    loads.wait_more(40, "with a node down").await;

    // The node comes back and catches up (the script waits for its /healthz).
    cluster.start_node(leader).await;
    loads.wait_more(20, "after the node's return").await;

    // A rolling restart: each node hands over its leaderships, stops, starts, catches up.
    for node in 1..=3 {
        cluster.restart(node).await;
        loads.wait_more(20, &format!("after node {node}'s restart")).await;
        let now = stream_leader(&log.js, stream).await.unwrap_or_default();
        if leaders.last() != Some(&now) {
            leaders.push(now);
        }
    }
    loads.wait_more(20, "after the rolling restart").await;
    leaders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_stream_leader_killed_then_every_node_restarted_under_load() {
    let started = Instant::now();
    let cluster = NatsCluster::start("ncluster").await;
    let mut options = Options::new("ncluster");
    options.proxies = 2;
    options.nats_url = Some(cluster.url());
    options.env.push(("CCP__NATS__REPLICAS".into(), REPLICAS.to_string()));
    let sys = System::start(options).await;
    // The test's own handle on the log, with the services' policy (`ensure` must not shrink it).
    let mut settings = sys.settings.clone();
    settings.nats.replicas = REPLICAS;
    let log = Log::new(&settings).await;
    let (_, _, key) = sys.developer("Kim").await;
    wait_until(BOUND, "the services' own buckets", || async {
        let names: Vec<String> = replica_counts(&log.js).await.into_iter().map(|(n, _, _)| n).collect();
        OWN_BUCKETS.iter().all(|b| names.contains(&format!("KV_{}_{b}", log.ns.prefix())))
    })
    .await;
    assert_replicated(&log, "at start").await;

    let requests = log.ns.stream(StreamKind::Requests);
    let loads = Loads(
        (0..2).map(|i| Load::start(&format!("{}/ak/{key}", sys.proxy_url(i)), CLIENTS, MAX_EACH, PACE_MS)).collect(),
    );
    let admin = AdminChurn::start(&sys);
    loads.wait_more(40, "before the faults").await;

    let rounds = std::env::var("CCP_TEST_CLUSTER_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
    let mut leaders = Vec::new();
    for round in 0..rounds {
        // The request stream's leader first; in longer runs (`scripts/soak cluster`) the admin
        // stream's every other round.
        let kind = if round % 2 == 0 { StreamKind::Requests } else { StreamKind::Admin };
        leaders.push(faults(&cluster, &log, &loads, &log.ns.stream(kind), &requests).await);
        eprintln!("round {} of {rounds} done after {:?}", round + 1, started.elapsed());
    }

    // Every request answered, every admin command applied.
    let commands = admin.stop().await;
    let done = loads.stop(&sys).await;
    eprintln!("load and admin commands stopped after {:?}", started.elapsed());
    for i in 0..2 {
        wait_until(BOUND, &format!("replica {i}'s spool drained"), || async {
            sys.proxy_metric(i, "ccp_proxy_spool_depth_events").await == 0.0
        })
        .await;
    }
    let retried: Vec<&Command> = commands.iter().filter(|c| !c.refused.is_empty()).collect();
    eprintln!(
        "{} requests answered; {} admin commands, {} refused with a retryable error first ({:?}); \
         leaders of the stream killed each round: {leaders:?}",
        done.len(),
        commands.len(),
        retried.len(),
        retried.iter().map(|c| (&c.name, &c.refused, c.last)).collect::<Vec<_>>()
    );
    assert!(commands.len() >= 10, "only {} admin commands ran during the churn", commands.len());
    // Each exactly once in the event log (a retry after a lost answer must not create it twice).
    let mut created: HashMap<String, usize> = HashMap::new();
    for (_, envelope) in log.read_all(StreamKind::Admin).await {
        if let Event::UserCreated(u) = envelope.event {
            *created.entry(u.name).or_default() += 1;
        }
    }
    for c in &commands {
        assert_eq!(created.get(&c.name), Some(&1), "{} was created {:?} times ({c:?})", c.name, created.get(&c.name));
    }
    let churned = created.keys().filter(|n| n.starts_with("churn-")).count();
    assert_eq!(churned, commands.len(), "users created that no command asked for");

    eprintln!("spools drained, admin commands checked after {:?}", started.elapsed());
    // The projector caught up with the whole stream, each event projected once (checked before
    // the reconciliation, so that a loss says whether the stream or the projection lacks it).
    // The stream is read again each time: the proxies' publishers may still hand over the last
    // events they gathered (`LINGER`) after the load stopped.
    let mut stream = log.js.get_stream(&requests).await.unwrap();
    let deadline = Instant::now() + BOUND;
    let (state, (rows, ids, max_seq)) = loop {
        let state = stream.info().await.unwrap().state.clone();
        let (rows, ids, max_seq) = requests_table(&sys).await;
        if (rows >= state.messages && max_seq == state.last_sequence) || Instant::now() > deadline {
            break (state, (rows, ids, max_seq));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "request stream: {} events, last sequence {}; ClickHouse: {rows} rows, {ids} request ids, up to {max_seq}",
        state.messages, state.last_sequence
    );
    assert_eq!(
        (rows, ids, max_seq),
        (state.messages, state.messages, state.last_sequence),
        "ClickHouse (rows, request ids, last sequence) against the request stream after {BOUND:?}\n{}",
        sys.logs()
    );
    // Every answered request exactly once, with its tokens and cost.
    sys.reconcile(&done, BOUND).await;
    eprintln!("reconciled after {:?}", started.elapsed());

    assert_replicated(&log, "after the churn").await;
    let mut sys = sys;
    let projector = sys.projector.as_mut().unwrap();
    assert!(projector.child.try_wait().unwrap().is_none(), "the projector died:\n{}", projector.log_text());
    // The system is whole: a key issued now is accepted by both replicas.
    let (_, _, late) = sys.developer("Kim Late").await;
    assert!(!late.is_empty());
    eprintln!("a new key works on both replicas after {:?}", started.elapsed());
    sys.finish().await;
    eprintln!("cluster test took {:?}", started.elapsed());
    drop(cluster);
}
