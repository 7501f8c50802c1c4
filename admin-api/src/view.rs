//! The admin API's read model: every user, access key and admin account, folded from the admin
//! stream and kept current by following it (an ordered consumer). A command waits until the
//! view has applied its own events before answering, so the next GET already shows them.
//!
//! A start reads state, not history: the model is saved as a snapshot
//! ([`ccp_runtime::snapshot`]) every `admin.view_snapshot_every` events, and a start of the same
//! build loads it and follows the stream from the sequence after it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_nats::jetstream;
use ccp_runtime::follow::{Decoded, Follower, Next, OnNewer, Start};
use ccp_runtime::snapshot::SnapshotPolicy;
use ccp_schemas::ids::AdminId;
use ccp_schemas::secrets::access_key::KeyHash;
use ccp_schemas::state::Directory;
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Envelope, Event, Namespace};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::domain::AdminState;

/// The snapshot's name in the store.
const SNAPSHOT_NAME: &str = "admin-view";

/// Everything the view holds.
#[derive(Debug, Default)]
pub struct Model {
    /// Users and access keys.
    pub directory: Directory,
    /// Admin accounts.
    pub admins: HashMap<AdminId, AdminState>,
    /// Each aggregate's version: the stream sequence of its last event (its `ETag`).
    pub versions: HashMap<Aggregate, u64>,
}

/// A snapshot of the model, as saved.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    directory: &'a Directory,
    admins: Vec<&'a AdminState>,
    versions: Vec<(&'a Aggregate, &'a u64)>,
}

/// A snapshot of the model, as read back.
#[derive(Deserialize)]
struct Snapshot {
    directory: Directory,
    admins: Vec<AdminState>,
    versions: Vec<(Aggregate, u64)>,
}

impl Model {
    /// The model as a snapshot saves it (JSON).
    fn snapshot(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&SnapshotRef {
            directory: &self.directory,
            admins: self.admins.values().collect(),
            versions: self.versions.iter().collect(),
        })
    }

    /// The model a snapshot holds.
    fn restore(bytes: &[u8]) -> serde_json::Result<Self> {
        let snapshot: Snapshot = serde_json::from_slice(bytes)?;
        Ok(Self {
            directory: snapshot.directory,
            admins: snapshot.admins.into_iter().map(|a| (a.admin_id, a)).collect(),
            versions: snapshot.versions.into_iter().collect(),
        })
    }

    /// An aggregate's version (0: no events).
    pub fn version(&self, aggregate: &Aggregate) -> u64 {
        self.versions.get(aggregate).copied().unwrap_or(0)
    }

    fn apply(&mut self, envelope: &Envelope, seq: u64) {
        self.versions.insert(envelope.event.aggregate(), seq);
        if self.directory.apply(envelope) {
            return;
        }
        let admin_id = match &envelope.event {
            Event::AdminCreated(e) => e.admin_id,
            Event::AdminRoleSet(e) => e.admin_id,
            Event::AdminPasswordChanged(e) => e.admin_id,
            Event::AdminDisabled(e) => e.admin_id,
            Event::AdminEnabled(e) => e.admin_id,
            Event::AdminSessionsRevoked(e) => e.admin_id,
            Event::AdminSsoLinked(e) => e.admin_id,
            Event::AdminTeamScopeSet(e) => e.admin_id,
            Event::ApiTokenIssued(e) => e.admin_id,
            Event::ApiTokenRevoked(e) => e.admin_id,
            _ => return,
        };
        let mut state = self.admins.remove(&admin_id);
        AdminState::apply(&mut state, &envelope.event, envelope.occurred_at);
        if let Some(s) = state {
            self.admins.insert(admin_id, s);
        }
    }

    /// Whether `admin_id` is the only enabled admin with the `admin` role: taking that role from
    /// it, or disabling it, would leave nobody able to manage admins (break-glass aside).
    pub fn is_last_admin(&self, admin_id: AdminId) -> bool {
        let is_admin = |a: &AdminState| a.role == ccp_schemas::events::AdminRole::Admin && !a.disabled;
        self.admins.get(&admin_id).is_some_and(is_admin)
            && !self.admins.values().any(|a| a.admin_id != admin_id && is_admin(a))
    }

    /// The admin with this username.
    pub fn admin_by_name(&self, username: &str) -> Option<&AdminState> {
        self.admins.values().find(|a| a.username == username)
    }

    /// The admin bound to this person at the OpenID provider.
    pub fn admin_by_sso(&self, issuer: &str, subject: &str) -> Option<&AdminState> {
        self.admins.values().find(|a| a.sso.as_ref().is_some_and(|(i, s)| i == issuer && s == subject))
    }

    /// The admin owning an active API token with this hash.
    pub fn admin_by_token(&self, hash: &KeyHash) -> Option<&AdminState> {
        self.admins.values().find(|a| !a.disabled && a.tokens.iter().any(|t| !t.revoked && t.hash.ct_eq(hash)))
    }
}

/// The shared, live read model.
pub struct View {
    model: RwLock<Model>,
    applied: watch::Sender<u64>,
    /// Why the view stopped applying events (an event of a newer version), if it did.
    halted: RwLock<Option<String>>,
}

impl View {
    /// An empty view.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            model: RwLock::new(Model::default()),
            applied: watch::Sender::new(0),
            halted: RwLock::new(None),
        })
    }

    /// Read access.
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last applied admin stream sequence.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits (at most `timeout`) until the view has applied `seq`; whether it has.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Why the view stopped at an event of a newer version (it may disable an admin or revoke a
    /// token: requests are refused until this API is upgraded), or `None`.
    pub fn halted(&self) -> Option<String> {
        self.halted.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Loads the admin stream (from the stored snapshot on, when `snapshots` allows and there
    /// is one this build may use), then follows it for ever (in a spawned task), saving a
    /// snapshot as `snapshots` says. An event of a newer version halts it ([`OnNewer::Halt`]):
    /// see [`Self::halted`].
    pub async fn start(
        self: &Arc<Self>,
        client: async_nats::Client,
        ns: Namespace,
        snapshots: SnapshotPolicy,
    ) -> anyhow::Result<()> {
        let js = jetstream::new(client.clone());
        let stream = js.get_stream(ns.stream(StreamKind::Admin)).await?;
        let target = stream.get_info().await?.state.last_sequence;
        let restore = |seq, bytes: &[u8]| {
            *self.model.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Model::restore(bytes)?;
            self.applied.send_replace(seq);
            Ok(())
        };
        let (_, saver) = snapshots.load(&client, &ns, ("admin", SNAPSHOT_NAME, "admin view"), restore).await;
        let from_snapshot = self.applied();
        let mut follower = Follower::new("admin API view", client, &ns, StreamKind::Admin)
            .start(Start::After(from_snapshot))
            .on_newer(OnNewer::Halt);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let delivery = match follower.next().await {
                    Next::Message(delivery) => delivery,
                    Next::CaughtUp => {
                        if let Some(saver) = &saver {
                            let model = this.read();
                            saver.maybe_save(this.applied(), || model.snapshot());
                        }
                        continue;
                    }
                };
                let caught_up = delivery.caught_up;
                match follower.decode(&delivery) {
                    Decoded::Apply(envelope) => {
                        this.model
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .apply(&envelope, delivery.seq);
                        *this.halted.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    }
                    Decoded::Skip | Decoded::Quarantine(_) => {}
                    Decoded::Halt(e) => {
                        let why = format!("admin event {} was written by a newer version ({e})", delivery.seq);
                        *this.halted.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                        continue;
                    }
                }
                this.applied.send_replace(delivery.seq);
                if let (true, Some(saver)) = (caught_up, &saver) {
                    let model = this.read();
                    saver.maybe_save(delivery.seq, || model.snapshot());
                }
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !self.wait_for(target, Duration::from_millis(200)).await {
            if let Some(why) = self.halted() {
                anyhow::bail!("the admin state cannot be loaded: {why}; upgrade this admin API");
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the admin stream did not load within 120 s");
            }
        }
        tracing::info!(
            events = target,
            from_snapshot,
            replayed = target.saturating_sub(from_snapshot),
            "admin state loaded"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::{AlertRaised, AlertRule, AlertSeverity};
    use ccp_schemas::Actor;

    use super::*;

    /// Events the view does not fold (alerts raised by the projector) only move the version.
    #[test]
    fn alert_events_are_ignored_gracefully() {
        let mut model = Model::default();
        let alert = AlertRaised {
            alert_id: ulid::Ulid::new(),
            rule: AlertRule::CircuitOpen,
            incident: "circuit_open:key_x:1".into(),
            severity: AlertSeverity::Warning,
            user_id: Some(ccp_schemas::ids::UserId::new()),
            key_id: None,
            message: "opened".into(),
            values: Default::default(),
        };
        let envelope = Envelope::new(Event::AlertRaised(alert), Actor::System { component: "projector-alerts".into() });
        model.apply(&envelope, 7);
        assert_eq!(model.version(&Aggregate::Alert(AlertRule::CircuitOpen)), 7);
        assert_eq!(model.directory.users().count(), 0);
        assert!(model.admins.is_empty());
    }
}
