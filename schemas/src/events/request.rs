//! The usage event: one per request through the proxy, success or failure
//! (subject `<prefix>.request.<key_id>`, or `<prefix>.request.unauthenticated`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{AccessKeyId, RequestId, UserId};
use crate::secrets::access_key::KeyPrefix;

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The Anthropic API (the developer's Plan).
    Anthropic,
    /// Amazon Bedrock (failover or routing).
    Bedrock,
    /// Nobody: the proxy answered itself (refused key, bad input, budget, …).
    None,
}

impl Provider {
    /// The snake_case label used in metrics and ClickHouse: its serde name ([`super::label()`]).
    pub fn as_str(self) -> &'static str {
        super::label(&self)
    }
}

/// Which API the request called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// Any other `/v1/...` path, passed through.
    Other,
}

/// Why a request went to Bedrock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// Anthropic answered 429.
    RateLimited,
    /// Anthropic answered 529.
    Overloaded,
    /// Anthropic answered another 5xx.
    ServerError,
    /// Anthropic reported the subscription usage limit.
    UsageLimit,
    /// Connecting to Anthropic failed.
    ConnectError,
    /// Anthropic sent no headers in time.
    Timeout,
    /// The key's circuit breaker was open.
    CircuitOpen,
    /// The user's routing strategy is `bedrock_only`.
    Routing,
}

/// How a failover found the Bedrock model id it called, in the order tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    /// The catalogue entry of the requested model has a target for the key's region.
    Catalogue,
    /// The key's own Bedrock model listing (inference profiles, foundation models) has it.
    Listing,
    /// The family's configured fallback, or its newest catalogued model (a substitution).
    FamilyFallback,
    /// The key's default Bedrock model (a substitution unless it is the requested model).
    KeyDefault,
}

impl TargetSource {
    /// The snake_case label (metrics, ClickHouse): its serde name ([`super::label()`]).
    pub fn as_str(self) -> &'static str {
        super::label(&self)
    }
}

/// A small, fixed set of error labels (metrics, ClickHouse, troubleshooting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// No access key, or not of the access-key format.
    MalformedAccessKey,
    /// Well-formed but unknown key.
    UnknownAccessKey,
    /// The key was revoked.
    RevokedAccessKey,
    /// The key's user is deactivated.
    InactiveUser,
    /// The client sent something the proxy cannot accept (bad JSON, content type, path).
    BadRequest,
    /// The body was over the limit.
    PayloadTooLarge,
    /// Anthropic answered a 4xx that was passed through.
    UpstreamClientError,
    /// Anthropic answered 429 and there was no failover.
    UpstreamRateLimited,
    /// Anthropic answered 529 and there was no failover.
    UpstreamOverloaded,
    /// Anthropic answered 5xx and there was no failover.
    UpstreamServerError,
    /// Anthropic could not be reached and there was no failover.
    UpstreamConnectError,
    /// Anthropic sent no headers in time and there was no failover.
    UpstreamTimeout,
    /// The upstream stream broke after bytes were sent.
    StreamInterrupted,
    /// The client went away before the response finished.
    ClientDisconnected,
    /// The user's monthly budget is spent.
    BudgetExhausted,
    /// Failover was needed but the key has no Bedrock API key.
    NoBedrockFallback,
    /// No Bedrock model id maps to the requested model.
    ModelNotMapped,
    /// Bedrock refused the API key.
    BedrockAuthError,
    /// Bedrock throttled or the quota is used up.
    BedrockQuotaExceeded,
    /// Bedrock is unavailable or failed.
    BedrockUnavailable,
    /// Bedrock rejected the request body.
    BedrockValidation,
    /// The model failed on Bedrock (e.g. mid-stream error).
    BedrockModelError,
    /// A bug or an unexpected condition in the proxy.
    Internal,
    /// The answer's usage could not be read (an encoding or framing the tap cannot decode):
    /// its tokens are unknown, not zero.
    UsageUnreadable,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Uncached input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

/// One request finished (or failed, or was refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestCompleted {
    /// Also the `x-ccp-request-id` the client saw.
    pub request_id: RequestId,
    /// The access key, when it was recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<AccessKeyId>,
    /// The key's owner, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The owner's team when the request was made (absent: no team, or written before teams
    /// existed). Team spend is attributed by this field, so moving a user between teams leaves
    /// their earlier spend with the team that incurred it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<crate::ids::TeamId>,
    /// The presented key's first characters (also for refused keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<KeyPrefix>,
    /// Which API.
    pub endpoint: Endpoint,
    /// Who answered.
    pub provider: Provider,
    /// The `model` of the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
    /// The model the provider reported in its response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// The Bedrock model id called, on Bedrock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock_model_id: Option<String>,
    /// AWS region of the Bedrock call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether the request was failed over (or routed) to Bedrock.
    pub fallback: bool,
    /// Why it went to Bedrock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<FallbackReason>,
    /// HTTP status sent to the client.
    pub status: u16,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The response did not finish (client gone, stream cut); counts are what was seen.
    #[serde(default)]
    pub incomplete: bool,
    /// The provider's stop reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: TokenUsage,
    /// Cost in USD under `pricing_version`, exact; never recomputed. `null` when the model that
    /// answered has no price (`unpriced`): unknown, never 0. Requests that consumed nothing
    /// (refused, `count_tokens`) cost 0.
    ///
    /// Written as `null` only since catalogue-aware releases: upgrade the readers (projector,
    /// admin API) before the proxies.
    #[serde(default, with = "crate::pricing::decimal_str_option")]
    pub cost_usd: Option<Decimal>,
    /// The price list version the cost was computed with (`None`: no price was used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_version: Option<u32>,
    /// Tokens were consumed but no price covers the model that answered: `cost_usd` is `null`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unpriced: bool,
    /// The model the request was priced (or, when unpriced, would have been priced) as: the
    /// catalogue entry that routed it, else the requested name — never the provider's echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priced_model: Option<String>,
    /// The output tokens are an estimate from the content relayed before the stream ended
    /// early (client gone or stream cut before the provider's final count).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// On Bedrock: how the model id called was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock_resolution: Option<TargetSource>,
    /// On Bedrock: a different model than the one requested answered (family fallback or the
    /// key's default model).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_substituted: bool,
    /// Request received → last byte sent, in milliseconds.
    pub latency_ms: u64,
    /// Request received → first response byte sent, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    /// Claude Code's `X-Claude-Code-Session-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Client version from the `User-Agent` (e.g. `claude-cli/2.1.332`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The latest rate-limit state Anthropic reported for this key (as this proxy replica
    /// last saw it, possibly on an earlier request), also on requests Bedrock answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitState>,
}

/// Longest label kept from a rate-limit header (statuses, claims, reasons).
pub const MAX_RATE_LIMIT_LABEL: usize = 32;
/// Most unrecognised `anthropic-ratelimit-*` headers kept per snapshot.
pub const MAX_OTHER_RATE_LIMIT_HEADERS: usize = 16;
/// Longest name (after the `anthropic-ratelimit-` prefix) and value of an unrecognised header.
pub const MAX_OTHER_NAME: usize = 64;
/// Longest value of an unrecognised header.
pub const MAX_OTHER_VALUE: usize = 128;

/// The prefix of Anthropic's rate-limit response headers.
pub const RATE_LIMIT_HEADER_PREFIX: &str = "anthropic-ratelimit-";

/// What Anthropic's response headers said about a key's limits, at one moment: the unified
/// subscription limits (Claude plans: 5-hour and 7-day windows), the API organisation's request
/// and token limits, and `retry-after` of a 429. Every string is bounded, also when decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitState {
    /// When the proxy received these headers.
    pub observed_at: DateTime<Utc>,
    /// The HTTP status of the answer that carried them.
    pub status: u16,
    /// `retry-after` of that answer, in seconds (a 429's wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// `anthropic-ratelimit-unified-*`: the subscription (Plan) limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<UnifiedLimit>,
    /// `anthropic-ratelimit-requests-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ApiLimit>,
    /// `anthropic-ratelimit-tokens-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<ApiLimit>,
    /// `anthropic-ratelimit-input-tokens-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<ApiLimit>,
    /// `anthropic-ratelimit-output-tokens-*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<ApiLimit>,
    /// Other `anthropic-ratelimit-*` headers (name without the prefix → value), so headers
    /// Anthropic adds later are not lost; at most [`MAX_OTHER_RATE_LIMIT_HEADERS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "capped_map")]
    pub other: BTreeMap<String, String>,
}

/// The unified (subscription) limit: its overall status and reset, and each window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnifiedLimit {
    /// `allowed`, `allowed_warning` or `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "capped_label")]
    pub status: Option<String>,
    /// When the limiting window resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<DateTime<Utc>>,
    /// Which window decides the status (`five_hour`, `seven_day`, …).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "capped_label")]
    pub representative_claim: Option<String>,
    /// `-unified-fallback` (e.g. `available`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "capped_label")]
    pub fallback: Option<String>,
    /// `-unified-fallback-percentage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_percentage: Option<f64>,
    /// The 5-hour window (`-unified-5h-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub five_hour: Option<UnifiedWindow>,
    /// The 7-day window (`-unified-7d-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seven_day: Option<UnifiedWindow>,
    /// Extra usage beyond the plan (`-unified-overage-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage: Option<UnifiedWindow>,
    /// Why overage is disabled (`-unified-overage-disabled-reason`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "capped_label")]
    pub overage_disabled_reason: Option<String>,
}

/// One window of the unified limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UnifiedWindow {
    /// `allowed`, `allowed_warning` or `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "capped_label")]
    pub status: Option<String>,
    /// When the window resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<DateTime<Utc>>,
    /// The share used, 0.0–1.0 (and above when over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
}

/// One of the API's classic limits (requests or tokens per minute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiLimit {
    /// The limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// When it is fully replenished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<DateTime<Utc>>,
}

fn cap(value: &str, max: usize) -> String {
    value.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn capped_label<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| cap(&s, MAX_RATE_LIMIT_LABEL)))
}

fn capped_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, String>::deserialize(d)?;
    Ok(map
        .into_iter()
        .take(MAX_OTHER_RATE_LIMIT_HEADERS)
        .map(|(k, v)| (cap(&k, MAX_OTHER_NAME), cap(&v, MAX_OTHER_VALUE)))
        .collect())
}

/// Whether a response header is one a [`RateLimitState`] is made of (names are lowercase, as
/// HTTP libraries hand them out). Cheap: no allocation.
pub fn is_rate_limit_header(name: &str) -> bool {
    name.starts_with(RATE_LIMIT_HEADER_PREFIX)
}

impl RateLimitState {
    /// The state in a response's headers (lowercase names), or `None` when it has no
    /// `anthropic-ratelimit-*` header (a `retry-after` alone counts on a 429).
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        status: u16,
        observed_at: DateTime<Utc>,
    ) -> Option<Self> {
        let mut state = Self {
            observed_at,
            status,
            retry_after_secs: None,
            unified: None,
            requests: None,
            tokens: None,
            input_tokens: None,
            output_tokens: None,
            other: BTreeMap::new(),
        };
        let mut seen = false;
        for (name, raw) in headers {
            let Ok(value) = std::str::from_utf8(raw) else { continue };
            let value = value.trim();
            if name == "retry-after" {
                if let Ok(secs) = value.parse::<u64>() {
                    state.retry_after_secs = Some(secs);
                    seen |= status == 429;
                }
                continue;
            }
            let Some(rest) = name.strip_prefix(RATE_LIMIT_HEADER_PREFIX) else { continue };
            seen = true;
            if !state.set(rest, value) && state.other.len() < MAX_OTHER_RATE_LIMIT_HEADERS {
                state.other.insert(cap(rest, MAX_OTHER_NAME), cap(value, MAX_OTHER_VALUE));
            }
        }
        seen.then_some(state)
    }

    /// Sets the field of a known header (name without the prefix); whether it was one that
    /// parsed.
    fn set(&mut self, name: &str, value: &str) -> bool {
        if let Some(unified) = name.strip_prefix("unified-") {
            return self.unified.get_or_insert_with(UnifiedLimit::default).set(unified, value);
        }
        for (family, slot) in [
            ("requests-", &mut self.requests),
            ("input-tokens-", &mut self.input_tokens),
            ("output-tokens-", &mut self.output_tokens),
            ("tokens-", &mut self.tokens),
        ] {
            if let Some(field) = name.strip_prefix(family) {
                let limit = slot.get_or_insert_with(ApiLimit::default);
                return match field {
                    "limit" => value.parse().map(|v| limit.limit = Some(v)).is_ok(),
                    "remaining" => value.parse().map(|v| limit.remaining = Some(v)).is_ok(),
                    "reset" => rfc3339(value).map(|t| limit.reset = Some(t)).is_some(),
                    _ => false,
                };
            }
        }
        false
    }
}

impl UnifiedLimit {
    fn set(&mut self, name: &str, value: &str) -> bool {
        let window = |slot: &mut Option<UnifiedWindow>, field: &str| {
            let w = slot.get_or_insert_with(UnifiedWindow::default);
            match field {
                "status" => {
                    w.status = Some(cap(value, MAX_RATE_LIMIT_LABEL));
                    true
                }
                "reset" => epoch(value).map(|t| w.reset = Some(t)).is_some(),
                "utilization" => {
                    value.parse::<f64>().ok().filter(|u| u.is_finite()).map(|u| w.utilization = Some(u)).is_some()
                }
                _ => false,
            }
        };
        match name {
            "status" => self.status = Some(cap(value, MAX_RATE_LIMIT_LABEL)),
            "reset" => return epoch(value).map(|t| self.reset = Some(t)).is_some(),
            "representative-claim" => self.representative_claim = Some(cap(value, MAX_RATE_LIMIT_LABEL)),
            "fallback" => self.fallback = Some(cap(value, MAX_RATE_LIMIT_LABEL)),
            "fallback-percentage" => {
                return value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite())
                    .map(|p| self.fallback_percentage = Some(p))
                    .is_some()
            }
            "overage-disabled-reason" => self.overage_disabled_reason = Some(cap(value, MAX_RATE_LIMIT_LABEL)),
            _ => {
                if let Some(field) = name.strip_prefix("5h-") {
                    return window(&mut self.five_hour, field);
                }
                if let Some(field) = name.strip_prefix("7d-") {
                    return window(&mut self.seven_day, field);
                }
                if let Some(field) = name.strip_prefix("overage-") {
                    return window(&mut self.overage, field);
                }
                return false;
            }
        }
        true
    }
}

/// Unix seconds (the unified headers' resets).
fn epoch(value: &str) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(value.parse::<i64>().ok()?, 0)
}

/// RFC 3339 (the classic headers' resets).
fn rfc3339(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(headers: &[(&str, &str)], status: u16) -> Option<RateLimitState> {
        RateLimitState::from_headers(headers.iter().map(|(n, v)| (*n, v.as_bytes())), status, DateTime::UNIX_EPOCH)
    }

    #[test]
    fn subscription_and_api_limits_are_read() {
        let s = parse(
            &[
                ("content-type", "application/json"),
                ("anthropic-ratelimit-unified-status", "allowed_warning"),
                ("anthropic-ratelimit-unified-reset", "1765944000"),
                ("anthropic-ratelimit-unified-representative-claim", "five_hour"),
                ("anthropic-ratelimit-unified-fallback-percentage", "0.5"),
                ("anthropic-ratelimit-unified-5h-status", "allowed_warning"),
                ("anthropic-ratelimit-unified-5h-reset", "1765944000"),
                ("anthropic-ratelimit-unified-5h-utilization", "0.91"),
                ("anthropic-ratelimit-unified-7d-utilization", "0.30"),
                ("anthropic-ratelimit-requests-limit", "4000"),
                ("anthropic-ratelimit-requests-remaining", "3999"),
                ("anthropic-ratelimit-requests-reset", "2026-11-25T15:17:01Z"),
                ("anthropic-ratelimit-input-tokens-remaining", "12"),
                ("anthropic-ratelimit-tokens-limit", "2400000"),
            ],
            200,
        )
        .unwrap();
        let u = s.unified.unwrap();
        assert_eq!(u.status.as_deref(), Some("allowed_warning"));
        assert_eq!(u.reset.unwrap().timestamp(), 1_765_944_000);
        assert_eq!(u.representative_claim.as_deref(), Some("five_hour"));
        assert_eq!(u.fallback_percentage, Some(0.5));
        assert_eq!(u.five_hour.as_ref().unwrap().utilization, Some(0.91));
        assert_eq!(u.seven_day.unwrap().utilization, Some(0.30));
        let r = s.requests.unwrap();
        assert_eq!((r.limit, r.remaining), (Some(4000), Some(3999)));
        assert_eq!(r.reset.unwrap().to_rfc3339(), "2026-11-25T15:17:01+00:00");
        assert_eq!(s.input_tokens.unwrap().remaining, Some(12));
        assert_eq!(s.tokens.unwrap().limit, Some(2_400_000), "`tokens-` is not taken for `input-tokens-`");
        assert!(s.output_tokens.is_none() && s.other.is_empty() && s.retry_after_secs.is_none());
    }

    #[test]
    fn nothing_without_rate_limit_headers() {
        assert!(parse(&[("content-type", "text/event-stream")], 200).is_none());
        assert!(parse(&[("retry-after", "5")], 503).is_none(), "retry-after alone counts only on a 429");
        assert_eq!(parse(&[("retry-after", "5")], 429).unwrap().retry_after_secs, Some(5));
    }

    #[test]
    fn unknown_and_unparseable_headers_are_kept_bounded() {
        let long = "v".repeat(1000);
        let names: Vec<String> = (0..40).map(|i| format!("anthropic-ratelimit-new-{i:02}")).collect();
        let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), long.as_str())).collect();
        headers.push(("anthropic-ratelimit-unified-status", &long));
        headers.push(("anthropic-ratelimit-requests-limit", "lots"));
        let s = parse(&headers, 200).unwrap();
        assert_eq!(s.other.len(), MAX_OTHER_RATE_LIMIT_HEADERS);
        assert!(s.other.values().all(|v| v.len() == MAX_OTHER_VALUE));
        assert_eq!(s.unified.unwrap().status.unwrap().len(), MAX_RATE_LIMIT_LABEL);
        let json = serde_json::to_string(&serde_json::json!({
            "observed_at": "2026-11-25T15:17:00Z", "status": 200,
            "unified": {"status": long},
            "other": (0..40).map(|i| (format!("k{i}"), long.clone())).collect::<BTreeMap<_, _>>(),
        }))
        .unwrap();
        let decoded: RateLimitState = serde_json::from_str(&json).unwrap();
        assert_eq!(decoded.other.len(), MAX_OTHER_RATE_LIMIT_HEADERS, "bounded on decode too");
        assert_eq!(decoded.unified.unwrap().status.unwrap().len(), MAX_RATE_LIMIT_LABEL);
    }
}
