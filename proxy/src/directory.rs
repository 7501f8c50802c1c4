//! The proxy's in-memory table of users and access keys, folded from the admin stream of the
//! event log and kept current by following it live (an ordered consumer), so a revocation
//! reaches every replica within milliseconds. The request path only takes a read lock.
//!
//! A start reads state, not history: the table (with the price list and catalogue that arrive
//! on the same stream) is saved as a snapshot ([`ccp_runtime::snapshot`]) once it is
//! `proxy.key_table_snapshot_every` events past the last one, and a start loads the snapshot
//! and follows the stream from the sequence after it. Without a usable snapshot it replays
//! the stream from sequence 1 (and then saves one).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ccp_runtime::follow::{Decoded, Follower, Next, OnNewer, Start};
use ccp_runtime::snapshot::SnapshotPolicy;
use ccp_schemas::catalogue::Catalogue;
use ccp_schemas::events::{BedrockSettings, Event, RoutingStrategy};
use ccp_schemas::ids::{AccessKeyId, TeamId, UserId};
use ccp_schemas::pricing::PriceList;
use ccp_schemas::secrets::access_key::{KeyHash, KeyPrefix};
use ccp_schemas::secrets::envelope::SealedSecret;
use ccp_schemas::state::{Directory, Refusal};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The snapshot's name in the store.
const SNAPSHOT_NAME: &str = "proxy-key-table";

/// What a request learns about its key.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// Display prefix.
    pub key_prefix: KeyPrefix,
    /// How the owner's requests are routed: their own strategy once one was set for them, else
    /// their team's routing default (`Directory::routing_of`).
    pub routing: RoutingStrategy,
    /// Whether a Bedrock API key is registered for the key.
    pub has_bedrock_key: bool,
    /// The owner's monthly budget in USD (`None`: unlimited).
    pub monthly_limit_usd: Option<Decimal>,
    /// The owner's team now: its spend is counted with this request's.
    pub team: Option<TeamBudget>,
}

/// The team of a request's user, at the time of the request.
#[derive(Debug, Clone)]
pub struct TeamBudget {
    /// The team.
    pub team_id: TeamId,
    /// Its name (for a refusal).
    pub name: String,
    /// Its monthly budget in USD (`None`: unlimited).
    pub monthly_limit_usd: Option<Decimal>,
}

/// What a Bedrock call needs of a key; read only on failover.
#[derive(Debug, Clone)]
pub struct BedrockCredentials {
    /// The sealed Bedrock API key.
    pub sealed: SealedSecret,
    /// Region and default model.
    pub settings: BedrockSettings,
}

/// The shared table (and the price list and model catalogue, which arrive on the same stream).
#[derive(Debug, Default)]
pub struct KeyTable {
    directory: RwLock<Directory>,
    prices: RwLock<Arc<PriceList>>,
    catalogue: RwLock<Arc<Catalogue>>,
    ready: AtomicBool,
    applied_seq: AtomicU64,
}

impl KeyTable {
    /// An empty table with the configured price list (version 0).
    pub fn new(prices: PriceList) -> Self {
        Self { prices: RwLock::new(Arc::new(prices)), ..Self::default() }
    }

    /// The price list in force.
    pub fn prices(&self) -> Arc<PriceList> {
        self.prices.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The model catalogue in force.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether the admin stream has been read up to its head once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The last stream sequence applied.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Looks a presented key's hash up.
    pub fn authenticate(&self, hash: &KeyHash) -> Result<Authenticated, Refusal> {
        let dir = self.directory.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (key, user) = dir.authenticate(hash)?;
        let team = dir.team_of(user).map(|t| TeamBudget {
            team_id: t.team_id,
            name: t.name.clone(),
            monthly_limit_usd: t.monthly_limit_usd,
        });
        Ok(Authenticated {
            key_id: key.key_id,
            user_id: key.user_id,
            key_prefix: key.key_prefix.clone(),
            routing: dir.routing_of(user),
            has_bedrock_key: key.bedrock_key.is_some(),
            monthly_limit_usd: user.monthly_limit_usd,
            team,
        })
    }

    /// The sealed Bedrock key and settings of an access key, if one is registered.
    pub fn bedrock_credentials(&self, key_id: &AccessKeyId) -> Option<BedrockCredentials> {
        let dir = self.directory.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = dir.key(key_id)?;
        let sealed = key.bedrock_key.as_ref()?.sealed.clone();
        Some(BedrockCredentials { sealed, settings: key.bedrock.clone() })
    }

    /// Number of access keys known.
    pub fn key_count(&self) -> usize {
        self.directory.read().unwrap_or_else(std::sync::PoisonError::into_inner).keys().count()
    }

    fn apply(&self, seq: u64, envelope: &Envelope) {
        if let Event::PricingSet(p) = &envelope.event {
            let mut prices = self.prices.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if p.version > prices.version {
                *prices = Arc::new(PriceList::from(p));
            }
        }
        if matches!(envelope.event, Event::ModelCatalogued(_) | Event::ModelRemoved(_)) {
            let mut catalogue = self.catalogue.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut next = catalogue.as_ref().clone();
            next.apply(&envelope.event);
            *catalogue = Arc::new(next);
        }
        self.directory.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(envelope);
        self.applied_seq.store(seq, Ordering::Release);
    }

    fn mark_ready(&self, from_snapshot: u64) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            let seq = self.applied_seq();
            tracing::info!(
                keys = self.key_count(),
                seq,
                from_snapshot,
                replayed = seq - from_snapshot,
                "access keys loaded"
            );
        }
    }

    /// The table as a snapshot saves it (JSON).
    fn snapshot(&self) -> serde_json::Result<Vec<u8>> {
        let directory = self.directory.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let prices = self.prices();
        let catalogue = self.catalogue();
        serde_json::to_vec(&SnapshotRef { directory: &directory, prices: &prices, catalogue: &catalogue })
    }

    /// Replaces the table by a snapshot taken at stream sequence `seq`. A price list of version
    /// 0 is the configured one of the replica that saved it: this replica keeps its own.
    fn restore(&self, seq: u64, bytes: &[u8]) -> serde_json::Result<()> {
        let snapshot: Snapshot = serde_json::from_slice(bytes)?;
        *self.directory.write().unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot.directory;
        if snapshot.prices.version > 0 {
            *self.prices.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot.prices);
        }
        *self.catalogue.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot.catalogue);
        self.applied_seq.store(seq, Ordering::Release);
        Ok(())
    }
}

/// A snapshot of the table, as saved.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    directory: &'a Directory,
    prices: &'a PriceList,
    catalogue: &'a Catalogue,
}

/// A snapshot of the table, as read back.
#[derive(Deserialize)]
struct Snapshot {
    directory: Directory,
    prices: PriceList,
    catalogue: Catalogue,
}

/// Follows the admin stream for ever, applying every event to `table` (resuming after the last
/// applied one when NATS goes away). An event of a newer version halts it and makes the table
/// not ready: it may revoke a key, so the proxy refuses every request until it is upgraded
/// ([`OnNewer::Halt`]).
///
/// As `snapshots` says, it starts from the stored snapshot when it can and saves one every
/// `snapshots.every` events.
pub async fn follow(table: Arc<KeyTable>, client: async_nats::Client, ns: Namespace, snapshots: SnapshotPolicy) {
    let restore = |seq, bytes: &[u8]| table.restore(seq, bytes);
    let (_, saver) = snapshots.load(&client, &ns, ("proxy", SNAPSHOT_NAME, "key table"), restore).await;
    let from_snapshot = table.applied_seq();
    let caught_up = |table: &KeyTable| {
        table.mark_ready(from_snapshot);
        if let Some(saver) = &saver {
            saver.maybe_save(table.applied_seq(), || table.snapshot());
        }
    };
    let mut follower = Follower::new("proxy key table", client, &ns, StreamKind::Admin)
        .start(Start::After(table.applied_seq()))
        .on_newer(OnNewer::Halt);
    loop {
        let delivery = match follower.next().await {
            Next::CaughtUp => {
                caught_up(&table);
                continue;
            }
            Next::Message(delivery) => delivery,
        };
        match follower.decode(&delivery) {
            Decoded::Apply(envelope) => table.apply(delivery.seq, &envelope),
            Decoded::Skip | Decoded::Quarantine(_) => table.applied_seq.store(delivery.seq, Ordering::Release),
            Decoded::Halt(_) => {
                table.ready.store(false, Ordering::Release);
                continue;
            }
        }
        if delivery.caught_up {
            caught_up(&table);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::{ModelPrice, ModelRemoved, PricingSet};
    use ccp_schemas::Actor;

    use super::*;

    fn price(model: &str, input: i64) -> ModelPrice {
        ModelPrice {
            model: model.into(),
            provider: None,
            region: None,
            input_per_mtok: Decimal::from(input),
            output_per_mtok: Decimal::from(input * 5),
            cache_write_per_mtok: Decimal::ZERO,
            cache_read_per_mtok: Decimal::ZERO,
        }
    }

    fn configured(input: i64) -> PriceList {
        PriceList { version: 0, models: vec![price("claude-sonnet-4-5", input)] }
    }

    fn event(event: Event) -> Envelope {
        Envelope::new(event, Actor::Anonymous)
    }

    /// A snapshot restores the catalogue and a published price list; the configured list
    /// (version 0) of the replica that saved it is not taken over.
    #[test]
    fn a_snapshot_restores_catalogue_and_published_prices_but_not_another_replicas_configuration() {
        let saved = KeyTable::new(configured(3));
        saved.apply(1, &event(Event::ModelRemoved(ModelRemoved { model: "claude-opus-4".into() })));
        let bytes = saved.snapshot().unwrap();
        let restored = KeyTable::new(configured(4));
        restored.restore(1, &bytes).unwrap();
        assert_eq!(restored.applied_seq(), 1);
        assert_eq!(*restored.catalogue(), *saved.catalogue());
        assert!(restored.catalogue().lookup("claude-opus-4").is_none());
        assert_eq!(*restored.prices(), configured(4), "its own configured list");

        let published = PricingSet { version: 7, models: vec![price("claude-sonnet-4-5", 2)] };
        saved.apply(2, &event(Event::PricingSet(published.clone())));
        let restored = KeyTable::new(configured(4));
        restored.restore(2, &saved.snapshot().unwrap()).unwrap();
        assert_eq!(*restored.prices(), PriceList::from(&published));
    }
}
