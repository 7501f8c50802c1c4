#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The model catalogue through the admin API, against the real `ccp-admin` binary and NATS:
//! the shipped catalogue, changes as audited events, prices set with a model, and bad input
//! refused naming the field with nothing appended.

mod common;

use ccp_schemas::events::Event;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Actor, Envelope};
use common::{AdminApi, ADMIN_USER};
use serde_json::{json, Value};

/// Every catalogue and pricing event, oldest first.
async fn catalogue_events(api: &AdminApi) -> Vec<Envelope> {
    api.log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e.event, Event::ModelCatalogued(_) | Event::ModelRemoved(_) | Event::PricingSet(_)))
        .collect()
}

fn model<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["models"].as_array().unwrap().iter().find(|m| m["id"] == id)
}

#[tokio::test]
async fn the_shipped_catalogue_changes_only_by_audited_events() {
    let api = AdminApi::start("models_crud").await;
    let a = api.get("/v1/models").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["version"], 0);
    assert_eq!(a.header("etag"), Some("\"0\""));
    // Claude Code 2.1.332's and 2.1.197's default models are shipped, without a price yet.
    let opus55 = model(&a.body, "claude-opus-5-5").unwrap();
    assert_eq!((opus55["family"].as_str(), opus55["priced"].as_bool()), (Some("opus"), Some(false)));
    assert!(model(&a.body, "claude-opus-4-8").is_some());
    let sonnet = model(&a.body, "claude-sonnet-4-5").unwrap();
    assert_eq!(sonnet["priced"], true);
    assert_eq!(sonnet["prices"][0]["input_per_mtok"], "3.00");
    // Any name a model answers to finds it.
    let a = api.get("/v1/models/claude-sonnet-4-5-20250929").await;
    assert_eq!((a.status, a.body["id"].as_str()), (200, Some("claude-sonnet-4-5")), "{}", a.text);
    assert_eq!(api.get("/v1/models/claude-sonnet-4-6").await.status, 404);

    // A target and a price for claude-opus-5-5, in one call: two events.
    let body = json!({
        "family": "opus",
        "aliases": ["claude-opus-5-5-latest"],
        "bedrock": [{"scope": "global", "model_id": "global.anthropic.claude-opus-5-5-v1:0"}],
        "prices": [{"input_per_mtok": "5", "output_per_mtok": "25", "cache_write_per_mtok": "6.25", "cache_read_per_mtok": "0.50"}],
    });
    let a = api.put("/v1/models/claude-opus-5-5", body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["priced"], true);
    assert_eq!(a.body["bedrock"][0]["model_id"], "global.anthropic.claude-opus-5-5-v1:0");
    let events = catalogue_events(&api).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let Event::ModelCatalogued(c) = &events[0].event else { panic!("{:?}", events[0].event) };
    assert_eq!(c.entry.aliases, ["claude-opus-5-5-latest"]);
    assert!(matches!(&events[0].actor, Actor::Admin { username, .. } if username == ADMIN_USER));
    let Event::PricingSet(p) = &events[1].event else { panic!("{:?}", events[1].event) };
    assert_eq!(p.version, 1);
    assert!(p.models.iter().any(|m| m.model == "claude-opus-5-5" && m.output_per_mtok == "25".parse().unwrap()));
    assert!(p.models.iter().any(|m| m.model == "claude-sonnet-4-5"), "the other prices are kept");
    // The same again changes nothing.
    let a = api.put("/v1/models/claude-opus-5-5", body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(catalogue_events(&api).await.len(), 2);
    let list = api.get("/v1/models").await;
    assert_eq!(list.body["version"], 1);
    assert_eq!(list.body["pricing_version"], 1);

    // A new model, then removed; removing it again is a 404.
    let a = api.put("/v1/models/claude-haiku-5", json!({"family": "haiku"})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["priced"], false);
    let a = api.delete("/v1/models/claude-haiku-5").await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert_eq!(api.get("/v1/models/claude-haiku-5").await.status, 404);
    assert_eq!(api.delete("/v1/models/claude-haiku-5").await.status, 404);
    let events = catalogue_events(&api).await;
    assert!(matches!(&events.last().unwrap().event, Event::ModelRemoved(r) if r.model == "claude-haiku-5"));
    api.finish().await;
}

#[tokio::test]
async fn bad_catalogue_commands_name_the_field_and_append_nothing() {
    let api = AdminApi::start("models_bad").await;
    let target = |scope: &str, id: &str| json!({"scope": scope, "model_id": id});
    let price = |input: Value| json!({"input_per_mtok": input, "output_per_mtok": "1", "cache_write_per_mtok": "1", "cache_read_per_mtok": "1"});
    let cases = [
        ("claude-new-1", json!({"family": "opus", "aliases": ["claude-opus-4-0"]}), 409, "aliases[0]"),
        ("claude-opus-4-0", json!({"family": "opus"}), 409, "id"),
        ("claude-new-1", json!({"family": "gpt"}), 400, "family"),
        ("claude-new-1", json!({}), 400, "body"),
        ("claude-new-1", json!({"family": "opus", "colour": "red"}), 400, "colour"),
        ("claude-new-1", json!({"family": "opus", "aliases": ["Claude New"]}), 422, "aliases[0]"),
        (
            "claude-new-1",
            json!({"family": "opus", "bedrock": [target("mars", "global.anthropic.claude-new-1-v1:0")]}),
            422,
            "bedrock[0].scope",
        ),
        (
            "claude-new-1",
            json!({"family": "opus", "bedrock": [target("global", "gpt-4o")]}),
            422,
            "bedrock[0].model_id",
        ),
        (
            "claude-new-1",
            json!({"family": "opus", "bedrock": [target("eu", "eu.anthropic.claude-new-1-v1:0"), target("eu", "eu.anthropic.claude-new-1-v2:0")]}),
            422,
            "bedrock[1].scope",
        ),
        ("claude-new-1", json!({"family": "opus", "prices": [price(json!("-1"))]}), 400, "prices[0].input_per_mtok"),
        ("claude-new-1", json!({"family": "opus", "prices": [price(json!("10001"))]}), 422, "prices[0].input_per_mtok"),
        ("claude-new-1", json!({"family": "opus", "prices": [price(json!("three"))]}), 400, "prices[0].input_per_mtok"),
        ("claude-new-1", json!({"family": "opus", "prices": [price(json!(3.5))]}), 400, "prices[0].input_per_mtok"),
        ("Claude New", json!({"family": "opus"}), 400, "model"),
    ];
    for (id, body, status, field) in cases {
        let path = format!("/v1/models/{}", id.replace(' ', "%20"));
        let a = api.put(&path, body.clone()).await;
        assert_eq!(a.status, status, "{id} {body}: {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{id} {body}: {}", a.text);
    }
    assert!(catalogue_events(&api).await.is_empty(), "nothing was appended");
    assert_eq!(api.get("/v1/models").await.body["version"], 0);
    api.finish().await;
}
