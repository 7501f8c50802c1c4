//! Anthropic's SSE read in place: complete lines scanned as they arrive, the events the tap reads
//! (`message_start`, `message_delta`, `message_stop`, `error`) kept until their blank line and
//! handed to [`super::observed`], and `content_block_delta` events measured without being parsed.

use super::observed::{dispatch, Observed};

/// Longest SSE event kept while waiting for its end; longer ones are skipped.
pub(super) const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub(super) struct SseState {
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

    /// What a line too long to keep, starting with `start`, would have done once complete: a
    /// `data:` line this long overflows its event, an `event:` line names an event the tap does
    /// not read, any other line is ignored.
    pub(super) fn line_dropped(&mut self, start: &[u8]) {
        if start.starts_with(b"data:") {
            if !self.skipping {
                self.skipping = true;
                self.data.clear();
            }
        } else if start.starts_with(b"event:") {
            self.skipping = true;
            self.event = Some(EventName::Other);
        }
    }
}

/// The events the tap reads, and all the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventName {
    MessageStart,
    MessageDelta,
    /// Counted, not parsed: see [`delta_content_len`].
    ContentBlockDelta,
    MessageStop,
    Error,
    Other,
}

impl EventName {
    pub(super) fn of(name: &[u8]) -> Self {
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

/// Processes complete lines of `buf`; returns how many bytes were consumed.
pub(super) fn scan_sse(buf: &[u8], state: &mut SseState, observed: &mut Observed) -> usize {
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

/// The length of the generated content in one `content_block_delta` event's data, without
/// parsing it: the bytes of its `text`, `thinking` or `partial_json` string as escaped in the
/// JSON (`\n` counts two). 0 for other deltas (signatures, citations).
fn delta_content_len(data: &[u8]) -> u64 {
    // Built once: a searcher made per call costs more than the search in these short lines.
    static KEYS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 3]> = std::sync::LazyLock::new(|| {
        [b"\"text\":\"" as &[u8], b"\"thinking\":\"", b"\"partial_json\":\""].map(memchr::memmem::Finder::new)
    });
    for key in KEYS.iter() {
        let key_len = key.needle().len();
        // The pattern cannot occur inside a JSON string (a quote there follows a backslash).
        if let Some(at) = key.find(data) {
            let start = at + key_len;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
