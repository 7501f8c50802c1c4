#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Circuit state, the manual reset and the price list, against the real `ccp-admin` binary and
//! NATS: what the answers say and exactly which events land in the log.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ccp_admin_api::routes::ops::Price;
use ccp_schemas::events::{CircuitHalfOpened, CircuitOpened, CloseCause, Event, TripReason};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Actor, Envelope};
use common::{AdminApi, Answer, ADMIN_USER, MASTER_KEY};
use serde_json::{json, Value};

/// The circuit events of one key, oldest first.
async fn circuit_events(api: &AdminApi, key_id: AccessKeyId) -> Vec<(u64, Envelope)> {
    api.log.read_all(StreamKind::Circuit).await.into_iter().filter(|(_, e)| e.event.key_id() == Some(key_id)).collect()
}

/// Every `pricing_set` event, oldest first.
async fn pricing_events(api: &AdminApi) -> Vec<(u64, Envelope)> {
    api.log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .filter(|(_, e)| matches!(e.event, Event::PricingSet(_)))
        .collect()
}

async fn opened(api: &AdminApi, key_id: AccessKeyId, reason: TripReason) -> (u64, chrono::DateTime<chrono::Utc>) {
    let retry_at = chrono::Utc::now() + chrono::Duration::minutes(30);
    let seq = api.log.append(Event::CircuitOpened(CircuitOpened { key_id, reason, failures: 3, retry_at })).await;
    (seq, retry_at)
}

/// A request with `If-Match`.
async fn with_if_match(api: &AdminApi, method: reqwest::Method, path: &str, etag: &str, body: Option<Value>) -> Answer {
    let mut req =
        api.http.request(method, format!("{}{path}", api.url)).bearer_auth(&api.token).header("if-match", etag);
    if let Some(b) = body {
        req = req.json(&b);
    }
    AdminApi::answer(req.send().await.unwrap()).await
}

fn listed(answer: &Answer, key_id: &str) -> Option<Value> {
    answer.body.as_array().unwrap().iter().find(|c| c["key_id"] == key_id).cloned()
}

#[tokio::test]
async fn a_tripped_circuit_is_shown_listed_and_reset_once() {
    let api = AdminApi::start("ops_circuit").await;
    let user = api.create_user("dana").await;
    let (key, _) = api.issue_key(&user).await;
    let (other, _) = api.issue_key(&user).await;
    let key_id: AccessKeyId = key.parse().unwrap();

    // Never tripped: closed, no history.
    let a = api.get(&format!("/v1/keys/{key}/circuit")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["key_id"], key.as_str());
    assert_eq!(a.body["state"], "closed");
    assert_eq!(a.body["version"], 0);
    assert!(a.body["since"].is_null() && a.body["reason"].is_null() && a.body["retry_at"].is_null());
    assert_eq!(a.body["failures"], 0);
    assert_eq!(a.header("etag"), Some("\"0\""));
    let a = api.get("/v1/circuits").await;
    assert_eq!((a.status, a.body.clone()), (200, json!([])), "an empty circuit stream lists nothing");

    // A proxy trips it.
    let (seq, retry_at) = opened(&api, key_id, TripReason::RateLimited).await;
    let other_id: AccessKeyId = other.parse().unwrap();
    let other_seq = api.log.append(Event::CircuitHalfOpened(CircuitHalfOpened { key_id: other_id })).await;
    let a = api.get(&format!("/v1/keys/{key}/circuit")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["state"], "open");
    assert_eq!(a.body["reason"], "rate_limited");
    assert_eq!(a.body["failures"], 3);
    assert_eq!(a.body["version"], seq);
    assert!(a.body["since"].is_string());
    let shown: chrono::DateTime<chrono::Utc> = serde_json::from_value(a.body["retry_at"].clone()).unwrap();
    assert_eq!(shown, retry_at);
    assert_eq!(a.header("etag"), Some(format!("\"{seq}\"").as_str()));

    let a = api.get("/v1/circuits").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body.as_array().unwrap().len(), 2, "{}", a.text);
    assert_eq!(listed(&a, &key).unwrap()["state"], "open");
    let half = listed(&a, &other).unwrap();
    assert_eq!((half["state"].clone(), half["version"].clone()), (json!("half_open"), json!(other_seq)));
    assert_eq!(a.body[0]["key_id"], other.as_str(), "most recent transition first");

    // A stale If-Match is refused and appends nothing.
    let a = with_if_match(
        &api,
        reqwest::Method::POST,
        &format!("/v1/keys/{key}/circuit/reset"),
        &format!("\"{}\"", seq - 1),
        None,
    )
    .await;
    assert_eq!((a.status, a.error_type()), (409, "conflict"), "{}", a.text);
    assert_eq!(a.body["error"]["field"], "if-match");
    assert_eq!(circuit_events(&api, key_id).await.len(), 1);

    // The reset closes it with one event, written as the admin.
    let a = with_if_match(
        &api,
        reqwest::Method::POST,
        &format!("/v1/keys/{key}/circuit/reset"),
        &format!("\"{seq}\""),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["state"], "closed");
    assert_eq!(a.body["cause"], "manual_reset");
    assert!(a.body["reason"].is_null() && a.body["retry_at"].is_null());
    let reset_version = a.body["version"].as_u64().unwrap();
    assert!(reset_version > seq);
    let request_id = a.header("x-request-id").unwrap().to_owned();
    let events = circuit_events(&api, key_id).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let (closed_seq, closed) = &events[1];
    assert_eq!(*closed_seq, reset_version);
    match &closed.event {
        Event::CircuitClosed(c) => assert_eq!((c.key_id, c.cause), (key_id, CloseCause::ManualReset)),
        other => panic!("expected circuit_closed, got {other:?}"),
    }
    assert!(matches!(&closed.actor, Actor::Admin { username, .. } if username == ADMIN_USER), "{:?}", closed.actor);
    assert_eq!(closed.correlation_id.as_deref(), Some(request_id.as_str()));

    let a = api.get(&format!("/v1/keys/{key}/circuit")).await;
    assert_eq!((a.body["state"].clone(), a.body["version"].clone()), (json!("closed"), json!(reset_version)));
    let a = api.get("/v1/circuits").await;
    assert!(listed(&a, &key).is_none(), "{}", a.text);
    assert!(listed(&a, &other).is_some(), "{}", a.text);

    // A second reset finds it closed and appends nothing.
    let a = api.post(&format!("/v1/keys/{key}/circuit/reset"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!((a.body["state"].clone(), a.body["version"].clone()), (json!("closed"), json!(reset_version)));
    assert_eq!(circuit_events(&api, key_id).await.len(), 2);

    // A half-open circuit resets too (without a body).
    let resp = api
        .http
        .post(format!("{}/v1/keys/{other}/circuit/reset", api.url))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let a = AdminApi::answer(resp).await;
    assert_eq!((a.status, a.body["state"].clone()), (200, json!("closed")), "{}", a.text);
    assert_eq!(circuit_events(&api, other_id).await.len(), 2);
    let a = api.get("/v1/circuits").await;
    assert_eq!(a.body, json!([]));
    api.finish().await;
}

#[tokio::test]
async fn unknown_and_malformed_key_ids_are_refused() {
    let api = AdminApi::start("ops_ids").await;
    let unknown = AccessKeyId::new();
    // A transition for a key the directory does not know is still not shown per key.
    opened(&api, unknown, TripReason::Overloaded).await;
    for path in [format!("/v1/keys/{unknown}/circuit"), format!("/v1/keys/{unknown}/circuit/reset")] {
        let a = if path.ends_with("reset") { api.post(&path, json!({})).await } else { api.get(&path).await };
        assert_eq!((a.status, a.error_type()), (404, "not_found"), "{path}: {}", a.text);
        assert!(a.body["error"]["message"].as_str().unwrap().contains(&unknown.to_string()), "{}", a.text);
    }
    for path in ["/v1/keys/nope/circuit", "/v1/keys/usr_01JDQ7ABCDEFGHJKMNPQRSTVWX/circuit"] {
        let a = api.get(path).await;
        assert_eq!((a.status, a.error_type()), (400, "invalid_request"), "{path}: {}", a.text);
        assert_eq!(a.body["error"]["field"], "key_id");
        let a = api.post(&format!("{path}/reset"), json!({})).await;
        assert_eq!((a.status, a.error_type()), (400, "invalid_request"), "{path}: {}", a.text);
    }
    assert_eq!(circuit_events(&api, unknown).await.len(), 1, "nothing was appended");
    let a = api.send(reqwest::Method::GET, "/v1/circuits", None, None).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let a = api.send(reqwest::Method::GET, "/v1/pricing", None, None).await;
    assert_eq!(a.status, 401, "{}", a.text);
    let doc = api.send(reqwest::Method::GET, "/openapi.json", None, None).await;
    for path in ["/v1/keys/{key_id}/circuit", "/v1/keys/{key_id}/circuit/reset", "/v1/circuits", "/v1/pricing"] {
        assert!(doc.body["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc.body["paths"]["/v1/pricing"]["put"].is_object());
    api.finish().await;
}

fn price(model: &str, input: &str) -> Value {
    json!({
        "model": model,
        "input_per_mtok": input,
        "output_per_mtok": "15.00",
        "cache_write_per_mtok": "3.75",
        "cache_read_per_mtok": "0.30",
    })
}

#[tokio::test]
async fn pricing_starts_from_the_configuration_and_each_change_is_a_new_version() {
    let api = AdminApi::start("ops_pricing").await;
    let a = api.get("/v1/pricing").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["version"], 0);
    assert!(a.body["effective_from"].is_null());
    let configured: Vec<Price> = api.settings.pricing.models.iter().map(Price::from).collect();
    assert_eq!(a.body["models"], serde_json::to_value(&configured).unwrap());
    assert_eq!(a.body["models"][0]["input_per_mtok"], "5.00", "prices are decimal strings");
    assert_eq!(a.header("etag"), Some("\"0\""));

    let mut eu = price("claude-sonnet-4", "3.30");
    eu["provider"] = json!("bedrock");
    eu["region"] = json!("eu-central-1");
    let list = json!({ "models": [price("claude-sonnet-4", "3.00"), eu, price("claude-haiku-4-5", "1")] });
    let a = api.put("/v1/pricing", list.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["version"], 1);
    assert!(a.body["effective_from"].is_string());
    assert_eq!(a.body["models"].as_array().unwrap().len(), 3);
    assert_eq!(a.body["models"][1]["provider"], "bedrock");
    assert_eq!(a.body["models"][1]["region"], "eu-central-1");
    assert_eq!(a.body["models"][2]["input_per_mtok"], "1");
    let etag = a.header("etag").unwrap().to_owned();

    let events = pricing_events(&api).await;
    assert_eq!(events.len(), 1);
    assert_eq!(etag, format!("\"{}\"", events[0].0));
    let Event::PricingSet(set) = &events[0].1.event else { unreachable!() };
    assert_eq!(set.version, 1);
    assert_eq!(set.models.len(), 3);
    assert_eq!(set.models[1].input_per_mtok, "3.30".parse().unwrap());
    assert_eq!(set.models[1].region.as_deref(), Some("eu-central-1"));
    assert!(matches!(&events[0].1.actor, Actor::Admin { username, .. } if username == ADMIN_USER));

    let got = api.get("/v1/pricing").await;
    assert_eq!(got.body, a.body, "GET shows what PUT answered");

    // The list in force again: nothing changes.
    let a = api.put("/v1/pricing", list).await;
    assert_eq!((a.status, a.body["version"].clone()), (200, json!(1)), "{}", a.text);
    assert_eq!(pricing_events(&api).await.len(), 1);

    // A stale If-Match is refused; the current one is accepted.
    let next = json!({ "models": [price("claude-sonnet-4", "2.50")] });
    let a = with_if_match(&api, reqwest::Method::PUT, "/v1/pricing", "\"1\"", Some(next.clone())).await;
    assert_eq!((a.status, a.error_type()), (409, "conflict"), "{}", a.text);
    let a = with_if_match(&api, reqwest::Method::PUT, "/v1/pricing", &etag, Some(next)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["version"], 2);
    assert_eq!(a.body["models"][0]["input_per_mtok"], "2.50");
    let events = pricing_events(&api).await;
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[1].1.event, Event::PricingSet(s) if s.version == 2));
    api.finish().await;
}

#[tokio::test]
async fn invalid_price_lists_are_refused_naming_the_field() {
    let api = AdminApi::start("ops_badprices").await;
    let with = |field: &str, value: Value| {
        let mut p = price("claude-sonnet-4", "3.00");
        p[field] = value;
        json!({ "models": [p] })
    };
    let many: Vec<Value> = (0..201).map(|i| price(&format!("claude-{i}"), "1")).collect();
    let cases = [
        (json!({ "models": [] }), 422, "models"),
        (json!({ "models": many }), 422, "models"),
        (json!({}), 400, "body"),
        (json!({ "models": [price("a", "1")], "extra": 1 }), 400, "extra"),
        (with("input_per_mtok", json!(3.0)), 400, "models[0].input_per_mtok"),
        (with("input_per_mtok", json!("three")), 400, "models[0].input_per_mtok"),
        (with("output_per_mtok", json!("-0.01")), 400, "models[0].output_per_mtok"),
        (with("cache_read_per_mtok", json!("10000.01")), 422, "models[0].cache_read_per_mtok"),
        (with("model", json!("")), 422, "models[0].model"),
        (with("model", json!("claude sonnet")), 422, "models[0].model"),
        (with("provider", json!("none")), 422, "models[0].provider"),
        (with("provider", json!("azure")), 400, "models[0].provider"),
        (with("region", json!("eu central")), 422, "models[0].region"),
        (with("colour", json!("red")), 400, "models[0].colour"),
        (json!({ "models": [price("claude-sonnet-4", "3"), price("claude-sonnet-4", "4")] }), 422, "models[1].model"),
    ];
    for (body, status, field) in cases {
        let a = api.put("/v1/pricing", body.clone()).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        assert_eq!(a.body["error"]["field"], field, "{body}: {}", a.text);
    }
    let a = api.get("/v1/pricing").await;
    assert_eq!(a.body["version"], 0);
    assert!(pricing_events(&api).await.is_empty(), "no refused list was appended");
    api.finish().await;
}

const BEDROCK_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS10ZXN0LWtleS0wMDAx";
const MESSAGE: &str = r#"{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;

/// Sends one message through the proxy; its `x-ccp-provider` and `x-ccp-fallback-reason`.
async fn through_proxy(url: &str, key: &str) -> (Option<String>, Option<String>) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/ak/{key}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (header("x-ccp-provider"), header("x-ccp-fallback-reason"))
}

/// Polls the proxy until `done` holds for an answer, up to five seconds.
async fn until(url: &str, key: &str, what: &str, done: impl Fn(&(Option<String>, Option<String>)) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = through_proxy(url, key).await;
        if done(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_running_proxy_uses_anthropic_again_after_a_reset() {
    let proxy_bin = ccp_tests::system::workspace_bin("ccp-proxy", "ccp-proxy");
    let anthropic = ccp_tests::fake_anthropic::FakeAnthropic::start().unwrap();
    let bedrock = ccp_tests::fake_bedrock::FakeBedrock::start(&[BEDROCK_KEY]).unwrap();
    let api = AdminApi::start("ops_proxy").await;
    let user = api.create_user("dana").await;
    let (key_id, key) = api.issue_key(&user).await;
    let a = api.put(&format!("/v1/keys/{key_id}/bedrock-key"), json!({ "api_key": BEDROCK_KEY })).await;
    assert_eq!(a.status, 200, "{}", a.text);

    let port = ccp_tests::free_port();
    let mut env = ccp_tests::service_env(&api.settings);
    env.extend([
        ("CCP__PROXY__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("CCP__PROXY__ANTHROPIC_BASE_URL".to_owned(), anthropic.url()),
        ("CCP__PROXY__BEDROCK_ENDPOINT_URL".to_owned(), bedrock.url()),
        ("CCP__SECRETS__MASTER_KEY".to_owned(), MASTER_KEY.to_owned()),
        ("CCP__SECRETS__MASTER_KEY_ID".to_owned(), "local-test".to_owned()),
        (
            "CCP__PROXY__SPOOL_DIR".to_owned(),
            std::env::temp_dir().join(format!("ccp-spool-ops-{}", ulid::Ulid::new())).display().to_string(),
        ),
    ]);
    let proxy = ccp_tests::Service::spawn(Path::new(&proxy_bin), &[], &env).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    if let Err(e) = ccp_tests::wait_http_ok(&format!("{url}/ready"), Duration::from_secs(20)).await {
        panic!("{e}\n{}", proxy.log_text());
    }
    until(&url, &key, "the proxy answers from Anthropic", |(p, _)| p.as_deref() == Some("anthropic")).await;

    // The circuit opens (as another replica would announce it): the proxy skips Anthropic.
    opened(&api, key_id.parse().unwrap(), TripReason::Overloaded).await;
    until(&url, &key, "the proxy applies the open circuit", |(p, r)| {
        p.as_deref() == Some("bedrock") && r.as_deref() == Some("circuit_open")
    })
    .await;
    anthropic.clear();
    let (provider, _) = through_proxy(&url, &key).await;
    assert_eq!(provider.as_deref(), Some("bedrock"));
    assert!(anthropic.requests().is_empty(), "Anthropic is skipped while the circuit is open");

    // The admin resets it: the proxy goes to Anthropic again, long before retry_at.
    let a = api.post(&format!("/v1/keys/{key_id}/circuit/reset"), json!({})).await;
    assert_eq!((a.status, a.body["state"].clone()), (200, json!("closed")), "{}", a.text);
    until(&url, &key, "the proxy applies the reset", |(p, r)| p.as_deref() == Some("anthropic") && r.is_none()).await;
    assert!(!anthropic.requests().is_empty());
    drop(proxy);
    api.finish().await;
}

/// Failover readiness: a Bedrock API key is checked with calls that cost nothing when it is
/// registered and on demand; the verdict names a refused key and a model the account has not
/// enabled, is recorded as an audited event, and shows on the key.
#[tokio::test]
async fn bedrock_keys_are_checked_for_failover_readiness() {
    use ccp_tests::fake_bedrock::FakeBedrock;
    let fake = FakeBedrock::start(&[BEDROCK_KEY]).unwrap();
    let url = fake.url();
    let api = AdminApi::start_with("ops_readiness", &[("CCP__PROXY__BEDROCK_ENDPOINT_URL", url.as_str())]).await;
    let user = api.create_user("rita").await;
    let (key, _) = api.issue_key(&user).await;
    let key_id: AccessKeyId = key.parse().unwrap();

    // No Bedrock key: nothing to check.
    let a = api.post(&format!("/v1/keys/{key}/bedrock-key/check"), json!({})).await;
    assert_eq!((a.status, a.error_type()), (409, "conflict"), "{}", a.text);

    // Registered: checked at once, in the background.
    let a = api.put(&format!("/v1/keys/{key}/bedrock-key"), json!({ "api_key": BEDROCK_KEY })).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let deadline = Instant::now() + Duration::from_secs(10);
    let readiness = loop {
        let k = api.get(&format!("/v1/keys/{key}")).await;
        if !k.body["bedrock_key"]["readiness"].is_null() {
            break k.body["bedrock_key"]["readiness"].clone();
        }
        assert!(Instant::now() < deadline, "no readiness recorded: {}", k.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(readiness["readiness"], "ready", "{readiness}");
    assert_eq!(readiness["listing"], "ready", "{readiness}");
    let models: Vec<&str> =
        readiness["models"].as_array().unwrap().iter().map(|m| m["model_id"].as_str().unwrap()).collect();
    assert!(models.contains(&"global.anthropic.claude-sonnet-4-5-20250929-v1:0"), "{models:?}");
    let counted = fake.requests().iter().filter(|r| r.path.ends_with("/count-tokens")).count();
    assert_eq!(counted, models.len(), "one CountTokens per model");
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.path.ends_with("/invoke") && !r.path.ends_with("/invoke-with-response-stream")),
        "nothing billable"
    );

    // The account has not enabled Sonnet 4.5: named on demand.
    fake.set_disabled_models(&["claude-sonnet-4-5-20250929"]);
    let a = api.post(&format!("/v1/keys/{key}/bedrock-key/check"), json!({})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let r = &a.body["bedrock_key"]["readiness"];
    assert_eq!(r["readiness"], "model_not_enabled", "{r}");
    let failing: Vec<&str> = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["readiness"] != "ready")
        .map(|m| m["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["global.anthropic.claude-sonnet-4-5-20250929-v1:0"]);

    // A key Bedrock does not know: refused.
    let a = api.put(&format!("/v1/keys/{key}/bedrock-key"), json!({ "api_key": "ABSKbm90LWEtcmVhbC1rZXk=" })).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = api.post(&format!("/v1/keys/{key}/bedrock-key/check"), json!({})).await;
    assert_eq!(a.body["bedrock_key"]["readiness"]["readiness"], "key_refused", "{}", a.text);

    // Every recorded check is an event of the key, with its cause; no secret in any of them.
    let checks: Vec<_> = api
        .log
        .read_all(StreamKind::Admin)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e.event {
            Event::BedrockKeyChecked(c) if c.key_id == key_id => Some(c),
            _ => None,
        })
        .collect();
    let causes: Vec<_> = checks.iter().map(|c| c.cause).collect();
    use ccp_schemas::events::CheckCause;
    assert!(causes.contains(&CheckCause::Registered) && causes.contains(&CheckCause::OnDemand), "{causes:?}");
    assert_eq!(checks.last().unwrap().readiness, ccp_schemas::events::BedrockReadiness::KeyRefused);
    api.finish().await;
}

/// A key's Bedrock region becomes part of Bedrock's host name: only an AWS region is accepted.
#[tokio::test]
async fn a_bedrock_region_must_be_an_aws_region() {
    let api = AdminApi::start("ops_region").await;
    let user = api.create_user("ruth").await;
    let (key, _) = api.issue_key(&user).await;
    for bad in ["evil.com/", "us-east-1.evil.com", "us_east_1"] {
        let a = api.put(&format!("/v1/keys/{key}/bedrock"), json!({ "region": bad })).await;
        assert_eq!((a.status, a.body["error"]["field"].as_str()), (422, Some("region")), "{bad}: {}", a.text);
    }
    let a = api.put(&format!("/v1/keys/{key}/bedrock"), json!({ "region": "eu-central-1" })).await;
    assert_eq!(a.status, 200, "{}", a.text);
    api.finish().await;
}
