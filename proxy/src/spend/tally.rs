//! The shared tally: every replica's month-to-date spend per user in a KV bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ccp_schemas::ids::UserId;
use ccp_schemas::Namespace;
use chrono::{DateTime, Utc};
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
/// before the put reached it. A writer is one process — its replica id, the `actor` of its usage
/// events: a restarted replica starts new totals and its old ones stay in the sum.
///
/// A rebuild ([`crate::spend`]: the month read from the request stream, when the bucket does not
/// say it covers the month) stores, per writer, the total of that writer's events in the stream
/// under `<user_id>.<YYYY-MM>.<writer>.settled`: a writer's part of the sum is the larger of its
/// own total and that one (both count only its requests), so a writer that died before storing
/// its last totals is complete again, and nothing is counted twice. The key [`COVERED`] holds the
/// instant from which the bucket has every cost; a replica whose month started after it needs no
/// read of the stream.
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
    /// What the watch delivered: per `<user>.<month>`, each writer's totals.
    seen: Mutex<HashMap<String, HashMap<String, Seen>>>,
    /// The [`COVERED`] entry as the watch last delivered it: the instant, its revision, when it
    /// was written.
    covered: Mutex<Option<Covered>>,
    /// The watch has delivered every value the bucket held when it started and is following.
    live: std::sync::atomic::AtomicBool,
    /// The watch has caught up once: what it saw is a lower bound of every total from then on
    /// (totals only grow), also while it is re-watching.
    loaded: std::sync::atomic::AtomicBool,
}

/// The key whose value is the instant (RFC 3339) from which the bucket holds every replica's
/// costs: its month and the later ones need no read of the request stream. A key without a dot,
/// which versions before it ignore.
pub const COVERED: &str = "covered";

/// The suffix of a writer's total rebuilt from the request stream.
const SETTLED: &str = ".settled";

/// How old the [`COVERED`] entry may grow before it is written again (the bucket's age limit,
/// 62 days, would remove it).
const COVERED_REFRESH: chrono::Duration = chrono::Duration::days(7);

/// A writer's totals of one user's month as the watch saw them (nanodollars).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// What the writer stored itself.
    live: u64,
    /// What a rebuild counted of its events in the request stream.
    settled: u64,
}

/// The [`COVERED`] entry.
#[derive(Debug, Clone, Copy)]
struct Covered {
    from: DateTime<Utc>,
    revision: u64,
    written: DateTime<Utc>,
}

/// The writer id of a replica: its id with anything a KV key token cannot hold (a dot of a host
/// name, for one) replaced by `_`. The rebuild attributes an event to the same id from its actor.
pub(crate) fn writer_key(replica: &str) -> String {
    replica.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Whether a writer id is one of the versions before writers were replica ids (a ULID): their
/// costs also reach a rebuild under the replica id, so they count only where no rebuild did.
fn legacy_writer(writer: &str) -> bool {
    writer.len() == 26 && writer.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// `<user>.<month>.<writer>[.settled]` → (`<user>.<month>`, writer, settled); anything else (an
/// older layout, [`COVERED`]) is `None`.
fn parse_key(key: &str) -> Option<(&str, &str, bool)> {
    let (key, settled) = match key.strip_suffix(SETTLED) {
        Some(k) => (k, true),
        None => (key, false),
    };
    let (user_month, writer) = key.rsplit_once('.')?;
    user_month.contains('.').then_some((user_month, writer, settled))
}

/// A user's month over every writer (nanodollars): each writer's larger total. Writers of older
/// versions (a ULID) store no rebuilt total under that id — a rebuild counts their events under
/// their replica ids, as totals without a writer's own beside them, like those of writers that
/// died before storing anything — so the larger of the two sums counts for both: never twice,
/// short at most by the smaller while versions are mixed.
fn sum(writers: &HashMap<String, Seen>) -> u64 {
    let (mut total, mut legacy, mut unowned) = (0u64, 0u64, 0u64);
    for (writer, s) in writers {
        if legacy_writer(writer) {
            legacy = legacy.saturating_add(s.live.max(s.settled));
        } else if s.live == 0 {
            unowned = unowned.saturating_add(s.settled);
        } else {
            total = total.saturating_add(s.live.max(s.settled));
        }
    }
    total.saturating_add(legacy.max(unowned))
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
    /// Opens (or creates) the bucket on one NATS replica, writing as a new writer of its own
    /// (tests and tools).
    pub async fn open(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<Self> {
        Self::open_as(js, ns, &format!("w-{}", Ulid::new().to_string().to_ascii_lowercase()), 1).await
    }

    /// Opens (or creates) the bucket on `nats_replicas` NATS replicas, writing as the proxy
    /// replica `replica` (the actor of its events).
    pub async fn open_as(
        js: &jetstream::Context,
        ns: &Namespace,
        replica: &str,
        nats_replicas: usize,
    ) -> anyhow::Result<Self> {
        let kv = ccp_runtime::streams::own_bucket(
            js,
            format!("{}_spend", ns.prefix()),
            Duration::from_secs(62 * 86_400),
            "ClaudeCodeProxy month-to-date spend per user and replica (nanodollars)",
            nats_replicas,
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
            writer: writer_key(replica),
            mine: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
            publishing: tokio::sync::Mutex::new(()),
            seen: Mutex::new(HashMap::new()),
            covered: Mutex::new(None),
            live: std::sync::atomic::AtomicBool::new(false),
            loaded: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(super) fn user_month(user: UserId, month: Month) -> String {
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
        self.note(&user_month, &self.writer, total, false);
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
                    self.refresh_covered().await;
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

    /// Marks every total of this writer as not stored: after the watch failed (the bucket may
    /// have been deleted and created again) or one of its keys was deleted, its totals are put
    /// again (they are whole totals: putting one twice changes nothing).
    fn unstore_mine(&self, only: Option<&str>) {
        let mut mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (user_month, t) in mine.iter_mut() {
            if only.is_none_or(|um| um == user_month) {
                t.stored = 0;
                t.sent = 0;
            }
        }
    }

    /// Loads the bucket ([`Self::load`]), then follows its updates from there.
    async fn watch_once(&self) -> anyhow::Result<()> {
        self.unstore_mine(None);
        let loaded = self.load().await?;
        self.set_live();
        let mut updates = self.kv.watch_all_from_revision(loaded + 1).await?;
        while let Some(entry) = updates.next().await {
            let entry = entry?;
            self.apply(&entry.key, entry.operation, &entry.value, entry.revision, entry.created);
        }
        anyhow::bail!("the watch ended")
    }

    /// Reads the newest value of every key through an ordered pull consumer, a batch at a time
    /// (a watch's push delivery of a whole bucket at once was buffered whole in memory: about
    /// 0.4 kB a key, kept by the allocator); the stream sequence it got to.
    async fn load(&self) -> anyhow::Result<u64> {
        use async_nats::jetstream::consumer::{pull, DeliverPolicy};
        let status = self.kv.status().await?;
        if status.values() == 0 {
            return Ok(status.info.state.last_sequence);
        }
        let consumer = self
            .kv
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{}>", self.kv.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let mut last = 0;
        while let Some(message) = messages.next().await {
            let message = message?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (seq, pending, published) = (info.stream_sequence, info.pending, info.published);
            let operation = match message.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str()) {
                Some("DEL") => kv::Operation::Delete,
                Some("PURGE") => kv::Operation::Purge,
                _ => kv::Operation::Put,
            };
            if let Some(key) = message.subject.as_str().strip_prefix(self.kv.prefix.as_str()) {
                self.apply(key, operation, &message.payload, seq, published);
            }
            last = seq;
            if pending == 0 {
                break;
            }
        }
        Ok(last)
    }

    /// Applies one entry of the bucket.
    fn apply(&self, key: &str, operation: kv::Operation, value: &[u8], revision: u64, created: time::OffsetDateTime) {
        if key == COVERED {
            return self.note_covered(operation, value, revision, created);
        }
        // `<user>.<month>.<writer>[.settled]`; anything else (an older layout) is not ours.
        let Some((user_month, writer, settled)) = parse_key(key) else { return };
        match operation {
            kv::Operation::Put => {
                let value = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
                if let Some(value) = value {
                    self.note(user_month, writer, value, settled);
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                {
                    let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(s) = seen.get_mut(user_month).and_then(|w| w.get_mut(writer)) {
                        *s = if settled { Seen { settled: 0, ..*s } } else { Seen { live: 0, ..*s } };
                    }
                }
                if !settled && writer == self.writer {
                    // Ours: stored again with the next round.
                    self.unstore_mine(Some(user_month));
                    let counted = {
                        let mine = self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        mine.get(user_month).map(|t| t.counted)
                    };
                    if let Some(counted) = counted {
                        self.note(user_month, writer, counted, false);
                    }
                }
            }
        }
    }

    fn set_live(&self) {
        self.loaded.store(true, std::sync::atomic::Ordering::Release);
        self.live.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Keeps the larger of what is known for a writer's total (or its rebuilt total: `settled`)
    /// and `value` (totals only grow).
    fn note(&self, user_month: &str, writer: &str, value: u64, settled: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.contains_key(user_month) {
            seen.insert(user_month.to_owned(), HashMap::new());
        }
        let Some(writers) = seen.get_mut(user_month) else { return };
        if !writers.contains_key(writer) {
            writers.insert(writer.to_owned(), Seen::default());
        }
        let Some(known) = writers.get_mut(writer) else { return };
        let slot = if settled { &mut known.settled } else { &mut known.live };
        *slot = (*slot).max(value);
    }

    fn note_covered(&self, operation: kv::Operation, value: &[u8], revision: u64, created: time::OffsetDateTime) {
        let mut covered = self.covered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *covered = match operation {
            kv::Operation::Put => std::str::from_utf8(value)
                .ok()
                .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
                .map(|from| Covered {
                    from: from.with_timezone(&Utc),
                    revision,
                    written: DateTime::<Utc>::from(std::time::SystemTime::from(created)),
                }),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
    }

    /// The instant from which the bucket holds every replica's costs, as the watch last saw it
    /// (`None`: not known to hold them — never rebuilt, or lost).
    pub fn covered_from(&self) -> Option<DateTime<Utc>> {
        self.covered.lock().unwrap_or_else(std::sync::PoisonError::into_inner).map(|c| c.from)
    }

    /// Notes that the bucket holds every cost from `from` on (after a rebuild from then): unless
    /// it already says so of an earlier instant.
    pub async fn set_covered(&self, from: DateTime<Utc>) -> anyhow::Result<()> {
        let value = from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let keep = |known: &str| DateTime::parse_from_rfc3339(known).is_ok_and(|k| k <= from);
        self.raise(COVERED, &value, keep).await.map(|_| ())
    }

    /// Writes `value` under `key` unless the entry there is to be kept, by compare-and-set (so
    /// writers at once cannot undo each other's raise); whether it was written.
    async fn raise(&self, key: &str, value: &str, keep: impl Fn(&str) -> bool) -> anyhow::Result<bool> {
        for _ in 0..20 {
            let written = match self.kv.entry(key).await? {
                Some(e) if e.operation == kv::Operation::Put && std::str::from_utf8(&e.value).is_ok_and(&keep) => {
                    return Ok(false)
                }
                Some(e) => match self.kv.update(key, value.to_owned().into(), e.revision).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => return Err(e.into()),
                },
                None => match self.kv.create(key, value.to_owned().into()).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(e.into()),
                },
            };
            if written {
                return Ok(true);
            }
        }
        anyhow::bail!("{key}: other writers kept changing it")
    }

    /// Writes the [`COVERED`] entry again, unchanged, when it is [`COVERED_REFRESH`] old (by a
    /// compare-and-set: of replicas doing it at once, one does).
    async fn refresh_covered(&self) {
        let known = *self.covered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(c) = known.filter(|c| Utc::now() - c.written > COVERED_REFRESH) else { return };
        let value = bytes::Bytes::from(c.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Err(e) = self.kv.update(COVERED, value, c.revision).await {
            tracing::debug!(error = %e, "the spend tally's coverage was refreshed by another replica");
        }
    }

    /// Stores rebuilt totals: per `(<user>.<month>, writer)`, what the request stream holds of
    /// that writer's costs; how many were raised. Each is raised, never lowered, so rebuilds that
    /// run at once, having read to different points, leave the larger. 64 at a time (a round
    /// trip each, two when raised).
    pub async fn store_settled(&self, totals: HashMap<(String, String), u64>) -> anyhow::Result<usize> {
        let mut raising = futures_util::stream::iter(totals)
            .map(|((user_month, writer), total)| async move {
                let keep = |known: &str| known.parse::<u64>().is_ok_and(|k| k >= total);
                let raised = self.raise(&format!("{user_month}.{writer}{SETTLED}"), &total.to_string(), keep).await?;
                self.note(&user_month, &writer, total, true);
                anyhow::Ok(raised)
            })
            .buffer_unordered(64);
        let mut raised = 0;
        while let Some(r) = raising.next().await {
            raised += usize::from(r?);
        }
        Ok(raised)
    }

    /// A user's month so far over every writer, in USD, as the watch last saw it; `None` until
    /// the watch has caught up once (after that, while it is re-watching — a NATS outage — what
    /// it saw last: a replica that started from the tally has nothing else of the month before).
    pub fn cached(&self, user: UserId, month: Month) -> Option<Decimal> {
        if !self.loaded.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let nanos = seen.get(&Self::user_month(user, month)).map_or(0u64, sum);
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

    #[test]
    fn keys_name_a_writer_and_whether_its_total_was_rebuilt() {
        let live = "usr_01JABCDEFGHJKMNPQRSTVWXYZ0.2026-12.proxy-7f9-abc123";
        assert_eq!(parse_key(live), Some(("usr_01JABCDEFGHJKMNPQRSTVWXYZ0.2026-12", "proxy-7f9-abc123", false)));
        let settled = format!("{live}{SETTLED}");
        assert_eq!(parse_key(&settled), Some(("usr_01JABCDEFGHJKMNPQRSTVWXYZ0.2026-12", "proxy-7f9-abc123", true)));
        assert_eq!(parse_key(COVERED), None, "the coverage is no total");
        assert_eq!(parse_key("usr_01J.2026-12"), None, "an older layout");
        assert_eq!(writer_key("ip-10-0-0-7.ec2.internal-abc123"), "ip-10-0-0-7_ec2_internal-abc123");
        assert!(parse_key(&format!("usr_1.2026-12.{}", writer_key("a.b-c"))).is_some_and(|(_, w, _)| w == "a_b-c"));
    }

    #[test]
    fn a_writers_part_is_the_larger_of_its_own_and_its_rebuilt_total_and_no_cost_counts_twice() {
        let seen = |pairs: &[(&str, u64, u64)]| -> HashMap<String, Seen> {
            pairs.iter().map(|(w, live, settled)| ((*w).to_owned(), Seen { live: *live, settled: *settled })).collect()
        };
        // A live writer ahead of the rebuild, a dead one that stored less than it spent.
        assert_eq!(sum(&seen(&[("proxy-a", 100, 60), ("proxy-b", 30, 45)])), 145);
        // Writers of older versions (a ULID) count while nothing was rebuilt…
        let legacy = "01JF3ZK4W8Q0V9X2Y6T5R7N1MB";
        assert!(legacy_writer(legacy) && !legacy_writer("proxy-a") && !legacy_writer("w-01jf3zk4w8q0v9x2y6t5r7n1mb"));
        assert_eq!(sum(&seen(&[(legacy, 50, 0), ("proxy-a", 10, 0)])), 60);
        // …and not twice after a rebuild, which counted their events under their replica ids…
        assert_eq!(sum(&seen(&[(legacy, 50, 0), ("proxy-a", 10, 0), ("proxy-old", 0, 50)])), 60);
        // …nor lost when they spend on after it.
        assert_eq!(sum(&seen(&[(legacy, 80, 0), ("proxy-a", 10, 0), ("proxy-old", 0, 50)])), 90);
        // A writer that died before storing anything counts by its rebuilt total.
        assert_eq!(sum(&seen(&[("proxy-a", 10, 4), ("proxy-dead", 0, 7)])), 17);
    }
}
