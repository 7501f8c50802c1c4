//! The passthrough: authenticate, read the body (bounded), forward to Anthropic over pooled
//! keep-alive connections, and stream the answer back chunk by chunk — bytes, status and
//! headers unchanged — while the usage tap reads along.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::error::SendRequestError;
use bytes::{Bytes, BytesMut};
use ccp_schemas::events::{Endpoint, ErrorClass, FallbackReason, Provider, RoutingStrategy, TripReason};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper, KeyPrefix};
use ccp_schemas::secrets::envelope::ConfiguredMasterKey;
use ccp_schemas::state::Refusal;
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;

use crate::bedrock::{self, Answer, BedrockClient, BedrockFailure, Rules};
use crate::breaker::{Outcome, Route};
use crate::circuits::Circuits;
use crate::directory::KeyTable;
use crate::error::{ProxyError, REQUEST_ID_HEADER};
use crate::spend::{Month, Spend};
use crate::tap::{Coding, Framing, Observed, UsageTap};
use crate::usage::{Recorder, RequestRecord};
use ccp_schemas::config::BudgetEnforcement;

/// Header that carries the access key when the base URL has none.
pub const ACCESS_KEY_HEADER: &str = "x-ccp-access-key";

/// Shared by every worker.
pub struct Shared {
    /// Users and keys.
    pub keys: std::sync::Arc<KeyTable>,
    /// Access-key hashing.
    pub pepper: KeyPepper,
    /// Events and metrics.
    pub recorder: Recorder,
    /// Upstream base URL without a trailing slash.
    pub anthropic_base: String,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Bedrock model mapping and body rules.
    pub rules: Rules,
    /// Opens sealed Bedrock keys (`None`: no master key configured, no failover).
    pub master: Option<ConfiguredMasterKey>,
    /// Region for keys that name none.
    pub default_region: String,
    /// Per-key circuit breakers, shared with the fleet.
    pub circuits: std::sync::Arc<Circuits>,
    /// Month-to-date spend per user (all replicas).
    pub spend: std::sync::Arc<Spend>,
    /// Which requests an exhausted budget stops.
    pub budget_enforcement: BudgetEnforcement,
}

/// 429 when the user's monthly budget is spent (by every replica's finished requests).
fn budget_refusal(shared: &Shared, record: &RequestRecord) -> Option<ProxyError> {
    let key = record.key.as_ref()?;
    let limit = key.monthly_limit_usd?;
    let now = chrono::Utc::now();
    let spent = shared.spend.spent_everywhere(key.user_id, now);
    if spent < limit {
        return None;
    }
    let tz = shared.spend.tz();
    let resets = Month::of(now, tz).next().first_day();
    let mut err = ProxyError::new(
        StatusCode::TOO_MANY_REQUESTS,
        crate::error::ApiErrorType::RateLimit,
        ErrorClass::BudgetExhausted,
        format!(
            "Your monthly ClaudeCodeProxy budget is used up: ${} spent of ${}. It resets on {resets} ({tz}). \
             Ask your platform team to raise it.",
            spent.round_dp(2),
            limit.round_dp(2)
        ),
    );
    err.no_retry = true;
    Some(err)
}

/// One per worker thread (`awc::Client` is not `Send`).
pub struct Upstream {
    client: awc::Client,
    bedrock: BedrockClient,
}

impl Upstream {
    /// The Anthropic client ([`anthropic_client`]) and a Bedrock client.
    pub fn new(header_timeout: Duration, connect_timeout: Duration, bedrock: BedrockClient) -> Self {
        Self { client: anthropic_client(header_timeout, connect_timeout), bedrock }
    }
}

/// A pooled keep-alive client for Anthropic with LLM-sized timeouts, no default headers of its
/// own and no redirects (one per worker thread: `awc::Client` is not `Send`).
pub fn anthropic_client(header_timeout: Duration, connect_timeout: Duration) -> awc::Client {
    let connector = awc::Connector::new().timeout(connect_timeout).limit(0).conn_keep_alive(Duration::from_secs(60));
    awc::Client::builder()
        .connector(connector)
        .timeout(header_timeout)
        .no_default_headers()
        .disable_redirects()
        .finish()
}

/// Where the key came from.
#[derive(Debug, Clone, Copy)]
enum KeySource {
    Path,
    Header,
}

/// Where a proxied path puts the access key, and the part after `/v1/`.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxiedPath<'a> {
    /// `/ak/{access_key}/v1/{tail}`.
    KeyInPath {
        /// The access key as presented.
        key: &'a str,
        /// After `/v1/`.
        tail: &'a str,
    },
    /// `/v1/{tail}`, the key in `x-ccp-access-key`.
    KeyInHeader {
        /// After `/v1/`.
        tail: &'a str,
    },
}

/// Splits a request path (as received, not percent-decoded: forwarded byte for byte) into the
/// proxied shapes; `None` for anything else. Done by hand rather than by the router's pattern
/// matching, which ran a regular expression per request.
pub fn proxied_path(path: &str) -> Option<ProxiedPath<'_>> {
    if let Some(tail) = path.strip_prefix("/v1/") {
        return Some(ProxiedPath::KeyInHeader { tail });
    }
    let (key, rest) = path.strip_prefix("/ak/")?.split_once('/')?;
    let tail = rest.strip_prefix("v1/")?;
    (!key.is_empty()).then_some(ProxiedPath::KeyInPath { key, tail })
}

/// Every path but the proxy's own (`/health`, `/ready`, `/metrics`): the proxied ones, else
/// the 404 that explains the base URL.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    // Borrowed from the request: nothing of the path or key is copied.
    let (key, tail, source) = match proxied_path(req.path()) {
        Some(ProxiedPath::KeyInPath { key, tail }) => (Some(key), tail, KeySource::Path),
        Some(ProxiedPath::KeyInHeader { tail }) => {
            let key = req.headers().get(ACCESS_KEY_HEADER).and_then(|v| v.to_str().ok());
            (key, tail, KeySource::Header)
        }
        None => return crate::routes::not_found().await,
    };
    proxy(&req, payload, key, tail, source, &shared, &upstream).await
}

/// The proxy's own error answer, and the request's usage event for it.
fn answer_error(err: ProxyError, record: RequestRecord) -> HttpResponse {
    let resp = err.response(record.request_id);
    record.finish(err.status.as_u16(), Some(err.class), false, Observed::default());
    resp
}

fn endpoint_of(tail: &str) -> Endpoint {
    match tail {
        "messages" => Endpoint::Messages,
        "messages/count_tokens" => Endpoint::CountTokens,
        _ => Endpoint::Other,
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    req: &HttpRequest,
    payload: web::Payload,
    key: Option<&str>,
    tail: &str,
    source: KeySource,
    shared: &Shared,
    upstream: &Upstream,
) -> HttpResponse {
    let headers = req.headers();
    let mut record = RequestRecord::start(
        endpoint_of(tail),
        header_str(headers, "x-claude-code-session-id"),
        header_str(headers, "user-agent"),
        &shared.recorder,
    );
    match prepare(req, payload, key, source, shared, &mut record).await {
        Ok(body) => send(req, tail, body, shared, upstream, record).await,
        Err(err) => answer_error(err, record),
    }
}

/// Authenticates and reads the body; everything that can be refused before Anthropic is asked.
async fn prepare(
    req: &HttpRequest,
    mut payload: web::Payload,
    key: Option<&str>,
    source: KeySource,
    shared: &Shared,
    record: &mut RequestRecord,
) -> Result<Bytes, ProxyError> {
    if !shared.keys.is_ready() || !shared.spend.is_ready() {
        return Err(ProxyError::not_ready());
    }
    let presented = key.ok_or_else(|| {
        ProxyError::unauthorized(
            ErrorClass::MalformedAccessKey,
            format!(
                "No ClaudeCodeProxy access key. Set ANTHROPIC_BASE_URL to the proxy URL ending in /ak/<your access key>, \
                 or send the key in the {ACCESS_KEY_HEADER} header. Ask your platform team for a key."
            ),
        )
    })?;
    record.key_prefix = Some(KeyPrefix::of_candidate(presented));
    let key = AccessKey::parse(presented).map_err(|e| {
        let place = match source {
            KeySource::Path => "in ANTHROPIC_BASE_URL",
            KeySource::Header => "in the x-ccp-access-key header",
        };
        ProxyError::unauthorized(
            ErrorClass::MalformedAccessKey,
            format!(
                "The ClaudeCodeProxy access key {place} is malformed ({e}). Ask your platform team for a valid key."
            ),
        )
    })?;
    let hash = key.hash(&shared.pepper);
    drop(key);
    let auth = shared.keys.authenticate(&hash).map_err(|refusal| {
        let (class, why) = match refusal {
            Refusal::Unknown => (ErrorClass::UnknownAccessKey, "is not known"),
            Refusal::Revoked => (ErrorClass::RevokedAccessKey, "has been revoked"),
            Refusal::InactiveUser => (ErrorClass::InactiveUser, "belongs to a deactivated user"),
        };
        ProxyError::unauthorized(
            class,
            format!("This ClaudeCodeProxy access key {why}. Ask your platform team for a new access key."),
        )
    })?;
    record.key_prefix = Some(auth.key_prefix.clone());
    record.key = Some(auth);

    let limit = shared.max_body_bytes;
    let declared = header_str(req.headers(), CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::too_large(limit));
    }
    // Sized once from Content-Length: no regrowth copies of a 50 KB body.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ProxyError::bad_request(format!("The request body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ProxyError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if req.method() == Method::POST && record.endpoint != Endpoint::Other {
        inspect_json(req, &body, record)?;
    }
    Ok(body)
}

#[derive(Deserialize)]
struct Peek {
    model: Option<serde_json::Value>,
    stream: Option<serde_json::Value>,
}

/// `model` and `stream` of a body written as Claude Code writes it: `model` its first member (a
/// string without escapes) and `stream` its last (`true` or `false`), as in
/// `{"model":"claude-…",…,"stream":true}`. Exact for every valid JSON text without repeated
/// member names that it answers for: the first member after the opening brace and the last one
/// before the closing brace can only be the top-level object's. (Where a name repeats, RFC 8259
/// §4 leaves the meaning open: this takes the first `model`, a parser usually the last.) `None`
/// for any other shape (the body is then parsed).
pub fn claude_code_shape(body: &[u8]) -> Option<(&str, bool)> {
    fn after<'a>(s: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
        s.trim_ascii_start().strip_prefix(token)
    }
    fn before<'a>(s: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
        s.trim_ascii_end().strip_suffix(token)
    }
    let rest = after(after(after(after(body, b"{")?, b"\"model\"")?, b":")?, b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[end] != b'"' {
        return None;
    }
    let model = std::str::from_utf8(&rest[..end]).ok()?;
    after(&rest[end + 1..], b",")?;
    let tail = before(body, b"}")?;
    let (tail, stream) = match before(tail, b"true") {
        Some(t) => (t, true),
        None => (before(tail, b"false")?, false),
    };
    before(before(before(tail, b":")?, b"\"stream\"")?, b",")?;
    Some((model, stream))
}

/// Checks a Messages API body is a JSON object and notes its `model` and `stream`.
///
/// A body in [`claude_code_shape`] is not parsed: checking the whole of it cost 12–25 µs of
/// the proxy's ≈ 100 µs a request on the benchmark's 48.6 KB body (more on real sessions' longer
/// ones), and Anthropic checks it anyway; if such a body is malformed after all, Anthropic's
/// 400 `invalid_request_error` is relayed, and a failover to Bedrock refuses it with a 400 before
/// anything else (the body is adapted first). Any other body is parsed here and refused with the
/// proxy's own 400 if malformed.
fn inspect_json(req: &HttpRequest, body: &[u8], record: &mut RequestRecord) -> Result<(), ProxyError> {
    let content_type = header_str(req.headers(), CONTENT_TYPE.as_str()).unwrap_or("").trim_start();
    let json = "application/json";
    if !content_type.get(..json.len()).is_some_and(|t| t.eq_ignore_ascii_case(json)) {
        return Err(ProxyError::unsupported_media_type(format!(
            "The Messages API takes `Content-Type: application/json`, not `{}`.",
            content_type.chars().take(64).collect::<String>()
        )));
    }
    if let Some((model, stream)) = claude_code_shape(body) {
        record.requested_model = Some(crate::usage::first_chars(model, 128).to_owned());
        record.stream = stream;
        return Ok(());
    }
    // A struct also deserializes from a JSON array (its fields in order): refuse anything but
    // an object first.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ProxyError::bad_request("The request body is not a JSON object: a Messages API body is `{...}`."));
    }
    let peek: Peek = serde_json::from_slice(body)
        .map_err(|e| ProxyError::bad_request(format!("The request body is not a valid JSON object: {e}.")))?;
    record.requested_model = match peek.model {
        Some(serde_json::Value::String(model)) => Some(crate::usage::first_chars(&model, 128).to_owned()),
        _ => None,
    };
    record.stream = peek.stream.as_ref().and_then(serde_json::Value::as_bool).unwrap_or(false);
    Ok(())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy's own, never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | ACCESS_KEY_HEADER
    )
}

/// The header names the `Connection` header lists (hop-by-hop too).
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(actix_web::http::header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn connection_listed(headers: &HeaderMap, name: &HeaderName) -> bool {
    connection_tokens(headers).any(|token| token.eq_ignore_ascii_case(name.as_str()))
}

/// The headers passed on, in either direction: all but the hop-by-hop ones, those the
/// `Connection` header names, `Host`, `Content-Length` (the sender frames the body) and the
/// access-key header.
pub fn forwarded_headers(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    // Almost every message has no `Connection` header: then there is nothing it names.
    let has_connection = headers.contains_key(actix_web::http::header::CONNECTION);
    headers
        .iter()
        .filter(move |(name, _)| !(is_hop_by_hop(name) || (has_connection && connection_listed(headers, name))))
}

/// Moves [`forwarded_headers`] out of a map, each to `to`, without copying them: the first copy of
/// a non-standard name (most of Anthropic's are) costs an allocation. A name with several values
/// is copied once per value but the last.
pub fn move_forwarded(from: &mut HeaderMap, mut to: impl FnMut(HeaderName, HeaderValue)) {
    if from.contains_key(actix_web::http::header::CONNECTION) {
        let listed: Vec<HeaderName> =
            connection_tokens(from).filter_map(|token| HeaderName::try_from(token).ok()).collect();
        for name in listed {
            from.remove(name);
        }
    }
    // `drain` names a header at its first value only (`IntoIterator` copies the name for each).
    let mut pending: Option<(HeaderName, HeaderValue)> = None;
    for (name, value) in from.drain() {
        match name {
            Some(name) => {
                if let Some((name, value)) = pending.take() {
                    to(name, value);
                }
                pending = (!is_hop_by_hop(&name)).then_some((name, value));
            }
            None => {
                if let Some((name, held)) = pending.as_mut() {
                    to(name.clone(), std::mem::replace(held, value));
                }
            }
        }
    }
    if let Some((name, value)) = pending {
        to(name, value);
    }
}

/// The client's answer relaying an upstream one: its status, its [`forwarded_headers`]
/// (moved, not copied), its `Content-Length` when it has one (the body is not re-chunked), and
/// the body `wrap` makes of the upstream response.
pub fn relay_answer<S, E>(response: awc::ClientResponse, wrap: impl FnOnce(awc::ClientResponse) -> S) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, E>> + 'static,
    E: Into<Box<dyn std::error::Error>> + 'static,
{
    let status = response.status();
    let length = header_str(response.headers(), CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    let mut headers = HeaderMap::new();
    let response = response.map_body(|head, payload| {
        headers = std::mem::take(&mut head.headers);
        payload
    });
    let mut builder = HttpResponse::build(status);
    // Before the body: `streaming` sets `application/octet-stream` when there is no type yet.
    move_forwarded(&mut headers, |name, value| {
        builder.append_header((name, value));
    });
    if let Some(len) = length {
        builder.no_chunking(len);
    }
    builder.streaming(wrap(response))
}

/// The request to Anthropic for `req`: the same method, `<base>/v1/<tail>` with the query as
/// received, and the [`forwarded_headers`].
pub fn upstream_request(client: &awc::Client, base: &str, tail: &str, req: &HttpRequest) -> awc::ClientRequest {
    let mut url = String::with_capacity(base.len() + tail.len() + 16);
    url.push_str(base);
    url.push_str("/v1/");
    url.push_str(tail);
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    let mut out = client.request(req.method().clone(), url.as_str());
    for (name, value) in forwarded_headers(req.headers()) {
        out = out.append_header((name.clone(), value.clone()));
    }
    out
}

/// Headers added to every relayed answer: which provider answered and why.
const PROVIDER_HEADER: &str = "x-ccp-provider";
const FALLBACK_REASON_HEADER: &str = "x-ccp-fallback-reason";

fn fallback_label(reason: FallbackReason) -> &'static str {
    match reason {
        FallbackReason::RateLimited => "rate_limited",
        FallbackReason::Overloaded => "overloaded",
        FallbackReason::ServerError => "server_error",
        FallbackReason::UsageLimit => "usage_limit",
        FallbackReason::ConnectError => "connect_error",
        FallbackReason::Timeout => "timeout",
        FallbackReason::CircuitOpen => "circuit_open",
        FallbackReason::Routing => "routing",
    }
}

/// Why Anthropic could not answer, kept for the failover or for the 503 that explains it.
#[derive(Debug, Clone)]
struct PlanFailure {
    reason: FallbackReason,
    /// e.g. "429 rate_limit_error", "a connection error".
    what: String,
    retry_after: Option<String>,
}

/// Reads a failed Anthropic answer (small, bounded) to name its error type.
async fn plan_failure(response: &mut awc::ClientResponse, status: StatusCode) -> PlanFailure {
    let headers = response.headers();
    let retry_after = header_str(headers, "retry-after").map(str::to_owned);
    let unified_rejected = header_str(headers, "anthropic-ratelimit-unified-status") == Some("rejected");
    let coding = Coding::from_header(header_str(headers, CONTENT_ENCODING.as_str()));
    // The error body is small; a stalled one must not hold the failover.
    let raw = tokio::time::timeout(Duration::from_secs(5), response.body().limit(64 * 1024))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let body = crate::tap::decode(coding, &raw);
    let observed = {
        let mut tap = UsageTap::new(Framing::Json, Coding::Identity);
        tap.feed(&body);
        tap.finish()
    };
    let usage_limit = unified_rejected || body.windows(11).any(|w| w.eq_ignore_ascii_case(b"usage limit"));
    let reason = match status.as_u16() {
        429 if usage_limit => FallbackReason::UsageLimit,
        429 => FallbackReason::RateLimited,
        529 => FallbackReason::Overloaded,
        _ => FallbackReason::ServerError,
    };
    let what = match observed.error_type {
        Some(t) => format!("{} {t}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    PlanFailure { reason, what, retry_after }
}

fn trip_reason(reason: FallbackReason) -> TripReason {
    match reason {
        FallbackReason::RateLimited => TripReason::RateLimited,
        FallbackReason::Overloaded => TripReason::Overloaded,
        FallbackReason::UsageLimit => TripReason::UsageLimit,
        FallbackReason::ConnectError => TripReason::ConnectError,
        FallbackReason::Timeout => TripReason::Timeout,
        FallbackReason::ServerError | FallbackReason::CircuitOpen | FallbackReason::Routing => TripReason::ServerError,
    }
}

/// Anthropic answers that trigger a failover: 429, 529 and other 5xx.
fn fails_over(status: StatusCode) -> bool {
    status.as_u16() == 429 || status.is_server_error()
}

async fn send(
    req: &HttpRequest,
    tail: &str,
    body: Bytes,
    shared: &Shared,
    upstream: &Upstream,
    mut record: RequestRecord,
) -> HttpResponse {
    let (routing, has_bedrock_key) =
        record.key.as_ref().map_or((RoutingStrategy::PlanFirst, false), |k| (k.routing, k.has_bedrock_key));
    let failover_allowed =
        routing != RoutingStrategy::PlanOnly && record.endpoint == Endpoint::Messages && req.method() == Method::POST;
    let can_failover = failover_allowed && has_bedrock_key && shared.master.is_some();
    if routing == RoutingStrategy::BedrockOnly && record.endpoint == Endpoint::Messages {
        let cause = PlanFailure { reason: FallbackReason::Routing, what: "routing".into(), retry_after: None };
        return failover(req, body, cause, shared, upstream, record).await;
    }
    if shared.budget_enforcement == BudgetEnforcement::All {
        if let Some(err) = budget_refusal(shared, &record) {
            return answer_error(err, record);
        }
    }
    let key_id = record.key.as_ref().map(|k| k.key_id);
    let breakers = &shared.circuits.breakers;
    let route = match key_id {
        Some(k) if failover_allowed => {
            let (route, transition) = breakers.route(k, tokio::time::Instant::now());
            if let Some(t) = transition {
                shared.circuits.announce(k, t);
            }
            route
        }
        _ => Route::Plan,
    };
    if route == Route::Skip && can_failover {
        let cause = PlanFailure {
            reason: FallbackReason::CircuitOpen,
            what: "repeated failures (circuit open)".into(),
            retry_after: None,
        };
        return failover(req, body, cause, shared, upstream, record).await;
    }
    let outcome = |failure: Option<TripReason>| {
        if let Some(k) = key_id.filter(|_| failover_allowed) {
            let outcome = failure.map_or(Outcome::Success, Outcome::Failure);
            if let Some(t) = breakers.record(k, route, outcome, tokio::time::Instant::now()) {
                shared.circuits.announce(k, t);
            }
        }
    };

    let out = upstream_request(&upstream.client, &shared.anthropic_base, tail, req);
    record.provider = Provider::Anthropic;
    let sent = out.send_body(body.clone()).await;
    if let (Ok(response), Some(k)) = (&sent, key_id) {
        shared.recorder.rate_limits.observe(k, response.status().as_u16(), response.headers());
    }
    match sent {
        Ok(mut response) if failover_allowed && fails_over(response.status()) => {
            let status = response.status();
            let cause = plan_failure(&mut response, status).await;
            outcome(Some(trip_reason(cause.reason)));
            tracing::info!(request_id = %record.request_id, status = status.as_u16(), reason = fallback_label(cause.reason), "Anthropic failed before answering");
            if can_failover {
                failover(req, body, cause, shared, upstream, record).await
            } else {
                no_fallback(&cause, record)
            }
        }
        Ok(response) => {
            outcome(None);
            let on_failure = key_id.filter(|_| failover_allowed).map(|k| {
                let circuits = shared.circuits.clone();
                Box::new(move || {
                    let failure = Outcome::Failure(TripReason::ServerError);
                    if let Some(t) = circuits.breakers.record(k, Route::Plan, failure, tokio::time::Instant::now()) {
                        circuits.announce(k, t);
                    }
                }) as Box<dyn FnOnce()>
            });
            relay(response, record, on_failure)
        }
        Err(e) => {
            let (reason, status, class, what) = match e {
                SendRequestError::Timeout => (
                    FallbackReason::Timeout,
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorClass::UpstreamTimeout,
                    "no answer in time".to_owned(),
                ),
                other => (
                    FallbackReason::ConnectError,
                    StatusCode::BAD_GATEWAY,
                    ErrorClass::UpstreamConnectError,
                    format!("a connection error ({other})"),
                ),
            };
            tracing::warn!(request_id = %record.request_id, error_class = ?class, "Anthropic request failed");
            let cause = PlanFailure { reason, what, retry_after: None };
            outcome(Some(trip_reason(reason)));
            if can_failover {
                return failover(req, body, cause, shared, upstream, record).await;
            }
            if failover_allowed {
                return no_fallback(&cause, record);
            }
            let err = ProxyError::upstream(status, class, format!("Anthropic could not be used: {}.", cause.what));
            answer_error(err, record)
        }
    }
}

/// 503 naming why Anthropic failed, when the key has no Bedrock fallback.
fn no_fallback(cause: &PlanFailure, record: RequestRecord) -> HttpResponse {
    let message = if cause.reason == FallbackReason::Routing {
        "This access key is routed to Amazon Bedrock only, but it has no Bedrock API key; ask your platform team."
            .to_owned()
    } else {
        format!(
            "Anthropic returned {} and this access key has no Bedrock fallback; ask your platform team.",
            cause.what
        )
    };
    let err = ProxyError::upstream(StatusCode::SERVICE_UNAVAILABLE, ErrorClass::NoBedrockFallback, message)
        .retry_after(cause.retry_after.clone());
    answer_error(err, record)
}

/// The answer to the client when Bedrock fails before answering.
fn bedrock_error(failure: &BedrockFailure, cause: &PlanFailure) -> ProxyError {
    let before = if cause.reason == FallbackReason::Routing {
        "Amazon Bedrock".to_owned()
    } else {
        format!("Anthropic returned {}; the Amazon Bedrock fallback", cause.what)
    };
    let (status, message) = match failure.class {
        ErrorClass::BedrockAuthError => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{before} refused this access key's Bedrock API key ({}); ask your platform team.", failure.detail),
        ),
        ErrorClass::BedrockQuotaExceeded => {
            (StatusCode::TOO_MANY_REQUESTS, format!("{before} is throttled ({}).", failure.detail))
        }
        ErrorClass::BedrockValidation => {
            (StatusCode::BAD_REQUEST, format!("{before} rejected the request ({}).", failure.detail))
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, format!("{before} failed ({}).", failure.detail)),
    };
    let kind = match status.as_u16() {
        429 => crate::error::ApiErrorType::RateLimit,
        400 => crate::error::ApiErrorType::InvalidRequest,
        _ => crate::error::ApiErrorType::Api,
    };
    ProxyError::new(status, kind, failure.class, message)
}

/// Replays the request on Bedrock and answers as Anthropic would.
async fn failover(
    req: &HttpRequest,
    body: Bytes,
    cause: PlanFailure,
    shared: &Shared,
    upstream: &Upstream,
    mut record: RequestRecord,
) -> HttpResponse {
    record.fallback_reason = Some(cause.reason);
    let Some(key_id) = record.key.as_ref().map(|k| k.key_id) else {
        return no_fallback(&cause, record);
    };
    let (Some(creds), Some(master)) = (shared.keys.bedrock_credentials(&key_id), shared.master.as_ref()) else {
        return no_fallback(&cause, record);
    };
    // First: the body may not have been parsed yet (`claude_code_shape`), and a malformed one
    // must get its 400 before anything else is decided or a key is opened.
    let request = match shared.rules.adapt(&body, header_str(req.headers(), "anthropic-beta")) {
        Ok(r) => r,
        Err(e) => {
            return answer_error(
                ProxyError::bad_request(format!("The request cannot be sent to Amazon Bedrock: {e}.")),
                record,
            )
        }
    };
    if let Some(err) = budget_refusal(shared, &record) {
        return answer_error(err, record);
    }
    record.provider = Provider::Bedrock;
    let Some(model_id) =
        shared.rules.model_for(record.requested_model.as_deref(), creds.settings.default_model.as_deref())
    else {
        let model = record.requested_model.clone().unwrap_or_else(|| "(none)".into());
        let err = ProxyError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::ModelNotMapped,
            format!("Anthropic returned {} and model `{model}` has no Amazon Bedrock mapping (and this access key has no default Bedrock model); ask your platform team.", cause.what),
        )
        .retry_after(cause.retry_after.clone());
        return answer_error(err, record);
    };
    let region = creds.settings.region.clone().unwrap_or_else(|| shared.default_region.clone());
    record.bedrock_model_id = Some(model_id.clone());
    record.region = Some(region.clone());
    let api_key = match creds.sealed.open(master, &key_id.to_string()).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(request_id = %record.request_id, error = %e, "cannot open the key's Bedrock API key");
            let err = ProxyError::upstream(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorClass::Internal,
                "The proxy cannot decrypt this access key's Bedrock API key; ask your platform team.",
            );
            return answer_error(err, record);
        }
    };
    let answer = upstream.bedrock.invoke(&api_key, &region, &model_id, request).await;
    drop(api_key);
    let reason = fallback_label(cause.reason);
    match answer {
        Ok(Answer::Json { body, request_id }) => {
            let mut tap = UsageTap::new(Framing::Json, Coding::Identity);
            tap.feed(&body);
            record.first_byte();
            let observed = tap.finish();
            let mut builder = HttpResponse::Ok();
            builder
                .content_type("application/json")
                .insert_header((REQUEST_ID_HEADER, record.request_id.to_string()))
                .insert_header((PROVIDER_HEADER, "bedrock"))
                .insert_header((FALLBACK_REASON_HEADER, reason));
            if let Some(id) = request_id {
                builder.insert_header(("request-id", id));
            }
            let incomplete = !observed.complete;
            record.finish(200, None, incomplete, observed);
            builder.body(body)
        }
        Ok(Answer::Stream { events, request_id }) => {
            let mut builder = HttpResponse::Ok();
            builder
                .content_type("text/event-stream; charset=utf-8")
                .insert_header(("cache-control", "no-cache"))
                .insert_header((REQUEST_ID_HEADER, record.request_id.to_string()))
                .insert_header((PROVIDER_HEADER, "bedrock"))
                .insert_header((FALLBACK_REASON_HEADER, reason));
            if let Some(id) = request_id {
                builder.insert_header(("request-id", id));
            }
            let fault = std::rc::Rc::new(std::cell::Cell::new(None));
            let sink = fault.clone();
            let events = events.scan(false, move |ended, item| {
                let out = match item {
                    _ if *ended => None,
                    Ok(bytes) => Some(Ok::<Bytes, std::convert::Infallible>(bytes)),
                    Err(failure) => {
                        tracing::warn!(error = %failure.detail, "Bedrock stream failed after it started");
                        sink.set(Some(failure.class));
                        *ended = true;
                        Some(Ok(bedrock::sse_error(&failure)))
                    }
                };
                std::future::ready(out)
            });
            let body = TapBody {
                inner: Box::pin(events),
                tap: Some(UsageTap::new(Framing::Sse, Coding::Identity)),
                record: Some(record),
                status: 200,
                class: None,
                fault: Some(fault),
                on_upstream_failure: None,
            };
            builder.streaming(body)
        }
        Err(failure) => {
            tracing::warn!(request_id = %record.request_id, class = ?failure.class, detail = %failure.detail, "Bedrock failed");
            answer_error(bedrock_error(&failure, &cause), record)
        }
    }
}

fn upstream_error_class(status: StatusCode) -> Option<ErrorClass> {
    match status.as_u16() {
        429 => Some(ErrorClass::UpstreamRateLimited),
        529 => Some(ErrorClass::UpstreamOverloaded),
        400..=499 => Some(ErrorClass::UpstreamClientError),
        500..=599 => Some(ErrorClass::UpstreamServerError),
        _ => None,
    }
}

/// Streams the Anthropic response back unchanged, tapping usage.
fn relay(
    response: awc::ClientResponse,
    record: RequestRecord,
    on_upstream_failure: Option<Box<dyn FnOnce()>>,
) -> HttpResponse {
    let status = response.status();
    let up = response.headers();
    let tap = UsageTap::new(
        Framing::from_content_type(up.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())),
        Coding::from_header(up.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok())),
    );
    let request_id = record.request_id;
    let mut answer = relay_answer(response, |inner| TapBody {
        inner,
        tap: Some(tap),
        record: Some(record),
        status: status.as_u16(),
        class: upstream_error_class(status),
        fault: None,
        on_upstream_failure,
    });
    let headers = answer.headers_mut();
    if let Ok(id) = HeaderValue::try_from(request_id.to_string()) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id);
    }
    headers.insert(HeaderName::from_static(PROVIDER_HEADER), HeaderValue::from_static("anthropic"));
    answer
}

/// The response body on its way to the client. Finishes the request record exactly once:
/// at the end of the stream, on an upstream error, or when dropped early (client gone).
struct TapBody<S> {
    inner: S,
    tap: Option<UsageTap>,
    record: Option<RequestRecord>,
    status: u16,
    class: Option<ErrorClass>,
    /// Set by a stream that ended with an error event of its own (Bedrock).
    fault: Option<std::rc::Rc<std::cell::Cell<Option<ErrorClass>>>>,
    /// Called when Anthropic's stream fails after bytes were sent (counts a breaker failure).
    on_upstream_failure: Option<Box<dyn FnOnce()>>,
}

impl<S> TapBody<S> {
    fn finish(&mut self, cut: Option<ErrorClass>) {
        let (Some(record), Some(tap)) = (self.record.take(), self.tap.take()) else {
            return;
        };
        let observed = tap.finish();
        let fault = self.fault.as_ref().and_then(|f| f.get());
        let in_stream_error = observed.error_type.is_some() && self.status < 400;
        let class = cut.or(fault).or(self.class).or(in_stream_error.then_some(ErrorClass::StreamInterrupted));
        let incomplete = cut.is_some()
            || fault.is_some()
            || in_stream_error
            || (record.stream && self.status < 400 && !observed.complete);
        if in_stream_error || cut == Some(ErrorClass::StreamInterrupted) {
            if let Some(count_failure) = self.on_upstream_failure.take() {
                count_failure();
            }
        }
        record.finish(self.status, class, incomplete, observed);
    }
}

impl<S, E> Stream for TapBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if chunk.is_empty() {
                    // Nothing reached the client: not a first byte, nothing to tap.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if let Some(record) = this.record.as_mut() {
                    record.first_byte();
                }
                if let Some(tap) = this.tap.as_mut() {
                    tap.feed(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "upstream stream broke after bytes were sent");
                this.finish(Some(ErrorClass::StreamInterrupted));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S> Drop for TapBody<S> {
    fn drop(&mut self) {
        if self.record.is_some() {
            self.finish(Some(ErrorClass::ClientDisconnected));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{claude_code_shape, forwarded_headers, move_forwarded, proxied_path, ProxiedPath};
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use proptest::prelude::*;

    fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = forwarded_headers(headers).map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_connection_listed_and_own_headers_are_not_forwarded() {
        let mut headers = header_map(&[
            ("connection", "keep-alive, X-Trace"),
            ("keep-alive", "timeout=5"),
            ("x-trace", "1"),
            ("te", "trailers"),
            ("host", "proxy.example.com"),
            ("content-length", "2"),
            ("x-ccp-access-key", "ak_secret"),
            ("anthropic-version", "2023-06-01"),
            ("x-api-key", "sk-ant-x"),
        ]);
        assert_eq!(names(&headers), ["anthropic-version", "x-api-key"]);
        assert_eq!(moved_names(headers.clone()), ["anthropic-version", "x-api-key"]);
        // Without a Connection header, a header of the same name as a token is kept.
        headers.remove("connection");
        assert_eq!(names(&headers), ["anthropic-version", "x-api-key", "x-trace"]);
        assert_eq!(moved_names(headers), ["anthropic-version", "x-api-key", "x-trace"]);
    }

    fn moved_names(mut headers: HeaderMap) -> Vec<String> {
        let mut moved = HeaderMap::new();
        move_forwarded(&mut headers, |name, value| moved.append(name, value));
        let mut names: Vec<String> = moved.iter().map(|(n, _)| n.as_str().to_owned()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn moving_keeps_every_value_of_a_repeated_header_in_order() {
        let mut headers = header_map(&[
            ("set-cookie", "a=1"),
            ("transfer-encoding", "chunked"),
            ("set-cookie", "b=2"),
            ("anthropic-ratelimit-requests-limit", "50"),
            ("set-cookie", "c=3"),
        ]);
        let mut moved = HeaderMap::new();
        move_forwarded(&mut headers, |name, value| moved.append(name, value));
        let cookies: Vec<&str> = moved.get_all("set-cookie").map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, ["a=1", "b=2", "c=3"]);
        assert_eq!(moved.get("anthropic-ratelimit-requests-limit").unwrap(), "50");
        assert!(!moved.contains_key("transfer-encoding"));
        assert_eq!(moved.len(), 4);
    }

    #[test]
    fn proxied_paths_are_split_and_others_refused() {
        assert_eq!(
            proxied_path("/ak/ak_abc/v1/messages"),
            Some(ProxiedPath::KeyInPath { key: "ak_abc", tail: "messages" })
        );
        assert_eq!(
            proxied_path("/ak/ak_abc/v1/messages/count_tokens"),
            Some(ProxiedPath::KeyInPath { key: "ak_abc", tail: "messages/count_tokens" })
        );
        assert_eq!(proxied_path("/ak/k/v1/"), Some(ProxiedPath::KeyInPath { key: "k", tail: "" }));
        assert_eq!(proxied_path("/v1/models"), Some(ProxiedPath::KeyInHeader { tail: "models" }));
        // Not decoded: forwarded as received.
        assert_eq!(proxied_path("/v1/a%2Fb"), Some(ProxiedPath::KeyInHeader { tail: "a%2Fb" }));
        for other in [
            "/",
            "/ak",
            "/ak/",
            "/ak//v1/messages",
            "/ak/k",
            "/ak/k/",
            "/ak/k/v2/messages",
            "/ak/k/x/v1/m",
            "/v1",
            "/v2/messages",
            "/health/x",
        ] {
            assert_eq!(proxied_path(other), None, "{other}");
        }
    }

    #[test]
    fn claude_code_bodies_are_read_without_parsing() {
        let compact = br#"{"model":"claude-opus-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        assert_eq!(claude_code_shape(compact), Some(("claude-opus-4-5", true)));
        let spaced = b"\n { \"model\" : \"m\" ,\n \"max_tokens\": 5 , \"stream\" :\tfalse }\n";
        assert_eq!(claude_code_shape(spaced), Some(("m", false)));
        assert_eq!(claude_code_shape(br#"{"model":"m","stream":true}"#), Some(("m", true)));
        for other in [
            &br#"{"messages":[],"model":"m","stream":true}"#[..],
            br#"{"model":"m","stream":true,"max_tokens":5}"#,
            br#"{"model":"m\"x","stream":true}"#,
            br#"{"model":"m\u0041","stream":true}"#,
            br#"{"model":"m","stream":"true"}"#,
            br#"{"model":"m","stream":1}"#,
            br#"{"model":"m","a":{"stream":true}}"#,
            br#"{"model":"m"}"#,
            br#"{"model":7,"stream":true}"#,
            br#"["model","stream":true}"#,
            b"{\"model\":\"m\nx\",\"stream\":true}",
            b"",
            b"{",
        ] {
            assert_eq!(claude_code_shape(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    /// Members of a Messages body, written in any order: whenever the shortcut answers, it
    /// answers what a parser reads.
    fn member() -> impl Strategy<Value = (String, serde_json::Value)> {
        let text = "[a-z\"\\\\ ,:{}]{0,12}";
        let value = prop_oneof![
            text.prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            (text, any::<bool>()).prop_map(|(t, b)| serde_json::json!({"stream": b, "model": t})),
            prop::collection::vec(text, 0..3).prop_map(serde_json::Value::from),
        ];
        (prop_oneof![Just("model".to_owned()), Just("stream".to_owned()), "[a-z_]{1,10}"], value)
    }

    proptest! {
        #[test]
        fn the_shortcut_agrees_with_a_parser(
            model_first in prop::option::of("[a-z\"\\\\ ,:{}-]{0,12}"),
            middle in prop::collection::vec(member(), 0..5),
            stream_last in prop::option::of(any::<bool>()),
            ws in prop::sample::select(vec!["", " ", "\n  ", "\t", " \r\n"]),
        ) {
            // Often in Claude Code's order (model first, stream last), else anything.
            let members = model_first
                .map(|m| ("model".to_owned(), serde_json::Value::from(m)))
                .into_iter()
                .chain(middle)
                .chain(stream_last.map(|b| ("stream".to_owned(), serde_json::Value::from(b))));
            let mut seen = std::collections::HashSet::new();
            let members: Vec<_> = members.filter(|(k, _)| seen.insert(k.clone())).collect();
            // The shape, read from the members rather than from the bytes.
            let in_shape = members.len() >= 2
                && members[0].0 == "model"
                && members[0].1.as_str().is_some_and(|m| !m.contains(['"', '\\']))
                && members[members.len() - 1].0 == "stream"
                && members[members.len() - 1].1.is_boolean();
            let body = format!(
                "{ws}{{{ws}{}{ws}}}{ws}",
                members
                    .iter()
                    .map(|(k, v)| format!("{}{ws}:{ws}{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                    .collect::<Vec<_>>()
                    .join(&format!("{ws},{ws}"))
            );
            let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&body).unwrap();
            let shortcut = claude_code_shape(body.as_bytes());
            prop_assert_eq!(shortcut.is_some(), in_shape, "{}", body);
            if let Some((model, stream)) = shortcut {
                prop_assert_eq!(parsed.get("model").and_then(|m| m.as_str()), Some(model), "{}", body);
                prop_assert_eq!(parsed.get("stream").and_then(serde_json::Value::as_bool), Some(stream), "{}", body);
            }
        }
    }

    #[test]
    fn a_repeated_model_is_read_as_its_first() {
        // RFC 8259 leaves repeated names open; documented: the shortcut takes the first.
        let body = br#"{"model":"a","messages":[],"model":"b","stream":false}"#;
        assert_eq!(claude_code_shape(body), Some(("a", false)));
    }
}
