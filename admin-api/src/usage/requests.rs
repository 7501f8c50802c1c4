//! The `requests` table read row by row: one request by id, a user's latest requests, and when
//! keys were last used. Every read is bounded in time or by key.
//!
//! Rows are read whole, as the projector writes them ([`RequestRow`], `SELECT ?fields`), and
//! only where few rows qualify: by id, within the days around the time its id was minted, the
//! scan reads `request_id` alone until it finds the row (`PREWHERE`: ClickHouse does not move a
//! sort-key column there itself); a user's latest requests are found in `requests_by_user`
//! (ordered by user, key and time: only that user's rows in the range are read), then read whole
//! from `requests` by their sort key. Reading every column of all a user's rows in the range and
//! sorting them would be the slow part (ClickHouse 18.16 neither reads in key order nor defers
//! columns past a `LIMIT`). When keys were last used is one row per key in `key_last_used`.

use std::collections::HashMap;

use ccp_runtime::tables::RequestRow;
use ccp_schemas::ids::{RequestId, UserId};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::period::usd;
use super::sql::{bind, text, Arg};
use super::UsageStore;
use crate::api::usage::RequestDetail;
use crate::error::{ApiError, ApiResult};

/// A `requests` row as the API shows it (the Plan-limit columns are not part of it).
fn detail(r: RequestRow) -> RequestDetail {
    RequestDetail {
        request_id: r.request_id,
        occurred_at: r.occurred_at,
        user_id: text(r.user_id),
        key_id: text(r.key_id),
        key_prefix: text(r.key_prefix),
        endpoint: r.endpoint,
        provider: r.provider,
        fallback: r.fallback != 0,
        fallback_reason: text(r.fallback_reason),
        error_class: text(r.error_class),
        status: r.status,
        stream: r.stream != 0,
        incomplete: r.incomplete != 0,
        stop_reason: text(r.stop_reason),
        requested_model: text(r.requested_model),
        response_model: text(r.response_model),
        bedrock_model_id: text(r.bedrock_model_id),
        region: text(r.region),
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cache_read_tokens: r.cache_read_tokens,
        cache_creation_tokens: r.cache_creation_tokens,
        cost_usd: (r.unpriced == 0).then(|| usd(r.cost_nanos)),
        unpriced: r.unpriced != 0,
        priced_model: text(r.priced_model),
        usage_estimated: r.usage_estimated != 0,
        bedrock_resolution: text(r.bedrock_resolution),
        model_substituted: r.model_substituted != 0,
        pricing_version: r.pricing_version,
        latency_ms: r.latency_ms,
        ttfb_ms: r.ttfb_ms,
        session_id: text(r.session_id),
        client_version: text(r.client_version),
        replica: text(r.replica),
        event_id: r.event_id,
    }
}

impl UsageStore<'_> {
    /// One request through the proxy, by the request id the developer saw (`x-ccp-request-id`);
    /// `None` when there is no such row (yet).
    pub async fn request(&self, request_id: RequestId) -> ApiResult<Option<RequestDetail>> {
        let id = request_id.to_string();
        // The id is a ULID minted when the request arrived, and rows are sorted by time: look near
        // that time first, then within the wider window a clock that is off could put it in (a
        // request's row is written when it ends, after at most a stream's length).
        let minted = i64::try_from(request_id.ulid().timestamp_ms() / 1000).unwrap_or(0);
        let near = (minted - 86_400, minted + 7 * 86_400);
        let mut row = find_request(self.clickhouse, &id, near).await?;
        if row.is_none() {
            row = find_request(self.clickhouse, &id, (minted - WIDER_WINDOW_SECS, minted + WIDER_WINDOW_SECS)).await?;
        }
        Ok(row.map(detail))
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
        // The newest rows' sort keys first, from the user's own rows (`requests_by_user`), then
        // those rows whole, found by the sort key of `requests`.
        let sql = format!(
            "SELECT ?fields FROM requests WHERE (occurred_at, request_id) IN \
             (SELECT occurred_at, request_id FROM requests_by_user \
             WHERE user_id = ? AND occurred_at >= toDateTime(?){only} \
             ORDER BY occurred_at DESC, request_id DESC LIMIT ?) \
             AND occurred_at >= toDateTime(?) AND user_id = ? ORDER BY occurred_at DESC, request_id DESC LIMIT ?"
        );
        let user = Arg::Str(user_id.to_string());
        let since = Arg::Int(since.timestamp().max(0));
        let args = [user.clone(), since.clone(), Arg::Uint(limit), since, user, Arg::Uint(limit)];
        let rows: Vec<RequestRow> = bind(self.clickhouse.query(&sql), &args)
            .fetch_all()
            .await
            .map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
        Ok(rows.into_iter().map(detail).collect())
    }
}

/// How far from the time its id was minted a request is looked for at most (seconds): 35 days,
/// the request stream's default age limit, either way.
const WIDER_WINDOW_SECS: i64 = 35 * 86_400;

/// The request row with this id, looked for within `window` (unix seconds).
async fn find_request(clickhouse: &clickhouse::Client, id: &str, window: (i64, i64)) -> ApiResult<Option<RequestRow>> {
    let (start, end) = window;
    let args = [Arg::Str(id.to_owned()), Arg::Int(start.max(0)), Arg::Int(end.max(0))];
    let sql = "SELECT ?fields FROM requests PREWHERE request_id = ? \
               WHERE occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?) ORDER BY occurred_at DESC LIMIT 1";
    bind(clickhouse.query(sql), &args).fetch_optional().await.map_err(|e| ApiError::unavailable("ClickHouse", &e))
}

/// When each key was last used through the proxy (`max(occurred_at)` of its requests, kept per
/// key in `key_last_used`: one row per key, whatever the history). Keys never used are absent;
/// on any ClickHouse failure the map is empty (logged), since this only decorates key listings.
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
            .query(
                "SELECT key_id, max(last_used_at) AS last_at FROM key_last_used WHERE has(?, key_id) GROUP BY key_id",
            )
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
