//! Sign-in throttling that slows attackers and never locks out the owner, and the bounded record
//! of failed sign-ins.
//!
//! Two counters decide, in this replica's memory, both forgotten after a quiet `window`:
//!
//! - **per client address** (the TCP peer, or the address a trusted proxy forwarded: see
//!   [`crate::context::ClientAddress`]): after `free_client_failures` failures the client must
//!   wait before its next attempt (1 s, then doubling up to 15 min) and is refused with 429 and
//!   `retry-after` *before* its credential is checked. Only that client: it is the one guessing.
//! - **per name** (username, or access-key prefix for `/v1/self`): after `free_name_failures`
//!   failures every attempt for that name is *slowed* (250 ms, doubling up to 2 s) before its
//!   credential is checked, whoever sends it — never refused. So an attacker spraying a username
//!   from many addresses makes each guess slower, while the owner, from a client that has not
//!   failed, still signs in (a couple of seconds late at worst).
//!
//! An attempt counts against its client from the moment it starts (parallel attempts cannot slip
//! past the limit) and is settled as a failure or a success. Failures are not one event each:
//! they are summed per name per `record_window` and published as one `sign_in_failures_counted`
//! record to the security stream (which has a retention), at most `MAX_RECORDS` names a window —
//! the rest under `*` — so a flood of failures from any number of addresses adds a bounded number
//! of records and nothing to the admin stream.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ccp_schemas::events::{SignInFailuresCounted, SignInKind};
use chrono::{DateTime, Utc};

/// Failures a client may have before it must wait.
const FREE_CLIENT_FAILURES: u32 = 5;
/// Failures of a name before its attempts are slowed.
const FREE_NAME_FAILURES: u32 = 3;
/// Longest a throttled client waits between attempts.
const MAX_CLIENT_WAIT: Duration = Duration::from_secs(15 * 60);
/// Longest an attempt for a much-failed name is slowed.
const MAX_NAME_DELAY: Duration = Duration::from_secs(2);
/// Counters are forgotten after this long without a failure.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most names and clients remembered; beyond, idle entries are dropped first.
const MAX_ENTRIES: usize = 100_000;
/// Most names with their own record per window (the rest are summed under `*`).
pub const MAX_RECORDS: usize = 100;
/// Most client addresses sampled in a record.
const SAMPLE_CLIENTS: usize = 5;
/// Most distinct clients counted exactly per record.
const MAX_COUNTED_CLIENTS: usize = 10_000;

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    failures: u32,
    pending: u32,
    last: Option<Instant>,
}

impl Entry {
    fn decayed(&mut self, now: Instant) -> &mut Self {
        if self.last.is_some_and(|last| now.duration_since(last) > WINDOW) {
            self.failures = 0;
        }
        self
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: u64,
    refused: u64,
    clients: HashSet<IpAddr>,
    sample: Vec<IpAddr>,
    reasons: std::collections::BTreeMap<String, u64>,
}

impl Record {
    fn note_client(&mut self, client: Option<IpAddr>) {
        let Some(client) = client else { return };
        if self.clients.len() < MAX_COUNTED_CLIENTS {
            self.clients.insert(client);
        }
        if self.sample.len() < SAMPLE_CLIENTS && !self.sample.contains(&client) {
            self.sample.push(client);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<IpAddr, Entry>,
    names: HashMap<String, Entry>,
    records: HashMap<String, Record>,
    window_start: Option<DateTime<Utc>>,
}

/// What an attempt may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead after this delay (zero unless the name has failed often).
    Go(Duration),
    /// The client must wait this many seconds.
    Refused(u64),
}

/// Failed sign-ins seen by this replica, by outcome (for `/metrics`).
#[derive(Debug, Default)]
pub struct ThrottleStats {
    /// Wrong credentials.
    pub failed: AtomicU64,
    /// Refused without checking (the client was throttled).
    pub refused: AtomicU64,
    /// Attempts slowed because their name failed often.
    pub slowed: AtomicU64,
}

/// The throttle of one kind of sign-in.
#[derive(Debug)]
pub struct Throttle {
    kind: SignInKind,
    state: Mutex<State>,
    /// Counters for `/metrics`.
    pub stats: ThrottleStats,
}

impl Throttle {
    /// A throttle for `kind`.
    pub fn new(kind: SignInKind) -> Self {
        Self { kind, state: Mutex::new(State::default()), stats: ThrottleStats::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts an attempt for `name` from `client`.
    pub fn begin(&self, name: &str, client: Option<IpAddr>) -> Admission {
        self.begin_at(name, client, Instant::now())
    }

    fn begin_at(&self, name: &str, client: Option<IpAddr>, now: Instant) -> Admission {
        let mut state = self.state();
        if state.clients.len() + state.names.len() > MAX_ENTRIES {
            state.clients.retain(|_, e| e.pending > 0 || e.last.is_some_and(|l| now.duration_since(l) <= WINDOW));
            state.names.retain(|_, e| e.pending > 0 || e.last.is_some_and(|l| now.duration_since(l) <= WINDOW));
        }
        if let Some(addr) = client {
            let entry = *state.clients.entry(addr).or_default().decayed(now);
            let left = if entry.failures >= FREE_CLIENT_FAILURES {
                // Past its allowance, a client gets one attempt at a time, each after its wait.
                let wait = client_wait(entry.failures);
                let waited = entry.last.map_or(wait, |last| now.duration_since(last));
                if entry.pending > 0 {
                    wait.max(Duration::from_secs(1))
                } else {
                    wait.saturating_sub(waited)
                }
            } else if entry.failures + entry.pending >= FREE_CLIENT_FAILURES {
                // Parallel attempts beyond the allowance wait for those in flight.
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            if !left.is_zero() {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.note(&mut state, name, client, false);
                return Admission::Refused(left.as_secs_f64().ceil().max(1.0) as u64);
            }
            state.clients.entry(addr).or_default().pending += 1;
        }
        let failures = state.names.entry(name.to_owned()).or_default().decayed(now).failures;
        let delay = name_delay(failures);
        if !delay.is_zero() {
            self.stats.slowed.fetch_add(1, Ordering::Relaxed);
        }
        Admission::Go(delay)
    }

    /// The attempt that [`Self::begin`] let go failed.
    pub fn failed(&self, name: &str, client: Option<IpAddr>) {
        self.failed_at(name, client, Instant::now(), None);
    }

    /// Like [`Self::failed`], with its cause counted in the record (single sign-on refusals).
    pub fn failed_because(&self, name: &str, client: Option<IpAddr>, cause: &str) {
        self.failed_at(name, client, Instant::now(), Some(cause));
    }

    fn failed_at(&self, name: &str, client: Option<IpAddr>, now: Instant, cause: Option<&str>) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        if let Some(addr) = client {
            let entry = state.clients.entry(addr).or_default();
            entry.pending = entry.pending.saturating_sub(1);
            entry.failures = entry.failures.saturating_add(1);
            entry.last = Some(now);
        }
        let entry = state.names.entry(name.to_owned()).or_default();
        entry.failures = entry.failures.saturating_add(1);
        entry.last = Some(now);
        let record = self.note(&mut state, name, client, true);
        if let Some(cause) = cause {
            *record.reasons.entry(cause.to_owned()).or_default() += 1;
        }
    }

    /// The attempt that [`Self::begin`] let go succeeded: the client's and the name's failures are
    /// forgotten.
    pub fn succeeded(&self, name: &str, client: Option<IpAddr>) {
        let mut state = self.state();
        if let Some(addr) = client {
            if let Some(entry) = state.clients.get_mut(&addr) {
                entry.pending = entry.pending.saturating_sub(1);
                entry.failures = 0;
            }
        }
        state.names.remove(name);
    }

    /// The attempt that [`Self::begin`] let go was never checked (the API was busy or halted).
    pub fn abandoned(&self, client: Option<IpAddr>) {
        if let Some(addr) = client {
            if let Some(entry) = self.state().clients.get_mut(&addr) {
                entry.pending = entry.pending.saturating_sub(1);
            }
        }
    }

    fn note<'s>(&self, state: &'s mut State, name: &str, client: Option<IpAddr>, failed: bool) -> &'s mut Record {
        state.window_start.get_or_insert_with(Utc::now);
        let key = if state.records.contains_key(name) || state.records.len() < MAX_RECORDS {
            name.to_owned()
        } else {
            "*".to_owned()
        };
        let record = state.records.entry(key).or_default();
        if failed {
            record.failures += 1;
        } else {
            record.refused += 1;
        }
        record.note_client(client);
        record
    }

    /// The records of the window that ends now (and starts a new one); empty when nothing failed.
    pub fn take_records(&self) -> Vec<SignInFailuresCounted> {
        let mut state = self.state();
        let Some(window_start) = state.window_start.take() else { return Vec::new() };
        let window_end = Utc::now();
        let mut records: Vec<SignInFailuresCounted> = state
            .records
            .drain()
            .map(|(name, r)| SignInFailuresCounted {
                kind: self.kind,
                name,
                failures: r.failures,
                refused: r.refused,
                clients: r.clients.len() as u64,
                sample_clients: r.sample,
                reasons: r.reasons,
                window_start,
                window_end,
            })
            .collect();
        records.sort_by(|a, b| b.failures.cmp(&a.failures).then_with(|| a.name.cmp(&b.name)));
        records
    }
}

/// How long a client with `failures` (≥ the allowance) waits after its last one.
fn client_wait(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE_CLIENT_FAILURES).min(20);
    Duration::from_secs(1u64 << doublings).min(MAX_CLIENT_WAIT)
}

/// How long an attempt for a name with `failures` is slowed.
fn name_delay(failures: u32) -> Duration {
    if failures < FREE_NAME_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_NAME_FAILURES).min(10);
    (Duration::from_millis(250) * (1u32 << doublings)).min(MAX_NAME_DELAY)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)))
    }

    #[test]
    fn a_guessing_client_waits_longer_and_longer_and_only_it() {
        let t = Throttle::new(SignInKind::AdminLogin);
        let now = Instant::now();
        for _ in 0..FREE_CLIENT_FAILURES {
            assert!(matches!(t.begin_at("admin", ip(1), now), Admission::Go(_)));
            t.failed_at("admin", ip(1), now, None);
        }
        assert_eq!(t.begin_at("admin", ip(1), now), Admission::Refused(1));
        assert!(matches!(t.begin_at("admin", ip(1), now + Duration::from_secs(1)), Admission::Go(_)));
        t.failed_at("admin", ip(1), now + Duration::from_secs(1), None);
        assert_eq!(t.begin_at("admin", ip(1), now + Duration::from_secs(1)), Admission::Refused(2), "doubled");
        // Another client is not refused, whatever the name has suffered.
        assert!(matches!(t.begin_at("admin", ip(2), now + Duration::from_secs(2)), Admission::Go(_)));
        // After a quiet window the client starts afresh.
        assert!(matches!(t.begin_at("admin", ip(1), now + WINDOW + Duration::from_secs(60)), Admission::Go(_)));
    }

    #[test]
    fn a_sprayed_name_is_slowed_for_everyone_but_never_refused() {
        let t = Throttle::new(SignInKind::AdminLogin);
        let now = Instant::now();
        for n in 0..200 {
            assert!(matches!(t.begin_at("admin", ip(n), now), Admission::Go(_)));
            t.failed_at("admin", ip(n), now, None);
        }
        // The owner, from a client that has not failed: slowed by at most MAX_NAME_DELAY.
        assert_eq!(t.begin_at("admin", ip(1000), now), Admission::Go(MAX_NAME_DELAY));
        t.succeeded("admin", ip(1000));
        assert_eq!(t.begin_at("admin", ip(1001), now), Admission::Go(Duration::ZERO), "a success forgets the name");
        assert_eq!(name_delay(FREE_NAME_FAILURES), Duration::from_millis(250));
        assert_eq!(name_delay(FREE_NAME_FAILURES + 1), Duration::from_millis(500));
    }

    #[test]
    fn parallel_attempts_cannot_slip_past_the_allowance() {
        let t = Throttle::new(SignInKind::SelfService);
        let now = Instant::now();
        let admitted = (0..20).filter(|_| matches!(t.begin_at("ak_x", ip(1), now), Admission::Go(_))).count();
        assert_eq!(admitted, FREE_CLIENT_FAILURES as usize);
        for _ in 0..FREE_CLIENT_FAILURES {
            t.failed_at("ak_x", ip(1), now, None);
        }
        let later = now + Duration::from_secs(5);
        let admitted = (0..20).filter(|_| matches!(t.begin_at("ak_x", ip(1), later), Admission::Go(_))).count();
        assert_eq!(admitted, 1, "past the allowance, one attempt at a time");
    }

    #[test]
    fn failures_are_summed_per_name_with_a_bounded_number_of_records() {
        let t = Throttle::new(SignInKind::AdminLogin);
        let now = Instant::now();
        for n in 0..30 {
            let _ = t.begin_at("admin", ip(5000 + n), now);
            t.failed_at("admin", ip(5000 + n), now, None);
        }
        for n in 0..(MAX_RECORDS as u32 + 49) {
            let name = format!("user{n}");
            let _ = t.begin_at(&name, ip(n), now);
            t.failed_at(&name, ip(n), now, None);
        }
        let records = t.take_records();
        assert_eq!(records.len(), MAX_RECORDS + 1, "the cap, plus `*` for the rest");
        let admin = records.iter().find(|r| r.name == "admin").unwrap();
        assert_eq!((admin.failures, admin.clients, admin.sample_clients.len()), (30, 30, SAMPLE_CLIENTS));
        let rest = records.iter().find(|r| r.name == "*").unwrap();
        assert_eq!(rest.failures, 50);
        assert!(t.take_records().is_empty(), "a new window starts empty");
    }
}
