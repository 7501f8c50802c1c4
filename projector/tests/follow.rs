//! The stream follower the projector's loops are built on (`ccp_runtime::follow`), used as they
//! use it: in a `select!` that drops a pending `next()` whenever another branch is ready first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ccp_runtime::follow::{Decoded, Follower, Next};
use ccp_schemas::events::Event;
use ccp_schemas::subjects::StreamKind;
use futures_util::StreamExt as _;

/// While its stream cannot be read, a follower waits out its back-off (100 ms, then 200, 400…)
/// between attempts even when every call of `next()` is dropped before it returns: the dropped
/// wait, or attempt, is taken up by the next call rather than skipped by an immediate
/// reconnection (which a busy other branch would turn into a stream of requests to NATS).
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
    // At 0 ms, after 100 and after 200 more (the next would be 400 ms later); fewer when NATS is
    // slow to answer (the back-off starts with the answer), never more: a call dropped before
    // the answer leaves the attempt to the next call. A follower that forgot its back-off tries
    // once per call.
    assert!(calls >= 5, "only {calls} calls in 350 ms: too few to tell");
    assert!((1..=3).contains(&seen), "{seen} attempts to read the stream in {calls} dropped calls over 350 ms");
}

/// A follower whose every call of `next()` is dropped after a single poll (a `select!` whose
/// other branch is always ready) still connects and delivers: the consumer being created is
/// kept in the follower between calls, not started over by each one.
#[tokio::test]
async fn a_follower_polled_once_per_call_still_connects() {
    let settings = ccp_tests::test_settings("follow-one-poll");
    let log = ccp_tests::events::Log::new(&settings).await;
    let user_id = log.create_user("opal").await;
    let client = async_nats::connect(settings.nats.url.as_str()).await.unwrap();
    let mut follower = Follower::new("test", client, &log.ns, StreamKind::Admin);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let delivered = loop {
        // `timeout` polls the call once before it looks at its (zero) time.
        if let Ok(next) = tokio::time::timeout(Duration::ZERO, follower.next()).await {
            break next;
        }
        assert!(tokio::time::Instant::now() < deadline, "never connected with calls dropped after one poll");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let Next::Message(delivery) = delivered else { panic!("the stream's event, not 'caught up'") };
    let Decoded::Apply(envelope) = follower.decode(&delivery) else { panic!("a current event") };
    assert!(matches!(envelope.event, Event::UserCreated(u) if u.user_id == user_id));
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
}
