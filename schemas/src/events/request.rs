//! The usage event: one per request through the proxy, success or failure
//! (subject `<prefix>.request.<key_id>`, or `<prefix>.request.unauthenticated`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
    /// The snake_case label used in metrics and ClickHouse.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::Bedrock => "bedrock",
            Self::None => "none",
        }
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
    /// Cost in USD under `pricing_version`, exact; never recomputed.
    #[serde(with = "rust_decimal::serde::str")]
    pub cost_usd: Decimal,
    /// The price list version the cost was computed with (`None`: no price known, cost 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_version: Option<u32>,
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
}
