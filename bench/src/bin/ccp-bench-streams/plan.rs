//! What each stream of a phase asks for, the same in every phase: its request body (a Claude
//! Code request padded with an earlier turn to a size between `--min-body` and `--max-body`),
//! its pace (20–50 ms between events), how many deltas make it last `--secs`, and when it starts
//! (spread over the ramp).

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use ccp_bench::fixture::{self, in_order};
use ccp_bench::upstream::Responses;
use reqwest::header::HeaderMap;

use crate::Options;

/// Distinct body sizes (streams share the bodies: 1,000 bodies of up to 2 MB would be 1 GB).
const BODY_SIZES: usize = 16;

/// Events of an answer besides its deltas: after the first one, each comes one pace later.
const OTHER_EVENTS: u64 = 6;

/// One stream.
pub struct Stream {
    /// Index into `Plan::bodies`.
    pub body: usize,
    /// Milliseconds between its events.
    pub pace_ms: u64,
    /// Text deltas of its answer.
    pub deltas: usize,
    /// When it starts, after the phase starts.
    pub start: Duration,
    /// SSE events it must receive.
    pub expect_events: usize,
    /// Body bytes it must receive.
    pub expect_bytes: usize,
}

/// Every stream of a phase and what they send.
pub struct Plan {
    /// The Claude Code headers (from the fixture).
    pub headers: HeaderMap,
    /// The request bodies, smallest first.
    pub bodies: Vec<Bytes>,
    /// Where the bodies came from (`Claude Code fixture` or `synthesized`).
    pub body_source: &'static str,
    /// The streams.
    pub streams: Vec<Stream>,
}

impl Plan {
    /// The plan `opts` asks for; `responses` tells what each answer will hold.
    pub fn new(opts: &Options, responses: &Responses) -> anyhow::Result<Self> {
        let fixture::Request { headers, body, order, source } = fixture::read_or_synthesize(&opts.fixture);
        let sizes = BODY_SIZES.min(opts.streams).max(1);
        let bodies = (0..sizes)
            .map(|k| {
                let span = opts.max_body - opts.min_body;
                let size = opts.min_body + span * k / (sizes - 1).max(1);
                padded(&body, &order, size).map(Bytes::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let paces = opts.max_pace_ms - opts.min_pace_ms + 1;
        let streams = (0..opts.streams)
            .map(|i| {
                // Spread sizes and paces independently of each other and of the start order.
                let pace_ms = opts.min_pace_ms + (i as u64 * 13) % paces;
                let deltas = ((opts.secs * 1000 / pace_ms).saturating_sub(OTHER_EVENTS - 1)).max(1) as usize;
                let start = opts.ramp.mul_f64(i as f64 / opts.streams as f64);
                Stream {
                    body: (i * 7) % sizes,
                    pace_ms,
                    deltas,
                    start,
                    expect_events: responses.sse_stream_events(deltas),
                    expect_bytes: responses.sse_stream_body_len(deltas),
                }
            })
            .collect();
        Ok(Self { headers, bodies, body_source: source, streams })
    }

    /// Sizes of the bodies sent, smallest and largest.
    pub fn body_range(&self) -> (usize, usize) {
        let lens = self.bodies.iter().map(Bytes::len);
        (lens.clone().min().unwrap_or(0), lens.max().unwrap_or(0))
    }
}

/// `body` streamed, with an earlier turn of plain text before its messages making it `size`
/// bytes (or its own size, when larger), written as Claude Code writes it.
fn padded(body: &serde_json::Value, order: &[String], size: usize) -> anyhow::Result<Vec<u8>> {
    const TEXT: &str = "Here is the rest of the file we were looking at, line by line, with the tests. ";
    let mut body = body.clone();
    body["stream"] = serde_json::Value::Bool(true);
    let messages = body["messages"].as_array_mut().context("the request body has no messages")?;
    messages.splice(
        0..0,
        [
            serde_json::json!({"role": "user", "content": [{"type": "text", "text": ""}]}),
            serde_json::json!({"role": "assistant", "content": [{"type": "text", "text": "Understood."}]}),
        ],
    );
    let base = in_order(&body, order)?.len();
    // Plain ASCII without quotes or backslashes: the JSON text is as long as the string.
    let pad: String = TEXT.chars().cycle().take(size.saturating_sub(base)).collect();
    body["messages"][0]["content"][0]["text"] = serde_json::Value::String(pad);
    in_order(&body, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_bodies_have_the_size_asked_and_stay_claude_code_requests() {
        let fixture::Request { body, order, .. } = fixture::read_or_synthesize(&fixture::default_path());
        for size in [200_000, 1_234_567] {
            let bytes = padded(&body, &order, size).unwrap();
            assert_eq!(bytes.len(), size);
            let model = body["model"].as_str().unwrap();
            assert_eq!(ccp_proxy::claude_code_shape(&bytes), Some((model, true)));
        }
    }
}
