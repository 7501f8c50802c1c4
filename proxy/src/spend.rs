//! Month-to-date spend per user, summed from the usage events of every replica (the request
//! stream, followed from the start of the month), for budget checks on the request path —
//! which never queries ClickHouse.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy, kv};
use ccp_schemas::events::Event;
use ccp_schemas::ids::UserId;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt as _;
use rust_decimal::Decimal;
use ulid::Ulid;

/// A calendar month in the budget time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// The month `at` falls in, in `tz`.
    pub fn of(at: DateTime<Utc>, tz: Tz) -> Self {
        let local = at.with_timezone(&tz);
        Self { year: local.year(), month: local.month() }
    }

    /// Its first instant, in UTC.
    pub fn start(self, tz: Tz) -> DateTime<Utc> {
        let day = NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default();
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        tz.from_local_datetime(&midnight).earliest().map_or_else(|| midnight.and_utc(), |d| d.with_timezone(&Utc))
    }

    /// The first day of the next month (when budgets reset).
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { year: self.year, month: self.month + 1 }
        }
    }

    /// `YYYY-MM-01`.
    pub fn first_day(self) -> String {
        format!("{:04}-{:02}-01", self.year, self.month)
    }
}

/// Every replica's month-to-date spend per user, in nanodollars, in a KV bucket
/// (`<prefix>_spend`): each replica writes only its own running total, under
/// `<user_id>.<YYYY-MM>.<writer>` (a plain put, never contended), and watches the whole bucket
/// ([`SharedTally::watch`]); a user's month is the sum over writers. A budgeted request is
/// checked against that sum in memory — no round trip on the request path — and a request
/// finished on any replica counts everywhere within one put and one watch delivery (about a
/// millisecond), long before its event has been followed, so a budget is overshot only by the
/// requests in flight when it was reached and those another replica admitted within that
/// millisecond, before the put reached it. A writer is one process: a restarted replica starts a
/// new total and its old one stays in the sum.
#[derive(Debug)]
pub struct SharedTally {
    kv: kv::Store,
    /// Publishes the puts (see [`Self::add`]).
    js: jetstream::Context,
    /// The subject a key's value is published to is this followed by the key (`$KV.<bucket>.`),
    /// as [`kv::Store::put`] does.
    put_subject: String,
    /// This process's writer id (the last key segment).
    writer: String,
    /// This writer's totals per `<user>.<month>`; a put is sent under this lock, so the stored
    /// value only grows.
    mine: tokio::sync::Mutex<HashMap<String, u64>>,
    /// What the watch delivered: per `<user>.<month>`, each writer's total.
    seen: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// The watch has delivered every value the bucket held when it started and is following.
    live: std::sync::atomic::AtomicBool,
}

impl SharedTally {
    /// Opens (or creates) the bucket.
    pub async fn open(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<Self> {
        let bucket = format!("{}_spend", ns.prefix());
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                js.create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "ClaudeCodeProxy month-to-date spend per user and replica (nanodollars)".into(),
                    history: 1,
                    max_age: Duration::from_secs(62 * 86_400),
                    ..Default::default()
                })
                .await?
            }
        };
        // The proxy's context has no JetStream domain, so the bucket's own subjects are used.
        anyhow::ensure!(!kv.use_jetstream_prefix, "the spend bucket is reached through a JetStream domain");
        let put_subject = kv.put_prefix.clone().unwrap_or_else(|| kv.prefix.clone());
        Ok(Self {
            kv,
            js: js.clone(),
            put_subject,
            writer: Ulid::new().to_string(),
            mine: tokio::sync::Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            live: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn user_month(user: UserId, month: Month) -> String {
        format!("{user}.{:04}-{:02}", month.year, month.month)
    }

    /// Adds `nanos` to this writer's total of a user's month and stores the new total (retried
    /// a few times; the local tally counts it whatever happens).
    ///
    /// The total is published under the lock, so one writer's puts reach the bucket in order and
    /// the stored total only grows, but JetStream's acknowledgement is awaited after the lock is
    /// released: concurrent requests' puts do not queue behind each other's round trips, and a
    /// failing put (retried with backoff) does not hold up the others. A retry publishes the
    /// newest total, which supersedes the one that failed.
    pub async fn add(&self, user: UserId, month: Month, nanos: u64) {
        const ATTEMPTS: u32 = 20;
        let user_month = Self::user_month(user, month);
        let subject = format!("{}{user_month}.{}", self.put_subject, self.writer);
        let mut add = Some(nanos);
        for attempt in 0..ATTEMPTS {
            let stored = {
                let mut mine = self.mine.lock().await;
                let total = mine.entry(user_month.clone()).or_default();
                if let Some(nanos) = add.take() {
                    *total = total.saturating_add(nanos);
                    // Seen at once by this replica's next admission, before the watch brings it.
                    self.note(&user_month, &self.writer, *total);
                }
                self.js.publish(subject.clone(), total.to_string().into()).await.map_err(|e| e.to_string())
            };
            let acknowledged = match stored {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match acknowledged {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "storing the shared spend failed; retrying");
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                }
            }
        }
        tracing::warn!(user = %user, "shared spend not stored after {ATTEMPTS} attempts; the local tally still counts it");
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
        let writers = seen.entry(user_month.to_owned()).or_default();
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

/// Spend per user in the current month: this replica's own costs as soon as a request ends,
/// everyone's as their events arrive from the request stream (own events are not counted twice),
/// and — when opened — the [`SharedTally`] of every replica.
#[derive(Debug)]
pub struct Spend {
    tz: Tz,
    shared: std::sync::OnceLock<Arc<SharedTally>>,
    state: Mutex<(Option<Month>, HashMap<UserId, Decimal>)>,
    /// This replica's events (by event id) that have not come back from the stream yet: they
    /// are skipped there without being decoded (their cost was counted when they were emitted).
    own: Mutex<HashSet<Ulid>>,
    /// The month so far has been read once (budgets are meaningful).
    ready: std::sync::atomic::AtomicBool,
    /// Where other replicas' Plan-limit states go (this replica's table), once set.
    rate_limits: std::sync::OnceLock<Arc<crate::rate_limits::RateLimits>>,
}

impl Spend {
    /// An empty tally for months in `tz`.
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            shared: std::sync::OnceLock::new(),
            state: Mutex::new((None, HashMap::new())),
            own: Mutex::new(HashSet::new()),
            ready: std::sync::atomic::AtomicBool::new(false),
            rate_limits: std::sync::OnceLock::new(),
        }
    }

    /// From now on, the Plan-limit states in every replica's events reach `table` (newer ones
    /// win), so each replica's events carry the freshest state any replica saw.
    pub(crate) fn follow_rate_limits(&self, table: Arc<crate::rate_limits::RateLimits>) {
        let _ = self.rate_limits.set(table);
    }

    /// Whether the month's events have been read up to the stream's head once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    fn mark_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The budget time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Adds a cost that occurred at `at`.
    pub fn add(&self, user: UserId, cost: Decimal, at: DateTime<Utc>) {
        let month = Month::of(at, self.tz);
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.0 {
            Some(current) if current == month => {}
            Some(current) if (month.year, month.month) < (current.year, current.month) => return,
            _ => *state = (Some(month), HashMap::new()),
        }
        *state.1.entry(user).or_default() += cost;
    }

    /// Uses the shared tally from now on.
    pub fn share(&self, tally: Arc<SharedTally>) {
        let _ = self.shared.set(tally);
    }

    /// Notes an event this replica is about to publish, so that the stream follower skips it.
    pub fn emitting(&self, event: Ulid) {
        self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(event);
    }

    /// Whether `event` is one of this replica's own (and forgets it: it came back once).
    fn returned(&self, event: Ulid) -> bool {
        self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&event)
    }

    /// Counts a request this replica just finished (its event, noted with [`Self::emitting`],
    /// follows through the stream and is not counted again). A user with a budget also gets it
    /// added to the shared tally at once; without a budget nobody needs it before the stream
    /// brings it (a budget set later is checked against the larger of the shared tally and the
    /// stream's, so nothing is missed).
    pub fn add_local(&self, user: UserId, cost: Decimal, at: DateTime<Utc>, budgeted: bool) {
        self.add(user, cost, at);
        if let Some(tally) = self.shared.get().filter(|_| budgeted).cloned() {
            let (month, nanos) = (Month::of(at, self.tz), ccp_schemas::pricing::to_nanos(cost));
            tokio::spawn(async move { tally.add(user, month, nanos).await });
        }
    }

    /// What `user` spent so far in the month of `now`: the larger of this replica's tally
    /// (its own requests at once, everyone's as their events are followed) and the shared one
    /// (every replica's finished requests within about a millisecond), both in memory. Before
    /// the shared tally's watch has caught up, the local tally alone decides.
    pub fn spent_everywhere(&self, user: UserId, now: DateTime<Utc>) -> Decimal {
        let local = self.spent(user, now);
        let shared = self.shared.get().and_then(|tally| tally.cached(user, Month::of(now, self.tz)));
        shared.map_or(local, |shared| local.max(shared))
    }

    /// What `user` spent so far in the month of `now`.
    pub fn spent(&self, user: UserId, now: DateTime<Utc>) -> Decimal {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.0 {
            Some(m) if m == Month::of(now, self.tz) => state.1.get(&user).copied().unwrap_or_default(),
            _ => Decimal::ZERO,
        }
    }

    /// Follows the request stream from the start of the current month, for ever.
    pub async fn follow(self: Arc<Self>, client: async_nats::Client, ns: Namespace) {
        let js = jetstream::new(client.clone());
        let mut last = 0u64;
        loop {
            if let Err(e) = self.follow_once(&js, &client, &ns, &mut last).await {
                tracing::warn!(error = %e, "following the request stream for budgets failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn follow_once(
        &self,
        js: &jetstream::Context,
        client: &async_nats::Client,
        ns: &Namespace,
        last: &mut u64,
    ) -> anyhow::Result<()> {
        let stream = js.get_stream(ns.stream(StreamKind::Requests)).await?;
        let deliver_policy = if *last == 0 {
            let start = Month::of(Utc::now(), self.tz).start(self.tz);
            let start_time = time::OffsetDateTime::from_unix_timestamp(start.timestamp())?;
            DeliverPolicy::ByStartTime { start_time }
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: *last + 1 }
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: client.new_inbox(),
                deliver_policy,
                filter_subject: ns.stream_subjects(StreamKind::Requests),
                ..Default::default()
            })
            .await?;
        if consumer.cached_info().num_pending == 0 {
            self.mark_ready();
        }
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let info = message.info().ok();
            *last = info.as_ref().map_or(*last, |i| i.stream_sequence);
            if info.is_some_and(|i| i.pending == 0) {
                self.mark_ready();
            }
            let own = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .and_then(|id| id.as_str().parse::<Ulid>().ok())
                .is_some_and(|id| self.returned(id));
            if own {
                continue;
            }
            if let Ok(Envelope { event: Event::RequestCompleted(r), occurred_at, .. }) =
                Envelope::decode(&message.payload)
            {
                if let Some(user) = r.user_id {
                    if r.cost_usd > Decimal::ZERO {
                        self.add(user, r.cost_usd, occurred_at);
                    }
                }
                if let (Some(table), Some(key), Some(state)) = (self.rate_limits.get(), r.key_id, r.rate_limit) {
                    table.merge(key, state);
                }
            }
        }
        anyhow::bail!("the request stream subscription ended")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_follow_the_time_zone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let at: DateTime<Utc> = "2026-12-01T03:00:00Z".parse().unwrap();
        assert_eq!(Month::of(at, tz), Month { year: 2026, month: 11 }, "still November in New York");
        assert_eq!(Month::of(at, chrono_tz::UTC), Month { year: 2026, month: 12 });
        assert_eq!(Month { year: 2026, month: 12 }.start(tz).to_rfc3339(), "2026-12-01T05:00:00+00:00");
        assert_eq!(Month { year: 2026, month: 12 }.next().first_day(), "2027-01-01");
    }

    #[test]
    fn spend_resets_with_the_month_and_ignores_older_months() {
        let s = Spend::new(chrono_tz::UTC);
        let u = UserId::new();
        let nov: DateTime<Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        let dec: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        s.add(u, Decimal::new(150, 2), nov);
        s.add(u, Decimal::new(25, 2), nov);
        assert_eq!(s.spent(u, nov), Decimal::new(175, 2));
        s.add(u, Decimal::new(100, 2), dec);
        s.add(u, Decimal::new(999, 2), nov);
        assert_eq!(s.spent(u, dec), Decimal::new(100, 2));
        assert_eq!(s.spent(UserId::new(), dec), Decimal::ZERO);
    }

    #[test]
    fn own_events_are_recognised_once() {
        let s = Spend::new(chrono_tz::UTC);
        let (u, mine, theirs) = (UserId::new(), Ulid::new(), Ulid::new());
        let now = Utc::now();
        s.emitting(mine);
        s.add_local(u, Decimal::ONE, now, false);
        assert_eq!(s.spent(u, now), Decimal::ONE, "counted at once");
        assert!(s.returned(mine), "its event is skipped when it comes back");
        assert!(!s.returned(mine), "but only once");
        assert!(!s.returned(theirs), "another replica's event is not ours");
    }
}
