//! The `requests` table read row by row: one request by id, a user's latest requests, and when
//! keys were last used.

use std::collections::HashMap;

use ccp_schemas::ids::{RequestId, UserId};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::period::usd;
use super::sql::{bind, text, Arg};
use super::UsageStore;
use crate::api::usage::RequestDetail;
use crate::error::{ApiError, ApiResult};

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

impl UsageStore<'_> {
    /// One request through the proxy, by the request id the developer saw (`x-ccp-request-id`);
    /// `None` when there is no such row (yet).
    pub async fn request(&self, request_id: RequestId) -> ApiResult<Option<RequestDetail>> {
        let id = request_id.to_string();
        // The id is a ULID minted when the request arrived, and rows are sorted by time: look near
        // that time first, then everywhere (ids minted elsewhere, clocks far off).
        let minted = i64::try_from(request_id.ulid().timestamp_ms() / 1000).unwrap_or(0);
        let near = (minted - 86_400, minted + 7 * 86_400);
        let mut row = find_request(self.clickhouse, &id, Some(near)).await?;
        if row.is_none() {
            row = find_request(self.clickhouse, &id, None).await?;
        }
        Ok(row.map(RequestDbRow::into_detail))
    }

    /// A user's latest requests since `since`, newest first (only failed-over ones if
    /// `fallbacks_only`): at most `limit`.
    pub async fn recent_requests(
        &self,
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
        let rows: Vec<RequestDbRow> = bind(self.clickhouse.query(&sql), &args)
            .fetch_all()
            .await
            .map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
        Ok(rows.into_iter().map(RequestDbRow::into_detail).collect())
    }
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
