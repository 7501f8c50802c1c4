//! The usage tap: reads a copy of the response bytes as they pass, without changing them, and
//! extracts model, stop reason, token counts and in-stream errors from Anthropic's SSE events
//! (`message_start`, `message_delta`, `error`) or from a JSON body. Compressed bodies
//! (`gzip`, `deflate`, `br`, `zstd`) are kept (bounded) and decoded when the response ends.
//!
//! This file is the tap over one body ([`UsageTap`]: what is kept of it, and when it is read);
//! `sse.rs` scans SSE lines and events in place, `observed.rs` is what an event or a JSON body
//! says about the request ([`Observed`], and the estimate of an interrupted stream's output),
//! `coding.rs` the content codings and their decoding ([`Coding`], [`decode`]).

mod coding;
mod observed;
mod sse;

pub use self::coding::{decode, Coding};
use self::observed::parse_json_body;
pub use self::observed::Observed;
use self::sse::{scan_sse, SseState, MAX_EVENT_BYTES};

/// Longest unfinished SSE line kept: a longer one cannot belong to an event the tap reads (its
/// data alone exceeds [`MAX_EVENT_BYTES`]), so the rest of it is dropped as it arrives.
const MAX_LINE_BYTES: usize = MAX_EVENT_BYTES + 8;
/// Largest JSON (or compressed) body kept for parsing.
const MAX_BUFFERED_BYTES: usize = 16 << 20;

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
            self.sse.line_dropped(&self.buf);
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use ccp_schemas::events::TokenUsage;

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
