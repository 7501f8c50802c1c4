//! The stream follower the projector's loops are built on (`ccp_runtime::follow`), used as they
//! use it: in a `select!` that drops a pending `next()` whenever another branch is ready first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ccp_runtime::follow::Follower;
use ccp_schemas::subjects::StreamKind;
use futures_util::StreamExt as _;

/// While its stream cannot be read, a follower waits out its back-off (100 ms, then 200, 400…)
/// between attempts even when every call of `next()` is dropped before it returns: the dropped
/// wait is taken up by the next call rather than skipped by an immediate reconnection (which a
/// busy other branch would turn into a stream of requests to NATS).
#[tokio::test]
async fn a_dropped_next_keeps_the_back_off() {
    let settings = ccp_tests::test_settings("follow-backoff");
    let ns = ccp_tests::namespace(&settings);
    let client = async_nats::connect(settings.nats.url.as_str()).await.unwrap();
    // No stream exists in this namespace: each attempt asks JetStream for its info, and fails.
    let mut attempts = client.subscribe(format!("$JS.API.STREAM.INFO.{}", ns.stream(StreamKind::Admin))).await.unwrap();
    client.flush().await.unwrap();
    let mut follower = Follower::new("test", client.clone(), &ns, StreamKind::Admin);

    // For 350 ms, each call is dropped after 25 ms.
    let started = tokio::time::Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(350) {
        let next = tokio::time::timeout(Duration::from_millis(25), follower.next()).await;
        assert!(next.is_err(), "a stream that does not exist delivers nothing");
        calls += 1;
    }
    let mut seen = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), attempts.next()).await {
        seen += 1;
    }
    // At 0 ms, after 100 and after 200 more (the next would be 400 ms later); one more for each
    // call dropped before NATS answered its attempt (a machine under load), where a follower
    // that forgot its back-off tries once per call.
    assert!(seen >= 2 && seen <= calls / 2, "{seen} attempts to read the stream in {calls} dropped calls over 350 ms");
}
