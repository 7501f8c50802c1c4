//! A fake Amazon Bedrock that speaks the real wire formats of the Bedrock Runtime operations
//! `InvokeModel`, `InvokeModelWithResponseStream` and `CountTokens` for Anthropic Claude
//! models, and of the control plane's `ListInferenceProfiles` and `ListFoundationModels`, for
//! tests and local runs (the real service is unreachable here). One server answers both
//! services (their paths do not overlap; point both clients' `endpoint_url` at it). The real
//! `aws-sdk-bedrockruntime` and boto3 (`bedrock-runtime` and `bedrock`) decode its answers
//! (`tests/tests/fake_bedrock.rs`, `tests/python/check_bedrock_boto3.py`). The shapes follow
//! botocore's service models (`bedrock-runtime/2023-09-30`, `bedrock/2023-04-20`).
//!
//! [`FakeBedrock::start`] runs it on `127.0.0.1` with an ephemeral port on a thread of its own
//! (its own actix System), like [`crate::fake_anthropic::FakeAnthropic`]; the
//! `ccp-fake-bedrock` binary runs it as a process. Every request except the control endpoints
//! is recorded ([`BedrockRequest`], with its [`BedrockOperation`]); the bearer key is never
//! stored, only its SHA-256.
//!
//! # Endpoints (REST-JSON protocol)
//! - `POST /model/{modelId}/invoke` (`InvokeModel`): the model's JSON message, `content-type:
//!   application/json`, headers `x-amzn-requestid`, `x-amzn-bedrock-invocation-latency`,
//!   `x-amzn-bedrock-input-token-count`, `x-amzn-bedrock-output-token-count` (and the
//!   `…-cache-read-…`/`…-cache-write-…` counts when not zero).
//! - `POST /model/{modelId}/invoke-with-response-stream`: `content-type:
//!   application/vnd.amazon.eventstream`; one event-stream message per Anthropic streaming
//!   event (headers `:event-type: chunk`, `:content-type: application/json`, `:message-type:
//!   event`; payload `{"bytes":"<base64 of the event JSON>"}`); the `message_stop` event
//!   carries `amazon-bedrock-invocationMetrics`. There are no `ping` events.
//! - `POST /model/{modelId}/count-tokens` (`CountTokens`): body `{"input": {"invokeModel":
//!   {"body": "<base64 of a Claude request>"}}}` or `{"input": {"converse": {"messages": […],
//!   …}}}`; answers 200 `{"inputTokens": N}` (`application/json`, no token-count headers).
//!   The estimate: for `invokeModel`, the decoded body's length in bytes / 100 + 1, which is
//!   exactly the `input_tokens` `InvokeModel` reports for that body by default; for
//!   `converse` (accepted minimally: `messages` must be a list, nothing else is checked), the
//!   length of the `converse` object re-serialized compactly / 100 + 1. A scenario's
//!   `usage.input_tokens` replaces the estimate.
//! - `GET /inference-profiles?maxResults=&nextToken=&type=` (`ListInferenceProfiles`): 200
//!   `{"inferenceProfileSummaries": [InferenceProfileSummary…], "nextToken": "…"}`.
//!   `type` (`SYSTEM_DEFINED` | `APPLICATION`) filters; without it every profile is listed.
//!   Without `maxResults` one page holds everything; with it (1..=1000) a page holds at most
//!   that many and `nextToken` (an opaque URL-safe token, absent on the last page) gives the
//!   next one. Bad values: 400 `ValidationException` in Coral's form ("1 validation error
//!   detected: Value '0' at 'maxResults' failed to satisfy constraint: Member must have value
//!   greater than or equal to 1"); an unknown token: "The provided pagination token is
//!   invalid.".
//! - `GET /foundation-models?byProvider=&byCustomizationType=&byOutputModality=&byInferenceType=`
//!   (`ListFoundationModels`, not paginated): 200 `{"modelSummaries": [FoundationModelSummary…]}`.
//!   `byProvider` matches `providerName` ignoring case; the others must be in the model's
//!   enums (else 400 `ValidationException`) and match a member of the summary's list.
//! - anything else (including `GetFoundationModel`, `GetInferenceProfile`, `Converse`): 404
//!   `UnknownOperationException`.
//!
//! `{modelId}` is percent-decoded (`global.anthropic.claude-sonnet-4-5-20250929-v1%3A0`); an
//! inference-profile or foundation-model ARN counts by the id after its last `/`.
//!
//! # Control endpoints (no auth)
//! - `POST /_fake/enqueue`: a [`BedrockScenario`] as JSON, or a list; answers `{"queued": N}`.
//! - `GET /_fake/requests`: the recorded requests as JSON (body as `body_base64` and, when it
//!   is JSON, `body_json`).
//! - `POST /_fake/reset`: forgets the requests, the queued scenarios and the listing fault
//!   (like [`FakeBedrock::clear`]; the catalog, disabled models and allowed betas stay).
//! - `POST /_fake/allowed_betas` (`GET` reads): a JSON list of strings, the betas accepted
//!   from now on; answers `{"allowed_betas": […]}`.
//! - `POST /_fake/disabled_models` (`GET` reads): a JSON list of model ids or Claude names,
//!   e.g. `["claude-opus-4-1-20250805", "global.anthropic.claude-opus-5-5-v1:0"]`, the models
//!   NOT enabled for the account from now on (`[]`: all enabled). Each entry stands for the
//!   Claude name inside it, so it covers every id of that model (foundation model, profiles,
//!   ARNs). Answers `{"disabled_models": ["claude-opus-4-1-20250805", "claude-opus-5-5"]}`.
//!   Rust: [`FakeBedrock::set_disabled_models`], [`FakeBedrock::disabled_models`].
//! - `POST /_fake/catalog` (`GET` reads): replaces what the listings list. The document is
//!   [`BedrockCatalog`] in the operations' own member names:
//!   `{"modelSummaries": [{"modelArn", "modelId", "modelName"?, "providerName"?,
//!   "inputModalities"?, "outputModalities"?, "responseStreamingSupported"?,
//!   "customizationsSupported"?, "inferenceTypesSupported"?, "modelLifecycle"?: {"status",
//!   "startOfLifeTime"?, "endOfLifeTime"?, "legacyTime"?, "publicExtendedAccessTime"?}}…],
//!   "inferenceProfileSummaries": [{"inferenceProfileName", "description"?, "createdAt"?,
//!   "updatedAt"?, "inferenceProfileArn", "models": [{"modelArn"?}…], "inferenceProfileId",
//!   "status", "type"}…]}` (`?`: optional; either list may be left out; timestamps are ISO
//!   8601 strings, served as given), or the string `"default"` for the default catalog.
//!   Answers `{"modelSummaries": N, "inferenceProfileSummaries": M}`; a document missing a
//!   required member: 400. Rust: [`FakeBedrock::set_catalog`], [`FakeBedrock::catalog`],
//!   [`BedrockCatalog::with_claude`].
//! - `POST /_fake/listing_fault` (`GET` reads): a standing failure of the listings,
//!   [`ListingFault`]: `{"fault": "garbage" | "access_denied" | "throttling" | "hang",
//!   "operation"?: "ListInferenceProfiles" | "ListFoundationModels", "delay_ms"?: N}`;
//!   `null` or `{"fault": null}` clears it. `garbage`: 200 `application/json` whose body is
//!   not JSON ([`LISTING_GARBAGE`]); `access_denied`: 403 `AccessDeniedException` ("User: …
//!   is not authorized to perform: bedrock:ListInferenceProfiles because no identity-based
//!   policy allows …"); `throttling`: 429 `ThrottlingException`; `hang`: the normal answer
//!   after `delay_ms` (default [`LISTING_HANG_MS`], 60 s: longer than a client timeout;
//!   dropping the fake does not wait for it). Answers `{"listing_fault": …}`. Rust:
//!   [`FakeBedrock::set_listing_fault`].
//!
//! # The default catalog
//! [`BedrockCatalog::default`], built from [`DEFAULT_CLAUDE_MODELS`]: Claude Opus 5.5
//! (`anthropic.claude-opus-5-5-v1:0`, profiles `global.` and `us.`), Opus 4.8 (`global.`,
//! `us.`), Opus 4.5 (`…-20251101-v1:0`), Sonnet 4.5 (`…-20250929-v1:0`, also `eu.`), Haiku 4.5
//! (`…-20251001-v1:0`), Opus 4.1 (`…-20250805-v1:0`, `us.` only) and Claude 3 Haiku (`us.`
//! only; the one model also `ON_DEMAND`). Each foundation model: region `us-east-1`,
//! provider `Anthropic`, input `TEXT`+`IMAGE`, output `TEXT`, streaming, no customizations,
//! `inferenceTypesSupported: ["INFERENCE_PROFILE"]`, lifecycle `ACTIVE`. Each profile:
//! `SYSTEM_DEFINED`, `ACTIVE`, named `<Global|US|EU> Anthropic <model name>`, ARN
//! `arn:aws:bedrock:us-east-1:123456789012:inference-profile/<id>`, `models` the foundation
//! models of its regions (`global.` also the region-less ARN, as the real service lists it).
//! The listings do not consult the disabled models (the real service lists models whatever
//! the account's access), and the runtime's model-id check does not consult the catalog.
//!
//! # Checks, in Bedrock's order (first failure answers)
//! 1. `Authorization: Bearer <key>` with a key given to [`FakeBedrock::start`] (no keys given:
//!    any non-empty key), for every operation, the listings included (the real control plane
//!    accepts Bedrock API keys as bearer tokens too). Else 403 `UnrecognizedClientException`
//!    ("The security token included in the request is invalid."); no `Authorization` at all:
//!    403 `MissingAuthenticationTokenException`.
//! 2. The method and path are one of the operations (else 404 `UnknownOperationException`).
//!    The listings go on with their fault, then their query checks (see above).
//! 3. The model id is `[<prefix>.]anthropic.claude-…` with an optional region/`global.`
//!    prefix (dated or not: `global.anthropic.claude-opus-5-5-v1:0` is `claude-opus-5-5`);
//!    else 400 `ValidationException` "The provided model identifier is invalid." (what real
//!    Bedrock answers for an unknown id; a 404 `ResourceNotFoundException` can be scripted with
//!    [`BedrockScenarioName::ResourceNotFound`]).
//! 4. The model is enabled (not in the disabled models); else 403 `AccessDeniedException`
//!    "You don't have access to the model with the specified model ID."
//!    ([`MODEL_ACCESS_DENIED`], what real Bedrock answers for a model without access).
//! 5. `CountTokens`: `input` is set with exactly one of `invokeModel` (whose `body` is base64)
//!    or `converse` (with a `messages` list); else 400 `ValidationException`. An `invokeModel`
//!    body then goes through checks 6 and 7 like an `InvokeModel` body.
//! 6. The body, as Bedrock's Claude schema: a JSON object with `anthropic_version ==
//!    "bedrock-2023-05-31"`, `max_tokens` and `messages`, and no top-level key outside
//!    [`ACCEPTED_BODY_KEYS`] (so `model` and `stream` are refused): 400 `ValidationException`
//!    "Malformed input request: #: extraneous key \[model\] is not permitted, please reformat
//!    your input and try again." (all violations, concatenated as Bedrock does).
//! 7. `anthropic_beta`, if present, is a list of strings each in the allowed list
//!    ([`DEFAULT_ALLOWED_BETAS`], see [`FakeBedrock::set_allowed_betas`]); else 400
//!    `ValidationException` "invalid beta flag".
//!
//! Errors are JSON `{"message": "…"}` with `x-amzn-ErrorType: <Name>:http://internal.amazon.com/
//! coral/com.amazon.bedrock/` (the qualifier real Bedrock appends; SDKs cut it at `:`).
//!
//! # Choosing the answer
//! A runtime request (`InvokeModel`, `InvokeModelWithResponseStream`, `CountTokens`) that
//! passes the checks takes the first queued scenario meant for it ([`FakeBedrock::enqueue`],
//! `POST /_fake/enqueue`; a scenario with `operation` set is only taken by that operation,
//! others by any of the three), else [`BedrockScenarioName::Auto`]. Scenarios that answer an
//! HTTP error (`throttling`, `access_denied`, …, `error`) do so for `CountTokens` too, and
//! `slow`/`delay_ms` delay it; the others answer the count. The listings take no scenarios
//! (see the listing fault). For a message: when the last user message
//! carries a `tool_result`, the text `Tool said: <its text, trimmed>`; else when a tool named
//! `Bash` is offered and the last user message has a line `run: <command>`, a `tool_use` of
//! `Bash` with input `{"command": "<command>", "description": "Run the command"}` (`run echo`
//! means `echo TOOL_RAN_OK`); else the text [`DEFAULT_TEXT`]. The answer's `model` is the
//! Claude name inside the model id (`global.anthropic.claude-sonnet-4-5-20250929-v1:0` →
//! `claude-sonnet-4-5-20250929`); ids are `msg_bdrk_…` and `toolu_bdrk_…`.

mod catalog;
mod eventstream;
mod respond;

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use actix_http::HttpService;
use actix_server::ServerHandle;
use actix_service::{fn_service, map_config, ServiceFactoryExt as _};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::fake_anthropic::Usage;
pub use catalog::{
    BedrockCatalog, FoundationModelLifecycle, FoundationModelSummary, InferenceProfileModel, InferenceProfileSummary,
    CATALOG_ACCOUNT_ID, CATALOG_REGION, DEFAULT_CLAUDE_MODELS,
};
pub use eventstream::{decode as decode_event_stream, encode as encode_event_stream, Frame};
pub use respond::claude_model_name;

/// The default text answer.
pub const DEFAULT_TEXT: &str = "Hello from fake_bedrock.";

/// The only `anthropic_version` Bedrock accepts.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The top-level request body keys Bedrock's Claude Messages schema accepts (InvokeModel /
/// InvokeModelWithResponseStream); any other key is "extraneous … not permitted".
///
/// Sources: the Bedrock user guide "Anthropic Claude Messages API → Request and Response"
/// (`model-parameters-anthropic-claude-messages-request-response`: anthropic_version,
/// anthropic_beta, max_tokens, system, messages, temperature, top_p, top_k, tools,
/// tool_choice, stop_sequences), its "Extended thinking"/"Adaptive thinking" pages
/// (`thinking`, `output_config.effort`), "Get validated JSON results" (`output_config`) and
/// "Compaction" (`context_management`); `metadata` with `user_id` only (Bedrock answers
/// "metadata.tags: Extra inputs are not permitted" for more, BerriAI/litellm#30629). `model`
/// and `stream` are refused ("extraneous key \[stream\] is not permitted", sigoden/aichat#543).
pub const ACCEPTED_BODY_KEYS: &[&str] = &[
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "system",
    "messages",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "output_config",
    "context_management",
];

/// The `anthropic_beta` values accepted by default: what AWS documents for Claude on
/// Bedrock's InvokeModel. Sources: the Bedrock user guide's Claude "Request and Response"
/// page (`anthropic_beta`, e.g. `computer-use-2024-10-22`) and the list "per AWS docs" in
/// BerriAI/litellm#19877 (computer-use-2024-10-22, computer-use-2025-01-24,
/// token-efficient-tools-2025-02-19, interleaved-thinking-2025-05-14, output-128k-2025-02-19,
/// dev-full-thinking-2025-05-14, context-1m-2025-08-07, context-management-2025-06-27,
/// effort-2025-11-24, tool-search-tool-2025-10-19, tool-examples-2025-10-29), plus
/// fine-grained-tool-streaming-2025-05-14, compact-2026-01-12 and computer-use-2025-11-24
/// (litellm's `anthropic_beta_headers_config.json`, "bedrock"). Refused, e.g.:
/// `claude-code-20250219`, `extended-cache-ttl-2025-04-11`, `mcp-servers-2025-12-04`,
/// `advanced-tool-use-2025-11-20` (Bedrock's name is `tool-search-tool-2025-10-19`)
/// (anthropics/claude-code#56595, #49648: "400 invalid beta flag").
pub const DEFAULT_ALLOWED_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
    "fine-grained-tool-streaming-2025-05-14",
    "compact-2026-01-12",
];

/// Message of the 403 `AccessDeniedException` for a model the account has no access to.
pub const MODEL_ACCESS_DENIED: &str = "You don't have access to the model with the specified model ID.";

/// An operation the fake serves, by its AWS name (`"CountTokens"` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BedrockOperation {
    /// `POST /model/{modelId}/invoke`.
    InvokeModel,
    /// `POST /model/{modelId}/invoke-with-response-stream`.
    InvokeModelWithResponseStream,
    /// `POST /model/{modelId}/count-tokens`.
    CountTokens,
    /// `GET /inference-profiles` (control plane).
    ListInferenceProfiles,
    /// `GET /foundation-models` (control plane).
    ListFoundationModels,
}

impl BedrockOperation {
    /// The AWS operation name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvokeModel => "InvokeModel",
            Self::InvokeModelWithResponseStream => "InvokeModelWithResponseStream",
            Self::CountTokens => "CountTokens",
            Self::ListInferenceProfiles => "ListInferenceProfiles",
            Self::ListFoundationModels => "ListFoundationModels",
        }
    }

    /// Whether this is a control-plane listing.
    pub fn is_listing(self) -> bool {
        matches!(self, Self::ListInferenceProfiles | Self::ListFoundationModels)
    }
}

impl std::fmt::Display for BedrockOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a listing fault does (`fault` of [`ListingFault`] in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingFaultKind {
    /// 200 with `content-type: application/json` and a body that is not JSON
    /// ([`LISTING_GARBAGE`]).
    Garbage,
    /// 403 `AccessDeniedException` (the IAM message of a caller without
    /// `bedrock:List…`).
    AccessDenied,
    /// 429 `ThrottlingException`.
    Throttling,
    /// The normal answer after `delay_ms` (default [`LISTING_HANG_MS`]) before the headers.
    Hang,
}

/// The body of the `garbage` listing fault.
pub const LISTING_GARBAGE: &str = "<html><body>upstream connect error</body></html>";

/// Default delay of the `hang` listing fault, in milliseconds: longer than any client timeout
/// a test sets.
pub const LISTING_HANG_MS: u64 = 60_000;

/// A standing failure of the listings (`POST /_fake/listing_fault`), until cleared or reset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingFault {
    /// What to do.
    pub fault: ListingFaultKind,
    /// Only for this listing (default: both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<BedrockOperation>,
    /// Delay before the answer, in milliseconds (default [`LISTING_HANG_MS`] for `hang`, else
    /// 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl ListingFault {
    /// This fault for both listings.
    pub fn new(fault: ListingFaultKind) -> Self {
        Self { fault, operation: None, delay_ms: None }
    }

    /// Only for `operation`.
    pub fn only(mut self, operation: BedrockOperation) -> Self {
        self.operation = Some(operation);
        self
    }

    /// With this delay.
    pub fn with_delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }
}

/// What a scenario does (`name` of [`BedrockScenario`] in JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BedrockScenarioName {
    /// The default rules (see the module documentation).
    #[default]
    Auto,
    /// A text answer: `text`, or the default rules' text.
    Text,
    /// A `tool_use` answer: `tool_name` (default `Bash`) with `tool_input` (default: the
    /// `run:` command of the last user message, or `echo hello`).
    ToolUse,
    /// 429 `ThrottlingException` "Too many requests, please wait before trying again."
    Throttling,
    /// 403 `AccessDeniedException`.
    AccessDenied,
    /// 403 `UnrecognizedClientException` (as for a bad key, whatever the key).
    UnrecognizedClient,
    /// 400 `ValidationException`.
    Validation,
    /// 503 `ServiceUnavailableException`.
    ServiceUnavailable,
    /// 500 `InternalServerException`.
    Internal,
    /// 400 `ServiceQuotaExceededException`.
    QuotaExceeded,
    /// 424 `ModelErrorException`.
    ModelError,
    /// 408 `ModelTimeoutException`.
    ModelTimeout,
    /// 404 `ResourceNotFoundException`.
    ResourceNotFound,
    /// Streaming: `message_start`, `content_block_start` and one `content_block_delta`, then
    /// an exception message (`stream_exception`, default `modelStreamErrorException`) and the
    /// end of the body. Not streaming: 424 `ModelErrorException`.
    ModelStreamError,
    /// The default answer after `delay_ms` (default 1000) before the headers.
    Slow,
    /// Any error: `status` (default 400), `error_type` (default `ValidationException`),
    /// `message`.
    Error,
}

impl BedrockScenarioName {
    /// All names.
    pub const ALL: [BedrockScenarioName; 16] = [
        Self::Auto,
        Self::Text,
        Self::ToolUse,
        Self::Throttling,
        Self::AccessDenied,
        Self::UnrecognizedClient,
        Self::Validation,
        Self::ServiceUnavailable,
        Self::Internal,
        Self::QuotaExceeded,
        Self::ModelError,
        Self::ModelTimeout,
        Self::ResourceNotFound,
        Self::ModelStreamError,
        Self::Slow,
        Self::Error,
    ];

    /// The wire name (`model_stream_error`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::ToolUse => "tool_use",
            Self::Throttling => "throttling",
            Self::AccessDenied => "access_denied",
            Self::UnrecognizedClient => "unrecognized_client",
            Self::Validation => "validation",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Internal => "internal",
            Self::QuotaExceeded => "quota_exceeded",
            Self::ModelError => "model_error",
            Self::ModelTimeout => "model_timeout",
            Self::ResourceNotFound => "resource_not_found",
            Self::ModelStreamError => "model_stream_error",
            Self::Slow => "slow",
            Self::Error => "error",
        }
    }

    /// The HTTP error this scenario answers with, whatever the request: (status,
    /// `x-amzn-ErrorType` name, default message).
    pub fn http_error(self) -> Option<(u16, &'static str, &'static str)> {
        Some(match self {
            Self::Throttling => (429, "ThrottlingException", "Too many requests, please wait before trying again."),
            Self::AccessDenied => {
                (403, "AccessDeniedException", "You don't have access to the model with the specified model ID.")
            }
            Self::UnrecognizedClient => {
                (403, "UnrecognizedClientException", "The security token included in the request is invalid.")
            }
            Self::Validation => (400, "ValidationException", "Input is too long for requested model."),
            Self::ServiceUnavailable => {
                (503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
            }
            Self::Internal => (
                500,
                "InternalServerException",
                "The system encountered an unexpected error during processing. Try your request again.",
            ),
            Self::QuotaExceeded => {
                (400, "ServiceQuotaExceededException", "Too many tokens per day, please wait before trying again.")
            }
            Self::ModelError => (424, "ModelErrorException", "The model returned an error."),
            Self::ModelTimeout => {
                (408, "ModelTimeoutException", "Model has timed out in processing the request. Try your request again.")
            }
            Self::ResourceNotFound => (404, "ResourceNotFoundException", "The requested model could not be found."),
            Self::Error => (400, "ValidationException", "Bad request."),
            _ => return None,
        })
    }
}

impl FromStr for BedrockScenarioName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown scenario {s:?}"))
    }
}

/// A scripted answer. Every field is optional in JSON (`{"name": "throttling"}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BedrockScenario {
    /// What to do.
    pub name: BedrockScenarioName,
    /// Text of a text answer.
    pub text: Option<String>,
    /// Tool of a `tool_use` answer (default `Bash`).
    pub tool_name: Option<String>,
    /// Input of a `tool_use` answer.
    pub tool_input: Option<serde_json::Value>,
    /// Usage to answer with (default: input = body length / 100 + 1, output = words of the
    /// answer + 1, no cache).
    pub usage: Option<Usage>,
    /// Delay between event-stream messages, in milliseconds.
    pub pace_ms: Option<u64>,
    /// Delay before the response headers, in milliseconds (default 1000 for `slow`, else 0).
    pub delay_ms: Option<u64>,
    /// Message of an error (default: the scenario's).
    pub message: Option<String>,
    /// Status of the `error` scenario (default 400).
    pub status: Option<u16>,
    /// `x-amzn-ErrorType` name of the `error` scenario (default `ValidationException`).
    pub error_type: Option<String>,
    /// `:exception-type` of `model_stream_error` (default `modelStreamErrorException`; also
    /// `throttlingException`, `internalServerException`, `serviceUnavailableException`,
    /// `validationException`, `modelTimeoutException`).
    pub stream_exception: Option<String>,
    /// `model` to answer with (default: the Claude name inside the model id).
    pub model: Option<String>,
    /// Only a request of this operation takes the scenario (`InvokeModel`,
    /// `InvokeModelWithResponseStream` or `CountTokens`; default: any of the three).
    pub operation: Option<BedrockOperation>,
}

impl BedrockScenario {
    /// A scenario with defaults for everything but its name.
    pub fn new(name: BedrockScenarioName) -> Self {
        Self { name, ..Self::default() }
    }

    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: Some(text.into()), ..Self::new(BedrockScenarioName::Text) }
    }

    /// A `tool_use` answer calling `tool` with `input`.
    pub fn tool_use(tool: impl Into<String>, input: serde_json::Value) -> Self {
        Self { tool_name: Some(tool.into()), tool_input: Some(input), ..Self::new(BedrockScenarioName::ToolUse) }
    }

    /// 429 `ThrottlingException`.
    pub fn throttling() -> Self {
        Self::new(BedrockScenarioName::Throttling)
    }

    /// 403 `AccessDeniedException`.
    pub fn access_denied() -> Self {
        Self::new(BedrockScenarioName::AccessDenied)
    }

    /// 403 `UnrecognizedClientException`.
    pub fn unrecognized_client() -> Self {
        Self::new(BedrockScenarioName::UnrecognizedClient)
    }

    /// 400 `ValidationException` (with this message, if any).
    pub fn validation(message: Option<&str>) -> Self {
        Self { message: message.map(str::to_owned), ..Self::new(BedrockScenarioName::Validation) }
    }

    /// 503 `ServiceUnavailableException`.
    pub fn service_unavailable() -> Self {
        Self::new(BedrockScenarioName::ServiceUnavailable)
    }

    /// 500 `InternalServerException`.
    pub fn internal() -> Self {
        Self::new(BedrockScenarioName::Internal)
    }

    /// 400 `ServiceQuotaExceededException`.
    pub fn quota_exceeded() -> Self {
        Self::new(BedrockScenarioName::QuotaExceeded)
    }

    /// A stream that fails with `modelStreamErrorException` after one delta.
    pub fn model_stream_error() -> Self {
        Self::new(BedrockScenarioName::ModelStreamError)
    }

    /// The default answer after `delay_ms` before the headers.
    pub fn slow(delay_ms: u64) -> Self {
        Self::new(BedrockScenarioName::Slow).with_delay_ms(delay_ms)
    }

    /// Any HTTP error: `status`, `x-amzn-ErrorType` name `error_type`, `message`.
    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: Some(status),
            error_type: Some(error_type.into()),
            message: Some(message.into()),
            ..Self::new(BedrockScenarioName::Error)
        }
    }

    /// With this usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// With this delay between event-stream messages.
    pub fn with_pace_ms(mut self, ms: u64) -> Self {
        self.pace_ms = Some(ms);
        self
    }

    /// With this delay before the headers.
    pub fn with_delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    /// With this error message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// With this mid-stream `:exception-type` (for `model_stream_error`).
    pub fn with_stream_exception(mut self, exception_type: impl Into<String>) -> Self {
        self.stream_exception = Some(exception_type.into());
        self
    }

    /// Answering as `model`.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Taken only by a request of `operation`.
    pub fn for_operation(mut self, operation: BedrockOperation) -> Self {
        self.operation = Some(operation);
        self
    }
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BedrockRequest {
    /// `POST`, …
    pub method: String,
    /// The path as received (still percent-encoded), without the query.
    pub path: String,
    /// The query string (without `?`), possibly empty.
    pub query: String,
    /// The percent-decoded model id of a `/model/{modelId}/…` path.
    pub model_id: Option<String>,
    /// The operation asked for (`None`: no operation of the fake, answered 404).
    #[serde(default)]
    pub operation: Option<BedrockOperation>,
    /// `invoke-with-response-stream` (rather than `invoke`).
    pub streaming: bool,
    /// Header lines in received order; the credential of `authorization` (and
    /// `x-amz-security-token`) replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    #[serde(rename = "body_base64", with = "base64_bytes")]
    pub body: Vec<u8>,
    /// SHA-256 (hex) of the bearer key sent, if any (never the key itself).
    pub key_sha256: Option<String>,
    /// Whether the key was accepted.
    pub key_accepted: bool,
    /// Status answered (200 for a stream, even one that ends in an exception).
    pub status: u16,
    /// `x-amzn-ErrorType` name answered, or the `:exception-type` a stream ended with.
    pub error_type: Option<String>,
    /// Usage answered, as far as it was sent (`CountTokens`: `input_tokens` is the count).
    pub usage: Option<Usage>,
    /// Scenario used (`None` when the request failed a check before one was taken).
    pub scenario: Option<BedrockScenario>,
}

impl BedrockRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Whether the bearer key sent was `key`.
    pub fn key_was(&self, key: &str) -> bool {
        self.key_sha256.as_deref() == Some(sha256_hex(key).as_str())
    }
}

/// Lower-case hex SHA-256 of a string.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// State shared by the server's workers and its owner.
pub(crate) struct Shared {
    /// SHA-256 (hex) of the accepted keys; empty: any key.
    key_hashes: Vec<String>,
    state: Mutex<State>,
}

struct State {
    requests: Vec<BedrockRequest>,
    queue: VecDeque<BedrockScenario>,
    allowed_betas: Vec<String>,
    /// Claude names of the models without access.
    disabled: Vec<String>,
    catalog: BedrockCatalog,
    listing_fault: Option<ListingFault>,
}

/// The Claude name a disabled-model entry stands for: the name inside a model id, else the
/// entry itself (`claude-opus-4-1-20250805`).
fn disabled_key(entry: &str) -> String {
    let entry = entry.trim();
    claude_model_name(entry).unwrap_or_else(|| entry.to_owned())
}

impl Shared {
    fn new(keys: &[&str]) -> Self {
        Self {
            key_hashes: keys.iter().map(|k| sha256_hex(k)).collect(),
            state: Mutex::new(State {
                requests: Vec::new(),
                queue: VecDeque::new(),
                allowed_betas: DEFAULT_ALLOWED_BETAS.iter().map(|b| (*b).to_owned()).collect(),
                disabled: Vec::new(),
                catalog: BedrockCatalog::default(),
                listing_fault: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a key with this SHA-256 is accepted.
    pub(crate) fn accepts(&self, key_hash: &str) -> bool {
        self.key_hashes.is_empty() || self.key_hashes.iter().any(|h| h == key_hash)
    }

    pub(crate) fn record(&self, r: BedrockRequest) {
        self.lock().requests.push(r);
    }

    /// The first queued scenario `op` may take (its `operation` unset or `op`).
    pub(crate) fn next_queued(&self, op: BedrockOperation) -> Option<BedrockScenario> {
        let mut st = self.lock();
        let at = st.queue.iter().position(|s| s.operation.is_none_or(|o| o == op))?;
        st.queue.remove(at)
    }

    pub(crate) fn enqueue(&self, s: BedrockScenario) -> usize {
        let mut st = self.lock();
        st.queue.push_back(s);
        st.queue.len()
    }

    pub(crate) fn requests(&self) -> Vec<BedrockRequest> {
        self.lock().requests.clone()
    }

    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        st.requests.clear();
        st.queue.clear();
        st.listing_fault = None;
    }

    /// Whether the model with this Claude name is marked as not enabled.
    pub(crate) fn model_disabled(&self, claude_name: &str) -> bool {
        self.lock().disabled.iter().any(|d| d == claude_name)
    }

    pub(crate) fn set_disabled_models(&self, entries: &[String]) {
        let mut keys: Vec<String> = Vec::new();
        for key in entries.iter().map(|e| disabled_key(e)) {
            if !key.is_empty() && !keys.contains(&key) {
                keys.push(key);
            }
        }
        self.lock().disabled = keys;
    }

    pub(crate) fn disabled_models(&self) -> Vec<String> {
        self.lock().disabled.clone()
    }

    pub(crate) fn catalog(&self) -> BedrockCatalog {
        self.lock().catalog.clone()
    }

    pub(crate) fn set_catalog(&self, catalog: BedrockCatalog) {
        self.lock().catalog = catalog;
    }

    pub(crate) fn listing_fault(&self) -> Option<ListingFault> {
        self.lock().listing_fault.clone()
    }

    pub(crate) fn set_listing_fault(&self, fault: Option<ListingFault>) {
        self.lock().listing_fault = fault;
    }

    pub(crate) fn beta_allowed(&self, beta: &str) -> bool {
        self.lock().allowed_betas.iter().any(|b| b == beta)
    }

    pub(crate) fn set_allowed_betas(&self, betas: Vec<String>) {
        self.lock().allowed_betas = betas;
    }

    pub(crate) fn allowed_betas(&self) -> Vec<String> {
        self.lock().allowed_betas.clone()
    }
}

/// A running fake; dropping it stops the server.
pub struct FakeBedrock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Option<ServerHandle>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FakeBedrock {
    /// Starts on `127.0.0.1` with an ephemeral port, accepting these bearer keys (none: any).
    pub fn start(accepted_keys: &[&str]) -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), accepted_keys)
    }

    /// Starts on `addr`, accepting these bearer keys (none: any).
    pub fn start_on(addr: impl ToSocketAddrs, accepted_keys: &[&str]) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(accepted_keys));
        let (tx, rx) = std::sync::mpsc::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("fake-bedrock".into()).spawn(move || {
            actix_rt::System::new().block_on(async move {
                match build_server(listener, server_shared, false) {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.handle()));
                        server.await
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        Ok(())
                    }
                }
            })
        })?;
        let handle = rx.recv().map_err(|_| io::Error::other("fake_bedrock server thread ended early"))??;
        Ok(Self { addr, shared, handle: Some(handle), thread: Some(thread) })
    }

    /// Runs a fake on `addr` in the current thread until SIGTERM or SIGINT, accepting these
    /// keys (none: any); `on_listening` is told the bound address once it accepts
    /// connections.
    pub fn serve(addr: SocketAddr, accepted_keys: &[&str], on_listening: impl FnOnce(SocketAddr)) -> io::Result<()> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::new(accepted_keys));
        actix_rt::System::new().block_on(async move {
            let server = build_server(listener, shared, true)?;
            on_listening(local);
            server.await
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (the SDK's `endpoint_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far (control endpoints excepted), in order.
    pub fn requests(&self) -> Vec<BedrockRequest> {
        self.shared.requests()
    }

    /// Queues a scripted answer for a later request that passes the checks (first in, first
    /// out).
    pub fn enqueue(&self, scenario: BedrockScenario) {
        self.shared.enqueue(scenario);
    }

    /// Forgets the recorded requests, the queued scenarios and the listing fault (the
    /// catalog, the disabled models and the allowed betas stay).
    pub fn clear(&self) {
        self.shared.reset();
    }

    /// Marks these models as not enabled for the account: `InvokeModel`,
    /// `InvokeModelWithResponseStream` and `CountTokens` on any id of them answer 403
    /// `AccessDeniedException`. Each entry is a model id (any of its profile ids, ARNs or the
    /// foundation model id) or a Claude name (`claude-opus-4-1-20250805`); it stands for the
    /// Claude name inside. Replaces the previous list (empty: every model enabled).
    pub fn set_disabled_models(&self, models: &[&str]) {
        self.shared.set_disabled_models(&models.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>());
    }

    /// The Claude names of the models marked as not enabled.
    pub fn disabled_models(&self) -> Vec<String> {
        self.shared.disabled_models()
    }

    /// Replaces what `ListFoundationModels` and `ListInferenceProfiles` list.
    pub fn set_catalog(&self, catalog: BedrockCatalog) {
        self.shared.set_catalog(catalog);
    }

    /// What the listings list now.
    pub fn catalog(&self) -> BedrockCatalog {
        self.shared.catalog()
    }

    /// Makes the listings fail this way from now on (`None`: answer normally).
    pub fn set_listing_fault(&self, fault: Option<ListingFault>) {
        self.shared.set_listing_fault(fault);
    }

    /// Accepts exactly these `anthropic_beta` values from now on.
    pub fn set_allowed_betas(&self, betas: &[&str]) {
        self.shared.set_allowed_betas(betas.iter().map(|b| (*b).to_owned()).collect());
    }

    /// The `anthropic_beta` values accepted now.
    pub fn allowed_betas(&self) -> Vec<String> {
        self.shared.allowed_betas()
    }
}

impl Drop for FakeBedrock {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // The stop command is sent when `stop` is called; its future only waits for it.
            drop(handle.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Largest request body accepted (Bedrock's own limit is lower; the proxy should not care).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

fn build_server(listener: TcpListener, shared: Arc<Shared>, handle_signals: bool) -> io::Result<actix_server::Server> {
    let mut builder = actix_server::Server::build().workers(1).shutdown_timeout(1);
    if !handle_signals {
        builder = builder.disable_signals();
    }
    let builder = builder.listen("fake-bedrock", listener, move || {
        let data = web::Data::from(Arc::clone(&shared));
        let app = App::new().app_data(data).default_service(web::to(respond::handle));
        let app = actix_service::IntoServiceFactory::into_factory(app).map_err(|err| err.error_response());
        let http = HttpService::build().h1(map_config(app, |_| AppConfig::default()));
        fn_service(|io: actix_rt::net::TcpStream| {
            let peer = io.peer_addr().ok();
            std::future::ready(Ok((io, peer)))
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}
