//! The event log's contract: the [`Envelope`] every event travels in and the [`Event`] payloads.
//!
//! Wire shape (JSON, one event per NATS message):
//! `{"id":"01J…","type":"user_created","schema_version":1,"occurred_at":"…","actor":{…},
//!   "correlation_id":"req_…","source":"10.0.0.7","payload":{…}}`.
//!
//! Versioning: adding an optional field is not a new version (readers ignore unknown fields and
//! default missing ones). Renaming a field or adding a required one is: bump
//! [`Event::schema_version`] for that type and add an upcaster in [`Envelope::decode`] that
//! rewrites the older JSON first. Readers refuse versions newer than they know.

pub mod access_key;
pub mod admin;
pub mod alert;
pub mod catalogue;
pub mod circuit;
mod label;
pub mod pricing;
pub mod request;
pub mod team;
pub mod user;
mod wire;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::ids::{AccessKeyId, AdminId, UserId};
use crate::subjects::{Aggregate, Namespace};

pub use access_key::*;
pub use admin::*;
pub use alert::*;
pub use catalogue::*;
pub use circuit::*;
pub use label::label;
pub use pricing::*;
pub use request::*;
pub use team::*;
pub use user::*;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An admin, through a session or an API token.
    Admin {
        /// The admin.
        admin_id: AdminId,
        /// Their username at the time.
        username: String,
    },
    /// Someone not (yet) authenticated, e.g. a failed login.
    Anonymous,
    /// A proxy replica (usage and circuit events).
    Proxy {
        /// The replica's instance id.
        replica: String,
    },
    /// A service acting on its own (e.g. configuration bootstrap).
    System {
        /// Which component.
        component: String,
    },
}

/// Every event payload, tagged by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
#[allow(missing_docs)]
// Events are handled one at a time; boxing the usage payload would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    UserCreated(UserCreated),
    UserUpdated(UserUpdated),
    UserDeactivated(UserDeactivated),
    UserReactivated(UserReactivated),
    BudgetSet(BudgetSet),
    RoutingStrategySet(RoutingStrategySet),
    AccessKeyIssued(AccessKeyIssued),
    AccessKeyRevoked(AccessKeyRevoked),
    AccessKeyRotated(AccessKeyRotated),
    BedrockSettingsChanged(BedrockSettingsChanged),
    BedrockApiKeyRegistered(BedrockApiKeyRegistered),
    BedrockApiKeyRotated(BedrockApiKeyRotated),
    BedrockApiKeyRemoved(BedrockApiKeyRemoved),
    BedrockKeyChecked(BedrockKeyChecked),
    PricingSet(PricingSet),
    ModelCatalogued(ModelCatalogued),
    ModelRemoved(ModelRemoved),
    AdminLoginSucceeded(AdminLoginSucceeded),
    AdminLoginFailed(AdminLoginFailed),
    AdminCreated(AdminCreated),
    AdminRoleSet(AdminRoleSet),
    AdminPasswordChanged(AdminPasswordChanged),
    AdminDisabled(AdminDisabled),
    AdminEnabled(AdminEnabled),
    AdminSessionsRevoked(AdminSessionsRevoked),
    AdminSsoLinked(AdminSsoLinked),
    AdminTeamScopeSet(AdminTeamScopeSet),
    ApiTokenIssued(ApiTokenIssued),
    ApiTokenRevoked(ApiTokenRevoked),
    RequestCompleted(RequestCompleted),
    CircuitOpened(CircuitOpened),
    CircuitHalfOpened(CircuitHalfOpened),
    CircuitClosed(CircuitClosed),
    AlertRaised(AlertRaised),
    SignInFailuresCounted(SignInFailuresCounted),
    TeamCreated(TeamCreated),
    TeamUpdated(TeamUpdated),
    TeamBudgetSet(TeamBudgetSet),
    TeamRoutingSet(TeamRoutingSet),
    TeamDeleted(TeamDeleted),
    UserTeamSet(UserTeamSet),
}

/// Every event type name, in declaration order (for docs, fixtures and exhaustiveness tests).
pub const EVENT_TYPES: &[&str] = &[
    "user_created",
    "user_updated",
    "user_deactivated",
    "user_reactivated",
    "budget_set",
    "routing_strategy_set",
    "access_key_issued",
    "access_key_revoked",
    "access_key_rotated",
    "bedrock_settings_changed",
    "bedrock_api_key_registered",
    "bedrock_api_key_rotated",
    "bedrock_api_key_removed",
    "bedrock_key_checked",
    "pricing_set",
    "model_catalogued",
    "model_removed",
    "admin_login_succeeded",
    "admin_login_failed",
    "admin_created",
    "admin_role_set",
    "admin_password_changed",
    "admin_disabled",
    "admin_enabled",
    "admin_sessions_revoked",
    "admin_sso_linked",
    "api_token_issued",
    "api_token_revoked",
    "request_completed",
    "circuit_opened",
    "circuit_half_opened",
    "circuit_closed",
    "alert_raised",
    "sign_in_failures_counted",
    "team_created",
    "team_updated",
    "team_budget_set",
    "team_routing_set",
    "team_deleted",
    "user_team_set",
    "admin_team_scope_set",
];

impl Event {
    /// The `type` tag.
    pub const fn event_type(&self) -> &'static str {
        match self {
            Self::UserCreated(_) => "user_created",
            Self::UserUpdated(_) => "user_updated",
            Self::UserDeactivated(_) => "user_deactivated",
            Self::UserReactivated(_) => "user_reactivated",
            Self::BudgetSet(_) => "budget_set",
            Self::RoutingStrategySet(_) => "routing_strategy_set",
            Self::AccessKeyIssued(_) => "access_key_issued",
            Self::AccessKeyRevoked(_) => "access_key_revoked",
            Self::AccessKeyRotated(_) => "access_key_rotated",
            Self::BedrockSettingsChanged(_) => "bedrock_settings_changed",
            Self::BedrockApiKeyRegistered(_) => "bedrock_api_key_registered",
            Self::BedrockApiKeyRotated(_) => "bedrock_api_key_rotated",
            Self::BedrockApiKeyRemoved(_) => "bedrock_api_key_removed",
            Self::BedrockKeyChecked(_) => "bedrock_key_checked",
            Self::PricingSet(_) => "pricing_set",
            Self::ModelCatalogued(_) => "model_catalogued",
            Self::ModelRemoved(_) => "model_removed",
            Self::AdminLoginSucceeded(_) => "admin_login_succeeded",
            Self::AdminLoginFailed(_) => "admin_login_failed",
            Self::AdminCreated(_) => "admin_created",
            Self::AdminRoleSet(_) => "admin_role_set",
            Self::AdminPasswordChanged(_) => "admin_password_changed",
            Self::AdminDisabled(_) => "admin_disabled",
            Self::AdminEnabled(_) => "admin_enabled",
            Self::AdminSessionsRevoked(_) => "admin_sessions_revoked",
            Self::AdminSsoLinked(_) => "admin_sso_linked",
            Self::ApiTokenIssued(_) => "api_token_issued",
            Self::ApiTokenRevoked(_) => "api_token_revoked",
            Self::RequestCompleted(_) => "request_completed",
            Self::CircuitOpened(_) => "circuit_opened",
            Self::CircuitHalfOpened(_) => "circuit_half_opened",
            Self::CircuitClosed(_) => "circuit_closed",
            Self::AlertRaised(_) => "alert_raised",
            Self::SignInFailuresCounted(_) => "sign_in_failures_counted",
            Self::TeamCreated(_) => "team_created",
            Self::TeamUpdated(_) => "team_updated",
            Self::TeamBudgetSet(_) => "team_budget_set",
            Self::TeamRoutingSet(_) => "team_routing_set",
            Self::TeamDeleted(_) => "team_deleted",
            Self::UserTeamSet(_) => "user_team_set",
            Self::AdminTeamScopeSet(_) => "admin_team_scope_set",
        }
    }

    /// The current schema version of this event type. All types are at version 1.
    pub const fn schema_version(&self) -> u16 {
        1
    }

    /// The aggregate (and so the subject) this event belongs to.
    pub fn aggregate(&self) -> Aggregate {
        match self {
            Self::UserCreated(e) => Aggregate::User(e.user_id),
            Self::UserUpdated(e) => Aggregate::User(e.user_id),
            Self::UserDeactivated(e) => Aggregate::User(e.user_id),
            Self::UserReactivated(e) => Aggregate::User(e.user_id),
            Self::BudgetSet(e) => Aggregate::User(e.user_id),
            Self::RoutingStrategySet(e) => Aggregate::User(e.user_id),
            Self::AccessKeyIssued(e) => Aggregate::AccessKey(e.key_id),
            Self::AccessKeyRevoked(e) => Aggregate::AccessKey(e.key_id),
            Self::AccessKeyRotated(e) => Aggregate::AccessKey(e.key_id),
            Self::BedrockSettingsChanged(e) => Aggregate::AccessKey(e.key_id),
            Self::BedrockApiKeyRegistered(e) => Aggregate::AccessKey(e.key_id),
            Self::BedrockApiKeyRotated(e) => Aggregate::AccessKey(e.key_id),
            Self::BedrockApiKeyRemoved(e) => Aggregate::AccessKey(e.key_id),
            Self::BedrockKeyChecked(e) => Aggregate::AccessKey(e.key_id),
            Self::PricingSet(_) => Aggregate::Pricing,
            Self::ModelCatalogued(_) | Self::ModelRemoved(_) => Aggregate::Catalogue,
            Self::AdminLoginSucceeded(_) | Self::AdminLoginFailed(_) => Aggregate::AdminAuth,
            Self::AdminCreated(e) => Aggregate::Admin(e.admin_id),
            Self::AdminRoleSet(e) => Aggregate::Admin(e.admin_id),
            Self::AdminPasswordChanged(e) => Aggregate::Admin(e.admin_id),
            Self::AdminDisabled(e) => Aggregate::Admin(e.admin_id),
            Self::AdminEnabled(e) => Aggregate::Admin(e.admin_id),
            Self::AdminSessionsRevoked(e) => Aggregate::Admin(e.admin_id),
            Self::AdminSsoLinked(e) => Aggregate::Admin(e.admin_id),
            Self::ApiTokenIssued(e) => Aggregate::Admin(e.admin_id),
            Self::ApiTokenRevoked(e) => Aggregate::Admin(e.admin_id),
            Self::RequestCompleted(e) => Aggregate::Request(e.key_id),
            Self::CircuitOpened(e) => Aggregate::Circuit(e.key_id),
            Self::CircuitHalfOpened(e) => Aggregate::Circuit(e.key_id),
            Self::CircuitClosed(e) => Aggregate::Circuit(e.key_id),
            Self::AlertRaised(e) => Aggregate::Alert(e.rule),
            Self::SignInFailuresCounted(_) => Aggregate::SignInFailures,
            Self::TeamCreated(e) => Aggregate::Team(e.team_id),
            Self::TeamUpdated(e) => Aggregate::Team(e.team_id),
            Self::TeamBudgetSet(e) => Aggregate::Team(e.team_id),
            Self::TeamRoutingSet(e) => Aggregate::Team(e.team_id),
            Self::TeamDeleted(e) => Aggregate::Team(e.team_id),
            Self::UserTeamSet(e) => Aggregate::User(e.user_id),
            Self::AdminTeamScopeSet(e) => Aggregate::Admin(e.admin_id),
        }
    }

    /// The user this event concerns, if any (audit log target, projections).
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::UserCreated(e) => Some(e.user_id),
            Self::UserUpdated(e) => Some(e.user_id),
            Self::UserDeactivated(e) => Some(e.user_id),
            Self::UserReactivated(e) => Some(e.user_id),
            Self::BudgetSet(e) => Some(e.user_id),
            Self::RoutingStrategySet(e) => Some(e.user_id),
            Self::UserTeamSet(e) => Some(e.user_id),
            Self::AccessKeyIssued(e) => Some(e.user_id),
            Self::AccessKeyRevoked(e) => Some(e.user_id),
            Self::AccessKeyRotated(e) => Some(e.user_id),
            Self::BedrockSettingsChanged(e) => Some(e.user_id),
            Self::BedrockApiKeyRegistered(e) => Some(e.user_id),
            Self::BedrockApiKeyRotated(e) => Some(e.user_id),
            Self::BedrockApiKeyRemoved(e) => Some(e.user_id),
            Self::BedrockKeyChecked(e) => Some(e.user_id),
            Self::RequestCompleted(e) => e.user_id,
            Self::AlertRaised(e) => e.user_id,
            Self::PricingSet(_)
            | Self::ModelCatalogued(_)
            | Self::ModelRemoved(_)
            | Self::AdminLoginSucceeded(_)
            | Self::AdminLoginFailed(_)
            | Self::AdminCreated(_)
            | Self::AdminRoleSet(_)
            | Self::AdminPasswordChanged(_)
            | Self::AdminDisabled(_)
            | Self::AdminEnabled(_)
            | Self::AdminSessionsRevoked(_)
            | Self::AdminSsoLinked(_)
            | Self::AdminTeamScopeSet(_)
            | Self::ApiTokenIssued(_)
            | Self::ApiTokenRevoked(_)
            | Self::CircuitOpened(_)
            | Self::CircuitHalfOpened(_)
            | Self::CircuitClosed(_)
            | Self::SignInFailuresCounted(_)
            | Self::TeamCreated(_)
            | Self::TeamUpdated(_)
            | Self::TeamBudgetSet(_)
            | Self::TeamRoutingSet(_)
            | Self::TeamDeleted(_) => None,
        }
    }

    /// The access key this event concerns, if any.
    pub fn key_id(&self) -> Option<AccessKeyId> {
        match self.aggregate() {
            Aggregate::AccessKey(k) | Aggregate::Circuit(k) => Some(k),
            Aggregate::Request(k) => k,
            Aggregate::Alert(_) => match self {
                Self::AlertRaised(e) => e.key_id,
                _ => None,
            },
            Aggregate::User(_)
            | Aggregate::Team(_)
            | Aggregate::Pricing
            | Aggregate::Catalogue
            | Aggregate::AdminAuth
            | Aggregate::SignInFailures
            | Aggregate::Admin(_) => None,
        }
    }
}

/// An event with its metadata: what is stored in JetStream.
///
/// Deserialized by hand (`events/wire.rs`): the derived form of a flattened, adjacently tagged
/// payload buffers every event into an intermediate tree first, which made decoding the largest
/// cost of a replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    /// Unique, time-ordered; also the `Nats-Msg-Id` (publish deduplication).
    pub id: Ulid,
    /// Version of this event type's payload schema.
    pub schema_version: u16,
    /// When it happened (UTC, RFC 3339).
    pub occurred_at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The request id of the HTTP request that caused it (admin command or proxied request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The client address of that request, for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// `type` and `payload`.
    #[serde(flatten)]
    pub event: Event,
}

/// Why bytes are not a usable event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an envelope, or a payload that does not match its type.
    #[error("undecodable event: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a newer version of the software.
    #[error("event type `{event_type}` has schema version {found}; this build reads up to {supported}")]
    UnsupportedVersion {
        /// The type.
        event_type: &'static str,
        /// The version in the message.
        found: u16,
        /// The newest version this build knows.
        supported: u16,
    },
    /// A type this build does not know: written by a newer version of the software.
    #[error("event type `{event_type}` is unknown to this build (written by a newer version?)")]
    UnknownType {
        /// The type named in the message (at most 64 characters).
        event_type: String,
    },
}

impl DecodeError {
    /// Whether the event was written by a newer version of the software (a newer schema version
    /// or an unknown type), as opposed to being malformed.
    pub fn is_newer(&self) -> bool {
        matches!(self, Self::UnsupportedVersion { .. } | Self::UnknownType { .. })
    }
}

impl Envelope {
    /// Wraps an event with a fresh id, the current time and its schema version.
    pub fn new(event: Event, actor: Actor) -> Self {
        Self {
            id: Ulid::new(),
            schema_version: event.schema_version(),
            occurred_at: Utc::now(),
            actor,
            correlation_id: None,
            source: None,
            event,
        }
    }

    /// Sets the correlation (request) id.
    #[must_use]
    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the client address.
    #[must_use]
    pub fn from_source(mut self, source: Option<IpAddr>) -> Self {
        self.source = source;
        self
    }

    /// The subject this event is appended to.
    pub fn subject(&self, ns: &Namespace) -> String {
        ns.subject(&self.event.aggregate())
    }

    /// JSON bytes for the log.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        // Sized for a usage event with its rate-limit state (~1.5 KB): no regrowth copies.
        let mut out = Vec::with_capacity(2048);
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }

    /// Decodes an event from the log, refusing versions newer than this build knows and types it
    /// does not know. A newer version whose payload no longer has this build's shape is reported
    /// as newer, not as malformed: readers that fail closed on newer events must see it as one.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Self = match serde_json::from_slice(bytes) {
            Ok(envelope) => envelope,
            Err(e) => return Err(Self::classify(bytes).unwrap_or(DecodeError::Json(e))),
        };
        let supported = envelope.event.schema_version();
        if envelope.schema_version > supported {
            return Err(DecodeError::UnsupportedVersion {
                event_type: envelope.event.event_type(),
                found: envelope.schema_version,
                supported,
            });
        }
        // A process rehearsing an older build (`compat::emulate`) does not know later types.
        if crate::compat::introduced(&envelope.event) > crate::compat::reading() {
            return Err(DecodeError::UnknownType { event_type: envelope.event.event_type().to_owned() });
        }
        // Upcasters for older versions go here, keyed on (type, schema_version). None yet: every
        // type is at version 1.
        Ok(envelope)
    }

    /// Why an envelope that does not decode is not this build's to read: a type it does not know
    /// or a version newer than it knows (`None`: it is simply malformed).
    fn classify(bytes: &[u8]) -> Option<DecodeError> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            event_type: std::borrow::Cow<'a, str>,
            schema_version: u16,
        }
        let head: Head<'_> = serde_json::from_slice(bytes).ok()?;
        let Some(known) = EVENT_TYPES.iter().find(|t| **t == head.event_type) else {
            return Some(DecodeError::UnknownType { event_type: head.event_type.chars().take(64).collect() });
        };
        // Every type is at version 1 (`Event::schema_version`).
        (head.schema_version > 1).then_some(DecodeError::UnsupportedVersion {
            event_type: known,
            found: head.schema_version,
            supported: 1,
        })
    }
}
