//! Replaying a Messages request on Amazon Bedrock (InvokeModel / InvokeModelWithResponseStream)
//! with the access key's Bedrock API key as bearer token, and answering as Anthropic would: the
//! Bedrock stream is re-emitted as Anthropic SSE, Bedrock-only fields dropped.

use std::time::Duration;

use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{Region, Token};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use aws_sdk_bedrockruntime::types::ResponseStream;
use bytes::Bytes;
use ccp_runtime::config::BedrockSettings;
use ccp_schemas::events::ErrorClass;
use ccp_schemas::secrets::envelope::BedrockApiKey;
use futures_util::Stream;
use serde_json::{Map, Value};

/// The `anthropic_version` Bedrock requires.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
/// Bedrock adds this to the last stream event and to JSON answers; Anthropic does not.
const INVOCATION_METRICS: &str = "amazon-bedrock-invocationMetrics";

/// What the request asks for, after adaptation for Bedrock.
#[derive(Debug)]
pub struct BedrockRequest {
    /// The body to send.
    pub body: Vec<u8>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The body's `max_tokens` (for the budget's reservation).
    pub max_tokens: Option<u64>,
}

/// The body rules of [`BedrockSettings`], ready to use.
#[derive(Debug, Clone)]
pub struct Rules {
    allowed_betas: Vec<String>,
    drop_fields: Vec<String>,
    drop_tool_fields: Vec<String>,
}

impl From<&BedrockSettings> for Rules {
    fn from(s: &BedrockSettings) -> Self {
        Self {
            allowed_betas: s.allowed_betas.clone(),
            drop_fields: s.drop_fields.clone(),
            drop_tool_fields: s.drop_tool_fields.clone(),
        }
    }
}

impl Rules {
    /// Adapts an Anthropic Messages body for Bedrock: drops `model`, `stream` and the configured
    /// fields, adds `anthropic_version`, and rebuilds `anthropic_beta` from the betas the client
    /// asked for (header or body) that are in the allowed list — a body's own `anthropic_beta`
    /// never reaches Bedrock unfiltered. Everything else (thinking, cache_control, images,
    /// tools, tool results) is kept as is.
    pub fn adapt(&self, body: &[u8], beta_header: Option<&str>) -> Result<BedrockRequest, String> {
        let mut map: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| format!("the request body is not a JSON object: {e}"))?;
        let stream = map.remove("stream").and_then(|v| v.as_bool()).unwrap_or(false);
        let max_tokens = map.get("max_tokens").and_then(Value::as_u64);
        map.remove("model");
        for field in &self.drop_fields {
            map.remove(field);
        }
        if let Some(Value::Array(tools)) = map.get_mut("tools") {
            for tool in tools.iter_mut().filter_map(Value::as_object_mut) {
                for field in &self.drop_tool_fields {
                    tool.remove(field);
                }
            }
        }
        let from_body = match map.remove("anthropic_beta") {
            Some(Value::Array(list)) => list.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Some(Value::String(one)) => vec![one],
            _ => Vec::new(),
        };
        let mut betas: Vec<Value> = Vec::new();
        let asked = beta_header.into_iter().flat_map(|h| h.split(',')).map(str::trim);
        for beta in asked.chain(from_body.iter().map(String::as_str)) {
            let allowed = self.allowed_betas.iter().any(|a| a == beta);
            if allowed && !betas.iter().any(|b| b.as_str() == Some(beta)) {
                betas.push(Value::String(beta.to_owned()));
            }
        }
        if !betas.is_empty() {
            map.insert("anthropic_beta".into(), Value::Array(betas));
        }
        map.insert("anthropic_version".into(), Value::String(BEDROCK_ANTHROPIC_VERSION.into()));
        let body = serde_json::to_vec(&map).map_err(|e| e.to_string())?;
        Ok(BedrockRequest { body, stream, max_tokens })
    }
}

/// A Bedrock failure, classified.
#[derive(Debug, Clone)]
pub struct BedrockFailure {
    /// The label.
    pub class: ErrorClass,
    /// Bedrock's error code and message (no secrets: Bedrock never echoes the key), for the
    /// log; it may name the AWS account and IAM principal, so developers get
    /// [`BedrockFailure::public_detail`].
    pub detail: String,
}

impl BedrockFailure {
    /// The detail as a developer may see it: ARNs, AWS account ids and IAM principals
    /// replaced (an `AccessDeniedException` names the role and account behind the key).
    pub fn public_detail(&self) -> String {
        redact_aws_identities(&self.detail)
    }
}

/// `text` with every ARN, 12-digit AWS account id and `User:`/`principal` name replaced.
pub fn redact_aws_identities(text: &str) -> String {
    let mut out = Vec::new();
    let mut words = text.split(' ').peekable();
    while let Some(word) = words.next() {
        let lower = word.to_ascii_lowercase();
        let digits = word.bytes().filter(u8::is_ascii_digit).count();
        let arn = lower.contains("arn:aws");
        let account = word.as_bytes().windows(12).any(|w| w.iter().all(u8::is_ascii_digit)) && digits >= 12;
        if arn {
            out.push("<arn>".to_owned());
        } else if account {
            out.push("<account>".to_owned());
        } else {
            out.push(word.to_owned());
        }
        // `User: name` / `principal name`: the name that follows.
        if (lower == "user:" || lower == "principal") && words.peek().is_some() {
            words.next();
            out.push("<principal>".to_owned());
        }
    }
    out.join(" ")
}

/// Classifies an error by its AWS error code.
fn classify(code: Option<&str>, message: Option<&str>, fallback: &str) -> BedrockFailure {
    let class = match code.unwrap_or_default() {
        "UnrecognizedClientException"
        | "AccessDeniedException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "MissingAuthenticationTokenException" => ErrorClass::BedrockAuthError,
        "ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException" => {
            ErrorClass::BedrockQuotaExceeded
        }
        "ValidationException" | "ResourceNotFoundException" => ErrorClass::BedrockValidation,
        "ModelErrorException" | "ModelStreamErrorException" | "ModelTimeoutException" => ErrorClass::BedrockModelError,
        _ => ErrorClass::BedrockUnavailable,
    };
    let detail = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => fallback.to_owned(),
    };
    BedrockFailure { class, detail: detail.chars().take(500).collect() }
}

fn sdk_failure<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> BedrockFailure {
    match err {
        SdkError::ServiceError(e) => classify(e.err().code(), e.err().message(), "Bedrock error"),
        SdkError::TimeoutError(_) => classify(None, Some("Bedrock did not answer in time"), ""),
        // The cause (refused by the egress proxy, an untrusted certificate, …) is in the chain.
        SdkError::DispatchFailure(failure) => {
            let cause = failure.as_connector_error().map(|e| error_chain(e)).unwrap_or_default();
            classify(None, Some(&format!("{UNREACHABLE}: {cause}")), "")
        }
        other => classify(other.code(), other.message(), "Bedrock answered unexpectedly"),
    }
}

/// How a failure to reach Bedrock starts.
const UNREACHABLE: &str = "Bedrock could not be reached";

/// An error and its sources, `: `-separated, each said once.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// What Bedrock answered.
pub enum Answer {
    /// A whole message (JSON).
    Json {
        /// The body, Bedrock-only fields removed.
        body: Bytes,
        /// Bedrock's request id.
        request_id: Option<String>,
    },
    /// An event stream.
    Stream {
        /// The events as Anthropic SSE bytes.
        events: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, BedrockFailure>>>>,
        /// Bedrock's request id.
        request_id: Option<String>,
    },
}

/// One InvokeModel or InvokeModelWithResponseStream call, whose builders share no trait: the
/// model, the JSON body and this call's overrides (key, region); the output or the classified
/// failure.
macro_rules! send {
    ($builder:expr, $model_id:expr, $body:expr, $overrides:expr) => {
        $builder
            .model_id($model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new($body))
            .customize()
            .config_override($overrides)
            .send()
            .await
            .map_err(|e| sdk_failure(&e))
    };
}

/// Bedrock's request id of an answer.
fn request_id(out: &impl aws_sdk_bedrockruntime::operation::RequestId) -> Option<String> {
    out.request_id().map(str::to_owned)
}

/// The SDK client (retries off; we fail over ourselves); clones share its connections.
#[derive(Clone)]
pub struct BedrockClient {
    client: aws_sdk_bedrockruntime::Client,
    /// The configured endpoint (`None`: AWS's regional one), to name a failed connection.
    endpoint: Option<String>,
    egress: std::sync::Arc<ccp_runtime::egress::Egress>,
}

impl BedrockClient {
    /// A client for `endpoint_url` (or AWS's), with no retries and Bedrock-sized timeouts,
    /// connecting as `egress` says.
    pub fn new(
        endpoint_url: Option<&str>,
        default_region: &str,
        connect_timeout: Duration,
        timeout: Duration,
        egress: &std::sync::Arc<ccp_runtime::egress::Egress>,
    ) -> Result<Self, ccp_runtime::egress::EgressError> {
        let timeouts = TimeoutConfig::builder().connect_timeout(connect_timeout).read_timeout(timeout).build();
        Ok(Self {
            client: ccp_runtime::bedrock::client(endpoint_url, default_region, timeouts, egress)?,
            endpoint: endpoint_url.map(str::to_owned),
            egress: egress.clone(),
        })
    }

    /// `failure` naming the connection when Bedrock could not be reached: the host, and the
    /// egress proxy it went through (the AWS SDK's own text says only "tunnel error").
    fn named(&self, mut failure: BedrockFailure, region: &str) -> BedrockFailure {
        if !failure.detail.starts_with(UNREACHABLE) {
            return failure;
        }
        let authority = match &self.endpoint {
            Some(url) => ccp_runtime::egress::authority(url).to_owned(),
            None => format!("bedrock-runtime.{region}.amazonaws.com"),
        };
        let default_port = if self.endpoint.as_deref().is_some_and(|u| u.starts_with("http://")) { 80 } else { 443 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (host, port.parse().unwrap_or(default_port)),
            _ => (authority.as_str(), default_port),
        };
        let via = self.egress.proxy_for(host, port).map(|p| format!(" through {p}")).unwrap_or_default();
        failure.detail = format!("{} (connecting to {host}:{port}{via})", failure.detail);
        failure
    }

    /// Calls Bedrock with `api_key` in `region` on `model_id`.
    pub async fn invoke(
        &self,
        api_key: &BedrockApiKey,
        region: &str,
        model_id: &str,
        request: BedrockRequest,
    ) -> Result<Answer, BedrockFailure> {
        let overrides = aws_sdk_bedrockruntime::Config::builder()
            .bearer_token(Token::new(api_key.expose().to_owned(), None))
            .region(Region::new(region.to_owned()));
        if request.stream {
            let out = send!(self.client.invoke_model_with_response_stream(), model_id, request.body, overrides)
                .map_err(|f| self.named(f, region))?;
            let request_id = request_id(&out);
            let receiver = out.body;
            let events = futures_util::stream::unfold((receiver, false), |(mut rx, done)| async move {
                if done {
                    return None;
                }
                match rx.recv().await {
                    Ok(Some(ResponseStream::Chunk(part))) => {
                        let bytes = part.bytes.map(Blob::into_inner).unwrap_or_default();
                        Some((Ok(sse_event(&bytes)), (rx, false)))
                    }
                    // Unknown event kinds carry nothing for the client: skip them.
                    Ok(Some(_)) => Some((Ok(Bytes::new()), (rx, false))),
                    Ok(None) => None,
                    Err(e) => {
                        let failure = match &e {
                            SdkError::ServiceError(se) => stream_failure(se.err()),
                            other => classify(None, Some(&other.to_string()), ""),
                        };
                        Some((Err(failure), (rx, true)))
                    }
                }
            });
            Ok(Answer::Stream { events: Box::pin(events), request_id })
        } else {
            let out = send!(self.client.invoke_model(), model_id, request.body, overrides)
                .map_err(|f| self.named(f, region))?;
            Ok(Answer::Json { request_id: request_id(&out), body: strip_metrics(out.body.into_inner()) })
        }
    }
}

fn stream_failure(e: &ResponseStreamError) -> BedrockFailure {
    let code = match e {
        ResponseStreamError::ModelStreamErrorException(_) => Some("ModelStreamErrorException"),
        ResponseStreamError::ThrottlingException(_) => Some("ThrottlingException"),
        ResponseStreamError::ValidationException(_) => Some("ValidationException"),
        ResponseStreamError::ModelTimeoutException(_) => Some("ModelTimeoutException"),
        ResponseStreamError::InternalServerException(_) => Some("InternalServerException"),
        ResponseStreamError::ServiceUnavailableException(_) => Some("ServiceUnavailableException"),
        _ => e.code(),
    };
    classify(code, e.message(), "Bedrock stream error")
}

/// Removes Bedrock's invocation metrics from a JSON document (if present).
fn strip_metrics(json: Vec<u8>) -> Bytes {
    if !contains(&json, INVOCATION_METRICS.as_bytes()) {
        return Bytes::from(json);
    }
    match serde_json::from_slice::<Map<String, Value>>(&json) {
        Ok(mut map) => {
            map.remove(INVOCATION_METRICS);
            serde_json::to_vec(&map).map(Bytes::from).unwrap_or_default()
        }
        Err(_) => Bytes::from(json),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One Bedrock chunk (an Anthropic stream event as JSON) as one SSE event, named by its `type`.
/// A line break in the chunk (JSON whitespace, or bytes that are not JSON) continues the data on
/// another `data:` line, and a `type` holding one names the event `message`, so a chunk can
/// never end its event early or inject another (found by the `bedrock_eventstream` fuzz target).
pub(crate) fn sse_event(json: &[u8]) -> Bytes {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    let data = strip_metrics(json.to_vec());
    let name = serde_json::from_slice::<Typed<'_>>(&data)
        .ok()
        .and_then(|t| t.kind.map(|k| k.into_owned()))
        .filter(|k| !k.contains(['\r', '\n']))
        .unwrap_or_else(|| "message".into());
    let mut out = Vec::with_capacity(data.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    // SSE ends a line at CRLF, LF or CR.
    for line in data.split(|&b| b == b'\n') {
        for part in line.strip_suffix(b"\r").unwrap_or(line).split(|&b| b == b'\r') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(part);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// The in-stream error event Anthropic sends when a stream fails after it started.
pub fn sse_error(failure: &BedrockFailure) -> Bytes {
    let kind = match failure.class {
        ErrorClass::BedrockQuotaExceeded => "overloaded_error",
        _ => "api_error",
    };
    let json = serde_json::json!({"type": "error", "error": {"type": kind, "message": failure.public_detail()}});
    Bytes::from(format!("event: error\ndata: {json}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::from(&BedrockSettings::default())
    }

    #[test]
    fn a_body_beta_cannot_bypass_the_allowed_list() {
        let body = br#"{"model":"m","max_tokens":5,"messages":[],"anthropic_beta":["dangerous-beta-2099-01-01","context-1m-2025-08-07"]}"#;
        let adapted = rules().adapt(body, Some("interleaved-thinking-2025-05-14, not-allowed")).unwrap();
        let out: Map<String, Value> = serde_json::from_slice(&adapted.body).unwrap();
        assert_eq!(
            out["anthropic_beta"],
            serde_json::json!(["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"])
        );
        let body = br#"{"model":"m","max_tokens":5,"messages":[],"anthropic_beta":"dangerous-beta-2099-01-01"}"#;
        let out: Map<String, Value> = serde_json::from_slice(&rules().adapt(body, None).unwrap().body).unwrap();
        assert!(!out.contains_key("anthropic_beta"), "{out:?}");
    }

    #[test]
    fn aws_identities_are_not_relayed_to_developers() {
        let failure = classify(
            Some("AccessDeniedException"),
            Some("User: arn:aws:iam::123456789012:user/bedrock-ci is not authorized to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/x because no identity-based policy allows it (account 123456789012)"),
            "",
        );
        let public = failure.public_detail();
        assert!(
            !public.contains("123456789012") && !public.contains("bedrock-ci") && !public.contains("arn:"),
            "{public}"
        );
        assert!(public.starts_with("AccessDeniedException: User: <principal> is not authorized"), "{public}");
        assert!(failure.detail.contains("123456789012"), "the log keeps the detail");
        let sse = String::from_utf8(sse_error(&failure).to_vec()).unwrap();
        assert!(!sse.contains("123456789012"), "{sse}");
        assert_eq!(redact_aws_identities("Too many tokens, please wait."), "Too many tokens, please wait.");
    }

    #[test]
    fn claude_code_bodies_are_adapted_and_keep_their_content() {
        let path =
            format!("{}/../tests/fixtures/claude-code/tool_roundtrip_bash_v2.1.332.json", env!("CARGO_MANIFEST_DIR"));
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for request in fixture.as_array().unwrap() {
            let body = serde_json::to_vec(&request["body"]).unwrap();
            let beta = request["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h[0] == "anthropic-beta")
                .and_then(|h| h[1].as_str());
            let adapted = rules().adapt(&body, beta).unwrap();
            assert!(adapted.stream);
            let out: Map<String, Value> = serde_json::from_slice(&adapted.body).unwrap();
            assert_eq!(out["anthropic_version"], BEDROCK_ANTHROPIC_VERSION);
            for gone in ["model", "stream", "metadata", "context_management", "output_config"] {
                assert!(!out.contains_key(gone), "{gone} kept");
            }
            let betas: Vec<&str> =
                out["anthropic_beta"].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
            assert_eq!(betas, vec!["interleaved-thinking-2025-05-14"]);
            assert!(out["tools"].as_array().unwrap().iter().all(|t| t.get("defer_loading").is_none()));
            // Messages, system blocks (with cache_control), thinking and tools arrive intact.
            assert_eq!(out["messages"], request["body"]["messages"]);
            assert_eq!(out["system"], request["body"]["system"]);
            assert_eq!(out["thinking"], request["body"]["thinking"]);
            assert_eq!(out["tools"].as_array().unwrap().len(), request["body"]["tools"].as_array().unwrap().len());
        }
    }

    #[test]
    fn stream_chunks_become_anthropic_sse_without_bedrock_metrics() {
        let chunk = br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":1}}"#;
        let sse = String::from_utf8(sse_event(chunk).to_vec()).unwrap();
        assert_eq!(sse, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        let delta = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#;
        let sse = String::from_utf8(sse_event(delta).to_vec()).unwrap();
        assert_eq!(sse, format!("event: content_block_delta\ndata: {}\n\n", String::from_utf8_lossy(delta)));
    }

    #[test]
    fn errors_are_classified_by_code() {
        assert_eq!(classify(Some("UnrecognizedClientException"), None, "").class, ErrorClass::BedrockAuthError);
        assert_eq!(classify(Some("ThrottlingException"), None, "").class, ErrorClass::BedrockQuotaExceeded);
        assert_eq!(classify(Some("ValidationException"), Some("bad"), "").class, ErrorClass::BedrockValidation);
        assert_eq!(classify(Some("ModelStreamErrorException"), None, "").class, ErrorClass::BedrockModelError);
        assert_eq!(classify(Some("ServiceUnavailableException"), None, "").class, ErrorClass::BedrockUnavailable);
        assert_eq!(classify(None, None, "x").class, ErrorClass::BedrockUnavailable);
    }
}
