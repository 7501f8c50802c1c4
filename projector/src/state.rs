//! The state projection into JetStream KV: what the admin API reads (and what the proxy could
//! read): users, access keys (by id, and key id by key hash), their sealed Bedrock keys and
//! settings, budgets, routing, and each key's circuit state. Watchable, so readers update live.
//!
//! Every start folds the admin stream in memory with the same `apply` the proxy uses — from its
//! stored snapshot on ([`ccp_runtime::snapshot`], saved every `projector.state_snapshot_every`
//! events), else from sequence 1 — writing nothing until it has caught up; then it reads what the
//! buckets hold and writes every user's and key's current state they do not hold yet, once (hash
//! entries of no current key are purged), and follows live, writing each changed aggregate's whole state. So a restart costs
//! reads and writes in proportion to the state, not the history, and a reader of the buckets
//! never sees an entry go back to an older state while the projector replays. The circuit bucket
//! keeps the last transition of each key.
//!
//! No snapshot is saved while a user or key is quarantined (see [`run`]): the fold then differs
//! from a plain fold of the stream, and a start replays the event that quarantined it anyway.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ccp_runtime::follow::{Decoded, Follower, Next, OnNewer, Start};
use ccp_runtime::snapshot::SnapshotPolicy;
use ccp_schemas::events::Event;
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::state::Directory;
use ccp_schemas::subjects::{Aggregate, Bucket, StreamKind};
use ccp_schemas::{Envelope, Namespace};
use serde::{Deserialize, Serialize};

use crate::analytics::label;

/// The state projection's snapshot in its store (`<prefix>_snapshots_projector`).
pub const SNAPSHOT_NAME: &str = "projector-state";

/// The projector's snapshot policy (the state projection's and the alert rules'): every
/// `projector.state_snapshot_every` events, signed with a key derived from the access-key
/// pepper when the projector has one.
pub fn snapshot_policy(settings: &ccp_runtime::config::Settings) -> SnapshotPolicy {
    SnapshotPolicy {
        every: settings.projector.state_snapshot_every,
        pepper: KeyPepper::new(&settings.secrets.access_key_pepper).ok(),
        replicas: settings.nats.replicas,
    }
}

/// A snapshot of the fold, as saved.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    directory: &'a Directory,
}

/// A snapshot of the fold, as read back.
#[derive(Deserialize)]
struct Snapshot {
    directory: Directory,
}

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

/// Every entry `store` holds (key → value), read in one pass of its stream (the last message of
/// each key), at most 60 s.
async fn entries(store: &kv::Store) -> anyhow::Result<std::collections::HashMap<String, bytes::Bytes>> {
    use futures_util::StreamExt as _;
    let mut held = std::collections::HashMap::new();
    if store.status().await?.values() == 0 {
        return Ok(held);
    }
    let read = async {
        let mut watch = store.watch_with_history(">").await?;
        while let Some(entry) = watch.next().await {
            let entry = entry?;
            match entry.operation {
                kv::Operation::Put => held.insert(entry.key, entry.value),
                kv::Operation::Delete | kv::Operation::Purge => held.remove(&entry.key),
            };
            if entry.delta == 0 {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("a bucket's watch ended before its last entry")
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .map_err(|_| anyhow::anyhow!("reading a bucket's entries took over 60 s"))??;
    Ok(held)
}

/// Follows the admin and circuit streams for ever, keeping the KV buckets current.
///
/// An admin event of a newer version quarantines its user or key ([`OnNewer::Quarantine`]):
/// their entries are deleted from the buckets and not written again until the projector is
/// upgraded, so a reader of the buckets refuses the key, as the proxy does (it stops serving:
/// [`OnNewer::Halt`]). Circuit transitions it cannot read are skipped.
pub async fn run(client: async_nats::Client, ns: Namespace, snapshots: SnapshotPolicy) {
    let buckets = loop {
        match Buckets::open(&jetstream::new(client.clone()), &ns).await {
            Ok(buckets) => break buckets,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "state projection cannot open its buckets; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut dir = Directory::default();
    let restore = |_, bytes: &[u8]| {
        dir = serde_json::from_slice::<Snapshot>(bytes)?.directory;
        Ok(())
    };
    let (from_snapshot, saver) =
        snapshots.load(&client, &ns, ("projector", SNAPSHOT_NAME, "state projection"), restore).await;
    let mut admin = Follower::new("projector state", client.clone(), &ns, StreamKind::Admin)
        .start(Start::After(from_snapshot))
        .on_newer(OnNewer::Quarantine);
    let mut circuits =
        Follower::new("projector circuit state", client, &ns, StreamKind::Circuit).start(Start::LastPerSubject);
    let mut projection = Projection {
        ns,
        dir,
        users: HashSet::new(),
        keys: HashSet::new(),
        live: false,
        from_snapshot,
        quarantined_other: false,
    };
    // Saves the fold at `seq` (all of it applied) when it is time and nothing is quarantined.
    let save = |projection: &Projection, seq: u64| {
        let quarantined = !projection.users.is_empty() || !projection.keys.is_empty() || projection.quarantined_other;
        if let (Some(saver), true) = (&saver, projection.live && !quarantined) {
            saver.maybe_save(seq, || serde_json::to_vec(&SnapshotRef { directory: &projection.dir }));
        }
    };
    // When writing every state failed: try again then (the circuits go on meanwhile).
    let mut retry_live: Option<(tokio::time::Instant, Duration)> = None;
    loop {
        tokio::select! {
            () = async { tokio::time::sleep_until(retry_live.map_or_else(tokio::time::Instant::now, |r| r.0)).await },
                if retry_live.is_some() =>
            {
                let backoff = retry_live.map_or(Duration::ZERO, |r| r.1);
                retry_live = projection.go_live(&buckets, backoff).await;
                save(&projection, admin.last());
            }
            next = admin.next() => {
                let delivery = match next {
                    Next::CaughtUp => {
                        retry_live = projection.go_live(&buckets, Duration::ZERO).await;
                        save(&projection, admin.last());
                        continue;
                    }
                    Next::Message(delivery) => delivery,
                };
                let result = match admin.decode(&delivery) {
                    Decoded::Apply(envelope) => projection.apply(&buckets, &envelope).await,
                    Decoded::Quarantine(subject) => projection.quarantine(&buckets, &subject).await,
                    Decoded::Skip | Decoded::Halt(_) => Ok(()),
                };
                if let Err(e) = result {
                    // The fold is not idempotent: start it again from sequence 1.
                    tracing::warn!(error = %format!("{e:#}"), "state projection failed; restarting from sequence 1");
                    projection.dir = Directory::default();
                    projection.live = false;
                    projection.from_snapshot = 0;
                    retry_live = None;
                    // Caught up again at the stream's end now, not at the first start's.
                    admin.restart();
                } else if delivery.caught_up {
                    if !projection.live && retry_live.is_none() {
                        retry_live = projection.go_live(&buckets, Duration::ZERO).await;
                    }
                    save(&projection, delivery.seq);
                }
            }
            next = circuits.next() => {
                let Next::Message(delivery) = next else { continue };
                let Decoded::Apply(envelope) = circuits.decode(&delivery) else { continue };
                if let Some((key, state)) = circuit_state(&envelope) {
                    if let Err(e) = put(&buckets.circuits, &key, &state).await {
                        tracing::warn!(error = %format!("{e:#}"), "circuit state not written; retrying");
                        circuits.rewind(delivery.seq);
                    }
                }
            }
        }
    }
}

/// The fold of the admin stream and what it must not write.
struct Projection {
    ns: Namespace,
    dir: Directory,
    /// Users and keys quarantined (an event of theirs was written by a newer version).
    users: HashSet<UserId>,
    keys: HashSet<AccessKeyId>,
    /// Caught up and written once: each event's aggregate is written as it comes.
    live: bool,
    /// The sequence of the snapshot the fold started from (0: none).
    from_snapshot: u64,
    /// An aggregate that is neither a user nor a key (a team, pricing) is quarantined.
    quarantined_other: bool,
}

impl Projection {
    async fn apply(&mut self, buckets: &Buckets, envelope: &Envelope) -> anyhow::Result<()> {
        let aggregate = envelope.event.aggregate();
        let previous_hash = match aggregate {
            Aggregate::AccessKey(id) => self.dir.key(&id).map(|k| k.key_hash.to_hex()),
            _ => None,
        };
        self.dir.apply(envelope);
        if !self.live {
            return Ok(());
        }
        let quarantined = match aggregate {
            Aggregate::User(id) => self.users.contains(&id),
            Aggregate::AccessKey(id) => {
                self.keys.contains(&id) || self.dir.key(&id).is_some_and(|k| self.users.contains(&k.user_id))
            }
            _ => false,
        };
        if quarantined {
            return Ok(());
        }
        buckets.write(&self.dir, envelope, previous_hash).await
    }

    /// Once caught up: writes every user's and key's state, purges entries of no current key or
    /// of a quarantined one, and goes live. On failure, when to try again (after `backoff`,
    /// doubled, at most 5 s); the caller retries without holding up the circuits.
    async fn go_live(&mut self, buckets: &Buckets, backoff: Duration) -> Option<(tokio::time::Instant, Duration)> {
        if self.live {
            return None;
        }
        let started = std::time::Instant::now();
        match self.write_all(buckets).await {
            Ok((written, purged)) => {
                tracing::info!(
                    written,
                    purged,
                    from_snapshot = self.from_snapshot,
                    ms = started.elapsed().as_millis() as u64,
                    "state projection caught up: every user and key written"
                );
                self.live = true;
                None
            }
            Err(e) => {
                let backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "writing the state projection failed; retrying");
                Some((tokio::time::Instant::now() + backoff, backoff))
            }
        }
    }

    /// Writes the state of every user and key not quarantined that the buckets do not already
    /// hold, purges the entries of quarantined ones and hash entries that name no current key's
    /// hash; (entries written, hash entries purged).
    async fn write_all(&self, buckets: &Buckets) -> anyhow::Result<(usize, usize)> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let stores = [&buckets.users, &buckets.keys, &buckets.hashes];
        // What they hold (a restart finds most entries as it would write them).
        let mut held = Vec::with_capacity(stores.len());
        for store in stores {
            held.push(entries(store).await?);
        }
        // (bucket: 0 users, 1 keys, 2 hashes; key; value)
        let mut puts: Vec<(u8, String, bytes::Bytes)> = Vec::new();
        for user in self.dir.users().filter(|u| !self.users.contains(&u.user_id)) {
            puts.push((0, user.user_id.to_string(), serde_json::to_vec(user)?.into()));
        }
        let mut current = HashSet::new();
        for key in self.dir.keys().filter(|k| !self.keys.contains(&k.key_id) && !self.users.contains(&k.user_id)) {
            puts.push((1, key.key_id.to_string(), serde_json::to_vec(key)?.into()));
            let hash = key.key_hash.to_hex();
            puts.push((2, hash.clone(), key.key_id.to_string().into()));
            current.insert(hash);
        }
        puts.retain(|(bucket, key, value)| held[usize::from(*bucket)].get(key) != Some(value));
        let written = puts.len();
        futures_util::stream::iter(puts)
            .map(|(bucket, key, value)| {
                let store = stores[usize::from(bucket)];
                async move { store.put(&key, value).await.map(drop) }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<()>>()
            .await?;
        // Entries of quarantined users and keys (a purge in `quarantine` that failed before the
        // fold restarted): not written, and not left showing an older state either.
        for user in self.users.iter().map(ToString::to_string).filter(|u| held[0].contains_key(u)) {
            buckets.users.purge(&user).await?;
        }
        let keys_of_quarantined_users =
            self.dir.keys().filter(|k| self.users.contains(&k.user_id)).map(|k| k.key_id.to_string());
        let quarantined_keys: HashSet<String> =
            self.keys.iter().map(ToString::to_string).chain(keys_of_quarantined_users).collect();
        for key in quarantined_keys.iter().filter(|k| held[1].contains_key(*k)) {
            buckets.keys.purge(key).await?;
        }
        let stale: Vec<&String> = held[2].keys().filter(|h| !current.contains(*h)).collect();
        for hash in &stale {
            buckets.hashes.purge(hash).await?;
        }
        Ok((written, stale.len()))
    }

    /// Deletes what the buckets hold of the user or key of `subject` and writes it no more.
    async fn quarantine(&mut self, buckets: &Buckets, subject: &str) -> anyhow::Result<()> {
        let keys: Vec<AccessKeyId> = match self.ns.owner_of(subject) {
            Some(Aggregate::User(user)) => {
                self.users.insert(user);
                buckets.users.purge(user.to_string()).await?;
                self.dir.keys().filter(|k| k.user_id == user).map(|k| k.key_id).collect()
            }
            Some(Aggregate::AccessKey(key)) => vec![key],
            _ => {
                // Nothing of it is written, but the fold no longer equals a plain one.
                self.quarantined_other = true;
                return Ok(());
            }
        };
        for key in keys {
            self.keys.insert(key);
            buckets.keys.purge(key.to_string()).await?;
            if let Some(state) = self.dir.key(&key) {
                buckets.hashes.purge(state.key_hash.to_hex()).await?;
            }
        }
        Ok(())
    }
}
