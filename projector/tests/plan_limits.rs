//! The Plan-limit state a usage event carries lands in the `requests` columns of migration 0003
//! (NULL / '' / 0 when it carried none), and the documented analyst query reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ccp_schemas::events::Event;
use ccp_schemas::Envelope;
use ccp_tests::events::{wait_requests, Log};
use ccp_tests::{clickhouse, delete_namespace, service_env, test_settings, Service};

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct PlanRow {
    rl_status: u16,
    observed: String,
    retry_after: String,
    plan_status: String,
    plan_claim: String,
    plan_reset: String,
    five_hour: String,
    five_hour_reset: String,
    seven_day: String,
    seven_day_reset: String,
    plan_overage_status: String,
    requests_remaining: String,
    tokens_remaining: String,
    rate_limit_json: String,
}

#[tokio::test]
async fn plan_limit_state_is_queryable_in_clickhouse() {
    let settings = test_settings("planlimits");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;

    // The committed sample (a 429 with the unified headers; Bedrock answered), now, and the same
    // request without any rate-limit state.
    let sample = include_bytes!("../../schemas/fixtures/events/v1/request_completed.json");
    let mut with = Envelope::decode(sample).unwrap();
    with.id = ulid::Ulid::new();
    with.occurred_at = chrono::Utc::now();
    let Event::RequestCompleted(r) = &mut with.event else { panic!("not a usage event") };
    r.request_id = ccp_schemas::ids::RequestId::new();
    let state = r.rate_limit.clone().expect("the sample carries rate-limit state");
    let (user, with_id) = (r.user_id.unwrap(), r.request_id.to_string());
    let mut without = with.clone();
    without.id = ulid::Ulid::new();
    let Event::RequestCompleted(w) = &mut without.event else { unreachable!() };
    w.request_id = ccp_schemas::ids::RequestId::new();
    w.rate_limit = None;
    w.user_id = Some(ccp_schemas::ids::UserId::new());
    let without_id = w.request_id.to_string();
    for e in [&with, &without] {
        log.publish(e).await;
    }

    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    let projector = Service::spawn(Path::new(BIN), &["serve"], &env).unwrap();
    assert_eq!(wait_requests(&db, 2, Duration::from_secs(30)).await, 2, "{}", projector.log_text());

    let row = |id: String| {
        let db = db.clone();
        async move {
            clickhouse()
                .query(&format!(
                    "SELECT rl_status, ifNull(toString(rl_observed_at), 'null') AS observed, \
                     ifNull(toString(rl_retry_after_secs), 'null') AS retry_after, plan_status, plan_claim, \
                     ifNull(toString(plan_reset), 'null') AS plan_reset, \
                     ifNull(toString(plan_5h_utilization), 'null') AS five_hour, \
                     ifNull(toString(plan_5h_reset), 'null') AS five_hour_reset, \
                     ifNull(toString(plan_7d_utilization), 'null') AS seven_day, \
                     ifNull(toString(plan_7d_reset), 'null') AS seven_day_reset, plan_overage_status, \
                     ifNull(toString(api_requests_remaining), 'null') AS requests_remaining, \
                     ifNull(toString(api_tokens_remaining), 'null') AS tokens_remaining, rate_limit_json \
                     FROM {db}.requests WHERE request_id = ?"
                ))
                .bind(id)
                .fetch_one::<PlanRow>()
                .await
                .unwrap()
        }
    };
    let got = row(with_id).await;
    assert_eq!(got.rl_status, 429);
    assert_eq!(got.observed, "2026-11-25 15:16:55");
    assert_eq!(got.retry_after, "2585");
    assert_eq!((got.plan_status.as_str(), got.plan_claim.as_str()), ("rejected", "five_hour"));
    assert_eq!(got.plan_reset, "2026-11-25 16:00:00");
    assert_eq!((got.five_hour.as_str(), got.five_hour_reset.as_str()), ("1", "2026-11-25 16:00:00"));
    assert_eq!((got.seven_day.as_str(), got.seven_day_reset.as_str()), ("0.42", "2026-11-29 10:00:00"));
    assert_eq!(got.plan_overage_status, "rejected");
    assert_eq!((got.requests_remaining.as_str(), got.tokens_remaining.as_str()), ("0", "2400000"));
    let whole: ccp_schemas::events::RateLimitState = serde_json::from_str(&got.rate_limit_json).unwrap();
    assert_eq!(whole, state, "the whole state, unknown headers included");

    let none = row(without_id).await;
    assert_eq!(none.rl_status, 0);
    for (name, v) in [
        ("observed", &none.observed),
        ("retry_after", &none.retry_after),
        ("plan_reset", &none.plan_reset),
        ("five_hour", &none.five_hour),
        ("seven_day", &none.seven_day),
        ("requests_remaining", &none.requests_remaining),
    ] {
        assert_eq!(v, "null", "{name}");
    }
    assert!(none.plan_status.is_empty() && none.rate_limit_json.is_empty());

    // The documented query: one user (the one with state), rejected and answered by Bedrock.
    let rows = ccp_tests::analyst_query(&db, "plan_limit_pressure_per_user").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["user_id"], user.to_string());
    assert_eq!(rows[0]["five_hour_utilization"], 1.0);
    assert_eq!(rows[0]["newest_plan_status"], "rejected");
    assert_eq!(rows[0]["requests_while_rejected"].to_string().trim_matches('"'), "1");
    assert_eq!(rows[0]["answered_by_bedrock"].to_string().trim_matches('"'), "1");

    drop(projector);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
