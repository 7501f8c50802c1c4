//! The REST API's request and response bodies: one definition shared by the handlers, the
//! OpenAPI document and `ccpctl`.

pub mod statement;
pub mod usage;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use ccp_schemas::events::{RoutingStrategy, UserStatus};
use ccp_schemas::state::{AccessKeyState, KeyStatus, UserState};

/// `active` or `inactive` (documentation of [`UserStatus`]).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UserStatusDoc {
    /// Keys work.
    Active,
    /// Every key is refused.
    Inactive,
}

/// Routing strategy (documentation of [`RoutingStrategy`]).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RoutingDoc {
    /// Anthropic first, Bedrock on rate limits and failures.
    PlanFirst,
    /// Always Bedrock.
    BedrockOnly,
    /// Never Bedrock.
    PlanOnly,
}

/// `active` or `revoked` (documentation of [`KeyStatus`]).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum KeyStatusDoc {
    /// Accepted by the proxy (when its user is active).
    Active,
    /// Refused for good.
    Revoked,
}

/// A user (a developer using Claude Code through the proxy).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// `usr_…`
    #[schema(value_type = String, example = "usr_01JDQ7ABCDEFGHJKMNPQRSTVWX")]
    pub user_id: String,
    /// Display name, unique among users.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Contact address.
    pub email: Option<String>,
    /// Whether their keys work.
    #[schema(value_type = UserStatusDoc)]
    pub status: UserStatus,
    /// Monthly budget in USD (a decimal string); `null`: unlimited.
    #[serde(with = "ccp_schemas::pricing::decimal_str_option")]
    #[schema(value_type = Option<String>, example = "250.00")]
    pub monthly_limit_usd: Option<Decimal>,
    /// `plan_first`, `bedrock_only` or `plan_only`: the user's own strategy.
    #[schema(value_type = RoutingDoc)]
    pub routing: RoutingStrategy,
    /// How the proxy routes them: their own strategy once one was set for them, else their
    /// team's routing default, else `plan_first`.
    #[serde(default)]
    #[schema(value_type = RoutingDoc)]
    pub effective_routing: RoutingStrategy,
    /// Their team (`team_…`), if any.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "team_01JDQ7TEAM0000000000000001")]
    pub team_id: Option<String>,
    /// Their team's name, if any.
    #[serde(default)]
    pub team: Option<String>,
    /// Number of access keys that are not revoked.
    pub active_keys: usize,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// The API shape of a user's state (`dir`: their team and effective routing).
    pub fn from_state(s: &UserState, active_keys: usize, dir: &ccp_schemas::state::Directory) -> Self {
        let team = dir.team_of(s);
        Self {
            user_id: s.user_id.to_string(),
            name: s.name.clone(),
            description: s.description.clone(),
            email: s.email.clone(),
            status: s.status,
            monthly_limit_usd: s.monthly_limit_usd,
            routing: s.routing,
            effective_routing: dir.routing_of(s),
            team_id: team.map(|t| t.team_id.to_string()),
            team: team.map(|t| t.name.clone()),
            active_keys,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// `POST /v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1–64 characters: letters, digits, space, `.`, `_`, `-`, `@`.
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")]
    pub name: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]{0,500}$")]
    pub description: Option<String>,
    /// An email address.
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = r"^$|^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s.\x00-\x1f\x7f-\x9f]+(\.[^@\s.\x00-\x1f\x7f-\x9f]+)+$"
    )]
    pub email: Option<String>,
    /// `active` (default) or `inactive`.
    #[serde(default)]
    #[schema(value_type = Option<UserStatusDoc>)]
    pub status: Option<UserStatus>,
    /// Monthly budget in USD as a decimal string, e.g. `"250.00"`.
    #[serde(default, with = "crate::api::strict_decimal")]
    #[schema(value_type = Option<String>, pattern = r"^(1000000(\.0{1,6})?|[0-9]{1,6}(\.[0-9]{1,6})?)$")]
    pub monthly_limit_usd: Option<Decimal>,
    /// Routing strategy (default `plan_first`).
    #[serde(default)]
    #[schema(value_type = Option<RoutingDoc>)]
    pub routing: Option<RoutingStrategy>,
}

/// `PATCH /v1/users/{user_id}`: absent fields are unchanged, `""` clears description or email.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New name.
    #[serde(default)]
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]{0,500}$")]
    pub description: Option<String>,
    /// New email.
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = r"^$|^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s.\x00-\x1f\x7f-\x9f]+(\.[^@\s.\x00-\x1f\x7f-\x9f]+)+$"
    )]
    pub email: Option<String>,
}

/// `POST /v1/users/{user_id}/deactivate` (body optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, for the audit log (at most 500 characters).
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]{0,500}$")]
    pub reason: Option<String>,
}

/// `PUT /v1/users/{user_id}/budget`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// Monthly limit in USD as a decimal string (`"0"`–`"1000000"`); `null`: unlimited.
    #[serde(with = "crate::api::strict_decimal")]
    #[schema(value_type = Option<String>, required = true, example = "250.00", pattern = r"^(1000000(\.0{1,6})?|[0-9]{1,6}(\.[0-9]{1,6})?)$")]
    pub monthly_limit_usd: Option<Decimal>,
}

/// `PUT /v1/users/{user_id}/routing`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRouting {
    /// `plan_first`, `bedrock_only` or `plan_only`.
    #[schema(value_type = RoutingDoc)]
    pub strategy: RoutingStrategy,
}

/// Query of `GET /v1/users`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsers {
    /// Case-insensitive substring of name, email or description.
    pub search: Option<String>,
    /// `active` or `inactive`.
    #[param(value_type = Option<UserStatusDoc>)]
    pub status: Option<UserStatus>,
    /// Only members of this team (`team_…`), or `none`: users without a team.
    #[param(pattern = r"^(none|team_[0-7][0-9A-HJKMNP-TV-Z]{25})$")]
    pub team: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// Items to skip (default 0, at most 1000000).
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<usize>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Items matching in total.
    pub total: usize,
    /// The offset of this page.
    pub offset: usize,
    /// The page size.
    pub limit: usize,
}

/// A Bedrock API key as lists show it (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BedrockKeyInfo {
    /// First and last characters, e.g. `ABSK…x9Q=`.
    pub hint: String,
    /// When registered or last rotated.
    pub updated_at: DateTime<Utc>,
    /// Whether it can take a failover, as last checked (`null`: not checked yet).
    pub readiness: Option<Readiness>,
}

/// A Bedrock API key's failover readiness, as a check found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `key_refused`, `model_not_enabled`, `throttled` or `unreachable`.
    #[schema(value_type = String, example = "ready")]
    pub readiness: ccp_schemas::events::BedrockReadiness,
    /// When checked.
    pub checked_at: DateTime<Utc>,
    /// The AWS region checked.
    pub region: String,
    /// Each Bedrock model checked (CountTokens).
    pub models: Vec<ModelCheck>,
    /// Whether the key could read its Bedrock model listing.
    #[schema(value_type = Option<String>)]
    pub listing: Option<ccp_schemas::events::BedrockReadiness>,
}

/// One model of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelCheck {
    /// The Bedrock model or inference-profile id.
    pub model_id: String,
    /// What Bedrock answered for it.
    #[schema(value_type = String, example = "ready")]
    pub readiness: ccp_schemas::events::BedrockReadiness,
}

impl Readiness {
    /// The API shape of a recorded check.
    pub fn from_state(r: &ccp_schemas::state::ReadinessState) -> Self {
        Self {
            readiness: r.readiness,
            checked_at: r.checked_at,
            region: r.region.clone(),
            models: r
                .models
                .iter()
                .map(|m| ModelCheck { model_id: m.model_id.clone(), readiness: m.readiness })
                .collect(),
            listing: r.listing,
        }
    }
}

/// An access key as lists show it: prefix and mask, never the key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Key {
    /// `key_…`
    pub key_id: String,
    /// The user it belongs to (`usr_…`).
    pub user_id: String,
    /// The admin's label for the key (`laptop`).
    pub name: Option<String>,
    /// First characters of the key, e.g. `ak_3fQx9a`.
    pub prefix: String,
    /// What to show: `ak_3fQx9a…`.
    pub masked: String,
    /// `active` or `revoked`.
    #[schema(value_type = KeyStatusDoc)]
    pub status: KeyStatus,
    /// Bedrock region (`null`: the proxy's default).
    pub bedrock_region: Option<String>,
    /// Bedrock model used when the requested model maps to nothing.
    pub bedrock_default_model: Option<String>,
    /// The registered Bedrock API key, if any.
    pub bedrock_key: Option<BedrockKeyInfo>,
    /// When issued.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
    /// When last used through the proxy (from the usage analytics; `null`: never or unknown).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl Key {
    /// The API shape of a key's state.
    pub fn from_state(s: &AccessKeyState) -> Self {
        Self {
            key_id: s.key_id.to_string(),
            user_id: s.user_id.to_string(),
            name: s.name.clone(),
            prefix: s.key_prefix.as_str().to_owned(),
            masked: s.key_prefix.masked(),
            status: s.status,
            bedrock_region: s.bedrock.region.clone(),
            bedrock_default_model: s.bedrock.default_model.clone(),
            bedrock_key: s.bedrock_key.as_ref().map(|b| BedrockKeyInfo {
                hint: b.hint.as_str().to_owned(),
                updated_at: b.updated_at,
                readiness: b.readiness.as_ref().map(Readiness::from_state),
            }),
            created_at: s.created_at,
            updated_at: s.updated_at,
            last_used_at: None,
        }
    }
}

/// `POST /v1/users/{user_id}/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    /// Label, e.g. `laptop` (at most 64 characters).
    #[serde(default)]
    #[schema(pattern = r"^$|^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")]
    pub name: Option<String>,
    /// Bedrock region, an AWS region name, e.g. `us-east-1` (empty: the proxy's default).
    #[serde(default)]
    #[schema(pattern = r"^([a-z]{2}(-[a-z]{1,12}){1,2}-[0-9]{1,2})?$")]
    pub bedrock_region: Option<String>,
    /// Bedrock model id used when the requested model maps to nothing.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9.:_/-]{0,128}$")]
    pub bedrock_default_model: Option<String>,
}

/// `PUT /v1/keys/{key_id}/bedrock`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBedrockSettings {
    /// Bedrock region, an AWS region name, e.g. `us-east-1` (`null` or empty: the proxy's default).
    #[serde(default)]
    #[schema(pattern = r"^([a-z]{2}(-[a-z]{1,12}){1,2}-[0-9]{1,2})?$")]
    pub region: Option<String>,
    /// Default Bedrock model id (`null`: none).
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9.:_/-]{0,128}$")]
    pub default_model: Option<String>,
}

/// `PUT /v1/keys/{key_id}/bedrock-key`: the Bedrock API key (registered or replaced). It is
/// encrypted at once and never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBedrockKey {
    /// The Bedrock API key.
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,1024}$")]
    pub api_key: String,
}

/// How Claude Code is pointed at the proxy with this key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaudeCodeSetup {
    /// The `ANTHROPIC_BASE_URL` value.
    pub base_url: String,
    /// The line for a shell profile: `export ANTHROPIC_BASE_URL=…`.
    pub shell: String,
    /// The `env` block for `~/.claude/settings.json`.
    pub settings_json: serde_json::Value,
}

/// The answer of issuing or rotating a key: the only time the key is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedKey {
    /// The key's state.
    pub key: Key,
    /// The full access key. Shown once; store it now. `null` when this answer is an
    /// idempotent replay.
    pub access_key: Option<String>,
    /// Ready-to-paste Claude Code settings (`null` on a replay).
    pub claude_code: Option<ClaudeCodeSetup>,
}

/// A user with their keys (`GET /v1/users/{user_id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDetail {
    /// The user.
    #[serde(flatten)]
    pub user: User,
    /// Their access keys, newest first.
    pub keys: Vec<Key>,
}

/// `POST /v1/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The admin's username.
    pub username: String,
    /// Their password (sent once, checked with argon2id, never stored or logged).
    pub password: String,
}

/// A session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// The session token: `Authorization: Bearer <token>`. Also set as the HttpOnly cookie
    /// `ccp_session` for the dashboard.
    pub token: String,
    /// Send as `x-csrf-token` on unsafe requests authenticated by the cookie.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// Who logged in.
    pub admin: Admin,
}

/// An admin account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Admin {
    /// `adm_…`
    pub admin_id: String,
    /// Login name.
    pub username: String,
    /// What the admin may do.
    pub role: Role,
    /// Disabled: no password, session or API token of theirs works.
    pub disabled: bool,
    /// The team this admin is scoped to (`team_…`: a team lead, a `viewer` who sees only that
    /// team's figures); `null`: unscoped.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub team_id: Option<String>,
    /// When created (`null` in a login answer).
    pub created_at: Option<DateTime<Utc>>,
}

/// `GET /v1/auth/me`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// `adm_…`
    pub admin_id: String,
    /// Login name.
    pub username: String,
    /// What this request may do: the admin's role (for an API token, no more than the token's).
    pub role: Role,
    /// How this request authenticated.
    pub method: crate::auth::AuthMethod,
    /// The team the caller is scoped to (`team_…`: a team lead, who may read only that team, its
    /// budget, its members and its usage); `null`: unscoped.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub team_id: Option<String>,
    /// For the dashboard's cookie session: its CSRF token (a single sign-on ends in a redirect,
    /// so the dashboard reads it here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// `POST /v1/admins`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdmin {
    /// Login name: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,64}$")]
    pub username: String,
    /// At least 12 characters.
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
    /// What the new admin may do (default `admin`).
    pub role: Option<Role>,
}

/// `PUT /v1/admins/{admin_id}/role`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// The new role.
    pub role: Role,
}

/// `PUT /v1/admins/{admin_id}/team-scope`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTeamScope {
    /// The team (`team_…`) the admin is scoped to from now on (a team lead: a `viewer` who sees
    /// only that team's figures); `null`: unscoped.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(value_type = Option<String>, required = true, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub team_id: Option<String>,
}

/// What an admin (or an API token) may do: `viewer` reads; `operator` also changes users, keys,
/// Bedrock keys, budgets, routing, circuits and the model catalogue; `admin` does everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read-only.
    Viewer,
    /// Day-to-day management of developers and keys.
    Operator,
    /// Everything.
    Admin,
}

impl From<Role> for ccp_schemas::events::AdminRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Viewer => Self::Viewer,
            Role::Operator => Self::Operator,
            Role::Admin => Self::Admin,
        }
    }
}

impl From<ccp_schemas::events::AdminRole> for Role {
    fn from(role: ccp_schemas::events::AdminRole) -> Self {
        use ccp_schemas::events::AdminRole as R;
        match role {
            R::Viewer => Self::Viewer,
            R::Operator => Self::Operator,
            R::Admin => Self::Admin,
        }
    }
}

/// `POST /v1/api-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueApiToken {
    /// Label, e.g. `ci` (1–64 characters).
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")]
    pub name: String,
    /// The most the token may do, no more than the caller's role (default: whatever its admin
    /// may do at the time).
    pub role: Option<Role>,
}

/// An API token as lists show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    /// `tok_…`
    pub token_id: String,
    /// The admin's label for the token (`ci`).
    pub name: String,
    /// First characters.
    pub prefix: String,
    /// The most it may do (`null`: whatever its admin may do).
    pub role: Option<Role>,
    /// Whether revoked.
    pub revoked: bool,
    /// When issued.
    pub created_at: DateTime<Utc>,
}

/// The answer of issuing an API token: the only time it is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedApiToken {
    /// The token's state.
    #[serde(flatten)]
    pub info: ApiToken,
    /// The token (`Authorization: Bearer <token>`); `null` on an idempotent replay.
    pub token: Option<String>,
}

/// `Option<Decimal>` as a decimal string or `null`, and nothing else (request bodies: a JSON
/// number is refused, as the OpenAPI document says).
pub mod strict_decimal {
    use std::str::FromStr as _;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `"12.5"` or `null`.
    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        ccp_schemas::pricing::decimal_str_option::serialize(value, s)
    }

    /// A decimal string of digits with an optional fraction, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        Option::<String>::deserialize(d)?.map(|text| parse(&text)).transpose()
    }

    /// A required decimal string.
    pub mod required {
        use rust_decimal::Decimal;
        use serde::{Deserialize, Deserializer, Serializer};

        /// `"12.5"`.
        pub fn serialize<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&value.to_string())
        }

        /// A decimal string of digits with an optional fraction.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
            super::parse(&String::deserialize(d)?)
        }
    }

    fn parse<E: serde::de::Error>(text: &str) -> Result<Decimal, E> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let shaped =
            !whole.is_empty() && digits(whole) && digits(fraction) && (!text.contains('.') || !fraction.is_empty());
        if !shaped {
            return Err(E::custom("expected a decimal string such as \"250.00\""));
        }
        Decimal::from_str(text).map_err(|_| E::custom("the number is too large"))
    }
}

/// `PUT /v1/auth/password`: change your own password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// Your current password.
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
    /// The new one: 12–256 characters, at least 5 different ones, not containing the username.
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// `PUT /v1/admins/{admin_id}/password`: set another admin's password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password: 12–256 characters, at least 5 different ones, not containing the
    /// username. Every session of the admin ends.
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// `POST /v1/admins/{admin_id}/disable`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableAdmin {
    /// Why (for the audit log), at most 500 characters.
    #[schema(max_length = 500)]
    pub reason: Option<String>,
}

/// One open session of an admin (the token itself is never shown).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// A stable id of the session (not its token).
    pub session_id: String,
    /// When it was opened (the epoch for sessions opened before this was recorded).
    pub issued_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// A team: users who share a monthly budget and a routing default.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Team {
    /// `team_…`
    #[schema(value_type = String, example = "team_01JDQ7TEAM0000000000000001")]
    pub team_id: String,
    /// Display name, unique among teams.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Monthly budget of the members together, in USD (a decimal string); `null`: unlimited.
    /// Each member's own budget applies too: the stricter one refuses first.
    #[serde(with = "ccp_schemas::pricing::decimal_str_option")]
    #[schema(value_type = Option<String>, example = "2000.00")]
    pub monthly_limit_usd: Option<Decimal>,
    /// Routing default of members who have no strategy of their own; `null`: none.
    #[schema(value_type = Option<RoutingDoc>)]
    pub routing: Option<RoutingStrategy>,
    /// Number of members.
    pub members: usize,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

impl Team {
    /// The API shape of a team's state.
    pub fn from_state(s: &ccp_schemas::state::TeamState, members: usize) -> Self {
        Self {
            team_id: s.team_id.to_string(),
            name: s.name.clone(),
            description: s.description.clone(),
            monthly_limit_usd: s.monthly_limit_usd,
            routing: s.routing,
            members,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A team with its members.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamDetail {
    /// The team.
    #[serde(flatten)]
    pub team: Team,
    /// Its members, by name.
    pub users: Vec<User>,
}

/// `POST /v1/teams`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// 1–64 characters, no control characters, not starting or ending with whitespace.
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")]
    pub name: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]{0,500}$")]
    pub description: Option<String>,
    /// Monthly budget in USD as a decimal string, e.g. `"2000.00"`.
    #[serde(default, with = "crate::api::strict_decimal")]
    #[schema(value_type = Option<String>, pattern = r"^(1000000(\.0{1,6})?|[0-9]{1,6}(\.[0-9]{1,6})?)$")]
    pub monthly_limit_usd: Option<Decimal>,
    /// Routing default of members without a strategy of their own.
    #[serde(default)]
    #[schema(value_type = Option<RoutingDoc>)]
    pub routing: Option<RoutingStrategy>,
}

/// `PATCH /v1/teams/{team_id}`: absent fields are unchanged, `""` clears the description.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    /// New name.
    #[serde(default)]
    #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,62}[^\s\x00-\x1f\x7f-\x9f])?$")]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    #[schema(pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]{0,500}$")]
    pub description: Option<String>,
}

/// `PUT /v1/teams/{team_id}/routing`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTeamRouting {
    /// `plan_first`, `bedrock_only` or `plan_only`; `null`: no default.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(value_type = Option<RoutingDoc>, required = true)]
    pub strategy: Option<RoutingStrategy>,
}

/// `PUT /v1/users/{user_id}/team`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTeam {
    /// The team (`team_…`) the user belongs to from now on; `null`: none. Spend already
    /// incurred stays with the team it was incurred in.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(value_type = Option<String>, required = true, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub team_id: Option<String>,
}
