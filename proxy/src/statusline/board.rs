//! What the status line knows about a key beyond the proxy's own tables: its circuit (open
//! since when, and why) and how its last request was answered (Anthropic, or Bedrock since
//! when, and why) — across every replica, not only this one.
//!
//! Only keys whose status line is asked for are watched, lazily: the first ask subscribes to the
//! key's two subjects (`<p>.request.<key>` and `<p>.circuit.<key>`, plain NATS subscriptions —
//! every replica's events of that key, as they are published), then reads the last event of each
//! from JetStream once (direct get: what happened before). A watch ends after
//! [`IDLE`] without an ask. A proxy whose developers use no status line receives nothing more
//! than before; one that serves status lines receives the events of those developers' keys
//! (decoding one costs a few microseconds, off the request path).
//!
//! Every answer is served from memory: an ask never waits on NATS, except the very first of a
//! key, which waits at most [`FIRST_LOAD`] for the last events (so a developer already on
//! Bedrock is not told otherwise by their first line).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ccp_schemas::events::{Event, FallbackReason, Provider, RateLimitState, TripReason};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

/// A watch ends after this long without an ask (Claude Code asks every few seconds while a
/// session is active).
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// The longest the first ask of a key waits for the key's last events.
pub const FIRST_LOAD: Duration = Duration::from_millis(250);

/// The state of a key's circuit, from its transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Anthropic is skipped (until `retry_at`).
    Open,
    /// One probe may go to Anthropic; the rest still go to Bedrock.
    HalfOpen,
    /// Anthropic is used.
    Closed,
}

impl CircuitState {
    /// The snake_case label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Closed => "closed",
        }
    }
}

/// A key's circuit as its last transitions tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitFacts {
    /// The current state.
    pub state: CircuitState,
    /// When the last transition happened.
    pub at: DateTime<Utc>,
    /// When Anthropic started being skipped (the first opening of this episode; a probe that
    /// failed and re-opened the circuit does not move it).
    pub since: DateTime<Utc>,
    /// Why it opened (the first failure of this episode).
    pub reason: Option<TripReason>,
    /// When the next probe is due (while open).
    pub retry_at: Option<DateTime<Utc>>,
}

/// How a key's last request was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestFacts {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Who answered (`None`: the proxy refused it).
    pub provider: Provider,
    /// Why Bedrock answered.
    pub fallback_reason: Option<FallbackReason>,
    /// Since when the key's requests have been answered by Bedrock without interruption (as
    /// far as this watch saw them), while the last one was.
    pub bedrock_since: Option<DateTime<Utc>>,
}

/// Everything the board knows about one key.
#[derive(Debug, Clone, Default)]
pub struct KeyFacts {
    /// The circuit, once a transition was seen.
    pub circuit: Option<CircuitFacts>,
    /// The last request Anthropic or Bedrock answered.
    pub last_request: Option<RequestFacts>,
    /// The newest Plan-limit state (with the unified subscription limits) the key's events
    /// carried: kept when a later answer (a 429 without them) replaced the proxy's own.
    pub plan: Option<Arc<RateLimitState>>,
}

impl KeyFacts {
    /// Folds one event of the key (in any order: an older event than what is known changes
    /// nothing).
    pub fn apply(&mut self, envelope: &Envelope) {
        let at = envelope.occurred_at;
        match &envelope.event {
            Event::RequestCompleted(r) => {
                if let Some(state) = r.rate_limit.as_ref().filter(|s| s.unified.is_some()) {
                    if self.plan.as_ref().is_none_or(|p| p.observed_at < state.observed_at) {
                        self.plan = Some(Arc::new(state.clone()));
                    }
                }
                // Refused requests (provider none) say nothing about where requests go.
                if r.provider == Provider::None || self.last_request.as_ref().is_some_and(|l| l.at > at) {
                    return;
                }
                let bedrock_since = match (r.provider, &self.last_request) {
                    (Provider::Bedrock, Some(RequestFacts { bedrock_since: Some(since), .. })) => Some(*since),
                    (Provider::Bedrock, _) => Some(at),
                    _ => None,
                };
                self.last_request =
                    Some(RequestFacts { at, provider: r.provider, fallback_reason: r.fallback_reason, bedrock_since });
            }
            Event::CircuitOpened(e) => {
                if self.circuit.as_ref().is_some_and(|c| c.at > at) {
                    return;
                }
                let ongoing = self.circuit.as_ref().filter(|c| c.state != CircuitState::Closed);
                let (since, reason) = match ongoing {
                    Some(c) => (c.since, c.reason.or(Some(e.reason))),
                    None => (at, Some(e.reason)),
                };
                self.circuit =
                    Some(CircuitFacts { state: CircuitState::Open, at, since, reason, retry_at: Some(e.retry_at) });
            }
            Event::CircuitHalfOpened(_) => {
                if self.circuit.as_ref().is_some_and(|c| c.at > at) {
                    return;
                }
                let (since, reason) = self.circuit.as_ref().map_or((at, None), |c| (c.since, c.reason));
                self.circuit = Some(CircuitFacts { state: CircuitState::HalfOpen, at, since, reason, retry_at: None });
            }
            Event::CircuitClosed(_) => {
                if self.circuit.as_ref().is_some_and(|c| c.at > at) {
                    return;
                }
                self.circuit =
                    Some(CircuitFacts { state: CircuitState::Closed, at, since: at, reason: None, retry_at: None });
            }
            _ => {}
        }
    }
}

/// One watched key.
#[derive(Debug, Default)]
struct Watch {
    /// Milliseconds since the board started, at the last ask.
    last_ask_ms: AtomicU64,
    facts: Mutex<KeyFacts>,
    /// The last events before the watch started have been read (or could not be).
    loaded: AtomicBool,
    loaded_signal: tokio::sync::Notify,
}

/// The watched keys.
pub struct Board {
    inner: Arc<Inner>,
}

struct Inner {
    watched: RwLock<HashMap<AccessKeyId, Arc<Watch>>>,
    client: async_nats::Client,
    ns: Namespace,
    runtime: tokio::runtime::Handle,
    started: Instant,
    idle: Duration,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Board {
    /// A board whose watches run on the current Tokio runtime (not on the HTTP workers').
    pub fn new(client: async_nats::Client, ns: Namespace) -> Self {
        Self::with_idle(client, ns, IDLE)
    }

    /// A board whose watches end after `idle` without an ask.
    pub fn with_idle(client: async_nats::Client, ns: Namespace, idle: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                watched: RwLock::new(HashMap::new()),
                client,
                ns,
                runtime: tokio::runtime::Handle::current(),
                started: Instant::now(),
                idle,
            }),
        }
    }

    /// Keys being watched.
    pub fn watched(&self) -> usize {
        self.inner.watched.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// What is known about `key` now; the first ask of a key starts its watch and waits (at
    /// most [`FIRST_LOAD`]) for its last events.
    pub async fn facts(&self, key: AccessKeyId) -> KeyFacts {
        let now = self.inner.now_ms();
        let known = {
            let watched = self.inner.watched.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            watched.get(&key).map(|w| {
                // Under the read lock: a watch ending now (under the write lock) sees this ask.
                w.last_ask_ms.store(now, Ordering::Relaxed);
                w.clone()
            })
        };
        let watch = match known {
            Some(w) => w,
            None => self.start(key, now),
        };
        if !watch.loaded.load(Ordering::Acquire) {
            let loaded = watch.loaded_signal.notified();
            if !watch.loaded.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(FIRST_LOAD, loaded).await;
            }
        }
        let facts = watch.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        facts
    }

    fn start(&self, key: AccessKeyId, now: u64) -> Arc<Watch> {
        let mut watched = self.inner.watched.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = watched.get(&key) {
            w.last_ask_ms.store(now, Ordering::Relaxed);
            return w.clone();
        }
        let watch = Arc::new(Watch::default());
        watch.last_ask_ms.store(now, Ordering::Relaxed);
        watched.insert(key, watch.clone());
        let (inner, w) = (self.inner.clone(), watch.clone());
        self.inner.runtime.spawn(async move {
            if let Err(e) = follow(&inner, key, &w).await {
                tracing::warn!(key_id = %key, error = %e, "watching a key for its status line failed");
            }
            w.loaded.store(true, Ordering::Release);
            w.loaded_signal.notify_waiters();
            // Gone: the next ask starts a new watch.
            let mut watched = inner.watched.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if watched.get(&key).is_some_and(|current| Arc::ptr_eq(current, &w)) {
                watched.remove(&key);
            }
        });
        watch
    }
}

fn apply(watch: &Watch, payload: &[u8]) {
    match Envelope::decode(payload) {
        Ok(envelope) => watch.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).apply(&envelope),
        Err(e) => tracing::debug!(error = %e, "ignoring an undecodable event of a watched key"),
    }
}

/// Follows `key` until it is not asked for during `idle`.
async fn follow(inner: &Inner, key: AccessKeyId, watch: &Watch) -> anyhow::Result<()> {
    let ns = &inner.ns;
    let (request_subject, circuit_subject) =
        (ns.subject(&Aggregate::Request(Some(key))), ns.subject(&Aggregate::Circuit(key)));
    // Subscribed first, read after: an event published in between is seen (twice at worst,
    // which changes nothing).
    let mut requests = inner.client.subscribe(request_subject.clone()).await?;
    let mut circuits = inner.client.subscribe(circuit_subject.clone()).await?;
    let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(inner.client.clone());
    for (kind, subject) in [(StreamKind::Requests, request_subject), (StreamKind::Circuit, circuit_subject)] {
        let last = async {
            let stream = js.get_stream_no_info(ns.stream(kind)).await?;
            match stream.direct_get_last_for_subject(subject).await {
                Ok(message) => anyhow::Ok(Some(message.payload)),
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        match last.await {
            Ok(Some(payload)) => apply(watch, &payload),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(key_id = %key, error = %e, "reading a key's last event for its status line failed")
            }
        }
    }
    watch.loaded.store(true, Ordering::Release);
    watch.loaded_signal.notify_waiters();

    let mut tick = tokio::time::interval((inner.idle / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = requests.next() => match message {
                Some(m) => apply(watch, &m.payload),
                None => anyhow::bail!("the subscription to the key's requests ended"),
            },
            message = circuits.next() => match message {
                Some(m) => apply(watch, &m.payload),
                None => anyhow::bail!("the subscription to the key's circuit ended"),
            },
            _ = tick.tick() => {
                let idle_ms = u64::try_from(inner.idle.as_millis()).unwrap_or(u64::MAX);
                // Decided under the write lock that asks take a read lock to mark themselves
                // under: an ask either came in time or finds no watch and starts one.
                let mut watched = inner.watched.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if inner.now_ms().saturating_sub(watch.last_ask_ms.load(Ordering::Relaxed)) >= idle_ms {
                    if let Some(current) = watched.get(&key) {
                        if std::ptr::eq(Arc::as_ptr(current), watch) {
                            watched.remove(&key);
                        }
                    }
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::{CircuitClosed, CircuitHalfOpened, CircuitOpened, CloseCause};
    use ccp_schemas::Actor;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn envelope(event: Event, secs: i64) -> Envelope {
        let mut e = Envelope::new(event, Actor::Proxy { replica: "r".into() });
        e.occurred_at = at(secs);
        e
    }

    fn request(key: AccessKeyId, provider: Provider, reason: Option<FallbackReason>, secs: i64) -> Envelope {
        let json = serde_json::json!({
            "request_id": ccp_schemas::ids::RequestId::new(),
            "key_id": key,
            "endpoint": "messages",
            "provider": provider,
            "fallback": reason.is_some(),
            "fallback_reason": reason,
            "status": 200,
            "stream": true,
            "latency_ms": 5,
        });
        envelope(Event::RequestCompleted(serde_json::from_value(json).unwrap()), secs)
    }

    #[test]
    fn a_run_of_bedrock_answers_keeps_its_start_and_anthropic_ends_it() {
        let key = AccessKeyId::new();
        let mut f = KeyFacts::default();
        f.apply(&request(key, Provider::Anthropic, None, 0));
        assert_eq!(f.last_request.as_ref().unwrap().bedrock_since, None);
        f.apply(&request(key, Provider::Bedrock, Some(FallbackReason::UsageLimit), 10));
        f.apply(&request(key, Provider::Bedrock, Some(FallbackReason::CircuitOpen), 20));
        let last = f.last_request.clone().unwrap();
        assert_eq!((last.bedrock_since, last.fallback_reason), (Some(at(10)), Some(FallbackReason::CircuitOpen)));
        f.apply(&request(key, Provider::None, None, 25));
        assert_eq!(f.last_request.as_ref().unwrap().at, at(20), "a refused request says nothing");
        f.apply(&request(key, Provider::Anthropic, None, 15));
        assert_eq!(f.last_request.as_ref().unwrap().at, at(20), "an older event changes nothing");
        f.apply(&request(key, Provider::Anthropic, None, 30));
        assert_eq!(f.last_request.as_ref().unwrap().bedrock_since, None);
    }

    #[test]
    fn a_circuit_episode_keeps_its_first_opening_and_reason() {
        let key = AccessKeyId::new();
        let mut f = KeyFacts::default();
        let opened = |reason, secs| {
            envelope(
                Event::CircuitOpened(CircuitOpened { key_id: key, reason, failures: 3, retry_at: at(secs + 60) }),
                secs,
            )
        };
        f.apply(&opened(TripReason::UsageLimit, 100));
        f.apply(&envelope(Event::CircuitHalfOpened(CircuitHalfOpened { key_id: key }), 160));
        f.apply(&opened(TripReason::ProbeFailed, 161));
        let c = f.circuit.clone().unwrap();
        assert_eq!(
            (c.state, c.since, c.reason, c.retry_at),
            (CircuitState::Open, at(100), Some(TripReason::UsageLimit), Some(at(221)))
        );
        f.apply(&envelope(Event::CircuitClosed(CircuitClosed { key_id: key, cause: CloseCause::ManualReset }), 170));
        assert_eq!(f.circuit.as_ref().unwrap().state, CircuitState::Closed);
        f.apply(&opened(TripReason::Overloaded, 150));
        assert_eq!(f.circuit.as_ref().unwrap().state, CircuitState::Closed, "an older opening changes nothing");
        f.apply(&opened(TripReason::Overloaded, 200));
        let c = f.circuit.unwrap();
        assert_eq!((c.since, c.reason), (at(200), Some(TripReason::Overloaded)), "a new episode");
    }
}
