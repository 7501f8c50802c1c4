//! The per-access-key circuit breaker: a state machine apart from the web layer, fed Anthropic
//! outcomes, returning the transitions to announce. Bedrock outcomes never reach it.
//!
//! Closed → (`threshold` failures within `window`) → Open → (after `open_for`, the next request
//! is the one probe) → HalfOpen → success: Closed / failure: Open again. Transitions made by
//! other replicas are applied with [`Breakers::apply_remote`], so a key trips once for the fleet.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use ccp_schemas::events::{CloseCause, TripReason};
use ccp_schemas::ids::AccessKeyId;
use tokio::time::Instant;

/// When a key's circuit opens (failures within a window) and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures that open the circuit…
    pub threshold: u32,
    /// …within this window.
    pub window: Duration,
    /// How long Anthropic is skipped before a probe.
    pub open_for: Duration,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Anthropic, as usual.
    Plan,
    /// Anthropic, as the half-open probe: its outcome closes or re-opens the circuit.
    Probe,
    /// Skip Anthropic: the circuit is open (or another request is probing).
    Skip,
}

/// A state change to announce to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Anthropic is skipped until `retry_in` from now.
    Opened {
        /// The last failure.
        reason: TripReason,
        /// Failures counted.
        failures: u32,
        /// Time until a probe.
        retry_in: Duration,
    },
    /// A probe is under way.
    HalfOpened,
    /// Anthropic is used again.
    Closed(CloseCause),
}

#[derive(Debug, Clone)]
enum State {
    Closed {
        failures: VecDeque<Instant>,
    },
    Open {
        until: Instant,
    },
    /// `probe`: when this replica's probe started (a probe whose outcome never came back — the
    /// client went away — stops blocking after `open_for`).
    HalfOpen {
        probe: Option<Instant>,
    },
}

impl Default for State {
    fn default() -> Self {
        Self::Closed { failures: VecDeque::new() }
    }
}

/// An Anthropic outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Anthropic answered (any status that is not a failure, client errors included).
    Success,
    /// 429, 529, 5xx, connection error or timeout.
    Failure(TripReason),
}

/// The breakers of every key.
#[derive(Debug)]
pub struct Breakers {
    config: BreakerConfig,
    states: Mutex<HashMap<AccessKeyId, State>>,
}

impl Breakers {
    /// Breakers with these thresholds.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, states: Mutex::new(HashMap::new()) }
    }

    fn with<T>(&self, key: AccessKeyId, f: impl FnOnce(&mut State) -> T) -> T {
        let mut states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(states.entry(key).or_default())
    }

    /// Where the next request of `key` goes, and the transition that decision makes.
    pub fn route(&self, key: AccessKeyId, now: Instant) -> (Route, Option<Transition>) {
        self.with(key, |state| match state {
            State::Closed { .. } => (Route::Plan, None),
            State::Open { until } if now >= *until => {
                *state = State::HalfOpen { probe: Some(now) };
                (Route::Probe, Some(Transition::HalfOpened))
            }
            State::Open { .. } => (Route::Skip, None),
            State::HalfOpen { probe: Some(started) } if now.duration_since(*started) < self.config.open_for => {
                (Route::Skip, None)
            }
            // Another replica announced half-open, or our probe was lost: this request probes.
            State::HalfOpen { .. } => {
                *state = State::HalfOpen { probe: Some(now) };
                (Route::Probe, None)
            }
        })
    }

    /// Feeds an Anthropic outcome; returns the transition to announce, if any.
    pub fn record(&self, key: AccessKeyId, route: Route, outcome: Outcome, now: Instant) -> Option<Transition> {
        let cfg = self.config;
        self.with(key, |state| match (route, outcome, &mut *state) {
            (Route::Probe, Outcome::Success, State::HalfOpen { .. }) => {
                *state = State::default();
                Some(Transition::Closed(CloseCause::ProbeSucceeded))
            }
            (Route::Probe, Outcome::Failure(_), State::HalfOpen { .. }) => {
                *state = State::Open { until: now + cfg.open_for };
                Some(Transition::Opened { reason: TripReason::ProbeFailed, failures: 1, retry_in: cfg.open_for })
            }
            (_, Outcome::Failure(reason), State::Closed { failures }) => {
                while failures.front().is_some_and(|t| now.duration_since(*t) > cfg.window) {
                    failures.pop_front();
                }
                failures.push_back(now);
                let n = u32::try_from(failures.len()).unwrap_or(u32::MAX);
                if n >= cfg.threshold {
                    *state = State::Open { until: now + cfg.open_for };
                    Some(Transition::Opened { reason, failures: n, retry_in: cfg.open_for })
                } else {
                    None
                }
            }
            // Successes while closed, and late outcomes of requests routed before a transition.
            _ => None,
        })
    }

    /// Applies a transition announced by any replica (this one included; idempotent).
    pub fn apply_remote(&self, key: AccessKeyId, transition: Transition, now: Instant) {
        self.with(key, |state| match transition {
            Transition::Opened { retry_in, .. } => {
                let until = now + retry_in;
                match state {
                    State::Open { until: current } if *current >= until => {}
                    _ => *state = State::Open { until },
                }
            }
            Transition::HalfOpened => {
                if !matches!(state, State::HalfOpen { .. }) {
                    *state = State::HalfOpen { probe: None };
                }
            }
            Transition::Closed(_) => {
                if !matches!(state, State::Closed { .. }) {
                    *state = State::default();
                }
            }
        });
    }

    /// Whether Anthropic is being skipped for `key`.
    #[cfg(test)]
    pub fn is_open(&self, key: AccessKeyId, now: Instant) -> bool {
        self.with(key, |state| matches!(state, State::Open { until } if now < *until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Breakers {
        Breakers::new(BreakerConfig {
            threshold: 3,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30 * 60),
        })
    }

    const FAIL: Outcome = Outcome::Failure(TripReason::RateLimited);

    #[tokio::test(start_paused = true)]
    async fn three_failures_within_the_window_open_the_circuit() {
        let b = breakers();
        let k = AccessKeyId::new();
        assert_eq!(b.record(k, Route::Plan, FAIL, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(b.record(k, Route::Plan, FAIL, Instant::now()), None);
        tokio::time::advance(Duration::from_secs(20)).await;
        let t = b.record(k, Route::Plan, FAIL, Instant::now());
        assert_eq!(
            t,
            Some(Transition::Opened {
                reason: TripReason::RateLimited,
                failures: 3,
                retry_in: Duration::from_secs(1800)
            })
        );
        assert_eq!(b.route(k, Instant::now()), (Route::Skip, None));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_beyond_the_window_do_not() {
        let b = breakers();
        let k = AccessKeyId::new();
        for _ in 0..5 {
            assert_eq!(b.record(k, Route::Plan, FAIL, Instant::now()), None);
            tokio::time::advance(Duration::from_secs(31)).await;
        }
        assert_eq!(b.route(k, Instant::now()).0, Route::Plan);
    }

    #[tokio::test(start_paused = true)]
    async fn after_open_for_one_probe_closes_or_reopens() {
        let b = breakers();
        let k = AccessKeyId::new();
        for _ in 0..3 {
            b.record(k, Route::Plan, FAIL, Instant::now());
        }
        tokio::time::advance(Duration::from_secs(29 * 60)).await;
        assert_eq!(b.route(k, Instant::now()).0, Route::Skip);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.route(k, Instant::now()), (Route::Probe, Some(Transition::HalfOpened)));
        assert_eq!(b.route(k, Instant::now()), (Route::Skip, None), "only one probe at a time");
        let t = b.record(k, Route::Probe, Outcome::Failure(TripReason::Overloaded), Instant::now());
        assert!(matches!(t, Some(Transition::Opened { reason: TripReason::ProbeFailed, .. })));
        tokio::time::advance(Duration::from_secs(30 * 60)).await;
        assert_eq!(b.route(k, Instant::now()).0, Route::Probe);
        assert_eq!(
            b.record(k, Route::Probe, Outcome::Success, Instant::now()),
            Some(Transition::Closed(CloseCause::ProbeSucceeded))
        );
        assert_eq!(b.route(k, Instant::now()), (Route::Plan, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_probe_does_not_keep_the_circuit_half_open_for_ever() {
        let b = breakers();
        let k = AccessKeyId::new();
        for _ in 0..3 {
            b.record(k, Route::Plan, FAIL, Instant::now());
        }
        tokio::time::advance(Duration::from_secs(30 * 60)).await;
        assert_eq!(b.route(k, Instant::now()).0, Route::Probe);
        // The probe's outcome never arrives (its client disconnected).
        tokio::time::advance(Duration::from_secs(29 * 60)).await;
        assert_eq!(b.route(k, Instant::now()).0, Route::Skip);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(b.route(k, Instant::now()).0, Route::Probe, "a new probe after open_for");
    }

    #[tokio::test(start_paused = true)]
    async fn other_replicas_transitions_apply_and_are_idempotent() {
        let b = breakers();
        let k = AccessKeyId::new();
        let opened =
            Transition::Opened { reason: TripReason::ServerError, failures: 3, retry_in: Duration::from_secs(600) };
        b.apply_remote(k, opened, Instant::now());
        b.apply_remote(k, opened, Instant::now());
        assert_eq!(b.route(k, Instant::now()).0, Route::Skip);
        b.apply_remote(k, Transition::HalfOpened, Instant::now());
        assert_eq!(
            b.route(k, Instant::now()),
            (Route::Probe, None),
            "a half-open circuit lets one local probe through"
        );
        b.apply_remote(k, Transition::Closed(CloseCause::ManualReset), Instant::now());
        assert_eq!(b.route(k, Instant::now()).0, Route::Plan);
        // Successes never open; a single failure after closing does not either.
        assert_eq!(b.record(k, Route::Plan, Outcome::Success, Instant::now()), None);
        assert_eq!(b.record(k, Route::Plan, FAIL, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent() {
        let b = breakers();
        let (k1, k2) = (AccessKeyId::new(), AccessKeyId::new());
        for _ in 0..3 {
            b.record(k1, Route::Plan, FAIL, Instant::now());
        }
        assert!(b.is_open(k1, Instant::now()));
        assert!(!b.is_open(k2, Instant::now()));
    }
}
