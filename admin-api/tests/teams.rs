#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Teams end to end against a real `ccp-admin` on real NATS: teams and membership become events
//! on the log; a user is in at most one team; the team's routing default applies to members
//! without a strategy of their own; bad input is refused naming the field; a team with members
//! is not deleted (409).

mod common;

use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Event;
use common::AdminApi;
use serde_json::json;

async fn team_events(api: &AdminApi) -> Vec<Event> {
    api.log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .map(|(_, e)| e.event)
        .filter(|e| e.event_type().starts_with("team_") || e.event_type() == "user_team_set")
        .collect()
}

#[tokio::test]
async fn teams_are_created_joined_moved_between_and_deleted_only_when_empty() {
    let api = AdminApi::start("teams").await;
    let created = api
        .post("/v1/teams", json!({"name": "Data Platform", "monthly_limit_usd": "2000.00", "routing": "bedrock_only"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let data = created.body["team_id"].as_str().unwrap().to_owned();
    assert!(data.starts_with("team_"));
    assert_eq!(created.header("location"), Some(format!("/v1/teams/{data}").as_str()));
    assert_eq!(created.body["monthly_limit_usd"], "2000");
    assert_eq!(created.body["routing"], "bedrock_only");
    assert_eq!(created.body["members"], 0);
    let web = api.post("/v1/teams", json!({"name": "Web"})).await.body["team_id"].as_str().unwrap().to_owned();

    // Names are unique among teams, case aside, as users' are.
    let twin = api.post("/v1/teams", json!({"name": "data platform"})).await;
    assert_eq!((twin.status, twin.body["error"]["field"].as_str()), (409, Some("name")), "{}", twin.text);

    // Joining: the team's routing default applies until the user has a strategy of their own.
    let dana = api.create_user("dana").await;
    let joined = api.put(&format!("/v1/users/{dana}/team"), json!({"team_id": data})).await;
    assert_eq!(joined.status, 200, "{}", joined.text);
    assert_eq!(joined.body["team_id"], data.as_str());
    assert_eq!(joined.body["team"], "Data Platform");
    assert_eq!(
        (joined.body["routing"].as_str(), joined.body["effective_routing"].as_str()),
        (Some("plan_first"), Some("bedrock_only"))
    );
    let own = api.put(&format!("/v1/users/{dana}/routing"), json!({"strategy": "plan_first"})).await;
    assert_eq!(own.body["effective_routing"], "plan_first", "a user's own setting overrides the team's: {}", own.text);

    let detail = api.get(&format!("/v1/teams/{data}")).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    assert_eq!(detail.body["members"], 1);
    assert_eq!(detail.body["users"][0]["user_id"], dana.as_str());
    assert!(detail.header("etag").is_some());

    // Deleting a team with members is refused; the refusal says why.
    let refused = api.delete(&format!("/v1/teams/{data}")).await;
    assert_eq!((refused.status, refused.error_type()), (409, "conflict"), "{}", refused.text);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("1 member"), "{}", refused.text);

    // Moving: one event, the user is in the other team only.
    let moved = api.put(&format!("/v1/users/{dana}/team"), json!({"team_id": web})).await;
    assert_eq!(moved.body["team"], "Web", "{}", moved.text);
    let list = api.get("/v1/teams").await;
    let counts: Vec<(String, i64)> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["members"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, [("Data Platform".to_owned(), 0), ("Web".to_owned(), 1)]);
    let members = api.get(&format!("/v1/users?team={web}")).await;
    assert_eq!(members.body["total"], 1, "{}", members.text);
    let without = api.get("/v1/users?team=none").await;
    assert_eq!(without.body["total"], 0, "{}", without.text);

    // The emptied team can be deleted; it is gone, and deleting again is 404.
    let deleted = api.delete(&format!("/v1/teams/{data}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(api.get(&format!("/v1/teams/{data}")).await.status, 404);
    assert_eq!(api.delete(&format!("/v1/teams/{data}")).await.status, 404);
    // Nobody can join a deleted team.
    let ghost = api.put(&format!("/v1/users/{dana}/team"), json!({"team_id": data})).await;
    assert_eq!((ghost.status, ghost.body["error"]["field"].as_str()), (422, Some("team_id")), "{}", ghost.text);

    let left = api.put(&format!("/v1/users/{dana}/team"), json!({"team_id": null})).await;
    assert_eq!(left.body["team_id"], json!(null), "{}", left.text);

    let types: Vec<&str> = team_events(&api).await.iter().map(Event::event_type).collect();
    assert_eq!(
        types,
        [
            "team_created",
            "team_budget_set",
            "team_routing_set",
            "team_created",
            "user_team_set",
            "user_team_set",
            "team_deleted",
            "user_team_set"
        ]
    );
    api.finish().await;
}

#[tokio::test]
async fn team_input_is_checked_like_a_users_and_names_the_field() {
    let api = AdminApi::start("teambad").await;
    let team = api.post("/v1/teams", json!({"name": "ops"})).await.body["team_id"].as_str().unwrap().to_owned();
    let dana = api.create_user("dana").await;
    for (method, path, body, status, field) in [
        ("POST", "/v1/teams".to_owned(), json!({"name": ""}), 422, "name"),
        ("POST", "/v1/teams".to_owned(), json!({"name": " ops"}), 422, "name"),
        ("POST", "/v1/teams".to_owned(), json!({"name": "x".repeat(65)}), 422, "name"),
        ("POST", "/v1/teams".to_owned(), json!({"name": "a", "monthly_limit_usd": "-1"}), 400, "monthly_limit_usd"),
        (
            "POST",
            "/v1/teams".to_owned(),
            json!({"name": "a", "monthly_limit_usd": "1000001"}),
            422,
            "monthly_limit_usd",
        ),
        ("POST", "/v1/teams".to_owned(), json!({"name": "a", "colour": "red"}), 400, "colour"),
        (
            "PUT",
            format!("/v1/teams/{team}/budget"),
            json!({"monthly_limit_usd": "1.0000001"}),
            422,
            "monthly_limit_usd",
        ),
        ("PUT", format!("/v1/teams/{team}/routing"), json!({"strategy": "sometimes"}), 400, "strategy"),
        // A missing field is the body's fault; the message names it (`missing field `strategy``).
        ("PUT", format!("/v1/teams/{team}/routing"), json!({}), 400, "body"),
        ("PATCH", format!("/v1/teams/{team}"), json!({"name": "bad\u{7}"}), 422, "name"),
        ("PUT", format!("/v1/users/{dana}/team"), json!({"team_id": "team_nope"}), 422, "team_id"),
        ("PUT", format!("/v1/users/{dana}/team"), json!({}), 400, "body"),
        ("GET", "/v1/teams/team_nope".to_owned(), json!(null), 400, "team_id"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (!body.is_null()).then_some(body);
        let a = api.send(method.clone(), &path, Some(api.token.as_str()), body).await;
        assert_eq!(a.status, status, "{method} {path}: {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{method} {path}: {}", a.text);
        if field == "body" {
            assert!(a.body["error"]["message"].as_str().unwrap().contains("missing field"), "{}", a.text);
        }
    }
    let missing = api.put("/v1/teams/team_01JDQ7TEAM0000000000000001/budget", json!({"monthly_limit_usd": "5"})).await;
    assert_eq!((missing.status, missing.error_type()), (404, "not_found"), "{}", missing.text);
    let nobody = api.put("/v1/users/usr_01JDQ7Z8Y4K3M2N1P0QRSTVWXY/team", json!({"team_id": team})).await;
    assert_eq!((nobody.status, nobody.error_type()), (404, "not_found"), "{}", nobody.text);
    // Nothing was recorded for the refused commands.
    assert_eq!(team_events(&api).await.len(), 1);
    api.finish().await;
}
