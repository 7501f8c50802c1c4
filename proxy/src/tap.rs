//! The usage tap: reads a copy of the response bytes as they pass, without changing them, and
//! extracts model, stop reason, token counts and in-stream errors from Anthropic's SSE events
//! (`message_start`, `message_delta`, `error`) or from a JSON body. Compressed bodies
//! (`gzip`, `deflate`, `br`, `zstd`) are kept (bounded) and decoded when the response ends.

use std::io::Read;

use ccp_schemas::events::TokenUsage;
use serde::Deserialize;

/// Longest SSE event kept while waiting for its end; longer ones are skipped.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest unfinished SSE line kept: a longer one cannot belong to an event the tap reads (its
/// data alone exceeds [`MAX_EVENT_BYTES`]), so the rest of it is dropped as it arrives.
const MAX_LINE_BYTES: usize = MAX_EVENT_BYTES + 8;
/// Largest JSON (or compressed) body kept for parsing.
const MAX_BUFFERED_BYTES: usize = 16 << 20;

/// What the tap learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// `model` reported by the provider.
    pub model: Option<String>,
    /// `stop_reason`.
    pub stop_reason: Option<String>,
    /// Token counts.
    pub usage: TokenUsage,
    /// `message_stop` seen (stream) or a complete JSON body parsed.
    pub complete: bool,
    /// The `error.type` of an in-stream `event: error` or an error body.
    pub error_type: Option<String>,
    /// A `message_delta` carried the final usage (a stream's output count is then exact).
    pub final_usage: bool,
    /// Bytes of generated content relayed in `content_block_delta` events (text, thinking and
    /// tool-input JSON, as escaped in the JSON): what [`Observed::estimated_output_tokens`]
    /// estimates from.
    pub content_bytes: u64,
    /// The body could not be read for usage (a coding the tap cannot decode, a body that is
    /// neither SSE nor JSON, or one over the buffering limit): its tokens are unknown.
    pub unreadable: bool,
}

/// Bytes of relayed content per output token the estimate assumes (escaped JSON string bytes,
/// see `docs/ANALYTICS.md` for how it was chosen and its error).
pub const CONTENT_BYTES_PER_TOKEN: u64 = 3;

impl Observed {
    /// An estimate of the output tokens of a stream that ended before its final count: the
    /// relayed content bytes over [`CONTENT_BYTES_PER_TOKEN`], rounded up, and never less than
    /// the count seen so far (`message_start`'s). `None` when the count is exact, or when the
    /// stream ended before `message_start` and relayed no content (nothing is known).
    pub fn estimated_output_tokens(&self) -> Option<u64> {
        if self.final_usage || (self.content_bytes == 0 && self.model.is_none()) {
            return None;
        }
        Some(self.content_bytes.div_ceil(CONTENT_BYTES_PER_TOKEN).max(self.usage.output_tokens))
    }
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`.
    Sse,
    /// `application/json`.
    Json,
    /// Anything else: not parsed.
    Opaque,
}

/// Content coding of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Plain bytes.
    Identity,
    /// gzip.
    Gzip,
    /// zlib/deflate.
    Deflate,
    /// brotli.
    Brotli,
    /// zstd.
    Zstd,
    /// A coding the tap cannot read.
    Unknown,
}

impl Coding {
    /// From a `Content-Encoding` header value.
    pub fn from_header(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Self::Identity,
            Some(v) => match v.as_str() {
                "" | "identity" => Self::Identity,
                "gzip" | "x-gzip" => Self::Gzip,
                "deflate" => Self::Deflate,
                "br" => Self::Brotli,
                "zstd" => Self::Zstd,
                _ => Self::Unknown,
            },
        }
    }
}

impl Framing {
    /// From a `Content-Type` header value.
    pub fn from_content_type(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.starts_with("text/event-stream") => Self::Sse,
            Some(v) if v.starts_with("application/json") => Self::Json,
            _ => Self::Opaque,
        }
    }
}

/// Incremental tap over one response body.
#[derive(Debug)]
pub struct UsageTap {
    framing: Framing,
    coding: Coding,
    /// Identity SSE: the unfinished tail of the stream. Otherwise: the raw body.
    buf: Vec<u8>,
    overflow: bool,
    /// Identity SSE: dropping the rest of an over-long line, up to its newline.
    long_line: bool,
    sse: SseState,
    observed: Observed,
}

#[derive(Debug, Default)]
struct SseState {
    /// The `event:` line's name, when there was one.
    event: Option<EventName>,
    data: Vec<u8>,
    skipping: bool,
}

impl SseState {
    /// Ready for the next event, keeping the data buffer's capacity.
    fn next_event(&mut self) {
        self.event = None;
        self.data.clear();
        self.skipping = false;
    }
}

/// The events the tap reads, and all the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventName {
    MessageStart,
    MessageDelta,
    /// Counted, not parsed: see [`delta_content_len`].
    ContentBlockDelta,
    MessageStop,
    Error,
    Other,
}

impl EventName {
    fn of(name: &[u8]) -> Self {
        match name {
            b"message_start" => Self::MessageStart,
            b"message_delta" => Self::MessageDelta,
            b"content_block_delta" => Self::ContentBlockDelta,
            b"message_stop" => Self::MessageStop,
            b"error" => Self::Error,
            _ => Self::Other,
        }
    }
}

impl UsageTap {
    /// A tap for a body with this framing and coding.
    pub fn new(framing: Framing, coding: Coding) -> Self {
        Self {
            framing,
            coding,
            buf: Vec::new(),
            overflow: false,
            long_line: false,
            sse: SseState::default(),
            observed: Observed::default(),
        }
    }

    /// Looks at the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        match (self.framing, self.coding) {
            (Framing::Opaque, _) | (_, Coding::Unknown) => {}
            (Framing::Sse, Coding::Identity) => self.feed_sse(chunk),
            _ => {
                if self.buf.len() + chunk.len() > MAX_BUFFERED_BYTES {
                    self.overflow = true;
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
        }
    }

    /// Identity SSE: scans complete lines as they arrive; an unfinished line waits in `buf`
    /// (scanned again only when a newline arrives), at most [`MAX_LINE_BYTES`] of it.
    /// Complete lines are read in place; only an unfinished last line is copied.
    fn feed_sse(&mut self, mut chunk: &[u8]) {
        if self.long_line {
            let Some(nl) = memchr::memchr(b'\n', chunk) else { return };
            chunk = &chunk[nl + 1..];
            self.long_line = false;
        }
        if !self.buf.is_empty() {
            // The unfinished line from before: complete it first.
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                self.buf.extend_from_slice(chunk);
                self.drop_long_line();
                return;
            };
            self.buf.extend_from_slice(&chunk[..=nl]);
            let line = std::mem::take(&mut self.buf);
            scan_sse(&line, &mut self.sse, &mut self.observed);
            self.buf = line;
            self.buf.clear();
            chunk = &chunk[nl + 1..];
        }
        let consumed = scan_sse(chunk, &mut self.sse, &mut self.observed);
        self.buf.extend_from_slice(&chunk[consumed..]);
        self.drop_long_line();
    }

    /// An unfinished line longer than [`MAX_LINE_BYTES`] is not kept.
    fn drop_long_line(&mut self) {
        if self.buf.len() > MAX_LINE_BYTES {
            // What the whole line would have done once complete: a `data:` line this long
            // overflows its event, an `event:` line names an event the tap does not read, any
            // other line is ignored.
            if self.buf.starts_with(b"data:") {
                if !self.sse.skipping {
                    self.sse.skipping = true;
                    self.sse.data.clear();
                }
            } else if self.buf.starts_with(b"event:") {
                self.sse.skipping = true;
                self.sse.event = Some(EventName::Other);
            }
            self.buf.clear();
            self.long_line = true;
        }
    }

    /// Everything seen so far; decodes buffered bodies. Call once, when the body ended or was cut.
    pub fn finish(mut self) -> Observed {
        if self.overflow || matches!(self.framing, Framing::Opaque) || self.coding == Coding::Unknown {
            self.observed.unreadable = true;
            return self.observed;
        }
        if (self.framing, self.coding) == (Framing::Sse, Coding::Identity) {
            // A cut stream may leave a last event without its blank line.
            self.feed_sse(b"\n\n");
            return self.observed;
        }
        let plain = match self.coding {
            Coding::Identity => std::mem::take(&mut self.buf),
            coding => decode(coding, &self.buf),
        };
        match self.framing {
            Framing::Sse => {
                scan_sse(&plain, &mut self.sse, &mut self.observed);
            }
            Framing::Json => parse_json_body(&plain, &mut self.observed),
            Framing::Opaque => {}
        }
        self.observed
    }
}

/// Largest decoded body (a small compressed body must not inflate without bound).
const MAX_DECODED_BYTES: u64 = 64 << 20;

/// Decodes as much of a compressed body as is intact (a cut body yields its prefix), at most
/// [`MAX_DECODED_BYTES`].
pub fn decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = match coding {
        Coding::Gzip => flate2::read::MultiGzDecoder::new(bytes).take(MAX_DECODED_BYTES).read_to_end(&mut out),
        Coding::Deflate => {
            // `deflate` is zlib-wrapped per RFC 9110, raw in the wild: try both.
            let r = flate2::read::ZlibDecoder::new(bytes).take(MAX_DECODED_BYTES).read_to_end(&mut out);
            if r.is_err() && out.is_empty() {
                flate2::read::DeflateDecoder::new(bytes).take(MAX_DECODED_BYTES).read_to_end(&mut out)
            } else {
                r
            }
        }
        Coding::Brotli => {
            brotli_decompressor::Decompressor::new(bytes, 4096).take(MAX_DECODED_BYTES).read_to_end(&mut out)
        }
        Coding::Zstd => match ruzstd::decoding::StreamingDecoder::new(bytes) {
            Ok(d) => d.take(MAX_DECODED_BYTES).read_to_end(&mut out),
            Err(_) => Ok(0),
        },
        Coding::Identity => {
            out.extend_from_slice(bytes);
            Ok(0)
        }
        Coding::Unknown => Ok(0),
    };
    out
}

/// Processes complete lines of `buf`; returns how many bytes were consumed.
fn scan_sse(buf: &[u8], state: &mut SseState, observed: &mut Observed) -> usize {
    let mut start = 0;
    while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
        let mut line = &buf[start..start + nl];
        start += nl + 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.is_empty() {
            if !state.skipping {
                dispatch(state.event, &state.data, observed);
            }
            state.next_event();
        } else if let Some(name) = line.strip_prefix(b"event:") {
            let name = EventName::of(name.trim_ascii());
            state.skipping = matches!(name, EventName::Other | EventName::ContentBlockDelta);
            state.event = Some(name);
        } else if let Some(data) = line.strip_prefix(b"data:") {
            if state.event == Some(EventName::ContentBlockDelta) {
                observed.content_bytes += delta_content_len(data);
            } else if !state.skipping {
                if state.data.len() + data.len() > MAX_EVENT_BYTES {
                    state.skipping = true;
                    state.data.clear();
                } else {
                    if !state.data.is_empty() {
                        state.data.push(b'\n');
                    }
                    state.data.extend_from_slice(data.strip_prefix(b" ").unwrap_or(data));
                }
            }
        }
    }
    start
}

#[derive(Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<WireMessage>,
    delta: Option<WireDelta>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
    // A JSON body: a message or count_tokens result.
    model: Option<String>,
    stop_reason: Option<String>,
    input_tokens: Option<u64>,
}

fn merge_usage(into: &mut TokenUsage, u: &WireUsage) {
    if let Some(v) = u.input_tokens {
        into.input_tokens = v;
    }
    if let Some(v) = u.output_tokens {
        into.output_tokens = v;
    }
    if let Some(v) = u.cache_read_input_tokens {
        into.cache_read_input_tokens = v;
    }
    if let Some(v) = u.cache_creation_input_tokens {
        into.cache_creation_input_tokens = v;
    }
}

/// The length of the generated content in one `content_block_delta` event's data, without
/// parsing it: the bytes of its `text`, `thinking` or `partial_json` string as escaped in the
/// JSON (`\n` counts two). 0 for other deltas (signatures, citations).
fn delta_content_len(data: &[u8]) -> u64 {
    const KEYS: [&[u8]; 3] = [b"\"text\":\"", b"\"thinking\":\"", b"\"partial_json\":\""];
    for key in KEYS {
        // The pattern cannot occur inside a JSON string (a quote there follows a backslash).
        if let Some(at) = memchr::memmem::find(data, key) {
            let start = at + key.len();
            let mut end = start;
            // The string ends at the first quote not escaped by an odd run of backslashes.
            while let Some(q) = memchr::memchr(b'"', &data[end..]) {
                let quote = end + q;
                let backslashes = data[start..quote].iter().rev().take_while(|&&b| b == b'\\').count();
                if backslashes % 2 == 0 {
                    return (quote - start) as u64;
                }
                end = quote + 1;
            }
            return (data.len() - start) as u64;
        }
    }
    0
}

fn dispatch(event: Option<EventName>, data: &[u8], observed: &mut Observed) {
    if data.is_empty() {
        return;
    }
    let Ok(ev) = serde_json::from_slice::<WireEvent>(data) else {
        return;
    };
    match event.or_else(|| ev.kind.as_deref().map(|k| EventName::of(k.as_bytes()))) {
        Some(EventName::MessageStart) => {
            if let Some(m) = &ev.message {
                observed.model.clone_from(&m.model);
                if let Some(u) = &m.usage {
                    merge_usage(&mut observed.usage, u);
                }
            }
        }
        Some(EventName::MessageDelta) => {
            if let Some(reason) = ev.delta.as_ref().and_then(|d| d.stop_reason.clone()) {
                observed.stop_reason = Some(reason);
            }
            if let Some(u) = &ev.usage {
                merge_usage(&mut observed.usage, u);
                observed.final_usage |= u.output_tokens.is_some();
            }
        }
        Some(EventName::MessageStop) => observed.complete = true,
        Some(EventName::Error) => observed.error_type = ev.error.and_then(|e| e.kind),
        Some(EventName::Other | EventName::ContentBlockDelta) | None => {}
    }
}

fn parse_json_body(body: &[u8], observed: &mut Observed) {
    let Ok(ev) = serde_json::from_slice::<WireEvent>(body) else {
        return;
    };
    observed.complete = true;
    observed.final_usage = true;
    if ev.kind.as_deref() == Some("error") {
        observed.error_type = ev.error.and_then(|e| e.kind);
        return;
    }
    observed.model = ev.model;
    observed.stop_reason = ev.stop_reason;
    if let Some(u) = &ev.usage {
        merge_usage(&mut observed.usage, u);
    } else if let Some(n) = ev.input_tokens {
        observed.usage.input_tokens = n;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use proptest::prelude::*;

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn expected() -> Observed {
        Observed {
            model: Some("claude-sonnet-4-5-20250929".into()),
            stop_reason: Some("end_turn".into()),
            usage: TokenUsage {
                input_tokens: 12,
                output_tokens: 15,
                cache_read_input_tokens: 2000,
                cache_creation_input_tokens: 100,
            },
            complete: true,
            error_type: None,
            final_usage: true,
            content_bytes: 5,
            unreadable: false,
        }
    }

    fn tap_in_chunks(framing: Framing, coding: Coding, body: &[u8], sizes: &[usize]) -> Observed {
        let mut tap = UsageTap::new(framing, coding);
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(7).clamp(1, rest.len());
            tap.feed(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        tap.finish()
    }

    #[test]
    fn sse_usage_is_read_whole_and_byte_by_byte() {
        assert_eq!(tap_in_chunks(Framing::Sse, Coding::Identity, STREAM.as_bytes(), &[STREAM.len()]), expected());
        assert_eq!(tap_in_chunks(Framing::Sse, Coding::Identity, STREAM.as_bytes(), &[1]), expected());
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(tap_in_chunks(Framing::Sse, Coding::Identity, crlf.as_bytes(), &[5, 3]), expected());
    }

    #[test]
    fn a_cut_stream_keeps_what_was_seen_and_is_not_complete() {
        let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
        let seen = tap_in_chunks(Framing::Sse, Coding::Identity, cut.as_bytes(), &[64]);
        assert!(!seen.complete);
        assert_eq!(seen.usage.input_tokens, 12);
        assert_eq!(seen.usage.output_tokens, 1);
        assert_eq!(seen.stop_reason, None);
    }

    #[test]
    fn an_interrupted_stream_estimates_its_output_from_the_relayed_content() {
        let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
        let seen = tap_in_chunks(Framing::Sse, Coding::Identity, cut.as_bytes(), &[9]);
        assert!(!seen.final_usage);
        assert_eq!(seen.content_bytes, 5, "`Hello`");
        assert_eq!(seen.estimated_output_tokens(), Some(2));
        let whole = tap_in_chunks(Framing::Sse, Coding::Identity, STREAM.as_bytes(), &[9]);
        assert_eq!(whole.estimated_output_tokens(), None, "the final count is exact");
        // Never below the count already seen.
        let few = Observed {
            content_bytes: 3,
            usage: TokenUsage { output_tokens: 7, ..TokenUsage::default() },
            ..Observed::default()
        };
        assert_eq!(few.estimated_output_tokens(), Some(7));
    }

    #[test]
    fn delta_content_is_measured_for_every_kind_without_parsing() {
        let len = |json: &str| delta_content_len(format!(" {json}").as_bytes());
        assert_eq!(len(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#), 5);
        assert_eq!(
            len(r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"a\"b\\"}}"#),
            6
        );
        assert_eq!(
            len(
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"cmd\": \"ls\"}"}}"#
            ),
            17
        );
        // Another member order (the string is not last) and deltas without content.
        assert_eq!(len(r#"{"type":"content_block_delta","index":0,"delta":{"text":"Hi","type":"text_delta"}}"#), 2);
        assert_eq!(
            len(r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCg"}}"#),
            0
        );
        // A text that quotes the key itself does not confuse it.
        assert_eq!(
            len(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\"text\":\"x"}}"#),
            12
        );
    }

    #[test]
    fn unreadable_bodies_are_flagged_not_counted_as_zero() {
        let seen = tap_in_chunks(Framing::Sse, Coding::Unknown, STREAM.as_bytes(), &[64]);
        assert!(seen.unreadable);
        let seen = tap_in_chunks(Framing::Opaque, Coding::Identity, b"hello", &[64]);
        assert!(seen.unreadable);
        assert!(!tap_in_chunks(Framing::Sse, Coding::Identity, STREAM.as_bytes(), &[64]).unreadable);
    }

    #[test]
    fn in_stream_errors_are_recorded() {
        let body = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let seen = tap_in_chunks(Framing::Sse, Coding::Identity, body.as_bytes(), &[10]);
        assert_eq!(seen.error_type.as_deref(), Some("overloaded_error"));
    }

    #[test]
    fn json_bodies_messages_count_tokens_and_errors() {
        let msg = br#"{"id":"msg_1","type":"message","model":"m","content":[],"stop_reason":"tool_use","usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":5,"cache_creation_input_tokens":6}}"#;
        let seen = tap_in_chunks(Framing::Json, Coding::Identity, msg, &[7]);
        assert_eq!(seen.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(seen.usage.cache_creation_input_tokens, 6);
        let count = tap_in_chunks(Framing::Json, Coding::Identity, br#"{"input_tokens":42}"#, &[3]);
        assert_eq!(count.usage.input_tokens, 42);
        let err = tap_in_chunks(
            Framing::Json,
            Coding::Identity,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"x"}}"#,
            &[100],
        );
        assert_eq!(err.error_type.as_deref(), Some("rate_limit_error"));
    }

    #[test]
    fn compressed_streams_are_decoded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(STREAM.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(tap_in_chunks(Framing::Sse, Coding::Gzip, &gz, &[13]), expected());

        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zl.write_all(STREAM.as_bytes()).unwrap();
        assert_eq!(tap_in_chunks(Framing::Sse, Coding::Deflate, &zl.finish().unwrap(), &[13]), expected());

        let zs = ruzstd::encoding::compress_to_vec(STREAM.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(tap_in_chunks(Framing::Sse, Coding::Zstd, &zs, &[13]), expected());
    }

    #[test]
    fn framing_and_coding_come_from_headers() {
        assert_eq!(Framing::from_content_type(Some("text/event-stream; charset=utf-8")), Framing::Sse);
        assert_eq!(Framing::from_content_type(Some("application/json")), Framing::Json);
        assert_eq!(Framing::from_content_type(None), Framing::Opaque);
        assert_eq!(Coding::from_header(Some("BR")), Coding::Brotli);
        assert_eq!(Coding::from_header(Some("compress")), Coding::Unknown);
    }

    /// Regression: an unterminated line was kept whole (memory bounded only by the response) and
    /// rescanned from its start on every read (quadratic time). Now at most [`MAX_LINE_BYTES`] of
    /// it is kept, with the same result as reading it whole.
    #[test]
    fn over_long_lines_are_dropped_with_the_same_result() {
        let long = "x".repeat(3 * MAX_EVENT_BYTES);
        let (start, rest) = STREAM.split_at(STREAM.find("event: message_delta").unwrap());
        for line in [
            format!("data: {long}\n"),
            format!(": {long}\n"),
            format!("event: {long}\nevent: message_delta\n"),
            format!("event: message_delta\ndata: {long}\n"),
        ] {
            let body = format!("{start}{line}{rest}");
            let whole = tap_in_chunks(Framing::Sse, Coding::Identity, body.as_bytes(), &[body.len()]);
            let mut tap = UsageTap::new(Framing::Sse, Coding::Identity);
            let mut largest = 0;
            for chunk in body.as_bytes().chunks(4096) {
                tap.feed(chunk);
                largest = largest.max(tap.buf.len());
            }
            assert!(largest <= MAX_LINE_BYTES + 4096, "kept {largest} bytes of one line");
            assert_eq!(tap.finish(), whole, "{}", &line[..20]);
        }
        // Cut inside the long line: what came before is kept.
        let cut = format!("{start}data: {long}");
        let seen = tap_in_chunks(Framing::Sse, Coding::Identity, cut.as_bytes(), &[4096]);
        assert_eq!(seen, tap_in_chunks(Framing::Sse, Coding::Identity, cut.as_bytes(), &[cut.len()]));
        assert_eq!(seen.usage.input_tokens, 12);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_result(sizes in proptest::collection::vec(1usize..200, 1..20)) {
            prop_assert_eq!(tap_in_chunks(Framing::Sse, Coding::Identity, STREAM.as_bytes(), &sizes), expected());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), sse in any::<bool>()) {
            let framing = if sse { Framing::Sse } else { Framing::Json };
            let _ = tap_in_chunks(framing, Coding::Identity, &bytes, &[17]);
            let _ = tap_in_chunks(framing, Coding::Gzip, &bytes, &[17]);
            let _ = tap_in_chunks(framing, Coding::Brotli, &bytes, &[17]);
            let _ = tap_in_chunks(framing, Coding::Zstd, &bytes, &[17]);
        }
    }
}
