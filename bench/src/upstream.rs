//! A minimal, fast and deterministic Anthropic Messages API stand-in for the benchmark.
//!
//! HTTP/1.1 with keep-alive on raw tokio (no framework), on its own thread with a
//! single-threaded runtime, so its cost per request is small and the same for the direct and
//! the proxied runs. `POST /v1/messages` answers a fixed Server-Sent-Events stream when the
//! body contains `"stream":true` (message_start … 10 text deltas … message_stop, chunked, with
//! Anthropic's response headers), else a fixed JSON message. With `x-bench-pace-ms: N` the SSE
//! events are sent N ms apart (the first one right away), to measure time to first byte. With
//! `x-bench-scenario: rate_limit` it answers what Anthropic answers a rate-limited request: 429
//! `rate_limit_error` JSON with `retry-after` (the proxy then fails over to Bedrock).
//!
//! A second listener on the same thread stands in for Amazon Bedrock Runtime: `POST
//! /model/{modelId}/invoke` answers a fixed Anthropic message as JSON (with the
//! `x-amzn-bedrock-*` headers), `POST /model/{modelId}/invoke-with-response-stream` the same
//! answer as fixed Anthropic streaming events in AWS event-stream framing
//! (`application/vnd.amazon.eventstream`, one `chunk` message per event, payload
//! `{"bytes":"<base64 of the event>"}`, `amazon-bedrock-invocationMetrics` on `message_stop`),
//! framed by `ccp_tests::fake_bedrock::encode_event_stream`. No `Authorization: Bearer`: 403.
//! Every answer is prepared once; nothing is recorded (unlike `ccp_tests::fake_bedrock`, whose
//! actix server records and re-encodes every request).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Request header that spaces the SSE events this many milliseconds apart.
pub const PACE_HEADER: &str = "x-bench-pace-ms";
/// Request header choosing a failure: `rate_limit` answers 429 `rate_limit_error`.
pub const SCENARIO_HEADER: &str = "x-bench-scenario";
/// The Bedrock model the fake answers as (its `model`).
const BEDROCK_MODEL: &str = "claude-opus-4-5-20251101";

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

const MODEL: &str = "claude-opus-4-1-20250805";

/// Text of the answer, one delta each.
const DELTAS: [&str; 10] =
    ["Hi", "! I'm", " ready", " to help", " with your", " code.", " What would", " you like", " to work", " on today?"];

/// The canned responses, prepared once.
pub struct Responses {
    /// Status line and headers of the SSE answer (chunked).
    pub sse_head: Bytes,
    /// Each SSE event as one HTTP chunk; the last one also carries the terminating chunk.
    pub sse_chunks: Vec<Bytes>,
    /// The whole SSE answer in one buffer (head and every chunk).
    pub sse_whole: Bytes,
    /// The whole JSON answer (head and body).
    pub json_whole: Bytes,
    /// Body bytes of the SSE answer (what a client reads after de-chunking).
    pub sse_body_len: usize,
    /// Body bytes of the JSON answer.
    pub json_body_len: usize,
    /// The answer to any other method or path.
    pub not_found: Bytes,
    /// The 429 `rate_limit_error` answer (head and body).
    pub rate_limited: Bytes,
    /// Body bytes of the 429 answer.
    pub rate_limited_body_len: usize,
    /// The fake Bedrock's answers.
    pub bedrock: BedrockResponses,
}

/// The fake Bedrock's canned answers.
pub struct BedrockResponses {
    /// `invoke-with-response-stream`: head and the event-stream messages, one HTTP chunk each.
    pub stream_whole: Bytes,
    /// `invoke`: head and JSON body.
    pub json_whole: Bytes,
    /// Body bytes of the event stream (de-chunked).
    pub stream_body_len: usize,
    /// Body bytes of the JSON answer.
    pub json_body_len: usize,
    /// 403 `MissingAuthenticationTokenException` (no bearer key).
    pub forbidden: Bytes,
}

fn common_headers(out: &mut String) {
    // The shape of Anthropic's real response headers (values are fixed, not secret).
    for (n, v) in [
        ("date", "Mon, 01 Jun 2026 12:00:00 GMT"),
        ("connection", "keep-alive"),
        ("cache-control", "no-cache"),
        ("anthropic-ratelimit-input-tokens-limit", "2000000"),
        ("anthropic-ratelimit-input-tokens-remaining", "2000000"),
        ("anthropic-ratelimit-input-tokens-reset", "2026-06-01T12:00:00Z"),
        ("anthropic-ratelimit-output-tokens-limit", "400000"),
        ("anthropic-ratelimit-output-tokens-remaining", "400000"),
        ("anthropic-ratelimit-output-tokens-reset", "2026-06-01T12:00:00Z"),
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-requests-remaining", "3999"),
        ("anthropic-ratelimit-requests-reset", "2026-06-01T12:00:00Z"),
        ("anthropic-ratelimit-tokens-limit", "2400000"),
        ("anthropic-ratelimit-tokens-remaining", "2400000"),
        ("anthropic-ratelimit-tokens-reset", "2026-06-01T12:00:00Z"),
        ("request-id", "req_011CbenchBenchBenchBench01"),
        ("strict-transport-security", "max-age=31536000"),
        ("anthropic-organization-id", "00000000-0000-4000-8000-000000000000"),
        ("via", "1.1 google"),
        ("cf-cache-status", "DYNAMIC"),
        ("x-robots-tag", "none"),
        ("server", "cloudflare"),
        ("cf-ray", "9a00000000000000-FRA"),
    ] {
        out.push_str(n);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
}

fn usage_json(output_tokens: u32) -> String {
    format!(
        r#"{{"input_tokens":4,"cache_creation_input_tokens":1523,"cache_read_input_tokens":11870,"cache_creation":{{"ephemeral_5m_input_tokens":1523,"ephemeral_1h_input_tokens":0}},"output_tokens":{output_tokens},"service_tier":"standard"}}"#
    )
}

/// The Anthropic streaming events of the answer as `(event name, JSON data)`, as `model`.
fn stream_events(model: &str) -> Vec<(&'static str, String)> {
    let mut events = Vec::with_capacity(DELTAS.len() + 6);
    events.push((
        "message_start",
        format!(
            r#"{{"type":"message_start","message":{{"model":"{model}","id":"msg_01BenchBenchBenchBenchBench","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{}}}}}"#,
            usage_json(1)
        ),
    ));
    events.push((
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.into(),
    ));
    events.push(("ping", r#"{"type": "ping"}"#.into()));
    for d in DELTAS {
        events.push((
            "content_block_delta",
            format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{d}"}}}}"#),
        ));
    }
    events.push(("content_block_stop", r#"{"type":"content_block_stop","index":0}"#.into()));
    events.push((
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":4,"cache_creation_input_tokens":1523,"cache_read_input_tokens":11870,"output_tokens":24}}"#.into(),
    ));
    events.push(("message_stop", r#"{"type":"message_stop"}"#.into()));
    events
}

fn sse_events() -> Vec<String> {
    stream_events(MODEL).into_iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

/// The whole JSON message of the answer, as `model`.
fn message_json(model: &str) -> String {
    let text: String = DELTAS.concat();
    format!(
        r#"{{"model":"{model}","id":"msg_01BenchBenchBenchBenchBench","type":"message","role":"assistant","content":[{{"type":"text","text":"{text}"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{}}}"#,
        usage_json(24)
    )
}

/// Standard base64 with padding (the event-stream payload's `bytes`).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An AWS REST-JSON error answer.
fn aws_error(status: &str, kind: &str, message: &str) -> Bytes {
    let body = format!(r#"{{"message":"{message}"}}"#);
    Bytes::from(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nx-amzn-requestid: 00000000-0000-4000-8000-00000000be0c\r\nx-amzn-ErrorType: {kind}:http://internal.amazon.com/coral/com.amazon.coral.service/\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
}

impl BedrockResponses {
    /// Builds the canned answers.
    pub fn new() -> Self {
        let common = "x-amzn-requestid: 4b1c2f3e-0000-4000-8000-00000000be0c\r\ndate: Mon, 01 Jun 2026 12:00:00 GMT\r\nconnection: keep-alive\r\n";
        let mut messages = Vec::new();
        // Bedrock sends no `ping`; it adds its metrics to `message_stop` and pads payloads.
        for (seq, (name, data)) in stream_events(BEDROCK_MODEL).into_iter().filter(|(n, _)| *n != "ping").enumerate() {
            let data = if name == "message_stop" {
                r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":4,"outputTokenCount":24,"invocationLatency":412,"firstByteLatency":188,"cacheReadInputTokenCount":11870,"cacheWriteInputTokenCount":1523}}"#.to_owned()
            } else {
                data
            };
            let pad = &"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[..(seq * 7) % 62 + 1];
            let payload = format!(r#"{{"bytes":"{}","p":"{pad}"}}"#, base64(data.as_bytes()));
            messages.push(ccp_tests::fake_bedrock::encode_event_stream(
                &[(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
                payload.as_bytes(),
            ));
        }
        let mut stream = BytesMut::new();
        stream.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nx-amzn-bedrock-content-type: application/json\r\ntransfer-encoding: chunked\r\n");
        stream.extend_from_slice(common.as_bytes());
        stream.extend_from_slice(b"\r\n");
        for m in &messages {
            stream.extend_from_slice(format!("{:x}\r\n", m.len()).as_bytes());
            stream.extend_from_slice(m);
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b"0\r\n\r\n");

        let body = message_json(BEDROCK_MODEL);
        let json = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{common}x-amzn-bedrock-invocation-latency: 412\r\nx-amzn-bedrock-input-token-count: 4\r\nx-amzn-bedrock-output-token-count: 24\r\nx-amzn-bedrock-cache-read-input-token-count: 11870\r\nx-amzn-bedrock-cache-write-input-token-count: 1523\r\n\r\n{body}",
            body.len()
        );
        Self {
            stream_whole: stream.freeze(),
            json_whole: Bytes::from(json),
            stream_body_len: messages.iter().map(Vec::len).sum(),
            json_body_len: body.len(),
            forbidden: aws_error(
                "403 Forbidden",
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
        }
    }
}

impl Default for BedrockResponses {
    fn default() -> Self {
        Self::new()
    }
}

impl Responses {
    /// Builds the canned answers.
    pub fn new() -> Self {
        let mut head = String::from("HTTP/1.1 200 OK\r\n");
        head.push_str("content-type: text/event-stream; charset=utf-8\r\n");
        head.push_str("transfer-encoding: chunked\r\n");
        common_headers(&mut head);
        head.push_str("\r\n");
        let events = sse_events();
        let sse_body_len = events.iter().map(String::len).sum();
        let last = events.len() - 1;
        let sse_chunks: Vec<Bytes> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut c = format!("{:x}\r\n{e}\r\n", e.len());
                if i == last {
                    c.push_str("0\r\n\r\n");
                }
                Bytes::from(c)
            })
            .collect();
        let mut whole = BytesMut::from(head.as_bytes());
        for c in &sse_chunks {
            whole.extend_from_slice(c);
        }

        let body = message_json(MODEL);
        let mut json = String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
        json.push_str(&format!("content-length: {}\r\n", body.len()));
        common_headers(&mut json);
        json.push_str("\r\n");
        json.push_str(&body);

        let nf = r#"{"type":"error","error":{"type":"not_found_error","message":"Not found"}}"#;
        let not_found = format!(
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{nf}",
            nf.len()
        );

        let rl = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization (00000000-0000-4000-8000-000000000000) of 2,000,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."},"request_id":"req_011CbenchBenchBenchBench02"}"#;
        let rate_limited = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 13\r\nx-should-retry: true\r\nanthropic-ratelimit-input-tokens-limit: 2000000\r\nanthropic-ratelimit-input-tokens-remaining: 0\r\nanthropic-ratelimit-input-tokens-reset: 2026-06-01T12:00:13Z\r\nrequest-id: req_011CbenchBenchBenchBench02\r\ndate: Mon, 01 Jun 2026 12:00:00 GMT\r\nconnection: keep-alive\r\nserver: cloudflare\r\n\r\n{rl}",
            rl.len()
        );

        Self {
            rate_limited: Bytes::from(rate_limited),
            rate_limited_body_len: rl.len(),
            bedrock: BedrockResponses::new(),
            not_found: Bytes::from(not_found),
            sse_head: Bytes::from(head),
            sse_chunks,
            sse_whole: whole.freeze(),
            json_body_len: body.len(),
            json_whole: Bytes::from(json),
            sse_body_len,
        }
    }
}

impl Default for Responses {
    fn default() -> Self {
        Self::new()
    }
}

/// The running upstreams (fake Anthropic and fake Bedrock), on one thread.
pub struct Upstream {
    /// Where the fake Anthropic listens.
    pub addr: SocketAddr,
    /// Where the fake Bedrock listens.
    pub bedrock_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Binds 127.0.0.1 on two free ports and serves both on a new thread.
    pub fn start() -> anyhow::Result<Self> {
        let bind = || -> anyhow::Result<(StdListener, SocketAddr)> {
            let listener = StdListener::bind("127.0.0.1:0").context("bind the upstream")?;
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            Ok((listener, addr))
        };
        let (anthropic, addr) = bind()?;
        let (bedrock, bedrock_addr) = bind()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("upstream runtime")?;
        let thread = std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (Ok(anthropic), Ok(bedrock)) =
                        (TcpListener::from_std(anthropic), TcpListener::from_std(bedrock))
                    else {
                        return;
                    };
                    let responses = std::sync::Arc::new(Responses::new());
                    tokio::select! {
                        () = accept_loop(anthropic, responses.clone()) => {}
                        () = accept_loop(bedrock, responses) => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("upstream thread")?;
        Ok(Self { addr, bedrock_addr, stop: Some(stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT` of the fake Anthropic.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT` of the fake Bedrock (the proxy's `bedrock_endpoint_url`).
    pub fn bedrock_url(&self) -> String {
        format!("http://{}", self.bedrock_addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, responses: std::sync::Arc<Responses>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let responses = responses.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &responses).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// What a request asks for (both fakes answer on either port; the proxy uses one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /model/{id}/invoke`.
    BedrockInvoke,
    /// `POST /model/{id}/invoke-with-response-stream`.
    BedrockStream,
    /// Anything else.
    Other,
}

fn route_of(method: Option<&str>, path: &str) -> Route {
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
struct Head {
    route: Route,
    content_length: Option<usize>,
    chunked: bool,
    pace_ms: u64,
    rate_limit: bool,
    bearer: bool,
    close: bool,
    len: usize,
}

fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
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

async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<bool> {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
    Ok(stream.read_buf(buf).await? > 0)
}

/// Reads a chunked body; returns it de-chunked. `buf` starts at the body.
async fn read_chunked(stream: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<BytesMut> {
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

fn wants_stream(body: &[u8]) -> bool {
    // Claude Code puts `stream` last; compact JSON as serialized by the clients.
    memchr::memmem::rfind(body, br#""stream":true"#).is_some()
        || memchr::memmem::rfind(body, br#""stream": true"#).is_some()
}

async fn serve(mut stream: TcpStream, responses: &Responses) -> anyhow::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let head = loop {
            if let Some(head) = parse_head(&buf)? {
                break head;
            }
            if buf.len() > MAX_HEAD {
                bail!("request head too large");
            }
            if !fill(&mut stream, &mut buf).await? {
                return Ok(());
            }
        };
        buf.advance(head.len);
        let stream_wanted = if head.chunked {
            let body = read_chunked(&mut stream, &mut buf).await?;
            wants_stream(&body)
        } else {
            let n = head.content_length.unwrap_or(0);
            if n > MAX_BODY {
                bail!("body too large");
            }
            while buf.len() < n {
                if !fill(&mut stream, &mut buf).await? {
                    return Ok(());
                }
            }
            // Only the Messages API says `stream` in the body; Bedrock says it in the path.
            let wanted = head.route == Route::Messages && wants_stream(&buf[..n]);
            buf.advance(n);
            wanted
        };
        match head.route {
            Route::Other => stream.write_all(&responses.not_found).await?,
            Route::BedrockInvoke | Route::BedrockStream if !head.bearer => {
                stream.write_all(&responses.bedrock.forbidden).await?;
            }
            Route::BedrockInvoke => stream.write_all(&responses.bedrock.json_whole).await?,
            Route::BedrockStream => stream.write_all(&responses.bedrock.stream_whole).await?,
            Route::Messages if head.rate_limit => stream.write_all(&responses.rate_limited).await?,
            Route::Messages if !stream_wanted => stream.write_all(&responses.json_whole).await?,
            Route::Messages if head.pace_ms == 0 => stream.write_all(&responses.sse_whole).await?,
            Route::Messages => {
                let pace = Duration::from_millis(head.pace_ms);
                let mut first = BytesMut::from(&responses.sse_head[..]);
                let mut chunks = responses.sse_chunks.iter();
                if let Some(c) = chunks.next() {
                    first.extend_from_slice(c);
                }
                stream.write_all(&first).await?;
                for c in chunks {
                    tokio::time::sleep(pace).await;
                    stream.write_all(c).await?;
                }
            }
        }
        if head.close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_answers_are_well_formed() {
        let r = Responses::new();
        let whole = std::str::from_utf8(&r.sse_whole).unwrap();
        assert!(whole.contains("event: message_start"));
        assert!(whole.ends_with("data: {\"type\":\"message_stop\"}\n\n\r\n0\r\n\r\n"));
        assert_eq!(whole.matches("content_block_delta").count(), 20);
        let json = std::str::from_utf8(&r.json_whole).unwrap();
        let body = json.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body.len(), r.json_body_len);
        serde_json::from_str::<serde_json::Value>(body).unwrap();
        let nf = std::str::from_utf8(&r.not_found).unwrap();
        let (head, body) = nf.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn rate_limit_answer_is_anthropics_429() {
        let r = Responses::new();
        let text = std::str::from_utf8(&r.rate_limited).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 "));
        assert!(head.contains("\r\nretry-after: 13\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body.len(), r.rate_limited_body_len);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
    }

    #[test]
    fn bedrock_answers_decode_as_bedrock_sends_them() {
        let b = BedrockResponses::new();
        let text = std::str::from_utf8(&b.json_whole).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body.len(), b.json_body_len);
        assert_eq!(serde_json::from_str::<serde_json::Value>(body).unwrap()["type"], "message");

        // De-chunk the stream, then decode the event-stream messages.
        let at = memchr::memmem::find(&b.stream_whole, b"\r\n\r\n").unwrap() + 4;
        let mut rest = &b.stream_whole[at..];
        let mut body = Vec::new();
        loop {
            let httparse::Status::Complete((skip, size)) = httparse::parse_chunk_size(rest).unwrap() else {
                panic!("partial chunk")
            };
            let size = usize::try_from(size).unwrap();
            if size == 0 {
                assert_eq!(&rest[skip..], b"\r\n");
                break;
            }
            body.extend_from_slice(&rest[skip..skip + size]);
            rest = &rest[skip + size + 2..];
        }
        assert_eq!(body.len(), b.stream_body_len);
        let (frames, used) = ccp_tests::fake_bedrock::decode_event_stream(&body).unwrap();
        assert_eq!(used, body.len());
        let events: Vec<serde_json::Value> = frames
            .iter()
            .map(|f| {
                assert_eq!(f.header(":event-type"), Some("chunk"));
                let payload: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
                let b64 = payload["bytes"].as_str().unwrap();
                serde_json::from_slice(&decode_base64(b64)).unwrap()
            })
            .collect();
        assert_eq!(events.first().unwrap()["type"], "message_start");
        assert!(events.iter().all(|e| e["type"] != "ping"));
        assert!(events.last().unwrap()["amazon-bedrock-invocationMetrics"].is_object());
        assert_eq!(events.iter().filter(|e| e["type"] == "content_block_delta").count(), DELTAS.len());
    }

    fn decode_base64(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let mut out = Vec::new();
        for quad in s.as_bytes().chunks(4) {
            let n = quad.iter().take_while(|&&c| c != b'=').fold(0u32, |acc, &c| (acc << 6) | u32::from(val(c)));
            let k = quad.iter().filter(|&&c| c != b'=').count();
            let n = n << (6 * (4 - k));
            out.extend_from_slice(&n.to_be_bytes()[1..k]);
        }
        out
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(decode_base64(&base64(b"any bytes \xff")), b"any bytes \xff");
    }

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
