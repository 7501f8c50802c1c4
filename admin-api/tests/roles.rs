//! Roles against the real NATS: every operation of the OpenAPI document declares the role it
//! needs, and each role — through an API token of an admin with that role — is allowed or
//! refused (403 naming the role needed) exactly as declared; a viewer trying every operation
//! appends nothing; tokens never carry more than their issuer; a role change applies at once;
//! the last admin keeps its role.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ccp_schemas::subjects::StreamKind;
use common::AdminApi;
use reqwest::Method;
use serde_json::{json, Value};

const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap_or_else(|| panic!("unknown role {role}"))
}

/// An admin with `role`, logged in: (admin id, session token).
async fn admin_with_role(api: &AdminApi, username: &str, role: &str) -> (String, String) {
    let password = format!("{username} has a long password");
    let created = api.post("/v1/admins", json!({ "username": username, "password": password, "role": role })).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["role"], role);
    let login = api
        .send(Method::POST, "/v1/auth/login", None, Some(json!({ "username": username, "password": password })))
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["admin"]["role"], role);
    (created.body["admin_id"].as_str().unwrap().to_owned(), login.body["token"].as_str().unwrap().to_owned())
}

async fn api_token(api: &AdminApi, session: &str, body: Value) -> common::Answer {
    api.send(Method::POST, "/v1/api-tokens", Some(session), Some(body)).await
}

async fn admin_stream_length(api: &AdminApi) -> u64 {
    let stream = api.log.js.get_stream(api.log.ns.stream(StreamKind::Admin)).await.unwrap();
    stream.get_info().await.unwrap().state.last_sequence
}

/// A path of the document with every `{param}` filled with a well-formed id that names nothing.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{user_id}" => "usr_01JDQ70000000000000000000A".to_owned(),
            "{key_id}" => "key_01JDQ70000000000000000000A".to_owned(),
            "{team_id}" => "team_01JDQ70000000000000000000A".to_owned(),
            "{admin_id}" => "adm_01JDQ70000000000000000000A".to_owned(),
            "{token_id}" => "tok_01JDQ70000000000000000000A".to_owned(),
            "{request_id}" => "req_01JDQ70000000000000000000A".to_owned(),
            "{session_id}" => "ses_0123456789abcdef".to_owned(),
            "{model}" => "claude-nonexistent-1".to_owned(),
            s if s.starts_with('{') => panic!("no example for {s} in {template}"),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_allows_and_refuses_each_role_as_declared() {
    let api = AdminApi::start("roles").await;
    let mut tokens = Vec::new();
    for role in ROLES {
        let (admin_id, session) = admin_with_role(&api, &format!("walk-{role}"), role).await;
        let issued = api_token(&api, &session, json!({ "name": "walk" })).await;
        assert_eq!(issued.status, 201, "{}", issued.text);
        tokens.push((role, issued.body["token"].as_str().unwrap().to_owned(), admin_id));
    }

    let document = api.send(Method::GET, "/openapi.json", None, None).await.body;
    let mut operations = Vec::new();
    for (template, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = method.to_ascii_uppercase();
            let bearer = operation["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !bearer {
                continue; // login, and the developer's own page (their access key): no admin's operation
            }
            let needed = operation["x-required-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {template} declares no x-required-role"));
            operations.push((method, template.clone(), needed.to_owned()));
        }
    }
    assert!(operations.len() >= 35, "only {} operations", operations.len());

    for (role, token, admin_id) in &tokens {
        let before = admin_stream_length(&api).await;
        for (method, template, needed) in &operations {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let body = matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            let answer = api.send(method.clone(), &concrete(template), Some(token), body).await;
            if rank(role) < rank(needed) {
                assert_eq!(answer.status, 403, "{role} {method} {template}: {}", answer.text);
                let message = answer.body["error"]["message"].as_str().unwrap();
                assert!(message.contains(&format!("`{needed}`")), "{role} {method} {template}: {message}");
            } else {
                assert_ne!(answer.status, 403, "{role} {method} {template}: {}", answer.text);
                assert_ne!(answer.status, 500, "{role} {method} {template}: {}", answer.text);
            }
        }
        if *role == "viewer" {
            // A path with percent-encoded letters is routed as the decoded one: checked as it too.
            let name = format!("Encoded {}", ulid::Ulid::new());
            for path in ["/v1/%75sers", "/v1/u%73ers", "/v1/%55sers"] {
                let a = api.send(Method::POST, path, Some(token), Some(json!({ "name": name }))).await;
                assert!(matches!(a.status, 403 | 404), "viewer POST {path}: {}", a.text);
            }
            let a = api.send(Method::POST, "/v1/%75sers", Some(token), Some(json!({ "name": name }))).await;
            assert_eq!(a.status, 403, "viewer POST /v1/%75sers is POST /v1/users: {}", a.text);
            // Only its own "sign out everywhere": a viewer changes nothing but its own account.
            let appended: Vec<_> =
                api.log.read_all(StreamKind::Admin).await.into_iter().filter(|(seq, _)| *seq > before).collect();
            assert!(
                appended.iter().all(|(_, e)| matches!(&e.event, ccp_schemas::Event::AdminSessionsRevoked(r) if r.admin_id.to_string() == *admin_id)),
                "a viewer trying everything appended {appended:?}"
            );
        }
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_stay_within_their_issuer_and_role_changes_apply_at_once() {
    let api = AdminApi::start("rolechange").await;
    let (viewer_id, viewer) = admin_with_role(&api, "fox-viewer", "viewer").await;
    let (operator_id, operator) = admin_with_role(&api, "dana-operator", "operator").await;

    // A token cannot mint a higher role than its issuer has.
    let higher = api_token(&api, &viewer, json!({ "name": "sneaky", "role": "operator" })).await;
    assert_eq!(higher.status, 403, "{}", higher.text);
    assert!(higher.text.contains("`operator`") && higher.text.contains("`viewer`"), "{}", higher.text);
    let lower = api_token(&api, &operator, json!({ "name": "read-only", "role": "viewer" })).await;
    assert_eq!((lower.status, lower.body["role"].as_str()), (201, Some("viewer")), "{}", lower.text);
    let read_only = lower.body["token"].as_str().unwrap().to_owned();
    let me = api.send(Method::GET, "/v1/auth/me", Some(&read_only), None).await;
    assert_eq!(me.body["role"], "viewer", "{}", me.text);
    let create = |token: String| {
        let api = &api;
        let name = format!("Someone {}", ulid::Ulid::new());
        async move { api.send(Method::POST, "/v1/users", Some(&token), Some(json!({ "name": name }))).await }
    };
    assert_eq!(create(read_only.clone()).await.status, 403, "a viewer token of an operator reads only");
    assert_eq!(create(operator.clone()).await.status, 201, "the operator itself may");
    // An operator may not touch prices, also not through a catalogue entry.
    let prices = api.send(Method::PUT, "/v1/pricing", Some(&operator), Some(json!({ "models": [] }))).await;
    assert_eq!(prices.status, 403, "{}", prices.text);
    let model = json!({ "family": "sonnet", "prices": [{ "input_per_mtok": "1", "output_per_mtok": "2",
        "cache_write_per_mtok": "1", "cache_read_per_mtok": "0.1" }] });
    let priced = api.send(Method::PUT, "/v1/models/claude-sonnet-9", Some(&operator), Some(model)).await;
    assert_eq!(priced.status, 403, "{}", priced.text);

    // A role change applies to the admin's open session at once.
    let demoted = api.put(&format!("/v1/admins/{operator_id}/role"), json!({ "role": "viewer" })).await;
    assert_eq!((demoted.status, demoted.body["role"].as_str()), (200, Some("viewer")), "{}", demoted.text);
    assert_eq!(create(operator.clone()).await.status, 403);
    let promoted = api.put(&format!("/v1/admins/{viewer_id}/role"), json!({ "role": "operator" })).await;
    assert_eq!(promoted.status, 200, "{}", promoted.text);
    assert_eq!(create(viewer.clone()).await.status, 201);

    // The last `admin` keeps its role; bad input is a specific 4xx.
    let admins = api.get("/v1/admins").await.body;
    let initial = admins.as_array().unwrap().iter().find(|a| a["role"] == "admin").unwrap()["admin_id"].clone();
    let last = api.put(&format!("/v1/admins/{}/role", initial.as_str().unwrap()), json!({ "role": "viewer" })).await;
    assert_eq!((last.status, last.body["error"]["field"].as_str()), (409, Some("role")), "{}", last.text);
    let bad = api.put(&format!("/v1/admins/{viewer_id}/role"), json!({ "role": "root" })).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let unknown = api.put("/v1/admins/adm_01JDQ70000000000000000000A/role", json!({ "role": "viewer" })).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let wrong_kind = api.put("/v1/admins/usr_01JDQ70000000000000000000A/role", json!({ "role": "viewer" })).await;
    assert_eq!(wrong_kind.status, 400, "{}", wrong_kind.text);
    api.finish().await;
}
