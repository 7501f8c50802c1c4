//! The audit log and circuit transitions projections against real NATS and ClickHouse: every
//! admin event becomes one audit row with its actor, target and source and without secrets;
//! every circuit transition one row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use ccp_schemas::events::{
    AdminLoginFailed, CircuitClosed, CircuitOpened, CloseCause, Event, LoginFailure, TripReason,
};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");
const BEDROCK_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1hdWRpdC10ZXN0LTAwMQ==";

async fn count(db: &str, table: &str) -> u64 {
    clickhouse().query(&format!("SELECT count() FROM {db}.{table}")).fetch_one().await.unwrap_or(0)
}

#[tokio::test]
async fn admin_events_become_audit_rows_and_circuit_events_transition_rows() {
    let settings = test_settings("audit");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let master = LocalMasterKey::new("local-1", &LocalMasterKey::generate_b64().unwrap()).unwrap();
    let (user_id, key_id, key) = log.user_with_key("dana").await;
    log.register_bedrock_key(user_id, key_id, &master, BEDROCK_KEY).await;
    log.revoke(user_id, key_id).await;
    log.append(Event::AdminLoginFailed(AdminLoginFailed {
        username: "mallory".into(),
        reason: LoginFailure::BadCredentials,
    }))
    .await;
    let circuit_key = AccessKeyId::new();
    log.append(Event::CircuitOpened(CircuitOpened {
        key_id: circuit_key,
        reason: TripReason::RateLimited,
        failures: 3,
        retry_at: chrono::Utc::now() + chrono::Duration::minutes(30),
    }))
    .await;
    log.append(Event::CircuitClosed(CircuitClosed { key_id: circuit_key, cause: CloseCause::ManualReset })).await;

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    // Alerts (the circuit opening raises one) are audit rows too; this test counts admin commands.
    env.push(("CCP__ALERTS__ENABLED".into(), "false".into()));
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (count(&db, "audit_log").await < 5 || count(&db, "circuit_transitions").await < 2)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&db, "audit_log").await, 5, "{}", projector.log_text());
    assert_eq!(count(&db, "circuit_transitions").await, 2);

    #[derive(serde::Deserialize, clickhouse::Row)]
    struct Audit {
        event_type: String,
        actor_kind: String,
        target_kind: String,
        target_id: String,
        user_id: String,
        details: String,
    }
    let rows: Vec<Audit> = clickhouse()
        .query(&format!(
            "SELECT event_type, actor_kind, target_kind, target_id, user_id, details FROM {db}.audit_log ORDER BY stream_seq"
        ))
        .fetch_all()
        .await
        .unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["user_created", "access_key_issued", "bedrock_api_key_registered", "access_key_revoked", "admin_login_failed"]
    );
    assert_eq!(rows[1].target_kind, "access_key");
    assert_eq!(rows[1].target_id, key_id.to_string());
    assert_eq!(rows[1].user_id, user_id.to_string());
    assert_eq!(rows[0].actor_kind, "system");
    assert_eq!(rows[4].target_id, "mallory");
    for r in &rows {
        assert!(!r.details.contains("sealed") && !r.details.contains("key_hash"), "{}", r.details);
        assert!(!r.details.contains(&key.expose()[9..]));
        assert!(!r.details.contains(&BEDROCK_KEY[4..20]));
    }
    assert!(rows[2].details.contains("ABSK…"), "the hint is kept: {}", rows[2].details);

    let states: Vec<String> = clickhouse()
        .query(&format!("SELECT state FROM {db}.circuit_transitions ORDER BY stream_seq"))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(states, ["open", "closed"]);

    // Metrics name each projection.
    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
