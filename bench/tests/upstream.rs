#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The benchmark's fake Anthropic over HTTP: a long paced stream (`x-bench-deltas` with
//! `x-bench-pace-ms`, what `ccp-bench-streams` asks for) has the deltas asked for, takes about
//! their time and ends with `message_stop`; without the new header, the answers `ccp-bench`
//! measures are unchanged (ten deltas, at once or paced).

use std::time::{Duration, Instant};

use ccp_bench::upstream::{Responses, Upstream, DELTAS_HEADER, PACE_HEADER};

/// The body of the streamed answer to a request with `headers`, and how long it took.
async fn stream(upstream: &Upstream, headers: &[(&str, &str)]) -> (String, Duration) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client
        .post(format!("{}/v1/messages", upstream.url()))
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-opus-4-1-20250805","max_tokens":8,"messages":[],"stream":true}"#);
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let started = Instant::now();
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
    let body = resp.text().await.unwrap();
    (body, started.elapsed())
}

fn deltas(body: &str) -> usize {
    body.matches("event: content_block_delta\n").count()
}

#[tokio::test]
async fn a_long_paced_stream_has_the_deltas_asked_for_and_ends_with_message_stop() {
    let upstream = Upstream::start().unwrap();
    let responses = Responses::new();
    let (body, took) = stream(&upstream, &[(PACE_HEADER, "5"), (DELTAS_HEADER, "57")]).await;
    assert_eq!(deltas(&body), 57);
    assert_eq!(body.len(), responses.sse_stream_body_len(57));
    assert_eq!(body.matches("\n\n").count(), responses.sse_stream_events(57));
    assert!(body.starts_with("event: message_start\n"), "{body}");
    assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), "{body}");
    // Every event after the first one comes 5 ms after the one before.
    let gaps = responses.sse_stream_events(57) - 1;
    assert!(took >= Duration::from_millis(5 * gaps as u64), "{took:?}");

    // Unpaced, all at once.
    let (body, _) = stream(&upstream, &[(DELTAS_HEADER, "1000")]).await;
    assert_eq!(deltas(&body), 1000);
    assert!(body.ends_with("data: {\"type\":\"message_stop\"}\n\n"));
}

#[tokio::test]
async fn without_the_deltas_header_the_answers_are_the_canned_ones() {
    let upstream = Upstream::start().unwrap();
    let responses = Responses::new();
    let canned = String::from_utf8(responses.sse_stream(0).flat_map(|c| dechunk(c)).collect()).unwrap();
    let (body, _) = stream(&upstream, &[]).await;
    assert_eq!(body, canned);
    assert_eq!(body.len(), responses.sse_body_len);
    assert_eq!(deltas(&body), 10);
    let (body, took) = stream(&upstream, &[(PACE_HEADER, "10")]).await;
    assert_eq!(body, canned);
    assert!(took >= Duration::from_millis(10 * (responses.sse_chunks.len() as u64 - 1)), "{took:?}");
    // `x-bench-deltas: 0` is the canned answer too.
    let (body, _) = stream(&upstream, &[(DELTAS_HEADER, "0")]).await;
    assert_eq!(body, canned);
}

/// The data of an HTTP chunk (and of the terminating one after it, empty).
fn dechunk(c: &[u8]) -> Vec<u8> {
    let httparse::Status::Complete((skip, size)) = httparse::parse_chunk_size(c).unwrap() else {
        panic!("partial chunk")
    };
    c[skip..skip + usize::try_from(size).unwrap()].to_vec()
}
