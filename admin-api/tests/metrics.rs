//! The admin API's `/metrics` on the ops listener (`ops.listen`): requests by route pattern and
//! status, command conflicts, sign-in attempts, `build_info` and the process metrics; with the
//! listener set, `/metrics` is gone from the API's own port while `/health` and `/ready` stay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use ccp_tests::{free_port, wait_http_ok};
use common::AdminApi;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn the_ops_listener_counts_requests_by_route_and_status_and_command_conflicts() {
    let ops_port = free_port();
    let ops = format!("http://127.0.0.1:{ops_port}");
    let api = AdminApi::start_with("adminops", &[("CCP__OPS__LISTEN", &format!("127.0.0.1:{ops_port}"))]).await;

    // A command on a stale version is a 409 conflict.
    let user = api.create_user("Metered").await;
    let etag = api.get(&format!("/v1/users/{user}")).await.header("etag").unwrap().to_owned();
    let rename = |name: &'static str| {
        api.http
            .patch(format!("{}/v1/users/{user}", api.url))
            .bearer_auth(&api.token)
            .header("if-match", &etag)
            .json(&json!({ "name": name }))
            .send()
    };
    assert_eq!(rename("Metered once").await.unwrap().status(), 200);
    assert_eq!(rename("Metered twice").await.unwrap().status(), 409);
    assert_eq!(api.send(Method::GET, "/v1/users", None, None).await.status, 401);
    assert_eq!(api.send(Method::GET, "/no/such/path", None, None).await.status, 404);

    let metrics = wait_http_ok(&format!("{ops}/metrics"), Duration::from_secs(10)).await.unwrap();
    for line in [
        "ccp_admin_requests_total{method=\"PATCH\",route=\"/v1/users/{user_id}\",status=\"200\"} 1\n",
        "ccp_admin_requests_total{method=\"PATCH\",route=\"/v1/users/{user_id}\",status=\"409\"} 1\n",
        "ccp_admin_requests_total{method=\"POST\",route=\"/v1/users\",status=\"201\"} 1\n",
        "ccp_admin_requests_total{method=\"GET\",route=\"/v1/users\",status=\"401\"} 1\n",
        "ccp_admin_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n",
        "ccp_admin_command_conflicts_total{route=\"/v1/users/{user_id}\"} 1\n",
        "ccp_admin_sign_in_attempts_total{kind=\"admin_login\",outcome=\"failed\"} 0\n",
        "ccp_admin_events_not_applied_total{cause=\"halted\"} 0\n",
        "ccp_admin_build_info{version=\"",
        "\nprocess_resident_memory_bytes ",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from\n{metrics}");
    }
    // No id of a user, key or anything else becomes a label.
    assert!(!metrics.contains(&user), "{metrics}");

    let health = wait_http_ok(&format!("{ops}/health"), Duration::from_secs(5)).await.unwrap();
    assert!(health.contains("\"service\":\"ccp-admin\"") && health.contains("\"commit\""), "{health}");
    let ready = wait_http_ok(&format!("{ops}/ready"), Duration::from_secs(5)).await.unwrap();
    assert!(ready.contains("\"ready\":true"), "{ready}");
    // The API's own port: /health and /ready for load balancers, no /metrics.
    assert_eq!(api.send(Method::GET, "/metrics", None, None).await.status, 404);
    assert_eq!(api.send(Method::GET, "/ready", None, None).await.status, 200);
    assert_eq!(api.send(Method::GET, "/health", None, None).await.status, 200);
    api.finish().await;
}
