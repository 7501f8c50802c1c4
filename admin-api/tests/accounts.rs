//! An admin account's lifecycle against the real NATS, on two admin API replicas: disabling stops
//! the admin's password, sessions and API tokens on both; enabling brings back the tokens (not
//! the sessions); password changes (own, with the current one, and by another admin) end
//! sessions; sessions and others' tokens are listed and revoked; sign out everywhere; the guards
//! that keep someone able to log in; and the break-glass `ccp-admin recover` on the server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Actor, Event};
use ccp_tests::{free_port, wait_http_ok, Service};
use common::{AdminApi, BIN};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "Mulder's first passphrase";

async fn status(api: &AdminApi, url: &str, token: &str) -> u16 {
    api.http.get(format!("{url}/v1/auth/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

/// Polls `url` with `token` until `GET /v1/auth/me` answers `want`; how long that took.
async fn until(api: &AdminApi, url: &str, token: &str, want: u16) -> Duration {
    let started = Instant::now();
    while status(api, url, token).await != want {
        assert!(started.elapsed() < Duration::from_secs(10), "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

async fn login_status(api: &AdminApi, username: &str, password: &str) -> u16 {
    api.send(Method::POST, "/v1/auth/login", None, Some(json!({ "username": username, "password": password })))
        .await
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_passwords_sessions_and_tokens_apply_on_every_replica() {
    let api = AdminApi::start_with("accounts", &[("CCP__ADMIN__TRUSTED_PROXIES", "127.0.0.1,::1")]).await;
    // A second replica of the same deployment.
    let port = free_port();
    let mut env = api.env.clone();
    env.retain(|(k, _)| k != "CCP__ADMIN__LISTEN");
    env.push(("CCP__ADMIN__LISTEN".into(), format!("127.0.0.1:{port}")));
    let replica = Service::spawn(Path::new(BIN), &[], &env).unwrap();
    let second = format!("http://127.0.0.1:{port}");
    wait_http_ok(&format!("{second}/health"), Duration::from_secs(30)).await.unwrap();

    let created =
        api.post("/v1/admins", json!({ "username": "mulder", "password": PASSWORD, "role": "operator" })).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let mulder = created.body["admin_id"].as_str().unwrap().to_owned();
    let session = api.login("mulder", PASSWORD).await;
    let token = api.send(Method::POST, "/v1/api-tokens", Some(&session), Some(json!({ "name": "ci" }))).await;
    let token = token.body["token"].as_str().unwrap().to_owned();
    until(&api, &second, &token, 200).await;

    // Disabled: password, session and token stop working on both replicas.
    let disabled = api.post(&format!("/v1/admins/{mulder}/disable"), json!({ "reason": "left the X-Files" })).await;
    assert_eq!((disabled.status, disabled.body["disabled"].as_bool()), (200, Some(true)), "{}", disabled.text);
    let seen = until(&api, &second, &token, 401).await;
    eprintln!("the other replica refused the disabled admin's token after {seen:?}");
    for (url, credential) in [(&api.url, &session), (&second, &session), (&api.url, &token)] {
        assert_eq!(status(&api, url, credential).await, 401, "{url}");
    }
    let login = api
        .send(Method::POST, "/v1/auth/login", None, Some(json!({ "username": "mulder", "password": PASSWORD })))
        .await;
    assert_eq!(login.status, 403, "{}", login.text);
    assert!(login.text.contains("disabled"), "{}", login.text);

    // Enabled: the token works again, the old session stays ended.
    assert_eq!(api.post(&format!("/v1/admins/{mulder}/enable"), json!(null)).await.status, 200);
    until(&api, &second, &token, 200).await;
    assert_eq!(status(&api, &api.url, &session).await, 401, "sessions opened before disabling stay ended");

    // Another admin's tokens: listed and revoked.
    let tokens = api.get(&format!("/v1/admins/{mulder}/api-tokens")).await;
    let token_id = tokens.body[0]["token_id"].as_str().unwrap().to_owned();
    let revoked = api.post(&format!("/v1/admins/{mulder}/api-tokens/{token_id}/revoke"), json!(null)).await;
    assert_eq!((revoked.status, revoked.body["revoked"].as_bool()), (200, Some(true)), "{}", revoked.text);
    until(&api, &second, &token, 401).await;

    // Sessions: listed (ids only), one ended, then all.
    let (s1, s2) = (api.login("mulder", PASSWORD).await, api.login("mulder", PASSWORD).await);
    let sessions = api.get(&format!("/v1/admins/{mulder}/sessions")).await;
    let listed = sessions.body.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{}", sessions.text);
    assert!(!sessions.text.contains(&s1) && !sessions.text.contains(&s2[4..]), "no token in the list");
    let first = listed[0]["session_id"].as_str().unwrap();
    let ended = api.post(&format!("/v1/admins/{mulder}/sessions/{first}/revoke"), json!(null)).await;
    assert_eq!(ended.status, 204, "{}", ended.text);
    let alive = [status(&api, &api.url, &s1).await, status(&api, &api.url, &s2).await];
    assert_eq!(alive.iter().filter(|s| **s == 200).count(), 1, "one of the two sessions ended: {alive:?}");
    assert_eq!(api.post(&format!("/v1/admins/{mulder}/sign-out-everywhere"), json!(null)).await.status, 200);
    assert_eq!([status(&api, &api.url, &s1).await, status(&api, &api.url, &s2).await], [401, 401]);

    // Their own password: the current one is checked, the new one must be strong; sessions end.
    let own = api.login("mulder", PASSWORD).await;
    let change = |body: serde_json::Value| {
        let (api, own) = (&api, own.clone());
        async move { api.send(Method::PUT, "/v1/auth/password", Some(&own), Some(body)).await }
    };
    let wrong =
        change(json!({ "current_password": "not it at all", "new_password": "The truth is out there 1" })).await;
    assert_eq!(
        (wrong.status, wrong.body["error"]["field"].as_str()),
        (403, Some("current_password")),
        "{}",
        wrong.text
    );
    for weak in ["aaaaaaaaaaaaaa", "mulder-mulder-mulder", "short"] {
        let refused = change(json!({ "current_password": PASSWORD, "new_password": weak })).await;
        assert_eq!(refused.status, 422, "{weak}: {}", refused.text);
    }
    let changed = change(json!({ "current_password": PASSWORD, "new_password": "The truth is out there 1" })).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(status(&api, &api.url, &own).await, 401, "changing the password ends the sessions");
    assert_eq!(login_status(&api, "mulder", PASSWORD).await, 401);
    let own = api.login("mulder", "The truth is out there 1").await;
    assert_eq!(api.send(Method::POST, "/v1/auth/sign-out-everywhere", Some(&own), None).await.status, 200);
    assert_eq!(status(&api, &api.url, &own).await, 401, "signed out everywhere");

    // Reset by an admin.
    let reset =
        api.put(&format!("/v1/admins/{mulder}/password"), json!({ "new_password": "I want to believe 1998" })).await;
    assert_eq!(reset.status, 200, "{}", reset.text);
    assert_eq!(login_status(&api, "mulder", "I want to believe 1998").await, 200);

    // Guards and bad input: specific 4xx, nothing appended.
    let before = api.log.read_all(StreamKind::Admin).await.len();
    let me = api.get("/v1/auth/me").await.body["admin_id"].as_str().unwrap().to_owned();
    let own_disable = api.post(&format!("/v1/admins/{me}/disable"), json!({})).await;
    assert_eq!(own_disable.status, 409, "{}", own_disable.text);
    for (path, body, want) in [
        (format!("/v1/admins/{mulder}/disable"), json!({ "reason": "x".repeat(501) }), 422),
        (format!("/v1/admins/{mulder}/disable"), json!({ "why": "unknown field" }), 400),
        ("/v1/admins/adm_01JDQ70000000000000000000A/enable".to_owned(), json!(null), 404),
        ("/v1/admins/usr_01JDQ70000000000000000000A/enable".to_owned(), json!(null), 400),
        (format!("/v1/admins/{mulder}/sessions/not-a-session/revoke"), json!(null), 400),
        (format!("/v1/admins/{mulder}/sessions/ses_0123456789abcdef/revoke"), json!(null), 404),
    ] {
        let answer = api.post(&path, body).await;
        assert_eq!(answer.status, want, "{path}: {}", answer.text);
    }
    let reset_weak =
        api.put(&format!("/v1/admins/{mulder}/password"), json!({ "new_password": "Mulder1234567" })).await;
    assert_eq!(reset_weak.status, 422, "the username is in it: {}", reset_weak.text);
    assert_eq!(api.log.read_all(StreamKind::Admin).await.len(), before, "refused commands appended nothing");

    // Every change is an admin event of the account (the audit log).
    let types: Vec<&'static str> = api
        .log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .map(|(_, e)| e.event.event_type())
        .filter(|t| t.starts_with("admin_") && *t != "admin_login_succeeded")
        .collect();
    for wanted in ["admin_disabled", "admin_enabled", "admin_sessions_revoked", "admin_password_changed"] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    drop(replica);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recover_on_the_server_gives_an_admin_back_and_is_audited() {
    let api = AdminApi::start("recover").await;
    let created =
        api.post("/v1/admins", json!({ "username": "skinner", "password": PASSWORD, "role": "viewer" })).await;
    let skinner = created.body["admin_id"].as_str().unwrap().to_owned();
    // A team lead (a viewer scoped to a team): recovering them unscopes them first.
    let team = api.post("/v1/teams", json!({ "name": "X-Files" })).await.body["team_id"].as_str().unwrap().to_owned();
    let scoped = api.put(&format!("/v1/admins/{skinner}/team-scope"), json!({ "team_id": team })).await;
    assert_eq!(scoped.status, 200, "{}", scoped.text);
    assert_eq!(api.post(&format!("/v1/admins/{skinner}/disable"), json!({})).await.status, 200);

    let recover = |stdin: &'static str| {
        let mut child = Command::new(BIN)
            .arg("recover")
            .envs(api.env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    // An existing, disabled viewer: enabled, an admin, with the new password.
    let out = recover("skinner\nA brand new passphrase 7\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let session = api.login("skinner", "A brand new passphrase 7").await;
    let me = api.send(Method::GET, "/v1/auth/me", Some(&session), None).await;
    assert_eq!(me.body["role"], "admin", "{}", me.text);
    assert_eq!(me.body["team_id"], Value::Null, "{}", me.text);
    // A new one.
    let out = recover("scully\nAnother new passphrase 8\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(login_status(&api, "scully", "Another new passphrase 8").await, 200);
    // A weak password is refused, nothing appended.
    let before = api.log.read_all(StreamKind::Admin).await.len();
    let out = recover("scully\naaaaaaaaaaaaaaaa\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("different characters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.log.read_all(StreamKind::Admin).await.len(), before);
    // Audited as the system actor, naming the host; the password is nowhere in the log.
    let events = api.log.read_all(StreamKind::Admin).await;
    let recovered: Vec<_> = events
        .iter()
        .filter(
            |(_, e)| matches!(&e.actor, Actor::System { component } if component.starts_with("ccp-admin recover on")),
        )
        .map(|(_, e)| e.event.event_type())
        .collect();
    assert!(recovered.contains(&"admin_password_changed") && recovered.contains(&"admin_created"), "{recovered:?}");
    assert!(events
        .iter()
        .any(|(_, e)| matches!(&e.event, Event::AdminEnabled(a) if a.admin_id.to_string() == skinner)));
    api.finish().await;
}
