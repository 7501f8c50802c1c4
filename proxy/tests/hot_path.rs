//! The proxy's hot path against a real NATS JetStream and the fake Anthropic: access keys from
//! the event log (live revocation), passthrough, the usage tap and its events, refusals and bad
//! input in Anthropic's error format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use ccp_proxy::Application;
use ccp_runtime::config::Settings;
use ccp_schemas::events::{Endpoint, ErrorClass, Provider, RoutingStrategy};
use ccp_schemas::subjects::StreamKind;
use ccp_tests::events::Log;
use ccp_tests::fake_anthropic::FakeAnthropic;
use ccp_tests::{test_settings, wait_http_ok};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct Harness {
    log: Log,
    fake: FakeAnthropic,
    url: String,
}

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/../tests/fixtures/claude-code/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The say-hi request Claude Code 2.1.332 sent: its headers and body.
fn claude_code_request() -> (Vec<(String, String)>, Vec<u8>) {
    let f = fixture("request_say_hi_v2.1.332.json");
    let headers = f["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().to_owned(), h[1].as_str().unwrap().to_owned()))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length") && !n.eq_ignore_ascii_case("connection"))
        .collect();
    (headers, serde_json::to_vec(&f["body"]).unwrap())
}

async fn start_with(settings: Settings) -> String {
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    wait_http_ok(&format!("{url}/ready"), Duration::from_secs(20)).await.unwrap();
    url
}

fn proxy_settings(label: &str, upstream: &str) -> Settings {
    let mut s = test_settings(label);
    s.proxy.anthropic_base_url = upstream.to_owned();
    s.proxy.spool_dir = std::env::temp_dir().join(format!("ccp-spool-{}", s.nats.prefix));
    s.proxy.workers = 1;
    s
}

async fn harness(label: &str) -> Harness {
    let fake = FakeAnthropic::start().unwrap();
    let settings = proxy_settings(label, &fake.url());
    let log = Log::new(&settings).await;
    let url = start_with(settings).await;
    Harness { log, fake, url }
}

impl Harness {
    async fn key(&self) -> String {
        let (_, _, key) = self.log.user_with_key("dana").await;
        let key = key.expose().to_owned();
        self.wait_accepted(&key).await;
        key
    }

    /// Waits until the proxy knows the key (events are applied asynchronously), and until the
    /// usage event of the request that found it so is stored (a test that counts events after
    /// this does not count it).
    async fn wait_accepted(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let resp = self.post(key, "messages", br#"{"model":"m","max_tokens":1,"messages":[]}"#.to_vec(), &[]).await;
            if resp.status() != 401 {
                let rid = request_id_of(&resp);
                let _ = resp.bytes().await;
                if let Some(rid) = rid {
                    self.log.wait_request(&rid, Duration::from_secs(5)).await;
                }
                return;
            }
            assert!(Instant::now() < deadline, "key not accepted in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn post(&self, key: &str, tail: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(format!("{}/ak/{key}/v1/{tail}?beta=true", self.url))
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-test")
            .body(body);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        req.send().await.unwrap()
    }
}

fn request_id(resp: &reqwest::Response) -> String {
    request_id_of(resp).expect("x-ccp-request-id")
}

/// The proxy's `x-ccp-request-id` of an answer, if it has one.
fn request_id_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers().get("x-ccp-request-id").map(|v| v.to_str().unwrap().to_owned())
}

fn sse_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[actix_web::test]
async fn claude_code_request_streams_through_and_is_recorded_once() {
    let h = harness("stream").await;
    let key = h.key().await;
    h.fake.clear();
    let (headers, body) = claude_code_request();
    let mut req = reqwest::Client::new().post(format!("{}/ak/{key}/v1/messages?beta=true", h.url));
    for (n, v) in &headers {
        req = req.header(n, v);
    }
    let resp = req.body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("request-id").is_some(), "upstream request-id kept");
    assert!(resp.headers().get("anthropic-ratelimit-requests-remaining").is_some());
    assert!(resp.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/event-stream"));
    let rid = request_id(&resp);
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");

    // Upstream got the same body, query and headers, minus the proxy's and hop-by-hop ones.
    let got = h.fake.requests();
    assert_eq!(got.len(), 1);
    let up = &got[0];
    assert_eq!(up.body, body);
    assert_eq!(up.query, "beta=true");
    assert_eq!(up.path, "/v1/messages");
    for (n, v) in &headers {
        assert_eq!(up.header(n), Some(v.as_str()), "header {n}");
    }
    assert!(up.header("x-ccp-access-key").is_none());
    assert!(!String::from_utf8_lossy(&up.body).contains(&key));

    let event = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    let sent = up.usage.unwrap();
    assert_eq!(event.provider, Provider::Anthropic);
    assert_eq!(event.status, 200);
    assert_eq!(event.endpoint, Endpoint::Messages);
    assert!(event.stream && !event.incomplete && event.error_class.is_none());
    assert_eq!(event.usage.input_tokens, sent.input_tokens);
    assert_eq!(event.usage.output_tokens, sent.output_tokens);
    assert_eq!(event.usage.cache_read_input_tokens, sent.cache_read_input_tokens);
    assert_eq!(event.usage.cache_creation_input_tokens, sent.cache_creation_input_tokens);
    assert_eq!(event.requested_model.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(event.response_model.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(event.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(event.session_id.as_deref(), Some("6fe7ba0a-81a1-4871-8646-c1d0f9bb7df5"));
    assert_eq!(event.client_version.as_deref(), Some("claude-cli/2.1.332"));
    assert!(event.ttfb_ms.is_some());
    let all: Vec<_> = h.log.requests().await.into_iter().filter(|r| r.request_id.to_string() == rid).collect();
    assert_eq!(all.len(), 1, "exactly one usage event per request");
}

#[actix_web::test]
async fn json_answers_count_tokens_and_explicit_usage_are_tapped() {
    let h = harness("json").await;
    let key = h.key().await;
    let resp = h
        .post(
            &key,
            "messages",
            br#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            &[("x-fake-usage", "11,22,33,44")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["type"], "message");
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert!(!e.stream);
    assert_eq!(
        (
            e.usage.input_tokens,
            e.usage.output_tokens,
            e.usage.cache_read_input_tokens,
            e.usage.cache_creation_input_tokens
        ),
        (11, 22, 33, 44)
    );

    let resp = h
        .post(
            &key,
            "messages/count_tokens",
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    let n = resp.json::<serde_json::Value>().await.unwrap()["input_tokens"].as_u64().unwrap();
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert_eq!(e.endpoint, Endpoint::CountTokens);
    assert_eq!(e.usage.input_tokens, n);
}

#[actix_web::test]
async fn key_in_a_header_works_and_is_not_forwarded() {
    let h = harness("hdrkey").await;
    let key = h.key().await;
    h.fake.clear();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", h.url))
        .header("x-ccp-access-key", &key)
        .header("x-api-key", "sk-ant-test")
        .header("content-type", "application/json")
        .body(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let up = h.fake.requests();
    assert_eq!(up.len(), 1);
    assert!(up[0].header("x-ccp-access-key").is_none());
    assert_eq!(up[0].header("x-api-key"), Some("sk-ant-test"));
}

async fn assert_refused(resp: reqwest::Response, needle: &str) -> String {
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers().get("x-should-retry").unwrap(), "false");
    let rid = request_id(&resp);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["type"], "error");
    assert_eq!(json["error"]["type"], "authentication_error");
    assert_eq!(json["request_id"], rid.as_str());
    let msg = json["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg}");
    assert!(msg.contains("platform team"), "{msg}");
    rid
}

#[actix_web::test]
async fn unknown_malformed_revoked_and_deactivated_keys_are_refused_live() {
    let h = harness("refuse").await;
    let body = br#"{"model":"m","max_tokens":1,"messages":[]}"#.to_vec();

    let stranger = ccp_schemas::secrets::access_key::AccessKey::generate().unwrap();
    let rid = assert_refused(h.post(stranger.expose(), "messages", body.clone(), &[]).await, "not known").await;
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert_eq!(e.error_class, Some(ErrorClass::UnknownAccessKey));
    assert_eq!(e.key_prefix.as_ref().unwrap().as_str(), &stranger.expose()[..9]);
    assert!(e.key_id.is_none());
    assert_eq!(e.provider, Provider::None);

    assert_refused(h.post("ak_short", "messages", body.clone(), &[]).await, "malformed").await;
    let no_key = reqwest::Client::new().post(format!("{}/v1/messages", h.url)).body("{}").send().await.unwrap();
    assert_refused(no_key, "No ClaudeCodeProxy access key").await;

    // Revocation and deactivation reach the running proxy within a second.
    let (user_id, key_id, key) = h.log.user_with_key("erin").await;
    h.wait_accepted(key.expose()).await;
    let started = Instant::now();
    h.log.revoke(user_id, key_id).await;
    loop {
        let resp = h.post(key.expose(), "messages", body.clone(), &[]).await;
        if resp.status() == 401 {
            assert_refused(resp, "revoked").await;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "revocation took over 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (user_id, _, key) = h.log.user_with_key("finn").await;
    h.wait_accepted(key.expose()).await;
    let started = Instant::now();
    h.log.deactivate(user_id).await;
    loop {
        let resp = h.post(key.expose(), "messages", body.clone(), &[]).await;
        if resp.status() == 401 {
            assert_refused(resp, "deactivated").await;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "deactivation took over 1 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.log.reactivate(user_id).await;
    h.wait_accepted(key.expose()).await;

    // No key text in any event.
    for (_, envelope) in h.log.read_all(StreamKind::Requests).await {
        let json = String::from_utf8(envelope.encode().unwrap()).unwrap();
        assert!(!json.contains(&key.expose()[9..]));
        assert!(!json.contains(&stranger.expose()[9..]));
    }
}

#[actix_web::test]
async fn rotation_switches_the_secret_at_once() {
    let h = harness("rotate").await;
    let (user_id, key_id, old) = h.log.user_with_key("gail").await;
    h.wait_accepted(old.expose()).await;
    let new = h.log.rotate(user_id, key_id, &old).await;
    h.wait_accepted(new.expose()).await;
    let body = br#"{"model":"m","max_tokens":1,"messages":[]}"#.to_vec();
    assert_refused(h.post(old.expose(), "messages", body, &[]).await, "not known").await;
}

#[actix_web::test]
async fn without_a_bedrock_key_anthropic_failures_are_explained_with_retry_after() {
    let h = harness("nofallback").await;
    let key = h.key().await;
    let body = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    for (scenario, cause) in [
        ("rate_limit", "429 rate_limit_error"),
        ("overloaded", "529 overloaded_error"),
        ("server_error", "500 api_error"),
    ] {
        let resp = h.post(&key, "messages", body.clone(), &[("x-fake-scenario", scenario)]).await;
        assert_eq!(resp.status(), 503, "{scenario}");
        if scenario == "rate_limit" {
            assert_eq!(resp.headers().get("retry-after").unwrap(), "7", "Anthropic's retry-after is kept");
        }
        let rid = request_id(&resp);
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["type"], "api_error");
        let msg = json["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("Anthropic returned {cause}")), "{msg}");
        assert!(msg.contains("no Bedrock fallback"), "{msg}");
        let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
        assert_eq!(e.status, 503);
        assert_eq!(e.error_class, Some(ErrorClass::NoBedrockFallback), "{scenario}");
    }
    // A client error is passed through as is.
    let resp = h.post(&key, "messages", b"[1,2]".to_vec(), &[]).await;
    assert_eq!(resp.status(), 400);
}

#[actix_web::test]
async fn plan_only_users_get_anthropic_errors_unchanged() {
    let h = harness("planonly").await;
    let (user_id, _, key) = h.log.user_with_key("kim").await;
    h.log.set_routing(user_id, RoutingStrategy::PlanOnly).await;
    let key = key.expose().to_owned();
    h.wait_accepted(&key).await;
    let body = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    for (scenario, status, class) in [
        ("rate_limit", 429, ErrorClass::UpstreamRateLimited),
        ("overloaded", 529, ErrorClass::UpstreamOverloaded),
        ("server_error", 500, ErrorClass::UpstreamServerError),
    ] {
        // The routing event may still be on its way: retry briefly until it applies.
        let deadline = Instant::now() + Duration::from_secs(5);
        let resp = loop {
            let resp = h.post(&key, "messages", body.clone(), &[("x-fake-scenario", scenario)]).await;
            if resp.status() != 503 || Instant::now() > deadline {
                break resp;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(resp.status(), status, "{scenario}");
        if status == 429 {
            assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
        }
        let rid = request_id(&resp);
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["type"], "error");
        let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
        assert_eq!(e.status, status);
        assert_eq!(e.error_class, Some(class), "{scenario}");
    }
}

#[actix_web::test]
async fn in_stream_errors_and_cut_streams_are_flagged_incomplete() {
    let h = harness("cut").await;
    let key = h.key().await;
    let body =
        br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi there friend"}]}"#
            .to_vec();

    let resp = h.post(&key, "messages", body.clone(), &[("x-fake-scenario", "stream_error")]).await;
    let rid = request_id(&resp);
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: error"));
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert!(e.incomplete);
    assert_eq!(e.error_class, Some(ErrorClass::StreamInterrupted));
    assert!(e.usage.input_tokens > 0, "usage seen before the error is kept");

    let resp = h.post(&key, "messages", body.clone(), &[("x-fake-scenario", "cut_stream")]).await;
    let rid = request_id(&resp);
    let _ = resp.bytes().await; // the body errors or ends early
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert!(e.incomplete);
    assert!(e.usage.input_tokens > 0);
}

#[actix_web::test]
async fn a_client_that_disconnects_mid_stream_is_recorded_as_incomplete() {
    let h = harness("disconnect").await;
    let key = h.key().await;
    let body = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight"}]}"#.to_vec();
    let resp = h.post(&key, "messages", body, &[("x-fake-pace-ms", "200")]).await;
    let rid = request_id(&resp);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    drop(stream);
    let e = h.log.wait_request(&rid, Duration::from_secs(10)).await;
    assert!(e.incomplete);
    assert_eq!(e.error_class, Some(ErrorClass::ClientDisconnected));
    assert!(e.usage.input_tokens > 0, "usage from message_start is kept");
}

#[actix_web::test]
async fn compressed_answers_pass_through_compressed_and_are_tapped() {
    let h = harness("compress").await;
    let key = h.key().await;
    let body = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    for coding in ["gzip", "br", "zstd", "deflate"] {
        h.fake.clear();
        let resp = h
            .post(
                &key,
                "messages",
                body.clone(),
                &[
                    ("x-fake-compress", coding),
                    ("accept-encoding", "gzip, deflate, br, zstd"),
                    ("x-fake-usage", "5,6,7,8"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get("content-encoding").unwrap(), coding, "encoding passed through");
        let rid = request_id(&resp);
        let raw = resp.bytes().await.unwrap();
        assert!(!raw.starts_with(b"event:"), "{coding}: body was decompressed by the proxy");
        let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
        assert_eq!(
            (
                e.usage.input_tokens,
                e.usage.output_tokens,
                e.usage.cache_read_input_tokens,
                e.usage.cache_creation_input_tokens
            ),
            (5, 6, 7, 8),
            "{coding}"
        );
    }
}

#[actix_web::test]
async fn headers_named_by_the_upstreams_connection_header_are_not_relayed() {
    // The fake Anthropic cannot send a Connection header of its own (actix-http writes that one).
    let extra =
        "connection: keep-alive, X-Hop\r\nx-hop: 1\r\nx-kept: 2\r\nanthropic-ratelimit-requests-remaining: 49\r\n";
    let url = raw_upstream(SSE.as_bytes().to_vec(), None, extra).await;
    let settings = proxy_settings("connhdr", &url);
    let log = Log::new(&settings).await;
    let proxy = start_with(settings).await;
    let (_, _, key) = log.user_with_key("cora").await;
    let key = key.expose().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    let resp = loop {
        let resp = reqwest::Client::new()
            .post(format!("{proxy}/ak/{key}/v1/messages"))
            .header("content-type", "application/json")
            .body(r#"{"model":"m","max_tokens":8,"messages":[]}"#)
            .send()
            .await
            .unwrap();
        if resp.status() != 401 || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(resp.status(), 200);
    let header = |n: &str| resp.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("x-kept").as_deref(), Some("2"), "an ordinary header passes");
    assert_eq!(header("x-hop"), None, "a header the upstream's Connection header names is hop-by-hop");
    assert_eq!(header("request-id").as_deref(), Some("req_raw"));
    assert_eq!(header("anthropic-ratelimit-requests-remaining").as_deref(), Some("49"));
    assert_eq!(resp.text().await.unwrap(), SSE);
}

#[actix_web::test]
async fn bad_input_gets_specific_anthropic_errors() {
    let h = harness("badinput").await;
    let key = h.key().await;
    let client = reqwest::Client::new();

    let resp = h.post(&key, "messages", b"{not json".to_vec(), &[]).await;
    assert_eq!(resp.status(), 400);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["type"], "invalid_request_error");
    assert!(json["error"]["message"].as_str().unwrap().contains("JSON"));

    // Valid JSON, but not an object (serde would read a struct from an array's items).
    for body in [&br#"["claude-sonnet-4-5", true]"#[..], b" 42", b"\"messages\"", b""] {
        let resp = h.post(&key, "messages", body.to_vec(), &[]).await;
        assert_eq!(resp.status(), 400, "{}", String::from_utf8_lossy(body));
        let rid = request_id(&resp);
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert!(json["error"]["message"].as_str().unwrap().contains("not a JSON object"), "{json}");
        let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
        assert_eq!(e.error_class, Some(ErrorClass::BadRequest));
    }

    // Claude Code's shape (model first, stream last) is not parsed by the proxy: a malformed
    // body in it is Anthropic's to refuse, and its 400 comes back as it is.
    let body = br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":oops}],"stream":true}"#;
    let resp = h.post(&key, "messages", body.to_vec(), &[]).await;
    assert_eq!(resp.status(), 400);
    let rid = request_id(&resp);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert_eq!(e.error_class, Some(ErrorClass::UpstreamClientError));
    assert_eq!((e.requested_model.as_deref(), e.stream), (Some("claude-sonnet-4-5"), true));

    let resp = client
        .post(format!("{}/ak/{key}/v1/messages", h.url))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    let resp = client.get(format!("{}/nope", h.url)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("x-ccp-request-id").is_some());
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["type"], "not_found_error");

    let big = vec![b' '; 33 * 1024 * 1024];
    let resp = h.post(&key, "messages", big, &[]).await;
    assert_eq!(resp.status(), 413);
    let rid = request_id(&resp);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["type"], "request_too_large");
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert_eq!(e.error_class, Some(ErrorClass::PayloadTooLarge));
}

#[actix_web::test]
async fn slow_headers_time_out_and_dead_upstreams_are_502() {
    let fake = FakeAnthropic::start().unwrap();
    let mut settings = proxy_settings("timeout", &fake.url());
    settings.proxy.header_timeout_secs = 1;
    let log = Log::new(&settings).await;
    let url = start_with(settings).await;
    let h = Harness { log, fake, url };
    let (user_id, _, key) = h.log.user_with_key("hal").await;
    let key = key.expose().to_owned();
    h.wait_accepted(&key).await;
    let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let slow = [("x-fake-scenario", "slow_headers"), ("x-fake-delay-ms", "3000")];

    // Failover-eligible but no Bedrock key: a 503 that says what happened.
    let resp = h.post(&key, "messages", body.clone(), &slow).await;
    assert_eq!(resp.status(), 503);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert!(json["error"]["message"].as_str().unwrap().contains("no answer in time"), "{json}");

    // Plan only: the timeout itself.
    h.log.set_routing(user_id, RoutingStrategy::PlanOnly).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = h.post(&key, "messages", body.clone(), &slow).await;
    assert_eq!(resp.status(), 504);
    let rid = request_id(&resp);
    assert_eq!(h.log.wait_request(&rid, Duration::from_secs(5)).await.error_class, Some(ErrorClass::UpstreamTimeout));

    // A dead upstream: 502 for what cannot fail over (count_tokens).
    let dead = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let settings = proxy_settings("dead", &dead);
    let log = Log::new(&settings).await;
    let url = start_with(settings).await;
    let (_, _, key) = log.user_with_key("ian").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/ak/{}/v1/messages/count_tokens", key.expose()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let rid = request_id(&resp);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["error"]["type"], "api_error");
    assert_eq!(
        log.wait_request(&rid, Duration::from_secs(5)).await.error_class,
        Some(ErrorClass::UpstreamConnectError)
    );
}

/// A raw HTTP/1.1 upstream that answers every request with the same bytes, split into small
/// chunked-encoding chunks — to check the proxy returns exactly those bytes — and `extra_head`
/// (header lines, each ending in CRLF) in its head.
async fn raw_upstream(body: Vec<u8>, content_encoding: Option<&'static str>, extra_head: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                let mut got = Vec::new();
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap_or(0));
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nrequest-id: req_raw\r\n");
                if let Some(enc) = content_encoding {
                    head.push_str(&format!("content-encoding: {enc}\r\n"));
                }
                head.push_str(extra_head);
                head.push_str("\r\n");
                sock.write_all(head.as_bytes()).await.unwrap();
                for chunk in body.chunks(37) {
                    sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
                    sock.write_all(chunk).await.unwrap();
                    sock.write_all(b"\r\n").await.unwrap();
                    sock.flush().await.unwrap();
                }
                sock.write_all(b"0\r\n\r\n").await.unwrap();
            });
        }
    });
    format!("http://{addr}")
}

const SSE: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_raw\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-raw\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":101,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":7,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"caf\u{e9} \u{1f600}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

#[actix_web::test]
async fn bytes_come_back_exactly_as_the_upstream_sent_them() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(SSE.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    for (body, encoding) in [(SSE.as_bytes().to_vec(), None), (gz, Some("gzip"))] {
        let upstream = raw_upstream(body.clone(), encoding, "").await;
        let settings = proxy_settings("exact", &upstream);
        let log = Log::new(&settings).await;
        let url = start_with(settings).await;
        let (_, _, key) = log.user_with_key("ivy").await;
        let mut resp;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            resp = reqwest::Client::new()
                .post(format!("{url}/ak/{}/v1/messages", key.expose()))
                .header("content-type", "application/json")
                .header("accept-encoding", "gzip")
                .body(r#"{"model":"claude-raw","stream":true,"max_tokens":5,"messages":[]}"#)
                .send()
                .await
                .unwrap();
            if resp.status() != 401 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers().get("request-id").unwrap(), "req_raw");
        let rid = request_id(&resp);
        assert_eq!(resp.bytes().await.unwrap().to_vec(), body, "bytes changed ({encoding:?})");
        let e = log.wait_request(&rid, Duration::from_secs(5)).await;
        assert_eq!((e.usage.input_tokens, e.usage.output_tokens, e.usage.cache_read_input_tokens), (101, 9, 7));
        assert_eq!(e.response_model.as_deref(), Some("claude-raw"));
    }
}

#[actix_web::test]
async fn metrics_count_requests_by_provider_status_and_error_kind() {
    let h = harness("metrics").await;
    let key = h.key().await;
    let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    h.post(&key, "messages", body.clone(), &[]).await.bytes().await.unwrap();
    h.post("ak_bad", "messages", body, &[]).await.bytes().await.unwrap();
    let text = reqwest::get(format!("{}/metrics", h.url)).await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"ccp_proxy_requests_total{provider="anthropic",status="200",error_kind="none"}"#),
        "{text}"
    );
    assert!(text.contains(r#"error_kind="malformed_access_key""#), "{text}");
    assert!(text.contains("ccp_proxy_request_duration_seconds_bucket"));
    assert!(text.contains("ccp_proxy_ttfb_seconds_bucket"));
    assert!(text.contains("ccp_proxy_in_flight_requests"));
    assert!(text.contains("ccp_proxy_spool_depth_events"));
    // Ready means the shared spend tally's watch has caught up; nothing is waiting to be stored
    // (the requests above cost nothing: model `m` has no price).
    assert!(text.contains("\nccp_proxy_spend_tally_live 1\n"), "{text}");
    assert!(text.contains("\nccp_proxy_spend_totals_unstored 0\n"), "{text}");
    assert!(!text.contains(&key[9..]), "no key in metrics");
}

#[actix_web::test]
async fn a_stalled_client_does_not_block_others() {
    let h = harness("stall").await;
    let key = h.key().await;
    // A client that sends headers announcing a body, then stalls.
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /ak/{key}/v1/messages HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"model\":"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    for _ in 0..5 {
        assert_eq!(h.post(&key, "messages", body.clone(), &[]).await.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "other requests waited for the stalled client");
    drop(stalled);
}

#[actix_web::test]
async fn a_client_that_leaves_before_the_answer_still_gets_one_usage_event() {
    let h = harness("leave").await;
    let key = h.key().await;
    let before = h.log.requests().await.len();
    let body = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let sent = client
        .post(format!("{}/ak/{key}/v1/messages", h.url))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .header("x-fake-scenario", "slow_headers")
        .header("x-fake-delay-ms", "1500")
        .body(body)
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up first");
    // Over HTTP/1 the proxy learns the client left only when it writes the answer; whatever it
    // learns, the request has exactly one usage event.
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.log.requests().await.len() < before + 1 {
        assert!(Instant::now() < deadline, "no usage event for the abandoned request");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.log.requests().await.len(), before + 1, "exactly one event for the abandoned request");
}

/// Every answer is metered: Anthropic is asked only for codings the usage tap reads, and an
/// answer whose usage cannot be read anyway is counted with an error class and a metric — its
/// tokens unknown and its cost null, never zero tokens at $0.
#[actix_web::test]
async fn answers_are_asked_for_in_readable_codings_and_unreadable_usage_is_flagged() {
    let h = harness("codings").await;
    let key = h.key().await;
    let body =
        br#"{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = h
        .post(
            &key,
            "messages",
            body.to_vec(),
            &[("accept-encoding", "compress, gzip;q=0.8, x-custom, *"), ("x-fake-compress", "gzip")],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    resp.bytes().await.unwrap();
    let sent = h.fake.requests();
    let asked = sent.last().unwrap().header("accept-encoding").map(str::to_owned);
    assert_eq!(asked.as_deref(), Some("gzip;q=0.8"));
    let e = h.log.wait_request(&rid, Duration::from_secs(5)).await;
    assert!(e.usage.output_tokens > 0 && e.error_class.is_none(), "{e:?}");

    // An upstream that answers in a coding the tap cannot decode regardless.
    let url = raw_upstream(SSE.as_bytes().to_vec(), Some("compress"), "").await;
    let settings = proxy_settings("codings_raw", &url);
    let log = Log::new(&settings).await;
    let proxy = start_with(settings).await;
    let (_, _, key) = log.user_with_key("ursula").await;
    let key = key.expose().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    let resp = loop {
        let resp = reqwest::Client::new()
            .post(format!("{proxy}/ak/{key}/v1/messages"))
            .header("content-type", "application/json")
            .body(&body[..])
            .send()
            .await
            .unwrap();
        if resp.status() != 401 || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(resp.status(), 200);
    let rid = request_id(&resp);
    resp.bytes().await.unwrap();
    let e = log.wait_request(&rid, Duration::from_secs(5)).await;
    assert_eq!(e.error_class, Some(ErrorClass::UsageUnreadable), "{e:?}");
    assert_eq!(e.cost_usd, None, "unknown, not $0");
    let metrics = reqwest::get(format!("{proxy}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ccp_proxy_unreadable_usage_requests_total 1"), "{metrics}");
}
