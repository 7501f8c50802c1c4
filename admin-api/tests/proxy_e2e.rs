#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The admin API and a running proxy together: a key issued through the API works through the
//! proxy at once; revoking it, rotating it or deactivating its user through the API is refused
//! by the proxy within a second.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::AdminApi;
use reqwest::Method;

const MESSAGE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

async fn status_through(url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/ak/{key}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .body(MESSAGE)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls until the proxy answers `want` for the key; returns how long that took.
async fn until_status(url: &str, key: &str, want: u16, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let got = status_through(url, key).await;
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: the proxy still answers {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn keys_managed_through_the_api_take_effect_on_a_running_proxy_within_a_second() {
    let proxy_bin = ccp_tests::system::workspace_bin("ccp-proxy", "ccp-proxy");
    let anthropic = ccp_tests::fake_anthropic::FakeAnthropic::start().unwrap();
    let api = AdminApi::start("e2eproxy").await;

    let port = ccp_tests::free_port();
    let mut env = ccp_tests::service_env(&api.settings);
    env.extend([
        ("CCP__PROXY__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("CCP__PROXY__ANTHROPIC_BASE_URL".to_owned(), anthropic.url()),
        (
            "CCP__PROXY__SPOOL_DIR".to_owned(),
            std::env::temp_dir().join(format!("ccp-spool-e2e-{}", ulid::Ulid::new())).display().to_string(),
        ),
    ]);
    let proxy = ccp_tests::Service::spawn(Path::new(&proxy_bin), &[], &env).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    if let Err(e) = ccp_tests::wait_http_ok(&format!("{url}/ready"), Duration::from_secs(20)).await {
        panic!("{e}\n{}", proxy.log_text());
    }

    let user = api.create_user("Dana").await;
    let (key_id, key) = api.issue_key(&user).await;
    until_status(&url, &key, 200, "a freshly issued key").await;

    // Rotation: the old secret stops, the new one works.
    let rotated = api.send(Method::POST, &format!("/v1/keys/{key_id}/rotate"), Some(&api.token), None).await;
    let new_key = rotated.body["access_key"].as_str().unwrap().to_owned();
    let took = until_status(&url, &key, 401, "the rotated-away secret").await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(status_through(&url, &new_key).await, 200);

    // Deactivating the user stops every key of theirs; reactivating restores them.
    let (_, second) = api.issue_key(&user).await;
    until_status(&url, &second, 200, "the second key").await;
    api.send(Method::POST, &format!("/v1/users/{user}/deactivate"), Some(&api.token), None).await;
    let took = until_status(&url, &new_key, 401, "a deactivated user's key").await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(status_through(&url, &second).await, 401);
    api.send(Method::POST, &format!("/v1/users/{user}/reactivate"), Some(&api.token), None).await;
    until_status(&url, &second, 200, "a reactivated user's key").await;

    // Revocation.
    let second_id = api.get(&format!("/v1/users/{user}/keys")).await.body[0]["key_id"].as_str().unwrap().to_owned();
    api.send(Method::POST, &format!("/v1/keys/{second_id}/revoke"), Some(&api.token), None).await;
    let took = until_status(&url, &second, 401, "a revoked key").await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    drop(proxy);
    api.finish().await;
}
