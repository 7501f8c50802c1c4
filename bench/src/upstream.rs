//! A minimal, fast and deterministic Anthropic Messages API stand-in for the benchmark.
//!
//! HTTP/1.1 with keep-alive on raw tokio (no framework), on its own thread with a
//! single-threaded runtime, so its cost per request is small and the same for the direct and
//! the proxied runs. `POST /v1/messages` answers a fixed Server-Sent-Events stream when the
//! body contains `"stream":true` (message_start … 10 text deltas … message_stop, chunked, with
//! Anthropic's response headers), else a fixed JSON message. With `x-bench-pace-ms: N` the SSE
//! events are sent N ms apart (the first one right away), to measure time to first byte. With
//! `x-bench-deltas: N` the answer has N text deltas instead of 10 (the same ten in turn, between
//! the same events), for long streams: with the pace, N × pace ms of tokens. With
//! `x-bench-scenario: rate_limit` it answers what Anthropic answers a rate-limited request: 429
//! `rate_limit_error` JSON with `retry-after` (the proxy then fails over to Bedrock).
//!
//! A second listener on the same thread stands in for Amazon Bedrock Runtime: `POST
//! /model/{modelId}/invoke` answers a fixed Anthropic message as JSON (with the
//! `x-amzn-bedrock-*` headers), `POST /model/{modelId}/invoke-with-response-stream` the same
//! answer as fixed Anthropic streaming events in AWS event-stream framing
//! (`application/vnd.amazon.eventstream`, one `chunk` message per event, payload
//! `{"bytes":"<base64 of the event>"}`, `amazon-bedrock-invocationMetrics` on `message_stop`),
//! framed by `ccp_tests::fake_bedrock::encode_event_stream`. No `Authorization: Bearer`: 403.
//! Every answer is prepared once; nothing is recorded (unlike `ccp_tests::fake_bedrock`, whose
//! actix server records and re-encodes every request). `request` reads a request, `responses`
//! prepares the answers; here, the thread, the connections and which answer a request gets.

mod request;
mod responses;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{Buf as _, BytesMut};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

use self::request::{fill, parse_head, read_chunked, wants_stream, Route, MAX_BODY, MAX_HEAD};
pub use self::responses::{BedrockResponses, Responses};

/// Request header that spaces the SSE events this many milliseconds apart.
pub const PACE_HEADER: &str = "x-bench-pace-ms";
/// Request header asking for a streamed answer with this many text deltas (default: 10).
pub const DELTAS_HEADER: &str = "x-bench-deltas";
/// Request header choosing a failure: `rate_limit` answers 429 `rate_limit_error`.
pub const SCENARIO_HEADER: &str = "x-bench-scenario";

/// The running upstreams (fake Anthropic and fake Bedrock), on one thread.
pub struct Upstream {
    /// Where the fake Anthropic listens.
    pub addr: SocketAddr,
    /// Where the fake Bedrock listens.
    pub bedrock_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Binds 127.0.0.1 on two free ports and serves both on a new thread.
    pub fn start() -> anyhow::Result<Self> {
        let bind = || -> anyhow::Result<(StdListener, SocketAddr)> {
            let listener = StdListener::bind("127.0.0.1:0").context("bind the upstream")?;
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            Ok((listener, addr))
        };
        let (anthropic, addr) = bind()?;
        let (bedrock, bedrock_addr) = bind()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("upstream runtime")?;
        let thread = std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let (Ok(anthropic), Ok(bedrock)) =
                        (TcpListener::from_std(anthropic), TcpListener::from_std(bedrock))
                    else {
                        return;
                    };
                    let responses = std::sync::Arc::new(Responses::new());
                    tokio::select! {
                        () = accept_loop(anthropic, responses.clone()) => {}
                        () = accept_loop(bedrock, responses) => {}
                        _ = stopped => {}
                    }
                });
            })
            .context("upstream thread")?;
        Ok(Self { addr, bedrock_addr, stop: Some(stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT` of the fake Anthropic.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT` of the fake Bedrock (the proxy's `bedrock_endpoint_url`).
    pub fn bedrock_url(&self) -> String {
        format!("http://{}", self.bedrock_addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, responses: std::sync::Arc<Responses>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let responses = responses.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &responses).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
async fn serve(mut stream: TcpStream, responses: &Responses) -> anyhow::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let head = loop {
            if let Some(head) = parse_head(&buf)? {
                break head;
            }
            if buf.len() > MAX_HEAD {
                bail!("request head too large");
            }
            if !fill(&mut stream, &mut buf).await? {
                return Ok(());
            }
        };
        buf.advance(head.len);
        let stream_wanted = if head.chunked {
            let body = read_chunked(&mut stream, &mut buf).await?;
            wants_stream(&body)
        } else {
            let n = head.content_length.unwrap_or(0);
            if n > MAX_BODY {
                bail!("body too large");
            }
            while buf.len() < n {
                if !fill(&mut stream, &mut buf).await? {
                    return Ok(());
                }
            }
            // Only the Messages API says `stream` in the body; Bedrock says it in the path.
            let wanted = head.route == Route::Messages && wants_stream(&buf[..n]);
            buf.advance(n);
            wanted
        };
        // A large body grew the buffer: do not keep that memory for as long as the answer
        // streams (a thousand open streams of 2 MB requests would hold 2 GB).
        if buf.capacity() > 1024 * 1024 {
            buf = BytesMut::from(&buf[..]);
        }
        match head.route {
            Route::Other => stream.write_all(&responses.not_found).await?,
            Route::BedrockInvoke | Route::BedrockStream if !head.bearer => {
                stream.write_all(&responses.bedrock.forbidden).await?;
            }
            Route::BedrockInvoke => stream.write_all(&responses.bedrock.json_whole).await?,
            Route::BedrockStream => stream.write_all(&responses.bedrock.stream_whole).await?,
            Route::Messages if head.rate_limit => stream.write_all(&responses.rate_limited).await?,
            Route::Messages if !stream_wanted => stream.write_all(&responses.json_whole).await?,
            Route::Messages if head.pace_ms == 0 && head.deltas == 0 => {
                stream.write_all(&responses.sse_whole).await?;
            }
            Route::Messages => {
                let pace = Duration::from_millis(head.pace_ms);
                let mut first = BytesMut::from(&responses.sse_head[..]);
                let mut chunks = responses.sse_stream(head.deltas);
                if let Some(c) = chunks.next() {
                    first.extend_from_slice(c);
                }
                stream.write_all(&first).await?;
                for c in chunks {
                    if !pace.is_zero() {
                        tokio::time::sleep(pace).await;
                    }
                    stream.write_all(c).await?;
                }
            }
        }
        if head.close {
            return Ok(());
        }
    }
}
