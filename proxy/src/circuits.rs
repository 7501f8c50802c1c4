//! Shares circuit transitions across replicas through the event log: local transitions are
//! appended to `<prefix>.circuit.<key_id>` with an expected-last-subject-sequence check (so two
//! replicas tripping at once produce one event), and every replica follows that stream and
//! applies what it reads, its own events included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use ccp_runtime::follow::{Decoded, Follower, Next, Start};
use ccp_schemas::events::{CircuitClosed, CircuitHalfOpened, CircuitOpened, Event};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Actor, Envelope, Namespace};
use tokio::time::Instant;

use crate::breaker::{Breakers, Outcome, Route, Transition};

/// Announces and follows circuit transitions.
pub struct Circuits {
    /// The local state machines.
    pub breakers: Arc<Breakers>,
    js: jetstream::Context,
    ns: Namespace,
    replica: Arc<str>,
    /// Last stream sequence seen per key subject (for the optimistic-concurrency check).
    seqs: Mutex<HashMap<AccessKeyId, u64>>,
}

impl Circuits {
    /// Circuits over `breakers`, publishing with `client`.
    pub fn new(breakers: Arc<Breakers>, client: async_nats::Client, ns: Namespace, replica: Arc<str>) -> Self {
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(3)).build(client);
        Self { breakers, js, ns, replica, seqs: Mutex::new(HashMap::new()) }
    }

    /// The breaker's route for `key` now; a transition it makes (open → half-open) is
    /// announced to the fleet.
    pub fn route(self: &Arc<Self>, key: AccessKeyId) -> Route {
        let (route, transition) = self.breakers.route(key, tokio::time::Instant::now());
        if let Some(t) = transition {
            self.announce(key, t);
        }
        route
    }

    /// Tells the breaker how a request sent on `route` ended; a transition is announced.
    pub fn record(self: &Arc<Self>, key: AccessKeyId, route: Route, outcome: Outcome) {
        if let Some(t) = self.breakers.record(key, route, outcome, tokio::time::Instant::now()) {
            self.announce(key, t);
        }
    }

    /// Appends a local transition in the background (never on the request path).
    pub fn announce(self: &Arc<Self>, key_id: AccessKeyId, transition: Transition) {
        let event = match transition {
            Transition::Opened { reason, failures, retry_in } => Event::CircuitOpened(CircuitOpened {
                key_id,
                reason,
                failures,
                retry_at: chrono::Utc::now() + chrono::Duration::from_std(retry_in).unwrap_or_default(),
            }),
            Transition::HalfOpened => Event::CircuitHalfOpened(CircuitHalfOpened { key_id }),
            Transition::Closed(cause) => Event::CircuitClosed(CircuitClosed { key_id, cause }),
        };
        tracing::info!(key_id = %key_id, transition = ?transition, "circuit transition");
        let envelope = Envelope::new(event, Actor::Proxy { replica: self.replica.to_string() });
        let this = self.clone();
        tokio::spawn(async move {
            let expected =
                this.seqs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key_id).copied().unwrap_or(0);
            let Ok(payload) = envelope.encode() else { return };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", envelope.id.to_string().as_str());
            headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            let subject = this.ns.subject(&Aggregate::Circuit(key_id));
            let result = match this.js.publish_with_headers(subject, headers, payload.into()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                // Another replica announced first (its event is applied when it arrives), or
                // NATS is away: the transition stays local.
                tracing::debug!(key_id = %key_id, error = %e, "circuit transition not appended");
            }
        });
    }

    /// Follows the circuit stream for ever (latest transition per key first, then live). A
    /// transition this build cannot read is skipped ([`OnNewer::Skip`]): a breaker is advisory,
    /// and a missed one only means this replica tries Anthropic itself.
    pub async fn follow(self: Arc<Self>, client: async_nats::Client) {
        let mut follower =
            Follower::new("proxy circuits", client, &self.ns, StreamKind::Circuit).start(Start::LastPerSubject);
        loop {
            let Next::Message(delivery) = follower.next().await else { continue };
            let Decoded::Apply(envelope) = follower.decode(&delivery) else { continue };
            let now = Instant::now();
            let (key_id, transition) = match envelope.event {
                Event::CircuitOpened(e) => {
                    let left = (e.retry_at - chrono::Utc::now()).to_std().unwrap_or_default();
                    (e.key_id, Transition::Opened { reason: e.reason, failures: e.failures, retry_in: left })
                }
                Event::CircuitHalfOpened(e) => (e.key_id, Transition::HalfOpened),
                Event::CircuitClosed(e) => (e.key_id, Transition::Closed(e.cause)),
                _ => continue,
            };
            self.seqs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key_id, delivery.seq);
            self.breakers.apply_remote(key_id, transition, now);
        }
    }
}
