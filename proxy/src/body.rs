//! What the proxy reads of a request body before forwarding it: the Messages API's `model` and
//! `stream`, without parsing a body written as Claude Code writes it.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::HttpRequest;
use serde::Deserialize;

use crate::error::ProxyError;
use crate::forward::header_str;
use crate::usage::RequestRecord;

#[derive(Deserialize)]
struct Peek {
    model: Option<serde_json::Value>,
    stream: Option<serde_json::Value>,
}

/// `model` and `stream` of a body written as Claude Code writes it: `model` its first member (a
/// string without escapes) and `stream` its last (`true` or `false`), as in
/// `{"model":"claude-…",…,"stream":true}`. Exact for every valid JSON text without repeated
/// member names that it answers for: the first member after the opening brace and the last one
/// before the closing brace can only be the top-level object's. (Where a name repeats, RFC 8259
/// §4 leaves the meaning open: this takes the first `model`, a parser usually the last.) `None`
/// for any other shape (the body is then parsed).
pub fn claude_code_shape(body: &[u8]) -> Option<(&str, bool)> {
    fn after<'a>(s: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
        s.trim_ascii_start().strip_prefix(token)
    }
    fn before<'a>(s: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
        s.trim_ascii_end().strip_suffix(token)
    }
    let rest = after(after(after(after(body, b"{")?, b"\"model\"")?, b":")?, b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[end] != b'"' {
        return None;
    }
    let model = std::str::from_utf8(&rest[..end]).ok()?;
    after(&rest[end + 1..], b",")?;
    let tail = before(body, b"}")?;
    let (tail, stream) = match before(tail, b"true") {
        Some(t) => (t, true),
        None => (before(tail, b"false")?, false),
    };
    before(before(before(tail, b":")?, b"\"stream\"")?, b",")?;
    Some((model, stream))
}

/// The `max_tokens` of a Messages body, found without parsing it: the last `"max_tokens":`
/// followed by a number. Claude Code writes it once, at the top level after `messages`, `system`
/// and `tools` — so it is found from the end after a few hundred bytes, and a tool's parameter of
/// that name (an object, earlier) is not taken for it. `None` when absent or not a plain number.
/// Used for a budget's reservation, where an approximation is enough.
pub(crate) fn max_tokens(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"max_tokens\"";
    static FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(KEY));
    FINDER.rfind_iter(body).find_map(|at| {
        let rest = body[at + KEY.len()..].trim_ascii_start().strip_prefix(b":")?.trim_ascii_start();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
    })
}

/// Checks a Messages API body is a JSON object and notes its `model` and `stream`.
///
/// A body in [`claude_code_shape`] is not parsed: checking it whole was the largest cost of the
/// proxy's own work and grows with the body (docs/benchmarks.md), and Anthropic checks it anyway;
/// if such a body is malformed after all, Anthropic's
/// 400 `invalid_request_error` is relayed, and a failover to Bedrock refuses it with a 400 before
/// anything else (the body is adapted first). Any other body is parsed here and refused with the
/// proxy's own 400 if malformed.
pub(crate) fn inspect_json(req: &HttpRequest, body: &[u8], record: &mut RequestRecord) -> Result<(), ProxyError> {
    let content_type = header_str(req.headers(), CONTENT_TYPE.as_str()).unwrap_or("").trim_start();
    let json = "application/json";
    if !content_type.get(..json.len()).is_some_and(|t| t.eq_ignore_ascii_case(json)) {
        return Err(ProxyError::unsupported_media_type(format!(
            "The Messages API takes `Content-Type: application/json`, not `{}`.",
            content_type.chars().take(64).collect::<String>()
        )));
    }
    if let Some((model, stream)) = claude_code_shape(body) {
        record.requested_model = Some(crate::usage::first_chars(model, 128).to_owned());
        record.stream = stream;
        return Ok(());
    }
    // A struct also deserializes from a JSON array (its fields in order): refuse anything but
    // an object first.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ProxyError::bad_request("The request body is not a JSON object: a Messages API body is `{...}`."));
    }
    let peek: Peek = serde_json::from_slice(body)
        .map_err(|e| ProxyError::bad_request(format!("The request body is not a valid JSON object: {e}.")))?;
    record.requested_model = match peek.model {
        Some(serde_json::Value::String(model)) => Some(crate::usage::first_chars(&model, 128).to_owned()),
        _ => None,
    };
    record.stream = peek.stream.as_ref().and_then(serde_json::Value::as_bool).unwrap_or(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::claude_code_shape;
    use proptest::prelude::*;

    #[test]
    fn claude_code_bodies_are_read_without_parsing() {
        let compact = br#"{"model":"claude-opus-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        assert_eq!(claude_code_shape(compact), Some(("claude-opus-4-5", true)));
        let spaced = b"\n { \"model\" : \"m\" ,\n \"max_tokens\": 5 , \"stream\" :\tfalse }\n";
        assert_eq!(claude_code_shape(spaced), Some(("m", false)));
        assert_eq!(claude_code_shape(br#"{"model":"m","stream":true}"#), Some(("m", true)));
        for other in [
            &br#"{"messages":[],"model":"m","stream":true}"#[..],
            br#"{"model":"m","stream":true,"max_tokens":5}"#,
            br#"{"model":"m\"x","stream":true}"#,
            br#"{"model":"m\u0041","stream":true}"#,
            br#"{"model":"m","stream":"true"}"#,
            br#"{"model":"m","stream":1}"#,
            br#"{"model":"m","a":{"stream":true}}"#,
            br#"{"model":"m"}"#,
            br#"{"model":7,"stream":true}"#,
            br#"["model","stream":true}"#,
            b"{\"model\":\"m\nx\",\"stream\":true}",
            b"",
            b"{",
        ] {
            assert_eq!(claude_code_shape(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    /// Members of a Messages body, written in any order: whenever the shortcut answers, it
    /// answers what a parser reads.
    fn member() -> impl Strategy<Value = (String, serde_json::Value)> {
        let text = "[a-z\"\\\\ ,:{}]{0,12}";
        let value = prop_oneof![
            text.prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            (text, any::<bool>()).prop_map(|(t, b)| serde_json::json!({"stream": b, "model": t})),
            prop::collection::vec(text, 0..3).prop_map(serde_json::Value::from),
        ];
        (prop_oneof![Just("model".to_owned()), Just("stream".to_owned()), "[a-z_]{1,10}"], value)
    }

    proptest! {
        #[test]
        fn the_shortcut_agrees_with_a_parser(
            model_first in prop::option::of("[a-z\"\\\\ ,:{}-]{0,12}"),
            middle in prop::collection::vec(member(), 0..5),
            stream_last in prop::option::of(any::<bool>()),
            ws in prop::sample::select(vec!["", " ", "\n  ", "\t", " \r\n"]),
        ) {
            // Often in Claude Code's order (model first, stream last), else anything.
            let members = model_first
                .map(|m| ("model".to_owned(), serde_json::Value::from(m)))
                .into_iter()
                .chain(middle)
                .chain(stream_last.map(|b| ("stream".to_owned(), serde_json::Value::from(b))));
            let mut seen = std::collections::HashSet::new();
            let members: Vec<_> = members.filter(|(k, _)| seen.insert(k.clone())).collect();
            // The shape, read from the members rather than from the bytes.
            let in_shape = members.len() >= 2
                && members[0].0 == "model"
                && members[0].1.as_str().is_some_and(|m| !m.contains(['"', '\\']))
                && members[members.len() - 1].0 == "stream"
                && members[members.len() - 1].1.is_boolean();
            let body = format!(
                "{ws}{{{ws}{}{ws}}}{ws}",
                members
                    .iter()
                    .map(|(k, v)| format!("{}{ws}:{ws}{}", serde_json::to_string(k).unwrap(), serde_json::to_string(v).unwrap()))
                    .collect::<Vec<_>>()
                    .join(&format!("{ws},{ws}"))
            );
            let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&body).unwrap();
            let shortcut = claude_code_shape(body.as_bytes());
            prop_assert_eq!(shortcut.is_some(), in_shape, "{}", body);
            if let Some((model, stream)) = shortcut {
                prop_assert_eq!(parsed.get("model").and_then(|m| m.as_str()), Some(model), "{}", body);
                prop_assert_eq!(parsed.get("stream").and_then(serde_json::Value::as_bool), Some(stream), "{}", body);
            }
        }
    }

    #[test]
    fn max_tokens_is_found_without_parsing() {
        assert_eq!(super::max_tokens(br#"{"model":"m","max_tokens": 32000,"stream":true}"#), Some(32000));
        assert_eq!(super::max_tokens(br#"{"max_tokens":"5"}"#), None);
        assert_eq!(super::max_tokens(br#"{"model":"m"}"#), None);
        // A tool's parameter of that name (an object, before the top-level member) is not it,
        // whichever comes first; nor is the text of a message (its quotes are escaped).
        let tool = br#"{"model":"m","messages":[{"role":"user","content":"set \"max_tokens\": 7"}],"tools":[{"input_schema":{"properties":{"max_tokens":{"type":"integer"}}}}],"max_tokens":64000,"stream":true}"#;
        assert_eq!(super::max_tokens(tool), Some(64000));
        let after = br#"{"model":"m","max_tokens":900,"metadata":{"max_tokens":{"x":1}},"stream":true}"#;
        assert_eq!(super::max_tokens(after), Some(900));
    }

    #[test]
    fn a_repeated_model_is_read_as_its_first() {
        // RFC 8259 leaves repeated names open; documented: the shortcut takes the first.
        let body = br#"{"model":"a","messages":[],"model":"b","stream":false}"#;
        assert_eq!(claude_code_shape(body), Some(("a", false)));
    }
}
