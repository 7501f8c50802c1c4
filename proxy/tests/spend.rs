#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared month-to-date tally on real NATS: concurrent compare-and-set additions from many
//! writers (as from several replicas) lose nothing; months and users are kept apart.

use std::sync::Arc;

use ccp_proxy::spend::{Month, SharedTally};
use ccp_schemas::ids::UserId;
use ccp_tests::{namespace, nats, test_settings};
use rust_decimal::Decimal;

#[tokio::test]
async fn concurrent_additions_are_all_counted() {
    let settings = test_settings("tally");
    let ns = namespace(&settings);
    let js = async_nats::jetstream::new(nats().await);
    // Two handles on one bucket, as two replicas would have.
    let a = Arc::new(SharedTally::open(&js, &ns).await.unwrap());
    let b = Arc::new(SharedTally::open(&js, &ns).await.unwrap());
    let (user, other) = (UserId::new(), UserId::new());
    let november = Month::of("2026-11-25T12:00:00Z".parse().unwrap(), chrono_tz::UTC);
    let december = november.next();
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let tally = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { tally.add(user, november, 1_000_000 + i).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    b.add(other, november, 5).await;
    b.add(user, december, 7).await;
    let expected: u64 = (0..60u64).map(|i| 1_000_000 + i).sum();
    assert_eq!(a.get(user, november).await.unwrap(), Decimal::new(expected as i64, 9));
    assert_eq!(a.get(other, november).await.unwrap(), Decimal::new(5, 9));
    assert_eq!(a.get(user, december).await.unwrap(), Decimal::new(7, 9));
    assert_eq!(a.get(UserId::new(), november).await.unwrap(), Decimal::ZERO);
    let _ = js.delete_key_value(format!("{}_spend", ns.prefix())).await;
}
