#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A replica's start on real NATS: when the shared tally does not say it covers the month, the
//! month is read from the request stream once and stored in the tally per writer — a writer's
//! part is the larger of its own total and what the stream holds of its events, so a replica that
//! died before storing its last totals is complete again and a live one is not counted twice;
//! the replicas that start after it take the month from the tally alone and read no stream.
//! A replica's own total deleted from the bucket is put back whole.

use std::sync::Arc;
use std::time::Duration;

use ccp_proxy::spend::{Month, SharedTally, Spend};
use ccp_schemas::events::Event;
use ccp_schemas::ids::{AccessKeyId, TeamId, UserId};
use ccp_schemas::subjects::Aggregate;
use ccp_schemas::{Actor, Envelope, Namespace};
use ccp_tests::events::completed;
use ccp_tests::{namespace, nats, test_settings};
use chrono::Utc;
use rust_decimal::Decimal;

struct Env {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    ns: Namespace,
}

impl Env {
    async fn new(name: &str) -> Self {
        let settings = test_settings(name);
        let client = nats().await;
        let js = async_nats::jetstream::new(client.clone());
        let ns = namespace(&settings);
        ccp_runtime::streams::ensure(&js, &ns, &ccp_runtime::streams::StreamPolicy::from(&settings.nats))
            .await
            .unwrap();
        Self { client, js, ns }
    }

    /// A usage event of `user` costing `nanos`, written by replica `replica`.
    async fn spent(&self, user: UserId, nanos: i64, replica: &str) {
        self.spent_in(user, None, nanos, replica).await;
    }

    /// The same, made while the user was in `team`.
    async fn spent_in(&self, user: UserId, team: Option<TeamId>, nanos: i64, replica: &str) {
        let key = AccessKeyId::new();
        let event = ccp_schemas::events::RequestCompleted {
            cost_usd: Some(Decimal::new(nanos, 9)),
            team_id: team,
            ..completed(user, key)
        };
        let envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: replica.into() });
        let subject = self.ns.subject(&Aggregate::Request(Some(key)));
        self.js.publish(subject, envelope.encode().unwrap().into()).await.unwrap().await.unwrap();
    }

    /// A replica: its spend with the shared tally opened as `replica`, watched and kept stored,
    /// started as the proxy starts it; returned once ready.
    async fn replica(&self, replica: &str) -> (Arc<Spend>, Vec<tokio::task::JoinHandle<()>>) {
        let spend = Arc::new(Spend::new(chrono_tz::UTC));
        let tally = Arc::new(SharedTally::open_as(&self.js, &self.ns, replica, 1).await.unwrap());
        spend.share(tally.clone());
        let tasks = vec![
            tokio::spawn(tally.clone().watch()),
            tokio::spawn(tally.keep_stored(Duration::from_millis(50))),
            tokio::spawn(spend.clone().start(self.client.clone(), self.ns.clone())),
        ];
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !spend.is_ready() {
            assert!(std::time::Instant::now() < deadline, "{replica} never became ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (spend, tasks)
    }

    async fn bucket(&self) -> async_nats::jetstream::kv::Store {
        self.js.get_key_value(format!("{}_spend", self.ns.prefix())).await.unwrap()
    }

    async fn delete(&self) {
        ccp_tests::delete_namespace(&self.js, &self.ns).await;
    }
}

fn usd(nanos: i64) -> Decimal {
    Decimal::new(nanos, 9)
}

#[tokio::test]
async fn a_tally_that_does_not_cover_the_month_is_rebuilt_once_and_later_replicas_read_no_stream() {
    let e = Env::new("spendstart").await;
    let user = UserId::new();
    let month = Month::of(Utc::now(), chrono_tz::UTC);
    // Replica `live-a` spent 10 and stored all of it; replica `dead-b` spent 7 and died having
    // stored 4; replica `gone-c` spent 5 and stored nothing. The bucket says nothing of coverage
    // (a first start, a lost bucket, the upgrade to this version).
    for (nanos, replica) in [(6, "live-a"), (4, "live-a"), (4, "dead-b"), (3, "dead-b"), (5, "gone-c")] {
        e.spent(user, nanos, replica).await;
    }
    // And a teammate spent 9 in the team on replica `gone-c`: the team's month is rebuilt too.
    let (team, teammate) = (TeamId::new(), UserId::new());
    e.spent_in(teammate, Some(team), 9, "gone-c").await;
    let kv = SharedTally::open(&e.js, &e.ns).await.unwrap();
    drop(kv);
    let bucket = e.bucket().await;
    bucket.put(format!("{user}.{month}.live-a"), "10".into()).await.unwrap();
    bucket.put(format!("{user}.{month}.dead-b"), "4".into()).await.unwrap();

    // The first replica to start reads the month and stores what each writer's events hold.
    let (first, tasks) = e.replica("first-1").await;
    assert_eq!(first.spent(user, Utc::now()), usd(22), "read from the stream");
    assert_eq!(first.spent_everywhere(user, Utc::now()), usd(22), "10 + max(4, 7) + 5: nothing twice, nothing lost");
    let covered = bucket.get("covered").await.unwrap().expect("the tally now says it covers the month");
    assert_eq!(
        std::str::from_utf8(&covered).unwrap(),
        month.start(chrono_tz::UTC).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert_eq!(bucket.get(format!("{user}.{month}.dead-b.settled")).await.unwrap().as_deref(), Some(&b"7"[..]));
    assert_eq!(bucket.get(format!("{user}.{month}.gone-c.settled")).await.unwrap().as_deref(), Some(&b"5"[..]));
    let team_key = ccp_proxy::spend::team::team_key(team);
    assert_eq!(first.spent_everywhere(team_key, Utc::now()), usd(9), "the team's month");
    assert_eq!(first.spent_everywhere(teammate, Utc::now()), usd(9));

    // It spends on; a replica started now takes the month from the tally alone.
    first.add_local(user, usd(100), Utc::now(), true);
    let (second, more) = e.replica("second-2").await;
    assert_eq!(second.spent(user, Utc::now()), Decimal::ZERO, "the second replica read no stream");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while second.spent_everywhere(user, Utc::now()) != usd(122) {
        assert!(std::time::Instant::now() < deadline, "{}", second.spent_everywhere(user, Utc::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first replica's event of that request reaches the stream too: a later rebuild counts
    // it under its writer, beside its own total — once.
    e.spent(user, 100, "first-1").await;
    bucket.delete("covered").await.unwrap();
    let (third, rest) = e.replica("third-3").await;
    assert_eq!(third.spent(user, Utc::now()), usd(122), "the deleted coverage made it read the stream");
    assert_eq!(third.spent_everywhere(user, Utc::now()), usd(122));
    for t in tasks.into_iter().chain(more).chain(rest) {
        t.abort();
    }
    e.delete().await;
}

#[tokio::test]
async fn a_replicas_total_deleted_from_the_bucket_is_stored_again() {
    let e = Env::new("spendreput").await;
    let user = UserId::new();
    let month = Month::of(Utc::now(), chrono_tz::UTC);
    let (spend, tasks) = e.replica("keeper-1").await;
    spend.add_local(user, usd(42), Utc::now(), true);
    let bucket = e.bucket().await;
    let key = format!("{user}.{month}.keeper-1");
    let stored = |bucket: async_nats::jetstream::kv::Store, key: String| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = bucket.get(&key).await.unwrap() {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "{key} was not stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert_eq!(&stored(bucket.clone(), key.clone()).await[..], b"42");
    // Someone deletes it (a damaged bucket): the replica, which still counts it, puts it back.
    bucket.delete(&key).await.unwrap();
    assert_eq!(&stored(bucket.clone(), key.clone()).await[..], b"42", "stored again, whole");
    assert_eq!(spend.spent_everywhere(user, Utc::now()), usd(42));
    for t in tasks {
        t.abort();
    }
    e.delete().await;
}
