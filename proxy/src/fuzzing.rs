//! The checks behind the `sse` and `bedrock_eventstream` fuzz targets (`fuzz/`), kept here so the
//! normal suite replays the committed corpus through exactly the same code on stable. Each check
//! panics (by `assert!`) when an invariant breaks; for any input it must return normally
//! otherwise.
//!
//! Not part of the crate's API: hidden from the docs and free to change.

use aws_sdk_bedrockruntime::primitives::event_stream::Message;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use base64::Engine as _;
use bytes::BytesMut;
use serde_json::{json, Value};

use crate::tap::{Coding, Framing, Observed, UsageTap};

/// Deterministic chunk sizes (1..=64) from a seed: how a fuzz input is split into reads.
struct Splits(u32);

impl Splits {
    fn next(&mut self) -> usize {
        // xorshift32; a zero seed would stay zero.
        let mut x = self.0 | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x % 64) as usize + 1
    }

    fn chunks<'a>(&mut self, mut bytes: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let n = self.next().min(bytes.len());
            out.push(&bytes[..n]);
            bytes = &bytes[n..];
        }
        out
    }
}

fn tap(framing: Framing, coding: Coding, chunks: &[&[u8]]) -> Observed {
    let mut tap = UsageTap::new(framing, coding);
    for chunk in chunks {
        tap.feed(chunk);
    }
    tap.finish()
}

/// `sse`: the usage tap never panics, gives the same result however the body is split into
/// reads, and reads exactly the usage of a well-formed stream generated from the input.
///
/// Input: byte 0 picks raw (even) or generated (odd) mode; byte 1 the framing and coding (raw)
/// or nothing; byte 2 seeds the split; the rest is the body (raw) or the generator's choices.
pub fn check_sse(data: &[u8]) {
    let [mode, kind, seed, rest @ ..] = data else { return };
    if mode % 2 == 0 {
        let (framing, coding) = match kind % 8 {
            0 | 1 => (Framing::Sse, Coding::Identity),
            2 => (Framing::Json, Coding::Identity),
            3 => (Framing::Sse, Coding::Gzip),
            4 => (Framing::Sse, Coding::Deflate),
            5 => (Framing::Sse, Coding::Brotli),
            6 => (Framing::Sse, Coding::Zstd),
            _ => (Framing::Json, Coding::Gzip),
        };
        let whole = tap(framing, coding, &[rest]);
        let split = tap(framing, coding, &Splits(u32::from(*seed)).chunks(rest));
        assert_eq!(whole, split, "the tap's result depends on how the body was split");
        if framing == Framing::Sse && coding == Coding::Identity {
            let bytewise: Vec<&[u8]> = rest.chunks(1).collect();
            assert_eq!(whole, tap(framing, coding, &bytewise), "byte-by-byte reads differ");
        }
    } else {
        let (body, expected) = generate_stream(rest);
        let whole = tap(Framing::Sse, Coding::Identity, &[&body]);
        assert_eq!(whole, expected, "the tap misread a well-formed stream");
        let split = tap(Framing::Sse, Coding::Identity, &Splits(u32::from(*seed)).chunks(&body));
        assert_eq!(split, expected, "the tap's result depends on how the stream was split");
    }
}

/// Reads choices from the fuzz input; zeros once it runs out.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn number(&mut self) -> u64 {
        u64::from(u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]))
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 24);
        (0..len).map(|_| char::from_u32(u32::from(self.byte()) * 37 % 0x2FF).unwrap_or('?')).collect()
    }
}

/// The length of `text` as a JSON string's content (escaped, without the quotes).
fn escaped_len(text: &str) -> u64 {
    Value::from(text).to_string().len() as u64 - 2
}

/// An Anthropic-shaped stream built from `input`, and what the tap must read from it.
fn generate_stream(input: &[u8]) -> (Vec<u8>, Observed) {
    let mut c = Choices(input);
    let flags = c.byte();
    let newline: &[u8] = if flags & 1 == 0 { b"\n" } else { b"\r\n" };
    let space = flags & 2 == 0;
    let mut expected = Observed::default();
    let mut body = Vec::new();
    let event = |body: &mut Vec<u8>, name: &str, data: &Value| {
        body.extend_from_slice(format!("event: {name}").as_bytes());
        body.extend_from_slice(newline);
        body.extend_from_slice(if space { b"data: " } else { b"data:" });
        body.extend_from_slice(data.to_string().as_bytes());
        body.extend_from_slice(newline);
        body.extend_from_slice(newline);
    };

    let model = format!("claude-{}", c.text());
    let (input_tokens, cache_read, cache_write) = (c.number(), c.number(), c.number());
    event(
        &mut body,
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null,
            "usage": {"input_tokens": input_tokens, "cache_read_input_tokens": cache_read,
                      "cache_creation_input_tokens": cache_write, "output_tokens": 1}}}),
    );
    expected.model = Some(model);
    expected.usage.input_tokens = input_tokens;
    expected.usage.cache_read_input_tokens = cache_read;
    expected.usage.cache_creation_input_tokens = cache_write;
    expected.usage.output_tokens = 1;

    for _ in 0..c.byte() % 6 {
        match c.byte() % 4 {
            0 => event(&mut body, "ping", &json!({"type": "ping"})),
            1 => {
                body.extend_from_slice(b": keep-alive");
                body.extend_from_slice(newline);
            }
            2 => {
                let text = c.text();
                expected.content_bytes += escaped_len(&text);
                event(
                    &mut body,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": text}}),
                );
            }
            _ => {
                // Text that looks like the events the tap reads must not be taken for them.
                let text = "\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
                expected.content_bytes += escaped_len(text);
                event(
                    &mut body,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                );
            }
        }
    }

    let choice = c.byte();
    if choice % 3 == 0 {
        let error_type = format!("e{}", c.text());
        event(&mut body, "error", &json!({"type": "error", "error": {"type": error_type, "message": c.text()}}));
        expected.error_type = Some(error_type);
    } else {
        let stop_reason = ["end_turn", "tool_use", "max_tokens", "stop_sequence"][usize::from(c.byte() % 4)];
        let output_tokens = c.number();
        event(
            &mut body,
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}}),
        );
        expected.stop_reason = Some(stop_reason.to_owned());
        expected.usage.output_tokens = output_tokens;
        expected.final_usage = true;
        if choice % 3 == 1 {
            event(&mut body, "message_stop", &json!({"type": "message_stop"}));
            expected.complete = true;
        }
    }
    (body, expected)
}

/// One AWS event-stream message as the proxy sees it: the decoded frame, or where decoding
/// stopped.
#[derive(Debug, PartialEq)]
enum Decoded {
    Message(Message),
    Error(String),
}

/// Decodes frames the way the SDK's event receiver does: data is appended as it arrives and the
/// frame decoder is asked for a message after every read, until it fails.
fn decode_frames(chunks: &[&[u8]]) -> Vec<Decoded> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        while !buffer.is_empty() {
            match decoder.decode_frame(&mut buffer) {
                Ok(DecodedFrame::Complete(message)) => out.push(Decoded::Message(message)),
                Ok(DecodedFrame::Incomplete) => break,
                Err(e) => {
                    out.push(Decoded::Error(e.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

/// `bedrock_eventstream`: the AWS event-stream frames of a Bedrock answer decode the same however
/// they are split into reads, and every `chunk` event becomes exactly one well-formed Anthropic
/// SSE event whose data is the chunk's JSON (Bedrock's metrics removed) and whose usage the tap
/// can read.
///
/// Input: byte 0 picks raw (even) or generated (odd) mode, byte 1 seeds the split. Raw: the rest
/// is the response body. Generated: the rest is a list of chunk payloads separated by `0xFF`,
/// framed here with valid CRCs (so mutations reach what the proxy does after the checksums)
/// and decoded back: the frames must round-trip.
pub fn check_bedrock_eventstream(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else { return };
    let (body, built) = if mode % 2 == 0 { (rest.to_vec(), None) } else { frame_chunks(rest) };
    let whole = decode_frames(&[&body]);
    let split = decode_frames(&Splits(u32::from(*seed)).chunks(&body));
    assert_eq!(whole, split, "event-stream decoding depends on how the body was split");
    if let Some(built) = built {
        let decoded: Vec<&Decoded> = whole.iter().collect();
        assert_eq!(decoded.len(), built.len(), "frames written were not all read back: {whole:?}");
        for (got, want) in decoded.into_iter().zip(&built) {
            assert_eq!(got, &Decoded::Message(want.clone()), "a frame did not round-trip");
        }
    }
    for decoded in &whole {
        let Decoded::Message(message) = decoded else { continue };
        let Ok(headers) = aws_smithy_eventstream::smithy::parse_response_headers(message) else { continue };
        if headers.message_type.as_str() != "event" || headers.smithy_type.as_str() != "chunk" {
            continue;
        }
        // The SDK's `PayloadPart`: `{"bytes": "<base64>"}`.
        let Ok(part) = serde_json::from_slice::<Value>(message.payload()) else { continue };
        let Some(Ok(bytes)) =
            part.get("bytes").and_then(Value::as_str).map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        else {
            continue;
        };
        check_chunk_to_sse(&bytes);
    }
}

/// Bedrock's framing of `0xFF`-separated chunk payloads: one `chunk` event per payload, as the
/// fake Bedrock and Bedrock itself send them. Returns the body and the messages in it.
fn frame_chunks(input: &[u8]) -> (Vec<u8>, Option<Vec<Message>>) {
    use aws_sdk_bedrockruntime::primitives::event_stream::{Header, HeaderValue};
    let mut body = Vec::new();
    let mut messages = Vec::new();
    for payload in input.split(|b| *b == 0xFF) {
        let part = json!({"bytes": base64::engine::general_purpose::STANDARD.encode(payload)});
        let message = Message::new(part.to_string().into_bytes())
            .add_header(Header::new(":event-type", HeaderValue::String("chunk".into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
        if aws_smithy_eventstream::frame::write_message_to(&message, &mut body).is_ok() {
            messages.push(message);
        }
    }
    (body, Some(messages))
}

/// The field Bedrock adds to the last chunk, which the proxy removes.
const METRICS: &str = "amazon-bedrock-invocationMetrics";

/// One Bedrock chunk becomes one SSE event carrying the same JSON.
pub fn check_chunk_to_sse(json: &[u8]) {
    let sse = crate::bedrock::sse_event(json);
    let text = String::from_utf8_lossy(&sse);
    assert!(text.ends_with("\n\n"), "an SSE event must end with a blank line");
    // SSE lines end at CRLF, LF or CR.
    let body = text.strip_suffix("\n\n").unwrap_or(&text).replace("\r\n", "\n").replace('\r', "\n");
    let mut lines = body.split('\n');
    let name = lines.next().and_then(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
    let mut data_lines = Vec::new();
    for line in lines {
        assert!(line.starts_with("data: "), "a chunk produced a line that is not data: {line:?}");
        data_lines.push(&line["data: ".len()..]);
    }
    assert!(!data_lines.is_empty(), "an SSE event without data");
    let data = data_lines.join("\n");

    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    let original: Option<Value> = serde_json::from_slice(json).ok();
    match original {
        Some(Value::Object(mut map)) => {
            if json.windows(METRICS.len()).any(|w| w == METRICS.as_bytes()) {
                map.remove(METRICS);
            }
            let sent: Option<Value> = serde_json::from_str(&data).ok();
            assert_eq!(sent, Some(Value::Object(map)), "the SSE data is not the chunk's JSON");
            // Named by its one string `type` (a repeated `type` key reads as none, as in the proxy).
            let kind = serde_json::from_str::<Typed>(&data).ok().and_then(|t| t.kind);
            match kind {
                Some(k) if !k.contains(['\r', '\n']) => assert_eq!(name, k, "the event is not named by its type"),
                _ => assert_eq!(name, "message"),
            }
        }
        // Not JSON to serde_json's `Value` (e.g. invalid UTF-8 in a field the name lookup skips):
        // whatever the name, it stays on its line.
        _ => assert!(!name.contains(['\r', '\n'])),
    }
    // The tap reads it the same whole or in pieces (the `sse` target covers splits at large).
    let whole = tap(Framing::Sse, Coding::Identity, &[&sse]);
    assert_eq!(whole, tap(Framing::Sse, Coding::Identity, &Splits(u32::from(sse.len() as u8)).chunks(&sse)));
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use proptest::prelude::*;

    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut out = Vec::new();
        for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if entry.path().is_file() {
                    out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn committed_corpus_passes_the_checks() {
        for (target, check) in
            [("sse", check_sse as fn(&[u8])), ("bedrock_eventstream", check_bedrock_eventstream as fn(&[u8]))]
        {
            let files = corpus(target);
            assert!(files.len() >= 3, "the {target} seed corpus is missing ({} files)", files.len());
            for (path, bytes) in &files {
                let outcome = std::panic::catch_unwind(|| check(bytes));
                assert!(outcome.is_ok(), "{target} fails on {}", path.display());
            }
        }
    }

    #[test]
    fn generated_streams_are_read_exactly() {
        for seed in 0u8..=255 {
            let input: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(seed).wrapping_add(seed)).collect();
            check_sse(&[1, 0, seed].into_iter().chain(input).collect::<Vec<u8>>());
        }
    }

    /// Regression (found by the `bedrock_eventstream` target): a chunk whose JSON contains a line
    /// break (pretty-printed, or a `type` with an escaped newline) produced a broken SSE event:
    /// data lines without `data:` and, through the event name, injected events.
    #[test]
    fn multi_line_chunks_stay_one_event() {
        check_chunk_to_sse(b"{\n  \"type\": \"message_stop\"\n}");
        check_chunk_to_sse(b"{\"type\":\"message_stop\",\r\"x\":1}");
        check_chunk_to_sse(b"{\"type\":\"x\\n\\ndata: {}\\n\\nevent: message_stop\"}");
        check_chunk_to_sse(b"not json\nat all\r\n");
        let pretty = crate::bedrock::sse_event(b"{\n \"type\": \"ping\"\r\n}");
        assert_eq!(&pretty[..], b"event: ping\ndata: {\ndata:  \"type\": \"ping\"\ndata: }\n\n");
        let sse = crate::bedrock::sse_event(b"{\"type\":\"a\\nb\"}");
        assert!(sse.starts_with(b"event: message\n"), "{}", String::from_utf8_lossy(&sse));
    }

    proptest! {
        #[test]
        fn any_bytes_pass_the_checks(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check_sse(&bytes);
            check_bedrock_eventstream(&bytes);
            check_chunk_to_sse(&bytes);
        }
    }
}
