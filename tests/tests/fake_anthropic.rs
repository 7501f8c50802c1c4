//! The fake Anthropic server, hit directly: wire format, scenarios, compression, recording,
//! control endpoints and the `ccp-fake-anthropic` binary.

// Test helpers fail loudly: a panic here is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ccp_tests::fake_anthropic::{Compression, FakeAnthropic, Scenario, ScenarioName, Usage, DEFAULT_TEXT};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn hello(stream: bool) -> Value {
    json!({
        "model": "claude-test-1",
        "max_tokens": 100,
        "stream": stream,
        "messages": [{"role": "user", "content": "say hi"}],
    })
}

async fn post(fake: &FakeAnthropic, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/v1/messages?beta=true", fake.url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

/// SSE events (name, data) of a body.
fn sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let event = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .unwrap_or_else(|| panic!("no event line in {block:?}"));
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .unwrap_or_else(|| panic!("no data line in {block:?}"));
            assert!(lines.next().is_none(), "extra lines in {block:?}");
            let data: Value =
                serde_json::from_str(data).unwrap_or_else(|e| panic!("data of {event} is not JSON ({e}): {data}"));
            (event.to_owned(), data)
        })
        .collect()
}

/// The message an SSE stream builds (text concatenated, tool input parsed).
fn accumulate(events: &[(String, Value)]) -> Value {
    let mut message = Value::Null;
    let mut json_buf = String::new();
    for (name, data) in events {
        match name.as_str() {
            "message_start" => message = data["message"].clone(),
            "content_block_start" => {
                message["content"].as_array_mut().unwrap().push(data["content_block"].clone());
                json_buf.clear();
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = message["content"][i]["text"].as_str().unwrap().to_owned()
                            + delta["text"].as_str().unwrap();
                        message["content"][i]["text"] = json!(t);
                    }
                    "input_json_delta" => {
                        json_buf.push_str(delta["partial_json"].as_str().unwrap());
                        if !json_buf.is_empty() {
                            if let Ok(v) = serde_json::from_str::<Value>(&json_buf) {
                                message["content"][i]["input"] = v;
                            }
                        }
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "message_delta" => {
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["usage"]["output_tokens"] = data["usage"]["output_tokens"].clone();
            }
            _ => {}
        }
    }
    message
}

fn usage_of(v: &Value) -> Usage {
    Usage::new(
        v["input_tokens"].as_u64().unwrap(),
        v["output_tokens"].as_u64().unwrap(),
        v["cache_read_input_tokens"].as_u64().unwrap(),
        v["cache_creation_input_tokens"].as_u64().unwrap(),
    )
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a streamed body until it ends or fails: (bytes, whether it failed).
async fn read_all(resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

#[tokio::test]
async fn sse_events_in_order_with_usage_and_headers() {
    let fake = FakeAnthropic::start().unwrap();
    let body = hello(true);
    let resp = post(&fake, &body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").unwrap().starts_with("text/event-stream"));
    let rid = header(&resp, "request-id").unwrap().to_owned();
    assert!(rid.starts_with("req_"), "{rid}");
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        for what in ["limit", "remaining", "reset"] {
            let name = format!("anthropic-ratelimit-{kind}-{what}");
            assert!(header(&resp, &name).is_some(), "missing {name}");
        }
    }
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("\n\n"));
    let events = sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..3], &["message_start", "content_block_start", "ping"], "{names:?}");
    assert_eq!(&names[names.len() - 3..], &["content_block_stop", "message_delta", "message_stop"]);
    let deltas = &names[3..names.len() - 3];
    assert!(deltas.len() >= 2, "{names:?}");
    assert!(deltas.iter().all(|n| *n == "content_block_delta"));
    for (name, data) in &events {
        assert_eq!(data["type"], json!(name), "type of {name}");
    }
    let start = &events[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-test-1");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["stop_sequence"], Value::Null);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(start["usage"]["cache_creation_input_tokens"], 0);
    let delta = &events[names.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["delta"]["stop_sequence"], Value::Null);

    let message = accumulate(&events);
    assert_eq!(message["content"][0]["text"], DEFAULT_TEXT);
    let body_len = serde_json::to_vec(&body).unwrap().len() as u64;
    let expected = Usage::new(body_len / 100 + 1, 4, 0, 0);
    assert_eq!(usage_of(&message["usage"]), expected);

    let recorded = fake.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].usage, Some(expected));
    assert_eq!(recorded[0].status, 200);
    assert_eq!(recorded[0].query, "beta=true");
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(recorded[0].scenario.as_ref().map(|s| s.name), Some(ScenarioName::Auto));
}

#[tokio::test]
async fn json_answer_is_the_full_message() {
    let fake = FakeAnthropic::start().unwrap();
    let resp = post(&fake, &hello(false), &[("x-fake-usage", "10,20,30,40")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    let msg: Value = resp.json().await.unwrap();
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["model"], "claude-test-1");
    assert_eq!(msg["content"], json!([{"type": "text", "text": DEFAULT_TEXT}]));
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(msg["stop_sequence"], Value::Null);
    assert_eq!(usage_of(&msg["usage"]), Usage::new(10, 20, 30, 40));
    assert_eq!(fake.requests()[0].usage, Some(Usage::new(10, 20, 30, 40)));
}

#[tokio::test]
async fn error_scenarios_use_anthropic_error_shapes() {
    let fake = FakeAnthropic::start().unwrap();
    async fn error_of(resp: reqwest::Response) -> (u16, Option<String>, Value) {
        let status = resp.status().as_u16();
        let rid = header(&resp, "request-id").map(str::to_owned);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["request_id"].as_str(), rid.as_deref());
        (status, rid, body)
    }

    let resp = post(&fake, &hello(true), &[("x-fake-scenario", "rate_limit")]).await;
    assert_eq!(header(&resp, "retry-after"), Some("7"));
    let (status, _, body) = error_of(resp).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let resp = post(&fake, &hello(true), &[("x-fake-scenario", "rate_limit"), ("x-fake-retry-after", "3")]).await;
    assert_eq!(header(&resp, "retry-after"), Some("3"));

    let (status, _, body) = error_of(post(&fake, &hello(true), &[("x-fake-scenario", "overloaded")]).await).await;
    assert_eq!((status, body["error"]["type"].as_str()), (529, Some("overloaded_error")));

    let (status, _, body) = error_of(post(&fake, &hello(false), &[("x-fake-scenario", "server_error")]).await).await;
    assert_eq!((status, body["error"]["type"].as_str()), (500, Some("api_error")));

    let resp = post(&fake, &hello(true), &[("x-fake-scenario", "usage_limit")]).await;
    assert_eq!(header(&resp, "anthropic-ratelimit-unified-status"), Some("rejected"));
    assert!(header(&resp, "retry-after").is_some());
    let (status, _, body) = error_of(resp).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("usage limit"));

    // No key.
    let resp = client()
        .post(format!("{}/v1/messages", fake.url()))
        .body(serde_json::to_vec(&hello(false)).unwrap())
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_of(resp).await;
    assert_eq!((status, body["error"]["type"].as_str()), (401, Some("authentication_error")));

    // Bearer is enough.
    let resp = client()
        .post(format!("{}/v1/messages", fake.url()))
        .header("authorization", "Bearer sk-ant-oat-test")
        .body(serde_json::to_vec(&hello(false)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Not JSON.
    let resp = client()
        .post(format!("{}/v1/messages", fake.url()))
        .header("x-api-key", "k")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_of(resp).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("invalid_request_error")));

    // Unknown path.
    let resp = client().get(format!("{}/v1/nothing", fake.url())).header("x-api-key", "k").send().await.unwrap();
    let (status, _, body) = error_of(resp).await;
    assert_eq!((status, body["error"]["type"].as_str()), (404, Some("not_found_error")));

    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 529, 500, 429, 401, 200, 400, 404]);
    assert!(fake.requests()[..6].iter().all(|r| r.usage.is_none()));
}

#[tokio::test]
async fn cut_stream_ends_early() {
    let fake = FakeAnthropic::start().unwrap();
    let resp = post(&fake, &hello(true), &[("x-fake-scenario", "cut_stream")]).await;
    assert_eq!(resp.status(), 200);
    let (body, failed) = read_all(resp).await;
    assert!(failed, "the body should end with an error");
    let events = sse(std::str::from_utf8(&body).unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["message_start", "content_block_start", "ping"]);
    let rec = &fake.requests()[0];
    assert_eq!(rec.usage.map(|u| u.output_tokens), Some(1));

    let resp = post(&fake, &hello(true), &[("x-fake-scenario", "cut_stream"), ("x-fake-events", "5")]).await;
    let (body, failed) = read_all(resp).await;
    assert!(failed);
    assert_eq!(sse(std::str::from_utf8(&body).unwrap()).len(), 5);

    // Non-streaming: half a JSON body.
    let resp = post(&fake, &hello(false), &[("x-fake-scenario", "cut_stream")]).await;
    assert!(resp.bytes().await.is_err());

    // The server still serves afterwards.
    let resp = post(&fake, &hello(false), &[]).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn stream_error_sends_an_error_event() {
    let fake = FakeAnthropic::start().unwrap();
    let resp = post(&fake, &hello(true), &[("x-fake-scenario", "stream_error")]).await;
    assert_eq!(resp.status(), 200);
    let (body, failed) = read_all(resp).await;
    assert!(!failed);
    let events = sse(std::str::from_utf8(&body).unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["message_start", "content_block_start", "content_block_delta", "error"]);
    assert_eq!(events[3].1, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    let resp = post(&fake, &hello(false), &[("x-fake-scenario", "stream_error")]).await;
    assert_eq!(resp.status().as_u16(), 529);
}

fn decode(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        }
        Compression::Deflate => {
            flate2::read::ZlibDecoder::new(data).read_to_end(&mut out).unwrap();
        }
        Compression::Br => {
            brotli_decompressor::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap();
        }
        Compression::Zstd => {
            ruzstd::decoding::StreamingDecoder::new(data).unwrap().read_to_end(&mut out).unwrap();
        }
    }
    out
}

#[tokio::test]
async fn compressed_bodies_decode() {
    let fake = FakeAnthropic::start().unwrap();
    for c in [Compression::Gzip, Compression::Deflate, Compression::Br, Compression::Zstd] {
        for stream in [true, false] {
            let resp = post(
                &fake,
                &hello(stream),
                &[
                    ("x-fake-compress", c.token()),
                    ("x-fake-pace-ms", "5"),
                    ("accept-encoding", "gzip, deflate, br, zstd"),
                ],
            )
            .await;
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "content-encoding"), Some(c.token()));
            let raw = resp.bytes().await.unwrap();
            let plain = String::from_utf8(decode(c, &raw)).unwrap();
            let text = if stream {
                let events = sse(&plain);
                assert_eq!(events.last().unwrap().0, "message_stop");
                accumulate(&events)["content"][0]["text"].clone()
            } else {
                serde_json::from_str::<Value>(&plain).unwrap()["content"][0]["text"].clone()
            };
            assert_eq!(text, DEFAULT_TEXT, "{c:?} stream={stream}");
        }
    }
    // Not compressed when the client does not accept it.
    let resp = post(&fake, &hello(false), &[("x-fake-compress", "br"), ("accept-encoding", "gzip")]).await;
    assert_eq!(header(&resp, "content-encoding"), None);
    let msg: Value = resp.json().await.unwrap();
    assert_eq!(msg["content"][0]["text"], DEFAULT_TEXT);
    let encodings: Vec<Option<String>> = fake.requests().iter().map(|r| r.content_encoding.clone()).collect();
    assert_eq!(encodings.len(), 9);
    assert_eq!(encodings[0].as_deref(), Some("gzip"));
    assert_eq!(encodings[8], None);
}

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/claude-code").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Sends a captured Claude Code request as captured (headers in order, body re-serialized).
async fn replay(fake: &FakeAnthropic, entry: &Value) -> (Vec<(String, String)>, Vec<u8>, String) {
    let body = serde_json::to_vec(&entry["body"]).unwrap();
    let mut sent = Vec::new();
    let mut req = client().post(format!("{}{}", fake.url(), "/v1/messages?beta=true"));
    for pair in entry["headers"].as_array().unwrap() {
        let (n, v) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        if ["content-length", "connection", "host"].contains(&n.to_ascii_lowercase().as_str()) {
            continue;
        }
        req = req.header(n, v);
        sent.push((n.to_ascii_lowercase(), v.to_owned()));
    }
    let resp = req.body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").unwrap().starts_with("text/event-stream"));
    (sent, body, resp.text().await.unwrap())
}

#[tokio::test]
async fn claude_code_tool_round_trip_fixture() {
    let fake = FakeAnthropic::start().unwrap();
    let entries = fixture("tool_roundtrip_bash_v2.1.332.json");
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);

    let (sent, body, text) = replay(&fake, &entries[0]).await;
    let events = sse(&text);
    let first = accumulate(&events);
    assert_eq!(first["stop_reason"], "tool_use");
    assert_eq!(first["model"], entries[0]["body"]["model"]);
    let block = &first["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "Bash");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["input"], json!({"command": "echo TOOL_RAN_OK", "description": "Run the command"}));
    assert!(events.iter().any(|(_, d)| d["delta"]["type"] == "input_json_delta"));

    let rec = fake.requests();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].body, body, "recorded body differs from the one sent");
    // Every header sent is recorded, in the order sent.
    let recorded: Vec<(String, String)> = rec[0]
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| sent.iter().any(|(s, _)| s == n))
        .collect();
    assert_eq!(recorded, sent);
    assert_eq!(rec[0].header("X-API-KEY"), Some("sk-ant-test"));

    let (_, body2, text2) = replay(&fake, &entries[1]).await;
    let second = accumulate(&sse(&text2));
    assert_eq!(second["stop_reason"], "end_turn");
    assert_eq!(second["content"][0]["type"], "text");
    assert_eq!(second["content"][0]["text"], "Tool said: TOOL_RAN_OK");
    let rec = fake.requests();
    assert_eq!(rec.len(), 2);
    assert_eq!(rec[1].body, body2);
    assert_eq!(rec[1].body_json().unwrap(), entries[1]["body"]);
}

#[tokio::test]
async fn say_hi_fixture_gets_the_default_text() {
    let fake = FakeAnthropic::start().unwrap();
    let entry = fixture("request_say_hi_v2.1.332.json");
    let (_, _, text) = replay(&fake, &entry).await;
    let msg = accumulate(&sse(&text));
    assert_eq!(msg["content"][0]["text"], DEFAULT_TEXT);
    assert_eq!(msg["stop_reason"], "end_turn");
}

#[tokio::test]
async fn queue_then_defaults_and_header_wins() {
    let fake = FakeAnthropic::start().unwrap();
    fake.enqueue(Scenario::text("first"));
    fake.enqueue(Scenario::tool_use("Read", json!({"file_path": "/etc/hostname"})).with_model("claude-other"));
    fake.enqueue(Scenario::new(ScenarioName::RateLimit));

    // The header scenario does not consume the queue.
    let resp = post(&fake, &hello(false), &[("x-fake-scenario", "overloaded")]).await;
    assert_eq!(resp.status().as_u16(), 529);

    let msg: Value = post(&fake, &hello(false), &[]).await.json().await.unwrap();
    assert_eq!(msg["content"][0]["text"], "first");
    let text = post(&fake, &hello(true), &[]).await.text().await.unwrap();
    let msg = accumulate(&sse(&text));
    assert_eq!(msg["model"], "claude-other");
    assert_eq!(msg["content"][0]["name"], "Read");
    assert_eq!(msg["content"][0]["input"], json!({"file_path": "/etc/hostname"}));
    assert_eq!(post(&fake, &hello(false), &[]).await.status(), 429);
    let msg: Value = post(&fake, &hello(false), &[]).await.json().await.unwrap();
    assert_eq!(msg["content"][0]["text"], DEFAULT_TEXT);

    // Header parameters apply to the default answer too.
    let msg: Value =
        post(&fake, &hello(false), &[("x-fake-text", "custom"), ("x-fake-model", "m2")]).await.json().await.unwrap();
    assert_eq!((msg["content"][0]["text"].as_str(), msg["model"].as_str()), (Some("custom"), Some("m2")));

    let names: Vec<ScenarioName> = fake.requests().iter().map(|r| r.scenario.as_ref().unwrap().name).collect();
    assert_eq!(
        names,
        [
            ScenarioName::Overloaded,
            ScenarioName::Text,
            ScenarioName::ToolUse,
            ScenarioName::RateLimit,
            ScenarioName::Auto,
            ScenarioName::Auto
        ]
    );
    fake.enqueue(Scenario::text("never used"));
    fake.clear();
    assert!(fake.requests().is_empty());
    let msg: Value = post(&fake, &hello(false), &[]).await.json().await.unwrap();
    assert_eq!(msg["content"][0]["text"], DEFAULT_TEXT);

    // Unknown scenario name.
    let resp = post(&fake, &hello(false), &[("x-fake-scenario", "nope")]).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn control_endpoints() {
    let fake = FakeAnthropic::start().unwrap();
    let c = client();
    let resp = c
        .post(format!("{}/_fake/enqueue", fake.url()))
        .json(&json!({"name": "text", "text": "scripted", "usage": {"input_tokens": 5, "output_tokens": 6}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        c.post(format!("{}/_fake/enqueue", fake.url())).json(&json!([{"name": "server_error"}])).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["queued"], 2);

    let text = post(&fake, &hello(true), &[]).await.text().await.unwrap();
    let msg = accumulate(&sse(&text));
    assert_eq!(msg["content"][0]["text"], "scripted");
    assert_eq!(msg["usage"]["input_tokens"], 5);
    assert_eq!(msg["usage"]["output_tokens"], 6);
    assert_eq!(post(&fake, &hello(true), &[]).await.status(), 500);

    let list: Value = c.get(format!("{}/_fake/requests", fake.url())).send().await.unwrap().json().await.unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "control requests are not recorded");
    assert_eq!(list[0]["body_json"], hello(true));
    assert_eq!(list[0]["usage"]["output_tokens"], 6);
    assert_eq!(list[0]["scenario"]["name"], "text");
    assert_eq!(list[1]["status"], 500);
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.decode(list[0]["body_base64"].as_str().unwrap()).unwrap();
    assert_eq!(body, serde_json::to_vec(&hello(true)).unwrap());
    let parsed: Vec<ccp_tests::fake_anthropic::RecordedRequest> =
        serde_json::from_value(Value::Array(list.clone())).unwrap();
    assert_eq!(parsed, fake.requests());

    let resp = c.post(format!("{}/_fake/reset", fake.url())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn count_tokens_and_models() {
    let fake = FakeAnthropic::start().unwrap();
    let body =
        serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(450)}]})).unwrap();
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens?beta=true", fake.url()))
        .header("x-api-key", "k")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let n = body.len() as u64 / 100 + 1;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"input_tokens": n}));
    assert_eq!(fake.requests()[0].usage, Some(Usage::new(n, 0, 0, 0)));

    let resp = client().get(format!("{}/v1/models", fake.url())).header("x-api-key", "k").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    assert!(!list["data"].as_array().unwrap().is_empty());
    assert_eq!(list["data"][0]["type"], "model");
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], list["data"][0]["id"]);
}

#[tokio::test]
async fn delays_and_pacing() {
    let fake = FakeAnthropic::start().unwrap();
    let t = Instant::now();
    let resp = post(&fake, &hello(false), &[("x-fake-scenario", "slow_headers"), ("x-fake-delay-ms", "300")]).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status(), 200);
    // Recorded before the answer.
    assert_eq!(fake.requests().len(), 1);

    fake.enqueue(Scenario::default().with_pace_ms(60));
    let t = Instant::now();
    let resp = post(&fake, &hello(true), &[]).await;
    let headers_after = t.elapsed();
    let events = sse(&resp.text().await.unwrap());
    let total = t.elapsed();
    // Events after the first are each 60 ms apart.
    assert!(total >= Duration::from_millis(60 * (events.len() as u64 - 1)));
    assert!(headers_after < Duration::from_millis(60 * (events.len() as u64 - 1)));
}

#[test]
fn raw_requests_recorded_byte_for_byte_from_a_plain_thread() {
    let fake = FakeAnthropic::start().unwrap();
    let mut conn = TcpStream::connect(fake.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body1 = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let req1 = format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk-ant-test\r\nZ-Last-Alpha: 1\r\nanthropic-version: 2023-06-01\r\nA-First: 2\r\nContent-Length: {}\r\n\r\n",
        body1.len()
    );
    // The second request, chunked, follows on the same connection without waiting.
    let (part1, part2) = (r#"{"mod"#, r#"el":"m","messages":[]}"#);
    let req2 = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{part1}\r\n{:x}\r\n{part2}\r\n0\r\nX-Trailer: t\r\n\r\n",
        part1.len(),
        part2.len()
    );
    let mut all = req1.into_bytes();
    all.extend_from_slice(body1);
    all.extend_from_slice(req2.as_bytes());
    conn.write_all(&all).unwrap();

    // Read both answers (each has a content-length).
    let mut reader = BufReader::new(conn);
    for _ in 0..2 {
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let msg: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(msg["content"][0]["text"], DEFAULT_TEXT);
    }

    let rec = fake.requests();
    assert_eq!(rec.len(), 2);
    assert_eq!(
        rec[0].headers,
        vec![
            ("Host".to_owned(), "x".to_owned()),
            ("X-Api-Key".to_owned(), "sk-ant-test".to_owned()),
            ("Z-Last-Alpha".to_owned(), "1".to_owned()),
            ("anthropic-version".to_owned(), "2023-06-01".to_owned()),
            ("A-First".to_owned(), "2".to_owned()),
            ("Content-Length".to_owned(), body1.len().to_string()),
        ]
    );
    assert_eq!(rec[0].body, body1);
    assert_eq!(rec[0].query, "beta=true");
    assert_eq!(
        rec[1].headers,
        vec![
            ("Host".to_owned(), "x".to_owned()),
            ("x-api-key".to_owned(), "k".to_owned()),
            ("Transfer-Encoding".to_owned(), "chunked".to_owned()),
        ]
    );
    assert_eq!(rec[1].body, br#"{"model":"m","messages":[]}"#);
    assert_eq!(rec[1].query, "");
}

#[test]
fn handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<FakeAnthropic>();
}

#[tokio::test]
async fn drop_stops_the_server() {
    let fake = FakeAnthropic::start().unwrap();
    let addr = fake.addr();
    assert_eq!(post(&fake, &hello(false), &[]).await.status(), 200);
    drop(fake);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn binary_serves_and_exits_on_sigterm() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccp-fake-anthropic"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("ccp-fake-anthropic listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = client();
        c.post(format!("{url}/_fake/enqueue"))
            .json(&json!({"name": "text", "text": "from the binary"}))
            .send()
            .await
            .unwrap();
        let msg: Value = c
            .post(format!("{url}/v1/messages"))
            .header("x-api-key", "k")
            .json(&hello(false))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(msg["content"][0]["text"], "from the binary");
        let list: Value = c.get(format!("{url}/_fake/requests")).send().await.unwrap().json().await.unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
    });
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
