//! `ccp-projector rebuild` gives the same tables as the live projection, prints progress, and
//! leaves a working setup: the projector continues on the rebuilt tables and the rollup views.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_schemas::events::{CircuitOpened, Event, Provider, RequestCompleted, TokenUsage, TripReason};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::subjects::Aggregate;
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, wait_requests, wait_rollups, Log};
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};
use rust_decimal::Decimal;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

async fn publish_requests(log: &Log, users: &[UserId], n: u64) {
    let key = AccessKeyId::new();
    let mut acks = Vec::new();
    for i in 0..n {
        let event = RequestCompleted {
            provider: if i % 3 == 0 { Provider::Bedrock } else { Provider::Anthropic },
            requested_model: Some("claude-haiku-4-5".into()),
            response_model: None,
            fallback: i % 3 == 0,
            stream: false,
            stop_reason: None,
            usage: TokenUsage {
                input_tokens: i,
                output_tokens: 2 * i,
                cache_read_input_tokens: 3,
                cache_creation_input_tokens: 1,
            },
            cost_usd: Some(Decimal::new(i as i64, 6)),
            latency_ms: 1,
            ..completed(users[(i % users.len() as u64) as usize], key)
        };
        let envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: "t".into() });
        acks.push(
            log.js
                .publish(log.ns.subject(&Aggregate::Request(Some(key))), envelope.encode().unwrap().into())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Everything that must be identical between the live projection and a rebuild.
async fn snapshot(db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "SELECT count(), sum(input_tokens), sum(output_tokens), sum(cost_nanos), uniqExact(request_id), max(stream_seq) FROM requests",
        "SELECT count(), groupArray(event_type), max(stream_seq) FROM (SELECT * FROM audit_log ORDER BY stream_seq)",
        "SELECT count(), groupArray(state) FROM circuit_transitions",
        "SELECT sum(requests), sum(fallbacks), sum(input_tokens), sum(cost_nanos) FROM usage_minute",
        "SELECT sum(requests), sum(fallbacks), sum(input_tokens), sum(cost_nanos) FROM usage_hour",
        "SELECT sum(requests), sum(fallbacks), sum(input_tokens), sum(cost_nanos) FROM usage_day",
        "SELECT groupArray((user_id, name, status, stream_seq)) FROM (SELECT * FROM users FINAL ORDER BY user_id)",
        "SELECT groupArray((key_id, user_id, status, stream_seq)) FROM (SELECT * FROM keys FINAL ORDER BY key_id)",
        "SELECT count(), sum(cost_nanos), uniqExact(request_id), max(stream_seq) FROM requests_by_user",
        "SELECT groupArray((key_id, t)) FROM (SELECT key_id, max(last_used_at) AS t FROM key_last_used GROUP BY key_id ORDER BY key_id)",
    ] {
        let body = reqwest::Client::new()
            .post(format!("{}/?database={db}", ccp_tests::clickhouse_url()))
            .body(q.to_owned())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.push(body);
    }
    out
}

#[tokio::test]
async fn a_rebuild_equals_the_live_projection_and_the_projector_continues_on_it() {
    let settings = test_settings("rebuild");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let users = [log.create_user("a").await, log.create_user("b").await, UserId::new()];
    log.issue_key(users[0]).await;
    log.append(Event::CircuitOpened(CircuitOpened {
        key_id: AccessKeyId::new(),
        reason: TripReason::RateLimited,
        failures: 3,
        retry_at: chrono::Utc::now(),
    }))
    .await;
    publish_requests(&log, &users, 3000).await;

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    // Alerts (circuit, request bursts) would add admin events while the snapshot is taken.
    env.push(("CCP__ALERTS__ENABLED".into(), "false".into()));
    let mut live = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    assert_eq!(wait_requests(&db, 3000, Duration::from_secs(60)).await, 3000);
    tokio::time::sleep(Duration::from_millis(1500)).await; // audit and circuit rows too
    let status = live.terminate(Duration::from_secs(20)).unwrap();
    assert!(status.success(), "{}", live.log_text());
    let before = snapshot(&db).await;
    assert!(before[1].starts_with('3'), "three admin events projected: {}", before[1]);
    assert!(before[6].contains("'a'") && before[6].contains("'b'"), "both users projected: {}", before[6]);
    assert!(before[8].starts_with("3000\t"), "every request in requests_by_user: {}", before[8]);

    let out = std::process::Command::new(BIN)
        .arg("rebuild")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rebuild requests: 3000/3000 events"), "{stdout}");
    assert!(stdout.contains("events/s") && stdout.contains("ETA"), "progress output: {stdout}");
    assert_eq!(snapshot(&db).await, before, "the rebuilt tables differ from the live projection");

    // The projector continues on the rebuilt tables, and the rollup views feed again.
    let _live = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    publish_requests(&log, &users, 100).await;
    assert_eq!(wait_requests(&db, 3100, Duration::from_secs(60)).await, 3100);
    wait_rollups(&db, 3100).await;
    let by_user = format!("SELECT count() FROM {db}.requests_by_user");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while clickhouse().query(&by_user).fetch_one::<u64>().await.unwrap() != 3100 {
        assert!(std::time::Instant::now() < deadline, "requests_by_user is not fed after the rebuild");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
