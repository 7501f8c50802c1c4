//! `scripts/run`, the README's way to start the whole system, as a newcomer meets it: a failing
//! service shows what it logged in this run (no colour codes, nothing from an earlier run), and
//! Ctrl-C stops everything calmly. Against the real NATS and ClickHouse, debug binaries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ccp_tests::system::workspace_bin;
use ccp_tests::{free_port, test_settings};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `scripts/run` with its own ports, namespace, database, logs, config and spool.
fn run_script(label: &str, extra: &[(&str, &str)]) -> (Command, PathBuf, ccp_runtime::config::Settings) {
    let settings = test_settings(label);
    let dir = std::env::temp_dir().join(ccp_tests::unique_name(label));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let secrets = Command::new(workspace_bin("ccp-admin-api", "ccp-admin")).arg("gen-secrets").output().unwrap();
    assert!(secrets.status.success());
    std::fs::write(dir.join("ccp.toml"), &secrets.stdout).unwrap();
    // The binaries this test build made (scripts/run's own `cargo build` would build them again
    // with other dependency features).
    for (package, bin) in [
        ("ccp-proxy", "ccp-proxy"),
        ("ccp-projector", "ccp-projector"),
        ("ccp-admin-api", "ccp-admin"),
        ("ccp-tests", "ccp-fake-anthropic"),
        ("ccp-tests", "ccp-fake-bedrock"),
    ] {
        workspace_bin(package, bin);
    }
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/run")).stdout(Stdio::piped()).stderr(Stdio::piped());
    let port = |_| format!("127.0.0.1:{}", free_port());
    for (k, v) in [
        ("CCP_PROFILE", "debug".to_owned()),
        ("CCP_NO_BUILD", "1".to_owned()),
        ("CCP_LOG_DIR", dir.join("logs").display().to_string()),
        ("CCP_CONFIG", dir.join("ccp.toml").display().to_string()),
        ("CCP__PROXY__SPOOL_DIR", dir.join("spool").display().to_string()),
        ("CCP__ADMIN__INITIAL_ADMIN_PASSWORD", "correct horse battery staple".to_owned()),
        ("CCP__NATS__PREFIX", settings.nats.prefix.clone()),
        ("CCP__NATS__URL", settings.nats.url.clone()),
        ("CCP__CLICKHOUSE__URL", settings.clickhouse.url.clone()),
        ("CCP__CLICKHOUSE__DATABASE", settings.clickhouse.database.clone()),
        ("CCP__PROXY__LISTEN", port(0)),
        ("CCP__ADMIN__LISTEN", port(1)),
        ("CCP__PROJECTOR__LISTEN", port(2)),
        ("CCP_FAKE_ANTHROPIC_LISTEN", port(3)),
        ("CCP_FAKE_BEDROCK_LISTEN", port(4)),
    ] {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    (cmd, dir, settings)
}

async fn clean_up(settings: &ccp_runtime::config::Settings) {
    let js = async_nats::jetstream::new(ccp_tests::nats().await);
    ccp_tests::delete_namespace(&js, &ccp_tests::namespace(settings)).await;
    let drop_db = format!("DROP DATABASE IF EXISTS {}", settings.clickhouse.database);
    let _ = reqwest::Client::new().post(ccp_tests::clickhouse_url()).body(drop_db).send().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_fails_to_start_shows_this_runs_error_without_colour_codes() {
    let (mut cmd, dir, settings) = run_script("runfail", &[("CCP__BUDGETS__ENFORCE", "everything")]);
    // An earlier run's error, which must not be shown as this run's.
    std::fs::write(dir.join("logs/projector.log"), "\x1b[31mERROR\x1b[0m an error from an earlier run\n").unwrap();
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("projector stopped while starting"), "{stderr}");
    for needle in ["budgets.enforce", "CCP__BUDGETS__ENFORCE", "everything", "bedrock", "all"] {
        assert!(stderr.contains(needle), "the error names `{needle}`: {stderr}");
    }
    assert!(!stderr.contains("earlier run"), "only this run's lines: {stderr}");
    assert!(!stderr.contains('\x1b'), "no colour codes: {stderr:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"), "no ready line");
    clean_up(&settings).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_every_service_calmly_after_all_answered_ready() {
    let (mut cmd, dir, settings) = run_script("runstop", &[]);
    // Its own process group, so that the signal goes to every process of it, as a terminal's
    // Ctrl-C does (the services get it too).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.starts_with("ClaudeCodeProxy ready"))
    });
    let line = tokio::time::timeout(Duration::from_secs(600), ready).await.expect("ready within 10 min").unwrap();
    let Some(line) = line else {
        let out = child.wait_with_output().unwrap();
        panic!("no ready line: {}", String::from_utf8_lossy(&out.stderr))
    };
    // The line is printed only once every service answers /ready.
    let http = reqwest::Client::new();
    let proxy = line.split_whitespace().nth(3).unwrap().to_owned();
    let admin = line.split_whitespace().nth(5).unwrap().to_owned();
    for url in [&proxy, &admin] {
        assert_eq!(http.get(format!("{url}/ready")).send().await.unwrap().status(), 200, "{url}: {line}");
    }
    Command::new("kill").args(["-INT", "--", &format!("-{}", child.id())]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a deliberate stop is not a failure: {stderr}");
    assert!(stderr.contains("stopping the services (Ctrl-C)") && stderr.contains("stopped."), "{stderr}");
    assert!(!stderr.contains("exited"), "nothing reads like a crash: {stderr}");
    assert!(http.get(format!("{proxy}/health")).send().await.is_err(), "the proxy is stopped");
    clean_up(&settings).await;
    let _ = std::fs::remove_dir_all(dir);
}
