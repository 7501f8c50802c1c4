//! What the proxy knows about one request, turned into exactly one `request_completed` event
//! (success, failure or refusal) and the request metrics, whatever way the request ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ccp_schemas::events::{
    Endpoint, ErrorClass, Event, FallbackReason, Provider, RequestCompleted, TargetSource, TokenUsage,
};
use ccp_schemas::ids::RequestId;
use ccp_schemas::secrets::access_key::KeyPrefix;
use ccp_schemas::{Actor, Envelope};
use rust_decimal::Decimal;

use crate::directory::{Authenticated, KeyTable};
use crate::metrics::{Metrics, ProviderLabels, RequestLabels};
use crate::publisher::EventSink;
use crate::rate_limits::RateLimits;
use crate::spend::Spend;
use crate::tap::Observed;

/// Longest client-supplied string (session id, client version) recorded.
const MAX_CLIENT_FIELD: usize = 128;

/// Where a finished request's event and metrics go.
#[derive(Clone)]
pub struct Recorder {
    /// Event sink.
    pub sink: EventSink,
    /// The request counters and latency histograms of `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This replica's id (the events' actor).
    pub replica: Arc<str>,
    /// Prices (from the key table, which follows pricing events).
    pub keys: Arc<KeyTable>,
    /// Month-to-date spend, updated as requests end.
    pub spend: Arc<Spend>,
    /// The latest Anthropic rate-limit state per key, copied into every event of the key.
    pub rate_limits: Arc<RateLimits>,
}

/// The facts gathered while a request is served.
pub struct RequestRecord {
    /// The request id (also `x-ccp-request-id`).
    pub request_id: RequestId,
    started: Instant,
    /// The authenticated key, once known.
    pub key: Option<Authenticated>,
    /// Prefix of the presented key (also for refused keys).
    pub key_prefix: Option<KeyPrefix>,
    /// Which API.
    pub endpoint: Endpoint,
    /// `model` from the request body.
    pub requested_model: Option<String>,
    /// `stream` from the request body.
    pub stream: bool,
    session_id: Option<String>,
    client_version: Option<String>,
    ttfb: Option<Duration>,
    /// Who answered.
    pub provider: Provider,
    /// Why Bedrock answered.
    pub fallback_reason: Option<FallbackReason>,
    /// The Bedrock model id called.
    pub bedrock_model_id: Option<String>,
    /// The AWS region of the Bedrock call.
    pub region: Option<String>,
    /// What the request is priced as (set by a failover; else the requested model's catalogue
    /// entry, looked up when the event is written).
    pub priced_model: Option<String>,
    /// How a failover found its Bedrock model.
    pub bedrock_resolution: Option<TargetSource>,
    /// A failover called another model than the one requested.
    pub model_substituted: bool,
    /// What this request holds of its user's budget while it runs.
    pub reservation: Option<crate::reserve::Reservation>,
    /// What it holds of its user's team's budget while it runs.
    pub team_reservation: Option<crate::reserve::Reservation>,
    recorder: Recorder,
    finished: bool,
}

fn client_field(value: Option<&str>) -> Option<String> {
    value.map(|v| {
        // Sized once: collecting chars one by one regrew the string four or five times.
        let mut field = String::with_capacity(v.len().min(4 * MAX_CLIENT_FIELD));
        field.extend(v.chars().filter(|c| !c.is_control()).take(MAX_CLIENT_FIELD));
        field
    })
}

/// The first `max` characters of `s`.
pub fn first_chars(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(end, _)| &s[..end])
}

impl RequestRecord {
    /// Starts the record of a request, with Claude Code's session id and `User-Agent` product.
    pub fn start(endpoint: Endpoint, session_id: Option<&str>, user_agent: Option<&str>, recorder: &Recorder) -> Self {
        recorder.metrics.in_flight.inc();
        Self {
            request_id: RequestId::new(),
            started: Instant::now(),
            key: None,
            key_prefix: None,
            endpoint,
            requested_model: None,
            stream: false,
            session_id: client_field(session_id),
            client_version: client_field(user_agent.and_then(|ua| ua.split_whitespace().next())),
            ttfb: None,
            provider: Provider::None,
            fallback_reason: None,
            bedrock_model_id: None,
            region: None,
            priced_model: None,
            bedrock_resolution: None,
            model_substituted: false,
            reservation: None,
            team_reservation: None,
            recorder: recorder.clone(),
            finished: false,
        }
    }

    /// Notes that the first response byte left now (once).
    pub fn first_byte(&mut self) {
        if self.ttfb.is_none() {
            self.ttfb = Some(self.started.elapsed());
        }
    }

    /// Emits the event and metrics. `status` is what the client got.
    pub fn finish(mut self, status: u16, error_class: Option<ErrorClass>, incomplete: bool, observed: Observed) {
        self.emit(status, error_class, incomplete, observed);
    }

    fn emit(&mut self, status: u16, error_class: Option<ErrorClass>, incomplete: bool, observed: Observed) {
        self.finished = true;
        let recorder = &self.recorder.clone();
        let latency = self.started.elapsed();
        let m = &recorder.metrics;
        m.in_flight.dec();
        // A stream that ended before its final count: the output is estimated from what was
        // relayed, and counted like any other (spend, budgets), flagged.
        let mut usage = observed.usage;
        let estimated = match observed.estimated_output_tokens() {
            Some(n) if incomplete && self.stream => {
                usage.output_tokens = n;
                m.estimated_usage.inc();
                true
            }
            _ => false,
        };
        // An answer whose usage could not be read has unknown tokens, not zero.
        let unreadable = observed.unreadable && status < 400 && self.endpoint != Endpoint::Other;
        // A provider was asked but the request ended before any count could be seen or
        // estimated (the client left while the answer was awaited, a JSON body was cut): the
        // provider may bill it; its tokens and cost are unknown, not zero.
        let unknown = incomplete
            && self.provider != Provider::None
            && self.endpoint == Endpoint::Messages
            && !observed.final_usage
            && !estimated;
        let error_class = match error_class {
            None if unreadable => {
                m.unreadable_usage.inc();
                Some(ErrorClass::UsageUnreadable)
            }
            other => other,
        };
        let provider = self.provider.as_str();
        m.requests
            .get_or_create(&RequestLabels { provider, status, error_kind: error_class.map_or("none", error_kind) })
            .inc();
        m.latency.get_or_create(&ProviderLabels { provider }).observe(latency.as_secs_f64());
        if let Some(ttfb) = self.ttfb {
            m.ttfb.get_or_create(&ProviderLabels { provider }).observe(ttfb.as_secs_f64());
        }
        let (key_id, user_id) = self.key.as_ref().map_or((None, None), |k| (Some(k.key_id), Some(k.user_id)));
        let prices = recorder.keys.prices();
        // Priced as what routed the request, never as the model the provider echoes.
        let priced_model = match self.priced_model.take() {
            Some(m) => Some(m),
            None if self.provider == Provider::Anthropic => {
                crate::route::plan_priced_as(&recorder.keys.catalogue(), self.requested_model.as_deref())
            }
            None => None,
        };
        let consumed = usage != TokenUsage::default();
        let price = match (self.provider, priced_model.as_deref()) {
            // count_tokens is free; its `input_tokens` are a count, not usage.
            _ if self.endpoint == Endpoint::CountTokens => Price::Free,
            (Provider::None, _) => Price::Free,
            _ if unreadable || unknown => Price::Unknown,
            (provider, Some(model)) => match prices.cost(model, provider, self.region.as_deref(), &usage) {
                Some(cost) => Price::Listed(cost),
                None if consumed => Price::Unpriced,
                None => Price::Free,
            },
            (_, None) if consumed => Price::Unpriced,
            (_, None) => Price::Free,
        };
        let cost = match price {
            Price::Listed(c) => Some(c),
            Price::Free => Some(Decimal::ZERO),
            Price::Unpriced | Price::Unknown => None,
        };
        if price == Price::Unpriced {
            m.unpriced_requests.inc();
        }
        let spent = match (user_id, price) {
            (Some(user), Price::Listed(c)) if c > Decimal::ZERO => Some((user, c)),
            _ => None,
        };
        let event = RequestCompleted {
            request_id: self.request_id,
            key_id,
            user_id,
            team_id: self.key.as_ref().and_then(|k| k.team.as_ref()).map(|t| t.team_id),
            key_prefix: self.key_prefix.take(),
            endpoint: self.endpoint,
            provider: self.provider,
            requested_model: self.requested_model.take(),
            response_model: observed.model,
            bedrock_model_id: self.bedrock_model_id.take(),
            region: self.region.take(),
            fallback: self.fallback_reason.is_some(),
            fallback_reason: self.fallback_reason,
            status,
            error_class,
            stream: self.stream,
            incomplete,
            stop_reason: observed.stop_reason,
            usage,
            cost_usd: cost,
            pricing_version: matches!(price, Price::Listed(_)).then_some(prices.version),
            unpriced: price == Price::Unpriced,
            priced_model,
            usage_estimated: estimated,
            bedrock_resolution: self.bedrock_resolution,
            model_substituted: self.model_substituted,
            latency_ms: millis(latency),
            ttfb_ms: self.ttfb.map(millis),
            session_id: self.session_id.take(),
            client_version: self.client_version.take(),
            rate_limit: key_id.and_then(|k| recorder.rate_limits.latest(&k)),
        };
        let envelope =
            Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: recorder.replica.to_string() })
                .correlated(self.request_id.to_string());
        if let Some((user, c)) = spent {
            // Counted in the month of the event's own instant: a rebuild of the shared tally
            // counts the event in that month too.
            let budgeted = self.key.as_ref().is_some_and(|k| k.monthly_limit_usd.is_some());
            recorder.spend.add_local(user, c, envelope.occurred_at, budgeted);
            // The team it was made in (now) counts it too: `spend::team`.
            if let Some(team) = self.key.as_ref().and_then(|k| k.team.as_ref()) {
                let key = crate::spend::team::team_key(team.team_id);
                recorder.spend.add_local(key, c, envelope.occurred_at, team.monthly_limit_usd.is_some());
            }
        }
        recorder.spend.emitting(envelope.id);
        recorder.sink.emit(envelope);
        // Its cost is in the spend now: the reservation is released.
        self.reservation = None;
        self.team_reservation = None;
    }
}

/// How a request's cost was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Price {
    /// The price list has the model: the cost.
    Listed(Decimal),
    /// Nothing was consumed (refused, `count_tokens`, no tokens): 0 for certain.
    Free,
    /// Tokens were consumed of a model the price list does not have.
    Unpriced,
    /// The tokens themselves are unknown (usage unreadable).
    Unknown,
}

impl Drop for RequestRecord {
    /// A request whose handler was dropped before it finished (the client went away while the
    /// body was read or Anthropic was awaited, or the drain time ran out) still gets its event.
    fn drop(&mut self) {
        if !self.finished {
            self.emit(499, Some(ErrorClass::ClientDisconnected), true, Observed::default());
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The metric label of an error class (its snake_case name).
pub fn error_kind(class: ErrorClass) -> &'static str {
    ccp_schemas::events::label(&class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_match_the_serialized_class_names() {
        for class in [ErrorClass::MalformedAccessKey, ErrorClass::BedrockModelError, ErrorClass::StreamInterrupted] {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json.trim_matches('"'), error_kind(class));
        }
    }

    #[test]
    fn client_fields_are_bounded_and_cleaned() {
        let long = "x".repeat(500);
        assert_eq!(client_field(Some(&long)).unwrap().len(), MAX_CLIENT_FIELD);
        assert_eq!(client_field(Some("a\nb")).unwrap(), "ab");
        assert_eq!(client_field(Some(&"é".repeat(200))).unwrap().chars().count(), MAX_CLIENT_FIELD);
    }

    #[test]
    fn first_chars_cuts_on_a_character_boundary() {
        assert_eq!(first_chars("claude-opus", 6), "claude");
        assert_eq!(first_chars("ééé", 2), "éé");
        assert_eq!(first_chars("short", 128), "short");
    }
}
