//! Answers: routing, scenario selection, and the Anthropic wire format (JSON messages, SSE
//! events, error bodies, rate-limit headers).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::compress::{compress_all, StreamEncoder};
use super::raw::RawLog;
use super::{Compression, RecordedRequest, Scenario, ScenarioName, Shared, Usage, BODY_LIMIT};

/// The default text answer.
pub const DEFAULT_TEXT: &str = "Hello from fake_anthropic.";

/// What `run echo` (the Claude Code fixtures' prompt) makes the Bash tool print.
pub const TOOL_RAN_OK: &str = "TOOL_RAN_OK";

/// The one handler: every method and path.
pub(crate) async fn handle(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let Some(shared) = req.app_data::<web::Data<Shared>>().cloned() else {
        return HttpResponse::InternalServerError().finish();
    };
    let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| req.path().to_owned());
    let body = payload.to_bytes_limited(BODY_LIMIT).await;
    let headers = req
        .conn_data::<RawLog>()
        .and_then(|log| log.take_request(req.method().as_str(), &target))
        .unwrap_or_else(|| {
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect()
        });
    let body = match body {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return error_response(StatusCode::BAD_REQUEST, "invalid_request_error", &e.to_string()),
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            )
        }
    };
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    if let Some(control) = path.strip_prefix("/_fake/") {
        return control_endpoint(&shared, &method, control, &body);
    }
    let incoming = Incoming { method: &method, path: &path, headers: &headers, body: &body };
    let plan = plan(&incoming, &shared);
    shared.record(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: req.query_string().to_owned(),
        headers: headers.clone(),
        body: body.to_vec(),
        status: plan.status.as_u16(),
        usage: plan.usage,
        scenario: plan.scenario.clone(),
        content_encoding: plan.encoding.map(|c| c.token().to_owned()),
    });
    if !plan.delay.is_zero() {
        actix_rt::time::sleep(plan.delay).await;
    }
    plan.into_response()
}

fn control_endpoint(shared: &Shared, method: &str, what: &str, body: &[u8]) -> HttpResponse {
    match (method, what) {
        ("POST", "enqueue") => {
            let parsed: Result<Vec<Scenario>, _> = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(items)) => items.into_iter().map(serde_json::from_value).collect(),
                Ok(one) => serde_json::from_value(one).map(|s| vec![s]),
                Err(e) => Err(e),
            };
            match parsed {
                Ok(list) => {
                    let mut queued = 0;
                    for s in list {
                        queued = shared.enqueue(s);
                    }
                    json_response(StatusCode::OK, &serde_json::json!({ "queued": queued }))
                }
                Err(e) => {
                    error_response(StatusCode::BAD_REQUEST, "invalid_request_error", &format!("not a scenario: {e}"))
                }
            }
        }
        ("GET", "requests") => {
            #[derive(Serialize)]
            struct View<'a> {
                #[serde(flatten)]
                request: &'a RecordedRequest,
                body_json: Option<Value>,
            }
            let requests = shared.requests();
            let views: Vec<View<'_>> = requests.iter().map(|r| View { request: r, body_json: r.body_json() }).collect();
            json_response(StatusCode::OK, &views)
        }
        ("POST", "reset") => {
            shared.reset();
            json_response(StatusCode::OK, &serde_json::json!({ "ok": true }))
        }
        _ => error_response(StatusCode::NOT_FOUND, "not_found_error", "Not found"),
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    HttpResponse::build(status).content_type("application/json").body(serde_json::to_vec(value).unwrap_or_default())
}

/// An error answered outside of a plan (body unreadable).
fn error_response(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    let rid = request_id();
    HttpResponse::build(status)
        .content_type("application/json")
        .insert_header(("request-id", rid.clone()))
        .body(error_body(kind, message, &rid))
}

struct Incoming<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
}

impl Incoming<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn authorized(&self) -> bool {
        let key = self.header("x-api-key").is_some_and(|v| !v.trim().is_empty());
        let bearer = self.header("authorization").is_some_and(|v| {
            v.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("bearer ")) && !v[7..].trim().is_empty()
        });
        key || bearer
    }

    /// The encodings the client accepts (q=0 excluded).
    fn accepts(&self, c: Compression) -> bool {
        self.header("accept-encoding").is_some_and(|v| {
            v.split(',').any(|item| {
                let mut parts = item.split(';');
                let token = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| {
                    p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
                });
                token.eq_ignore_ascii_case(c.token()) && !refused
            })
        })
    }
}

/// What to answer.
struct Plan {
    status: StatusCode,
    headers: Vec<(String, String)>,
    content_type: &'static str,
    /// Body pieces: SSE events, or the one JSON body.
    parts: Vec<Vec<u8>>,
    /// Send chunked, piece by piece (SSE), rather than with a length.
    streaming: bool,
    /// Drop the connection after the pieces.
    cut: bool,
    usage: Option<Usage>,
    scenario: Option<Scenario>,
    delay: Duration,
    pace: Duration,
    encoding: Option<Compression>,
}

impl Plan {
    fn json(status: StatusCode, rid: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("request-id".into(), rid.to_owned())],
            content_type: "application/json",
            parts: vec![body],
            streaming: false,
            cut: false,
            usage: None,
            scenario: None,
            delay: Duration::ZERO,
            pace: Duration::ZERO,
            encoding: None,
        }
    }

    fn error(status: StatusCode, rid: &str, kind: &str, message: &str) -> Self {
        Self::json(status, rid, error_body(kind, message, rid))
    }

    fn into_response(self) -> HttpResponse {
        let mut b = HttpResponse::build(self.status);
        b.content_type(self.content_type);
        for (n, v) in &self.headers {
            b.append_header((n.as_str(), v.as_str()));
        }
        if let Some(c) = self.encoding {
            b.insert_header(("content-encoding", c.token()));
        }
        if !self.streaming && !self.cut {
            let body = self.parts.concat();
            let body = match self.encoding {
                Some(c) => match compress_all(c, &body) {
                    Ok(z) => z,
                    Err(e) => {
                        return error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "api_error",
                            &format!("compression failed: {e}"),
                        )
                    }
                },
                None => body,
            };
            return b.body(body);
        }
        if self.streaming {
            b.insert_header(("cache-control", "no-cache"));
        }
        let state = StreamState {
            parts: self.parts.into(),
            first: true,
            pace: self.pace,
            encoder: self.encoding.map(StreamEncoder::new),
            cut: self.cut,
            done: false,
        };
        b.streaming(futures_util::stream::unfold(state, next_piece))
    }
}

struct StreamState {
    parts: VecDeque<Vec<u8>>,
    first: bool,
    pace: Duration,
    encoder: Option<StreamEncoder>,
    cut: bool,
    done: bool,
}

/// The next non-empty piece of a streamed body (an empty chunk would end a chunked body).
async fn next_piece(mut st: StreamState) -> Option<(io::Result<Bytes>, StreamState)> {
    while !st.done {
        if let Some(part) = st.parts.pop_front() {
            if !st.first && !st.pace.is_zero() {
                actix_rt::time::sleep(st.pace).await;
            }
            st.first = false;
            let out = match st.encoder.as_mut() {
                Some(e) => e.chunk(&part),
                None => Ok(part),
            };
            match out {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Some((Ok(Bytes::from(bytes)), st)),
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
        }
        st.done = true;
        if st.cut {
            // Let what was sent reach the client before the connection drops.
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            return Some((Err(io::Error::new(io::ErrorKind::ConnectionAborted, "fake_anthropic: cut_stream")), st));
        }
        if let Some(e) = st.encoder.take() {
            match e.finish() {
                Ok(bytes) if bytes.is_empty() => return None,
                Ok(bytes) => return Some((Ok(Bytes::from(bytes)), st)),
                Err(e) => return Some((Err(e), st)),
            }
        }
    }
    None
}

fn plan(inc: &Incoming<'_>, shared: &Shared) -> Plan {
    let rid = request_id();
    let params = match HeaderParams::parse(inc) {
        Ok(p) => p,
        Err(msg) => return Plan::error(StatusCode::BAD_REQUEST, &rid, "invalid_request_error", &msg),
    };
    let mut plan = match (inc.method, inc.path) {
        ("POST", "/v1/messages") => messages(inc, shared, &params, &rid),
        ("POST", "/v1/messages/count_tokens") => count_tokens(inc, &params, &rid),
        ("GET", "/v1/models") => models(inc, &rid),
        _ => Plan::error(StatusCode::NOT_FOUND, &rid, "not_found_error", "Not found"),
    };
    let compress = plan.scenario.as_ref().and_then(|s| s.compress).or(params.overrides.compress);
    plan.encoding = compress.filter(|c| inc.accepts(*c));
    plan
}

/// The `x-fake-*` request headers.
struct HeaderParams {
    name: Option<ScenarioName>,
    overrides: Scenario,
}

impl HeaderParams {
    fn parse(inc: &Incoming<'_>) -> Result<Self, String> {
        fn num<T: std::str::FromStr>(inc: &Incoming<'_>, name: &str) -> Result<Option<T>, String>
        where
            T::Err: std::fmt::Display,
        {
            inc.header(name).map(|v| v.trim().parse().map_err(|e| format!("header {name}: {e}"))).transpose()
        }
        let name = inc
            .header("x-fake-scenario")
            .map(str::parse::<ScenarioName>)
            .transpose()
            .map_err(|e| format!("header x-fake-scenario: {e}"))?;
        let tool_input = inc
            .header("x-fake-tool-input")
            .map(serde_json::from_str::<Value>)
            .transpose()
            .map_err(|e| format!("header x-fake-tool-input: {e}"))?;
        let overrides = Scenario {
            name: name.unwrap_or_default(),
            text: inc.header("x-fake-text").map(str::to_owned),
            tool_name: inc.header("x-fake-tool-name").map(str::to_owned),
            tool_input,
            retry_after: inc.header("x-fake-retry-after").map(|v| v.trim().to_owned()),
            events: num(inc, "x-fake-events")?,
            delay_ms: num(inc, "x-fake-delay-ms")?,
            pace_ms: num(inc, "x-fake-pace-ms")?,
            usage: num(inc, "x-fake-usage")?,
            compress: num(inc, "x-fake-compress")?,
            model: inc.header("x-fake-model").map(str::to_owned),
            headers: inc
                .header("x-fake-headers")
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| format!("header x-fake-headers: {e}"))?,
        };
        Ok(Self { name, overrides })
    }

    /// `base` with the fields these headers set.
    fn apply(&self, mut base: Scenario) -> Scenario {
        let o = &self.overrides;
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { base.$f = o.$f.clone(); } )* };
        }
        take!(text, tool_name, tool_input, retry_after, events, delay_ms, pace_ms, usage, compress, model, headers);
        base
    }
}

fn messages(inc: &Incoming<'_>, shared: &Shared, params: &HeaderParams, rid: &str) -> Plan {
    if !inc.authorized() {
        return Plan::error(StatusCode::UNAUTHORIZED, rid, "authentication_error", "x-api-key header is required");
    }
    let request: Value = match serde_json::from_slice(inc.body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Plan::error(
                StatusCode::BAD_REQUEST,
                rid,
                "invalid_request_error",
                "The request body must be a JSON object.",
            )
        }
        Err(e) => {
            return Plan::error(
                StatusCode::BAD_REQUEST,
                rid,
                "invalid_request_error",
                &format!("The request body is not valid JSON: {e}"),
            )
        }
    };
    let base = match params.name {
        Some(name) => Scenario::new(name),
        None => shared.next_queued().unwrap_or_default(),
    };
    let scenario = params.apply(base);
    let mut plan = answer(inc, &request, &scenario, rid);
    plan.delay = Duration::from_millis(scenario.delay_ms.unwrap_or(if scenario.name == ScenarioName::SlowHeaders {
        1000
    } else {
        0
    }));
    plan.pace = Duration::from_millis(scenario.pace_ms.unwrap_or(0));
    for (name, value) in scenario.headers.iter().flatten() {
        plan.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        plan.headers.push((name.clone(), value.clone()));
    }
    plan.scenario = Some(scenario);
    plan
}

/// Default input tokens of a request body.
pub(crate) fn input_tokens(body: &[u8]) -> u64 {
    u64::try_from(body.len() / 100 + 1).unwrap_or(u64::MAX)
}

fn answer(inc: &Incoming<'_>, request: &Value, s: &Scenario, rid: &str) -> Plan {
    let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
    if let Some(plan) = error_scenario(s, rid) {
        return plan;
    }
    if s.name == ScenarioName::StreamError && !stream {
        return with_limits(
            Plan::error(
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                rid,
                "overloaded_error",
                "Overloaded",
            ),
            0,
            0,
            None,
        );
    }
    let model = s
        .model
        .clone()
        .or_else(|| request.get("model").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "claude-fake".to_owned());
    let content = decide_content(s, request);
    let usage = s.usage.unwrap_or_else(|| Usage {
        input_tokens: input_tokens(inc.body),
        output_tokens: words(&content.answer_text()) + 1,
        ..Usage::default()
    });
    let msg_id = format!("msg_{}", ulid::Ulid::new());
    let start_usage = Usage { output_tokens: 1, ..usage };
    let mut plan = if stream {
        let events = sse_events(&msg_id, &model, &content, &usage);
        let (events, cut, sent_usage) = match s.name {
            ScenarioName::CutStream => {
                let n = s.events.unwrap_or(3).min(events.len());
                let names: Vec<&str> = events.iter().take(n).map(|e| e.0).collect();
                let sent = if names.contains(&"message_delta") {
                    Some(usage)
                } else if names.contains(&"message_start") {
                    Some(start_usage)
                } else {
                    None
                };
                (events.into_iter().take(n).collect(), true, sent)
            }
            ScenarioName::StreamError => {
                let mut out: Vec<(&str, String)> = events.into_iter().filter(|e| e.0 != "ping").take(3).collect();
                out.push((
                    "error",
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.to_owned(),
                ));
                (out, false, Some(start_usage))
            }
            _ => (events, false, Some(usage)),
        };
        Plan {
            status: StatusCode::OK,
            headers: vec![("request-id".into(), rid.to_owned())],
            content_type: "text/event-stream; charset=utf-8",
            parts: events
                .into_iter()
                .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n").into_bytes())
                .collect(),
            streaming: true,
            cut,
            usage: sent_usage,
            scenario: None,
            delay: Duration::ZERO,
            pace: Duration::ZERO,
            encoding: None,
        }
    } else {
        let body = serde_json::to_vec(&WireMessage {
            id: &msg_id,
            kind: "message",
            role: "assistant",
            model: &model,
            content: vec![content.block()],
            stop_reason: Some(content.stop_reason()),
            stop_sequence: None,
            usage: WireUsage::new(&usage),
        })
        .unwrap_or_default();
        let mut plan = Plan::json(StatusCode::OK, rid, body);
        plan.usage = Some(usage);
        if s.name == ScenarioName::CutStream {
            let half = plan.parts.concat();
            let (head, _) = half.split_at(half.len() / 2);
            plan.parts = vec![head.to_vec()];
            plan.cut = true;
            plan.usage = None;
        }
        plan
    };
    plan = with_limits(plan, usage.input_tokens, usage.output_tokens, None);
    plan
}

/// The plan of the scenarios that answer an error whatever the request.
fn error_scenario(s: &Scenario, rid: &str) -> Option<Plan> {
    let now = chrono::Utc::now().timestamp();
    match s.name {
        ScenarioName::RateLimit => {
            let retry = s.retry_after.clone().unwrap_or_else(|| "7".to_owned());
            let secs = retry.parse::<u64>().unwrap_or(7);
            let mut plan = with_limits(
                Plan::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    rid,
                    "rate_limit_error",
                    "This request would exceed your organization's rate limit of 4,000 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the request rate or try again later.",
                ),
                0,
                0,
                Some(secs),
            );
            plan.headers.push(("retry-after".into(), retry));
            plan.headers.push(("x-should-retry".into(), "true".into()));
            Some(plan)
        }
        ScenarioName::Overloaded => {
            let mut plan = with_limits(
                Plan::error(
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    rid,
                    "overloaded_error",
                    "Overloaded",
                ),
                0,
                0,
                None,
            );
            plan.headers.push(("x-should-retry".into(), "true".into()));
            Some(plan)
        }
        ScenarioName::ServerError => {
            let mut plan = with_limits(
                Plan::error(StatusCode::INTERNAL_SERVER_ERROR, rid, "api_error", "Internal server error"),
                0,
                0,
                None,
            );
            plan.headers.push(("x-should-retry".into(), "true".into()));
            Some(plan)
        }
        ScenarioName::UsageLimit => {
            // Subscription windows reset on the hour.
            let reset = (now / 3600 + 1) * 3600;
            let retry = s.retry_after.clone().unwrap_or_else(|| (reset - now).max(1).to_string());
            let mut plan = Plan::error(
                StatusCode::TOO_MANY_REQUESTS,
                rid,
                "rate_limit_error",
                &format!("Claude AI usage limit reached|{reset}"),
            );
            let reset = reset.to_string();
            for (n, v) in [
                ("anthropic-ratelimit-unified-status", "rejected"),
                ("anthropic-ratelimit-unified-reset", reset.as_str()),
                ("anthropic-ratelimit-unified-representative-claim", "five_hour"),
                ("anthropic-ratelimit-unified-fallback-percentage", "0.5"),
                ("anthropic-ratelimit-unified-5h-status", "rejected"),
                ("anthropic-ratelimit-unified-5h-reset", reset.as_str()),
                ("anthropic-ratelimit-unified-5h-utilization", "1.0"),
                ("anthropic-ratelimit-unified-7d-status", "allowed"),
                ("anthropic-ratelimit-unified-7d-utilization", "0.42"),
                ("anthropic-ratelimit-unified-overage-status", "rejected"),
                ("anthropic-ratelimit-unified-overage-disabled-reason", "org_level_disabled"),
                ("retry-after", retry.as_str()),
            ] {
                plan.headers.push((n.into(), v.into()));
            }
            Some(plan)
        }
        _ => None,
    }
}

/// Adds the `anthropic-ratelimit-*` headers of an answer that used `input` and `output`
/// tokens; `limited` is the number of seconds of a rate limit that was hit.
fn with_limits(mut plan: Plan, input: u64, output: u64, limited: Option<u64>) -> Plan {
    const REQUESTS: u64 = 4_000;
    const INPUT: u64 = 2_000_000;
    const OUTPUT: u64 = 400_000;
    let now = chrono::Utc::now();
    let reset_in = |secs: u64| {
        (now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(60)))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (req_left, in_left, out_left, reset) = match limited {
        Some(secs) => (0, INPUT, OUTPUT, reset_in(secs.max(1))),
        None => (REQUESTS - 1, INPUT.saturating_sub(input), OUTPUT.saturating_sub(output), reset_in(1)),
    };
    for (n, v) in [
        ("anthropic-ratelimit-requests-limit", REQUESTS.to_string()),
        ("anthropic-ratelimit-requests-remaining", req_left.to_string()),
        ("anthropic-ratelimit-requests-reset", reset.clone()),
        ("anthropic-ratelimit-input-tokens-limit", INPUT.to_string()),
        ("anthropic-ratelimit-input-tokens-remaining", in_left.to_string()),
        ("anthropic-ratelimit-input-tokens-reset", reset.clone()),
        ("anthropic-ratelimit-output-tokens-limit", OUTPUT.to_string()),
        ("anthropic-ratelimit-output-tokens-remaining", out_left.to_string()),
        ("anthropic-ratelimit-output-tokens-reset", reset.clone()),
        ("anthropic-ratelimit-tokens-limit", (INPUT + OUTPUT).to_string()),
        ("anthropic-ratelimit-tokens-remaining", (in_left + out_left).to_string()),
        ("anthropic-ratelimit-tokens-reset", reset.clone()),
        ("anthropic-organization-id", "0f0e0d0c-0b0a-4908-8706-050403020100".to_owned()),
    ] {
        plan.headers.push((n.into(), v));
    }
    plan
}

fn count_tokens(inc: &Incoming<'_>, params: &HeaderParams, rid: &str) -> Plan {
    if !inc.authorized() {
        return Plan::error(StatusCode::UNAUTHORIZED, rid, "authentication_error", "x-api-key header is required");
    }
    if let Err(e) = serde_json::from_slice::<Value>(inc.body) {
        return Plan::error(
            StatusCode::BAD_REQUEST,
            rid,
            "invalid_request_error",
            &format!("The request body is not valid JSON: {e}"),
        );
    }
    let scenario = params.name.map(|n| params.apply(Scenario::new(n)));
    let mut plan = match scenario.as_ref().and_then(|s| error_scenario(s, rid)) {
        Some(p) => p,
        None => {
            let n = input_tokens(inc.body);
            let mut p = Plan::json(StatusCode::OK, rid, format!("{{\"input_tokens\":{n}}}").into_bytes());
            p.usage = Some(Usage { input_tokens: n, ..Usage::default() });
            p
        }
    };
    if let Some(s) = &scenario {
        plan.delay =
            Duration::from_millis(s.delay_ms.unwrap_or(if s.name == ScenarioName::SlowHeaders { 1000 } else { 0 }));
    }
    plan.scenario = scenario;
    plan
}

fn models(inc: &Incoming<'_>, rid: &str) -> Plan {
    if !inc.authorized() {
        return Plan::error(StatusCode::UNAUTHORIZED, rid, "authentication_error", "x-api-key header is required");
    }
    #[derive(Serialize)]
    struct Model {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'static str,
        display_name: &'static str,
        created_at: &'static str,
    }
    #[derive(Serialize)]
    struct List {
        data: Vec<Model>,
        has_more: bool,
        first_id: &'static str,
        last_id: &'static str,
    }
    let data = vec![
        Model {
            kind: "model",
            id: "claude-opus-5-5",
            display_name: "Claude Opus 5.5",
            created_at: "2026-06-01T00:00:00Z",
        },
        Model {
            kind: "model",
            id: "claude-sonnet-5-5",
            display_name: "Claude Sonnet 5.5",
            created_at: "2026-06-01T00:00:00Z",
        },
        Model {
            kind: "model",
            id: "claude-haiku-5-5",
            display_name: "Claude Haiku 5.5",
            created_at: "2026-06-01T00:00:00Z",
        },
    ];
    let list = List { data, has_more: false, first_id: "claude-opus-5-5", last_id: "claude-haiku-5-5" };
    Plan::json(StatusCode::OK, rid, serde_json::to_vec(&list).unwrap_or_default())
}

/// The content of a successful answer.
enum Content {
    Text(String),
    ToolUse { id: String, name: String, input: Value },
}

impl Content {
    fn stop_reason(&self) -> &'static str {
        match self {
            Self::Text(_) => "end_turn",
            Self::ToolUse { .. } => "tool_use",
        }
    }

    /// The text whose words count as output tokens.
    fn answer_text(&self) -> String {
        match self {
            Self::Text(t) => t.clone(),
            Self::ToolUse { input, .. } => input.to_string(),
        }
    }

    fn block(&self) -> Block<'_> {
        match self {
            Self::Text(text) => Block::Text { text },
            Self::ToolUse { id, name, input } => Block::ToolUse { id, name, input },
        }
    }
}

pub(crate) fn words(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

fn decide_content(s: &Scenario, request: &Value) -> Content {
    let last_user = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|msgs| msgs.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")));
    let tool_use = |command: Option<String>| Content::ToolUse {
        id: format!("toolu_{}", ulid::Ulid::new()),
        name: s.tool_name.clone().unwrap_or_else(|| "Bash".to_owned()),
        input: s.tool_input.clone().unwrap_or_else(|| {
            serde_json::json!({
                "command": command.unwrap_or_else(|| "echo hello".to_owned()),
                "description": "Run the command",
            })
        }),
    };
    match s.name {
        ScenarioName::ToolUse => return tool_use(last_user.and_then(run_command)),
        ScenarioName::Text => {
            if let Some(t) = &s.text {
                return Content::Text(t.clone());
            }
        }
        _ => {
            if let Some(t) = &s.text {
                return Content::Text(t.clone());
            }
            if s.tool_name.is_some() || s.tool_input.is_some() {
                return tool_use(last_user.and_then(run_command));
            }
        }
    }
    if let Some(result) = last_user.and_then(tool_result_text) {
        return Content::Text(format!("Tool said: {result}"));
    }
    if s.name != ScenarioName::Text && offers_bash(request) {
        if let Some(command) = last_user.and_then(run_command) {
            return tool_use(Some(command));
        }
    }
    Content::Text(DEFAULT_TEXT.to_owned())
}

pub(crate) fn offers_bash(request: &Value) -> bool {
    request
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|tools| tools.iter().any(|t| t.get("name").and_then(Value::as_str) == Some("Bash")))
}

/// The text of a message's content (a string, or its text blocks).
pub(crate) fn texts(message: &Value) -> Vec<&str> {
    match message.get("content") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    }
}

/// The command of a `run: <command>` line (or of the fixtures' `run echo`).
pub(crate) fn run_command(message: &Value) -> Option<String> {
    texts(message).into_iter().flat_map(str::lines).find_map(|line| {
        let line = line.trim();
        if let Some(cmd) = line.strip_prefix("run:") {
            let cmd = cmd.trim();
            return (!cmd.is_empty()).then(|| cmd.to_owned());
        }
        (line == "run echo").then(|| format!("echo {TOOL_RAN_OK}"))
    })
}

/// The text of the `tool_result` blocks of a message, trimmed; `None` without any.
pub(crate) fn tool_result_text(message: &Value) -> Option<String> {
    let blocks = message.get("content")?.as_array()?;
    let results: Vec<&Value> =
        blocks.iter().filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result")).collect();
    if results.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for r in results {
        match r.get("content") {
            Some(Value::String(s)) => parts.push(s.clone()),
            Some(Value::Array(inner)) => {
                parts.extend(inner.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).map(str::to_owned))
            }
            _ => {}
        }
    }
    Some(parts.join("\n").trim().to_owned())
}

// ---- wire format ----

/// A new `req_…` id.
fn request_id() -> String {
    format!("req_{}", ulid::Ulid::new())
}

fn error_body(kind: &str, message: &str, rid: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Inner<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Outer<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: Inner<'a>,
        request_id: &'a str,
    }
    serde_json::to_vec(&Outer { kind: "error", error: Inner { kind, message }, request_id: rid }).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: &'a Value },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

#[derive(Serialize)]
struct WireUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

impl WireUsage {
    fn new(u: &Usage) -> Self {
        Self {
            input_tokens: u.input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: u.cache_creation_input_tokens,
                ephemeral_1h_input_tokens: 0,
            },
            output_tokens: u.output_tokens,
            service_tier: "standard",
        }
    }
}

#[derive(Serialize)]
struct DeltaUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: WireUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart { message: WireMessage<'a> },
    ContentBlockStart { index: usize, content_block: Block<'a> },
    ContentBlockDelta { index: usize, delta: Delta<'a> },
    ContentBlockStop { index: usize },
    MessageDelta { delta: StopDelta, usage: DeltaUsage },
    MessageStop,
}

/// The SSE events (name, data) of a complete streamed answer.
fn sse_events(id: &str, model: &str, content: &Content, usage: &Usage) -> Vec<(&'static str, String)> {
    let ser = |e: &Event<'_>| serde_json::to_string(e).unwrap_or_default();
    let mut out = Vec::new();
    out.push((
        "message_start",
        ser(&Event::MessageStart {
            message: WireMessage {
                id,
                kind: "message",
                role: "assistant",
                model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: WireUsage::new(&Usage { output_tokens: 1, ..*usage }),
            },
        }),
    ));
    let empty = Value::Object(serde_json::Map::new());
    let (start, pieces): (Block<'_>, Vec<String>) = match content {
        Content::Text(text) => (Block::Text { text: "" }, text_pieces(text)),
        Content::ToolUse { id, name, input } => {
            (Block::ToolUse { id, name, input: &empty }, json_pieces(&input.to_string()))
        }
    };
    out.push(("content_block_start", ser(&Event::ContentBlockStart { index: 0, content_block: start })));
    out.push(("ping", r#"{"type": "ping"}"#.to_owned()));
    for piece in &pieces {
        let delta = match content {
            Content::Text(_) => Delta::TextDelta { text: piece },
            Content::ToolUse { .. } => Delta::InputJsonDelta { partial_json: piece },
        };
        out.push(("content_block_delta", ser(&Event::ContentBlockDelta { index: 0, delta })));
    }
    out.push(("content_block_stop", ser(&Event::ContentBlockStop { index: 0 })));
    out.push((
        "message_delta",
        ser(&Event::MessageDelta {
            delta: StopDelta { stop_reason: content.stop_reason(), stop_sequence: None },
            usage: DeltaUsage {
                input_tokens: usage.input_tokens,
                cache_creation_input_tokens: usage.cache_creation_input_tokens,
                cache_read_input_tokens: usage.cache_read_input_tokens,
                output_tokens: usage.output_tokens,
            },
        }),
    ));
    out.push(("message_stop", ser(&Event::MessageStop)));
    out
}

/// A text cut into deltas of whole words (at most 20 deltas).
pub(crate) fn text_pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let per = words.len().div_ceil(20).max(1);
    words.chunks(per).map(|c| c.concat()).collect()
}

/// Tool input JSON cut into deltas the way the API does: an empty one, then up to 4 pieces.
pub(crate) fn json_pieces(json: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let chars: Vec<char> = json.chars().collect();
    let per = chars.len().div_ceil(4).max(1);
    out.extend(chars.chunks(per).map(|c| c.iter().collect::<String>()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lines() {
        let m = serde_json::json!({"role": "user", "content": "hi\n  run: ls -la \nbye"});
        assert_eq!(run_command(&m).as_deref(), Some("ls -la"));
        let m = serde_json::json!({"role": "user", "content": [{"type": "text", "text": "run echo"}]});
        assert_eq!(run_command(&m).as_deref(), Some("echo TOOL_RAN_OK"));
        let m = serde_json::json!({"role": "user", "content": "run the tests"});
        assert_eq!(run_command(&m), None);
    }

    #[test]
    fn pieces() {
        assert_eq!(text_pieces("Hello from fake_anthropic."), vec!["Hello ", "from ", "fake_anthropic."]);
        let p = json_pieces(r#"{"command":"ls"}"#);
        assert_eq!(p[0], "");
        assert_eq!(p.concat(), r#"{"command":"ls"}"#);
    }
}
