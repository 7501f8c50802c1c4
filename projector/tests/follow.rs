//! The stream follower the projector's loops are built on (`ccp_runtime::follow`), used as they
//! use it: in a `select!` that drops a pending `next()` whenever another branch is ready first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ccp_runtime::follow::{Decoded, Follower, Next, Start};
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

/// A follower that starts after a snapshot (`Start::After`) and has read nothing yet, whose
/// connection to NATS drops and comes back, resumes after the snapshot: it never hands out the
/// stream again from sequence 1. (async-nats's ordered consumer remakes its consumer after a
/// reconnection from the last message *it* delivered, and from the stream's start when it has
/// delivered none: the proxy's key table, started after its snapshot, would apply a key's issue
/// again after its revocation.)
#[tokio::test]
async fn a_reconnection_before_the_first_message_does_not_replay_the_stream() {
    follow_across_a_reconnection("follow-reconnect", |_| Start::After(2)).await;
}

/// The same for a follower that starts at a time (the proxy's month-to-date budget read on the
/// first day of a month): a reconnection must not count last month's requests in this one's.
#[tokio::test]
async fn a_reconnection_before_the_first_message_since_a_time_does_not_replay_the_stream() {
    follow_across_a_reconnection("follow-reconnect-since", |appended| {
        // A consumer's start time is in whole seconds: start in the second after the appends.
        let at = appended + chrono::Duration::seconds(1);
        let at = at - chrono::Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
        std::thread::sleep((at - chrono::Utc::now()).to_std().unwrap_or_default());
        Start::Since(at)
    })
    .await;
}

/// Two events, then a follower started at `start` (given when they were appended) that has
/// nothing to read; its connection is cut for 500 ms; then a third event, which must be the
/// first thing it hands out.
async fn follow_across_a_reconnection(name: &str, start: impl FnOnce(chrono::DateTime<chrono::Utc>) -> Start) {
    let settings = ccp_tests::test_settings(name);
    let log = ccp_tests::events::Log::new(&settings).await;
    log.create_user("amber").await;
    log.create_user("beryl").await;
    let start = start(chrono::Utc::now());
    let (link, client) = linked(&settings).await;
    let mut follower = Follower::new("test", client.clone(), &log.ns, StreamKind::Admin).start(start);
    let next = tokio::time::timeout(Duration::from_secs(5), follower.next()).await.expect("connects");
    assert!(matches!(next, Next::CaughtUp), "nothing to read at {start:?} yet");

    // The connection drops and stays down for 500 ms while the follower waits for a message,
    // then it is polled for a second more.
    link.cut();
    let mended = tokio::time::Instant::now() + Duration::from_millis(500);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut reconnected = false;
    while !reconnected || tokio::time::Instant::now() < mended + Duration::from_secs(1) {
        if tokio::time::Instant::now() >= mended {
            link.mend();
        }
        if let Ok(Next::Message(delivery)) = tokio::time::timeout(Duration::from_millis(50), follower.next()).await {
            panic!("sequence {} handed out again after a reconnection", delivery.seq);
        }
        reconnected = tokio::time::Instant::now() >= mended
            && client.connection_state() == async_nats::connection::State::Connected;
        assert!(tokio::time::Instant::now() < deadline, "never reconnected");
    }

    the_next_is_a_new_user(&mut follower, &log, Duration::from_secs(10)).await;
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
}

/// A link to the test NATS server (its first URL) and a client connected through it.
async fn linked(settings: &ccp_runtime::config::Settings) -> (ccp_tests::link::Link, async_nats::Client) {
    let first = settings.nats.url.split(',').next().unwrap().trim();
    let link = ccp_tests::link::Link::to(first.trim_start_matches("nats://")).await;
    let client = async_nats::connect(link.nats_url()).await.unwrap();
    (link, client)
}

/// An idle follower whose connection drops again and again (each drop a failure: its consumer
/// is remade from the stream's start and refused) reconnects each time after the first
/// back-off, not after one that doubles with every drop: each connection (a second) had lasted
/// longer than the back-off. (A revocation reaches the proxy's key table no later after the fifth
/// network blip than after the first.)
#[tokio::test]
async fn an_idle_follower_whose_connection_keeps_dropping_reconnects_promptly() {
    let settings = ccp_tests::test_settings("follow-drops");
    let log = ccp_tests::events::Log::new(&settings).await;
    log.create_user("amber").await;
    log.create_user("beryl").await;
    let (link, client) = linked(&settings).await;
    // The follower's own connections (each asks for the stream's info; remakes by the ordered
    // consumer do not), seen from a client beside it.
    let watcher = async_nats::connect(settings.nats.url.as_str()).await.unwrap();
    let mut connects =
        watcher.subscribe(format!("$JS.API.STREAM.INFO.{}", log.ns.stream(StreamKind::Admin))).await.unwrap();
    watcher.flush().await.unwrap();
    let mut follower = Follower::new("test", client.clone(), &log.ns, StreamKind::Admin).start(Start::After(2));
    let next = tokio::time::timeout(Duration::from_secs(5), follower.next()).await.expect("connects");
    assert!(matches!(next, Next::CaughtUp));

    let mut gaps = Vec::new();
    for _ in 0..5 {
        while tokio::time::timeout(Duration::from_millis(50), connects.next()).await.is_ok() {}
        // Down for 200 ms; then, from the moment the client is connected again, how long until
        // the follower connects again.
        link.cut();
        let mend = tokio::time::Instant::now() + Duration::from_millis(200);
        let deadline = mend + Duration::from_secs(10);
        while tokio::time::Instant::now() < mend
            || client.connection_state() != async_nats::connection::State::Connected
        {
            if tokio::time::Instant::now() >= mend {
                link.mend();
            }
            poll_once(&mut follower).await;
            assert!(tokio::time::Instant::now() < deadline, "the client never reconnected");
        }
        let reconnected = tokio::time::Instant::now();
        loop {
            poll_once(&mut follower).await;
            if tokio::time::timeout(Duration::from_millis(1), connects.next()).await.is_ok() {
                break;
            }
            assert!(reconnected.elapsed() < Duration::from_secs(10), "the follower never reconnected: {gaps:?}");
        }
        gaps.push(reconnected.elapsed());
        // Connected for a second (no request of the connection in flight when it is cut).
        let settled = tokio::time::Instant::now() + Duration::from_secs(1);
        while tokio::time::Instant::now() < settled {
            poll_once(&mut follower).await;
        }
    }
    // With a back-off doubled at each drop the fourth and fifth would take 0.8 s and 1.6 s.
    assert!(gaps.iter().all(|gap| *gap < Duration::from_millis(700)), "{gaps:?}");

    the_next_is_a_new_user(&mut follower, &log, Duration::from_secs(5)).await;
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
}

/// Polls `follower` for 20 ms: it must hand out nothing.
async fn poll_once(follower: &mut Follower) {
    if let Ok(Next::Message(delivery)) = tokio::time::timeout(Duration::from_millis(20), follower.next()).await {
        panic!("sequence {} handed out again after a reconnection", delivery.seq);
    }
}

/// Creates a user (the stream's third event) and checks that `follower` hands out its event
/// next, within `within`: the first message after the reconnections is the new one.
async fn the_next_is_a_new_user(follower: &mut Follower, log: &ccp_tests::events::Log, within: Duration) {
    let user_id = log.create_user("coral").await;
    let delivered = tokio::time::timeout(within, async {
        loop {
            if let Next::Message(delivery) = follower.next().await {
                break delivery;
            }
        }
    })
    .await
    .expect("the new event is delivered");
    assert_eq!(delivered.seq, 3, "the first message after the reconnection is the new one");
    let Decoded::Apply(envelope) = follower.decode(&delivered) else { panic!("a current event") };
    assert!(matches!(envelope.event, Event::UserCreated(u) if u.user_id == user_id));
}
