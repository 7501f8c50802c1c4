#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared month-to-date tally on real NATS: concurrent additions from several replicas
//! lose nothing; months and users are kept apart; budgeted totals are stored at once, the others
//! with the next round, and a cancelled storing task loses nothing; every replica's watch shows
//! the others' additions, also those stored before it started.

use std::sync::Arc;
use std::time::Duration;

use ccp_proxy::spend::{Month, SharedTally};
use ccp_schemas::ids::UserId;
use ccp_schemas::Namespace;
use ccp_tests::{namespace, nats, test_settings};
use rust_decimal::Decimal;

/// A fresh namespace's spend bucket on the test NATS, on which replicas' tallies open.
struct Bucket {
    js: async_nats::jetstream::Context,
    ns: Namespace,
}

impl Bucket {
    async fn new(name: &str) -> Self {
        Self { js: async_nats::jetstream::new(nats().await), ns: namespace(&test_settings(name)) }
    }

    /// One replica's tally.
    async fn tally(&self) -> Arc<SharedTally> {
        Arc::new(SharedTally::open(&self.js, &self.ns).await.unwrap())
    }

    async fn delete(&self) {
        ccp_tests::delete_namespace(&self.js, &self.ns).await;
    }
}

#[tokio::test]
async fn concurrent_additions_from_two_replicas_are_all_counted() {
    let bucket = Bucket::new("tally").await;
    // Two handles on one bucket, as two replicas have, each storing its totals, and a third
    // that only watches.
    let a = bucket.tally().await;
    let b = bucket.tally().await;
    let storing = [a.clone(), b.clone()].map(|t| tokio::spawn(t.keep_stored(Duration::from_secs(1))));
    let watcher = bucket.tally().await;
    let watch = tokio::spawn(watcher.clone().watch());
    let (user, other) = (UserId::new(), UserId::new());
    let november = Month::of("2026-11-25T12:00:00Z".parse().unwrap(), chrono_tz::UTC);
    let december = november.next();
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let tally = if i % 2 == 0 { a.clone() } else { b.clone() };
        // Budgeted and unbudgeted additions mixed: stored at once and within a second.
        tasks.push(tokio::spawn(async move { tally.add(user, november, 1_000_000 + i, i % 3 == 0) }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    b.add(other, november, 5, false);
    b.add(user, december, 7, true);
    let expected: u64 = (0..60u64).map(|i| 1_000_000 + i).sum();
    until_cached(&watcher, user, november, Decimal::new(expected as i64, 9)).await;
    until_cached(&watcher, other, november, Decimal::new(5, 9)).await;
    until_cached(&watcher, user, december, Decimal::new(7, 9)).await;
    assert_eq!(watcher.cached(UserId::new(), november), Some(Decimal::ZERO));
    // A replica started later sees the totals stored before it.
    let late = bucket.tally().await;
    let late_watch = tokio::spawn(late.clone().watch());
    until_cached(&late, user, november, Decimal::new(expected as i64, 9)).await;
    for task in storing.iter().chain([&watch, &late_watch]) {
        task.abort();
    }
    bucket.delete().await;
}

#[tokio::test]
async fn a_budgeted_total_is_stored_at_once_the_others_with_the_next_round_and_nothing_is_lost() {
    let bucket = Bucket::new("tally-rounds").await;
    let a = bucket.tally().await;
    let watcher = bucket.tally().await;
    let watch = tokio::spawn(watcher.clone().watch());
    let (budgeted, unbudgeted) = (UserId::new(), UserId::new());
    let month = Month::of("2026-11-25T12:00:00Z".parse().unwrap(), chrono_tz::UTC);
    // Rounds an hour apart: after the first (at once), only a budgeted addition is stored.
    let storing = tokio::spawn(a.clone().keep_stored(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.add(unbudgeted, month, 3, false);
    a.add(budgeted, month, 10, true);
    until_cached(&watcher, budgeted, month, Decimal::new(10, 9)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watcher.cached(unbudgeted, month), Some(Decimal::ZERO), "waits for the next round");
    assert_eq!(a.cached(unbudgeted, month), None, "a has no watch: no view");
    // The storing task is cancelled (as at shutdown): what it had not stored is still counted,
    // and a last flush stores it.
    storing.abort();
    a.add(budgeted, month, 5, true);
    assert!(a.flush().await, "everything stored");
    until_cached(&watcher, unbudgeted, month, Decimal::new(3, 9)).await;
    until_cached(&watcher, budgeted, month, Decimal::new(15, 9)).await;
    assert!(a.flush().await, "a second flush finds everything stored");
    watch.abort();
    bucket.delete().await;
}

/// Polls `b`'s watched view until it shows `want` for the user's month (at most 5 s).
async fn until_cached(tally: &SharedTally, user: UserId, month: Month, want: Decimal) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = tally.cached(user, month);
        if seen == Some(want) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the watch shows {seen:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn every_replica_sees_the_others_additions_through_its_watch() {
    let bucket = Bucket::new("tally-watch").await;
    let a = bucket.tally().await;
    let b = bucket.tally().await;
    let (user, other) = (UserId::new(), UserId::new());
    let month = Month::of("2026-11-25T12:00:00Z".parse().unwrap(), chrono_tz::UTC);
    // Before its watch has caught up a replica has no view (its local tally decides).
    a.add(user, month, 10, true);
    assert!(a.flush().await);
    assert_eq!(b.cached(user, month), None);
    let watch = tokio::spawn(b.clone().watch());
    until_cached(&b, user, month, Decimal::new(10, 9)).await;
    // Later additions by the other replica arrive through the watch and add to its own.
    a.add(user, month, 5, true);
    assert!(a.flush().await);
    until_cached(&b, user, month, Decimal::new(15, 9)).await;
    b.add(user, month, 1, false);
    assert_eq!(b.cached(user, month), Some(Decimal::new(16, 9)), "its own addition counts at once");
    assert_eq!(b.cached(other, month), Some(Decimal::ZERO));
    assert_eq!(a.cached(user, month), None, "a has no watch: no view");
    watch.abort();
    bucket.delete().await;
}
