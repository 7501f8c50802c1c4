//! ClickHouse migrations against the real server: they apply to a fresh database, a second run
//! is a no-op, every table exists, and an edited migration is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ccp_runtime::migrate::{create_ledger, migrate, record_applied, MigrationError};
use ccp_schemas::migrations::MIGRATIONS;
use ccp_tests::{clickhouse, test_settings};

async fn tables(db: &str) -> Vec<String> {
    clickhouse()
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(db)
        .fetch_all::<String>()
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_once_and_then_are_a_no_op() {
    let settings = test_settings("migrate");
    let db = settings.clickhouse.database.clone();

    let applied = migrate(&settings.clickhouse).await.unwrap();
    assert_eq!(applied, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
    let again = migrate(&settings.clickhouse).await.unwrap();
    assert!(again.is_empty(), "second run applied {again:?}");

    let names = tables(&db).await;
    for table in ["audit_log", "circuit_transitions", "projection_offsets", "requests", "schema_migrations"] {
        assert!(names.iter().any(|n| n == table), "{table} missing from {names:?}");
    }
    let recorded: u64 =
        clickhouse().query(&format!("SELECT count() FROM {db}.schema_migrations")).fetch_one().await.unwrap();
    assert_eq!(recorded, MIGRATIONS.len() as u64);

    // The usage table takes a row of every column type it declares.
    clickhouse()
        .query(&format!(
            "INSERT INTO {db}.requests (event_id, stream_seq, request_id, occurred_at, occurred_at_ms, provider, status, input_tokens, cost_nanos) \
             VALUES ('e1', 1, 'req_1', now(), 1, 'anthropic', 200, 10, 1234)"
        ))
        .execute()
        .await
        .unwrap();
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    // A database where version 1 was recorded with another checksum, as if its file changed since.
    let settings2 = test_settings("edited2");
    let db2 = settings2.clickhouse.database.clone();
    clickhouse().query(&format!("CREATE DATABASE {db2}")).execute().await.unwrap();
    create_ledger(&clickhouse(), &db2).await.unwrap();
    clickhouse()
        .query(&format!("INSERT INTO {db2}.schema_migrations VALUES (1, 'initial', 'deadbeef', now())"))
        .execute()
        .await
        .unwrap();
    let err = migrate(&settings2.clickhouse).await.unwrap_err();
    assert!(matches!(err, MigrationError::Edited { version: 1, .. }), "{err}");
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db2}")).execute().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let mut settings = test_settings("down");
    settings.clickhouse.url = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let err = migrate(&settings.clickhouse).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn columns_added_by_an_earlier_unrecorded_run_count_as_added() {
    // As if another replica, or a run killed before recording it, had applied every statement.
    let settings = test_settings("addcols");
    let db = settings.clickhouse.database.clone();
    clickhouse().query(&format!("CREATE DATABASE {db}")).execute().await.unwrap();
    let adds: Vec<_> = MIGRATIONS.iter().filter(|m| m.sql.contains("ADD COLUMN")).map(|m| m.version).collect();
    assert!(!adds.is_empty(), "no migration adds columns");
    for m in MIGRATIONS {
        for stmt in m.statements(&db) {
            clickhouse().query(&stmt).execute().await.unwrap_or_else(|e| panic!("{}: {e}", m.name));
        }
    }
    // Recorded: only the migrations that do not add columns.
    create_ledger(&clickhouse(), &db).await.unwrap();
    for m in MIGRATIONS.iter().filter(|m| !adds.contains(&m.version)) {
        record_applied(&clickhouse(), &db, m).await.unwrap();
    }
    let applied = migrate(&settings.clickhouse).await.unwrap();
    assert_eq!(applied, adds);
    let columns: u64 = clickhouse()
        .query("SELECT count() FROM system.columns WHERE database = ? AND table = 'requests' AND name = 'plan_status'")
        .bind(&db)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(columns, 1);
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
