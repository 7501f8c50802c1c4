//! Honest metering in ClickHouse: an unpriced request's cost is NULL-able (never a silent $0), an
//! estimated output is flagged, a failover's resolution is kept, and the rollups count unpriced
//! and estimated requests and attribute each request to the model that routed it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_schemas::events::{Event, Provider, RequestCompleted, TargetSource, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, wait_requests, wait_rollups, Log};
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};
use rust_decimal::Decimal;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

fn request(user: UserId, key: AccessKeyId, model: &str, input: u64, output: u64) -> RequestCompleted {
    RequestCompleted {
        requested_model: Some(model.into()),
        response_model: Some(model.into()),
        stop_reason: None,
        usage: TokenUsage { input_tokens: input, output_tokens: output, ..TokenUsage::default() },
        cost_usd: Some(Decimal::new(1, 3)),
        priced_model: Some(model.into()),
        latency_ms: 10,
        ..completed(user, key)
    }
}

#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct Row {
    priced_model: String,
    unpriced: u8,
    unpriced_tokens: u64,
    cost_or_null: Option<u64>,
    usage_estimated: u8,
    bedrock_resolution: String,
    model_substituted: u8,
}

#[derive(Debug, PartialEq, Eq, serde::Deserialize, clickhouse::Row)]
struct Rollup {
    model: String,
    requests: u64,
    unpriced_requests: u64,
    unpriced_tokens: u64,
    estimated_requests: u64,
    cost: u64,
}

#[tokio::test]
async fn unpriced_estimated_and_substituted_requests_are_visible_in_clickhouse() {
    let settings = test_settings("metering");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let (user, key) = (UserId::new(), AccessKeyId::new());

    // Claude Code's default model, no price: cost unknown.
    let mut unpriced = request(user, key, "claude-opus-5-5", 1000, 100);
    unpriced.cost_usd = None;
    unpriced.pricing_version = None;
    unpriced.unpriced = true;
    // An interrupted stream, its output estimated.
    let mut estimated = request(user, key, "claude-sonnet-4-5", 50, 300);
    estimated.incomplete = true;
    estimated.usage_estimated = true;
    // A failover to the newest opus: priced and attributed as what answered, not the echo.
    let mut substituted = request(user, key, "claude-opus-5-5", 10, 10);
    substituted.provider = Provider::Bedrock;
    substituted.fallback = true;
    substituted.response_model = Some("claude-opus-4-5-20251101".into());
    substituted.bedrock_model_id = Some("global.anthropic.claude-opus-4-5-20251101-v1:0".into());
    substituted.priced_model = Some("claude-opus-4-5".into());
    substituted.bedrock_resolution = Some(TargetSource::FamilyFallback);
    substituted.model_substituted = true;
    for r in [unpriced, estimated, substituted] {
        log.publish(&Envelope::new(Event::RequestCompleted(r), Actor::Proxy { replica: "t".into() })).await;
    }

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    assert_eq!(wait_requests(&db, 3, Duration::from_secs(30)).await, 3, "{}", projector.log_text());
    wait_rollups(&db, 3).await;

    let rows: Vec<Row> = clickhouse()
        .query(&format!(
            "SELECT priced_model, unpriced, unpriced_tokens, cost_nanos_or_null AS cost_or_null, usage_estimated, \
             bedrock_resolution, model_substituted FROM {db}.requests ORDER BY stream_seq"
        ))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!((rows[0].unpriced, rows[0].unpriced_tokens, rows[0].cost_or_null), (1, 1100, None), "{:?}", rows[0]);
    assert_eq!((rows[1].usage_estimated, rows[1].cost_or_null), (1, Some(1_000_000)), "{:?}", rows[1]);
    assert_eq!(rows[2].bedrock_resolution, "family_fallback");
    assert_eq!((rows[2].model_substituted, rows[2].priced_model.as_str()), (1, "claude-opus-4-5"));

    let rollups: Vec<Rollup> = clickhouse()
        .query(&format!(
            "SELECT model, sum(requests) AS requests, sum(unpriced_requests) AS unpriced_requests, \
             sum(unpriced_tokens) AS unpriced_tokens, sum(estimated_requests) AS estimated_requests, \
             sum(cost_nanos) AS cost FROM {db}.usage_day GROUP BY model ORDER BY model"
        ))
        .fetch_all()
        .await
        .unwrap();
    let r = |model: &str, requests, unpriced_requests, unpriced_tokens, estimated_requests, cost| Rollup {
        model: model.into(),
        requests,
        unpriced_requests,
        unpriced_tokens,
        estimated_requests,
        cost,
    };
    assert_eq!(
        rollups,
        [
            r("claude-opus-4-5", 1, 0, 0, 0, 1_000_000),
            r("claude-opus-5-5", 1, 1, 1100, 0, 0),
            r("claude-sonnet-4-5", 1, 0, 0, 1, 1_000_000),
        ],
        "the failover is attributed to the model that answered"
    );

    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
