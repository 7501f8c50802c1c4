//! The `requests` table: one row per usage event (column names as in migrations 0001, 0003 and
//! 0004), the Plan-limit columns read from the event's rate-limit state.

use ccp_schemas::events::{Actor, Event, RateLimitState, RequestCompleted};
use ccp_schemas::pricing::to_nanos;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Envelope;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{label, TableSpec};

/// One `requests` row (column names as in migrations 0001, 0003 and 0004).
#[derive(Debug, Clone, Serialize, clickhouse::Row)]
pub struct RequestRow {
    event_id: String,
    stream_seq: u64,
    request_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    occurred_at: DateTime<Utc>,
    occurred_at_ms: u64,
    user_id: String,
    key_id: String,
    key_prefix: String,
    endpoint: String,
    provider: String,
    requested_model: String,
    response_model: String,
    bedrock_model_id: String,
    region: String,
    fallback: u8,
    fallback_reason: String,
    status: u16,
    error_class: String,
    stream: u8,
    incomplete: u8,
    stop_reason: String,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    cost_nanos: u64,
    pricing_version: u32,
    latency_ms: u64,
    ttfb_ms: u64,
    session_id: String,
    client_version: String,
    replica: String,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    rl_observed_at: Option<DateTime<Utc>>,
    rl_status: u16,
    rl_retry_after_secs: Option<u64>,
    plan_status: String,
    plan_claim: String,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    plan_reset: Option<DateTime<Utc>>,
    plan_5h_utilization: Option<f64>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    plan_5h_reset: Option<DateTime<Utc>>,
    plan_7d_utilization: Option<f64>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    plan_7d_reset: Option<DateTime<Utc>>,
    plan_overage_status: String,
    api_requests_remaining: Option<u64>,
    api_tokens_remaining: Option<u64>,
    rate_limit_json: String,
    unpriced: u8,
    unpriced_tokens: u64,
    usage_estimated: u8,
    priced_model: String,
    bedrock_resolution: String,
    model_substituted: u8,
}

impl RequestRow {
    fn new(seq: u64, envelope: &Envelope, r: &RequestCompleted) -> Self {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            event_id: envelope.id.to_string(),
            stream_seq: seq,
            request_id: r.request_id.to_string(),
            occurred_at: envelope.occurred_at,
            occurred_at_ms: u64::try_from(envelope.occurred_at.timestamp_millis()).unwrap_or(0),
            user_id: r.user_id.map(|u| u.to_string()).unwrap_or_default(),
            key_id: r.key_id.map(|k| k.to_string()).unwrap_or_default(),
            key_prefix: r.key_prefix.as_ref().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            endpoint: label(&r.endpoint),
            provider: r.provider.as_str().to_owned(),
            requested_model: text(&r.requested_model),
            response_model: text(&r.response_model),
            bedrock_model_id: text(&r.bedrock_model_id),
            region: text(&r.region),
            fallback: u8::from(r.fallback),
            fallback_reason: r.fallback_reason.as_ref().map(label).unwrap_or_default(),
            status: r.status,
            error_class: r.error_class.as_ref().map(label).unwrap_or_default(),
            stream: u8::from(r.stream),
            incomplete: u8::from(r.incomplete),
            stop_reason: text(&r.stop_reason),
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
            cache_read_tokens: r.usage.cache_read_input_tokens,
            cache_creation_tokens: r.usage.cache_creation_input_tokens,
            // An unknown cost is 0 here and flagged `unpriced` (`cost_nanos_or_null` is NULL).
            cost_nanos: r.cost_usd.map_or(0, to_nanos),
            pricing_version: r.pricing_version.unwrap_or(0),
            latency_ms: r.latency_ms,
            ttfb_ms: r.ttfb_ms.unwrap_or(0),
            session_id: text(&r.session_id),
            client_version: text(&r.client_version),
            replica: match &envelope.actor {
                Actor::Proxy { replica } => replica.clone(),
                _ => String::new(),
            },
            rl_observed_at: None,
            rl_status: 0,
            rl_retry_after_secs: None,
            plan_status: String::new(),
            plan_claim: String::new(),
            plan_reset: None,
            plan_5h_utilization: None,
            plan_5h_reset: None,
            plan_7d_utilization: None,
            plan_7d_reset: None,
            plan_overage_status: String::new(),
            api_requests_remaining: None,
            api_tokens_remaining: None,
            rate_limit_json: String::new(),
            unpriced: u8::from(r.unpriced),
            unpriced_tokens: if r.unpriced {
                r.usage.input_tokens
                    + r.usage.output_tokens
                    + r.usage.cache_read_input_tokens
                    + r.usage.cache_creation_input_tokens
            } else {
                0
            },
            usage_estimated: u8::from(r.usage_estimated),
            priced_model: text(&r.priced_model),
            bedrock_resolution: r.bedrock_resolution.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            model_substituted: u8::from(r.model_substituted),
        }
        .with_rate_limit(r.rate_limit.as_ref())
    }

    /// The Plan-limit columns (migration 0003) from the event's rate-limit state.
    fn with_rate_limit(mut self, state: Option<&RateLimitState>) -> Self {
        let Some(state) = state else { return self };
        self.rl_observed_at = Some(state.observed_at);
        self.rl_status = state.status;
        self.rl_retry_after_secs = state.retry_after_secs;
        if let Some(u) = &state.unified {
            self.plan_status = u.status.clone().unwrap_or_default();
            self.plan_claim = u.representative_claim.clone().unwrap_or_default();
            self.plan_reset = u.reset;
            self.plan_5h_utilization = u.five_hour.as_ref().and_then(|w| w.utilization);
            self.plan_5h_reset = u.five_hour.as_ref().and_then(|w| w.reset);
            self.plan_7d_utilization = u.seven_day.as_ref().and_then(|w| w.utilization);
            self.plan_7d_reset = u.seven_day.as_ref().and_then(|w| w.reset);
            self.plan_overage_status = u.overage.as_ref().and_then(|w| w.status.clone()).unwrap_or_default();
        }
        self.api_requests_remaining = state.requests.and_then(|l| l.remaining);
        self.api_tokens_remaining = state.tokens.and_then(|l| l.remaining);
        self.rate_limit_json = serde_json::to_string(state).unwrap_or_default();
        self
    }
}

/// `requests`: one row per usage event.
pub struct Requests;

impl TableSpec for Requests {
    type Row = RequestRow;
    const NAME: &'static str = "requests";
    const TABLE: &'static str = "requests";
    const STREAM: StreamKind = StreamKind::Requests;

    fn row(seq: u64, envelope: &Envelope) -> Option<RequestRow> {
        match &envelope.event {
            Event::RequestCompleted(r) => Some(RequestRow::new(seq, envelope, r)),
            _ => None,
        }
    }

    fn seq(row: &RequestRow) -> u64 {
        row.stream_seq
    }
}
