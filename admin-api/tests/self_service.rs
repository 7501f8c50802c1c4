#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Developer self-service (`GET /v1/self`, the `/me` page) against a real `ccp-admin` on real
//! NATS and ClickHouse: users and keys are made through the API, usage events (with the
//! Plan-limit state the proxy records from Anthropic's headers) go through the real log and the
//! real projector code. Each developer sees exactly their own figures — equal to what the admin
//! usage and budget APIs answer for them — and never another's; refused keys see nothing.

mod common;

use std::time::Duration;

use ccp_projector::analytics::{Projection, Requests};
use ccp_schemas::events::{Event, FallbackReason, Provider, RateLimitState, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, wait_rollups};
use chrono::{DateTime, Utc};
use common::{AdminApi, Answer};
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{json, Value};

struct Stack {
    api: AdminApi,
    requests: Projection<Requests>,
    ch: clickhouse::Client,
}

impl Stack {
    async fn start(label: &str) -> Self {
        let api = AdminApi::start(label).await;
        ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
        let ch = ccp_runtime::migrate::server_client(&api.settings.clickhouse)
            .unwrap()
            .with_database(&api.settings.clickhouse.database);
        let requests =
            Projection::<Requests>::open(&api.log.js, &api.log.ns, ch.clone(), 1000, Duration::from_millis(100))
                .await
                .unwrap();
        Self { api, requests, ch }
    }

    /// Appends a usage event as the proxy would; its request id.
    async fn publish(&self, event: RequestCompleted) -> String {
        let id = event.request_id.to_string();
        let envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: "replica-1".into() });
        self.api.log.publish(&envelope).await;
        id
    }

    /// Projects everything so far and waits until the rollups show every request.
    async fn project(&mut self) {
        while self.requests.process_next_batch().await.unwrap().received > 0 {}
        let raw: u64 = self.ch.query("SELECT count() FROM requests").fetch_one().await.unwrap();
        wait_rollups(&self.api.settings.clickhouse.database, raw).await;
    }

    /// `GET /v1/self` with the key in `x-ccp-access-key`.
    async fn me(&self, key: &str, query: &str) -> Answer {
        let resp = self
            .api
            .http
            .get(format!("{}/v1/self{query}", self.api.url))
            .header("x-ccp-access-key", key)
            .send()
            .await
            .unwrap();
        AdminApi::answer(resp).await
    }

    async fn admin_get(&self, path: &str) -> Value {
        let a = self.api.get(path).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        a.body
    }

    async fn finish(self) {
        let db = self.api.settings.clickhouse.database.clone();
        ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
        self.api.finish().await;
    }
}

/// A usage event of `key` (of `user`), `n` scaling its tokens and cost.
fn usage(user: &str, key: &str, model: &str, n: u64) -> RequestCompleted {
    RequestCompleted {
        requested_model: Some(model.into()),
        response_model: Some(model.into()),
        usage: TokenUsage {
            input_tokens: n * 100,
            output_tokens: n * 10,
            cache_read_input_tokens: n * 1000,
            cache_creation_input_tokens: n,
        },
        cost_usd: Some(Decimal::new(i64::try_from(n * 1_234_567).unwrap(), 9)),
        latency_ms: 900,
        ttfb_ms: Some(200),
        client_version: Some("claude-cli/2.1.332".into()),
        ..completed(user.parse::<UserId>().unwrap(), key.parse::<AccessKeyId>().unwrap())
    }
}

/// The state the proxy records from Anthropic's headers.
fn plan_state(status: u16, unified: &str, five_hour: &str, reset: i64, at: DateTime<Utc>) -> RateLimitState {
    let reset = reset.to_string();
    let headers = [
        ("anthropic-ratelimit-unified-status", unified),
        ("anthropic-ratelimit-unified-reset", reset.as_str()),
        ("anthropic-ratelimit-unified-5h-status", unified),
        ("anthropic-ratelimit-unified-5h-reset", reset.as_str()),
        ("anthropic-ratelimit-unified-5h-utilization", five_hour),
        ("retry-after", "600"),
    ];
    RateLimitState::from_headers(headers.iter().map(|(n, v)| (*n, v.as_bytes())), status, at).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn each_developer_sees_exactly_their_own_figures_as_the_admin_api_reports_them() {
    let mut s = Stack::start("selfsvc").await;
    let dana = s.api.create_user("Dana Scully").await;
    let fox = s.api.create_user("Fox Mulder").await;
    let budget = s.api.put(&format!("/v1/users/{dana}/budget"), json!({"monthly_limit_usd": "1.5"})).await;
    assert_eq!(budget.status, 200, "{}", budget.text);
    let (dana_k1, dana_key1) = s.api.issue_key(&dana).await;
    let (dana_k2, dana_key2) = s.api.issue_key(&dana).await;
    let (fox_k, fox_key) = s.api.issue_key(&fox).await;

    let now = Utc::now();
    let reset = (now.timestamp() / 3600 + 2) * 3600;
    let mut dana_ids = vec![
        s.publish(usage(&dana, &dana_k1, "claude-sonnet-4-5-20250929", 1)).await,
        s.publish(usage(&dana, &dana_k1, "claude-sonnet-4-5-20250929", 2)).await,
        s.publish(usage(&dana, &dana_k2, "claude-haiku-4-5", 3)).await,
    ];
    // Dana's subscription ran out: failed over to Bedrock, the event carrying the 429's state.
    let mut failover = usage(&dana, &dana_k1, "claude-sonnet-4-5-20250929", 4);
    failover.provider = Provider::Bedrock;
    failover.fallback = true;
    failover.fallback_reason = Some(FallbackReason::UsageLimit);
    failover.rate_limit = Some(plan_state(429, "rejected", "1.0", reset, now));
    let failover_id = s.publish(failover).await;
    dana_ids.push(failover_id.clone());
    // Her other key's latest event holds an older state: the newest one wins.
    let mut older = usage(&dana, &dana_k2, "claude-haiku-4-5", 1);
    older.rate_limit = Some(plan_state(200, "allowed", "0.2", reset, now - chrono::Duration::minutes(5)));
    dana_ids.push(s.publish(older).await);
    let mut fox_ids = Vec::new();
    for n in [5, 6] {
        let mut e = usage(&fox, &fox_k, "claude-opus-4-5", n);
        e.rate_limit = Some(plan_state(200, "allowed", "0.1", reset + 3600, now));
        fox_ids.push(s.publish(e).await);
    }
    s.project().await;

    for (user, key, own, other, own_keys) in [
        (&dana, &dana_key1, &dana_ids, &fox_ids, vec![dana_k1.clone(), dana_k2.clone()]),
        (&fox, &fox_key, &fox_ids, &dana_ids, vec![fox_k.clone()]),
    ] {
        let a = s.me(key, "?tz=UTC").await;
        assert_eq!(a.status, 200, "{}\n{}", a.text, s.api.service.log_text());
        assert_eq!(a.header("cache-control"), Some("no-store"));
        let me = a.body;
        assert_eq!(me["user"]["user_id"], user.as_str());
        // The same figures as the admin API's, for this user only.
        for (field, preset, group_by) in [
            ("today", "today", "model,provider"),
            ("this_month", "this_month", "model,provider"),
            ("this_month_by_key", "this_month", "key"),
        ] {
            let admin =
                s.admin_get(&format!("/v1/usage?preset={preset}&group_by={group_by}&user_id={user}&tz=UTC")).await;
            assert_eq!(me[field]["rows"], admin["rows"], "{field} of {user}");
            assert_eq!(me[field]["totals"], admin["totals"], "{field} of {user}");
            assert_eq!(me[field]["totals"]["requests"], own.len(), "{field} of {user}");
        }
        let admin_budget = s.admin_get(&format!("/v1/users/{user}/budget")).await;
        assert_eq!(me["budget"], admin_budget);
        let mut listed_keys: Vec<String> =
            me["keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap().to_owned()).collect();
        listed_keys.sort();
        let mut expected_keys = own_keys.clone();
        expected_keys.sort();
        assert_eq!(listed_keys, expected_keys);
        let mut recent = ids(&me["recent_requests"]);
        recent.sort();
        let mut expected = own.clone();
        expected.sort();
        assert_eq!(recent, expected, "exactly their own requests");
        assert!(other.iter().all(|id| !a.text.contains(id.as_str())), "another developer's request is visible");
        assert!(!a.text.contains(key.as_str()), "the access key is echoed");
    }

    // Dana's Plan limit, failovers and budget in detail.
    let me = s.me(&dana_key1, "?tz=UTC&recent=2").await.body;
    assert_eq!(me["recent_requests"].as_array().unwrap().len(), 2);
    assert_eq!(me["plan_limit"]["key_id"], dana_k1.as_str(), "the newest state of any of her keys");
    let state = &me["plan_limit"]["state"];
    assert_eq!(state["status"], 429);
    assert_eq!(state["retry_after_secs"], 600);
    assert_eq!(state["unified"]["status"], "rejected");
    let reset_at = DateTime::<Utc>::from_timestamp(reset, 0).unwrap();
    let shown: DateTime<Utc> = state["unified"]["reset"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, reset_at, "the reset time");
    assert_eq!(state["unified"]["five_hour"]["utilization"], 1.0);
    assert_eq!(me["failovers"]["this_month"], 1);
    assert_eq!(ids(&me["failovers"]["recent"]), vec![failover_id.clone()]);
    assert_eq!(me["failovers"]["recent"][0]["fallback_reason"], "usage_limit");
    assert_eq!(me["budget"]["limit_usd"], "1.5");
    let cost: Decimal = (1..=4).chain([1]).map(|n| Decimal::new(n * 1_234_567, 9)).sum();
    assert_eq!(me["budget"]["spent_usd"], cost.normalize().to_string());
    let fox_me = s.me(&fox_key, "").await.body;
    assert_eq!(fox_me["plan_limit"]["state"]["unified"]["five_hour"]["utilization"], 0.1);
    assert_eq!(fox_me["failovers"]["this_month"], 0);

    // The bearer form works the same.
    let bearer = s.api.send(Method::GET, "/v1/self?tz=UTC", Some(&dana_key2), None).await;
    assert_eq!(bearer.status, 200, "{}", bearer.text);
    assert_eq!(bearer.body["this_month"]["totals"], me["this_month"]["totals"]);

    // Revoked, unknown and malformed keys, no key and an admin session: 401, nothing shown,
    // the same message whether the key existed or not.
    let revoked = s.api.post(&format!("/v1/keys/{dana_k2}/revoke"), json!({})).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let gone = s.me(&dana_key2, "").await;
    assert_eq!((gone.status, gone.error_type()), (401, "unauthenticated"), "{}", gone.text);
    assert!(gone.body.get("user").is_none() && !gone.text.contains(&dana));
    let unknown = s.me(AccessKey::generate().unwrap().expose(), "").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body["error"]["message"], gone.body["error"]["message"], "no hint that the key existed");
    assert_eq!(s.me("ak_not-a-key", "").await.status, 401);
    let none = s.api.send(Method::GET, "/v1/self", None, None).await;
    assert_eq!((none.status, none.error_type()), (401, "unauthenticated"));
    let admin = s.api.send(Method::GET, "/v1/self", Some(&s.api.token), None).await;
    assert_eq!(admin.status, 401, "an admin session is not a developer's key");
    // Bad input is a 400 naming the parameter.
    let bad = s.me(&dana_key1, "?recent=0").await;
    assert_eq!((bad.status, bad.body["error"]["field"].as_str()), (400, Some("recent")));
    let bad = s.me(&dana_key1, "?tz=Mars/Olympus").await;
    assert_eq!((bad.status, bad.body["error"]["field"].as_str()), (400, Some("tz")));
    let bad = s.me(&dana_key1, "?user_id=usr_01JDQ70000000000000000000A").await;
    assert_eq!(bad.status, 400, "a developer cannot ask for another user");

    // Failed attempts with one key are throttled.
    let stolen = AccessKey::generate().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(s.me(stolen.expose(), "").await.status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");

    let log = s.api.service.log_text();
    for key in [&dana_key1, &dana_key2, &fox_key] {
        assert!(!log.contains(key.as_str()), "an access key is in the service log");
    }
    assert!(!log.contains("panicked"));
    s.finish().await;
}

#[tokio::test]
async fn the_me_page_is_served_with_the_strict_policy() {
    let api = AdminApi::start("selfpage").await;
    let page = api.send(Method::GET, "/me", None, None).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert!(page.text.contains("/dashboard/me.js"));
    let js = api.send(Method::GET, "/dashboard/me.js", None, None).await;
    assert_eq!(js.status, 200);
    assert!(js.text.contains("/v1/self") && js.text.contains("x-ccp-access-key"));
    let doc = api.send(Method::GET, "/openapi.json", None, None).await.body;
    assert!(doc["paths"].get("/me").is_none(), "the page is not part of the API");
    assert_eq!(doc["paths"]["/v1/self"]["get"]["security"], json!([{"access_key": []}]));
    api.finish().await;
}
