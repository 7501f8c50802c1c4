//! What the tap learned of a request ([`Observed`]: model, stop reason, token counts, in-stream
//! error, generated content bytes) from Anthropic's events and JSON bodies, and the estimate of an
//! interrupted stream's output from its content.

use ccp_schemas::events::TokenUsage;
use serde::Deserialize;

use super::sse::EventName;

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

/// What one SSE event (`event:` name, `data:` lines) says about the request.
pub(super) fn dispatch(event: Option<EventName>, data: &[u8], observed: &mut Observed) {
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

/// What a whole JSON body (a message, a token count or an error) says about the request.
pub(super) fn parse_json_body(body: &[u8], observed: &mut Observed) {
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
