//! The fakes' canned answers, prepared once: Anthropic's SSE stream, JSON message and 429
//! `rate_limit_error` (with Anthropic's response headers), and Bedrock's `invoke` JSON and
//! `invoke-with-response-stream` event stream (AWS event-stream framing, base64 payloads).

use bytes::{Bytes, BytesMut};

/// The Bedrock model the fake answers as (its `model`).
const BEDROCK_MODEL: &str = "claude-opus-4-5-20251101";

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
    /// Where the text deltas are in `sse_chunks` (the events before and after them are the
    /// same in every answer; a long answer repeats the deltas).
    deltas: std::ops::Range<usize>,
    /// Body bytes of each SSE event, in the order of `sse_chunks`.
    event_lens: Vec<usize>,
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
        let first_delta = events.iter().position(|e| e.starts_with("event: content_block_delta")).unwrap_or(0);
        let deltas = first_delta..first_delta + DELTAS.len();
        let event_lens = events.iter().map(String::len).collect();
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
            deltas,
            event_lens,
        }
    }

    /// The SSE answer with `deltas` text deltas (the canned ones in turn; `0`: the canned
    /// answer, `sse_chunks`), one HTTP chunk per event, the last one with the terminating chunk.
    pub fn sse_stream(&self, deltas: usize) -> impl Iterator<Item = &Bytes> {
        let n = if deltas == 0 { self.deltas.len() } else { deltas };
        let (before, rest) = self.sse_chunks.split_at(self.deltas.start);
        let (canned, after) = rest.split_at(self.deltas.len());
        before.iter().chain(canned.iter().cycle().take(n)).chain(after)
    }

    /// SSE events of the answer with `deltas` text deltas (`0`: the canned answer).
    pub fn sse_stream_events(&self, deltas: usize) -> usize {
        let n = if deltas == 0 { self.deltas.len() } else { deltas };
        self.sse_chunks.len() - self.deltas.len() + n
    }

    /// Body bytes of the answer with `deltas` text deltas (`0`: the canned answer).
    pub fn sse_stream_body_len(&self, deltas: usize) -> usize {
        let n = if deltas == 0 { self.deltas.len() } else { deltas };
        let canned: usize = self.event_lens[self.deltas.clone()].iter().sum();
        let (full, part) = (n / self.deltas.len(), n % self.deltas.len());
        let partial: usize = self.event_lens[self.deltas.start..self.deltas.start + part].iter().sum();
        self.sse_body_len - canned + full * canned + partial
    }
}

impl Default for Responses {
    fn default() -> Self {
        Self::new()
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
    fn long_answers_repeat_the_deltas_between_the_same_events() {
        let r = Responses::new();
        let canned: Vec<&Bytes> = r.sse_stream(0).collect();
        assert_eq!(canned, r.sse_chunks.iter().collect::<Vec<_>>());
        assert_eq!(r.sse_stream_body_len(0), r.sse_body_len);
        for deltas in [1, 10, 23, 1000] {
            let body: Vec<u8> = r.sse_stream(deltas).flat_map(|c| dechunk(c)).collect();
            let text = std::str::from_utf8(&body).unwrap();
            assert_eq!(text.matches("event: content_block_delta").count(), deltas);
            assert_eq!(text.matches("\n\n").count(), r.sse_stream_events(deltas));
            assert_eq!(body.len(), r.sse_stream_body_len(deltas), "{deltas}");
            assert!(text.starts_with("event: message_start\n"));
            assert!(text.ends_with("data: {\"type\":\"message_stop\"}\n\n"));
            assert!(r.sse_stream(deltas).last().unwrap().ends_with(b"\r\n0\r\n\r\n"));
        }
    }

    /// The data of one HTTP chunk (and of the terminating one after it, empty).
    fn dechunk(c: &[u8]) -> Vec<u8> {
        let httparse::Status::Complete((skip, size)) = httparse::parse_chunk_size(c).unwrap() else {
            panic!("partial chunk")
        };
        c[skip..skip + usize::try_from(size).unwrap()].to_vec()
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
}
