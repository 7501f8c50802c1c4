//! The `ccp-projector` binary: `migrate` applies the ClickHouse migrations (twice cleanly), and
//! `serve` migrates, ensures the streams, answers `/health` and `/ready`, and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_schemas::subjects::StreamKind;
use ccp_tests::{
    clickhouse, delete_namespace, free_port, namespace, nats, service_env, test_settings, wait_http_ok, Service,
};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

#[tokio::test]
async fn migrate_command_applies_then_reports_up_to_date() {
    let settings = test_settings("projmigrate");
    let env = service_env(&settings);
    for expected in ["ClickHouse migrations applied", "ClickHouse schema is up to date"] {
        let out = std::process::Command::new(BIN)
            .arg("migrate")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        assert!(log.contains(expected), "{log}");
    }
    let db = &settings.clickhouse.database;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

#[tokio::test]
async fn serve_prepares_the_stores_and_stops_cleanly() {
    let settings = test_settings("projserve");
    let port = free_port();
    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), format!("127.0.0.1:{port}")));
    let mut projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();

    let ready = wait_http_ok(&format!("http://127.0.0.1:{port}/ready"), Duration::from_secs(30)).await;
    ready.unwrap_or_else(|e| panic!("{e}\n{}", projector.log_text()));
    wait_http_ok(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(1)).await.unwrap();

    let ns = namespace(&settings);
    let js = async_nats::jetstream::new(nats().await);
    for kind in StreamKind::ALL {
        js.get_stream(ns.stream(kind)).await.unwrap_or_else(|e| panic!("stream {kind:?}: {e}"));
    }
    let tables: u64 = clickhouse()
        .query("SELECT count() FROM system.tables WHERE database = ?")
        .bind(&settings.clickhouse.database)
        .fetch_one()
        .await
        .unwrap();
    assert!(tables >= 5, "only {tables} tables");

    let status = projector.terminate(Duration::from_secs(15)).expect("projector did not stop on SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", projector.log_text());
    delete_namespace(&js, &ns).await;
    let db = &settings.clickhouse.database;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
