#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Three proxy replicas behind a local nginx (round robin), on one event log: what one replica
//! learns, every replica applies, within the documented bounds — measured and printed (the
//! figures go to docs/benchmarks.md; the test asserts bounds, not speeds):
//!
//! - a revoked key is refused by every replica (the time each took is printed);
//! - a circuit opened by one replica (three overloaded answers) sends that key straight to
//!   Bedrock on every replica, Anthropic untouched;
//! - a monthly budget spent by parallel requests spread over the replicas is then refused by every
//!   replica, and the overshoot at the edge (spend beyond the budget by requests admitted while
//!   the replicas' totals were in flight) is printed, and bounded: no replica admits more than a
//!   budget's worth of requests in flight.

use std::time::{Duration, Instant};

use ccp_tests::balancer::Balancer;
use ccp_tests::system::{Options, System, API_KEY};
use futures_util::future::join_all;
use serde_json::{json, Value};

const REPLICAS: usize = 3;
/// 100 000 input tokens of Claude Sonnet 4.5 at $3/MTok (and 10 output tokens at $15/MTok).
const REQUEST_USD: f64 = 0.300_15;

/// A request through `base`; with `usage`, the fake charges those tokens and the body is as large
/// as that many input tokens would be (about 4 bytes each), as a real one is — so the proxy's
/// admission estimate sees what it would see in production.
async fn send(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    usage: Option<&str>,
) -> (u16, Option<String>, Option<String>) {
    let input_tokens: usize = usage.and_then(|u| u.split(',').next()?.parse().ok()).unwrap_or(1);
    send_sized(http, base, key, usage, input_tokens).await
}

/// As `send`, with a body of about `body_tokens` input tokens whatever the fake charges: a small
/// body that costs much (a long cached prompt, say) is admitted on a small estimate.
async fn send_sized(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    usage: Option<&str>,
    body_tokens: usize,
) -> (u16, Option<String>, Option<String>) {
    let text = "word ".repeat(body_tokens * 4 / 5);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": text}]});
    let mut req = http
        .post(format!("{base}/ak/{key}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(body.to_string());
    if let Some(usage) = usage {
        req = req.header("x-fake-usage", usage);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (provider, reason) = (header("x-ccp-provider"), header("x-ccp-fallback-reason"));
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if ![200, 401, 429].contains(&status) {
        eprintln!("unexpected answer {status}: {body}");
    }
    (status, provider, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_a_balancer_agree_on_revocations_circuits_and_budgets() {
    let mut options = Options::new("replicas");
    options.proxies = REPLICAS;
    options.env.push(("CCP__BUDGETS__ENFORCE".into(), "all".into()));
    let sys = System::start(options).await;
    let urls: Vec<&str> = (0..REPLICAS).map(|i| sys.proxy_url(i)).collect();
    let nginx = Balancer::start(&urls).await;
    let http = reqwest::Client::new();

    // Everyone first: their keys and Bedrock keys reach every replica while the rest runs.
    let (_, key_id, key) = sys.developer("Revoked Rita").await;
    let (_, _, breaker_key) = sys.developer("Breaker Bo").await;
    let (user_id, _, budget_key) = sys.developer("Budget Bea").await;

    // Revocation: every replica refuses the key.
    assert_eq!(send(&http, &nginx.url, &key, None).await.0, 200);
    let revoked_at = Instant::now();
    sys.admin(reqwest::Method::POST, &format!("/v1/keys/{key_id}/revoke"), Some(json!({}))).await;
    let mut seen = Vec::new();
    for i in 0..REPLICAS {
        sys.wait_key_status(i, &key, |s| s == 401, "revocation").await;
        seen.push(revoked_at.elapsed());
    }
    eprintln!("revocation refused by every replica after: {seen:?} (from the admin API's answer)");
    assert_eq!(send(&http, &nginx.url, &key, None).await.0, 401);

    // A circuit opened by replica 0 is honoured by replicas 1 and 2.
    let key = breaker_key;
    sys.reset_fakes().await;
    sys.enqueue_anthropic(Value::Array((0..3).map(|_| json!({ "name": "overloaded" })).collect())).await;
    for _ in 0..3 {
        let (status, provider, reason) = send(&http, urls[0], &key, None).await;
        assert_eq!((status, provider.as_deref(), reason.as_deref()), (200, Some("bedrock"), Some("overloaded")));
    }
    let opened_at = Instant::now();
    sys.reset_fakes().await;
    let mut honoured = Vec::new();
    for (i, url) in urls.iter().enumerate().skip(1) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, provider, reason) = send(&http, url, &key, None).await;
            assert_eq!(status, 200);
            if reason.as_deref() == Some("circuit_open") {
                assert_eq!(provider.as_deref(), Some("bedrock"));
                honoured.push(opened_at.elapsed());
                break;
            }
            assert!(Instant::now() < deadline, "replica {i} never honoured the open circuit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sys.reset_fakes().await;
    for url in &urls[1..] {
        assert_eq!(send(&http, url, &key, None).await.2.as_deref(), Some("circuit_open"));
    }
    assert!(sys.anthropic_requests().await.is_empty(), "a replica asked Anthropic despite the open circuit");
    eprintln!("open circuit honoured by replicas 1 and 2 after: {honoured:?}");

    // A budget spent by parallel requests over all replicas: then refused everywhere.
    let key = budget_key;
    let budget = 1.0;
    sys.admin(reqwest::Method::PUT, &format!("/v1/users/{user_id}/budget"), Some(json!({ "monthly_limit_usd": "1" })))
        .await;
    for i in 0..REPLICAS {
        sys.wait_key_status(i, &key, |s| s == 200, "budget set").await;
    }
    let parallel = 12;
    let answers = join_all((0..parallel).map(|_| send(&http, &nginx.url, &key, Some("100000,10,0,0")))).await;
    let admitted = answers.iter().filter(|a| a.0 == 200).count();
    let refused = answers.iter().filter(|a| a.0 == 429).count();
    assert_eq!(admitted + refused, parallel, "{answers:?}");
    // The small requests of `developer`/`wait_key_status` cost next to nothing.
    let spent = admitted as f64 * REQUEST_USD;
    let overshoot = (spent - budget).max(0.0);
    eprintln!(
        "budget $1 with {parallel} parallel $0.30 requests over {REPLICAS} replicas: {admitted} admitted, \
         {refused} refused, spent ${spent:.2}, overshoot ${overshoot:.2}"
    );
    assert!(admitted >= 1, "nothing was admitted");
    // Each replica admits while its own in-flight reservations (≈ the body's price) and the
    // shared totals fit the budget: before the totals are shared, each can admit a budget's
    // worth — the bound on the overshoot is (replicas − 1) budgets.
    let per_replica = (budget / REQUEST_USD).floor() as usize;
    assert!(admitted <= REPLICAS * per_replica, "{admitted} admitted: more than {per_replica} per replica");
    // A burst that stayed under the budget (the replicas saw each other's totals in time, or the
    // balancer sent it to fewer replicas): spend the rest one request at a time. What is left may
    // be less than a whole request's estimate (3 × $0.30 of $1 leaves $0.10, and such a request
    // is refused up front), so these bodies are small and only the fake's usage is large: each is
    // admitted while anything is left, and its cost spends the rest.
    let mut spent = spent;
    for _ in 0..per_replica + 2 {
        if spent >= budget {
            break;
        }
        let (status, ..) = send_sized(&http, &nginx.url, &key, Some("100000,10,0,0"), 10).await;
        assert!(matches!(status, 200 | 429), "{status}");
        // A 429 here means a replica already counts the budget as spent.
        spent += if status == 200 { REQUEST_USD } else { budget };
    }
    // Afterwards every replica refuses: the totals reached all of them.
    for i in 0..REPLICAS {
        sys.wait_key_status(i, &key, |s| s == 429, "budget spent").await;
    }
    drop(nginx);
    sys.finish().await;
}
