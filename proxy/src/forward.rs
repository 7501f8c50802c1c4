//! The passthrough: authenticate, read the body (bounded), forward to Anthropic over pooled
//! keep-alive connections, and stream the answer back chunk by chunk — bytes, status and
//! headers unchanged — while the usage tap reads along.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header::{
    HeaderMap, HeaderName, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::error::{PayloadError, SendRequestError};
use bytes::{Bytes, BytesMut};
use ccp_schemas::events::{Endpoint, ErrorClass, Provider};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper, KeyPrefix};
use ccp_schemas::state::Refusal;
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;

use crate::directory::KeyTable;
use crate::error::{ProxyError, REQUEST_ID_HEADER};
use crate::tap::{Coding, Framing, Observed, UsageTap};
use crate::usage::{Recorder, RequestRecord};

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
}

/// One per worker thread (`awc::Client` is not `Send`).
pub struct Upstream {
    client: awc::Client,
}

impl Upstream {
    /// A pooled client with LLM-sized timeouts and no default headers of its own.
    pub fn new(header_timeout: Duration, connect_timeout: Duration) -> Self {
        let connector = awc::Connector::new()
            .timeout(connect_timeout)
            .limit(0)
            .conn_keep_alive(Duration::from_secs(60));
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(header_timeout)
            .no_default_headers()
            .disable_redirects()
            .finish();
        Self { client }
    }
}

/// Where the key came from.
#[derive(Debug, Clone, Copy)]
enum KeySource {
    Path,
    Header,
}

/// `/ak/{access_key}/v1/{tail}`.
pub async fn via_path(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    let (key, tail) = path.into_inner();
    proxy(
        req,
        payload,
        Some(key),
        tail,
        KeySource::Path,
        &shared,
        &upstream,
    )
    .await
}

/// `/v1/{tail}` with the key in `x-ccp-access-key`.
pub async fn via_header(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    shared: web::Data<Shared>,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    let key = req
        .headers()
        .get(ACCESS_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    proxy(
        req,
        payload,
        key,
        path.into_inner(),
        KeySource::Header,
        &shared,
        &upstream,
    )
    .await
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
    req: HttpRequest,
    payload: web::Payload,
    key: Option<String>,
    tail: String,
    source: KeySource,
    shared: &Shared,
    upstream: &Upstream,
) -> HttpResponse {
    let headers = req.headers();
    let mut record = RequestRecord::start(
        endpoint_of(&tail),
        header_str(headers, "x-claude-code-session-id"),
        header_str(headers, "user-agent"),
        &shared.recorder.metrics,
    );
    match prepare(&req, payload, key, source, shared, &mut record).await {
        Ok(body) => send(&req, &tail, body, shared, upstream, record).await,
        Err(err) => {
            let resp = err.response(record.request_id);
            record.finish(
                &shared.recorder,
                err.status.as_u16(),
                Some(err.class),
                false,
                Observed::default(),
            );
            resp
        }
    }
}

/// Authenticates and reads the body; everything that can be refused before Anthropic is asked.
async fn prepare(
    req: &HttpRequest,
    mut payload: web::Payload,
    key: Option<String>,
    source: KeySource,
    shared: &Shared,
    record: &mut RequestRecord,
) -> Result<Bytes, ProxyError> {
    if !shared.keys.is_ready() {
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
    record.key_prefix = Some(KeyPrefix::of_candidate(&presented));
    let key = AccessKey::parse(&presented).map_err(|e| {
        let place = match source {
            KeySource::Path => "in ANTHROPIC_BASE_URL",
            KeySource::Header => "in the x-ccp-access-key header",
        };
        ProxyError::unauthorized(
            ErrorClass::MalformedAccessKey,
            format!("The ClaudeCodeProxy access key {place} is malformed ({e}). Ask your platform team for a valid key."),
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
    if header_str(req.headers(), CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(ProxyError::too_large(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ProxyError::bad_request(format!("The request body could not be read: {e}"))
        })?;
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

/// Checks a Messages API body is a JSON object and notes its `model` and `stream`.
fn inspect_json(
    req: &HttpRequest,
    body: &[u8],
    record: &mut RequestRecord,
) -> Result<(), ProxyError> {
    let content_type = header_str(req.headers(), CONTENT_TYPE.as_str()).unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(ProxyError::unsupported_media_type(format!(
            "The Messages API takes `Content-Type: application/json`, not `{}`.",
            content_type.chars().take(64).collect::<String>()
        )));
    }
    let peek: Peek = serde_json::from_slice(body).map_err(|e| {
        ProxyError::bad_request(format!("The request body is not a valid JSON object: {e}."))
    })?;
    record.requested_model = peek
        .model
        .as_ref()
        .and_then(|m| m.as_str())
        .map(|m| m.chars().take(128).collect());
    record.stream = peek
        .stream
        .as_ref()
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
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

/// Headers named by the `Connection` header are hop-by-hop too.
fn connection_listed(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(actix_web::http::header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

async fn send(
    req: &HttpRequest,
    tail: &str,
    body: Bytes,
    shared: &Shared,
    upstream: &Upstream,
    mut record: RequestRecord,
) -> HttpResponse {
    let mut url = String::with_capacity(shared.anthropic_base.len() + tail.len() + 16);
    url.push_str(&shared.anthropic_base);
    url.push_str("/v1/");
    url.push_str(tail);
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    let mut out = upstream.client.request(req.method().clone(), url.as_str());
    for (name, value) in req.headers() {
        if !is_hop_by_hop(name) && !connection_listed(req.headers(), name) {
            out = out.append_header((name.clone(), value.clone()));
        }
    }
    record.provider = Provider::Anthropic;
    match out.send_body(body).await {
        Ok(response) => relay(response, shared, record),
        Err(e) => {
            let (status, class, message) = match e {
                SendRequestError::Timeout => (
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorClass::UpstreamTimeout,
                    "Anthropic did not answer in time.".to_owned(),
                ),
                other => (
                    StatusCode::BAD_GATEWAY,
                    ErrorClass::UpstreamConnectError,
                    format!("Anthropic could not be reached: {other}."),
                ),
            };
            tracing::warn!(request_id = %record.request_id, error_class = ?class, "upstream request failed");
            let err = ProxyError::upstream(status, class, message);
            let resp = err.response(record.request_id);
            record.finish(
                &shared.recorder,
                status.as_u16(),
                Some(class),
                false,
                Observed::default(),
            );
            resp
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

/// Streams the upstream response back unchanged, tapping usage.
fn relay(response: awc::ClientResponse, shared: &Shared, record: RequestRecord) -> HttpResponse {
    let status = response.status();
    let up = response.headers();
    let tap = UsageTap::new(
        Framing::from_content_type(up.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())),
        Coding::from_header(up.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok())),
    );
    let length = up
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut builder = HttpResponse::build(status);
    for (name, value) in up {
        if !is_hop_by_hop(name) {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    builder.insert_header((REQUEST_ID_HEADER, record.request_id.to_string()));
    if let Some(len) = length {
        builder.no_chunking(len);
    }
    let body = TapBody {
        inner: response,
        tap: Some(tap),
        record: Some(record),
        recorder: shared.recorder.clone(),
        status: status.as_u16(),
        class: upstream_error_class(status),
    };
    builder.streaming(body)
}

/// The response body on its way to the client. Finishes the request record exactly once:
/// at the end of the stream, on an upstream error, or when dropped early (client gone).
struct TapBody {
    inner: awc::ClientResponse,
    tap: Option<UsageTap>,
    record: Option<RequestRecord>,
    recorder: Recorder,
    status: u16,
    class: Option<ErrorClass>,
}

impl TapBody {
    fn finish(&mut self, cut: Option<ErrorClass>) {
        let (Some(record), Some(tap)) = (self.record.take(), self.tap.take()) else {
            return;
        };
        let observed = tap.finish();
        let in_stream_error = observed.error_type.is_some() && self.status < 400;
        let class = cut
            .or(self.class)
            .or(in_stream_error.then_some(ErrorClass::StreamInterrupted));
        let incomplete = cut.is_some()
            || in_stream_error
            || (record.stream && self.status < 400 && !observed.complete);
        record.finish(&self.recorder, self.status, class, incomplete, observed);
    }
}

impl Stream for TapBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
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

impl Drop for TapBody {
    fn drop(&mut self) {
        if self.record.is_some() {
            self.finish(Some(ErrorClass::ClientDisconnected));
        }
    }
}
