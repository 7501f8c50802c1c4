//! Usage rollups (minute, hour, day) equal aggregates of the raw rows, and per-minute rollups
//! older than the retention are expired by dropping whole partitions while hours and days stay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_runtime::config::Settings;
use ccp_schemas::events::{Event, Provider, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, wait_requests, wait_rollups, Log};
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};
use rust_decimal::Decimal;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

#[derive(Debug, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
struct Agg {
    user_id: String,
    model: String,
    provider: String,
    requests: u64,
    errors: u64,
    input: u64,
    output: u64,
    cost: u64,
}

async fn aggregate(from: &str, requests_expr: &str) -> Vec<Agg> {
    clickhouse()
        .query(&format!(
            "SELECT user_id, model, provider, {requests_expr} AS requests, sum(errors) AS errors, \
             sum(input_tokens) AS input, sum(output_tokens) AS output, sum(cost_nanos) AS cost \
             FROM {from} GROUP BY user_id, model, provider ORDER BY user_id, model, provider"
        ))
        .fetch_all()
        .await
        .unwrap()
}

/// Starts the projector (`extra` added to its environment) and waits until it has projected
/// the `n` requests of the log, rollups included.
async fn project(settings: &Settings, n: u64, extra: &[(&str, &str)]) -> Service {
    let mut env = service_env(settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    let db = &settings.clickhouse.database;
    assert_eq!(wait_requests(db, n, Duration::from_secs(30)).await, n, "{}", projector.log_text());
    wait_rollups(db, n).await;
    projector
}

#[tokio::test]
async fn rollups_equal_the_raw_rows_and_old_minutes_expire() {
    let settings = test_settings("rollups");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let users = [UserId::new(), UserId::new(), UserId::new()];
    let key = AccessKeyId::new();
    let mut n = 0u64;
    for days_ago in [0i64, 0, 1, 20, 40] {
        for i in 0..30u64 {
            n += 1;
            let event = RequestCompleted {
                provider: if i % 4 == 0 { Provider::Bedrock } else { Provider::Anthropic },
                response_model: (i % 5 != 0).then(|| "claude-sonnet-4-5-20250929".into()),
                fallback: i % 4 == 0,
                status: if i % 7 == 0 { 503 } else { 200 },
                error_class: (i % 7 == 0).then_some(ccp_schemas::events::ErrorClass::NoBedrockFallback),
                stop_reason: None,
                usage: TokenUsage { input_tokens: i * 10, output_tokens: i, ..TokenUsage::default() },
                cost_usd: Some(Decimal::new((i * 1000) as i64, 9)),
                latency_ms: 10,
                ..completed(users[(i % 3) as usize], key)
            };
            let mut envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: "t".into() });
            envelope.occurred_at -= chrono::Duration::days(days_ago) + chrono::Duration::minutes(i as i64);
            log.publish(&envelope).await;
        }
    }
    // The projector's own hourly expiry must not race the comparison below; expiry is called
    // explicitly afterwards.
    let projector = project(&settings, n, &[("CCP__PROJECTOR__MINUTE_RETENTION_DAYS", "36500")]).await;

    let raw_from = format!(
        "(SELECT user_id, if(response_model != '', response_model, requested_model) AS model, provider, \
         error_class != '' AS errors, input_tokens, output_tokens, cost_nanos FROM {db}.requests)"
    );
    let raw = aggregate(&raw_from, "count()").await;
    assert!(!raw.is_empty());
    for table in ["usage_minute", "usage_hour", "usage_day"] {
        let rolled = aggregate(&format!("{db}.{table}"), "sum(requests)").await;
        assert_eq!(rolled, raw, "{table} differs from the raw rows");
    }
    // Week and month answers come from the day rollup.
    let month_from_days: u64 = clickhouse()
        .query(&format!(
            "SELECT sum(requests) FROM {db}.usage_day WHERE toStartOfMonth(bucket) = toStartOfMonth(now())"
        ))
        .fetch_one()
        .await
        .unwrap();
    let month_raw: u64 = clickhouse()
        .query(&format!("SELECT count() FROM {db}.requests WHERE toStartOfMonth(occurred_at) = toStartOfMonth(now())"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(month_from_days, month_raw);

    // Expiry: minute partitions older than 14 days go, hours and days stay.
    let ch = ccp_runtime::migrate::server_client(&settings.clickhouse).unwrap().with_database(&db);
    let dropped = ccp_projector::analytics::expire_minute_partitions(&ch, 14).await.unwrap();
    assert!(dropped.len() >= 2, "the 20- and 40-day-old partitions: {dropped:?}");
    let old_minutes: u64 = clickhouse()
        .query(&format!("SELECT count() FROM {db}.usage_minute WHERE bucket < now() - INTERVAL 15 DAY"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(old_minutes, 0);
    let recent_minutes: u64 =
        clickhouse().query(&format!("SELECT sum(requests) FROM {db}.usage_minute")).fetch_one().await.unwrap();
    assert_eq!(recent_minutes, 90, "today's and yesterday's minutes stay");
    let days: u64 = clickhouse().query(&format!("SELECT sum(requests) FROM {db}.usage_day")).fetch_one().await.unwrap();
    assert_eq!(days, n, "day rollups are kept for ever");
    assert!(ccp_projector::analytics::expire_minute_partitions(&ch, 14).await.unwrap().is_empty(), "idempotent");

    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
}

#[tokio::test]
async fn the_documented_analyst_queries_answer_from_real_data() {
    let settings = test_settings("queries");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let key = AccessKeyId::new();
    // alice: 4 requests of $0.25, 1000 input + 3000 cache reads each, one via Bedrock, session s1.
    // bob: 2 requests of $1, 1000 input, no cache, session s2.
    let mut n = 0;
    for (user, cost_nanos, cache_read, fallback, session) in [
        (alice, 250_000_000i64, 3000u64, true, "s1"),
        (alice, 250_000_000, 3000, false, "s1"),
        (alice, 250_000_000, 3000, false, "s1"),
        (alice, 250_000_000, 3000, false, "s1"),
        (bob, 1_000_000_000, 0, false, "s2"),
        (bob, 1_000_000_000, 0, false, "s2"),
    ] {
        n += 1;
        let event = RequestCompleted {
            provider: if fallback { Provider::Bedrock } else { Provider::Anthropic },
            response_model: None,
            fallback,
            stop_reason: None,
            usage: TokenUsage {
                input_tokens: 1000,
                output_tokens: 10,
                cache_read_input_tokens: cache_read,
                cache_creation_input_tokens: 0,
            },
            cost_usd: Some(Decimal::new(cost_nanos, 9)),
            latency_ms: 10,
            session_id: Some(session.into()),
            ..completed(user, key)
        };
        let envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: "t".into() });
        log.publish(&envelope).await;
    }
    let projector = project(&settings, n, &[]).await;

    let cost = ccp_tests::analyst_query(&db, "cost_per_user_this_month").await;
    assert_eq!(cost.len(), 2);
    assert_eq!(cost[0]["user_id"], bob.to_string(), "most expensive first");
    assert!((num(&cost[0]["cost_usd"]) - 2.0).abs() < 1e-9);
    assert!((num(&cost[1]["cost_usd"]) - 1.0).abs() < 1e-9);

    let cache = ccp_tests::analyst_query(&db, "cache_hit_ratio_per_user").await;
    let alice_row = cache.iter().find(|r| r["user_id"] == alice.to_string()).unwrap();
    assert!((num(&alice_row["cache_hit_ratio"]) - 0.75).abs() < 1e-9, "{alice_row}");

    let fallback = ccp_tests::analyst_query(&db, "fallback_rate_per_day").await;
    assert_eq!(fallback.len(), 1);
    assert!((num(&fallback[0]["fallback_rate"]) - 1.0 / 6.0).abs() < 1e-9, "{:?}", fallback[0]);

    let sessions = ccp_tests::analyst_query(&db, "top_sessions_by_cost").await;
    assert_eq!(sessions[0]["session_id"], "s2");
    assert_eq!(num(&sessions[0]["request_count"]) as u64, 2);
    assert_eq!(sessions[1]["session_id"], "s1");

    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
