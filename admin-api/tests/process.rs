//! The `ccp-admin` binary: `gen-secrets` prints usable secrets, `serve` ensures the streams,
//! answers `/health` and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_runtime::config::Settings;
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_schemas::subjects::StreamKind;
use ccp_tests::{delete_namespace, free_port, namespace, nats, service_env, test_settings, wait_http_ok, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-admin");

#[tokio::test]
async fn gen_secrets_prints_a_loadable_secrets_section() {
    let out = std::process::Command::new(BIN).arg("gen-secrets").output().unwrap();
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("ccp-gen-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ccp.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let settings = Settings::load_from(Some(&path), Vec::new()).unwrap();
    KeyPepper::new(&settings.secrets.access_key_pepper).unwrap();
    LocalMasterKey::new(settings.secrets.master_key_id.clone(), &settings.secrets.master_key).unwrap();
    let again = std::process::Command::new(BIN).arg("gen-secrets").output().unwrap();
    assert_ne!(again.stdout, out.stdout, "secrets must be random");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn serves_health_and_stops_cleanly_on_sigterm() {
    let settings = test_settings("adminproc");
    let port = free_port();
    let mut env = service_env(&settings);
    env.push(("CCP__ADMIN__LISTEN".into(), format!("127.0.0.1:{port}")));
    let mut admin = Service::spawn(Path::new(BIN), &[], &env).unwrap();

    let body = wait_http_ok(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(20)).await;
    let body = body.unwrap_or_else(|e| panic!("{e}\n{}", admin.log_text()));
    assert!(body.contains("ccp-admin"));
    let ns = namespace(&settings);
    let js = async_nats::jetstream::new(nats().await);
    js.get_stream(ns.stream(StreamKind::Admin)).await.unwrap();

    let status = admin.terminate(Duration::from_secs(15)).expect("admin did not stop on SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", admin.log_text());
    delete_namespace(&js, &ns).await;
}

#[tokio::test]
async fn unknown_command_exits_non_zero() {
    let out = std::process::Command::new(BIN).arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
}
