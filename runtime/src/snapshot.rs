//! Snapshots of a service's fold of a stream, so that a start reads state rather than history.
//!
//! A service that folds the whole admin stream into memory (the proxy's key table, the admin
//! API's view) saves what it holds, with the stream sequence it has applied, as one object of its
//! own JetStream object store `<prefix>_snapshots_<service>`; a later start loads it and follows
//! the stream from the next sequence. A snapshot is used only when it can be trusted to equal the
//! fold it replaces:
//!
//! - it was written by this very build ([`identity`]: version, git commit and the contract
//!   revision it reads) — another build may fold the same events differently, so after an upgrade
//!   the first start replays the stream and saves a snapshot of its own; a build without a known
//!   commit never uses snapshots;
//! - it is signed (HMAC-SHA256 with a key derived from `secrets.access_key_pepper`), so write
//!   access to the object store alone cannot plant state: forging one needs the services' secret,
//!   as forging an access key does;
//! - the stream still holds, at the snapshot's sequence, the very message the writer had applied
//!   last (a digest of it is signed with the snapshot): a stream deleted and created again does
//!   not match;
//! - it reads back (object digest, JSON) within [`LOAD_TIMEOUT`].
//!
//! Anything else is logged and the stream is replayed from sequence 1 — the rebuild path, whose
//! cost is the replay the snapshot saves (`docs/benchmarks.md`, "Start-up against the admin
//! stream"). Deleting the object (`nats object del <prefix>_snapshots_<service> <name>`) forces it.
//! The services need, beside their streams, the object store's subjects (`$O.<bucket>.>`, its
//! stream `OBJ_<bucket>`) and message reads of the admin stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store};
use ccp_schemas::secrets::access_key::{KeyHash, KeyPepper};
use ccp_schemas::Namespace;
use sha2::Digest as _;
use tokio::io::AsyncReadExt as _;

/// How long loading a snapshot may take before the stream is replayed instead.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest snapshot read back (a larger one is not used).
const MAX_BYTES: usize = 1 << 30;
/// How long after a failed save the next is tried.
const SAVE_RETRY: Duration = Duration::from_secs(60);
/// Replicas that reach a save at the same sequence spread their saves over this long, and the
/// later ones find the first's and skip theirs.
const SAVE_JITTER_MS: u64 = 3_000;

const META_BUILD: &str = "ccp-build";
const META_SEQ: &str = "ccp-seq";
const META_DIGEST: &str = "ccp-message-digest";
const META_MAC: &str = "ccp-mac";

/// The build a snapshot belongs to: only a process with the same identity reads it. `None` for
/// a build without a known commit (its fold cannot be told from another's).
pub fn identity() -> Option<String> {
    let commit = crate::telemetry::COMMIT;
    (commit != "unknown").then(|| {
        format!("2 {} ({commit}) reading contract {}", env!("CARGO_PKG_VERSION"), ccp_schemas::compat::reading())
    })
}

/// The object store of `ns`'s snapshots of `service` (`proxy`, `admin`).
pub fn bucket_name(ns: &Namespace, service: &str) -> String {
    format!("{}_snapshots_{service}", ns.prefix())
}

/// One named snapshot in its store.
#[derive(Clone)]
pub struct Snapshots {
    store: object_store::ObjectStore,
    stream: String,
    name: String,
    identity: String,
    signer: KeyPepper,
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
    #[error("it was written by build {0}, not this one")]
    OtherBuild(String),
    /// Its signature does not match its content.
    #[error("its signature does not match its content")]
    BadSignature,
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
    /// Opens (or creates, on `replicas` replicas) the store of `service`'s snapshot `name` of
    /// `stream`'s fold, signed with a key derived from `pepper`. Fails for a build without a
    /// known commit.
    pub async fn open(
        client: async_nats::Client,
        ns: &Namespace,
        service: &str,
        stream: String,
        name: &str,
        pepper: &KeyPepper,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let identity = identity()
            .ok_or_else(|| anyhow::anyhow!("this build has no git commit (CCP_GIT_COMMIT) to tell its snapshots by"))?;
        let js = jetstream::new(client);
        let bucket = bucket_name(ns, service);
        let store = match js.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    description: Some(format!("ClaudeCodeProxy snapshots of {service}'s fold of the admin stream")),
                    num_replicas: replicas.max(1),
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("cannot create object store {bucket}: {e}"))?,
        };
        // The signing key: the pepper's HMAC of a label, so it is no access key's hash.
        let key = pepper.hash_bytes(format!("ccp snapshot signing key\0{bucket}\0{name}").as_bytes());
        let signer = KeyPepper::new(&ccp_schemas::secrets::SecretString::new(key.to_hex()))
            .map_err(|_| anyhow::anyhow!("deriving the snapshot signing key"))?;
        Ok(Self { store, stream, name: name.to_owned(), identity, signer, js })
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

    /// The signature of a snapshot: its identity, sequence and message digest, and its content.
    fn sign(&self, identity: &str, seq: u64, digest: &str, bytes: &[u8]) -> KeyHash {
        let mut signed = format!("{identity}\0{seq}\0{digest}\0").into_bytes();
        signed.extend_from_slice(bytes);
        self.signer.hash_bytes(&signed)
    }

    /// The stored snapshot, if this build may use it (see the module documentation); at most
    /// [`LOAD_TIMEOUT`].
    pub async fn load(&self) -> Result<Loaded, Unusable> {
        tokio::time::timeout(LOAD_TIMEOUT, self.load_now())
            .await
            .unwrap_or_else(|_| Err(Unusable::Read(format!("not read within {} s", LOAD_TIMEOUT.as_secs()))))
    }

    async fn load_now(&self) -> Result<Loaded, Unusable> {
        // One read: the metadata checked are those of the very content read.
        let mut object = match self.store.get(&self.name).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Read(e.to_string())),
        };
        let info = object.info().clone();
        let meta = |key: &str| info.metadata.get(key).cloned().unwrap_or_default();
        if meta(META_BUILD) != self.identity {
            return Err(Unusable::OtherBuild(meta(META_BUILD)));
        }
        let seq: u64 = meta(META_SEQ).parse().map_err(|_| Unusable::Read("no sequence in its metadata".into()))?;
        if info.size > MAX_BYTES {
            return Err(Unusable::Read(format!("{} bytes: larger than {MAX_BYTES}", info.size)));
        }
        let mut bytes = Vec::with_capacity(info.size);
        object.read_to_end(&mut bytes).await.map_err(|e| Unusable::Read(e.to_string()))?;
        let expected = self.sign(&self.identity, seq, &meta(META_DIGEST), &bytes);
        if !meta(META_MAC).parse::<KeyHash>().is_ok_and(|mac| mac.ct_eq(&expected)) {
            return Err(Unusable::BadSignature);
        }
        match self.message_digest(seq).await {
            Ok(Some(d)) if d == meta(META_DIGEST) => Ok(Loaded { seq, bytes }),
            Ok(_) => Err(Unusable::StreamChanged(seq)),
            Err(e) => Err(Unusable::Read(format!("{e:#}"))),
        }
    }

    /// The stored object's id (changes with every save) and, if this build wrote it, its
    /// sequence.
    pub async fn stored(&self) -> Option<(String, Option<u64>)> {
        let info = self.store.info(&self.name).await.ok()?;
        let ours = info.metadata.get(META_BUILD) == Some(&self.identity);
        let seq = info.metadata.get(META_SEQ).and_then(|s| s.parse().ok()).filter(|_| ours);
        Some((info.nuid, seq))
    }

    /// Saves `bytes`, the fold up to and including the stream's message `seq`. Several replicas
    /// may save at once: the last one stays, and each is a whole fold at its own sequence.
    pub async fn save(&self, seq: u64, bytes: &[u8]) -> anyhow::Result<()> {
        let digest = self
            .message_digest(seq)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream has no message {seq} to snapshot at"))?;
        let mac = self.sign(&self.identity, seq, &digest, bytes);
        let meta = object_store::ObjectMetadata {
            name: self.name.clone(),
            description: Some(format!("fold of {} up to sequence {seq}", self.stream)),
            metadata: [
                (META_BUILD, self.identity.clone()),
                (META_SEQ, seq.to_string()),
                (META_DIGEST, digest),
                (META_MAC, mac.to_hex()),
            ]
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

/// How a service keeps snapshots of its fold of the admin stream.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    /// Save again after this many events (0: neither load nor save one).
    pub every: u64,
    /// What their signing key is derived from (`None`: no snapshots).
    pub pepper: Option<KeyPepper>,
    /// Replicas of the object store (`nats.replicas`).
    pub replicas: usize,
}

impl SnapshotPolicy {
    /// No snapshots: the whole stream is read (the break-glass commands).
    pub const NONE: Self = Self { every: 0, pepper: None, replicas: 1 };

    /// Loads `service`'s stored snapshot `name` of its fold of the admin stream (`what`, in log
    /// lines) with `restore` when the policy allows and there is one this build may use (see
    /// [`load_or_replay`]): the sequence it was taken at (0: none, the caller replays the
    /// stream) and the saver of later ones, if any.
    pub async fn load(
        &self,
        client: &async_nats::Client,
        ns: &Namespace,
        (service, name, what): (&str, &str, &'static str),
        restore: impl FnOnce(u64, &[u8]) -> serde_json::Result<()>,
    ) -> (u64, Option<Saver>) {
        let Some(pepper) = self.pepper.as_ref().filter(|_| self.every > 0) else { return (0, None) };
        let stream = ns.stream(ccp_schemas::subjects::StreamKind::Admin);
        match Snapshots::open(client.clone(), ns, service, stream, name, pepper, self.replicas).await {
            Ok(store) => {
                let mut from = 0;
                let restore = |seq, bytes: &[u8]| {
                    restore(seq, bytes)?;
                    from = seq;
                    Ok(())
                };
                let saver = load_or_replay(store, what, self.every, restore).await;
                (from, Some(saver))
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no {what} snapshots: replaying the admin stream");
                (0, None)
            }
        }
    }
}

/// Loads the stored snapshot with `restore` (given its sequence and bytes) when there is one
/// this build may use; else (the reason logged, as `what`) the caller replays the stream. A
/// saver that starts where the state now ends.
pub async fn load_or_replay(
    snapshots: Snapshots,
    what: &'static str,
    every: u64,
    restore: impl FnOnce(u64, &[u8]) -> serde_json::Result<()>,
) -> Saver {
    let started = Instant::now();
    let (loaded, distrusted) = match snapshots.load().await {
        Ok(loaded) => match restore(loaded.seq, &loaded.bytes) {
            Ok(()) => {
                tracing::info!(
                    seq = loaded.seq,
                    bytes = loaded.bytes.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "{what} snapshot loaded"
                );
                (loaded.seq, None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the {what} snapshot does not read back: replaying the stream");
                (0, snapshots.stored().await.map(|(nuid, _)| nuid))
            }
        },
        Err(Unusable::Missing) => (0, None),
        Err(why) => {
            tracing::info!(reason = %why, "not using the {what} snapshot: replaying the stream");
            (0, snapshots.stored().await.map(|(nuid, _)| nuid))
        }
    };
    Saver::new(snapshots, what, every, loaded, distrusted)
}

/// Saves a fold's snapshot every `every` events, in the background, one save at a time; after a
/// failed save, not again for a minute.
#[derive(Debug)]
pub struct Saver {
    snapshots: Snapshots,
    what: &'static str,
    every: u64,
    /// The sequence of the last snapshot saved or loaded (0: none yet).
    saved: Arc<AtomicU64>,
    /// The stored object found unusable at start, if any: never taken for another's save.
    distrusted: Option<String>,
    busy: Arc<AtomicBool>,
    not_before: Arc<Mutex<Option<Instant>>>,
}

impl Saver {
    /// A saver of `snapshots` (`what` names it in log lines) every `every` events past `loaded`,
    /// the sequence of the snapshot the fold started from (0: none; then `distrusted` is the
    /// stored object found unusable, if there was one).
    fn new(snapshots: Snapshots, what: &'static str, every: u64, loaded: u64, distrusted: Option<String>) -> Self {
        Self {
            snapshots,
            what,
            every,
            saved: Arc::new(AtomicU64::new(loaded)),
            distrusted,
            busy: Arc::new(AtomicBool::new(false)),
            not_before: Arc::new(Mutex::new(None)),
        }
    }

    /// Saves the fold at `seq` if it is `every` events past the last snapshot: `serialize` is
    /// called here, the upload runs in a spawned task after a random pause (replicas reaching
    /// the same sequence spread out, and a later one skips its save when it finds an earlier
    /// one's at the same sequence or later). Call it from the task that applies the events,
    /// once caught up: nothing changes the state while it is serialized, so the read lock it
    /// takes holds no writer (and so no reader queued behind one) back.
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
        let pause = Duration::from_millis(u64::from(ulid::Ulid::new().random() as u16) % SAVE_JITTER_MS);
        let (snapshots, saved, busy, not_before) =
            (self.snapshots.clone(), self.saved.clone(), self.busy.clone(), self.not_before.clone());
        let distrusted = self.distrusted.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            match snapshots.stored().await {
                // Another replica saved one at this sequence or later meanwhile.
                Some((nuid, Some(stored))) if stored >= seq && Some(&nuid) != distrusted.as_ref() => {
                    saved.store(stored, Ordering::Release);
                }
                _ => match snapshots.save(seq, &bytes).await {
                    Ok(()) => {
                        saved.store(seq, Ordering::Release);
                        tracing::info!(
                            seq,
                            bytes = bytes.len(),
                            serialize_ms = serialized.as_millis() as u64,
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
