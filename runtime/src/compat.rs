//! Rolling upgrades: every service announces the contract revision it reads
//! ([`ccp_schemas::compat`]) in the `<prefix>_services` KV bucket, every few seconds, and watches
//! the others' announcements. A writer asks [`Readers::older_than`] before appending an event
//! introduced in a later revision than some running reader reads; while one is running, the
//! event is held back (the command is refused with a retryable error), so an older replica never
//! meets an event it would have to fail closed on.
//!
//! An announcement that has not been renewed for [`STALE`] no longer counts (a replica that died
//! without saying goodbye); a service stopping cleanly deletes its own at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ccp_schemas::Namespace;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

/// How often a service renews its announcement.
pub const RENEW: Duration = Duration::from_secs(5);
/// An announcement older than this no longer counts.
pub const STALE: Duration = Duration::from_secs(20);

/// What a running service says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// `ccp-proxy`, `ccp-projector`, `ccp-admin`.
    pub service: String,
    /// This process (a fresh id per start).
    pub instance: String,
    /// Its release (`CARGO_PKG_VERSION`) and git commit.
    pub version: String,
    /// The contract revision it reads.
    pub contract: u16,
    /// When it said so.
    pub at: DateTime<Utc>,
}

/// The running services as their announcements describe them.
#[derive(Debug, Default)]
pub struct Readers {
    seen: Mutex<HashMap<String, Announcement>>,
}

impl Readers {
    /// A running reader (announced within [`STALE`]) of a revision below `revision`, if any: the
    /// oldest.
    pub fn older_than(&self, revision: u16) -> Option<Announcement> {
        let now = Utc::now();
        let stale = chrono::Duration::from_std(STALE).unwrap_or_default();
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.values().filter(|a| a.contract < revision && now - a.at < stale).min_by_key(|a| a.contract).cloned()
    }

    fn note(&self, key: String, announcement: Option<Announcement>) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match announcement {
            Some(a) => {
                if seen.get(&key).is_none_or(|old| old.contract != a.contract)
                    && a.contract < ccp_schemas::compat::CONTRACT
                {
                    tracing::warn!(service = %a.service, version = %a.version, contract = a.contract,
                        "an older release is running: events of later contract revisions are held back until it is gone");
                }
                seen.insert(key, a);
            }
            None => {
                seen.remove(&key);
            }
        }
    }
}

/// This service's announcement, renewed until [`Announcer::withdraw`], and what the others say.
pub struct Announcer {
    key: String,
    /// The running services.
    pub readers: Arc<Readers>,
    store: Arc<std::sync::OnceLock<kv::Store>>,
    task: tokio::task::JoinHandle<()>,
}

/// The bucket of announcements.
fn bucket_name(ns: &Namespace) -> String {
    format!("{}_services", ns.prefix())
}

impl Announcer {
    fn own(service: &str) -> (Announcement, String) {
        let own = Announcement {
            service: service.to_owned(),
            instance: ulid::Ulid::new().to_string(),
            version: crate::telemetry::VERSION_LINE.to_owned(),
            contract: ccp_schemas::compat::reading(),
            at: Utc::now(),
        };
        let key = format!("{service}.{}", own.instance);
        (own, key)
    }

    /// Announces `service` (reading [`ccp_schemas::compat::reading`]) once the others'
    /// announcements have been read — for a writer, which must not miss an older reader.
    pub async fn start(
        client: async_nats::Client,
        ns: &Namespace,
        service: &str,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let (own, key) = Self::own(service);
        let readers = Arc::new(Readers::default());
        let (store, entries) = connect(&client, ns, &readers, replicas).await?;
        put(&store, &key, &own).await?;
        tracing::info!(contract = own.contract, "announced in {}", bucket_name(ns));
        let slot = Arc::new(std::sync::OnceLock::new());
        let _ = slot.set(store.clone());
        let task = tokio::spawn(keep(store, entries, Arc::clone(&readers), key.clone(), own));
        Ok(Self { key, readers, store: slot, task })
    }

    /// Announces `service` in the background, retrying until NATS answers (a reader that must
    /// start without NATS: the proxy).
    pub fn spawn(client: async_nats::Client, ns: Namespace, service: &str, replicas: usize) -> Self {
        let (own, key) = Self::own(service);
        let readers = Arc::new(Readers::default());
        let slot = Arc::new(std::sync::OnceLock::new());
        let task = {
            let (readers, slot, key) = (Arc::clone(&readers), Arc::clone(&slot), key.clone());
            tokio::spawn(async move {
                loop {
                    match connect(&client, &ns, &readers, replicas).await {
                        Ok((store, entries)) => {
                            let _ = slot.set(store.clone());
                            keep(store, entries, readers, key, own).await;
                            return;
                        }
                        Err(e) => tracing::debug!(error = %e, "not announced yet (NATS unreachable?)"),
                    }
                    tokio::time::sleep(RENEW).await;
                }
            })
        };
        Self { key, readers, store: slot, task }
    }

    /// Stops renewing and deletes the announcement (a clean stop).
    pub async fn withdraw(self) {
        self.task.abort();
        if let Some(store) = self.store.get() {
            let _ = store.purge(&self.key).await;
        }
    }
}

/// Opens the bucket and reads the announcements there.
async fn connect(
    client: &async_nats::Client,
    ns: &Namespace,
    readers: &Readers,
    replicas: usize,
) -> anyhow::Result<(kv::Store, kv::Watch)> {
    let js = jetstream::new(client.clone());
    let store = crate::streams::own_bucket(
        &js,
        bucket_name(ns),
        STALE * 3,
        "ClaudeCodeProxy running services and the contract revision each reads",
        replicas,
    )
    .await?;
    // With history: every key's current announcement first (`watch_all` would deliver only new
    // puts — the start then waited for the next renewal, up to 5 s, and knew one service).
    let mut entries =
        store.watch_with_history(">").await.map_err(|e| anyhow::anyhow!("watch {}: {e}", bucket_name(ns)))?;
    let present = store.status().await.map(|s| s.values()).unwrap_or(0);
    if present > 0 {
        while let Ok(Some(Ok(entry))) = tokio::time::timeout(Duration::from_secs(5), entries.next()).await {
            note_entry(readers, &entry);
            if entry.delta == 0 {
                break;
            }
        }
    }
    Ok((store, entries))
}

/// Renews the announcement every [`RENEW`] and follows the others'.
async fn keep(store: kv::Store, mut entries: kv::Watch, readers: Arc<Readers>, key: String, mut own: Announcement) {
    let mut ticks = tokio::time::interval(RENEW);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                own.at = Utc::now();
                if let Err(e) = put(&store, &key, &own).await {
                    tracing::debug!(error = %e, "announcement not renewed (NATS unreachable?)");
                }
            }
            entry = entries.next() => match entry {
                Some(Ok(entry)) => note_entry(&readers, &entry),
                Some(Err(e)) => tracing::debug!(error = %e, "announcements: watch error"),
                None => {
                    // The watch ended (NATS restarted): watch again.
                    match store.watch_with_history(">").await {
                        Ok(w) => entries = w,
                        Err(_) => tokio::time::sleep(RENEW).await,
                    }
                }
            },
        }
    }
}

async fn put(store: &kv::Store, key: &str, own: &Announcement) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(own)?;
    store.put(key, bytes.into()).await.map_err(|e| anyhow::anyhow!("announce: {e}"))?;
    Ok(())
}

fn note_entry(readers: &Readers, entry: &kv::Entry) {
    let announcement = match entry.operation {
        kv::Operation::Put => serde_json::from_slice::<Announcement>(&entry.value).ok(),
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    readers.note(entry.key.clone(), announcement);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(contract: u16, age_secs: i64) -> Announcement {
        Announcement {
            service: "ccp-proxy".into(),
            instance: format!("i{contract}{age_secs}"),
            version: "0.1.0 (abc)".into(),
            contract,
            at: Utc::now() - chrono::Duration::seconds(age_secs),
        }
    }

    #[test]
    fn only_live_older_readers_hold_events_back() {
        let readers = Readers::default();
        readers.note("a".into(), Some(announcement(2, 0)));
        assert_eq!(readers.older_than(2), None);
        readers.note("b".into(), Some(announcement(1, 60)));
        assert_eq!(readers.older_than(2), None, "a stale announcement counted");
        readers.note("c".into(), Some(announcement(1, 1)));
        assert_eq!(readers.older_than(2).map(|a| a.contract), Some(1));
        assert_eq!(readers.older_than(1), None);
        readers.note("c".into(), None);
        assert_eq!(readers.older_than(2), None, "a withdrawn announcement counted");
    }
}
