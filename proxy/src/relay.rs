//! Relaying: which headers pass in either direction, the request to Anthropic, and the answer
//! streamed back chunk by chunk — bytes, status and headers unchanged — through [`TapBody`],
//! which reads usage along and finishes the request's record exactly once.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use ccp_schemas::events::ErrorClass;
use futures_util::Stream;

use crate::error::REQUEST_ID_HEADER;
use crate::forward::{header_str, ACCESS_KEY_HEADER};
use crate::tap::{Coding, Framing, UsageTap};
use crate::usage::RequestRecord;

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

/// The codings the usage tap can read as it streams (`tap::Coding`).
const READABLE_CODINGS: [&str; 5] = ["gzip", "deflate", "br", "zstd", "identity"];

/// An `Accept-Encoding` value with only the codings the usage tap can read (parameters such as
/// `q=` kept; `*` and unknown codings dropped), so that every answer's usage can be metered;
/// `None` when nothing is left (the upstream then answers uncompressed).
pub fn readable_accept_encoding(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let readable = |item: &&str| {
        let token = item.split(';').next().unwrap_or("").trim();
        READABLE_CODINGS.iter().any(|c| c.eq_ignore_ascii_case(token))
    };
    // The usual case (Claude Code asks for gzip, deflate, br, zstd): passed on as it is.
    if text.split(',').map(str::trim).all(|item| readable(&item)) {
        return Some(value.clone());
    }
    let kept: Vec<&str> = text.split(',').map(str::trim).filter(readable).collect();
    (!kept.is_empty()).then(|| HeaderValue::from_str(&kept.join(", ")).ok()).flatten()
}

/// The request to Anthropic for `req`: the same method, `<base>/v1/<tail>` with the query as
/// received, and the [`forwarded_headers`] (`Accept-Encoding` limited to
/// [`readable_accept_encoding`]).
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
        if name == actix_web::http::header::ACCEPT_ENCODING {
            if let Some(readable) = readable_accept_encoding(value) {
                out = out.append_header((name.clone(), readable));
            }
            continue;
        }
        out = out.append_header((name.clone(), value.clone()));
    }
    out
}

/// Headers added to every relayed answer: which provider answered and why.
pub(crate) const PROVIDER_HEADER: &str = "x-ccp-provider";
pub(crate) const FALLBACK_REASON_HEADER: &str = "x-ccp-fallback-reason";

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
pub(crate) fn relay(
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
pub(crate) struct TapBody<S> {
    pub(crate) inner: S,
    pub(crate) tap: Option<UsageTap>,
    pub(crate) record: Option<RequestRecord>,
    pub(crate) status: u16,
    pub(crate) class: Option<ErrorClass>,
    /// Set by a stream that ended with an error event of its own (Bedrock).
    pub(crate) fault: Option<std::rc::Rc<std::cell::Cell<Option<ErrorClass>>>>,
    /// Called when Anthropic's stream fails after bytes were sent (counts a breaker failure).
    pub(crate) on_upstream_failure: Option<Box<dyn FnOnce()>>,
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
    use super::{forwarded_headers, move_forwarded, readable_accept_encoding};

    #[test]
    fn only_codings_the_tap_reads_are_asked_for() {
        let ask = |v: &'static str| {
            readable_accept_encoding(&HeaderValue::from_static(v)).map(|h| h.to_str().unwrap().to_owned())
        };
        assert_eq!(ask("gzip, deflate, br, zstd").as_deref(), Some("gzip, deflate, br, zstd"));
        assert_eq!(ask("gzip;q=1.0, compress, x-custom, BR;q=0.5").as_deref(), Some("gzip;q=1.0, BR;q=0.5"));
        assert_eq!(ask("*").as_deref(), None);
        assert_eq!(ask("compress").as_deref(), None);
    }
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

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
}
