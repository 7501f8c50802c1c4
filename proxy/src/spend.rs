//! Month-to-date spend per user across every replica, for budget checks on the request path —
//! which never queries ClickHouse. Each replica counts its own requests at once and stores its
//! running totals in a KV bucket that every replica watches ([`SharedTally`]); the request stream
//! is read once at start, from the start of the month, for what happened before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy, kv};
use ccp_schemas::events::Event;
use ccp_schemas::ids::UserId;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt as _;
use rust_decimal::Decimal;
use ulid::Ulid;

/// A calendar month in the budget time zone (`ccp_schemas::calendar`: where a month starts when
/// its midnight falls in a daylight-saving gap or fold is decided there, for every service).
pub use ccp_schemas::calendar::Month;

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
        let kv = ccp_schemas::streams::own_bucket(
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
    fn unstored(&self) -> usize {
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

/// Spend per user in the current month: this replica's own costs as soon as a request ends, the
/// month before this replica started from the request stream (read once, own events not counted
/// twice), and — when opened — the [`SharedTally`] of every replica.
#[derive(Debug)]
pub struct Spend {
    tz: Tz,
    shared: std::sync::OnceLock<Arc<SharedTally>>,
    state: Mutex<(Option<Month>, HashMap<UserId, Decimal>)>,
    /// Costs counted before the shared tally was opened, per user and month (nanodollars):
    /// handed to it when it is.
    before_shared: Mutex<HashMap<(UserId, Month), u64>>,
    /// This replica's events (by event id) published while the stream is being read: they are
    /// skipped there without being decoded (their cost was counted when they were emitted).
    own: Mutex<HashSet<Ulid>>,
    /// The month before this replica started has been read: own events are no longer noted.
    month_read: std::sync::atomic::AtomicBool,
    /// That, and the shared tally's watch has caught up once (budgets are meaningful).
    ready: std::sync::atomic::AtomicBool,
    /// Where the Plan-limit states in the events read at start go (this replica's table).
    rate_limits: std::sync::OnceLock<Arc<crate::rate_limits::RateLimits>>,
}

impl Spend {
    /// An empty tally for months in `tz`.
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            shared: std::sync::OnceLock::new(),
            state: Mutex::new((None, HashMap::new())),
            before_shared: Mutex::new(HashMap::new()),
            own: Mutex::new(HashSet::new()),
            month_read: std::sync::atomic::AtomicBool::new(false),
            ready: std::sync::atomic::AtomicBool::new(false),
            rate_limits: std::sync::OnceLock::new(),
        }
    }

    /// The Plan-limit states in the events read at start reach `table` (newer ones win).
    pub(crate) fn follow_rate_limits(&self, table: Arc<crate::rate_limits::RateLimits>) {
        let _ = self.rate_limits.set(table);
    }

    /// Whether the month's events before this replica started have been read and the shared
    /// tally's watch has caught up once (it may fall behind later, during a NATS outage: then
    /// the local tally decides, see [`Self::spent_everywhere`]).
    pub fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    fn month_is_read(&self) -> bool {
        self.month_read.load(std::sync::atomic::Ordering::Acquire)
    }

    fn mark_month_read(&self) {
        self.month_read.store(true, std::sync::atomic::Ordering::Release);
        // Nothing reads the stream any more: own events need no noting.
        self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
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
            Some(current) if month < current => return,
            _ => *state = (Some(month), HashMap::new()),
        }
        *state.1.entry(user).or_default() += cost;
    }

    /// Uses the shared tally from now on, and hands it the costs counted before.
    pub fn share(&self, tally: Arc<SharedTally>) {
        if self.shared.set(tally.clone()).is_err() {
            return;
        }
        // Under the lock `add_local` checks `shared` with: no cost is left behind.
        let mut before = self.before_shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((user, month), nanos) in before.drain() {
            tally.add(user, month, nanos, true);
        }
    }

    /// Notes an event this replica is about to publish, so that the stream reader skips it
    /// (only while the stream is being read).
    pub fn emitting(&self, event: Ulid) {
        // Checked under the lock that `mark_month_read` clears the set with: nothing is left behind.
        let mut own = self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.month_is_read() {
            own.insert(event);
        }
    }

    /// Whether `event` is one of this replica's own (and forgets it: it came back once).
    fn returned(&self, event: Ulid) -> bool {
        self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&event)
    }

    /// Counts a request this replica just finished, here and in the shared tally: a user with
    /// a budget has it stored there at once, a user without one within a second (nobody needs it
    /// sooner: a budget set later is checked against the shared tally, which has it by then).
    /// Before the shared tally is opened the cost waits for it.
    pub fn add_local(&self, user: UserId, cost: Decimal, at: DateTime<Utc>, budgeted: bool) {
        self.add(user, cost, at);
        let (month, nanos) = (Month::of(at, self.tz), ccp_schemas::pricing::to_nanos(cost));
        if let Some(tally) = self.shared.get() {
            return tally.add(user, month, nanos, budgeted);
        }
        // Checked again under the lock `share` drains with: no cost is left behind.
        let mut before = self.before_shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.shared.get() {
            Some(tally) => {
                drop(before);
                tally.add(user, month, nanos, budgeted);
            }
            None => {
                let total = before.entry((user, month)).or_default();
                *total = total.saturating_add(nanos);
            }
        }
    }

    /// Whether the shared tally's watch is caught up, and how many of this replica's totals
    /// (or costs waiting for the tally to open) are not stored yet.
    pub fn tally_status(&self) -> (bool, usize) {
        match self.shared.get() {
            Some(tally) => (tally.is_live(), tally.unstored()),
            None => (false, self.before_shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()),
        }
    }

    /// Stores what the shared tally has not stored yet (at shutdown); whether everything was.
    pub async fn flush(&self) -> bool {
        match self.shared.get() {
            Some(tally) => tally.flush().await,
            None => self.before_shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty(),
        }
    }

    /// What `user` spent so far in the month of `now`: the larger of this replica's tally (the
    /// month before it started, everyone's, and its own requests since) and the shared one
    /// (every replica's finished requests: with a budget within about a millisecond, without
    /// within about a second), both in memory. Before the shared tally's watch has caught up,
    /// the local tally alone decides.
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

    /// Reads the request stream from the start of the current month up to its last event when
    /// this is called (retrying until that is done), then marks the tally ready once the shared
    /// tally's watch has caught up (or after 30 s without it). Later events
    /// are not read: every replica's costs since reach the shared tally, and other replicas'
    /// Plan-limit states their own bucket ([`crate::rate_limits`]), without this replica
    /// receiving its own events back.
    pub async fn read_month(self: Arc<Self>, client: async_nats::Client, ns: Namespace) {
        let js = jetstream::new(client.clone());
        let (mut last, mut until) = (0u64, None);
        loop {
            match self.read_month_once(&js, &client, &ns, &mut last, &mut until).await {
                Ok(()) => {
                    self.mark_month_read();
                    tracing::info!(through_sequence = last, "month to date read from the request stream");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the request stream for budgets failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        // Other replicas' costs since come through the shared tally: ready once it has caught up,
        // or after 30 s without it (budgets then count the month before this replica started and
        // its own requests until the tally catches up: better than refusing every developer).
        let waiting = std::time::Instant::now();
        while !self.shared.get().is_some_and(|t| t.is_live()) {
            if waiting.elapsed() > Duration::from_secs(30) {
                tracing::warn!(
                    "the shared spend tally has not caught up in 30 s; serving anyway — until it does, budgets \
                     do not see other replicas' costs since this replica started"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    async fn read_month_once(
        &self,
        js: &jetstream::Context,
        client: &async_nats::Client,
        ns: &Namespace,
        last: &mut u64,
        until: &mut Option<u64>,
    ) -> anyhow::Result<()> {
        let mut stream = js.get_stream(ns.stream(StreamKind::Requests)).await?;
        let until = match *until {
            Some(seq) => seq,
            None => *until.insert(stream.info().await?.state.last_sequence),
        };
        if *last >= until {
            return Ok(());
        }
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
            return Ok(());
        }
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let info = message.info().ok();
            let (sequence, pending) = info.as_ref().map_or((*last, 1), |i| (i.stream_sequence, i.pending));
            *last = sequence;
            self.count(&message);
            if sequence >= until || pending == 0 {
                return Ok(());
            }
        }
        anyhow::bail!("the request stream subscription ended")
    }

    /// Counts one event read from the request stream (unless it is this replica's own).
    fn count(&self, message: &jetstream::Message) {
        let own = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|id| id.as_str().parse::<Ulid>().ok())
            .is_some_and(|id| self.returned(id));
        if own {
            return;
        }
        if let Ok(Envelope { event: Event::RequestCompleted(r), occurred_at, .. }) = Envelope::decode(&message.payload)
        {
            if let Some(user) = r.user_id {
                if let Some(cost) = r.cost_usd.filter(|c| *c > Decimal::ZERO) {
                    self.add(user, cost, occurred_at);
                }
            }
            if let (Some(table), Some(key), Some(state)) = (self.rate_limits.get(), r.key_id, r.rate_limit) {
                table.merge(key, state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_follow_the_time_zone() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let at: DateTime<Utc> = "2026-12-01T03:00:00Z".parse().unwrap();
        let (november, december) = (Month::new(2026, 11).unwrap(), Month::new(2026, 12).unwrap());
        assert_eq!(Month::of(at, tz), november, "still November in New York");
        assert_eq!(Month::of(at, chrono_tz::UTC), december);
        assert_eq!(december.start(tz).to_rfc3339(), "2026-12-01T05:00:00+00:00");
        assert_eq!(december.next().first_day(), "2027-01-01");
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
    fn own_events_are_recognised_once_while_the_stream_is_read_and_not_noted_after() {
        let s = Spend::new(chrono_tz::UTC);
        let (u, mine, theirs, late) = (UserId::new(), Ulid::new(), Ulid::new(), Ulid::new());
        let now = Utc::now();
        s.emitting(mine);
        s.add_local(u, Decimal::ONE, now, false);
        assert_eq!(s.spent(u, now), Decimal::ONE, "counted at once");
        assert!(s.returned(mine), "its event is skipped when it comes back");
        assert!(!s.returned(mine), "but only once");
        assert!(!s.returned(theirs), "another replica's event is not ours");
        s.emitting(late);
        s.mark_month_read();
        assert!(!s.returned(late), "the stream is no longer read: nothing is kept for it");
        s.emitting(Ulid::new());
        assert!(s.own.lock().unwrap().is_empty(), "own events are not noted once the month is read");
    }

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

    #[test]
    fn costs_counted_before_the_shared_tally_opens_wait_for_it() {
        let s = Spend::new(chrono_tz::UTC);
        let (u, v) = (UserId::new(), UserId::new());
        let nov: DateTime<Utc> = "2026-11-30T23:00:00Z".parse().unwrap();
        let dec: DateTime<Utc> = "2026-12-01T01:00:00Z".parse().unwrap();
        s.add_local(u, Decimal::new(15, 1), nov, false);
        s.add_local(u, Decimal::new(25, 1), nov, true);
        s.add_local(v, Decimal::new(1, 9), nov, false);
        s.add_local(u, Decimal::ONE, dec, false);
        let waiting = s.before_shared.lock().unwrap().clone();
        assert_eq!(waiting.len(), 3);
        assert_eq!(waiting[&(u, Month::of(nov, chrono_tz::UTC))], 4_000_000_000);
        assert_eq!(waiting[&(v, Month::of(nov, chrono_tz::UTC))], 1);
        assert_eq!(waiting[&(u, Month::of(dec, chrono_tz::UTC))], 1_000_000_000);
        let flushed = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(s.flush());
        assert!(!flushed, "nothing can be stored without a shared tally");
        assert_eq!(s.before_shared.lock().unwrap().len(), 3, "and nothing is lost");
    }
}
