//! The state projection into JetStream KV: users, access keys (by id and by hash), sealed
//! Bedrock keys, budgets, routing and circuit state, kept current live.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use ccp_schemas::events::{BudgetSet, CircuitOpened, Event, RoutingStrategy, TripReason};
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_schemas::subjects::Bucket;
use ccp_tests::events::Log;
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

async fn get(log: &Log, bucket: Bucket, key: &str) -> Option<serde_json::Value> {
    let store = log.js.get_key_value(log.ns.bucket(bucket)).await.unwrap();
    store.get(key).await.unwrap().map(|v| {
        serde_json::from_slice(&v).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&v).into_owned()))
    })
}

async fn eventually(
    log: &Log,
    bucket: Bucket,
    key: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = get(log, bucket, key).await {
            if check(&v) {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "{bucket:?}/{key} never matched: {:?}", get(log, bucket, key).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn users_keys_hashes_bedrock_keys_and_circuits_are_projected_live() {
    let settings = test_settings("kvstate");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let master = LocalMasterKey::new("local-1", &LocalMasterKey::generate_b64().unwrap()).unwrap();
    let (user_id, key_id, key) = log.user_with_key("dana").await;
    log.register_bedrock_key(user_id, key_id, &master, "ABSKQmVkcm9ja0FQSUtleS1rdi10ZXN0LTAwMDE=").await;
    log.append(Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd: Some("50".parse().unwrap()) })).await;
    log.set_routing(user_id, RoutingStrategy::BedrockOnly).await;

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    let _projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();

    let user = eventually(&log, Bucket::Users, &user_id.to_string(), |u| u["routing"] == "bedrock_only").await;
    assert_eq!(user["name"], "dana");
    assert_eq!(user["monthly_limit_usd"], "50");
    let k = eventually(&log, Bucket::AccessKeys, &key_id.to_string(), |k| k["bedrock_key"].is_object()).await;
    assert_eq!(k["status"], "active");
    assert_eq!(k["bedrock_key"]["hint"], "ABSK…MDE=");
    assert!(!k.to_string().contains("cmRrdi10ZXN0"), "only the sealed key is stored");
    let hash = key.hash(&log.pepper).to_hex();
    let by_hash = eventually(&log, Bucket::KeyHashes, &hash, |_| true).await;
    assert_eq!(by_hash, serde_json::Value::String(key_id.to_string()));

    // Live: rotation moves the hash entry, revocation shows.
    let new = log.rotate(user_id, key_id, &key).await;
    eventually(&log, Bucket::KeyHashes, &new.hash(&log.pepper).to_hex(), |_| true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&log, Bucket::KeyHashes, &hash).await.is_some() {
        assert!(Instant::now() < deadline, "the old hash stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log.revoke(user_id, key_id).await;
    eventually(&log, Bucket::AccessKeys, &key_id.to_string(), |k| k["status"] == "revoked").await;

    log.append(Event::CircuitOpened(CircuitOpened {
        key_id,
        reason: TripReason::Overloaded,
        failures: 3,
        retry_at: chrono::Utc::now() + chrono::Duration::minutes(30),
    }))
    .await;
    let c = eventually(&log, Bucket::Circuits, &key_id.to_string(), |c| c["state"] == "open").await;
    assert_eq!(c["reason"], "overloaded");

    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

/// Waits until the projector's state projection has caught up and written every state.
async fn caught_up(projector: &Service) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !projector.log_text().contains("state projection caught up") {
        assert!(Instant::now() < deadline, "never caught up:\n{}", projector.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A restart writes each user and key whose state the buckets do not hold yet once, with its
/// current state, after reading the stream: a reader of the buckets never sees an older state
/// come back while the projector replays, the writes follow the state (the one user whose state
/// changed while the projector was down, once; the unchanged key, never) and not the history
/// (forty routing changes, a rotation, a revocation), and a hash entry that names no current key
/// is purged.
#[tokio::test]
async fn a_restart_writes_current_states_once_and_never_an_older_one() {
    use futures_util::StreamExt as _;
    let settings = test_settings("kvrestart");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let (user_id, key_id, key) = log.user_with_key("erin").await;
    for i in 0..20 {
        let strategy = if i % 2 == 0 { RoutingStrategy::BedrockOnly } else { RoutingStrategy::PlanFirst };
        log.set_routing(user_id, strategy).await;
    }
    let rotated = log.rotate(user_id, key_id, &key).await;
    log.revoke(user_id, key_id).await;
    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    caught_up(&projector).await;
    eventually(&log, Bucket::AccessKeys, &key_id.to_string(), |k| k["status"] == "revoked").await;
    eventually(&log, Bucket::KeyHashes, &rotated.hash(&log.pepper).to_hex(), |_| true).await;
    drop(projector);
    // Twenty more routing changes while it is down; the last one differs from what was written.
    for i in 0..20 {
        let strategy = if i % 2 == 0 { RoutingStrategy::PlanFirst } else { RoutingStrategy::BedrockOnly };
        log.set_routing(user_id, strategy).await;
    }

    // A hash entry left behind (a projector that died between a rotation's put and purge).
    let hashes = log.js.get_key_value(log.ns.bucket(Bucket::KeyHashes)).await.unwrap();
    let stale = key.hash(&log.pepper).to_hex();
    hashes.put(&stale, key_id.to_string().into()).await.unwrap();
    let users_stream = format!("KV_{}", log.ns.bucket(Bucket::Users));
    let users_written =
        || async { log.js.get_stream(&users_stream).await.unwrap().info().await.unwrap().state.last_sequence };
    let keys_stream = format!("KV_{}", log.ns.bucket(Bucket::AccessKeys));
    let keys_written =
        || async { log.js.get_stream(&keys_stream).await.unwrap().info().await.unwrap().state.last_sequence };
    let (before, keys_before) = (users_written().await, keys_written().await);
    let users = log.js.get_key_value(log.ns.bucket(Bucket::Users)).await.unwrap();
    let mut watch = users.watch(user_id.to_string()).await.unwrap();

    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    caught_up(&projector).await;
    assert_eq!(users_written().await - before, 1, "one put for the one user, not one per event");
    assert_eq!(keys_written().await - keys_before, 0, "no put for the key, whose entry is current");
    let mut seen = Vec::new();
    while let Ok(Some(Ok(entry))) = tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
        seen.push(serde_json::from_slice::<serde_json::Value>(&entry.value).unwrap_or_default()["routing"].clone());
    }
    assert_eq!(seen, vec![serde_json::json!("bedrock_only")], "the user's entry as a reader saw it during the restart");
    eventually(&log, Bucket::AccessKeys, &key_id.to_string(), |k| k["status"] == "revoked").await;
    assert!(get(&log, Bucket::KeyHashes, &stale).await.is_none(), "the stale hash entry was purged");
    // Live again: the next event is written as it comes.
    log.set_routing(user_id, RoutingStrategy::PlanFirst).await;
    eventually(&log, Bucket::Users, &user_id.to_string(), |u| u["routing"] == "plan_first").await;
    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
