#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Team leads end to end against a real `ccp-admin` on real NATS and ClickHouse: an `admin`
//! scopes a `viewer` to one team (`admin_team_scope_set`, in the audit log); the team lead —
//! through a session and an API token — reads their team, its budget, its members and usage
//! filtered to it, and is refused (403 naming the parameter) anything else: another team, usage
//! without `team_id` or with another team's, a user outside the team, every change. Unscoped, they
//! are an ordinary viewer again. Only a viewer is scoped; a team lead's role is not raised; a team
//! with leads is not deleted; bad input is refused naming the field.

mod common;

use std::time::Duration;

use ccp_projector::analytics::{Audit, Projection};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Event;
use common::{AdminApi, Answer};
use reqwest::Method;
use serde_json::{json, Value};

/// A viewer admin, logged in: (admin id, session token).
async fn viewer(api: &AdminApi, username: &str) -> (String, String) {
    let password = format!("{username} has a long password");
    let created = api.post("/v1/admins", json!({ "username": username, "password": password, "role": "viewer" })).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["team_id"], Value::Null, "unscoped at first: {}", created.text);
    (created.body["admin_id"].as_str().unwrap().to_owned(), api.login(username, &password).await)
}

async fn scope(api: &AdminApi, admin_id: &str, team_id: Value) -> Answer {
    api.put(&format!("/v1/admins/{admin_id}/team-scope"), json!({ "team_id": team_id })).await
}

async fn as_lead(api: &AdminApi, token: &str, method: Method, path: &str) -> Answer {
    api.send(method, path, Some(token), None).await
}

/// 403 naming `field`, saying whose team lead this is.
fn refused(answer: &Answer, field: Option<&str>, what: &str) {
    assert_eq!((answer.status, answer.error_type()), (403, "forbidden"), "{what}: {}", answer.text);
    assert_eq!(answer.body["error"]["field"].as_str(), field, "{what}: {}", answer.text);
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("a team lead of `Data` sees only that team's usage"), "{what}: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_team_lead_sees_only_their_team() {
    let api = AdminApi::start("teamleads").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let data = api.post("/v1/teams", json!({"name": "Data"})).await.body["team_id"].as_str().unwrap().to_owned();
    let web = api.post("/v1/teams", json!({"name": "Web"})).await.body["team_id"].as_str().unwrap().to_owned();
    let dana = api.create_user("dana").await;
    let wes = api.create_user("wes").await;
    let loner = api.create_user("loner").await;
    assert_eq!(api.put(&format!("/v1/users/{dana}/team"), json!({"team_id": data})).await.status, 200);
    assert_eq!(api.put(&format!("/v1/users/{wes}/team"), json!({"team_id": web})).await.status, 200);

    let (lead_id, lead) = viewer(&api, "tess").await;
    let scoped = scope(&api, &lead_id, json!(data)).await;
    assert_eq!(scoped.status, 200, "{}", scoped.text);
    // Percent-encoded letters reach the same handlers: the scope sees the routed path.
    refused(&as_lead(&api, &lead, Method::GET, "/v1/%75sage").await, Some("team_id"), "GET /v1/%75sage");
    refused(&as_lead(&api, &lead, Method::GET, "/v1/%74eams").await, None, "GET /v1/%74eams");
    refused(&as_lead(&api, &lead, Method::GET, "/v1/%61udit").await, None, "GET /v1/%61udit");
    let other = format!("/v1/teams/{web}/%62udget");
    refused(&as_lead(&api, &lead, Method::GET, &other).await, Some("team_id"), "another team's budget, encoded");
    refused(&as_lead(&api, &lead, Method::GET, "/v1/no-such-route").await, None, "no route");
    assert_eq!((scoped.body["team_id"].as_str(), scoped.body["role"].as_str()), (Some(data.as_str()), Some("viewer")));
    let listed = api.get("/v1/admins").await;
    let tess = listed.body.as_array().unwrap().iter().find(|a| a["username"] == "tess").unwrap();
    assert_eq!(tess["team_id"], data.as_str());
    let root = listed.body.as_array().unwrap().iter().find(|a| a["username"] == common::ADMIN_USER).unwrap();
    assert_eq!(root["team_id"], Value::Null);

    // The session opened before the scoping is scoped at once; `me` says so.
    let me = as_lead(&api, &lead, Method::GET, "/v1/auth/me").await;
    assert_eq!((me.status, me.body["team_id"].as_str()), (200, Some(data.as_str())), "{}", me.text);
    let root_me = api.get("/v1/auth/me").await;
    assert_eq!(root_me.body["team_id"], Value::Null, "{}", root_me.text);

    // Allowed: their team, its budget, its members, usage filtered to it.
    for path in [
        format!("/v1/teams/{data}"),
        format!("/v1/teams/{data}/budget"),
        format!("/v1/users/{dana}"),
        format!("/v1/users/{dana}/budget"),
        format!("/v1/usage?team_id={data}"),
        format!("/v1/usage?group_by=user,model&team_id={data}"),
        "/v1/api-tokens".to_owned(),
    ] {
        let a = as_lead(&api, &lead, Method::GET, &path).await;
        assert_eq!(a.status, 200, "GET {path}: {}\n{}", a.text, api.service.log_text());
    }
    let team = as_lead(&api, &lead, Method::GET, &format!("/v1/teams/{data}")).await;
    assert_eq!(team.body["users"][0]["user_id"], dana.as_str());

    // Refused, naming what is wrong.
    refused(&as_lead(&api, &lead, Method::GET, "/v1/usage").await, Some("team_id"), "usage without team_id");
    let other_usage = as_lead(&api, &lead, Method::GET, &format!("/v1/usage?team_id={web}")).await;
    refused(&other_usage, Some("team_id"), "another team's usage");
    let stmt = as_lead(&api, &lead, Method::GET, &format!("/v1/statements?team_id={web}")).await;
    refused(&stmt, Some("team_id"), "another team's statement");
    for path in [format!("/v1/teams/{web}"), format!("/v1/teams/{web}/budget")] {
        refused(&as_lead(&api, &lead, Method::GET, &path).await, Some("team_id"), &path);
    }
    for path in [format!("/v1/users/{wes}"), format!("/v1/users/{loner}/budget")] {
        refused(&as_lead(&api, &lead, Method::GET, &path).await, Some("user_id"), &path);
    }
    for path in ["/v1/teams", "/v1/users", "/v1/audit", "/v1/circuits", "/v1/models", "/v1/pricing"] {
        refused(&as_lead(&api, &lead, Method::GET, path).await, None, path);
    }
    refused(&as_lead(&api, &lead, Method::GET, &format!("/v1/users/{dana}/keys")).await, None, "a member's keys");

    // Their own API token is scoped too.
    let issued = api.send(Method::POST, "/v1/api-tokens", Some(&lead), Some(json!({"name": "lead-ci"}))).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let token = issued.body["token"].as_str().unwrap().to_owned();
    assert_eq!(as_lead(&api, &token, Method::GET, &format!("/v1/usage?team_id={data}")).await.status, 200);
    refused(&as_lead(&api, &token, Method::GET, &format!("/v1/usage?team_id={web}")).await, Some("team_id"), "token");
    assert_eq!(as_lead(&api, &token, Method::GET, "/v1/auth/me").await.body["team_id"], data.as_str());

    // Membership is read at each request: moving dana out takes her from the lead's view.
    assert_eq!(api.put(&format!("/v1/users/{dana}/team"), json!({"team_id": null})).await.status, 200);
    refused(&as_lead(&api, &lead, Method::GET, &format!("/v1/users/{dana}")).await, Some("user_id"), "a former member");

    // A team with a lead is not deleted (it has no members now).
    let delete = api.delete(&format!("/v1/teams/{data}")).await;
    assert_eq!(delete.status, 409, "{}", delete.text);
    assert!(delete.body["error"]["message"].as_str().unwrap().contains("team lead"), "{}", delete.text);

    // A team lead's role is not raised until they are unscoped.
    let raised = api.put(&format!("/v1/admins/{lead_id}/role"), json!({"role": "operator"})).await;
    assert_eq!(raised.status, 409, "{}", raised.text);
    assert!(raised.body["error"]["message"].as_str().unwrap().contains("team-scope"), "{}", raised.text);

    // Unscoped: an ordinary viewer again, at once.
    let unscoped = scope(&api, &lead_id, Value::Null).await;
    assert_eq!((unscoped.status, &unscoped.body["team_id"]), (200, &Value::Null), "{}", unscoped.text);
    for path in ["/v1/teams".to_owned(), "/v1/users".to_owned(), "/v1/usage".to_owned(), format!("/v1/teams/{web}")] {
        let a = as_lead(&api, &lead, Method::GET, &path).await;
        assert_eq!(a.status, 200, "GET {path} unscoped: {}", a.text);
    }
    assert_eq!(as_lead(&api, &token, Method::GET, "/v1/users").await.status, 200, "the token is unscoped too");
    // …still a viewer: no changes.
    let change = api.send(Method::POST, "/v1/teams", Some(&lead), Some(json!({"name": "Mine"}))).await;
    assert_eq!((change.status, change.body["error"]["field"].as_str()), (403, Some("role")), "{}", change.text);
    assert_eq!(api.delete(&format!("/v1/teams/{data}")).await.status, 204, "no lead any more");

    // The scoping and unscoping are events on the admin's account, in the audit log.
    let scopes: Vec<Option<String>> = api
        .log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e.event {
            Event::AdminTeamScopeSet(s) => Some(s.team_id.map(|t| t.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(scopes, [Some(data.clone()), None]);
    let ch = ccp_runtime::migrate::server_client(&api.settings.clickhouse)
        .unwrap()
        .with_database(&api.settings.clickhouse.database);
    let mut audit =
        Projection::<Audit>::open(&api.log.js, &api.log.ns, ch, 1000, Duration::from_millis(100)).await.unwrap();
    while audit.process_next_batch().await.unwrap().received > 0 {}
    let logged = api.get(&format!("/v1/audit?type=admin_team_scope_set&target={lead_id}")).await;
    assert_eq!((logged.status, logged.body["total"].as_u64()), (200, Some(2)), "{}", logged.text);
    let newest = &logged.body["items"][1];
    assert_eq!(
        (newest["target_kind"].as_str(), newest["details"]["team_id"].as_str()),
        (Some("admin"), Some(data.as_str())),
        "{}",
        logged.text
    );

    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}

#[tokio::test]
async fn only_a_viewer_is_scoped_to_an_existing_team() {
    let api = AdminApi::start("teamleadsbad").await;
    let data = api.post("/v1/teams", json!({"name": "Data"})).await.body["team_id"].as_str().unwrap().to_owned();
    let (viewer_id, _) = viewer(&api, "vic").await;
    let operator = api
        .post("/v1/admins", json!({"username": "olga", "password": "olga has a long password", "role": "operator"}))
        .await;
    let operator_id = operator.body["admin_id"].as_str().unwrap().to_owned();

    let refused = scope(&api, &operator_id, json!(data)).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("only a `viewer`"), "{}", refused.text);

    for (admin_id, body, status, field) in [
        (viewer_id.as_str(), json!({"team_id": "team_nonsense"}), 400, Some("team_id")),
        (viewer_id.as_str(), json!({"team_id": 7}), 400, Some("team_id")),
        (viewer_id.as_str(), json!({"team_id": "team_01JDQ7TEAM0000000000000001"}), 404, Some("team_id")),
        (viewer_id.as_str(), json!({}), 400, Some("body")),
        (viewer_id.as_str(), json!({"team_id": null, "extra": 1}), 400, Some("extra")),
        ("adm_nonsense", json!({"team_id": null}), 400, Some("admin_id")),
        ("adm_01JDQ70000000000000000000A", json!({"team_id": null}), 404, None),
    ] {
        let a = api.put(&format!("/v1/admins/{admin_id}/team-scope"), body.clone()).await;
        assert_eq!((a.status, a.body["error"]["field"].as_str()), (status, field), "{body}: {}", a.text);
    }
    // A team lead cannot scope anyone (only `admin` may).
    let (lead_id, lead) = viewer(&api, "tl").await;
    assert_eq!(scope(&api, &lead_id, json!(data)).await.status, 200);
    let own = api
        .send(Method::PUT, &format!("/v1/admins/{lead_id}/team-scope"), Some(&lead), Some(json!({"team_id": null})))
        .await;
    assert_eq!(own.status, 403, "{}", own.text);
    // Nothing was written for the refusals.
    let scopes = api
        .log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .filter(|(_, e)| matches!(e.event, Event::AdminTeamScopeSet(_)))
        .count();
    assert_eq!(scopes, 1);
    api.finish().await;
}

#[tokio::test]
async fn ccpctl_scopes_a_viewer_to_a_team_by_name_and_clears_it() {
    let api = AdminApi::start("teamleadsctl").await;
    let data =
        api.post("/v1/teams", json!({"name": "Data Platform"})).await.body["team_id"].as_str().unwrap().to_owned();
    let (lead_id, _) = viewer(&api, "tess").await;
    let ctl = common::ctl::Ctl::new(&api);

    let r = ctl.run(&["admins", "scope", "tess", "--team", "data platform"]).ok();
    assert!(r.stdout.contains("is now a team lead of") && r.stdout.contains(&data), "{}", r.stdout);
    let listed = ctl.run(&["admins", "list"]).ok();
    let row = listed.stdout.lines().find(|l| l.contains("tess")).unwrap();
    assert!(row.contains(&data), "{}", listed.stdout);
    let json = ctl.run(&["admins", "scope", &lead_id, "--team", &data, "--json"]).ok().json();
    assert_eq!(json["team_id"], data.as_str(), "by id, again: nothing changes");

    let r = ctl.run(&["admins", "scope", "tess", "--clear"]).ok();
    assert!(r.stdout.contains("no longer scoped"), "{}", r.stdout);
    // One of --team and --clear, never both or neither; an unknown team is named.
    ctl.run(&["admins", "scope", "tess"]).fails(2);
    ctl.run(&["admins", "scope", "tess", "--team", "Data Platform", "--clear"]).fails(2);
    let r = ctl.run(&["admins", "scope", "tess", "--team", "nobody"]).fails(1);
    assert!(r.stderr.contains("no team is named"), "{}", r.stderr);
    api.finish().await;
}
