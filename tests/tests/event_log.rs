//! The event log's setup against a real NATS JetStream server: streams and buckets are created
//! idempotently, policy changes are applied, publishing deduplicates by event id, and the
//! expected-last-subject-sequence check detects concurrent writers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use ccp_runtime::streams::{ensure, Outcome, StreamPolicy};
use ccp_schemas::events::{Event, UserCreated, UserStatus};
use ccp_schemas::ids::UserId;
use ccp_schemas::subjects::{Bucket, StreamKind};
use ccp_schemas::{Actor, Envelope};
use ccp_tests::{delete_namespace, namespace, nats, test_settings};

fn policy() -> StreamPolicy {
    StreamPolicy {
        replicas: 1,
        request_max_age: Duration::from_secs(35 * 86_400),
        duplicate_window: Duration::from_secs(120),
        security_max_age: Duration::from_secs(90 * 86_400),
    }
}

#[tokio::test]
async fn streams_and_buckets_are_created_once_and_updated_on_policy_change() {
    let settings = test_settings("ensure");
    let ns = namespace(&settings);
    let js = jetstream::new(nats().await);

    let first = ensure(&js, &ns, &policy()).await.unwrap();
    assert_eq!(first.len(), StreamKind::ALL.len() + Bucket::ALL.len());
    assert!(first.iter().all(|(_, o)| *o == Outcome::Created), "{first:?}");

    let second = ensure(&js, &ns, &policy()).await.unwrap();
    assert!(second.iter().all(|(_, o)| *o == Outcome::Unchanged), "{second:?}");

    let mut admin = js.get_stream(ns.stream(StreamKind::Admin)).await.unwrap();
    let info = admin.info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::ZERO, "admin events are kept for ever");
    assert!(info.config.deny_delete && info.config.deny_purge);
    let mut requests = js.get_stream(ns.stream(StreamKind::Requests)).await.unwrap();
    assert_eq!(requests.info().await.unwrap().config.max_age, Duration::from_secs(35 * 86_400));

    let shorter = StreamPolicy { request_max_age: Duration::from_secs(7 * 86_400), ..policy() };
    let third = ensure(&js, &ns, &shorter).await.unwrap();
    let updated: Vec<_> = third.iter().filter(|(_, o)| *o == Outcome::Updated).map(|(n, _)| n.clone()).collect();
    assert_eq!(updated, vec![ns.stream(StreamKind::Requests), ns.stream(StreamKind::Circuit)]);
    assert_eq!(requests.info().await.unwrap().config.max_age, Duration::from_secs(7 * 86_400));

    for bucket in Bucket::ALL {
        js.get_key_value(ns.bucket(bucket)).await.unwrap();
    }
    delete_namespace(&js, &ns).await;
}

#[tokio::test]
async fn events_round_trip_through_the_log_deduplicated_by_id() {
    let settings = test_settings("dedup");
    let ns = namespace(&settings);
    let js = jetstream::new(nats().await);
    ensure(&js, &ns, &policy()).await.unwrap();

    let user_id = UserId::new();
    let envelope = Envelope::new(
        Event::UserCreated(UserCreated {
            user_id,
            name: "dana".into(),
            description: None,
            email: None,
            status: UserStatus::Active,
        }),
        Actor::System { component: "test".into() },
    );
    let subject = envelope.subject(&ns);
    let bytes = envelope.encode().unwrap();
    let publish = |bytes: Vec<u8>| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
        js.publish_with_headers(subject.clone(), headers, bytes.into())
    };
    let a = publish(bytes.clone()).await.unwrap().await.unwrap();
    let b = publish(bytes.clone()).await.unwrap().await.unwrap();
    assert_eq!(a.sequence, b.sequence);
    assert!(b.duplicate);

    let mut stream = js.get_stream(ns.stream(StreamKind::Admin)).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    let stored = stream.get_last_raw_message_by_subject(&subject).await.unwrap();
    let decoded = Envelope::decode(&stored.payload).unwrap();
    assert_eq!(decoded, envelope);
    delete_namespace(&js, &ns).await;
}

#[tokio::test]
async fn a_stale_expected_subject_sequence_is_refused() {
    let settings = test_settings("occ");
    let ns = namespace(&settings);
    let js = jetstream::new(nats().await);
    ensure(&js, &ns, &policy()).await.unwrap();
    let subject = format!("{}.admin.user.{}", ns.prefix(), UserId::new());

    let publish = |expected: u64| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
        js.publish_with_headers(subject.clone(), headers, "{}".into())
    };
    let first = publish(0).await.unwrap().await.unwrap();
    let err = publish(0).await.unwrap().await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence, "{err}");
    publish(first.sequence).await.unwrap().await.unwrap();
    delete_namespace(&js, &ns).await;
}
