//! Reading a request on the fakes' connections: the head (what it asks for, and the benchmark's
//! pace, deltas and scenario headers) and the body, by length or chunked.

use anyhow::{bail, Context as _};
use bytes::{Buf as _, BytesMut};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use super::{DELTAS_HEADER, PACE_HEADER, SCENARIO_HEADER};

/// Largest request head accepted.
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
pub(super) const MAX_BODY: usize = 32 * 1024 * 1024;

/// What a request asks for (both fakes answer on either port; the proxy uses one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /model/{id}/invoke`.
    BedrockInvoke,
    /// `POST /model/{id}/invoke-with-response-stream`.
    BedrockStream,
    /// Anything else.
    Other,
}

pub(super) fn route_of(method: Option<&str>, path: &str) -> Route {
    if method != Some("POST") {
        return Route::Other;
    }
    if path == "/v1/messages" {
        return Route::Messages;
    }
    match path.strip_prefix("/model/").and_then(|rest| rest.split_once('/')) {
        Some((id, "invoke")) if !id.is_empty() => Route::BedrockInvoke,
        Some((id, "invoke-with-response-stream")) if !id.is_empty() => Route::BedrockStream,
        _ => Route::Other,
    }
}

/// What the handler needs from a request head.
pub(super) struct Head {
    pub(super) route: Route,
    pub(super) content_length: Option<usize>,
    pub(super) chunked: bool,
    pub(super) pace_ms: u64,
    /// Text deltas of a streamed answer; 0: the canned answer's.
    pub(super) deltas: usize,
    pub(super) rate_limit: bool,
    pub(super) bearer: bool,
    pub(super) close: bool,
    pub(super) len: usize,
}

pub(super) fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let path = req.path.unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let mut head = Head {
        route: route_of(req.method, path),
        content_length: None,
        chunked: false,
        pace_ms: 0,
        deltas: 0,
        rate_limit: false,
        bearer: false,
        close: req.version == Some(0),
        len,
    };
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(v.parse().context("content-length")?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = v.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case(PACE_HEADER) {
            head.pace_ms = v.parse().unwrap_or(0);
        } else if h.name.eq_ignore_ascii_case(DELTAS_HEADER) {
            head.deltas = v.parse().unwrap_or(0);
        } else if h.name.eq_ignore_ascii_case(SCENARIO_HEADER) {
            head.rate_limit = v.eq_ignore_ascii_case("rate_limit");
        } else if h.name.eq_ignore_ascii_case("authorization") {
            head.bearer = v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ");
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close = v.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(head))
}

pub(super) async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<bool> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    Ok(stream.read_buf(buf).await? > 0)
}

/// Reads a chunked body; returns it de-chunked. `buf` starts at the body.
pub(super) async fn read_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<BytesMut> {
    let mut body = BytesMut::new();
    loop {
        match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((skip, size))) => {
                let size = usize::try_from(size)?;
                if size == 0 {
                    // Trailer section: ends with an empty line (no trailers expected).
                    while buf.len() < skip + 2 {
                        if !fill(stream, buf).await? {
                            bail!("eof in chunked trailer");
                        }
                    }
                    buf.advance(skip + 2);
                    return Ok(body);
                }
                if body.len() + size > MAX_BODY {
                    bail!("body too large");
                }
                while buf.len() < skip + size + 2 {
                    if !fill(stream, buf).await? {
                        bail!("eof in chunk");
                    }
                }
                body.extend_from_slice(&buf[skip..skip + size]);
                buf.advance(skip + size + 2);
            }
            Ok(httparse::Status::Partial) => {
                if !fill(stream, buf).await? {
                    bail!("eof in chunk size");
                }
            }
            Err(e) => bail!("bad chunk size: {e:?}"),
        }
    }
}

pub(super) fn wants_stream(body: &[u8]) -> bool {
    // Claude Code puts `stream` last; compact JSON as serialized by the clients.
    memchr::memmem::rfind(body, br#""stream":true"#).is_some()
        || memchr::memmem::rfind(body, br#""stream": true"#).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_apart() {
        assert_eq!(route_of(Some("POST"), "/v1/messages"), Route::Messages);
        assert_eq!(
            route_of(Some("POST"), "/model/global.anthropic.claude-opus-4-5-20251101-v1%3A0/invoke"),
            Route::BedrockInvoke
        );
        assert_eq!(route_of(Some("POST"), "/model/x/invoke-with-response-stream"), Route::BedrockStream);
        assert_eq!(route_of(Some("GET"), "/v1/messages"), Route::Other);
        assert_eq!(route_of(Some("POST"), "/model//invoke"), Route::Other);
    }

    #[test]
    fn stream_flag_is_found() {
        assert!(wants_stream(br#"{"a":1,"stream":true}"#));
        assert!(!wants_stream(br#"{"a":1,"stream":false}"#));
        assert!(!wants_stream(br#"{"a":1}"#));
    }
}
