//! Month-to-date spend per user across every replica, for budget checks on the request path —
//! which never queries ClickHouse. Each replica counts its own requests at once and stores its
//! running totals in a KV bucket that every replica watches ([`SharedTally`]); a replica starts
//! from that bucket alone when it covers the month, and otherwise rebuilds it once from the
//! request stream ([`month_read`]).

mod month_read;
mod tally;
pub mod team;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ccp_schemas::ids::UserId;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use ulid::Ulid;

pub use self::tally::SharedTally;

/// A calendar month in the budget time zone (`ccp_schemas::calendar`: where a month starts when
/// its midnight falls in a daylight-saving gap or fold is decided there, for every service).
pub use ccp_schemas::calendar::Month;

/// Spend per user in the current month: this replica's own costs as soon as a request ends, the
/// [`SharedTally`] of every replica (when opened), and — only when the tally does not cover the
/// month — the month before this replica started, read once from the request stream (own events
/// not counted twice).
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
    /// The month before this replica started has been read (or needs no reading): own events are
    /// no longer noted.
    month_read: std::sync::atomic::AtomicBool,
    /// The shared tally's watch has caught up once and covers the month, or the month has been
    /// read (budgets are meaningful).
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

    /// Whether the month to date is loaded: the shared tally's watch has caught up once and
    /// covers the month, or the month was read from the stream (the watch may fall behind later,
    /// during a NATS outage: then the local tally decides, see [`Self::spent_everywhere`]).
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

    /// What `user` spent so far in the month of `now`: the larger of this replica's tally (its
    /// own requests, and the month before it started when it read the stream) and the shared one
    /// (every replica's finished requests: with a budget within about a millisecond, without
    /// within about a second), both in memory. Before the shared tally's watch has caught up
    /// once, the local tally alone decides; after, what it saw last counts also while it
    /// re-watches.
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
