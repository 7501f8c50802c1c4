//! The Claude Code request the benchmarks send: a capture of one (its headers, and its body with
//! the members in the order Claude Code writes them) or, without it, a synthesized one of the
//! same shape.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// A Claude Code request.
pub struct Request {
    /// Its headers, without the framing ones (`content-length`, `connection`, `host`,
    /// `transfer-encoding`).
    pub headers: HeaderMap,
    /// Its body (`serde_json::Value` sorts the members: `order` has them as written).
    pub body: serde_json::Value,
    /// The names of the body's members in the order written.
    pub order: Vec<String>,
    /// Where it came from: `Claude Code fixture` or `synthesized`.
    pub source: &'static str,
}

/// The capture of Claude Code 2.1.332 saying hi (`tests/fixtures/claude-code/`).
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/claude-code/request_say_hi_v2.1.332.json")
}

/// The capture at `path` (JSON with `headers`, pairs of name and value, and `body`).
pub fn read(path: &Path) -> anyhow::Result<Request> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let f: serde_json::Value = serde_json::from_str(&text).context("fixture JSON")?;
    if !f["body"].is_object() {
        bail!("{} has no request body", path.display());
    }
    let order: FixtureOrder = serde_json::from_str(&text).context("fixture JSON")?;
    let mut headers = HeaderMap::new();
    for h in f["headers"].as_array().into_iter().flatten() {
        let (Some(n), Some(v)) = (h[0].as_str(), h[1].as_str()) else {
            continue;
        };
        if ["content-length", "connection", "host", "transfer-encoding"].iter().any(|x| n.eq_ignore_ascii_case(x)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(n), HeaderValue::try_from(v)) {
            headers.append(n, v);
        }
    }
    Ok(Request { headers, body: f["body"].clone(), order: order.body.0, source: "Claude Code fixture" })
}

/// The capture at `path`, or the synthesized request when it cannot be read.
pub fn read_or_synthesize(path: &Path) -> Request {
    read(path).unwrap_or_else(|_| synthesized())
}

/// A request shaped as Claude Code's: its headers, a long system prompt, 16 tools.
pub fn synthesized() -> Request {
    let mut headers = HeaderMap::new();
    for (n, v) in [
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("user-agent", "claude-cli/2.1.332 (external, sdk-cli)"),
        ("x-claude-code-session-id", "6fe7ba0a-81a1-4871-8646-c1d0f9bb7df5"),
        ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-ant-bench"),
        ("x-app", "cli"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
    ] {
        headers.insert(n, HeaderValue::from_static(v));
    }
    let filler = "You are Claude Code, Anthropic's official CLI. ".repeat(200);
    let tools: Vec<serde_json::Value> = (0..16)
        .map(|i| {
            serde_json::json!({
                "name": format!("Tool{i}"),
                "description": "Runs a tool. ".repeat(180),
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            })
        })
        .collect();
    let body = serde_json::json!({
        "model": "claude-opus-4-1-20250805",
        "max_tokens": 32000,
        "system": [{"type": "text", "text": filler}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}],
        "tools": tools,
        "metadata": {"user_id": "user_bench"},
        "stream": true,
    });
    let order = ["model", "max_tokens", "system", "messages", "tools", "metadata", "stream"];
    Request { headers, body, order: order.map(String::from).into(), source: "synthesized" }
}

/// The names of a JSON object's members in the order written (`serde_json::Value` sorts them).
struct MemberOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for MemberOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = MemberOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MemberOrder, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    names.push(name);
                }
                Ok(MemberOrder(names))
            }
        }
        d.deserialize_map(Names)
    }
}

#[derive(serde::Deserialize)]
struct FixtureOrder {
    body: MemberOrder,
}

/// `body` written as Claude Code writes it: its members in `order` (then any others), compact.
pub fn in_order(body: &serde_json::Value, order: &[String]) -> anyhow::Result<Vec<u8>> {
    let map = body.as_object().context("the request body is not a JSON object")?;
    let rest = map.keys().filter(|k| !order.contains(k));
    let mut out = vec![b'{'];
    for (i, name) in order.iter().filter(|k| map.contains_key(*k)).chain(rest).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name)?;
        out.push(b':');
        serde_json::to_writer(&mut out, &map[name])?;
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bodies_sent_keep_claude_codes_member_order() {
        let (fixture, missing) = (default_path(), PathBuf::from("/nonexistent.json"));
        for (path, source) in [(&fixture, "Claude Code fixture"), (&missing, "synthesized")] {
            let Request { mut body, order, source: got, .. } = read_or_synthesize(path);
            assert_eq!(got, source);
            assert_eq!(order.first().map(String::as_str), Some("model"), "{order:?}");
            let model = body["model"].as_str().unwrap().to_owned();
            for stream in [true, false] {
                body["stream"] = serde_json::Value::Bool(stream);
                let bytes = in_order(&body, &order).unwrap();
                assert_eq!(ccp_proxy::claude_code_shape(&bytes), Some((model.as_str(), stream)), "{source}");
                assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), body, "{source}");
            }
        }
    }
}
