//! Read-only queries over the projector's ClickHouse tables: usage over time, a user's budget
//! this month, one request by id, the audit log, and when keys were last used.
//!
//! Every client value reaches SQL as a bound literal (`?`), and only after it was checked here:
//! ids parse as ids, time zones are IANA names. Usage is read from the coarsest table that still
//! answers exactly — `usage_day`, `usage_hour`, `usage_minute` (while kept), else the raw
//! `requests`: the range's ends and every bucket boundary in the time zone must fall on that
//! table's (UTC) buckets, so a rollup row is never split between two answer buckets or cut by
//! the range (a day in `Asia/Kolkata` starts at 18:30 UTC, inside an hour row).

use std::collections::HashMap;

use actix_web::web;
use ccp_schemas::calendar::{self, Month};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use chrono::{DateTime, Duration, FixedOffset, Offset as _, TimeZone as _, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, AppState};
use crate::api::Page;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::query::Query;

/// Longest range of a usage query.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Longest range that may be bucketed by minute.
pub const MAX_MINUTE_RANGE_DAYS: i64 = 2;
/// Largest audit page.
pub const MAX_AUDIT_LIMIT: u64 = 500;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/usage", web::get().to(usage))
        .route("/users/{user_id}/budget", web::get().to(get_budget))
        .route("/requests/{request_id}", web::get().to(get_request))
        .route("/audit", web::get().to(audit));
}

// ---------------------------------------------------------------------------------------------
// Request and response types
// ---------------------------------------------------------------------------------------------

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
    /// Comma-separated subset of `user`, `key`, `model`, `provider`.
    #[param(pattern = r"^((user|key|model|provider)(,(user|key|model|provider))*)?$")]
    pub group_by: Option<String>,
    /// Only this user (`usr_…`).
    #[param(pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub user_id: Option<String>,
    /// Only this access key (`key_…`).
    #[param(pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    pub key_id: Option<String>,
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

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Usage and cost over time, bucketed in a time zone, optionally grouped and filtered.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(state: web::Data<AppState>, query: Query<UsageQuery>) -> ApiResult<web::Json<UsageReport>> {
    let q = query.0;
    let tz = match q.tz.as_deref() {
        Some(name) => parse_tz(name)?,
        None => budget_tz(&state)?,
    };
    let now = Utc::now();
    let (from, to) = resolve_range(&q, tz, now)?;
    let span = to - from;
    let bucket = match q.bucket {
        Some(Bucket::Minute) if span > Duration::days(MAX_MINUTE_RANGE_DAYS) => {
            return Err(ApiError::invalid(
                "bucket",
                format!("`minute` buckets need a range of at most {MAX_MINUTE_RANGE_DAYS} days; use `hour` or longer"),
            ));
        }
        Some(b) => b,
        None if span <= Duration::days(MAX_MINUTE_RANGE_DAYS) => Bucket::Hour,
        None => Bucket::Day,
    };
    let group_by = parse_group_by(q.group_by.as_deref())?;
    let filters = Filters {
        user_id: q.user_id.as_deref().map(|v| parse_id::<UserId>("user_id", v)).transpose()?.map(|u| u.to_string()),
        key_id: q.key_id.as_deref().map(|v| parse_id::<AccessKeyId>("key_id", v)).transpose()?.map(|k| k.to_string()),
        provider: q.provider.map(|p| match p {
            ProviderFilter::Anthropic => "anthropic".to_owned(),
            ProviderFilter::Bedrock => "bedrock".to_owned(),
        }),
        model: q.model.as_deref().map(check_model).transpose()?,
    };
    let question = Question { bucket, tz, from, to, group_by: &group_by, filters: &filters };
    let rows = read_usage(&state.clickhouse, &question, minutes_kept_since(&state, now)).await.map_err(|e| {
        if e.to_string().contains("Cannot load time zone") {
            ApiError::invalid("tz", format!("ClickHouse does not know the time zone `{}`", tz.name()))
        } else {
            ApiError::unavailable("ClickHouse", &e)
        }
    })?;
    let mut totals = Totals::default();
    let rows = rows
        .into_iter()
        .map(|r| {
            totals.add(&r);
            UsageRow {
                bucket_start: local(r.b.into(), tz),
                user_id: group_by.contains(&Dimension::User).then(|| r.g_user.clone()),
                key_id: group_by.contains(&Dimension::Key).then(|| r.g_key.clone()),
                model: group_by.contains(&Dimension::Model).then(|| r.g_model.clone()),
                provider: group_by.contains(&Dimension::Provider).then(|| r.g_provider.clone()),
                usage: Totals::from_row(&r).counts(),
            }
        })
        .collect();
    Ok(web::Json(UsageReport {
        from: local(from.timestamp(), tz),
        to: local(to.timestamp(), tz),
        tz: tz.name().to_owned(),
        bucket,
        group_by,
        rows,
        totals: totals.counts(),
    }))
}

/// A user's spend this calendar month (in the budget time zone) against their monthly limit.
#[utoipa::path(get, path = "/v1/users/{user_id}/budget", tag = "usage", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Budget), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_budget(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<web::Json<Budget>> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let limit = state
        .view
        .read()
        .directory
        .user(&user_id)
        .map(|u| u.monthly_limit_usd)
        .ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))?;
    budget_of(&state, user_id, limit).await.map(web::Json)
}

/// A user's budget status this month, given their monthly limit (also the self-service page's).
pub async fn budget_of(state: &AppState, user_id: UserId, limit: Option<Decimal>) -> ApiResult<Budget> {
    let tz = budget_tz(state)?;
    let now = Utc::now();
    let month = Month::of(now, tz);
    let (from, to) = (month.start(tz), month.end(tz));
    let filters = Filters { user_id: Some(user_id.to_string()), ..Filters::default() };
    let question = Question { bucket: Bucket::Month, tz, from, to, group_by: &[], filters: &filters };
    let rows = read_usage(&state.clickhouse, &question, minutes_kept_since(state, now))
        .await
        .map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
    let spent = usd(rows.iter().map(|r| r.n_cost).sum());
    Ok(Budget {
        user_id: user_id.to_string(),
        month: month.to_string(),
        time_zone: tz.name().to_owned(),
        limit_usd: limit,
        spent_usd: spent,
        remaining_usd: limit.map(|l| (l - spent).max(Decimal::ZERO).normalize()),
        reset_at: local(to.timestamp(), tz),
        exhausted: limit.is_some_and(|l| spent >= l),
    })
}

/// One request through the proxy, by the request id the developer saw (`x-ccp-request-id`).
#[utoipa::path(get, path = "/v1/requests/{request_id}", tag = "usage", params(("request_id" = String, Path, pattern = r"^req_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = RequestDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_request(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<web::Json<RequestDetail>> {
    let request_id: RequestId = parse_id("request_id", &path)?;
    let id = request_id.to_string();
    // The id is a ULID minted when the request arrived, and rows are sorted by time: look near
    // that time first, then everywhere (ids minted elsewhere, clocks far off).
    let minted = i64::try_from(request_id.ulid().timestamp_ms() / 1000).unwrap_or(0);
    let near = (minted - 86_400, minted + 7 * 86_400);
    let mut row = find_request(&state.clickhouse, &id, Some(near)).await?;
    if row.is_none() {
        row = find_request(&state.clickhouse, &id, None).await?;
    }
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!("no request {id} (requests appear about a second after they end)"))
    })?;
    Ok(web::Json(row.into_detail()))
}

/// The audit log: every admin command and login, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "usage", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit(state: web::Data<AppState>, query: Query<AuditQuery>) -> ApiResult<web::Json<Page<AuditEntry>>> {
    let q = query.0;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_AUDIT_LIMIT}")));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > crate::routes::MAX_OFFSET as u64 {
        return Err(ApiError::invalid("offset", format!("must be at most {}", crate::routes::MAX_OFFSET)));
    }
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    if let Some(actor) = q.actor.as_deref() {
        let actor = check_text_param("actor", actor, 128)?;
        conditions.push("(actor_id = ? OR actor_name = ?)");
        args.extend([Arg::Str(actor.clone()), Arg::Str(actor)]);
    }
    if let Some(target) = q.target.as_deref() {
        let target = check_text_param("target", target, 128)?;
        conditions.push("(target_id = ? OR user_id = ? OR key_id = ?)");
        args.extend([Arg::Str(target.clone()), Arg::Str(target.clone()), Arg::Str(target)]);
    }
    if let Some(t) = q.event_type.as_deref() {
        if t.is_empty() || t.len() > 64 || !t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ApiError::invalid("type", "must be an event type like `user_created`"));
        }
        conditions.push("event_type = ?");
        args.push(Arg::Str(t.to_owned()));
    }
    let from = q.from.as_deref().map(|v| parse_time("from", v)).transpose()?;
    let to = q.to.as_deref().map(|v| parse_time("to", v)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::invalid("to", "must be later than `from`"));
        }
    }
    if let Some(f) = from {
        conditions.push("occurred_at >= toDateTime(?)");
        args.push(Arg::Int(f.timestamp()));
    }
    if let Some(t) = to {
        conditions.push("occurred_at < toDateTime(?)");
        args.push(Arg::Int(t.timestamp()));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let unavailable = |e: clickhouse::error::Error| ApiError::unavailable("ClickHouse", &e);
    let total: u64 = bind(state.clickhouse.query(&format!("SELECT count() FROM audit_log {filter}")), &args)
        .fetch_one()
        .await
        .map_err(unavailable)?;
    let mut page_args = args;
    page_args.extend([Arg::Uint(offset), Arg::Uint(limit)]);
    let rows: Vec<AuditDbRow> = bind(
        state.clickhouse.query(&format!(
            "SELECT event_id, occurred_at, event_type, actor_kind, actor_id, actor_name, target_kind, target_id, \
             user_id, key_id, source, correlation_id, details FROM audit_log {filter} \
             ORDER BY occurred_at DESC, event_id DESC LIMIT ?, ?"
        )),
        &page_args,
    )
    .fetch_all()
    .await
    .map_err(unavailable)?;
    Ok(web::Json(Page {
        items: rows.into_iter().map(AuditDbRow::into_entry).collect(),
        total: usize::try_from(total).unwrap_or(usize::MAX),
        offset: usize::try_from(offset).unwrap_or(usize::MAX),
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
    }))
}

/// When each key was last used through the proxy (`max(occurred_at)` of its requests). Keys
/// never used are absent; on any ClickHouse failure the map is empty (logged), since this only
/// decorates key listings.
pub async fn last_used(clickhouse: &clickhouse::Client, key_ids: &[String]) -> HashMap<String, DateTime<Utc>> {
    #[derive(Debug, Deserialize, clickhouse::Row)]
    struct LastUsed {
        key_id: String,
        #[serde(with = "clickhouse::serde::chrono::datetime")]
        last_at: DateTime<Utc>,
    }
    let mut out = HashMap::new();
    // Chunks keep the query text well under ClickHouse's `max_query_size`.
    for chunk in key_ids.chunks(1000) {
        let rows = clickhouse
            .query("SELECT key_id, max(occurred_at) AS last_at FROM requests WHERE has(?, key_id) GROUP BY key_id")
            .bind(chunk)
            .fetch_all::<LastUsed>()
            .await;
        match rows {
            Ok(rows) => out.extend(rows.into_iter().map(|r| (r.key_id, r.last_at))),
            Err(e) => {
                tracing::warn!(error = %e, "reading when keys were last used failed");
                return HashMap::new();
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Input checks and time arithmetic
// ---------------------------------------------------------------------------------------------

/// An IANA time zone name (400 naming `tz` otherwise).
fn parse_tz(name: &str) -> ApiResult<Tz> {
    name.parse::<Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        ApiError::invalid("tz", format!("`{shown}` is not an IANA time zone like `Europe/Berlin` or `UTC`"))
    })
}

fn budget_tz(state: &AppState) -> ApiResult<Tz> {
    state.settings.budgets.tz().map_err(|e| ApiError::internal(&e))
}

/// Earliest and latest accepted instants (what ClickHouse's `DateTime` holds, with margin).
fn time_bounds() -> (DateTime<Utc>, DateTime<Utc>) {
    (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH + Duration::days(47_482))
    // 2100-01-01
}

/// An RFC 3339 instant between 1970 and 2100.
fn parse_time(field: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(value.trim()).map_err(|_| {
        let shown: String = value.chars().take(40).collect();
        ApiError::invalid(
            field,
            format!("`{shown}` is not an RFC 3339 time like 2026-11-01T00:00:00Z (send `+` as `%2B`)"),
        )
    })?;
    let t = t.with_timezone(&Utc);
    let (min, max) = time_bounds();
    if t < min || t >= max {
        return Err(ApiError::invalid(field, "must be between 1970 and 2100"));
    }
    Ok(t)
}

/// A model name to filter by: 1–128 characters, no control characters.
fn check_model(value: &str) -> ApiResult<String> {
    check_text_param("model", value, 128)
}

fn check_text_param(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("must be 1–{max} characters without control characters")));
    }
    Ok(v.to_owned())
}

/// `user,model` → the dimensions, in order, without repeats.
fn parse_group_by(value: Option<&str>) -> ApiResult<Vec<Dimension>> {
    let mut out = Vec::new();
    for part in value.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = match part {
            "user" => Dimension::User,
            "key" => Dimension::Key,
            "model" => Dimension::Model,
            "provider" => Dimension::Provider,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(ApiError::invalid(
                    "group_by",
                    format!("`{shown}` is not one of `user`, `key`, `model`, `provider`"),
                ));
            }
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// A preset's `[from, to)` at `now` in `tz`: whole local days, hours and months of
/// [`calendar`] (which decides where a midnight in a daylight-saving gap or fold falls).
fn preset_range(preset: Preset, tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = calendar::day(now, tz).label;
    let day = |n: i64| calendar::day_start(tz, today + Duration::days(n));
    let month = Month::of(now, tz);
    match preset {
        Preset::Today => (day(0), day(1)),
        Preset::Yesterday => (day(-1), day(0)),
        Preset::Last24h => {
            // Up to the end of the local hour.
            let to = calendar::hour(now, tz).end;
            (to - Duration::hours(24), to)
        }
        Preset::Last7d => (day(-6), day(1)),
        Preset::Last30d => (day(-29), day(1)),
        Preset::ThisMonth => (month.start(tz), month.end(tz)),
        Preset::LastMonth => (month.previous().start(tz), month.start(tz)),
    }
}

/// The `[from, to)` of a usage query.
fn resolve_range(q: &UsageQuery, tz: Tz, now: DateTime<Utc>) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    if q.preset.is_some() && (q.from.is_some() || q.to.is_some()) {
        return Err(ApiError::invalid("preset", "give either `preset` or `from`/`to`, not both"));
    }
    let (from, to) = match (q.preset, q.from.as_deref(), q.to.as_deref()) {
        (Some(p), _, _) => preset_range(p, tz, now),
        (None, None, None) => preset_range(Preset::Last24h, tz, now),
        (None, None, Some(_)) => return Err(ApiError::invalid("from", "is required with `to`")),
        (None, Some(f), t) => {
            let from = parse_time("from", f)?;
            let to = match t {
                Some(t) => parse_time("to", t)?,
                // Now, rounded up to the minute (so recent ranges stay on rollup boundaries).
                None => DateTime::<Utc>::from_timestamp((now.timestamp() / 60 + 1) * 60, 0).unwrap_or(now),
            };
            (from, to)
        }
    };
    if from >= to {
        return Err(ApiError::invalid("to", "must be later than `from`"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::invalid("to", format!("the range may be at most {MAX_RANGE_DAYS} days long")));
    }
    Ok((from, to))
}

/// An instant as RFC 3339 with `tz`'s offset.
fn local(timestamp: i64, tz: Tz) -> DateTime<FixedOffset> {
    DateTime::<Utc>::from_timestamp(timestamp, 0).unwrap_or_default().with_timezone(&tz).fixed_offset()
}

/// Whole nano-dollars as USD.
fn usd(nanos: u64) -> Decimal {
    // A u64 always fits the 96-bit mantissa, so this cannot overflow.
    Decimal::from_i128_with_scale(i128::from(nanos), 9).normalize()
}

// ---------------------------------------------------------------------------------------------
// Reading usage
// ---------------------------------------------------------------------------------------------

/// Where usage rows are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Day,
    Hour,
    Minute,
    Raw,
}

impl Source {
    /// Width of its rows (UTC-aligned), in seconds.
    const fn seconds(self) -> i64 {
        match self {
            Self::Day => 86_400,
            Self::Hour => 3_600,
            Self::Minute => 60,
            Self::Raw => 1,
        }
    }

    const fn table(self) -> &'static str {
        match self {
            Self::Day => "usage_day",
            Self::Hour => "usage_hour",
            Self::Minute => "usage_minute",
            Self::Raw => "requests",
        }
    }

    const fn time(self) -> &'static str {
        match self {
            Self::Raw => "occurred_at",
            _ => "bucket",
        }
    }

    const fn model(self) -> &'static str {
        match self {
            Self::Raw => {
                "if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model))"
            }
            _ => "model",
        }
    }

    const fn measures(self) -> &'static str {
        match self {
            Self::Raw => {
                "count() AS n_requests, countIf(error_class != '') AS n_errors, sum(fallback) AS n_fallbacks, \
                 sum(input_tokens) AS n_input, sum(output_tokens) AS n_output, \
                 sum(cache_read_tokens) AS n_cache_read, sum(cache_creation_tokens) AS n_cache_creation, \
                 sum(cost_nanos) AS n_cost, sum(unpriced) AS n_unpriced, sum(unpriced_tokens) AS n_unpriced_tokens, \
                 sum(usage_estimated) AS n_estimated"
            }
            _ => {
                "sum(requests) AS n_requests, sum(errors) AS n_errors, sum(fallbacks) AS n_fallbacks, \
                 sum(input_tokens) AS n_input, sum(output_tokens) AS n_output, \
                 sum(cache_read_tokens) AS n_cache_read, sum(cache_creation_tokens) AS n_cache_creation, \
                 sum(cost_nanos) AS n_cost, sum(unpriced_requests) AS n_unpriced, \
                 sum(unpriced_tokens) AS n_unpriced_tokens, sum(estimated_requests) AS n_estimated"
            }
        }
    }
}

impl Bucket {
    /// The shortest this bucket can be, in seconds (a local day may have 23 hours, but its
    /// boundaries are still whole hours wherever the offsets are).
    const fn min_seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day | Self::Week | Self::Month => 86_400,
        }
    }

    /// The bucket start of `column` in the bound time zone, as a `DateTime`; and how many
    /// time-zone placeholders it has.
    fn sql(self, column: &str) -> (String, usize) {
        match self {
            Self::Minute => (format!("toStartOfMinute({column}, ?)"), 1),
            Self::Hour => (format!("toStartOfHour({column}, ?)"), 1),
            Self::Day => (format!("toStartOfDay({column}, ?)"), 1),
            Self::Week => (format!("toDateTime(toMonday({column}, ?), ?)"), 2),
            Self::Month => (format!("toDateTime(toStartOfMonth({column}, ?), ?)"), 2),
        }
    }
}

/// Whether `tz`'s UTC offset is a multiple of `seconds` throughout `[from, to]` (sampled hourly:
/// offsets change at most a few times a year).
fn offsets_aligned(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>, seconds: i64) -> bool {
    let mut t = from;
    loop {
        let offset = i64::from(tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc());
        if offset % seconds != 0 {
            return false;
        }
        if t >= to {
            return true;
        }
        t = (t + Duration::hours(1)).min(to);
    }
}

/// The coarsest table whose rows fit both the range's ends and the buckets' boundaries in `tz`
/// (the minute table only from `minutes_since`, within its retention).
fn choose_source(
    bucket: Bucket,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    minutes_since: DateTime<Utc>,
) -> Source {
    [Source::Day, Source::Hour, Source::Minute]
        .into_iter()
        .find(|s| {
            let g = s.seconds();
            g <= bucket.min_seconds()
                && from.timestamp().rem_euclid(g) == 0
                && to.timestamp().rem_euclid(g) == 0
                && (*s != Source::Minute || from >= minutes_since)
                && offsets_aligned(tz, from, to, g)
        })
        .unwrap_or(Source::Raw)
}

/// From when the minute rollups are surely complete: the projector drops whole UTC days older
/// than `projector.minute_retention_days`; one day of margin.
fn minutes_kept_since(state: &AppState, now: DateTime<Utc>) -> DateTime<Utc> {
    let days = i64::from(state.settings.projector.minute_retention_days);
    if days < 2 {
        return DateTime::<Utc>::MAX_UTC;
    }
    now - Duration::days(days - 1)
}

/// Usage filters (already checked).
#[derive(Debug, Default)]
struct Filters {
    user_id: Option<String>,
    key_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
}

/// A bound value.
#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    Int(i64),
    Uint(u64),
}

fn bind(query: clickhouse::query::Query, args: &[Arg]) -> clickhouse::query::Query {
    args.iter().fold(query, |q, a| match a {
        Arg::Str(s) => q.bind(s.as_str()),
        Arg::Int(n) => q.bind(*n),
        Arg::Uint(n) => q.bind(*n),
    })
}

/// One row of a usage query (dimensions not grouped by are `''`).
#[derive(Debug, Deserialize, clickhouse::Row)]
struct UsageDbRow {
    b: u32,
    g_user: String,
    g_key: String,
    g_model: String,
    g_provider: String,
    n_requests: u64,
    n_errors: u64,
    n_fallbacks: u64,
    n_input: u64,
    n_output: u64,
    n_cache_read: u64,
    n_cache_creation: u64,
    n_cost: u64,
    n_unpriced: u64,
    n_unpriced_tokens: u64,
    n_estimated: u64,
}

/// Sums in whole units (cost in nano-dollars), turned into [`UsageCounts`] at the end.
#[derive(Debug, Default)]
struct Totals {
    requests: u64,
    errors: u64,
    fallbacks: u64,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
    cost_nanos: u64,
    unpriced: u64,
    unpriced_tokens: u64,
    estimated: u64,
}

impl Totals {
    fn from_row(r: &UsageDbRow) -> Self {
        let mut t = Self::default();
        t.add(r);
        t
    }

    fn add(&mut self, r: &UsageDbRow) {
        self.requests = self.requests.saturating_add(r.n_requests);
        self.errors = self.errors.saturating_add(r.n_errors);
        self.fallbacks = self.fallbacks.saturating_add(r.n_fallbacks);
        self.input = self.input.saturating_add(r.n_input);
        self.output = self.output.saturating_add(r.n_output);
        self.cache_read = self.cache_read.saturating_add(r.n_cache_read);
        self.cache_creation = self.cache_creation.saturating_add(r.n_cache_creation);
        self.cost_nanos = self.cost_nanos.saturating_add(r.n_cost);
        self.unpriced = self.unpriced.saturating_add(r.n_unpriced);
        self.unpriced_tokens = self.unpriced_tokens.saturating_add(r.n_unpriced_tokens);
        self.estimated = self.estimated.saturating_add(r.n_estimated);
    }

    fn counts(&self) -> UsageCounts {
        UsageCounts {
            requests: self.requests,
            errors: self.errors,
            fallbacks: self.fallbacks,
            input_tokens: self.input,
            output_tokens: self.output,
            cache_read_tokens: self.cache_read,
            cache_creation_tokens: self.cache_creation,
            cost_usd: usd(self.cost_nanos),
            unpriced_requests: self.unpriced,
            unpriced_tokens: self.unpriced_tokens,
            estimated_requests: self.estimated,
        }
    }
}

/// A usage question, checked.
#[derive(Debug)]
struct Question<'a> {
    bucket: Bucket,
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    group_by: &'a [Dimension],
    filters: &'a Filters,
}

/// The usage query: rows per bucket (and group), oldest first, from the coarsest exact table.
async fn read_usage(
    clickhouse: &clickhouse::Client,
    q: &Question<'_>,
    minutes_since: DateTime<Utc>,
) -> Result<Vec<UsageDbRow>, clickhouse::error::Error> {
    let Question { bucket, tz, from, to, group_by, filters } = *q;
    let source = choose_source(bucket, tz, from, to, minutes_since);
    let time = source.time();
    let (bucket_sql, tz_binds) = bucket.sql(time);
    let mut args: Vec<Arg> = (0..tz_binds).map(|_| Arg::Str(tz.name().to_owned())).collect();
    // Output aliases differ from column names: ClickHouse applies aliases everywhere, WHERE too.
    let dims = [
        (Dimension::User, "user_id", "g_user"),
        (Dimension::Key, "key_id", "g_key"),
        (Dimension::Model, source.model(), "g_model"),
        (Dimension::Provider, "provider", "g_provider"),
    ];
    let mut select = vec![format!("toUInt32({bucket_sql}) AS b")];
    let mut group = vec!["b"];
    for (dimension, column, alias) in dims {
        if group_by.contains(&dimension) {
            select.push(format!("{column} AS {alias}"));
            group.push(alias);
        } else {
            select.push(format!("'' AS {alias}"));
        }
    }
    let mut conditions = vec![format!("{time} >= toDateTime(?)"), format!("{time} < toDateTime(?)")];
    args.extend([Arg::Int(from.timestamp()), Arg::Int(to.timestamp())]);
    for (value, column) in [
        (&filters.user_id, "user_id"),
        (&filters.key_id, "key_id"),
        (&filters.provider, "provider"),
        (&filters.model, source.model()),
    ] {
        if let Some(v) = value {
            conditions.push(format!("{column} = ?"));
            args.push(Arg::Str(v.clone()));
        }
    }
    let group = group.join(", ");
    let sql = format!(
        "SELECT {}, {} FROM {} WHERE {} GROUP BY {group} ORDER BY {group}",
        select.join(", "),
        source.measures(),
        source.table(),
        conditions.join(" AND "),
    );
    tracing::debug!(table = source.table(), %sql, "usage query");
    bind(clickhouse.query(&sql), &args).fetch_all().await
}

// ---------------------------------------------------------------------------------------------
// Reading requests and audit records
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, clickhouse::Row)]
struct RequestDbRow {
    event_id: String,
    request_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    occurred_at: DateTime<Utc>,
    user_id: String,
    key_id: String,
    key_prefix: String,
    endpoint: String,
    provider: String,
    requested_model: String,
    response_model: String,
    bedrock_model_id: String,
    region: String,
    fallback: u8,
    fallback_reason: String,
    status: u16,
    error_class: String,
    stream: u8,
    incomplete: u8,
    stop_reason: String,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    cost_nanos: u64,
    pricing_version: u32,
    latency_ms: u64,
    ttfb_ms: u64,
    session_id: String,
    client_version: String,
    replica: String,
    unpriced: u8,
    priced_model: String,
    usage_estimated: u8,
    bedrock_resolution: String,
    model_substituted: u8,
}

/// `""` → `None`.
fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl RequestDbRow {
    fn into_detail(self) -> RequestDetail {
        RequestDetail {
            request_id: self.request_id,
            occurred_at: self.occurred_at,
            user_id: text(self.user_id),
            key_id: text(self.key_id),
            key_prefix: text(self.key_prefix),
            endpoint: self.endpoint,
            provider: self.provider,
            fallback: self.fallback != 0,
            fallback_reason: text(self.fallback_reason),
            error_class: text(self.error_class),
            status: self.status,
            stream: self.stream != 0,
            incomplete: self.incomplete != 0,
            stop_reason: text(self.stop_reason),
            requested_model: text(self.requested_model),
            response_model: text(self.response_model),
            bedrock_model_id: text(self.bedrock_model_id),
            region: text(self.region),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_creation_tokens: self.cache_creation_tokens,
            cost_usd: (self.unpriced == 0).then(|| usd(self.cost_nanos)),
            unpriced: self.unpriced != 0,
            priced_model: text(self.priced_model),
            usage_estimated: self.usage_estimated != 0,
            bedrock_resolution: text(self.bedrock_resolution),
            model_substituted: self.model_substituted != 0,
            pricing_version: self.pricing_version,
            latency_ms: self.latency_ms,
            ttfb_ms: self.ttfb_ms,
            session_id: text(self.session_id),
            client_version: text(self.client_version),
            replica: text(self.replica),
            event_id: self.event_id,
        }
    }
}

/// The columns of a [`RequestDbRow`].
const REQUEST_COLUMNS: &str = "event_id, request_id, occurred_at, user_id, key_id, key_prefix, endpoint, provider, \
     requested_model, response_model, bedrock_model_id, region, fallback, fallback_reason, status, \
     error_class, stream, incomplete, stop_reason, input_tokens, output_tokens, cache_read_tokens, \
     cache_creation_tokens, cost_nanos, pricing_version, latency_ms, ttfb_ms, session_id, client_version, \
     replica, unpriced, priced_model, usage_estimated, bedrock_resolution, model_substituted";

/// A user's latest requests since `since`, newest first (only failed-over ones if
/// `fallbacks_only`): at most `limit`.
pub async fn recent_requests(
    clickhouse: &clickhouse::Client,
    user_id: UserId,
    since: DateTime<Utc>,
    limit: u64,
    fallbacks_only: bool,
) -> ApiResult<Vec<RequestDetail>> {
    let only = if fallbacks_only { " AND fallback = 1" } else { "" };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE occurred_at >= toDateTime(?) AND user_id = ?{only} \
         ORDER BY occurred_at DESC, request_id DESC LIMIT ?"
    );
    let args = [Arg::Int(since.timestamp().max(0)), Arg::Str(user_id.to_string()), Arg::Uint(limit)];
    let rows: Vec<RequestDbRow> =
        bind(clickhouse.query(&sql), &args).fetch_all().await.map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
    Ok(rows.into_iter().map(RequestDbRow::into_detail).collect())
}

/// The request row with this id, looked for within `window` (unix seconds) if given.
async fn find_request(
    clickhouse: &clickhouse::Client,
    id: &str,
    window: Option<(i64, i64)>,
) -> ApiResult<Option<RequestDbRow>> {
    let mut args = vec![Arg::Str(id.to_owned())];
    let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ?");
    if let Some((start, end)) = window {
        sql.push_str(" AND occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?)");
        args.extend([Arg::Int(start.max(0)), Arg::Int(end.max(0))]);
    }
    sql.push_str(" ORDER BY occurred_at DESC LIMIT 1");
    bind(clickhouse.query(&sql), &args).fetch_optional().await.map_err(|e| ApiError::unavailable("ClickHouse", &e))
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct AuditDbRow {
    event_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    occurred_at: DateTime<Utc>,
    event_type: String,
    actor_kind: String,
    actor_id: String,
    actor_name: String,
    target_kind: String,
    target_id: String,
    user_id: String,
    key_id: String,
    source: String,
    correlation_id: String,
    details: String,
}

impl AuditDbRow {
    fn into_entry(self) -> AuditEntry {
        let details = match serde_json::from_str::<serde_json::Value>(&self.details) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(event_id = %self.event_id, error = %e, "audit details are not JSON");
                serde_json::Value::String(self.details)
            }
        };
        AuditEntry {
            event_id: self.event_id,
            occurred_at: self.occurred_at,
            event_type: self.event_type,
            actor_kind: self.actor_kind,
            actor_id: text(self.actor_id),
            actor_name: text(self.actor_name),
            target_kind: self.target_kind,
            target_id: text(self.target_id),
            user_id: text(self.user_id),
            key_id: text(self.key_id),
            source: text(self.source),
            request_id: text(self.correlation_id),
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    #[test]
    fn presets_are_whole_local_periods() {
        let now = at("2026-11-25T01:10:00Z");
        let kolkata = tz("Asia/Kolkata"); // 06:40 on the 25th there
        assert_eq!(preset_range(Preset::Today, kolkata, now), (at("2026-11-24T18:30:00Z"), at("2026-11-25T18:30:00Z")));
        assert_eq!(
            preset_range(Preset::Yesterday, kolkata, now),
            (at("2026-11-23T18:30:00Z"), at("2026-11-24T18:30:00Z"))
        );
        assert_eq!(
            preset_range(Preset::Last24h, kolkata, now),
            (at("2026-11-24T01:30:00Z"), at("2026-11-25T01:30:00Z")),
            "up to the end of the local hour 06:00–07:00"
        );
        assert_eq!(preset_range(Preset::Last7d, chrono_tz::UTC, now).0, at("2026-11-19T00:00:00Z"));
        assert_eq!(preset_range(Preset::Last30d, chrono_tz::UTC, now).0, at("2026-10-27T00:00:00Z"));
        let ny = tz("America/New_York"); // still the 24th there; November is EST, October EDT
        assert_eq!(preset_range(Preset::Today, ny, now).0, at("2026-11-24T05:00:00Z"));
        assert_eq!(preset_range(Preset::ThisMonth, ny, now), (at("2026-11-01T04:00:00Z"), at("2026-12-01T05:00:00Z")));
        assert_eq!(preset_range(Preset::LastMonth, ny, now), (at("2026-10-01T04:00:00Z"), at("2026-11-01T04:00:00Z")));
        let january = at("2027-01-15T12:00:00Z");
        assert_eq!(preset_range(Preset::LastMonth, chrono_tz::UTC, january).0, at("2026-12-01T00:00:00Z"));
        let december = at("2026-12-15T12:00:00Z");
        assert_eq!(preset_range(Preset::ThisMonth, chrono_tz::UTC, december).1, at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn a_midnight_in_a_dst_gap_is_the_end_of_the_gap() {
        // Santiago skipped 2026-09-06 00:00–01:00 (clocks went from -04 to -03 at midnight).
        let santiago = tz("America/Santiago");
        let date = chrono::NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(calendar::day_start(santiago, date), at("2026-09-06T04:00:00Z"));
        assert_eq!(preset_range(Preset::Today, santiago, at("2026-09-06T12:00:00Z")).0, at("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn the_coarsest_exact_table_is_read() {
        let recent = at("2026-01-01T00:00:00Z");
        let utc = chrono_tz::UTC;
        let (berlin, kolkata) = (tz("Europe/Berlin"), tz("Asia/Kolkata"));
        let (from, to) = (at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z"));
        assert_eq!(choose_source(Bucket::Day, utc, from, to, recent), Source::Day);
        assert_eq!(choose_source(Bucket::Month, utc, from, to, recent), Source::Day);
        assert_eq!(choose_source(Bucket::Hour, utc, from, to, recent), Source::Hour);
        assert_eq!(choose_source(Bucket::Minute, utc, from, to, recent), Source::Minute);
        // Berlin's days start at 23:00 or 22:00 UTC (DST on 29 March): whole hours.
        let (bf, bt) = (at("2026-02-28T23:00:00Z"), at("2026-03-31T22:00:00Z"));
        assert_eq!(choose_source(Bucket::Day, berlin, bf, bt, recent), Source::Hour);
        // Kolkata's start at 18:30 UTC: minutes while kept, else the raw rows.
        let (kf, kt) = (at("2026-02-28T18:30:00Z"), at("2026-03-31T18:30:00Z"));
        assert_eq!(choose_source(Bucket::Day, kolkata, kf, kt, recent), Source::Minute);
        assert_eq!(choose_source(Bucket::Day, kolkata, kf, kt, at("2026-03-15T00:00:00Z")), Source::Raw);
        // Range ends off the rollup grid.
        assert_eq!(choose_source(Bucket::Day, utc, at("2026-03-01T00:00:30Z"), to, recent), Source::Raw);
        assert_eq!(choose_source(Bucket::Day, utc, at("2026-03-01T00:10:00Z"), to, recent), Source::Minute);
        assert_eq!(choose_source(Bucket::Day, utc, at("2026-03-01T01:00:00Z"), to, recent), Source::Hour);
    }

    #[test]
    fn ranges_are_checked() {
        let now = at("2026-11-25T10:00:00Z");
        let q = |preset: Option<Preset>, from: Option<&str>, to: Option<&str>| UsageQuery {
            preset,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            ..UsageQuery::default()
        };
        let field = |r: ApiResult<(DateTime<Utc>, DateTime<Utc>)>| r.unwrap_err().field.unwrap();
        let utc = chrono_tz::UTC;
        assert_eq!(
            field(resolve_range(&q(Some(Preset::Today), Some("2026-01-01T00:00:00Z"), None), utc, now)),
            "preset"
        );
        assert_eq!(field(resolve_range(&q(None, None, Some("2026-01-01T00:00:00Z")), utc, now)), "from");
        assert_eq!(field(resolve_range(&q(None, Some("yesterday"), None), utc, now)), "from");
        assert_eq!(
            field(resolve_range(&q(None, Some("2026-01-02T00:00:00Z"), Some("2026-01-02T00:00:00Z")), utc, now)),
            "to"
        );
        assert_eq!(
            field(resolve_range(&q(None, Some("2024-01-01T00:00:00Z"), Some("2025-03-01T00:00:00Z")), utc, now)),
            "to"
        );
        assert_eq!(field(resolve_range(&q(None, Some("1969-12-31T00:00:00Z"), None), utc, now)), "from");
        let (from, to) = resolve_range(&q(None, Some("2026-11-25T01:00:00+01:00"), None), utc, now).unwrap();
        assert_eq!((from, to), (at("2026-11-25T00:00:00Z"), at("2026-11-25T10:01:00Z")));
        assert_eq!(resolve_range(&q(None, None, None), utc, now).unwrap().1, at("2026-11-25T11:00:00Z"));
    }

    #[test]
    fn group_by_is_a_set_of_known_dimensions() {
        assert_eq!(parse_group_by(None).unwrap(), vec![]);
        assert_eq!(parse_group_by(Some("model, user,model")).unwrap(), vec![Dimension::Model, Dimension::User]);
        assert_eq!(parse_group_by(Some("user,team")).unwrap_err().field.as_deref(), Some("group_by"));
    }

    #[test]
    fn cost_is_exact_decimal_usd() {
        assert_eq!(usd(0).to_string(), "0");
        assert_eq!(usd(1).to_string(), "0.000000001");
        assert_eq!(usd(1_500_000_000).to_string(), "1.5");
        assert_eq!(usd(u64::MAX).to_string(), "18446744073.709551615");
    }
}
