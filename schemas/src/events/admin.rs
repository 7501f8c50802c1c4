//! Admin accounts (subject `<prefix>.admin.account.<admin_id>`: created, API tokens issued and
//! revoked) and admin authentication events (subject `<prefix>.admin.auth`, for the audit log).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::{AdminId, ApiTokenId, TeamId};
use crate::secrets::access_key::{KeyHash, KeyPrefix};

/// An argon2id password hash in PHC string form (`$argon2id$v=19$m=…`). Deserialization refuses
/// anything else, so an event cannot carry a plaintext password in this field.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The PHC prefix every stored hash has.
    pub const PHC_PREFIX: &'static str = "$argon2id$";

    /// Wraps a PHC string; `None` unless it is an argon2id hash.
    pub fn new(phc: String) -> Option<Self> {
        (phc.starts_with(Self::PHC_PREFIX) && phc.len() <= 256).then_some(Self(phc))
    }

    /// The PHC string, for verification.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(argon2id)")
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?)
            .ok_or_else(|| serde::de::Error::custom("a password hash is an argon2id PHC string"))
    }
}

/// What an admin may do. Ordered: `viewer` < `operator` < `admin`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Read-only: usage, audit, users, keys (without secrets), circuits, models, prices.
    Viewer,
    /// Users, access keys, Bedrock keys, budgets, routing, circuits and the model catalogue; not
    /// admins, other admins' tokens, prices or security settings.
    Operator,
    /// Everything.
    #[default]
    Admin,
}

impl AdminRole {
    /// Every role, lowest first.
    pub const ALL: [Self; 3] = [Self::Viewer, Self::Operator, Self::Admin];

    /// Its name (`viewer`, `operator`, `admin`).
    pub fn as_str(self) -> &'static str {
        super::label(&self)
    }

    fn is_admin(&self) -> bool {
        *self == Self::Admin
    }
}

/// An admin account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCreated {
    /// The new admin.
    pub admin_id: AdminId,
    /// Login name, unique among admins.
    pub username: String,
    /// argon2id hash of the password.
    pub password_hash: PasswordHash,
    /// Its role; absent: `admin` (every account created before roles existed).
    #[serde(default, skip_serializing_if = "AdminRole::is_admin")]
    pub role: AdminRole,
}

/// An admin's role was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRoleSet {
    /// The admin.
    pub admin_id: AdminId,
    /// The new role.
    pub role: AdminRole,
}

/// An admin's password was changed (by themselves, by another admin, or by `ccp-admin
/// recover` on the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPasswordChanged {
    /// The admin.
    pub admin_id: AdminId,
    /// argon2id hash of the new password.
    pub password_hash: PasswordHash,
}

/// An admin was disabled: their password, sessions and API tokens stop working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDisabled {
    /// The admin.
    pub admin_id: AdminId,
    /// Why (for the audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A disabled admin was enabled again (their API tokens work again; sessions opened before the
/// disabling do not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEnabled {
    /// The admin.
    pub admin_id: AdminId,
}

/// Every session an admin opened before `before` was ended ("sign out everywhere"; also part of
/// a password change and of disabling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSessionsRevoked {
    /// The admin.
    pub admin_id: AdminId,
    /// Sessions opened before this instant no longer work.
    pub before: chrono::DateTime<chrono::Utc>,
}

/// An admin account was bound to a person at the OpenID provider (`issuer` + `subject`): their
/// single sign-on logs in as this admin. Written when single sign-on creates the admin (just in
/// time) or first signs in an existing admin of the same username.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSsoLinked {
    /// The admin.
    pub admin_id: AdminId,
    /// The OpenID provider's issuer URL.
    pub issuer: String,
    /// The provider's stable id of the person (`sub`).
    pub subject: String,
}

/// An admin was scoped to one team ("team lead": a `viewer` who sees only that team's users,
/// budget and usage), or unscoped (`team_id` null). Only a `viewer` is scoped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTeamScopeSet {
    /// The admin.
    pub admin_id: AdminId,
    /// The team they are scoped to; `None`: unscoped (an ordinary admin of their role).
    pub team_id: Option<TeamId>,
}

/// An admin was issued a long-lived API token (only its hash and prefix are here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenIssued {
    /// The token's owner.
    pub admin_id: AdminId,
    /// The token.
    pub token_id: ApiTokenId,
    /// A label such as "ci".
    pub name: String,
    /// HMAC-SHA256 of the token under the server pepper.
    pub token_hash: KeyHash,
    /// First characters of the token.
    pub token_prefix: KeyPrefix,
    /// The most the token may do (never more than its admin can at the time); absent: whatever
    /// its admin may do (tokens issued before roles existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AdminRole>,
}

/// An API token was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenRevoked {
    /// The token's owner.
    pub admin_id: AdminId,
    /// The token.
    pub token_id: ApiTokenId,
}

/// How an admin authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// Username and password.
    Password,
    /// A long-lived API token.
    ApiToken,
    /// Single sign-on through the configured OpenID provider.
    Sso,
}

/// Why a login failed. Never the submitted password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// Unknown username or wrong password (deliberately indistinguishable).
    BadCredentials,
    /// Too many recent failures from this address or for this username.
    Throttled,
    /// The admin account is disabled.
    Disabled,
}

/// An admin logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLoginSucceeded {
    /// The admin.
    pub admin_id: AdminId,
    /// Their username.
    pub username: String,
    /// Password or API token.
    pub method: LoginMethod,
}

/// A login attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLoginFailed {
    /// The username tried (truncated to 64 characters).
    pub username: String,
    /// What was wrong (bad credentials, throttled, disabled), for the audit log.
    pub reason: LoginFailure,
}

/// Where failed sign-ins were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInKind {
    /// `POST /v1/auth/login` (the name is the username tried).
    AdminLogin,
    /// `GET /v1/self` (the name is the access key's display prefix).
    SelfService,
    /// Single sign-on refused (the name is the provider's username when the ID token was
    /// genuine, else `-`; `reasons` says why).
    Sso,
}

/// Failed sign-ins of one name in one window, counted by one admin API replica: the bounded
/// record that replaces one event per attempt. Written to the security stream, which has a
/// retention (`nats.security_max_age_days`); at most `admin.max_failure_records` per window, the
/// rest summed under the name `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInFailuresCounted {
    /// Admin login or self-service.
    pub kind: SignInKind,
    /// The username (at most 64 characters) or key prefix tried; `*`: every name beyond the cap.
    pub name: String,
    /// Failed attempts in the window.
    pub failures: u64,
    /// Attempts refused without checking the credential (the client was throttled).
    pub refused: u64,
    /// Distinct client addresses seen.
    pub clients: u64,
    /// Up to five of them.
    pub sample_clients: Vec<std::net::IpAddr>,
    /// Start of the window.
    pub window_start: chrono::DateTime<chrono::Utc>,
    /// End of the window.
    pub window_end: chrono::DateTime<chrono::Utc>,
    /// Failures by cause (single sign-on: `wrong_state`, `wrong_audience`, …); empty for
    /// password and access-key failures, whose cause is always a wrong credential.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reasons: std::collections::BTreeMap<String, u64>,
}
