//! Plan-limit awareness: the proxy reads Anthropic's rate-limit headers (the unified
//! subscription ones, the API's request/token limits and `retry-after` on a 429) and every usage
//! event of that key carries the latest state — also when Bedrock answered — against the fake
//! Anthropic and the fake Bedrock, with real NATS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod common;

use ccp_schemas::events::{FallbackReason, Provider, RequestCompleted};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_tests::fake_anthropic::{Scenario, ScenarioName};

use common::{env, start, wait_applied_at, Env, BEDROCK_KEY};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

impl Env {
    /// A developer (with a Bedrock API key if asked), known to the proxy.
    async fn dev(&self, name: &str, bedrock: bool) -> (UserId, AccessKeyId, String) {
        let (user_id, key_id, key, mut last) = self.log.user_with_key_at(name).await;
        if bedrock {
            last = self.log.register_bedrock_key(user_id, key_id, &self.master, BEDROCK_KEY).await;
        }
        wait_applied_at(&self.url, last).await;
        (user_id, key_id, key.expose().to_owned())
    }

    /// Sends one request answered by `scenario`; its status and usage event.
    async fn call(&self, key: &str, scenario: Scenario) -> (u16, RequestCompleted) {
        self.call_at(&self.url, key, scenario).await
    }

    /// [`Self::call`] through the proxy at `url`.
    async fn call_at(&self, url: &str, key: &str, scenario: Scenario) -> (u16, RequestCompleted) {
        self.anthropic.enqueue(scenario);
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/messages?beta=true"))
            .header("x-ccp-access-key", key)
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-test")
            .body(BODY)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let id = resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned();
        let _ = resp.bytes().await.unwrap();
        (status, self.log.wait_request(&id, Duration::from_secs(10)).await)
    }
}

/// Waits until the proxy at `url` has applied the admin stream up to `seq`.
fn unified(status: &str, five_hour: &str, reset: i64) -> Scenario {
    Scenario::new(ScenarioName::Auto)
        .with_header("anthropic-ratelimit-unified-status", status)
        .with_header("anthropic-ratelimit-unified-reset", reset.to_string())
        .with_header("anthropic-ratelimit-unified-representative-claim", "five_hour")
        .with_header("anthropic-ratelimit-unified-5h-status", status)
        .with_header("anthropic-ratelimit-unified-5h-reset", reset.to_string())
        .with_header("anthropic-ratelimit-unified-5h-utilization", five_hour)
        .with_header("anthropic-ratelimit-unified-7d-status", "allowed")
        .with_header("anthropic-ratelimit-unified-7d-utilization", "0.31")
        .with_header("anthropic-ratelimit-unified-7d_opus-utilization", "0.07")
}

#[actix_web::test]
async fn every_usage_event_of_a_key_carries_its_latest_plan_limit_state() {
    let e = env("rl_carry", |_| {}).await;
    let (_, dana_key_id, dana) = e.dev("dana", true).await;
    let (_, _, fox) = e.dev("fox", true).await;
    let reset = (chrono::Utc::now().timestamp() / 3600 + 3) * 3600;

    // A warning from the subscription: the state is in this request's own event.
    let (status, ev) = e.call(&dana, unified("allowed_warning", "0.91", reset)).await;
    assert_eq!(status, 200);
    assert_eq!(ev.key_id, Some(dana_key_id));
    let rl = ev.rate_limit.expect("the rate-limit state is in the event");
    assert_eq!(rl.status, 200);
    let u = rl.unified.as_ref().unwrap();
    assert_eq!(u.status.as_deref(), Some("allowed_warning"));
    assert_eq!(u.reset.unwrap().timestamp(), reset);
    assert_eq!(u.representative_claim.as_deref(), Some("five_hour"));
    let five = u.five_hour.as_ref().unwrap();
    assert_eq!((five.utilization, five.reset.unwrap().timestamp()), (Some(0.91), reset));
    assert_eq!(u.seven_day.as_ref().unwrap().utilization, Some(0.31));
    assert_eq!(rl.other.get("unified-7d_opus-utilization").map(String::as_str), Some("0.07"), "unknown kept");
    assert_eq!(rl.requests.unwrap().limit, Some(4000), "the API limits are read too");
    let first_seen = rl.observed_at;

    // Another developer never sees Dana's state.
    let (_, fox_ev) = e.call(&fox, Scenario::new(ScenarioName::Auto)).await;
    assert!(fox_ev.rate_limit.as_ref().unwrap().unified.is_none(), "{:?}", fox_ev.rate_limit);

    // The subscription is used up: Anthropic answers 429 with the unified headers and
    // retry-after; Bedrock answers, and the event says why, with the state that caused it.
    let (status, ev) = e.call(&dana, Scenario::new(ScenarioName::UsageLimit)).await;
    assert_eq!(status, 200);
    assert_eq!((ev.provider, ev.fallback_reason), (Provider::Bedrock, Some(FallbackReason::UsageLimit)));
    let rl = ev.rate_limit.expect("a failed-over request carries the state");
    assert_eq!(rl.status, 429);
    assert!(rl.observed_at >= first_seen);
    assert!(rl.retry_after_secs.is_some_and(|s| (1..=3600).contains(&s)), "{:?}", rl.retry_after_secs);
    let u = rl.unified.unwrap();
    assert_eq!(u.status.as_deref(), Some("rejected"));
    assert_eq!(u.five_hour.as_ref().unwrap().utilization, Some(1.0));
    let hour = (chrono::Utc::now().timestamp() / 3600 + 1) * 3600;
    assert!(u.reset.is_some_and(|r| (r.timestamp() - hour).abs() <= 3600), "{:?}", u.reset);
    assert_eq!(u.overage_disabled_reason.as_deref(), Some("org_level_disabled"));
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

#[actix_web::test]
async fn a_rate_limited_answer_without_fallback_records_retry_after() {
    let e = env("rl_retry", |_| {}).await;
    let (_, _, key) = e.dev("mulder", false).await;
    let (status, ev) = e.call(&key, Scenario::new(ScenarioName::RateLimit).with_retry_after("42")).await;
    assert_eq!(status, 503, "no Bedrock key: the proxy explains");
    let rl = ev.rate_limit.expect("state recorded from the 429");
    assert_eq!((rl.status, rl.retry_after_secs), (429, Some(42)));
    assert_eq!(rl.requests.unwrap().remaining, Some(0));
    assert!(rl.unified.is_none());
    // The next answer's headers replace the state.
    let (status, ev) = e.call(&key, Scenario::new(ScenarioName::Auto)).await;
    assert_eq!(status, 200);
    let rl = ev.rate_limit.unwrap();
    assert_eq!((rl.status, rl.retry_after_secs), (200, None));
    assert!(rl.requests.unwrap().remaining.is_some_and(|n| n > 0));
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

#[actix_web::test]
async fn a_replica_that_never_asked_anthropic_carries_the_state_another_replica_saw() {
    let e = env("rl_replicas", |_| {}).await;
    let (user_id, _, key) = e.dev("scully", true).await;
    let mut second = e.settings.clone();
    second.proxy.spool_dir = std::env::temp_dir().join(format!("ccp-spool-b-{}", second.nats.prefix));
    let other = start(second).await;
    let reset = (chrono::Utc::now().timestamp() / 3600 + 4) * 3600;
    // Replica A hears from Anthropic; the user is then routed to Bedrock only.
    let (status, seen) = e.call(&key, unified("allowed_warning", "0.88", reset)).await;
    assert_eq!(status, 200);
    assert!(seen.rate_limit.as_ref().is_some_and(|r| r.unified.is_some()));
    let seq = e.log.set_routing(user_id, ccp_schemas::events::RoutingStrategy::BedrockOnly).await;
    wait_applied_at(&other, seq).await;
    // Replica B never talks to Anthropic for this key; its events carry A's state once A has
    // put it into the shared rate-limit bucket and B's watch has delivered it (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ev) = e.call_at(&other, &key, Scenario::new(ScenarioName::Auto)).await;
        let carried = ev.rate_limit.as_ref().and_then(|r| r.unified.as_ref()).and_then(|u| u.five_hour.clone());
        if status == 200 && ev.provider == Provider::Bedrock && carried.is_some() {
            let five = carried.unwrap();
            assert_eq!((five.utilization, five.reset.map(|r| r.timestamp())), (Some(0.88), Some(reset)));
            assert_eq!(ev.rate_limit.unwrap().observed_at, seen.rate_limit.unwrap().observed_at);
            break;
        }
        assert!(Instant::now() < deadline, "replica B never carried the state: {ev:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}
