//! The ClickHouse rows every service reads or writes: one type per table, its fields named and
//! typed as the table's columns (migrations in [`ccp_schemas::migrations`], every column described
//! in `docs/ANALYTICS.md`). The projector writes them (`ccp_projector::analytics`: the mapping of
//! an event to its row); the admin API reads them whole (`SELECT ?fields`, which the client fills
//! with the type's column names), so a column added to a table is added here once.
//!
//! Text columns hold `''` for "none" and flags are `UInt8`, as the tables declare them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One `requests` row: one usage event (migrations 0001, 0003, 0004 and 0007; `cost_nanos_or_null`
/// is an `ALIAS` column, never stored and not a field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct RequestRow {
    pub event_id: String,
    /// Sequence of the event in the request stream (the projection's progress).
    pub stream_seq: u64,
    pub request_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub occurred_at_ms: u64,
    pub user_id: String,
    pub key_id: String,
    pub key_prefix: String,
    pub endpoint: String,
    pub provider: String,
    pub requested_model: String,
    pub response_model: String,
    pub bedrock_model_id: String,
    pub region: String,
    pub fallback: u8,
    pub fallback_reason: String,
    pub status: u16,
    pub error_class: String,
    pub stream: u8,
    pub incomplete: u8,
    pub stop_reason: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// Nano-dollars; 0 when the request is `unpriced`.
    pub cost_nanos: u64,
    pub pricing_version: u32,
    pub latency_ms: u64,
    pub ttfb_ms: u64,
    pub session_id: String,
    pub client_version: String,
    pub replica: String,
    // The key's rate-limit state when the request ended (migration 0003).
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub rl_observed_at: Option<DateTime<Utc>>,
    pub rl_status: u16,
    pub rl_retry_after_secs: Option<u64>,
    pub plan_status: String,
    pub plan_claim: String,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub plan_reset: Option<DateTime<Utc>>,
    pub plan_5h_utilization: Option<f64>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub plan_5h_reset: Option<DateTime<Utc>>,
    pub plan_7d_utilization: Option<f64>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub plan_7d_reset: Option<DateTime<Utc>>,
    pub plan_overage_status: String,
    pub api_requests_remaining: Option<u64>,
    pub api_tokens_remaining: Option<u64>,
    pub rate_limit_json: String,
    // Pricing and model resolution (migration 0004).
    pub unpriced: u8,
    pub unpriced_tokens: u64,
    pub usage_estimated: u8,
    pub priced_model: String,
    pub bedrock_resolution: String,
    pub model_substituted: u8,
    /// The team of the request's user at the time of the request, `''` if none (migration 0007;
    /// `users.team_id` is the user's team now).
    pub team_id: String,
}

/// One `audit_log` row: an admin command or login (no secrets: sealed keys and hashes are left
/// out of `details`, the event's payload as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct AuditRow {
    pub event_id: String,
    /// Sequence of the event in the admin stream (the projection's progress).
    pub stream_seq: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_name: String,
    pub target_kind: String,
    pub target_id: String,
    pub user_id: String,
    pub key_id: String,
    pub source: String,
    pub correlation_id: String,
    pub details: String,
}

/// One `circuit_transitions` row: a transition of a key's breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct CircuitRow {
    pub event_id: String,
    /// Sequence of the event in the circuit stream (the projection's progress).
    pub stream_seq: u64,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub key_id: String,
    pub state: String,
    pub reason: String,
    pub failures: u32,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub retry_at: DateTime<Utc>,
    pub replica: String,
}

/// One `users` row: a user's state after one admin event (migration 0006). The table keeps the
/// row with the highest `stream_seq` per user (ReplacingMergeTree; read with `FINAL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct UserRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub description: String,
    /// `''` until the user is in a team.
    pub team_id: String,
    /// `active` or `inactive`.
    pub status: String,
    /// `plan_first`, `bedrock_only` or `plan_only`.
    pub routing: String,
    /// The monthly budget in nano-dollars; `None`: no budget.
    pub monthly_budget_nanos: Option<u64>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub updated_at: DateTime<Utc>,
    /// When the user was deactivated; `None` while active.
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Sequence of the event in the admin stream (the row's version and the projection's progress).
    pub stream_seq: u64,
}

/// One `teams` row: a team's state after one admin event (migration 0007). The table keeps the
/// row with the highest `stream_seq` per team (ReplacingMergeTree; read with `FINAL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct TeamRow {
    pub team_id: String,
    pub name: String,
    /// `''` if none.
    pub description: String,
    /// The members' routing default (`plan_first`, `bedrock_only` or `plan_only`), `''` if none.
    pub routing: String,
    /// The members' monthly budget together, in nano-dollars; `None`: no budget.
    pub monthly_budget_nanos: Option<u64>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub updated_at: DateTime<Utc>,
    /// When the team was deleted; `None` while it exists.
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Sequence of the event in the admin stream (the row's version and the projection's progress).
    pub stream_seq: u64,
}

/// One `keys` row: an access key's state after one admin event (migration 0006; no hash, no
/// secret). The table keeps the row with the highest `stream_seq` per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct KeyRow {
    pub key_id: String,
    pub user_id: String,
    /// The admin's label (`laptop`), `''` if none.
    pub name: String,
    /// Display prefix of the current secret.
    pub key_prefix: String,
    /// `active` or `revoked`.
    pub status: String,
    pub bedrock_region: String,
    pub bedrock_default_model: String,
    /// 1: a Bedrock API key is registered (the key can fail over).
    pub bedrock_key: u8,
    /// The last readiness check of that Bedrock key (`ready`, `key_refused`, …), `''` if unchecked.
    pub bedrock_readiness: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub updated_at: DateTime<Utc>,
    /// When the key was revoked; `None` while active.
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Sequence of the event in the admin stream (the row's version and the projection's progress).
    pub stream_seq: u64,
}
