//! The shared tally: every replica's month-to-date spend per user in a KV bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ccp_schemas::ids::UserId;
use ccp_schemas::Namespace;
use chrono::Utc;
use futures_util::StreamExt as _;
use rust_decimal::Decimal;
use ulid::Ulid;

use super::Month;

/// Every replica's month-to-date spend per user, in nanodollars, in a KV bucket
/// (`<prefix>_spend`): each replica writes only its own running totals, under
/// `<user_id>.<YYYY-MM>.<writer>` (plain puts, never contended), and watches the whole bucket
/// ([`SharedTally::watch`]); a user's month is the sum over writers.
///
/// Counting is synchronous and in memory ([`SharedTally::add`]); one task stores the totals
/// ([`SharedTally::keep_stored`]): a budgeted user's total at once (woken by the addition), the
/// others' once a second, and a total whose put failed again with the next round.
/// What is counted stays counted until acknowledged, so a failed put, a cancelled task or a NATS
/// outage delays a total but never loses it, and a last [`SharedTally::flush`] at shutdown
/// stores what is left. A budgeted request is checked against the sum in memory — no round trip
/// on the request path — and a request finished on any replica counts everywhere within one put
/// and one watch delivery (about a millisecond), so a budget is overshot only by the requests in
/// flight when it was reached and those another replica admitted within that millisecond,
/// before the put reached it. A writer is one process: a restarted replica starts new totals and
/// its old ones stay in the sum.
#[derive(Debug)]
pub struct SharedTally {
    kv: kv::Store,
    /// Publishes the puts.
    js: jetstream::Context,
    /// The subject a key's value is published to is this followed by the key (`$KV.<bucket>.`),
    /// as [`kv::Store::put`] does.
    put_subject: String,
    /// This process's writer id (the last key segment).
    writer: String,
    /// This writer's totals per `<user>.<month>`.
    mine: Mutex<HashMap<String, Totals>>,
    /// Rings when a total should be stored at once.
    wake: tokio::sync::Notify,
    /// Held while totals are being published, so that one writer's puts leave in the order its
    /// totals grew (the stored value only grows).
    publishing: tokio::sync::Mutex<()>,
    /// What the watch delivered: per `<user>.<month>`, each writer's total.
    seen: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// The watch has delivered every value the bucket held when it started and is following.
    live: std::sync::atomic::AtomicBool,
}

/// One of this writer's totals (nanodollars).
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    /// Everything counted.
    counted: u64,
    /// The largest total published and not known to have failed.
    sent: u64,
    /// The largest total JetStream acknowledged.
    stored: u64,
    /// To be published at once (a budgeted user's).
    urgent: bool,
}

/// How [`SharedTally::publish_pending`] chooses totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Urgent totals not published yet.
    Urgent,
    /// Every total not published yet (a failed put counts as not published).
    Unsent,
}

/// Whether a stored total of `<user>.<YYYY-MM>` belongs to a month before `current` (`YYYY-MM`).
fn forgettable(user_month: &str, totals: &Totals, current: &str) -> bool {
    let month = user_month.rsplit_once('.').map_or("", |(_, m)| m);
    month < current && totals.counted <= totals.stored
}

/// A published total awaiting its acknowledgement.
type Put = std::pin::Pin<Box<dyn std::future::Future<Output = (String, u64, bool)> + Send>>;

impl SharedTally {
    /// Opens (or creates) the bucket.
    pub async fn open(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<Self> {
        let kv = ccp_runtime::streams::own_bucket(
            js,
            format!("{}_spend", ns.prefix()),
            Duration::from_secs(62 * 86_400),
            "ClaudeCodeProxy month-to-date spend per user and replica (nanodollars)",
        )
        .await?;
        // The proxy's context has no JetStream domain, so the bucket's own subjects are used.
        anyhow::ensure!(!kv.use_jetstream_prefix, "the spend bucket is reached through a JetStream domain");
        let put_subject = kv.put_prefix.clone().unwrap_or_else(|| kv.prefix.clone());
        // Puts that JetStream does not acknowledge must not hold up the others: with a full
        // window of unacknowledged puts a publish fails (and is repeated with the next round)
        // instead of waiting.
        let puts = jetstream::ContextBuilder::new()
            .backpressure_on_inflight(false)
            .timeout(Duration::from_secs(5))
            .build(js.client());
        Ok(Self {
            kv,
            js: puts,
            put_subject,
            writer: Ulid::new().to_string(),
            mine: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            publishing: tokio::sync::Mutex::new(()),
            seen: Mutex::new(HashMap::new()),
            live: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn user_month(user: UserId, month: Month) -> String {
        use std::fmt::Write as _;
        // Sized once (`usr_` + 26 + `.YYYY-MM`): formatting into an empty string regrew it.
        let mut key = String::with_capacity(UserId::PREFIX.len() + 26 + 8);
        let _ = write!(key, "{user}.{month}");
        key
    }

    /// Adds `nanos` to this writer's total of a user's month, in memory (this replica's own view
    /// has it at once). `urgent` (a user with a budget): stored at once by
    /// [`Self::keep_stored`]; otherwise within a second.
    pub fn add(&self, user: UserId, month: Month, nanos: u64, urgent: bool) {
        let user_month = Self::user_month(user, month);
        let total = {
            let mut mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The key is copied only for a user's first request of the month.
            if !mine.contains_key(&user_month) {
                mine.insert(user_month.clone(), Totals::default());
            }
            let Some(totals) = mine.get_mut(&user_month) else { return };
            totals.counted = totals.counted.saturating_add(nanos);
            totals.urgent |= urgent;
            totals.counted
        };
        self.note(&user_month, &self.writer, total);
        if urgent {
            self.wake.notify_one();
        }
    }

    /// Publishes the totals `which` selects, in the order they grew; their acknowledgements.
    async fn publish_pending(&self, which: Pending) -> Vec<Put> {
        let _publishing = self.publishing.lock().await;
        let chosen: Vec<(String, u64)> = {
            let mut mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            mine.iter_mut()
                .filter(|(_, t)| t.counted > t.sent && (t.urgent || which == Pending::Unsent))
                .map(|(k, t)| {
                    t.sent = t.counted;
                    t.urgent = false;
                    (k.clone(), t.counted)
                })
                .collect()
        };
        let mut puts: Vec<Put> = Vec::with_capacity(chosen.len());
        for (user_month, total) in chosen {
            let subject = format!("{}{user_month}.{}", self.put_subject, self.writer);
            match self.js.publish(subject, total.to_string().into()).await {
                Ok(ack) => puts.push(Box::pin(async move {
                    let stored = ack.await.is_ok();
                    (user_month, total, stored)
                })),
                Err(e) => {
                    tracing::debug!(error = %e, "publishing a spend total failed; retrying within a second");
                    self.settled(&user_month, total, false);
                }
            }
        }
        puts
    }

    /// Notes an acknowledged (or failed) put. A failed one is published again with the next
    /// round (unless a larger total was stored meanwhile).
    fn settled(&self, user_month: &str, total: u64, stored: bool) {
        let mut mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = mine.get_mut(user_month) {
            if stored {
                t.stored = t.stored.max(total);
            } else {
                tracing::debug!(user_month, "a spend total was not stored; retrying within a second");
                t.sent = t.stored;
            }
        }
    }

    /// Forgets this writer's totals of months before `current` that are stored (the bucket
    /// keeps them; nobody adds to them any more).
    fn forget_stored_before(&self, current: &str) {
        let mut mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        mine.retain(|user_month, t| !forgettable(user_month, t, current));
    }

    /// Stores this writer's totals, for ever: urgent ones when [`Self::add`] rings, every other
    /// one not stored yet each `period` (also those whose put failed). Cancelling it loses
    /// nothing (see [`Self::flush`]).
    pub async fn keep_stored(self: Arc<Self>, period: Duration) {
        use futures_util::stream::FuturesUnordered;
        let mut acks = FuturesUnordered::<Put>::new();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.wake.notified() => acks.extend(self.publish_pending(Pending::Urgent).await),
                _ = tick.tick() => {
                    acks.extend(self.publish_pending(Pending::Unsent).await);
                    // Months before the current one at UTC−12 are over in every time zone.
                    let current = Month::of(Utc::now(), chrono_tz::Tz::Etc__GMTPlus12);
                    self.forget_stored_before(&current.to_string());
                }
                Some((user_month, total, stored)) = acks.next(), if !acks.is_empty() => {
                    self.settled(&user_month, total, stored);
                }
            }
        }
    }

    /// Publishes every total not acknowledged yet and waits for the acknowledgements (at
    /// shutdown, after [`Self::keep_stored`] stopped); whether all were stored.
    pub async fn flush(&self) -> bool {
        let mut all = true;
        // Totals in flight from the stopped task are published again.
        {
            let mut mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for t in mine.values_mut() {
                t.sent = t.stored;
            }
        }
        for put in self.publish_pending(Pending::Unsent).await {
            let (user_month, total, stored) = put.await;
            self.settled(&user_month, total, stored);
            all &= stored;
        }
        all && self.unstored() == 0
    }

    /// How many of this writer's totals JetStream has not acknowledged.
    pub(super) fn unstored(&self) -> usize {
        let mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        mine.values().filter(|t| t.counted > t.stored).count()
    }

    /// Whether the watch has caught up with the bucket.
    pub fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Follows every update of the bucket into memory, for ever (re-watching after a failure;
    /// meanwhile [`Self::cached`] answers `None`).
    pub async fn watch(self: Arc<Self>) {
        loop {
            if let Err(e) = self.watch_once().await {
                tracing::warn!(error = %e, "watching the shared spend failed; budgets use this replica's tally meanwhile");
            }
            self.live.store(false, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self) -> anyhow::Result<()> {
        let mut updates = self.kv.watch_with_history(">").await?;
        if self.kv.status().await?.values() == 0 {
            self.live.store(true, std::sync::atomic::Ordering::Release);
        }
        while let Some(entry) = updates.next().await {
            let entry = entry?;
            // `<user>.<month>.<writer>`; anything else (an older layout) is not ours to count.
            if let Some((user_month, writer)) = entry.key.rsplit_once('.').filter(|(um, _)| um.contains('.')) {
                match entry.operation {
                    kv::Operation::Put => {
                        let value = std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse::<u64>().ok());
                        if let Some(value) = value {
                            self.note(user_month, writer, value);
                        }
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if let Some(writers) = seen.get_mut(user_month) {
                            writers.remove(writer);
                        }
                    }
                }
            }
            if entry.delta == 0 {
                self.live.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        anyhow::bail!("the watch ended")
    }

    /// Keeps the larger of what is known for a writer's total and `value` (totals only grow).
    fn note(&self, user_month: &str, writer: &str, value: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.contains_key(user_month) {
            seen.insert(user_month.to_owned(), HashMap::new());
        }
        let Some(writers) = seen.get_mut(user_month) else { return };
        match writers.get_mut(writer) {
            Some(known) => *known = (*known).max(value),
            None => {
                writers.insert(writer.to_owned(), value);
            }
        }
    }

    /// A user's month so far over every writer, in USD, as the watch last saw it; `None` while
    /// the watch is not caught up.
    pub fn cached(&self, user: UserId, month: Month) -> Option<Decimal> {
        if !self.live.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let nanos = seen
            .get(&Self::user_month(user, month))
            .map_or(0u64, |writers| writers.values().fold(0u64, |sum, v| sum.saturating_add(*v)));
        Some(Decimal::new(i64::try_from(nanos).unwrap_or(i64::MAX), 9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stored_totals_of_past_months_are_forgotten() {
        let stored = Totals { counted: 5, sent: 5, stored: 5, urgent: false };
        let unstored = Totals { counted: 7, sent: 7, stored: 5, urgent: false };
        assert!(forgettable("usr_01J.2026-10", &stored, "2026-11"));
        assert!(!forgettable("usr_01J.2026-10", &unstored, "2026-11"), "not stored yet");
        assert!(!forgettable("usr_01J.2026-11", &stored, "2026-11"), "the current month");
        assert!(!forgettable("usr_01J.2026-12", &stored, "2026-11"), "ahead in some time zone");
        assert!(forgettable("usr_01J.2025-12", &stored, "2026-01"), "across a year");
    }
}
