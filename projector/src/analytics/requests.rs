//! The `requests` table: one row ([`RequestRow`]) per usage event, the Plan-limit columns read
//! from the event's rate-limit state.

use ccp_runtime::tables::RequestRow;
use ccp_schemas::events::{Actor, Event, RateLimitState, RequestCompleted};
use ccp_schemas::pricing::to_nanos;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Envelope;

use super::{label, TableSpec};

/// The row of a `request_completed` event at stream sequence `seq`.
fn request_row(seq: u64, envelope: &Envelope, r: &RequestCompleted) -> RequestRow {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut row = RequestRow {
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
        team_id: r.team_id.map(|t| t.to_string()).unwrap_or_default(),
    };
    if let Some(state) = &r.rate_limit {
        set_rate_limit(&mut row, state);
    }
    row
}

/// The Plan-limit columns (migration 0003) from the event's rate-limit state.
fn set_rate_limit(row: &mut RequestRow, state: &RateLimitState) {
    row.rl_observed_at = Some(state.observed_at);
    row.rl_status = state.status;
    row.rl_retry_after_secs = state.retry_after_secs;
    if let Some(u) = &state.unified {
        row.plan_status = u.status.clone().unwrap_or_default();
        row.plan_claim = u.representative_claim.clone().unwrap_or_default();
        row.plan_reset = u.reset;
        row.plan_5h_utilization = u.five_hour.as_ref().and_then(|w| w.utilization);
        row.plan_5h_reset = u.five_hour.as_ref().and_then(|w| w.reset);
        row.plan_7d_utilization = u.seven_day.as_ref().and_then(|w| w.utilization);
        row.plan_7d_reset = u.seven_day.as_ref().and_then(|w| w.reset);
        row.plan_overage_status = u.overage.as_ref().and_then(|w| w.status.clone()).unwrap_or_default();
    }
    row.api_requests_remaining = state.requests.and_then(|l| l.remaining);
    row.api_tokens_remaining = state.tokens.and_then(|l| l.remaining);
    row.rate_limit_json = serde_json::to_string(state).unwrap_or_default();
}

/// `requests`: one row per usage event.
pub struct Requests;

impl TableSpec for Requests {
    type Row = RequestRow;
    const NAME: &'static str = "requests";
    const TABLE: &'static str = "requests";
    const STREAM: StreamKind = StreamKind::Requests;
    type State = ();

    fn row(_: &mut (), seq: u64, envelope: &Envelope) -> Option<RequestRow> {
        match &envelope.event {
            Event::RequestCompleted(r) => Some(request_row(seq, envelope, r)),
            _ => None,
        }
    }

    fn seq(row: &RequestRow) -> u64 {
        row.stream_seq
    }
}
