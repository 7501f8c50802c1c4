//! The one fold of admin events into user and access-key state (`apply`), shared by the proxy's
//! in-memory key table, the projector's KV state and the admin API's command decisions.
//! Pure code: no I/O.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::events::{BedrockSettings, Envelope, Event, RoutingStrategy, UserStatus};
use crate::ids::{AccessKeyId, TeamId, UserId};
use crate::secrets::access_key::{KeyHash, KeyPrefix};
use crate::secrets::envelope::{SealedSecret, SecretHint};

/// A user as the events describe them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// The user.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Contact address.
    pub email: Option<String>,
    /// Whether their keys work.
    pub status: UserStatus,
    /// Monthly budget in USD (`None`: unlimited).
    #[serde(with = "crate::pricing::decimal_str_option")]
    pub monthly_limit_usd: Option<Decimal>,
    /// Routing strategy (their own; see [`Self::routing_set`] and [`Directory::routing_of`]).
    pub routing: RoutingStrategy,
    /// Whether a routing strategy was ever set for the user: only then does it override their
    /// team's routing default.
    #[serde(default)]
    pub routing_set: bool,
    /// Their team, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<TeamId>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

/// A team as the events describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamState {
    /// The team.
    pub team_id: TeamId,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Monthly budget in USD of the members together (`None`: unlimited).
    #[serde(with = "crate::pricing::decimal_str_option")]
    pub monthly_limit_usd: Option<Decimal>,
    /// Routing default of members without a strategy of their own.
    pub routing: Option<RoutingStrategy>,
    /// Deleted (kept in the aggregate's fold so that later commands are refused as not found).
    pub deleted: bool,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl TeamState {
    /// Applies one event to a team's state (`None` before `team_created`).
    pub fn apply(state: &mut Option<Self>, event: &Event, at: DateTime<Utc>) {
        match (event, state.as_mut()) {
            (Event::TeamCreated(e), None) => {
                *state = Some(Self {
                    team_id: e.team_id,
                    name: e.name.clone(),
                    description: e.description.clone(),
                    monthly_limit_usd: None,
                    routing: None,
                    deleted: false,
                    created_at: at,
                    updated_at: at,
                });
            }
            (Event::TeamUpdated(e), Some(s)) => {
                if let Some(name) = &e.name {
                    s.name.clone_from(name);
                }
                if let Some(d) = &e.description {
                    s.description = (!d.is_empty()).then(|| d.clone());
                }
                s.updated_at = at;
            }
            (Event::TeamBudgetSet(e), Some(s)) => {
                s.monthly_limit_usd = e.monthly_limit_usd;
                s.updated_at = at;
            }
            (Event::TeamRoutingSet(e), Some(s)) => {
                s.routing = e.strategy;
                s.updated_at = at;
            }
            (Event::TeamDeleted(_), Some(s)) => {
                s.deleted = true;
                s.updated_at = at;
            }
            _ => {}
        }
    }
}

/// Whether an access key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Accepted (if its user is active).
    Active,
    /// Refused for good.
    Revoked,
}

/// The Bedrock API key registered for an access key, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BedrockKeyState {
    /// Envelope-encrypted key.
    pub sealed: SealedSecret,
    /// What lists show.
    pub hint: SecretHint,
    /// When registered or last rotated.
    pub updated_at: DateTime<Utc>,
    /// The last check of this registration (`None`: not checked yet).
    #[serde(default)]
    pub readiness: Option<ReadinessState>,
}

/// The last readiness check of a Bedrock API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessState {
    /// The verdict.
    pub readiness: crate::events::BedrockReadiness,
    /// When checked.
    pub checked_at: DateTime<Utc>,
    /// The region checked.
    pub region: String,
    /// Each model checked.
    pub models: Vec<crate::events::ModelReadiness>,
    /// Whether the model listing could be read.
    pub listing: Option<crate::events::BedrockReadiness>,
}

/// An access key as the events describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKeyState {
    /// The key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// The admin's label for the key (`laptop`), if any.
    pub name: Option<String>,
    /// Hash of the current secret.
    pub key_hash: KeyHash,
    /// Prefix of the current secret.
    pub key_prefix: KeyPrefix,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Bedrock region and default model.
    pub bedrock: BedrockSettings,
    /// The sealed Bedrock API key, if registered.
    pub bedrock_key: Option<BedrockKeyState>,
    /// When issued.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl UserState {
    /// Applies one event to a user's state (`None` before `user_created`). Events of other
    /// aggregates and events for an unknown user are ignored.
    pub fn apply(state: &mut Option<Self>, event: &Event, at: DateTime<Utc>) {
        match (event, state.as_mut()) {
            (Event::UserCreated(e), None) => {
                *state = Some(Self {
                    user_id: e.user_id,
                    name: e.name.clone(),
                    description: e.description.clone(),
                    email: e.email.clone(),
                    status: e.status,
                    monthly_limit_usd: None,
                    routing: RoutingStrategy::default(),
                    routing_set: false,
                    team_id: None,
                    created_at: at,
                    updated_at: at,
                });
            }
            (Event::UserUpdated(e), Some(s)) => {
                if let Some(name) = &e.name {
                    s.name.clone_from(name);
                }
                if let Some(d) = &e.description {
                    s.description = (!d.is_empty()).then(|| d.clone());
                }
                if let Some(m) = &e.email {
                    s.email = (!m.is_empty()).then(|| m.clone());
                }
                s.updated_at = at;
            }
            (Event::UserDeactivated(_), Some(s)) => {
                s.status = UserStatus::Inactive;
                s.updated_at = at;
            }
            (Event::UserReactivated(_), Some(s)) => {
                s.status = UserStatus::Active;
                s.updated_at = at;
            }
            (Event::BudgetSet(e), Some(s)) => {
                s.monthly_limit_usd = e.monthly_limit_usd;
                s.updated_at = at;
            }
            (Event::RoutingStrategySet(e), Some(s)) => {
                s.routing = e.strategy;
                s.routing_set = true;
                s.updated_at = at;
            }
            (Event::UserTeamSet(e), Some(s)) => {
                s.team_id = e.team_id;
                s.updated_at = at;
            }
            _ => {}
        }
    }
}

impl AccessKeyState {
    /// Applies one event to an access key's state (`None` before `access_key_issued`).
    pub fn apply(state: &mut Option<Self>, event: &Event, at: DateTime<Utc>) {
        match (event, state.as_mut()) {
            (Event::AccessKeyIssued(e), None) => {
                *state = Some(Self {
                    key_id: e.key_id,
                    user_id: e.user_id,
                    name: e.name.clone(),
                    key_hash: e.key_hash,
                    key_prefix: e.key_prefix.clone(),
                    status: KeyStatus::Active,
                    bedrock: e.bedrock.clone(),
                    bedrock_key: None,
                    created_at: at,
                    updated_at: at,
                });
            }
            (Event::AccessKeyRevoked(_), Some(s)) => {
                s.status = KeyStatus::Revoked;
                s.updated_at = at;
            }
            (Event::AccessKeyRotated(e), Some(s)) => {
                s.key_hash = e.key_hash;
                s.key_prefix = e.key_prefix.clone();
                s.updated_at = at;
            }
            (Event::BedrockSettingsChanged(e), Some(s)) => {
                s.bedrock = e.bedrock.clone();
                s.updated_at = at;
            }
            (Event::BedrockApiKeyRegistered(e), Some(s)) => {
                s.bedrock_key = Some(BedrockKeyState {
                    sealed: e.sealed.clone(),
                    hint: e.hint.clone(),
                    updated_at: at,
                    readiness: None,
                });
                s.updated_at = at;
            }
            (Event::BedrockApiKeyRotated(e), Some(s)) => {
                s.bedrock_key = Some(BedrockKeyState {
                    sealed: e.sealed.clone(),
                    hint: e.hint.clone(),
                    updated_at: at,
                    readiness: None,
                });
                s.updated_at = at;
            }
            (Event::BedrockKeyChecked(e), Some(s)) => {
                if let Some(key) = s.bedrock_key.as_mut() {
                    key.readiness = Some(ReadinessState {
                        readiness: e.readiness,
                        checked_at: at,
                        region: e.region.clone(),
                        models: e.models.clone(),
                        listing: e.listing,
                    });
                }
            }
            (Event::BedrockApiKeyRemoved(_), Some(s)) => {
                s.bedrock_key = None;
                s.updated_at = at;
            }
            _ => {}
        }
    }
}

/// Why a presented key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key has this hash.
    Unknown,
    /// The key was revoked (or rotated away: its old secret is unknown).
    Revoked,
    /// The key's user is deactivated.
    InactiveUser,
}

/// Every user and access key, indexed for authentication by key hash.
///
/// Serialized (for a service's snapshot of its fold, `ccp_runtime::snapshot`) as its users,
/// teams and keys; the index by hash is rebuilt when it is read back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "DirectoryParts")]
pub struct Directory {
    users: HashMap<UserId, UserState>,
    teams: HashMap<TeamId, TeamState>,
    keys: HashMap<AccessKeyId, AccessKeyState>,
    by_hash: HashMap<KeyHash, AccessKeyId>,
}

/// What a directory is serialized as.
#[derive(Deserialize)]
struct DirectoryParts {
    users: Vec<UserState>,
    teams: Vec<TeamState>,
    keys: Vec<AccessKeyState>,
}

impl From<DirectoryParts> for Directory {
    fn from(parts: DirectoryParts) -> Self {
        let by_hash = parts.keys.iter().map(|k| (k.key_hash, k.key_id)).collect();
        Self {
            users: parts.users.into_iter().map(|u| (u.user_id, u)).collect(),
            teams: parts.teams.into_iter().map(|t| (t.team_id, t)).collect(),
            keys: parts.keys.into_iter().map(|k| (k.key_id, k)).collect(),
            by_hash,
        }
    }
}

impl Serialize for Directory {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut parts = serializer.serialize_struct("Directory", 3)?;
        parts.serialize_field("users", &Values(&self.users))?;
        parts.serialize_field("teams", &Values(&self.teams))?;
        parts.serialize_field("keys", &Values(&self.keys))?;
        parts.end()
    }
}

/// A map's values, serialized as a sequence.
struct Values<'a, K, V>(&'a HashMap<K, V>);

impl<K, V: Serialize> Serialize for Values<'_, K, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.values())
    }
}

impl Directory {
    /// Applies one event; returns whether it changed anything this directory tracks.
    pub fn apply(&mut self, envelope: &Envelope) -> bool {
        let at = envelope.occurred_at;
        let event = &envelope.event;
        if let Some(user_id) = user_aggregate(event) {
            let mut state = self.users.remove(&user_id);
            UserState::apply(&mut state, event, at);
            if let Some(s) = state {
                self.users.insert(user_id, s);
            }
            return true;
        }
        if let crate::subjects::Aggregate::Team(team_id) = event.aggregate() {
            let mut state = self.teams.remove(&team_id);
            TeamState::apply(&mut state, event, at);
            if let Some(s) = state.filter(|s| !s.deleted) {
                self.teams.insert(team_id, s);
            }
            return true;
        }
        if let Some(key_id) = key_aggregate(event) {
            let mut state = self.keys.remove(&key_id);
            if let Some(old) = &state {
                self.by_hash.remove(&old.key_hash);
            }
            AccessKeyState::apply(&mut state, event, at);
            if let Some(s) = state {
                self.by_hash.insert(s.key_hash, key_id);
                self.keys.insert(key_id, s);
            }
            return true;
        }
        false
    }

    /// Authenticates a key hash: the key and its user, or why it is refused.
    pub fn authenticate(&self, hash: &KeyHash) -> Result<(&AccessKeyState, &UserState), Refusal> {
        let key = self.by_hash.get(hash).and_then(|id| self.keys.get(id)).ok_or(Refusal::Unknown)?;
        if key.status == KeyStatus::Revoked {
            return Err(Refusal::Revoked);
        }
        let user = self.users.get(&key.user_id).ok_or(Refusal::Unknown)?;
        if user.status != UserStatus::Active {
            return Err(Refusal::InactiveUser);
        }
        Ok((key, user))
    }

    /// A user.
    pub fn user(&self, id: &UserId) -> Option<&UserState> {
        self.users.get(id)
    }

    /// An access key.
    pub fn key(&self, id: &AccessKeyId) -> Option<&AccessKeyState> {
        self.keys.get(id)
    }

    /// Every user.
    pub fn users(&self) -> impl Iterator<Item = &UserState> {
        self.users.values()
    }

    /// Every access key.
    pub fn keys(&self) -> impl Iterator<Item = &AccessKeyState> {
        self.keys.values()
    }

    /// A team (not deleted).
    pub fn team(&self, id: &TeamId) -> Option<&TeamState> {
        self.teams.get(id)
    }

    /// Every team (not deleted).
    pub fn teams(&self) -> impl Iterator<Item = &TeamState> {
        self.teams.values()
    }

    /// The user's team, if they have one that exists. A user still naming a deleted team (they
    /// were added to it while it was being deleted) has none.
    pub fn team_of(&self, user: &UserState) -> Option<&TeamState> {
        user.team_id.and_then(|id| self.teams.get(&id))
    }

    /// The members of a team.
    pub fn members(&self, team_id: TeamId) -> impl Iterator<Item = &UserState> {
        self.users.values().filter(move |u| u.team_id == Some(team_id))
    }

    /// How the user's requests are routed: their own strategy once one was set for them, else
    /// their team's default, else their own (`plan_first`).
    pub fn routing_of(&self, user: &UserState) -> RoutingStrategy {
        if user.routing_set {
            return user.routing;
        }
        self.team_of(user).and_then(|t| t.routing).unwrap_or(user.routing)
    }
}

fn user_aggregate(event: &Event) -> Option<UserId> {
    match event {
        Event::UserCreated(e) => Some(e.user_id),
        Event::UserUpdated(e) => Some(e.user_id),
        Event::UserDeactivated(e) => Some(e.user_id),
        Event::UserReactivated(e) => Some(e.user_id),
        Event::BudgetSet(e) => Some(e.user_id),
        Event::RoutingStrategySet(e) => Some(e.user_id),
        Event::UserTeamSet(e) => Some(e.user_id),
        _ => None,
    }
}

fn key_aggregate(event: &Event) -> Option<AccessKeyId> {
    match event.aggregate() {
        crate::subjects::Aggregate::AccessKey(id) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::secrets::access_key::{AccessKey, KeyPepper};
    use crate::secrets::SecretString;
    use crate::Actor;

    fn env(event: Event) -> Envelope {
        Envelope::new(event, Actor::Anonymous)
    }

    fn setup() -> (Directory, KeyPepper, AccessKey, UserId, AccessKeyId) {
        let pepper = KeyPepper::new(&SecretString::new("p".repeat(32))).unwrap();
        let key = AccessKey::generate().unwrap();
        let user_id = UserId::new();
        let key_id = AccessKeyId::new();
        let mut dir = Directory::default();
        dir.apply(&env(Event::UserCreated(UserCreated {
            user_id,
            name: "dana".into(),
            description: None,
            email: None,
            status: UserStatus::Active,
        })));
        dir.apply(&env(Event::AccessKeyIssued(AccessKeyIssued {
            key_id,
            user_id,
            name: None,
            key_hash: key.hash(&pepper),
            key_prefix: key.display_prefix(),
            bedrock: BedrockSettings::default(),
        })));
        (dir, pepper, key, user_id, key_id)
    }

    #[test]
    fn issued_keys_authenticate_until_revoked() {
        let (mut dir, pepper, key, user_id, key_id) = setup();
        assert!(dir.authenticate(&key.hash(&pepper)).is_ok());
        dir.apply(&env(Event::AccessKeyRevoked(AccessKeyRevoked { key_id, user_id, reason: None })));
        assert_eq!(dir.authenticate(&key.hash(&pepper)).err(), Some(Refusal::Revoked));
    }

    #[test]
    fn a_directory_reads_back_as_it_was_saved_and_authenticates_the_same() {
        let (mut dir, pepper, key, user_id, key_id) = setup();
        let other = AccessKey::generate().unwrap();
        let revoked_id = AccessKeyId::new();
        dir.apply(&env(Event::AccessKeyIssued(AccessKeyIssued {
            key_id: revoked_id,
            user_id,
            name: Some("old laptop".into()),
            key_hash: other.hash(&pepper),
            key_prefix: other.display_prefix(),
            bedrock: BedrockSettings::default(),
        })));
        dir.apply(&env(Event::AccessKeyRevoked(AccessKeyRevoked { key_id: revoked_id, user_id, reason: None })));
        let back: Directory = serde_json::from_slice(&serde_json::to_vec(&dir).unwrap()).unwrap();
        assert_eq!(back.users, dir.users);
        assert_eq!(back.keys, dir.keys);
        assert_eq!(back.teams, dir.teams);
        // The index by hash is rebuilt: every key is found, the revoked one refused.
        assert_eq!(back.by_hash, dir.by_hash);
        assert_eq!(back.authenticate(&key.hash(&pepper)).unwrap().0.key_id, key_id);
        assert_eq!(back.authenticate(&other.hash(&pepper)).err(), Some(Refusal::Revoked));
    }

    #[test]
    fn deactivating_the_user_refuses_every_key_and_reactivating_restores_them() {
        let (mut dir, pepper, key, user_id, _) = setup();
        dir.apply(&env(Event::UserDeactivated(UserDeactivated { user_id, reason: None })));
        assert_eq!(dir.authenticate(&key.hash(&pepper)).err(), Some(Refusal::InactiveUser));
        dir.apply(&env(Event::UserReactivated(UserReactivated { user_id })));
        assert!(dir.authenticate(&key.hash(&pepper)).is_ok());
    }

    #[test]
    fn rotation_replaces_the_secret_and_keeps_the_rest() {
        let (mut dir, pepper, old, user_id, key_id) = setup();
        let new = AccessKey::generate().unwrap();
        dir.apply(&env(Event::BedrockSettingsChanged(BedrockSettingsChanged {
            key_id,
            user_id,
            bedrock: BedrockSettings { region: Some("eu-west-1".into()), default_model: None },
        })));
        dir.apply(&env(Event::AccessKeyRotated(AccessKeyRotated {
            key_id,
            user_id,
            key_hash: new.hash(&pepper),
            key_prefix: new.display_prefix(),
            previous_key_hash: old.hash(&pepper),
        })));
        assert_eq!(dir.authenticate(&old.hash(&pepper)).err(), Some(Refusal::Unknown));
        let (k, _) = dir.authenticate(&new.hash(&pepper)).unwrap();
        assert_eq!(k.key_id, key_id);
        assert_eq!(k.bedrock.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn a_users_own_routing_overrides_the_team_default_and_a_deleted_team_is_no_team() {
        let (mut dir, _, _, user_id, _) = setup();
        let team_id = TeamId::new();
        dir.apply(&env(Event::TeamCreated(TeamCreated { team_id, name: "data".into(), description: None })));
        dir.apply(&env(Event::TeamRoutingSet(TeamRoutingSet {
            team_id,
            strategy: Some(RoutingStrategy::BedrockOnly),
        })));
        let user = dir.user(&user_id).unwrap().clone();
        assert_eq!(dir.routing_of(&user), RoutingStrategy::PlanFirst, "not a member yet");
        dir.apply(&env(Event::UserTeamSet(UserTeamSet { user_id, team_id: Some(team_id) })));
        let user = dir.user(&user_id).unwrap().clone();
        assert_eq!(dir.routing_of(&user), RoutingStrategy::BedrockOnly, "the team's default");
        assert_eq!(dir.members(team_id).count(), 1);
        dir.apply(&env(Event::RoutingStrategySet(RoutingStrategySet {
            user_id,
            strategy: RoutingStrategy::PlanFirst,
        })));
        let user = dir.user(&user_id).unwrap().clone();
        assert_eq!(dir.routing_of(&user), RoutingStrategy::PlanFirst, "their own, even the default one");
        dir.apply(&env(Event::TeamDeleted(TeamDeleted { team_id })));
        assert!(dir.team(&team_id).is_none());
        assert!(dir.team_of(dir.user(&user_id).unwrap()).is_none());
    }

    #[test]
    fn unknown_hashes_and_events_for_unknown_aggregates_are_harmless() {
        let (mut dir, pepper, _, _, _) = setup();
        let stranger = AccessKey::generate().unwrap();
        assert_eq!(dir.authenticate(&stranger.hash(&pepper)).err(), Some(Refusal::Unknown));
        let ghost = UserId::new();
        dir.apply(&env(Event::UserDeactivated(UserDeactivated { user_id: ghost, reason: None })));
        assert!(dir.user(&ghost).is_none());
    }
}
