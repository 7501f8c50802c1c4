//! Month-to-date spend per user, summed from the usage events of every replica (the request
//! stream, followed from the start of the month), for budget checks on the request path —
//! which never queries ClickHouse.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy, kv};
use ccp_schemas::events::Event;
use ccp_schemas::ids::{RequestId, UserId};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt as _;
use rust_decimal::Decimal;

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
/// (`<prefix>_spend`, key `<user_id>.<YYYY-MM>`) updated by compare-and-set as each request
/// ends. A replica reads it before admitting a budgeted request, so a request finished on any
/// replica counts everywhere at once — not only once its event has been followed — and a budget
/// is overshot only by the requests in flight when it was reached.
#[derive(Debug)]
pub struct SharedTally {
    kv: kv::Store,
    /// Additions to one key from this replica go one at a time, so compare-and-set only ever
    /// races with other replicas.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SharedTally {
    /// How long an admission waits for the shared tally before trusting the local one.
    pub const READ_TIMEOUT: Duration = Duration::from_millis(250);

    /// Opens (or creates) the bucket.
    pub async fn open(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<Self> {
        let bucket = format!("{}_spend", ns.prefix());
        let kv = match js.get_key_value(&bucket).await {
            Ok(kv) => kv,
            Err(_) => {
                js.create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    description: "ClaudeCodeProxy month-to-date spend per user (nanodollars)".into(),
                    history: 1,
                    max_age: Duration::from_secs(62 * 86_400),
                    ..Default::default()
                })
                .await?
            }
        };
        Ok(Self { kv, writers: Mutex::new(HashMap::new()) })
    }

    fn key(user: UserId, month: Month) -> String {
        format!("{user}.{:04}-{:02}", month.year, month.month)
    }

    /// Adds `nanos` to a user's month (compare-and-set, retried on a concurrent update).
    pub async fn add(&self, user: UserId, month: Month, nanos: u64) {
        const ATTEMPTS: u32 = 200;
        let key = Self::key(user, month);
        let writer = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let _turn = writer.lock().await;
        for attempt in 0..ATTEMPTS {
            let result = match self.kv.entry(&key).await {
                Ok(None) => self.kv.create(&key, nanos.to_string().into()).await.map(|_| ()).map_err(|e| e.to_string()),
                Ok(Some(entry)) => {
                    let have: u64 = std::str::from_utf8(&entry.value).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    self.kv
                        .update(&key, have.saturating_add(nanos).to_string().into(), entry.revision)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, attempt, "shared spend update raced; retrying");
                    // Another replica wrote in between: back off a little, differently each time.
                    let jitter = u64::from(attempt % 7) + u64::from(nanos.to_le_bytes()[0] % 5);
                    tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
                }
            }
        }
        tracing::warn!(user = %user, "shared spend not updated after {ATTEMPTS} attempts; the local tally still counts it");
    }

    /// A user's month so far, in USD.
    pub async fn get(&self, user: UserId, month: Month) -> anyhow::Result<Decimal> {
        let nanos = match self.kv.get(Self::key(user, month)).await? {
            Some(v) => std::str::from_utf8(&v)?.parse::<u64>()?,
            None => 0,
        };
        Ok(Decimal::new(i64::try_from(nanos)?, 9))
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
    /// Requests counted locally whose events have not come back from the stream yet.
    local: Mutex<HashSet<RequestId>>,
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
            local: Mutex::new(HashSet::new()),
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

    /// Counts a request this replica just finished (its event follows through the stream), and
    /// adds it to the shared tally.
    pub fn add_local(&self, request: RequestId, user: UserId, cost: Decimal, at: DateTime<Utc>) {
        self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(request);
        self.add(user, cost, at);
        if let Some(tally) = self.shared.get().cloned() {
            let (month, nanos) = (Month::of(at, self.tz), ccp_schemas::pricing::to_nanos(cost));
            tokio::spawn(async move { tally.add(user, month, nanos).await });
        }
    }

    /// What `user` spent so far in the month of `now`: the larger of this replica's tally and
    /// the shared one (which has every replica's finished requests at once; if it does not
    /// answer quickly, the local tally alone decides).
    pub async fn spent_everywhere(&self, user: UserId, now: DateTime<Utc>) -> Decimal {
        let local = self.spent(user, now);
        let Some(tally) = self.shared.get() else { return local };
        match tokio::time::timeout(SharedTally::READ_TIMEOUT, tally.get(user, Month::of(now, self.tz))).await {
            Ok(Ok(shared)) => local.max(shared),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the shared spend failed; using this replica's tally");
                local
            }
            Err(_) => {
                tracing::warn!("the shared spend did not answer in time; using this replica's tally");
                local
            }
        }
    }

    /// Counts a request read from the stream, unless this replica counted it already.
    fn add_seen(&self, request: RequestId, user: UserId, cost: Decimal, at: DateTime<Utc>) {
        if !self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&request) {
            self.add(user, cost, at);
        }
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
            if let Ok(Envelope { event: Event::RequestCompleted(r), occurred_at, .. }) =
                Envelope::decode(&message.payload)
            {
                if let Some(user) = r.user_id {
                    if r.cost_usd > Decimal::ZERO {
                        self.add_seen(r.request_id, user, r.cost_usd, occurred_at);
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
    fn own_requests_count_at_once_and_once() {
        let s = Spend::new(chrono_tz::UTC);
        let (u, r) = (UserId::new(), RequestId::new());
        let now = Utc::now();
        s.add_local(r, u, Decimal::ONE, now);
        assert_eq!(s.spent(u, now), Decimal::ONE);
        s.add_seen(r, u, Decimal::ONE, now);
        assert_eq!(s.spent(u, now), Decimal::ONE, "its event does not count it again");
        s.add_seen(RequestId::new(), u, Decimal::ONE, now);
        assert_eq!(s.spent(u, now), Decimal::TWO, "another replica's request counts");
    }
}
