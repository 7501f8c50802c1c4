//! The state projection into JetStream KV: what the admin API reads (and what the proxy could
//! read): users, access keys (by id, and key id by key hash), their sealed Bedrock keys and
//! settings, budgets, routing, and each key's circuit state. Watchable, so readers update live.
//!
//! Every start folds the admin stream from sequence 1 with the same `apply` the proxy uses and
//! writes each changed aggregate's whole state (puts are idempotent), then follows live; the
//! circuit bucket keeps the last transition of each key.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::push::OrderedConfig, consumer::DeliverPolicy, kv};
use ccp_schemas::events::Event;
use ccp_schemas::state::Directory;
use ccp_schemas::subjects::{Aggregate, Bucket, StreamKind};
use ccp_schemas::{Envelope, Namespace};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::analytics::label;

/// A key's circuit, as the circuits bucket stores it.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitState {
    /// `open`, `half_open` or `closed`.
    pub state: &'static str,
    /// Why it opened or closed.
    pub reason: String,
    /// Failures counted when it opened.
    pub failures: u32,
    /// When a probe may be sent (open).
    pub retry_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the transition happened.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

struct Buckets {
    users: kv::Store,
    keys: kv::Store,
    hashes: kv::Store,
    circuits: kv::Store,
}

async fn put<T: Serialize>(store: &kv::Store, key: &str, value: &T) -> anyhow::Result<()> {
    store.put(key, serde_json::to_vec(value)?.into()).await?;
    Ok(())
}

impl Buckets {
    async fn open(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<Self> {
        Ok(Self {
            users: js.get_key_value(ns.bucket(Bucket::Users)).await?,
            keys: js.get_key_value(ns.bucket(Bucket::AccessKeys)).await?,
            hashes: js.get_key_value(ns.bucket(Bucket::KeyHashes)).await?,
            circuits: js.get_key_value(ns.bucket(Bucket::Circuits)).await?,
        })
    }

    /// Writes the state of the aggregate `envelope` changed.
    async fn write(&self, dir: &Directory, envelope: &Envelope, previous_hash: Option<String>) -> anyhow::Result<()> {
        match envelope.event.aggregate() {
            Aggregate::User(id) => {
                if let Some(user) = dir.user(&id) {
                    put(&self.users, &id.to_string(), user).await?;
                }
            }
            Aggregate::AccessKey(id) => {
                if let Some(key) = dir.key(&id) {
                    put(&self.keys, &id.to_string(), key).await?;
                    let hash = key.key_hash.to_hex();
                    self.hashes.put(&hash, id.to_string().into()).await?;
                    if let Some(old) = previous_hash.filter(|old| *old != hash) {
                        self.hashes.purge(&old).await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn circuit_state(envelope: &Envelope) -> Option<(String, CircuitState)> {
    let at = envelope.occurred_at;
    match &envelope.event {
        Event::CircuitOpened(e) => Some((
            e.key_id.to_string(),
            CircuitState {
                state: "open",
                reason: label(&e.reason),
                failures: e.failures,
                retry_at: Some(e.retry_at),
                updated_at: at,
            },
        )),
        Event::CircuitHalfOpened(e) => Some((
            e.key_id.to_string(),
            CircuitState { state: "half_open", reason: String::new(), failures: 0, retry_at: None, updated_at: at },
        )),
        Event::CircuitClosed(e) => Some((
            e.key_id.to_string(),
            CircuitState { state: "closed", reason: label(&e.cause), failures: 0, retry_at: None, updated_at: at },
        )),
        _ => None,
    }
}

/// Follows the admin and circuit streams for ever, keeping the KV buckets current.
pub async fn run(client: async_nats::Client, ns: Namespace) {
    let js = jetstream::new(client.clone());
    loop {
        if let Err(e) = run_once(&js, &client, &ns).await {
            tracing::warn!(error = %format!("{e:#}"), "state projection failed; restarting from sequence 1");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn run_once(js: &jetstream::Context, client: &async_nats::Client, ns: &Namespace) -> anyhow::Result<()> {
    let buckets = Buckets::open(js, ns).await?;
    let consumer = |kind: StreamKind, policy: DeliverPolicy| {
        let (js, client, ns) = (js.clone(), client.clone(), ns.clone());
        async move {
            let stream = js.get_stream(ns.stream(kind)).await?;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    deliver_subject: client.new_inbox(),
                    deliver_policy: policy,
                    filter_subject: ns.stream_subjects(kind),
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(consumer.messages().await?)
        }
    };
    let mut admin = consumer(StreamKind::Admin, DeliverPolicy::All).await?;
    let mut circuits = consumer(StreamKind::Circuit, DeliverPolicy::LastPerSubject).await?;
    let mut dir = Directory::default();
    loop {
        tokio::select! {
            message = admin.next() => {
                let message = message.ok_or_else(|| anyhow::anyhow!("admin subscription ended"))??;
                let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                match Envelope::decode(&message.payload) {
                    Ok(envelope) => {
                        let previous_hash = match envelope.event.aggregate() {
                            Aggregate::AccessKey(id) => dir.key(&id).map(|k| k.key_hash.to_hex()),
                            _ => None,
                        };
                        dir.apply(&envelope);
                        buckets.write(&dir, &envelope, previous_hash).await?;
                    }
                    Err(e) => tracing::error!(seq, error = %e, "state projection skips an undecodable admin event"),
                }
            }
            message = circuits.next() => {
                let message = message.ok_or_else(|| anyhow::anyhow!("circuit subscription ended"))??;
                if let Some((key, state)) = Envelope::decode(&message.payload).ok().as_ref().and_then(circuit_state) {
                    put(&buckets.circuits, &key, &state).await?;
                }
            }
        }
    }
}
