//! Snapshots of a service's fold of a stream, so that a start reads state rather than history.
//!
//! A service that folds the whole admin stream into memory (the proxy's key table) saves what it
//! holds, with the stream sequence it has applied, as one object of the JetStream object store
//! `<prefix>_snapshots`; a later start loads it and follows the stream from the next sequence.
//! A snapshot is used only when it can be trusted to equal the fold it replaces:
//!
//! - it was written by this very build ([`BUILD`]: version and git commit) — another build may
//!   fold the same events differently, so after an upgrade the first start replays the stream
//!   and saves a snapshot of its own;
//! - the stream still holds, at the snapshot's sequence, the very message the writer had applied
//!   last (its digest is stored with the snapshot): a stream deleted and created again, or
//!   another system's stream of the same name, does not match;
//! - its content reads back (object digest, JSON).
//!
//! Anything else is logged and the stream is replayed from sequence 1 — the rebuild path, whose
//! cost is the replay the snapshot saves (measured in `docs/benchmarks.md`). Deleting the object
//! (`nats object del <prefix>_snapshots <name>`) forces it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store};
use ccp_schemas::Namespace;
use sha2::Digest as _;
use tokio::io::AsyncReadExt as _;

/// The build a snapshot belongs to: only this build reads it.
pub const BUILD: &str = concat!("1 ", env!("CARGO_PKG_VERSION"), " (", env!("CCP_GIT_COMMIT"), ")");

/// How long after a failed save the next is tried.
const SAVE_RETRY: Duration = Duration::from_secs(60);

const META_BUILD: &str = "ccp-build";
const META_SEQ: &str = "ccp-seq";
const META_DIGEST: &str = "ccp-message-digest";

/// The object store of `ns`'s snapshots.
pub fn bucket_name(ns: &Namespace) -> String {
    format!("{}_snapshots", ns.prefix())
}

/// One named snapshot in the store.
#[derive(Clone)]
pub struct Snapshots {
    store: object_store::ObjectStore,
    stream: String,
    name: String,
    js: jetstream::Context,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").field("stream", &self.stream).field("name", &self.name).finish()
    }
}

/// A snapshot read back: the stream sequence it was taken at and its content.
#[derive(Debug)]
pub struct Loaded {
    /// The last stream sequence the snapshot's state includes.
    pub seq: u64,
    /// The state, as saved.
    pub bytes: Vec<u8>,
}

/// Why a stored snapshot was not used (logged by the caller; the stream is replayed).
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// There is none.
    #[error("there is no snapshot yet")]
    Missing,
    /// Another build wrote it.
    #[error("it was written by build {0}, not this one ({BUILD})")]
    OtherBuild(String),
    /// The stream no longer holds the message the snapshot ends with.
    #[error("the stream no longer holds the message at sequence {0} that it ends with")]
    StreamChanged(u64),
    /// Reading it failed.
    #[error("reading it failed: {0}")]
    Read(String),
}

/// The digest that identifies a stream message (its subject and payload).
fn digest(subject: &str, payload: &[u8]) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(subject.as_bytes());
    hasher.update([0]);
    hasher.update(payload);
    hex::encode(&hasher.finalize()[..16])
}

impl Snapshots {
    /// Opens (or creates, on `replicas` replicas) the store of `ns` for the snapshot `name` of
    /// `stream`'s fold.
    pub async fn open(
        client: async_nats::Client,
        ns: &Namespace,
        stream: String,
        name: &str,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let js = jetstream::new(client);
        let bucket = bucket_name(ns);
        let store = match js.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("ClaudeCodeProxy snapshots of the services' folds of the admin stream".into()),
                    num_replicas: replicas.max(1),
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("cannot create object store {bucket}: {e}"))?,
        };
        Ok(Self { store, stream, name: name.to_owned(), js })
    }

    /// The digest of the stream's message at `seq`.
    async fn message_digest(&self, seq: u64) -> anyhow::Result<Option<String>> {
        let stream = self.js.get_stream_no_info(&self.stream).await?;
        match stream.get_raw_message(seq).await {
            Ok(message) => Ok(Some(digest(&message.subject, &message.payload))),
            Err(e) if matches!(e.kind(), jetstream::stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading message {seq} of {}: {e}", self.stream)),
        }
    }

    /// The stored snapshot, if this build may use it (see the module documentation).
    pub async fn load(&self) -> Result<Loaded, Unusable> {
        let info = match self.store.info(&self.name).await {
            Ok(info) => info,
            Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Read(e.to_string())),
        };
        let meta = |key: &str| info.metadata.get(key).cloned().unwrap_or_default();
        if meta(META_BUILD) != BUILD {
            return Err(Unusable::OtherBuild(meta(META_BUILD)));
        }
        let seq: u64 = meta(META_SEQ).parse().map_err(|_| Unusable::Read("no sequence in its metadata".into()))?;
        match self.message_digest(seq).await {
            Ok(Some(d)) if d == meta(META_DIGEST) => {}
            Ok(_) => return Err(Unusable::StreamChanged(seq)),
            Err(e) => return Err(Unusable::Read(format!("{e:#}"))),
        }
        let mut object = self.store.get(&self.name).await.map_err(|e| Unusable::Read(e.to_string()))?;
        let mut bytes = Vec::with_capacity(info.size);
        object.read_to_end(&mut bytes).await.map_err(|e| Unusable::Read(e.to_string()))?;
        Ok(Loaded { seq, bytes })
    }

    /// The sequence of the stored snapshot of this build, if there is one.
    pub async fn stored_seq(&self) -> Option<u64> {
        let info = self.store.info(&self.name).await.ok()?;
        (info.metadata.get(META_BUILD).map(String::as_str) == Some(BUILD))
            .then(|| info.metadata.get(META_SEQ)?.parse().ok())
            .flatten()
    }

    /// Saves `bytes`, the fold up to and including the stream's message `seq`. Several replicas
    /// may save at once: the last one stays, and each is a whole fold at its own sequence.
    pub async fn save(&self, seq: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let digest = self
            .message_digest(seq)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream has no message {seq} to snapshot at"))?;
        let meta = object_store::ObjectMetadata {
            name: self.name.clone(),
            description: Some(format!("fold of {} up to sequence {seq}", self.stream)),
            metadata: [(META_BUILD, BUILD.to_owned()), (META_SEQ, seq.to_string()), (META_DIGEST, digest)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..Default::default()
        };
        let mut reader = bytes;
        tokio::time::timeout(Duration::from_secs(60), self.store.put(meta, &mut reader))
            .await
            .map_err(|_| anyhow::anyhow!("saving the snapshot timed out"))?
            .map_err(|e| anyhow::anyhow!("saving the snapshot: {e}"))?;
        Ok(())
    }
}

/// Loads the stored snapshot with `restore` (given its sequence and bytes) when there is one
/// this build may use; else (the reason logged, as `what`) the caller replays the stream. The
/// sequence the state now ends at, or 0.
pub async fn load(
    snapshots: &Snapshots,
    what: &str,
    restore: impl FnOnce(u64, &[u8]) -> serde_json::Result<()>,
) -> u64 {
    let started = Instant::now();
    let loaded = match snapshots.load().await {
        Ok(loaded) => loaded,
        Err(Unusable::Missing) => return 0,
        Err(why) => {
            tracing::info!(reason = %why, "not using the {what} snapshot: replaying the stream");
            return 0;
        }
    };
    match restore(loaded.seq, &loaded.bytes) {
        Ok(()) => {
            tracing::info!(
                seq = loaded.seq,
                bytes = loaded.bytes.len(),
                ms = started.elapsed().as_millis() as u64,
                "{what} snapshot loaded"
            );
            loaded.seq
        }
        Err(e) => {
            tracing::warn!(error = %e, "the {what} snapshot does not read back: replaying the stream");
            0
        }
    }
}

/// Saves a fold's snapshot every `every` events, in the background, one save at a time; after a
/// failed save, not again for a minute.
#[derive(Debug)]
pub struct Saver {
    snapshots: Snapshots,
    what: &'static str,
    every: u64,
    /// The sequence of the last snapshot saved or loaded (0: none, or the stored one is unusable).
    saved: Arc<AtomicU64>,
    busy: Arc<AtomicBool>,
    not_before: Arc<Mutex<Option<Instant>>>,
}

impl Saver {
    /// A saver of `snapshots` (`what` names it in log lines) every `every` events past `loaded`,
    /// the sequence of the snapshot the fold started from (0: none).
    pub fn new(snapshots: Snapshots, what: &'static str, every: u64, loaded: u64) -> Self {
        Self {
            snapshots,
            what,
            every,
            saved: Arc::new(AtomicU64::new(loaded)),
            busy: Arc::new(AtomicBool::new(false)),
            not_before: Arc::new(Mutex::new(None)),
        }
    }

    /// Saves the fold at `seq` if it is `every` events past the last snapshot: `serialize` is
    /// called here, the upload runs in a spawned task. Call it from the task that applies the
    /// events, once caught up: nothing changes the state while it is serialized, so the read
    /// lock it takes holds no writer (and so no reader queued behind one) back.
    pub fn maybe_save(&self, seq: u64, serialize: impl FnOnce() -> serde_json::Result<Vec<u8>>) {
        let waiting =
            self.not_before.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|t| Instant::now() < t);
        if self.every == 0 || seq < self.saved.load(Ordering::Acquire).saturating_add(self.every) || waiting {
            return;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        let what = self.what;
        let bytes = match serialize() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialize the {what} for a snapshot");
                self.busy.store(false, Ordering::Release);
                return;
            }
        };
        let serialized = started.elapsed();
        // Before this process loaded or saved one, the stored snapshot (if any) was unusable.
        let trust_stored = self.saved.load(Ordering::Acquire) > 0;
        let (snapshots, saved, busy, not_before) =
            (self.snapshots.clone(), self.saved.clone(), self.busy.clone(), self.not_before.clone());
        tokio::spawn(async move {
            match if trust_stored { snapshots.stored_seq().await } else { None } {
                // Another replica saved a later one meanwhile.
                Some(stored) if stored >= seq => saved.store(stored, Ordering::Release),
                _ => match snapshots.save(seq, &bytes).await {
                    Ok(()) => {
                        saved.store(seq, Ordering::Release);
                        tracing::info!(
                            seq,
                            bytes = bytes.len(),
                            serialize_ms = serialized.as_millis() as u64,
                            total_ms = started.elapsed().as_millis() as u64,
                            "{what} snapshot saved"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(seq, error = %format!("{e:#}"), "cannot save the {what} snapshot; retrying later");
                        *not_before.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + SAVE_RETRY);
                    }
                },
            }
            busy.store(false, Ordering::Release);
        });
    }
}
