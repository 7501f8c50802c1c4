//! The `ccp-proxy` binary starts from its settings, answers `/health`, refuses bad settings with
//! a clear message, and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_tests::{free_port, service_env, test_settings, wait_http_ok, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-proxy");

#[tokio::test]
async fn serves_health_and_stops_cleanly_on_sigterm() {
    let settings = test_settings("proxyproc");
    let port = free_port();
    let mut env = service_env(&settings);
    env.push(("CCP__PROXY__LISTEN".into(), format!("127.0.0.1:{port}")));
    let mut proxy = Service::spawn(Path::new(BIN), &[], &env).unwrap();

    let body = wait_http_ok(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(20)).await;
    let body = body.unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_text()));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["service"], "ccp-proxy");

    let status = proxy.terminate(Duration::from_secs(15)).expect("proxy did not stop on SIGTERM");
    assert!(status.success(), "exit {status:?}\n{}", proxy.log_text());
    assert!(proxy.log_text().contains("proxy stopped"));
}

#[tokio::test]
async fn unknown_settings_are_refused_by_name() {
    let out = std::process::Command::new(BIN).env("CCP__PROXY__LISTN", "x").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `listn`"), "{err}");
}

#[tokio::test]
async fn print_config_redacts_secrets() {
    let out = std::process::Command::new(BIN)
        .arg("--print-config")
        .env("CCP__SECRETS__ACCESS_KEY_PEPPER", "a-very-secret-pepper-value-0123456789")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[proxy]"));
    assert!(text.contains("<redacted>"));
    assert!(!text.contains("a-very-secret-pepper"));
}
