//! Answers: authentication, routing, Bedrock's request checks, scenario selection, and the
//! wire format (JSON messages, event-stream chunks, AWS error shapes).
//!
//! The answer-building rules (`run:` → Bash `tool_use`, `tool_result` → "Tool said: …", text
//! deltas of whole words, tool input in up to 4 JSON pieces) are those of
//! `fake_anthropic/respond.rs`, duplicated here in small because they are private there.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::catalog::{self, BedrockCatalog};
use super::eventstream;
use super::{
    sha256_hex, BedrockOperation, BedrockRequest, BedrockScenario, BedrockScenarioName, ListingFault, ListingFaultKind,
    Shared, Usage, ACCEPTED_BODY_KEYS, ANTHROPIC_VERSION, BODY_LIMIT, CATALOG_ACCOUNT_ID, DEFAULT_TEXT,
    LISTING_GARBAGE, LISTING_HANG_MS, MODEL_ACCESS_DENIED,
};
use crate::fake_anthropic::respond::{
    input_tokens, json_pieces, offers_bash, run_command, text_pieces, tool_result_text, words,
};

/// The qualifier Bedrock appends to `x-amzn-ErrorType` for its own errors.
const BEDROCK_QUALIFIER: &str = ":http://internal.amazon.com/coral/com.amazon.bedrock/";
/// The qualifier of the errors of AWS's front door (authentication, routing).
const CORAL_QUALIFIER: &str = ":http://internal.amazon.com/coral/com.amazon.coral.service/";

/// The one handler: every method and path.
pub(crate) async fn handle(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let started = Instant::now();
    let Some(shared) = req.app_data::<web::Data<Shared>>().cloned() else {
        return HttpResponse::InternalServerError().finish();
    };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let body = match payload.to_bytes_limited(BODY_LIMIT).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Plan::error(400, "ValidationException", &e.to_string()).into_response(started),
        Err(_) => {
            return Plan::error(413, "ValidationException", "Request body exceeds the maximum size.")
                .into_response(started)
        }
    };
    if let Some(control) = path.strip_prefix("/_fake/") {
        return control_endpoint(&shared, &method, control, &body);
    }
    let raw_headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let route = Route::parse(&method, &path);
    let key = bearer_key(&raw_headers);
    let key_sha256 = key.map(sha256_hex);
    let key_accepted = key_sha256.as_deref().is_some_and(|h| shared.accepts(h));
    let query = req.query_string().to_owned();
    let mut plan = plan(&shared, &raw_headers, key_sha256.is_some(), key_accepted, &route, &query, &body);
    shared.record(BedrockRequest {
        method,
        path,
        query,
        model_id: route.model_id.clone(),
        operation: route.op,
        streaming: route.op == Some(BedrockOperation::InvokeModelWithResponseStream),
        headers: redact(raw_headers),
        body: body.to_vec(),
        key_sha256,
        key_accepted,
        status: plan.status,
        error_type: plan.error_type.clone(),
        usage: plan.usage,
        scenario: plan.scenario.take(),
    });
    if !plan.delay.is_zero() {
        actix_rt::time::sleep(plan.delay).await;
    }
    plan.into_response(started)
}

fn control_endpoint(shared: &Shared, method: &str, what: &str, body: &[u8]) -> HttpResponse {
    let ok = |v: &Value| json_response(StatusCode::OK, v);
    let bad = |msg: String| json_response(StatusCode::BAD_REQUEST, &json!({ "message": msg }));
    match (method, what) {
        ("POST", "enqueue") => {
            let parsed: Result<Vec<BedrockScenario>, _> = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(items)) => items.into_iter().map(serde_json::from_value).collect(),
                Ok(one) => serde_json::from_value(one).map(|s| vec![s]),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(list) => {
                    let mut queued = 0;
                    for s in list {
                        queued = shared.enqueue(s);
                    }
                    ok(&json!({ "queued": queued }))
                }
                Err(e) => bad(format!("not a scenario: {e}")),
            }
        }
        ("GET", "requests") => {
            #[derive(Serialize)]
            struct View<'a> {
                #[serde(flatten)]
                request: &'a BedrockRequest,
                body_json: Option<Value>,
            }
            let requests = shared.requests();
            let views: Vec<View<'_>> = requests.iter().map(|r| View { request: r, body_json: r.body_json() }).collect();
            json_response(StatusCode::OK, &views)
        }
        ("POST", "reset") => {
            shared.reset();
            ok(&json!({ "ok": true }))
        }
        ("POST", "allowed_betas") => match serde_json::from_slice::<Vec<String>>(body) {
            Ok(betas) => {
                shared.set_allowed_betas(betas);
                ok(&json!({ "allowed_betas": shared.allowed_betas() }))
            }
            Err(e) => bad(format!("not a list of strings: {e}")),
        },
        ("GET", "allowed_betas") => ok(&json!({ "allowed_betas": shared.allowed_betas() })),
        ("POST", "disabled_models") => match serde_json::from_slice::<Vec<String>>(body) {
            Ok(models) => {
                shared.set_disabled_models(&models);
                ok(&json!({ "disabled_models": shared.disabled_models() }))
            }
            Err(e) => bad(format!("not a list of strings: {e}")),
        },
        ("GET", "disabled_models") => ok(&json!({ "disabled_models": shared.disabled_models() })),
        ("POST", "catalog") => {
            let parsed = match serde_json::from_slice::<Value>(body) {
                Ok(Value::String(s)) if s == "default" => Ok(BedrockCatalog::default()),
                Ok(v) => serde_json::from_value::<BedrockCatalog>(v),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(catalog) => {
                    let counts = json!({
                        "modelSummaries": catalog.model_summaries.len(),
                        "inferenceProfileSummaries": catalog.inference_profile_summaries.len(),
                    });
                    shared.set_catalog(catalog);
                    ok(&counts)
                }
                Err(e) => bad(format!("not a catalog: {e}")),
            }
        }
        ("GET", "catalog") => json_response(StatusCode::OK, &shared.catalog()),
        ("POST", "listing_fault") => {
            let parsed = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Null) => Ok(None),
                Ok(Value::Object(m)) if m.get("fault").is_none_or(Value::is_null) => Ok(None),
                Ok(v) => serde_json::from_value::<ListingFault>(v).map(Some),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(fault) => {
                    shared.set_listing_fault(fault);
                    ok(&json!({ "listing_fault": shared.listing_fault() }))
                }
                Err(e) => bad(format!("not a listing fault: {e}")),
            }
        }
        ("GET", "listing_fault") => ok(&json!({ "listing_fault": shared.listing_fault() })),
        _ => json_response(StatusCode::NOT_FOUND, &json!({ "message": "Not found" })),
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    HttpResponse::build(status).content_type("application/json").body(serde_json::to_vec(value).unwrap_or_default())
}

/// The key of `Authorization: Bearer <key>`, if that is the header's form.
fn bearer_key(headers: &[(String, String)]) -> Option<&str> {
    let value = header(headers, "authorization")?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The headers with credentials replaced by `<redacted>`.
fn redact(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(n, v)| {
            if n.eq_ignore_ascii_case("authorization") {
                let scheme = v.split_whitespace().next().unwrap_or("").to_owned();
                (n, format!("{scheme} <redacted>").trim().to_owned())
            } else if n.eq_ignore_ascii_case("x-amz-security-token") {
                (n, "<redacted>".to_owned())
            } else {
                (n, v)
            }
        })
        .collect()
}

/// Which operation a request asks for.
struct Route {
    /// The decoded model id of a `/model/{modelId}/…` path.
    model_id: Option<String>,
    /// The operation (`None`: the method or path is none of the fake's).
    op: Option<BedrockOperation>,
}

impl Route {
    fn parse(method: &str, path: &str) -> Self {
        match path {
            "/inference-profiles" => {
                return Self {
                    model_id: None,
                    op: (method == "GET").then_some(BedrockOperation::ListInferenceProfiles),
                }
            }
            "/foundation-models" => {
                return Self { model_id: None, op: (method == "GET").then_some(BedrockOperation::ListFoundationModels) }
            }
            _ => {}
        }
        let parsed = path.strip_prefix("/model/").and_then(|rest| {
            let (id, op) = rest.rsplit_once('/')?;
            let op = match op {
                "invoke" => BedrockOperation::InvokeModel,
                "invoke-with-response-stream" => BedrockOperation::InvokeModelWithResponseStream,
                "count-tokens" => BedrockOperation::CountTokens,
                _ => return None,
            };
            Some((percent_decode(id)?, op))
        });
        match parsed {
            Some((id, op)) => Self { model_id: Some(id), op: (method == "POST").then_some(op) },
            None => Self { model_id: None, op: None },
        }
    }
}

/// `%XX`-decodes a path segment; `None` if it is not valid UTF-8 or has a bad escape.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The geography prefixes of Bedrock's cross-region inference profiles (`global.` routes
/// worldwide).
const INFERENCE_PROFILE_PREFIXES: &[&str] = &["global", "us", "us-gov", "eu", "apac", "jp", "au", "ca"];

/// The Claude model name inside a Bedrock model id (`[prefix.]anthropic.claude-…[-vN[:M]]`,
/// or an ARN ending in one), e.g. `global.anthropic.claude-sonnet-4-5-20250929-v1:0` →
/// `claude-sonnet-4-5-20250929`; `None` for anything else.
pub fn claude_model_name(model_id: &str) -> Option<String> {
    let id = if model_id.starts_with("arn:") { model_id.rsplit('/').next()? } else { model_id };
    let at = id.find("anthropic.claude")?;
    let prefix = &id[..at];
    if !prefix.is_empty() && !INFERENCE_PROFILE_PREFIXES.contains(&prefix.strip_suffix('.')?) {
        return None;
    }
    let name = id[at..].strip_prefix("anthropic.")?;
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')) {
        return None;
    }
    let name = name.split(':').next().unwrap_or(name);
    let name = match name.rsplit_once("-v") {
        Some((base, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => base,
        _ => name,
    };
    (name.len() > "claude".len()).then(|| name.to_owned())
}

/// What to answer.
struct Plan {
    status: u16,
    error_type: Option<String>,
    headers: Vec<(String, String)>,
    /// A JSON body (message or error), or `None` for a stream.
    json: Option<Vec<u8>>,
    /// Event-stream messages of a streamed answer.
    stream: Vec<Part>,
    usage: Option<Usage>,
    /// Usage for the invocation metrics and token-count headers.
    metrics: Option<Usage>,
    scenario: Option<BedrockScenario>,
    delay: Duration,
    pace: Duration,
}

/// One event-stream message to send.
enum Part {
    /// A `chunk` event carrying one Anthropic streaming event.
    Event(Value),
    /// An exception message.
    Exception { kind: String, message: String },
}

impl Plan {
    fn new(status: u16) -> Self {
        Self {
            status,
            error_type: None,
            headers: Vec::new(),
            json: None,
            stream: Vec::new(),
            usage: None,
            metrics: None,
            scenario: None,
            delay: Duration::ZERO,
            pace: Duration::ZERO,
        }
    }

    /// An AWS REST-JSON error: `{"message": …}` with `x-amzn-ErrorType`.
    fn error(status: u16, kind: &str, message: &str) -> Self {
        let qualifier = match kind {
            "UnrecognizedClientException" | "MissingAuthenticationTokenException" | "UnknownOperationException" => {
                CORAL_QUALIFIER
            }
            _ => BEDROCK_QUALIFIER,
        };
        let mut plan = Self::new(status);
        plan.error_type = Some(kind.to_owned());
        plan.headers.push(("x-amzn-ErrorType".into(), format!("{kind}{qualifier}")));
        plan.json = Some(serde_json::to_vec(&json!({ "message": message })).unwrap_or_default());
        plan
    }

    fn into_response(self, started: Instant) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut b = HttpResponse::build(status);
        b.insert_header(("x-amzn-requestid", request_id()));
        for (n, v) in &self.headers {
            b.append_header((n.as_str(), v.as_str()));
        }
        if let Some(body) = self.json {
            if let (Some(u), true) = (self.metrics, status.is_success()) {
                let latency = started.elapsed().as_millis().max(1).to_string();
                b.insert_header(("x-amzn-bedrock-invocation-latency", latency));
                for (n, v) in token_headers(&u) {
                    b.insert_header((n, v));
                }
            }
            return b.content_type("application/json").body(body);
        }
        b.content_type("application/vnd.amazon.eventstream");
        b.insert_header(("x-amzn-bedrock-content-type", "application/json"));
        let state = StreamState {
            parts: self.stream.into(),
            first: true,
            pace: self.pace,
            started,
            first_byte_ms: None,
            metrics: self.metrics.unwrap_or_default(),
            seq: 0,
        };
        b.streaming(futures_util::stream::unfold(state, next_message))
    }
}

/// The `x-amzn-bedrock-*-token-count` headers of a usage.
fn token_headers(u: &Usage) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("x-amzn-bedrock-input-token-count", u.input_tokens.to_string()),
        ("x-amzn-bedrock-output-token-count", u.output_tokens.to_string()),
    ];
    if u.cache_read_input_tokens > 0 {
        out.push(("x-amzn-bedrock-cache-read-input-token-count", u.cache_read_input_tokens.to_string()));
    }
    if u.cache_creation_input_tokens > 0 {
        out.push(("x-amzn-bedrock-cache-write-input-token-count", u.cache_creation_input_tokens.to_string()));
    }
    out
}

struct StreamState {
    parts: VecDeque<Part>,
    first: bool,
    pace: Duration,
    started: Instant,
    first_byte_ms: Option<u128>,
    metrics: Usage,
    seq: usize,
}

/// The next event-stream message of a streamed answer.
async fn next_message(mut st: StreamState) -> Option<(io::Result<Bytes>, StreamState)> {
    let part = st.parts.pop_front()?;
    if !st.first && !st.pace.is_zero() {
        actix_rt::time::sleep(st.pace).await;
    }
    st.first = false;
    let elapsed = st.started.elapsed().as_millis().max(1);
    let first_byte = *st.first_byte_ms.get_or_insert(elapsed);
    st.seq += 1;
    let frame = match part {
        Part::Event(mut event) => {
            if event.get("type").and_then(Value::as_str) == Some("message_stop") {
                let u = st.metrics;
                let mut m = json!({
                    "inputTokenCount": u.input_tokens,
                    "outputTokenCount": u.output_tokens,
                    "invocationLatency": u64::try_from(elapsed).unwrap_or(u64::MAX),
                    "firstByteLatency": u64::try_from(first_byte).unwrap_or(u64::MAX),
                });
                if u.cache_read_input_tokens > 0 {
                    m["cacheReadInputTokenCount"] = json!(u.cache_read_input_tokens);
                }
                if u.cache_creation_input_tokens > 0 {
                    m["cacheWriteInputTokenCount"] = json!(u.cache_creation_input_tokens);
                }
                event["amazon-bedrock-invocationMetrics"] = m;
            }
            let bytes =
                base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&event).unwrap_or_default());
            // Bedrock pads chunk payloads with a `p` field of varying length.
            let payload = json!({ "bytes": bytes, "p": padding(st.seq) });
            eventstream::encode(
                &[(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
                &serde_json::to_vec(&payload).unwrap_or_default(),
            )
        }
        Part::Exception { kind, message } => eventstream::encode(
            &[
                (":exception-type", kind.as_str()),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            &serde_json::to_vec(&json!({ "message": message })).unwrap_or_default(),
        ),
    };
    Some((Ok(Bytes::from(frame)), st))
}

/// Padding of varying length, like the `p` field of Bedrock's chunks.
fn padding(seq: usize) -> &'static str {
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    &ALPHABET[..(seq * 7) % ALPHABET.len() + 1]
}

fn plan(
    shared: &Shared,
    headers: &[(String, String)],
    key_sent: bool,
    key_accepted: bool,
    route: &Route,
    query: &str,
    body: &[u8],
) -> Plan {
    if !key_sent {
        if header(headers, "authorization").is_none() {
            return Plan::error(403, "MissingAuthenticationTokenException", "Missing Authentication Token");
        }
        return unrecognized();
    }
    if !key_accepted {
        return unrecognized();
    }
    let Some(op) = route.op else {
        return Plan::error(404, "UnknownOperationException", "Unknown operation");
    };
    if op.is_listing() {
        return listing(shared, op, query);
    }
    let Some(model) = route.model_id.as_deref().and_then(claude_model_name) else {
        return Plan::error(400, "ValidationException", "The provided model identifier is invalid.");
    };
    if shared.model_disabled(&model) {
        return Plan::error(403, "AccessDeniedException", MODEL_ACCESS_DENIED);
    }
    if op == BedrockOperation::CountTokens {
        return count_tokens(shared, body);
    }
    let request = match validate_body(body).and_then(|r| check_betas(shared, r)) {
        Ok(v) => v,
        Err(message) => return Plan::error(400, "ValidationException", &message),
    };
    let scenario = shared.next_queued(op).unwrap_or_default();
    let mut plan = answer(&request, body, &scenario, &model, op == BedrockOperation::InvokeModelWithResponseStream);
    plan.delay = scenario_delay(&scenario);
    plan.pace = Duration::from_millis(scenario.pace_ms.unwrap_or(0));
    plan.scenario = Some(scenario);
    plan
}

/// The delay before the headers a scenario asks for.
fn scenario_delay(s: &BedrockScenario) -> Duration {
    Duration::from_millis(s.delay_ms.unwrap_or(if s.name == BedrockScenarioName::Slow { 1000 } else { 0 }))
}

/// The request, if its `anthropic_beta` values are all allowed; else Bedrock's message.
fn check_betas(shared: &Shared, request: Value) -> Result<Value, String> {
    if let Some(Value::Array(betas)) = request.get("anthropic_beta") {
        if !betas.iter().all(|b| b.as_str().is_some_and(|b| shared.beta_allowed(b))) {
            return Err("invalid beta flag".to_owned());
        }
    }
    Ok(request)
}

/// `CountTokens`: the input is checked (an `invokeModel` body as `InvokeModel`'s), then the
/// next scenario answers an error or `{"inputTokens": N}`.
fn count_tokens(shared: &Shared, body: &[u8]) -> Plan {
    let counted = match count_input(body).and_then(|(n, request)| match request {
        Some(r) => check_betas(shared, r).map(|_| n),
        None => Ok(n),
    }) {
        Ok(n) => n,
        Err(message) => return Plan::error(400, "ValidationException", &message),
    };
    let scenario = shared.next_queued(BedrockOperation::CountTokens).unwrap_or_default();
    let mut plan = match scenario_error(&scenario, false) {
        Some(error) => error,
        None => {
            let n = scenario.usage.map_or(counted, |u| u.input_tokens);
            let mut plan = Plan::new(200);
            plan.json = Some(serde_json::to_vec(&json!({ "inputTokens": n })).unwrap_or_default());
            plan.usage = Some(Usage { input_tokens: n, ..Usage::default() });
            plan
        }
    };
    plan.delay = scenario_delay(&scenario);
    plan.scenario = Some(scenario);
    plan
}

/// The estimate of a `CountTokens` body, and the Claude request of an `invokeModel` input.
///
/// `invokeModel`: `body` is base64 of a request `InvokeModel` would accept (same checks); the
/// count is what `InvokeModel` reports as `input_tokens` for it (its length / 100 + 1).
/// `converse`: accepted when `messages` is a list (no further checks); the count is the
/// length of the `converse` object re-serialized compactly / 100 + 1.
fn count_input(body: &[u8]) -> Result<(u64, Option<Value>), String> {
    let outer: Value =
        serde_json::from_slice(body).map_err(|e| format!("The request body is not valid JSON ({e})."))?;
    let null = |member: &str| {
        format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null")
    };
    let Some(input) = outer.get("input").filter(|v| !v.is_null()) else {
        return Err(null("input"));
    };
    let Value::Object(input) = input else {
        return Err("The input must be a structure with one of invokeModel or converse.".to_owned());
    };
    let set: Vec<&String> = input.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect();
    match set.as_slice() {
        [one] if one.as_str() == "invokeModel" => {
            let Some(b64) = input.get("invokeModel").and_then(|m| m.get("body")).and_then(Value::as_str) else {
                return Err(null("input.invokeModel.body"));
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("input.invokeModel.body is not valid base64 ({e})."))?;
            let request = validate_body(&decoded)?;
            Ok((input_tokens(&decoded), Some(request)))
        }
        [one] if one.as_str() == "converse" => {
            let converse = input.get("converse").unwrap_or(&Value::Null);
            if !converse.get("messages").is_some_and(Value::is_array) {
                return Err(null("input.converse.messages"));
            }
            Ok((input_tokens(&serde_json::to_vec(converse).unwrap_or_default()), None))
        }
        _ => Err("The input must set exactly one of invokeModel or converse.".to_owned()),
    }
}

/// `ListInferenceProfiles` / `ListFoundationModels`: the listing fault, if any applies, else
/// the catalog through the query's filters and pagination.
fn listing(shared: &Shared, op: BedrockOperation, query: &str) -> Plan {
    let fault = shared.listing_fault().filter(|f| f.operation.is_none_or(|o| o == op));
    let mut delay = Duration::ZERO;
    if let Some(f) = &fault {
        let default_ms = if f.fault == ListingFaultKind::Hang { LISTING_HANG_MS } else { 0 };
        delay = Duration::from_millis(f.delay_ms.unwrap_or(default_ms));
    }
    let mut plan = match fault.map(|f| f.fault) {
        Some(ListingFaultKind::Garbage) => {
            let mut plan = Plan::new(200);
            plan.json = Some(LISTING_GARBAGE.as_bytes().to_vec());
            plan
        }
        Some(ListingFaultKind::AccessDenied) => Plan::error(
            403,
            "AccessDeniedException",
            &format!(
                "User: arn:aws:iam::{CATALOG_ACCOUNT_ID}:user/fake-bedrock is not authorized to perform: \
                 bedrock:{op} because no identity-based policy allows the bedrock:{op} action"
            ),
        ),
        Some(ListingFaultKind::Throttling) => {
            Plan::error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        }
        Some(ListingFaultKind::Hang) | None => {
            let catalog = shared.catalog();
            let query = catalog::parse_query(query);
            let listed = if op == BedrockOperation::ListInferenceProfiles {
                catalog::list_inference_profiles(&catalog, &query)
            } else {
                catalog::list_foundation_models(&catalog, &query)
            };
            match listed {
                Ok(v) => {
                    let mut plan = Plan::new(200);
                    plan.json = Some(serde_json::to_vec(&v).unwrap_or_default());
                    plan
                }
                Err((status, kind, message)) => Plan::error(status, kind, &message),
            }
        }
    };
    plan.delay = delay;
    plan
}

fn unrecognized() -> Plan {
    Plan::error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
}

/// The JSON type name Bedrock's schema validator uses.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "BigDecimal",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

/// Checks a body against Bedrock's Claude Messages schema; the error is Bedrock's message.
fn validate_body(body: &[u8]) -> Result<Value, String> {
    let wrap =
        |violations: &str| format!("Malformed input request: {violations}, please reformat your input and try again.");
    let request: Value =
        serde_json::from_slice(body).map_err(|e| wrap(&format!("#: the body is not valid JSON ({e})")))?;
    let Value::Object(map) = &request else {
        return Err(wrap(&format!("#: expected type: JSONObject, found: {}", type_name(&request))));
    };
    let mut violations = Vec::new();
    for key in ["anthropic_version", "max_tokens", "messages"] {
        if !map.contains_key(key) {
            violations.push(format!("#: required key [{key}] not found"));
        }
    }
    for key in map.keys() {
        if !ACCEPTED_BODY_KEYS.contains(&key.as_str()) {
            violations.push(format!("#: extraneous key [{key}] is not permitted"));
        }
    }
    match map.get("anthropic_version") {
        Some(Value::String(v)) if v == ANTHROPIC_VERSION => {}
        Some(Value::String(v)) => violations.push(format!("#/anthropic_version: {v} is not a valid enum value")),
        Some(other) => {
            violations.push(format!("#/anthropic_version: expected type: String, found: {}", type_name(other)))
        }
        None => {}
    }
    match map.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {}
        Some(Value::Number(n)) if n.is_i64() => {
            violations.push(format!("#/max_tokens: {n} is not greater or equal to 1"))
        }
        Some(other) => violations.push(format!("#/max_tokens: expected type: Integer, found: {}", type_name(other))),
        None => {}
    }
    match map.get("messages") {
        Some(Value::Array(_)) | None => {}
        Some(other) => violations.push(format!("#/messages: expected type: JSONArray, found: {}", type_name(other))),
    }
    match map.get("anthropic_beta") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    violations.push(format!("#/anthropic_beta/{i}: expected type: String, found: {}", type_name(item)));
                }
            }
        }
        Some(other) => {
            violations.push(format!("#/anthropic_beta: expected type: JSONArray, found: {}", type_name(other)))
        }
        None => {}
    }
    if violations.is_empty() {
        Ok(request)
    } else {
        Err(wrap(&violations.concat()))
    }
}

/// The HTTP error a scenario answers with (`model_stream_error` too when not streaming).
fn scenario_error(s: &BedrockScenario, stream: bool) -> Option<Plan> {
    if let Some((status, kind, message)) = s.name.http_error() {
        let (status, kind) = if s.name == BedrockScenarioName::Error {
            (s.status.unwrap_or(status), s.error_type.as_deref().unwrap_or(kind))
        } else {
            (status, kind)
        };
        return Some(Plan::error(status, kind, s.message.as_deref().unwrap_or(message)));
    }
    if s.name == BedrockScenarioName::ModelStreamError && !stream {
        let (status, kind, message) = BedrockScenarioName::ModelError.http_error().unwrap_or((
            424,
            "ModelErrorException",
            "The model returned an error.",
        ));
        return Some(Plan::error(status, kind, s.message.as_deref().unwrap_or(message)));
    }
    None
}

fn answer(request: &Value, body: &[u8], s: &BedrockScenario, model: &str, stream: bool) -> Plan {
    if let Some(error) = scenario_error(s, stream) {
        return error;
    }
    let model = s.model.clone().unwrap_or_else(|| model.to_owned());
    let content = decide_content(s, request);
    let usage = s.usage.unwrap_or_else(|| Usage {
        input_tokens: input_tokens(body),
        output_tokens: words(&content.answer_text()) + 1,
        ..Usage::default()
    });
    let msg_id = format!("msg_bdrk_{}", ulid::Ulid::new());
    let mut plan = Plan::new(200);
    plan.metrics = Some(usage);
    if !stream {
        let message = json!({
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [content.block()],
            "stop_reason": content.stop_reason(),
            "stop_sequence": null,
            "usage": wire_usage(&usage),
        });
        plan.json = Some(serde_json::to_vec(&message).unwrap_or_default());
        plan.usage = Some(usage);
        return plan;
    }
    let events = stream_events(&msg_id, &model, &content, &usage);
    if s.name == BedrockScenarioName::ModelStreamError {
        let start_usage = Usage { output_tokens: 1, ..usage };
        plan.stream = events.into_iter().take(3).map(Part::Event).collect();
        plan.stream.push(Part::Exception {
            kind: s.stream_exception.clone().unwrap_or_else(|| "modelStreamErrorException".to_owned()),
            message: s.message.clone().unwrap_or_else(|| {
                "The model encountered an error while streaming the response. Try your request again.".to_owned()
            }),
        });
        plan.error_type = s.stream_exception.clone().or_else(|| Some("modelStreamErrorException".to_owned()));
        plan.usage = Some(start_usage);
        plan.metrics = Some(start_usage);
        return plan;
    }
    plan.stream = events.into_iter().map(Part::Event).collect();
    plan.usage = Some(usage);
    plan
}

fn wire_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": u.cache_creation_input_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": u.output_tokens,
    })
}

/// The Anthropic streaming events of a complete answer (Bedrock sends no `ping`).
fn stream_events(id: &str, model: &str, content: &Content, usage: &Usage) -> Vec<Value> {
    let mut out = vec![json!({
        "type": "message_start",
        "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": wire_usage(&Usage { output_tokens: 1, ..*usage }),
        },
    })];
    let (start, deltas): (Value, Vec<Value>) = match content {
        Content::Text(text) => (
            json!({"type": "text", "text": ""}),
            text_pieces(text).into_iter().map(|t| json!({"type": "text_delta", "text": t})).collect(),
        ),
        Content::ToolUse { id, name, input } => (
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            json_pieces(&input.to_string())
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect(),
        ),
    };
    out.push(json!({"type": "content_block_start", "index": 0, "content_block": start}));
    for delta in deltas {
        out.push(json!({"type": "content_block_delta", "index": 0, "delta": delta}));
    }
    out.push(json!({"type": "content_block_stop", "index": 0}));
    out.push(json!({
        "type": "message_delta",
        "delta": {"stop_reason": content.stop_reason(), "stop_sequence": null},
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": usage.output_tokens,
        },
    }));
    out.push(json!({"type": "message_stop"}));
    out
}

/// A new request id in Bedrock's form (a UUID).
fn request_id() -> String {
    let h = format!("{:032x}", ulid::Ulid::new().0);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

// ---- answer content (as fake_anthropic's, which keeps these private) ----

/// The content of a successful answer.
enum Content {
    Text(String),
    ToolUse { id: String, name: String, input: Value },
}

impl Content {
    fn stop_reason(&self) -> &'static str {
        match self {
            Self::Text(_) => "end_turn",
            Self::ToolUse { .. } => "tool_use",
        }
    }

    /// The text whose words count as output tokens.
    fn answer_text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::ToolUse { input, .. } => input.to_string(),
        }
    }

    fn block(&self) -> Value {
        match self {
            Self::Text(text) => json!({"type": "text", "text": text}),
            Self::ToolUse { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }
}

fn decide_content(s: &BedrockScenario, request: &Value) -> Content {
    let last_user = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|msgs| msgs.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")));
    let tool_use = |command: Option<String>| Content::ToolUse {
        id: format!("toolu_bdrk_{}", ulid::Ulid::new()),
        name: s.tool_name.clone().unwrap_or_else(|| "Bash".to_owned()),
        input: s.tool_input.clone().unwrap_or_else(|| {
            json!({
                "command": command.unwrap_or_else(|| "echo hello".to_owned()),
                "description": "Run the command",
            })
        }),
    };
    if s.name == BedrockScenarioName::ToolUse {
        return tool_use(last_user.and_then(run_command));
    }
    if let Some(t) = &s.text {
        return Content::Text(t.clone());
    }
    if s.name != BedrockScenarioName::Text && (s.tool_name.is_some() || s.tool_input.is_some()) {
        return tool_use(last_user.and_then(run_command));
    }
    if let Some(result) = last_user.and_then(tool_result_text) {
        return Content::Text(format!("Tool said: {result}"));
    }
    if s.name != BedrockScenarioName::Text && offers_bash(request) {
        if let Some(command) = last_user.and_then(run_command) {
            return tool_use(Some(command));
        }
    }
    Content::Text(DEFAULT_TEXT.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for (id, name) in [
            ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", Some("claude-sonnet-4-5-20250929")),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", Some("claude-3-5-sonnet-20241022")),
            ("anthropic.claude-opus-4-6-v1", Some("claude-opus-4-6")),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-haiku-4-5-20251001-v1:0",
                Some("claude-haiku-4-5-20251001"),
            ),
            ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", Some("claude-3-haiku-20240307")),
            ("global.anthropic.claude-opus-5-5-v1:0", Some("claude-opus-5-5")),
            ("us.anthropic.claude-opus-5-5-v1:0", Some("claude-opus-5-5")),
            ("global.anthropic.claude-opus-4-8-v1:0", Some("claude-opus-4-8")),
            ("anthropic.claude-opus-4-8-v1", Some("claude-opus-4-8")),
            ("amazon.nova-pro-v1:0", None),
            ("meta.anthropic.claude-x", None),
            ("Global.anthropic.claude-x", None),
            ("anthropic.claude", None),
            ("claude-sonnet-4-5", None),
        ] {
            assert_eq!(claude_model_name(id).as_deref(), name, "{id}");
        }
    }

    #[test]
    fn body_checks() {
        let ok = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[]}"#;
        assert!(validate_body(ok).is_ok());
        let e = validate_body(
            br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[],"model":"m","stream":true}"#,
        )
        .unwrap_err();
        assert!(e.contains("extraneous key [model] is not permitted"), "{e}");
        assert!(e.contains("extraneous key [stream] is not permitted"), "{e}");
        assert!(e.starts_with("Malformed input request: #: "), "{e}");
        let e = validate_body(br#"{"max_tokens":"5","anthropic_beta":"x"}"#).unwrap_err();
        assert!(e.contains("required key [anthropic_version] not found"), "{e}");
        assert!(e.contains("required key [messages] not found"), "{e}");
        assert!(e.contains("#/max_tokens: expected type: Integer, found: String"), "{e}");
        assert!(e.contains("#/anthropic_beta: expected type: JSONArray"), "{e}");
        let e = validate_body(br#"[1]"#).unwrap_err();
        assert!(e.contains("expected type: JSONObject, found: JSONArray"), "{e}");
    }

    #[test]
    fn paths() {
        let r = Route::parse(
            "POST",
            "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
        );
        assert_eq!(r.op, Some(BedrockOperation::InvokeModelWithResponseStream));
        assert_eq!(r.model_id.as_deref(), Some("global.anthropic.claude-sonnet-4-5-20250929-v1:0"));
        let r = Route::parse(
            "POST",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.anthropic.claude-x-v1%3A0/invoke",
        );
        assert_eq!(r.op, Some(BedrockOperation::InvokeModel));
        assert_eq!(
            r.model_id.as_deref(),
            Some("arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-x-v1:0")
        );
        let r = Route::parse("POST", "/model/global.anthropic.claude-opus-5-5-v1%3A0/count-tokens");
        assert_eq!(r.op, Some(BedrockOperation::CountTokens));
        assert_eq!(r.model_id.as_deref(), Some("global.anthropic.claude-opus-5-5-v1:0"));
        assert_eq!(Route::parse("GET", "/inference-profiles").op, Some(BedrockOperation::ListInferenceProfiles));
        assert_eq!(Route::parse("GET", "/foundation-models").op, Some(BedrockOperation::ListFoundationModels));
        assert_eq!(Route::parse("POST", "/inference-profiles").op, None);
        assert_eq!(Route::parse("GET", "/foundation-models/anthropic.claude-x").op, None);
        assert_eq!(Route::parse("GET", "/model/x/invoke").op, None);
        assert_eq!(Route::parse("GET", "/model/x/count-tokens").op, None);
        assert_eq!(Route::parse("POST", "/model/x/converse").op, None);
        assert_eq!(Route::parse("POST", "/v1/messages").op, None);
    }

    #[test]
    fn count_tokens_inputs() {
        let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap());
        let inner = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []});
        let (n, request) =
            count_input(&serde_json::to_vec(&json!({"input": {"invokeModel": {"body": b64(&inner)}}})).unwrap())
                .unwrap();
        assert_eq!(n, input_tokens(&serde_json::to_vec(&inner).unwrap()));
        assert_eq!(request, Some(inner));
        let bad = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [], "model": "m"});
        let e = count_input(&serde_json::to_vec(&json!({"input": {"invokeModel": {"body": b64(&bad)}}})).unwrap())
            .unwrap_err();
        assert!(e.contains("extraneous key [model]"), "{e}");
        let converse = json!({"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}}});
        let (n, request) = count_input(&serde_json::to_vec(&converse).unwrap()).unwrap();
        assert!(n >= 1 && request.is_none());
        assert!(count_input(br#"{}"#).unwrap_err().contains("at 'input'"));
        assert!(count_input(br#"{"input":{}}"#).unwrap_err().contains("exactly one"));
        assert!(count_input(br#"{"input":{"invokeModel":{"body":"!!"}}}"#).unwrap_err().contains("base64"));
        assert!(count_input(br#"{"input":{"converse":{}}}"#).unwrap_err().contains("converse.messages"));
    }

    #[test]
    fn request_ids_are_uuids() {
        let id = request_id();
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }
}
