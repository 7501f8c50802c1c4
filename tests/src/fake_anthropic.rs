//! A fake Anthropic Messages API server that speaks the real wire format, for tests and local
//! runs (the real API is unreachable here).
//!
//! [`FakeAnthropic::start`] runs it on `127.0.0.1` with an ephemeral port on a thread of its
//! own (its own actix System), so it works from `#[tokio::test]` and from plain threads; the
//! `ccp-fake-anthropic` binary runs it as a process. Every request except the control
//! endpoints is recorded ([`RecordedRequest`]: header lines in received order and case, body
//! bytes as received, the usage answered and the scenario used).
//!
//! # Endpoints
//! - `POST /v1/messages` (any query, e.g. `?beta=true`): JSON or SSE (`"stream": true`).
//! - `POST /v1/messages/count_tokens`: `{"input_tokens": N}`.
//! - `GET /v1/models`: a small model list.
//! - anything else: 404 `not_found_error`.
//! - control: `POST /_fake/enqueue` (a [`Scenario`] as JSON, or a list of them),
//!   `GET /_fake/requests` (the recorded requests as JSON, body as `body_base64` and, when it
//!   is JSON, `body_json`), `POST /_fake/reset` (forget requests and queued scenarios).
//!
//! The `/v1/…` endpoints need `x-api-key` or `authorization: Bearer …` (else 401
//! `authentication_error`).
//!
//! # Choosing the answer to `POST /v1/messages`
//! First match wins:
//! 1. header `x-fake-scenario: NAME` ([`ScenarioName`]);
//! 2. the next queued scenario ([`FakeAnthropic::enqueue`], `POST /_fake/enqueue`);
//! 3. the default ([`ScenarioName::Auto`]): when the last user message carries a
//!    `tool_result`, the text `Tool said: <its text, trimmed>`; else when a tool named `Bash`
//!    is offered and the last user message has a line `run: <command>`, a `tool_use` of
//!    `Bash` with input `{"command": "<command>", "description": "Run the command"}` (the
//!    line `run echo` of the Claude Code fixtures means `echo TOOL_RAN_OK`); else the text
//!    `Hello from fake_anthropic.`.
//!
//! Whatever was chosen, these request headers override its fields: `x-fake-text`,
//! `x-fake-tool-name`, `x-fake-tool-input` (JSON), `x-fake-retry-after`, `x-fake-events`,
//! `x-fake-delay-ms`, `x-fake-pace-ms`, `x-fake-usage` (`input,output,cache_read,
//! cache_creation`), `x-fake-compress` (`gzip`, `deflate`, `br`, `zstd`), `x-fake-model` and
//! `x-fake-headers` (a JSON object of extra response headers, e.g. the
//! `anthropic-ratelimit-unified-*` ones of a subscription, replacing the answer's own).
//! `count_tokens` honours `x-fake-scenario` for the error scenarios and the delay, and takes
//! nothing from the queue.

mod compress;
mod raw;
pub(crate) mod respond;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use actix_http::HttpService;
use actix_server::ServerHandle;
use actix_service::{fn_service, map_config, ServiceFactoryExt as _};
use actix_web::dev::AppConfig;
use actix_web::{web, App};
use serde::{Deserialize, Serialize};

pub use respond::{DEFAULT_TEXT, TOOL_RAN_OK};

/// What a scenario does (`x-fake-scenario` names, `name` of [`Scenario`] in JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioName {
    /// The default rules (see the module documentation).
    #[default]
    Auto,
    /// A text answer: `text`, or the default rules' text.
    Text,
    /// A `tool_use` answer: `tool_name` (default `Bash`) with `tool_input` (default: the
    /// `run:` command of the last user message, or `echo hello`).
    ToolUse,
    /// 429 `rate_limit_error` with `retry-after` (`retry_after`, default `7`).
    RateLimit,
    /// 529 `overloaded_error`.
    Overloaded,
    /// 500 `api_error`.
    ServerError,
    /// 429 `rate_limit_error` saying the subscription's usage limit was reached, with the
    /// `anthropic-ratelimit-unified-*` headers of a rejected subscription.
    UsageLimit,
    /// The first `events` SSE events (default 3), then the connection is dropped (a JSON
    /// answer: half its body, then dropped).
    CutStream,
    /// `message_start`, `content_block_start` and one `content_block_delta`, then an
    /// `event: error` with `overloaded_error` and the end of the body (a JSON answer: 529).
    StreamError,
    /// The default answer after `delay_ms` (default 1000) before the headers.
    SlowHeaders,
}

impl ScenarioName {
    /// All names.
    pub const ALL: [ScenarioName; 10] = [
        Self::Auto,
        Self::Text,
        Self::ToolUse,
        Self::RateLimit,
        Self::Overloaded,
        Self::ServerError,
        Self::UsageLimit,
        Self::CutStream,
        Self::StreamError,
        Self::SlowHeaders,
    ];

    /// The wire name (`rate_limit`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Text => "text",
            Self::ToolUse => "tool_use",
            Self::RateLimit => "rate_limit",
            Self::Overloaded => "overloaded",
            Self::ServerError => "server_error",
            Self::UsageLimit => "usage_limit",
            Self::CutStream => "cut_stream",
            Self::StreamError => "stream_error",
            Self::SlowHeaders => "slow_headers",
        }
    }
}

impl FromStr for ScenarioName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|n| n.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown scenario {s:?}"))
    }
}

/// A content encoding of response bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `gzip`
    Gzip,
    /// `deflate` (zlib format, as HTTP means it)
    Deflate,
    /// `br`
    Br,
    /// `zstd`
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Br => "br",
            Self::Zstd => "zstd",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gzip" => Ok(Self::Gzip),
            "deflate" => Ok(Self::Deflate),
            "br" => Ok(Self::Br),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!("unknown compression {other:?}")),
        }
    }
}

/// Token counts of an answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// `input_tokens`
    pub input_tokens: u64,
    /// `output_tokens`
    pub output_tokens: u64,
    /// `cache_read_input_tokens`
    pub cache_read_input_tokens: u64,
    /// `cache_creation_input_tokens`
    pub cache_creation_input_tokens: u64,
}

impl Usage {
    /// A usage of `input`, `output`, `cache_read` and `cache_creation` tokens.
    pub fn new(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Self {
        Self {
            input_tokens: input,
            output_tokens: output,
            cache_read_input_tokens: cache_read,
            cache_creation_input_tokens: cache_creation,
        }
    }
}

impl FromStr for Usage {
    type Err = String;

    /// `input,output,cache_read,cache_creation` (missing trailing numbers are 0).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut n = [0u64; 4];
        let parts: Vec<&str> = s.split(',').collect();
        if parts.len() > 4 {
            return Err(format!("usage {s:?}: at most 4 numbers"));
        }
        for (slot, part) in n.iter_mut().zip(parts) {
            *slot = part.trim().parse().map_err(|e| format!("usage {s:?}: {e}"))?;
        }
        Ok(Self::new(n[0], n[1], n[2], n[3]))
    }
}

/// A scripted answer. Every field is optional in JSON (`{"name": "rate_limit"}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scenario {
    /// What to do.
    pub name: ScenarioName,
    /// Text of a text answer.
    pub text: Option<String>,
    /// Tool of a `tool_use` answer (default `Bash`).
    pub tool_name: Option<String>,
    /// Input of a `tool_use` answer.
    pub tool_input: Option<serde_json::Value>,
    /// `retry-after` of `rate_limit` (default `7`) and `usage_limit` (default: seconds until
    /// the reset).
    pub retry_after: Option<String>,
    /// How many SSE events `cut_stream` sends (default 3).
    pub events: Option<usize>,
    /// Delay before the response headers, in milliseconds (default 1000 for `slow_headers`,
    /// else 0).
    pub delay_ms: Option<u64>,
    /// Delay between SSE events, in milliseconds.
    pub pace_ms: Option<u64>,
    /// Usage to answer with (default: input = body length / 100 + 1, output = words of the
    /// answer + 1, no cache).
    pub usage: Option<Usage>,
    /// Compress the response body (only when the request's `Accept-Encoding` lists it).
    pub compress: Option<Compression>,
    /// Model to answer with (default: the request's).
    pub model: Option<String>,
    /// Extra response headers (e.g. `anthropic-ratelimit-unified-*`), replacing any the answer
    /// would have sent under the same name.
    pub headers: Option<BTreeMap<String, String>>,
}

impl Scenario {
    /// A scenario with defaults for everything but its name.
    pub fn new(name: ScenarioName) -> Self {
        Self { name, ..Self::default() }
    }

    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: Some(text.into()), ..Self::new(ScenarioName::Text) }
    }

    /// A `tool_use` answer calling `tool` with `input`.
    pub fn tool_use(tool: impl Into<String>, input: serde_json::Value) -> Self {
        Self { tool_name: Some(tool.into()), tool_input: Some(input), ..Self::new(ScenarioName::ToolUse) }
    }

    /// With this usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// With this delay between SSE events.
    pub fn with_pace_ms(mut self, ms: u64) -> Self {
        self.pace_ms = Some(ms);
        self
    }

    /// With this delay before the headers.
    pub fn with_delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = Some(ms);
        self
    }

    /// With a compressed body.
    pub fn with_compress(mut self, c: Compression) -> Self {
        self.compress = Some(c);
        self
    }

    /// Answering as `model`.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sending `n` events before a cut.
    pub fn with_events(mut self, n: usize) -> Self {
        self.events = Some(n);
        self
    }

    /// With this `retry-after`.
    pub fn with_retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// With this extra response header (replacing one of the same name).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.get_or_insert_with(BTreeMap::new).insert(name.into().to_ascii_lowercase(), value.into());
        self
    }
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (without `?`), possibly empty.
    pub query: String,
    /// Header lines in received order, names in received case.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    #[serde(rename = "body_base64", with = "base64_bytes")]
    pub body: Vec<u8>,
    /// Status answered.
    pub status: u16,
    /// Usage answered, as far as it was sent (a cut stream: the last usage sent before the
    /// cut, i.e. `message_start`'s with `output_tokens` 1).
    pub usage: Option<Usage>,
    /// Scenario used (`None` for endpoints without one).
    pub scenario: Option<Scenario>,
    /// `Content-Encoding` applied to the answer.
    pub content_encoding: Option<String>,
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// State shared by the server's workers and its owner.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    requests: Vec<RecordedRequest>,
    queue: VecDeque<Scenario>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record(&self, r: RecordedRequest) {
        self.lock().requests.push(r);
    }

    pub(crate) fn next_queued(&self) -> Option<Scenario> {
        self.lock().queue.pop_front()
    }

    pub(crate) fn enqueue(&self, s: Scenario) -> usize {
        let mut st = self.lock();
        st.queue.push_back(s);
        st.queue.len()
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        st.requests.clear();
        st.queue.clear();
    }
}

/// A running fake; dropping it stops the server.
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: Option<ServerHandle>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FakeAnthropic {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub fn start() -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts on `addr`.
    pub fn start_on(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("fake-anthropic".into()).spawn(move || {
            actix_rt::System::new().block_on(async move {
                match build_server(listener, server_shared, false) {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.handle()));
                        server.await
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        Ok(())
                    }
                }
            })
        })?;
        let handle = rx.recv().map_err(|_| io::Error::other("fake_anthropic server thread ended early"))??;
        Ok(Self { addr, shared, handle: Some(handle), thread: Some(thread) })
    }

    /// Runs a fake on `addr` in the current thread until SIGTERM or SIGINT; `on_listening`
    /// is told the bound address once it accepts connections.
    pub fn serve(addr: SocketAddr, on_listening: impl FnOnce(SocketAddr)) -> io::Result<()> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        actix_rt::System::new().block_on(async move {
            let server = build_server(listener, shared, true)?;
            on_listening(local);
            server.await
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far (control endpoints excepted), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Queues a scripted answer for a later `POST /v1/messages` (first in, first out).
    pub fn enqueue(&self, scenario: Scenario) {
        self.shared.enqueue(scenario);
    }

    /// Forgets the recorded requests and the queued scenarios.
    pub fn clear(&self) {
        self.shared.reset();
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            // The stop command is sent when `stop` is called; its future only waits for it.
            drop(handle.stop(false));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Largest request body accepted.
const BODY_LIMIT: usize = 256 * 1024 * 1024;

fn build_server(listener: TcpListener, shared: Arc<Shared>, handle_signals: bool) -> io::Result<actix_server::Server> {
    let mut builder = actix_server::Server::build().workers(1).shutdown_timeout(1);
    if !handle_signals {
        builder = builder.disable_signals();
    }
    let builder = builder.listen("fake-anthropic", listener, move || {
        let data = web::Data::from(Arc::clone(&shared));
        let app = App::new().app_data(data).default_service(web::to(respond::handle));
        let app = actix_service::IntoServiceFactory::into_factory(app).map_err(|err| err.error_response());
        let http = HttpService::build()
            .on_connect_ext(|io: &raw::RecordingIo, ext| {
                ext.insert(io.log());
            })
            .h1(map_config(app, |_| AppConfig::default()));
        fn_service(|io: actix_rt::net::TcpStream| {
            let peer = io.peer_addr().ok();
            std::future::ready(Ok((raw::RecordingIo::new(io), peer)))
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}
