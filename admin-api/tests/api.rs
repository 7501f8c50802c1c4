#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The admin API end to end against a real `ccp-admin` process on real NATS: users, access keys
//! and Bedrock API keys become events; answers show the resulting state and the next GET already
//! does; bad input is a 4xx naming the field; concurrency and idempotency; secrets nowhere.

mod common;

use std::time::Duration;

use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Event;
use common::{AdminApi, ADMIN_PASSWORD, ADMIN_USER, PUBLIC_PROXY_URL};
use reqwest::Method;
use serde_json::{json, Value};

const BEDROCK_SECRET: &str = "ABSKQmVkcm9ja0FQSUtleS1hcGktdGVzdC1zZWNyZXQtMDAx";

async fn admin_events(api: &AdminApi) -> Vec<Event> {
    api.log.read_all(StreamKind::Admin).await.into_iter().map(|(_, e)| e.event).collect()
}

/// Every raw byte of the admin stream, to search for secrets.
async fn admin_stream_bytes(api: &AdminApi) -> String {
    let mut text = String::new();
    let stream = api.log.js.get_stream(api.log.ns.stream(StreamKind::Admin)).await.unwrap();
    let last = stream.get_info().await.unwrap().state.last_sequence;
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            text.push_str(&String::from_utf8_lossy(&m.payload));
        }
    }
    text
}

/// Sends `requests` at the same time, one task each; their answers, in order.
async fn all_at_once(requests: impl IntoIterator<Item = reqwest::RequestBuilder>) -> Vec<common::Answer> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| tokio::spawn(async move { AdminApi::answer(request.send().await.unwrap()).await }))
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn users_are_created_listed_updated_and_deactivated_with_read_your_writes() {
    let api = AdminApi::start("apiusers").await;
    let created = api
        .post(
            "/v1/users",
            json!({"name": "Dana Scully", "email": "dana@example.com", "description": "FBI", "monthly_limit_usd": "250.50", "routing": "bedrock_only"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["user_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("usr_"));
    assert_eq!(created.header("location"), Some(format!("/v1/users/{id}").as_str()));
    assert_eq!(created.body["monthly_limit_usd"], "250.5");
    assert_eq!(created.body["routing"], "bedrock_only");
    assert!(created.header("x-request-id").is_some_and(|r| r.starts_with("req_")));
    let etag = created.header("etag").unwrap().to_owned();

    // Read-your-writes: the next GET shows it, with the same version.
    let got = api.get(&format!("/v1/users/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["name"], "Dana Scully");
    assert_eq!(got.body["keys"], json!([]));
    assert_eq!(got.header("etag"), Some(etag.as_str()));

    for name in ["Fox Mulder", "Walter Skinner", "Alex Krycek"] {
        api.create_user(name).await;
    }
    let page = api.get("/v1/users?limit=2").await;
    assert_eq!(page.body["total"], 4);
    let names: Vec<&str> = page.body["items"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Alex Krycek", "Dana Scully"]);
    let page2 = api.get("/v1/users?limit=2&offset=2").await;
    let names2: Vec<&str> =
        page2.body["items"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names2, ["Fox Mulder", "Walter Skinner"]);
    let search = api.get("/v1/users?search=EXAMPLE.com").await;
    assert_eq!(search.body["total"], 1, "search covers email, case-insensitively");

    let updated = api.patch(&format!("/v1/users/{id}"), json!({"email": "", "description": "FBI, X-Files"})).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["email"], Value::Null);
    assert_eq!(updated.body["description"], "FBI, X-Files");

    let deactivated = api.post(&format!("/v1/users/{id}/deactivate"), json!({"reason": "left the team"})).await;
    assert_eq!(deactivated.body["status"], "inactive");
    assert_eq!(api.get("/v1/users?status=inactive").await.body["total"], 1);
    // Repeating it changes nothing and appends nothing.
    let before = admin_events(&api).await.len();
    let again = api.send(Method::POST, &format!("/v1/users/{id}/deactivate"), Some(&api.token), None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(admin_events(&api).await.len(), before);
    let reactivated = api.send(Method::POST, &format!("/v1/users/{id}/reactivate"), Some(&api.token), None).await;
    assert_eq!(reactivated.body["status"], "active");

    let budget = api.put(&format!("/v1/users/{id}/budget"), json!({"monthly_limit_usd": null})).await;
    assert_eq!(budget.body["monthly_limit_usd"], Value::Null);
    let routing = api.put(&format!("/v1/users/{id}/routing"), json!({"strategy": "plan_only"})).await;
    assert_eq!(routing.body["routing"], "plan_only", "{}\n{}", routing.text, api.service.log_text());

    // The events carry the admin as actor, the request id and the source address.
    let log = api.log.read_all(StreamKind::Admin).await;
    let (_, created_event) = log.iter().find(|(_, e)| matches!(e.event, Event::UserCreated(_))).unwrap();
    assert!(matches!(&created_event.actor, ccp_schemas::Actor::Admin { username, .. } if username == ADMIN_USER));
    assert_eq!(created_event.correlation_id.as_deref(), created.header("x-request-id"));
    assert_eq!(created_event.source.map(|s| s.to_string()).as_deref(), Some("127.0.0.1"));
    api.finish().await;
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field_never_a_500() {
    let api = AdminApi::start("apibad").await;
    let id = api.create_user("Eve").await;
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (Method::POST, "/v1/users".into(), Some(json!({"name": "x", "nmae": "typo"})), 400, "nmae"),
        (Method::POST, "/v1/users".into(), Some(json!({"name": 42})), 400, "name"),
        (Method::POST, "/v1/users".into(), Some(json!({})), 400, "body"),
        (Method::POST, "/v1/users".into(), Some(json!({"name": ""})), 422, "name"),
        (Method::POST, "/v1/users".into(), Some(json!({"name": "a\u{0007}b"})), 422, "name"),
        (Method::POST, "/v1/users".into(), Some(json!({"name": "Eve"})), 409, "name"),
        (Method::POST, "/v1/users".into(), Some(json!({"name": "Mallory", "email": "not-an-email"})), 422, "email"),
        (Method::POST, "/v1/users".into(), Some(json!({"name": "Mallory", "status": "zombie"})), 400, "status"),
        (
            Method::POST,
            "/v1/users".into(),
            Some(json!({"name": "Mallory", "monthly_limit_usd": "-1"})),
            400,
            "monthly_limit_usd",
        ),
        (
            Method::POST,
            "/v1/users".into(),
            Some(json!({"name": "Mallory", "monthly_limit_usd": "lots"})),
            400,
            "monthly_limit_usd",
        ),
        (
            Method::PUT,
            format!("/v1/users/{id}/budget"),
            Some(json!({"monthly_limit_usd": "2000000"})),
            422,
            "monthly_limit_usd",
        ),
        (Method::PUT, format!("/v1/users/{id}/routing"), Some(json!({"strategy": "fastest"})), 400, "strategy"),
        (Method::GET, "/v1/users/usr_nope".into(), None, 400, "user_id"),
        (Method::GET, "/v1/users/key_01JDQ70000000000000000000A".into(), None, 400, "user_id"),
        (Method::GET, "/v1/users?limit=0".into(), None, 400, "limit"),
        (Method::GET, "/v1/users?limit=abc".into(), None, 400, "limit"),
        (Method::GET, "/v1/users?colour=red".into(), None, 400, "colour"),
        (
            Method::POST,
            format!("/v1/users/{id}/keys"),
            Some(json!({"bedrock_region": "us east 1"})),
            422,
            "bedrock_region",
        ),
        (
            Method::PUT,
            "/v1/keys/key_01JDQ70000000000000000000A/bedrock-key".into(),
            Some(json!({"api_key": "ABSK"})),
            404,
            "",
        ),
        (
            Method::PUT,
            "/v1/keys/key_01JDQ70000000000000000000A/bedrock-key".into(),
            Some(json!({"api_key": "two words"})),
            422,
            "api_key",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let a = api.send(method.clone(), &path, Some(&api.token), body.clone()).await;
        assert_eq!(a.status, status, "{method} {path} {body:?}: {}", a.text);
        assert!(a.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", a.text);
        assert!(a.body["request_id"].as_str().is_some_and(|r| r.starts_with("req_")), "{}", a.text);
        if !field.is_empty() {
            assert_eq!(a.body["error"]["field"], field, "{method} {path}: {}", a.text);
        }
    }
    let unknown = api.get("/v1/users/usr_01JDQ70000000000000000000A").await;
    assert_eq!((unknown.status, unknown.error_type()), (404, "not_found"));

    // Wrong media type, malformed and oversized bodies, unknown routes.
    let url = format!("{}/v1/users", api.url);
    let text = api.http.post(&url).bearer_auth(&api.token).body("name=x").send().await.unwrap();
    assert_eq!(text.status(), 415);
    let broken = api
        .http
        .post(&url)
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let broken = AdminApi::answer(broken).await;
    assert_eq!((broken.status, broken.body["error"]["field"].as_str()), (400, Some("body")));
    let huge = format!("{{\"name\":\"x\",\"description\":\"{}\"}}", "a".repeat(100_000));
    let huge = api
        .http
        .post(&url)
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let nowhere = api.get("/v1/nowhere").await;
    assert_eq!((nowhere.status, nowhere.error_type()), (404, "not_found"));
    assert!(!api.service.log_text().contains("panicked"), "{}", api.service.log_text());
    api.finish().await;
}

#[tokio::test]
async fn access_keys_are_shown_once_rotated_revoked_and_carry_their_bedrock_key() {
    let api = AdminApi::start("apikeys").await;
    let user = api.create_user("Dana").await;
    let issued = api
        .post(
            &format!("/v1/users/{user}/keys"),
            json!({"name": "laptop", "bedrock_region": "eu-west-1", "bedrock_default_model": "global.anthropic.claude-sonnet-4-5-20250929-v1:0"}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    assert_eq!(issued.header("cache-control"), Some("no-store"));
    let key_id = issued.body["key"]["key_id"].as_str().unwrap().to_owned();
    let access_key = issued.body["access_key"].as_str().unwrap().to_owned();
    assert!(access_key.starts_with("ak_") && access_key.len() == 46);
    let base_url = format!("{PUBLIC_PROXY_URL}/ak/{access_key}");
    assert_eq!(issued.body["claude_code"]["base_url"], base_url.as_str());
    assert_eq!(issued.body["claude_code"]["shell"], format!("export ANTHROPIC_BASE_URL={base_url}"));
    assert_eq!(issued.body["claude_code"]["settings_json"]["env"]["ANTHROPIC_BASE_URL"], base_url.as_str());
    assert_eq!(issued.body["key"]["prefix"], &access_key[..9]);
    assert_eq!(issued.body["key"]["masked"], format!("{}…", &access_key[..9]));

    // Lists and later answers never show the key.
    let listed = api.get(&format!("/v1/users/{user}/keys")).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["bedrock_region"], "eu-west-1");
    let detail = api.get(&format!("/v1/users/{user}")).await;
    assert_eq!(detail.body["active_keys"], 1);
    for answer in [&listed, &detail, &api.get(&format!("/v1/keys/{key_id}")).await] {
        assert!(!answer.text.contains(&access_key[9..]), "{}", answer.text);
    }

    // The Bedrock API key: sealed, shown as a hint, never returned.
    let registered = api.put(&format!("/v1/keys/{key_id}/bedrock-key"), json!({"api_key": BEDROCK_SECRET})).await;
    assert_eq!(registered.status, 200, "{}", registered.text);
    assert_eq!(registered.body["bedrock_key"]["hint"], "ABSK…MDAx");
    assert!(!registered.text.contains(BEDROCK_SECRET));
    let replaced =
        api.put(&format!("/v1/keys/{key_id}/bedrock-key"), json!({"api_key": format!("{BEDROCK_SECRET}2")})).await;
    assert_eq!(replaced.status, 200);

    // Rotation: a new key, shown once; id, settings and Bedrock key stay.
    let rotated = api.send(Method::POST, &format!("/v1/keys/{key_id}/rotate"), Some(&api.token), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let new_key = rotated.body["access_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, access_key);
    assert_eq!(rotated.body["key"]["key_id"], key_id.as_str());
    assert_eq!(rotated.body["key"]["bedrock_region"], "eu-west-1");
    assert_eq!(rotated.body["key"]["bedrock_key"]["hint"], "ABSK…DAx2");

    let settings = api.put(&format!("/v1/keys/{key_id}/bedrock"), json!({"region": "us-east-1"})).await;
    assert_eq!(settings.body["bedrock_region"], "us-east-1");
    assert_eq!(settings.body["bedrock_default_model"], Value::Null);
    let removed = api.delete(&format!("/v1/keys/{key_id}/bedrock-key")).await;
    assert_eq!(removed.body["bedrock_key"], Value::Null);

    let revoked = api.post(&format!("/v1/keys/{key_id}/revoke"), json!({"reason": "laptop stolen"})).await;
    assert_eq!(revoked.body["status"], "revoked");
    let rotate_revoked = api.send(Method::POST, &format!("/v1/keys/{key_id}/rotate"), Some(&api.token), None).await;
    assert_eq!((rotate_revoked.status, rotate_revoked.error_type()), (409, "conflict"));

    // A deactivated user cannot be issued keys.
    api.send(Method::POST, &format!("/v1/users/{user}/deactivate"), Some(&api.token), None).await;
    let refused = api.post(&format!("/v1/users/{user}/keys"), json!({})).await;
    assert_eq!(refused.status, 409, "{}", refused.text);

    // The event types, in order, and no plaintext secret anywhere in the log or the service log.
    let types: Vec<&str> = admin_events(&api).await.iter().map(Event::event_type).collect::<Vec<_>>();
    // (A registered Bedrock key is also checked for failover readiness, in the background: its
    // `bedrock_key_checked` events land whenever the check ends, so they are left out here.)
    let key_types: Vec<&str> = types
        .iter()
        .copied()
        .filter(|t| (t.starts_with("access_key") || t.starts_with("bedrock")) && *t != "bedrock_key_checked")
        .collect();
    assert_eq!(
        key_types,
        [
            "access_key_issued",
            "bedrock_api_key_registered",
            "bedrock_api_key_rotated",
            "access_key_rotated",
            "bedrock_settings_changed",
            "bedrock_api_key_removed",
            "access_key_revoked"
        ]
    );
    let raw = admin_stream_bytes(&api).await;
    let logs = api.service.log_text();
    for secret in [access_key.as_str(), &access_key[9..], new_key.as_str(), BEDROCK_SECRET, ADMIN_PASSWORD] {
        assert!(!raw.contains(secret), "a secret is in the event log");
        assert!(!logs.contains(secret), "a secret is in the service log");
    }
    api.finish().await;
}

#[tokio::test]
async fn every_route_needs_authentication_and_sessions_tokens_and_csrf_work() {
    // Trusting the test's own address as a proxy lets one part act as another client.
    let api = AdminApi::start_with("apiauth", &[("CCP__ADMIN__TRUSTED_PROXIES", "127.0.0.1,::1")]).await;
    let doc = api.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let mut checked = 0;
    // The sign-in routes are the only ones without authentication, and the document says so.
    const PUBLIC: [&str; 5] =
        ["/v1/auth/login", "/v1/auth/methods", "/v1/auth/sso/start", "/v1/auth/sso/callback", "/v1/auth/sso/token"];
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(
                !secured,
                PUBLIC.contains(&path.as_str()),
                "{method} {path}: security {}",
                operation["security"]
            );
            if PUBLIC.contains(&path.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{user_id}", "usr_01JDQ70000000000000000000A")
                .replace("{key_id}", "key_01JDQ70000000000000000000A")
                .replace("{token_id}", "tok_01JDQ70000000000000000000A")
                .replace("{request_id}", "req_01JDQ70000000000000000000A");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = api.send(m.clone(), &concrete, None, Some(json!({}))).await;
            assert_eq!(a.status, 401, "{m} {concrete} without auth: {}", a.text);
            assert_eq!(a.error_type(), "unauthenticated");
            let bad = api.send(m.clone(), &concrete, Some("ccps_not-a-session"), Some(json!({}))).await;
            assert_eq!(bad.status, 401, "{m} {concrete} with a bad token: {}", bad.text);
            if path == "/v1/self" {
                // Authenticated by a developer's access key instead: an unknown one is refused too.
                let resp = api
                    .http
                    .get(format!("{}{concrete}", api.url))
                    .header("x-ccp-access-key", "ak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 401, "GET /v1/self with an unknown access key");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} routes in the document");

    // Wrong passwords are refused, then the guessing client must wait (429 before its credential
    // is checked); failures are counted on the security stream, not one admin event each.
    for _ in 0..5 {
        let a = api
            .send(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"username": ADMIN_USER, "password": "wrong password!"})),
            )
            .await;
        assert_eq!(a.status, 401);
    }
    let throttled = api
        .send(Method::POST, "/v1/auth/login", None, Some(json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD})))
        .await;
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert!(throttled.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    let events = admin_events(&api).await;
    let failures = events.iter().filter(|e| matches!(e, Event::AdminLoginFailed(_))).count();
    assert_eq!(failures, 0, "no event per failed attempt (the admin stream is kept for ever)");

    // Parallel guesses from another client cannot slip past its allowance: an attempt counts
    // from the moment it starts.
    let guesses = (0..20).map(|_| {
        api.http
            .post(format!("{}/v1/auth/login", api.url))
            .header("x-forwarded-for", "192.0.2.77")
            .json(&json!({"username": "ops-guess", "password": "a wrong password"}))
    });
    let statuses: Vec<u16> = all_at_once(guesses).await.iter().map(|a| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15, "{statuses:?}");
    assert!(events.iter().any(|e| matches!(e, Event::AdminLoginSucceeded(_))));

    // API tokens: issued once, usable, revocable.
    let issued = api.post("/v1/api-tokens", json!({"name": "ci"})).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let token = issued.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ccpt_"));
    let me = api.send(Method::GET, "/v1/auth/me", Some(&token), None).await;
    assert_eq!((me.body["username"].as_str(), me.body["method"].as_str()), (Some(ADMIN_USER), Some("api_token")));
    let listed = api.get("/v1/api-tokens").await;
    assert!(!listed.text.contains(&token[5..]));
    let token_id = issued.body["token_id"].as_str().unwrap();
    api.send(Method::POST, &format!("/v1/api-tokens/{token_id}/revoke"), Some(&api.token), None).await;
    assert_eq!(api.send(Method::GET, "/v1/auth/me", Some(&token), None).await.status, 401);

    // The dashboard's cookie session: reads work, changes need the CSRF token.
    let other = api.post("/v1/admins", json!({"username": "ops-bob", "password": "another long password"})).await;
    assert_eq!(other.status, 201, "{}", other.text);
    let jar = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let login = jar
        .post(format!("{}/v1/auth/login", api.url))
        .header("x-forwarded-for", "192.0.2.88")
        .json(&json!({"username": "ops-bob", "password": "another long password"}))
        .send()
        .await
        .unwrap();
    let set_cookie = login.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let session: Value = login.json().await.unwrap();
    let csrf = session["csrf_token"].as_str().unwrap();
    assert_eq!(jar.get(format!("{}/v1/users", api.url)).send().await.unwrap().status(), 200);
    let no_csrf = jar.post(format!("{}/v1/users", api.url)).json(&json!({"name": "Zed"})).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let with_csrf = jar
        .post(format!("{}/v1/users", api.url))
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "Zed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_csrf.status(), 201);

    // Logout ends the session (the scheme is case-insensitive, as for every other request).
    let session_token = session["token"].as_str().unwrap();
    let logout = api
        .http
        .post(format!("{}/v1/auth/logout", api.url))
        .header("authorization", format!("bearer  {session_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(api.send(Method::GET, "/v1/auth/me", Some(session_token), None).await.status, 401);
    api.finish().await;
}

#[tokio::test]
async fn concurrent_conflicting_commands_apply_exactly_once() {
    let api = AdminApi::start("apiconc").await;
    let user = api.create_user("Contended").await;
    let version = api.get(&format!("/v1/users/{user}")).await.header("etag").unwrap().to_owned();

    // 20 renames against the same version: exactly one applies, the rest are 409.
    let renames = (0..20).map(|i| {
        api.http
            .patch(format!("{}/v1/users/{user}", api.url))
            .bearer_auth(&api.token)
            .header("if-match", &version)
            .json(&json!({"name": format!("Renamed {i}")}))
    });
    let statuses: Vec<u16> = all_at_once(renames).await.iter().map(|a| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 19, "{statuses:?}");
    let updates = admin_events(&api).await.iter().filter(|e| matches!(e, Event::UserUpdated(_))).count();
    assert_eq!(updates, 1);

    // 20 retries of one key issue with one Idempotency-Key: one key, the rest replays or 409.
    let issue = |name: &str| {
        api.http
            .post(format!("{}/v1/users/{user}/keys", api.url))
            .bearer_auth(&api.token)
            .header("idempotency-key", "01JDQ7IDEMPOTENTISSUE00000")
            .json(&json!({ "name": name }))
    };
    let answers = all_at_once((0..20).map(|_| issue("ci"))).await;
    let issued = admin_events(&api).await.iter().filter(|e| matches!(e, Event::AccessKeyIssued(_))).count();
    assert_eq!(issued, 1);
    let firsts: Vec<&common::Answer> =
        answers.iter().filter(|a| a.status == 201 && a.header("idempotent-replayed").is_none()).collect();
    assert_eq!(firsts.len(), 1);
    let key_id = firsts[0].body["key"]["key_id"].clone();
    for a in &answers {
        assert!(a.status == 201 || a.status == 409, "{}", a.text);
        if a.header("idempotent-replayed") == Some("true") {
            assert_eq!(a.body["key"]["key_id"], key_id);
            assert_eq!(a.body["access_key"], Value::Null, "a replay never repeats the secret");
        }
    }
    // A later retry is a replay; the same key with another body is refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let replay = AdminApi::answer(issue("ci").send().await.unwrap()).await;
    assert_eq!((replay.status, replay.header("idempotent-replayed")), (201, Some("true")), "{}", replay.text);
    let other = issue("other").send().await.unwrap();
    assert_eq!(other.status(), 422);
    api.finish().await;
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let api = AdminApi::start_with("apicors", &[("CCP__ADMIN__CORS_ORIGINS", "https://dash.example.com")]).await;
    let preflight = |origin: &'static str| {
        api.http
            .request(Method::OPTIONS, format!("{}/v1/users", api.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://dash.example.com").await.unwrap();
    assert_eq!(ok.headers().get("access-control-allow-origin").unwrap(), "https://dash.example.com");
    assert!(ok.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().contains("authorization"));
    let evil = preflight("https://evil.example.com").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let get = api
        .http
        .get(format!("{}/v1/users", api.url))
        .bearer_auth(&api.token)
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(get.headers().get("access-control-allow-origin").unwrap(), "https://dash.example.com");
    api.finish().await;
}
