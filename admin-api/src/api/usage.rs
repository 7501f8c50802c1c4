//! The usage routes' query strings and answers (`/v1/usage`, `/v1/users/{user_id}/budget`,
//! `/v1/requests/{request_id}`, `/v1/audit`): one definition shared by the handlers
//! (`routes::queries`), the usage store that fills them ([`crate::usage`]), the self-service
//! answer and the OpenAPI document.

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A named time range, computed in the query's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// From local midnight today to local midnight tomorrow.
    Today,
    /// The local calendar day before today.
    Yesterday,
    /// The 24 hours up to the end of the current local hour.
    #[serde(rename = "last_24h")]
    Last24h,
    /// The last 7 local calendar days, today included.
    #[serde(rename = "last_7d")]
    Last7d,
    /// The last 30 local calendar days, today included.
    #[serde(rename = "last_30d")]
    Last30d,
    /// From the 1st of this month, 00:00 local, to the 1st of the next.
    ThisMonth,
    /// The local calendar month before this one.
    LastMonth,
}

/// The width of one row of a usage answer (weeks start on Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// One minute (ranges of at most 2 days).
    Minute,
    /// One hour.
    Hour,
    /// One local calendar day.
    Day,
    /// One local week, Monday to Sunday.
    Week,
    /// One local calendar month.
    Month,
}

/// What usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The user (`user_id`).
    User,
    /// The access key (`key_id`).
    Key,
    /// The model the provider reported, else the requested one (`model`).
    Model,
    /// `anthropic`, `bedrock` or `none` (the proxy answered itself) (`provider`).
    Provider,
    /// The user's team when the request was made (`team_id`; `""`: no team). Spend stays with
    /// the team it was incurred in when a user moves.
    Team,
}

/// A provider to filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderFilter {
    /// The Anthropic API (the developer's own plan).
    Anthropic,
    /// Amazon Bedrock.
    Bedrock,
}

/// Query of `GET /v1/usage`. Give `preset` or `from` (and optionally `to`); neither means
/// `last_24h`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// A named range in the time zone: `today`, `yesterday`, `last_24h`, `last_7d`, `last_30d`,
    /// `this_month`, `last_month`.
    #[param(inline)]
    pub preset: Option<Preset>,
    /// Start (inclusive), RFC 3339, e.g. `2026-11-01T00:00:00Z` (send `+` as `%2B`).
    pub from: Option<String>,
    /// End (exclusive), RFC 3339; default now. At most 400 days after `from`.
    pub to: Option<String>,
    /// `minute` (ranges ≤ 2 days), `hour`, `day`, `week` or `month`; default `hour` for ranges
    /// up to 2 days, else `day`. A bucket cut by the range holds only the part inside it.
    #[param(inline)]
    pub bucket: Option<Bucket>,
    /// Comma-separated subset of `user`, `key`, `model`, `provider`, `team`.
    #[param(pattern = r"^((user|key|model|provider|team)(,(user|key|model|provider|team))*)?$")]
    pub group_by: Option<String>,
    /// Only this user (`usr_…`).
    #[param(pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub user_id: Option<String>,
    /// Only this access key (`key_…`).
    #[param(pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub key_id: Option<String>,
    /// Only requests made in this team (`team_…`; the team at request time).
    #[param(pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub team_id: Option<String>,
    /// Only `anthropic` or only `bedrock`.
    #[param(inline)]
    pub provider: Option<ProviderFilter>,
    /// Only this model (as the provider reported it, else as requested).
    pub model: Option<String>,
    /// IANA time zone of presets and buckets, e.g. `Europe/Berlin`; default `budgets.time_zone`.
    pub tz: Option<String>,
}

/// Counts and cost of some requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounts {
    /// Requests (refused ones included).
    pub requests: u64,
    /// Requests that ended in an error (`error_class` set).
    pub errors: u64,
    /// Requests Bedrock answered instead of Anthropic.
    pub fallbacks: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation_tokens: u64,
    /// Cost in USD of the priced requests, a decimal string. Requests of a model without a
    /// price are not in it: see `unpriced_requests`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "12.345")]
    pub cost_usd: Decimal,
    /// Requests that consumed tokens of a model without a price: their cost is unknown (not 0)
    /// until a price is set; it is not in `cost_usd`.
    pub unpriced_requests: u64,
    /// The tokens (all four kinds) of those requests.
    pub unpriced_tokens: u64,
    /// Requests whose output tokens are an estimate (the stream ended before the final count).
    pub estimated_requests: u64,
}

/// One bucket of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    /// Start of the bucket, RFC 3339 with the time zone's offset.
    #[schema(value_type = String, example = "2026-11-03T00:00:00+01:00")]
    pub bucket_start: DateTime<FixedOffset>,
    /// The user (grouped by `user`; `""`: requests refused before a key was recognised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The access key (grouped by `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The model (grouped by `model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider (grouped by `provider`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The team at request time (grouped by `team`; `""`: no team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// What was used.
    #[serde(flatten)]
    pub usage: UsageCounts,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// Start of the range (inclusive).
    #[schema(value_type = String)]
    pub from: DateTime<FixedOffset>,
    /// End of the range (exclusive).
    #[schema(value_type = String)]
    pub to: DateTime<FixedOffset>,
    /// The time zone of buckets and presets.
    pub tz: String,
    /// The bucket width.
    pub bucket: Bucket,
    /// The grouping, in the order asked.
    pub group_by: Vec<Dimension>,
    /// Non-empty buckets, oldest first, then by group.
    pub rows: Vec<UsageRow>,
    /// The sum of all rows.
    pub totals: UsageCounts,
}

/// `GET /v1/users/{user_id}/budget`: spend this calendar month in the budget time zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    /// `usr_…`
    pub user_id: String,
    /// This month's spend against the limit.
    #[serde(flatten)]
    pub month: BudgetMonth,
}

/// Spend this calendar month (in the budget time zone) against a monthly limit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetMonth {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The budget time zone (`budgets.time_zone`).
    pub time_zone: String,
    /// The monthly limit in USD; `null`: unlimited.
    #[serde(with = "rust_decimal::serde::str_option")]
    #[schema(value_type = Option<String>, example = "250")]
    pub limit_usd: Option<Decimal>,
    /// Spent this month, in USD.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "12.5")]
    pub spent_usd: Decimal,
    /// Left this month (never negative); `null`: unlimited.
    #[serde(with = "rust_decimal::serde::str_option")]
    #[schema(value_type = Option<String>, example = "237.5")]
    pub remaining_usd: Option<Decimal>,
    /// When the month ends and spending starts from zero again.
    #[schema(value_type = String, example = "2026-12-01T00:00:00+01:00")]
    pub reset_at: DateTime<FixedOffset>,
    /// Whether spending reached the limit (the proxy then refuses what `budgets.enforce` says).
    pub exhausted: bool,
}

/// `GET /v1/teams/{team_id}/budget`: a team's spend this calendar month (the requests its
/// members made while in it) against the team's monthly limit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamBudget {
    /// `team_…`
    pub team_id: String,
    /// The team's name.
    pub name: String,
    /// This month's spend against the team's limit.
    #[serde(flatten)]
    pub month: BudgetMonth,
}

/// `GET /v1/requests/{request_id}`: one request through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestDetail {
    /// `req_…`, the `x-ccp-request-id` the developer saw.
    pub request_id: String,
    /// When it ended.
    pub occurred_at: DateTime<Utc>,
    /// The developer (`null`: the key was not recognised).
    pub user_id: Option<String>,
    /// The access key.
    pub key_id: Option<String>,
    /// First characters of the key presented.
    pub key_prefix: Option<String>,
    /// `messages`, `count_tokens` or `other`.
    pub endpoint: String,
    /// `anthropic`, `bedrock` or `none` (the proxy answered itself).
    pub provider: String,
    /// Whether Bedrock answered instead of Anthropic.
    pub fallback: bool,
    /// Why it failed over (`rate_limited`, `overloaded`, …).
    pub fallback_reason: Option<String>,
    /// What went wrong (`upstream_rate_limited`, `budget_exhausted`, …); `null`: nothing.
    pub error_class: Option<String>,
    /// HTTP status sent to the developer.
    pub status: u16,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the answer did not finish (tokens are what was seen).
    pub incomplete: bool,
    /// Why the model stopped.
    pub stop_reason: Option<String>,
    /// `model` of the request.
    pub requested_model: Option<String>,
    /// The model the provider reported.
    pub response_model: Option<String>,
    /// Bedrock model id or inference profile.
    pub bedrock_model_id: Option<String>,
    /// AWS region, on Bedrock.
    pub region: Option<String>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation_tokens: u64,
    /// Cost in USD under `pricing_version`; `null` when the model had no price (`unpriced`).
    #[serde(with = "ccp_schemas::pricing::decimal_str_option")]
    #[schema(value_type = Option<String>, example = "0.0123")]
    pub cost_usd: Option<Decimal>,
    /// The model had no price: the cost is unknown.
    pub unpriced: bool,
    /// What the request was priced as: the catalogue entry that routed it.
    pub priced_model: Option<String>,
    /// The output tokens are an estimate (the stream ended before the final count).
    pub usage_estimated: bool,
    /// On Bedrock: how the model called was found (`catalogue`, `listing`, `family_fallback`,
    /// `key_default`).
    pub bedrock_resolution: Option<String>,
    /// On Bedrock: another model than the one requested answered.
    pub model_substituted: bool,
    /// The price list used (0: the configured one).
    pub pricing_version: u32,
    /// Request received → last byte sent, in milliseconds.
    pub latency_ms: u64,
    /// Request received → first byte sent, in milliseconds (0: none was sent).
    pub ttfb_ms: u64,
    /// Claude Code's session id.
    pub session_id: Option<String>,
    /// `claude-cli/<version>`.
    pub client_version: Option<String>,
    /// The proxy replica that served it.
    pub replica: Option<String>,
    /// Id of its `request_completed` event.
    pub event_id: String,
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted: an admin's username or id (`adm_…`), or a system component.
    pub actor: Option<String>,
    /// What it concerned: a user, key or admin id (`usr_…`, `key_…`, `adm_…`) or a login name.
    /// A user's events include those of their keys.
    pub target: Option<String>,
    /// Event type, e.g. `user_created`, `access_key_revoked`, `admin_login_failed`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Start (inclusive), RFC 3339.
    pub from: Option<String>,
    /// End (exclusive), RFC 3339.
    pub to: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// Entries to skip (default 0).
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u64>,
}

/// One audit record: an admin command or login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Id of the event.
    pub event_id: String,
    /// When the event was recorded (UTC).
    pub occurred_at: DateTime<Utc>,
    /// What, e.g. `user_created`.
    pub event_type: String,
    /// `admin`, `system` or `anonymous`.
    pub actor_kind: String,
    /// The admin's id (`adm_…`) or the system component.
    pub actor_id: Option<String>,
    /// The admin's username.
    pub actor_name: Option<String>,
    /// `user`, `access_key`, `pricing` or `admin`.
    pub target_kind: String,
    /// The user, key or admin id (or the login name of a login).
    pub target_id: Option<String>,
    /// The user concerned.
    pub user_id: Option<String>,
    /// The access key concerned.
    pub key_id: Option<String>,
    /// The client address.
    pub source: Option<String>,
    /// The admin API request id (`x-request-id`) of the command.
    pub request_id: Option<String>,
    /// The event's payload (without secrets or hashes).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}
