//! The `audit_log` table: every admin command and login, filtered and paged.

use ccp_runtime::tables::AuditRow;

use super::checks::{check_text_param, parse_time};
use super::sql::{bind, text, Arg};
use super::UsageStore;
use crate::api::usage::{AuditEntry, AuditQuery};
use crate::api::Page;
use crate::error::{ApiError, ApiResult};
use crate::routes::MAX_OFFSET;

/// Largest audit page.
pub const MAX_AUDIT_LIMIT: u64 = 500;

/// An `audit_log` row as the API shows it (`details` parsed back into JSON).
fn entry(r: AuditRow) -> AuditEntry {
    let details = match serde_json::from_str::<serde_json::Value>(&r.details) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(event_id = %r.event_id, error = %e, "audit details are not JSON");
            serde_json::Value::String(r.details)
        }
    };
    AuditEntry {
        event_id: r.event_id,
        occurred_at: r.occurred_at,
        event_type: r.event_type,
        actor_kind: r.actor_kind,
        actor_id: text(r.actor_id),
        actor_name: text(r.actor_name),
        target_kind: r.target_kind,
        target_id: text(r.target_id),
        user_id: text(r.user_id),
        key_id: text(r.key_id),
        source: text(r.source),
        request_id: text(r.correlation_id),
        details,
    }
}

impl UsageStore<'_> {
    /// A page of the audit log, newest first (400 naming the parameter at fault).
    pub async fn audit(&self, q: &AuditQuery) -> ApiResult<Page<AuditEntry>> {
        let limit = q.limit.unwrap_or(50);
        if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
            return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_AUDIT_LIMIT}")));
        }
        let offset = q.offset.unwrap_or(0);
        if offset > MAX_OFFSET as u64 {
            return Err(ApiError::invalid("offset", format!("must be at most {MAX_OFFSET}")));
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
            if t.is_empty()
                || t.len() > 64
                || !t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
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
        let total: u64 = bind(self.clickhouse.query(&format!("SELECT count() FROM audit_log {filter}")), &args)
            .fetch_one()
            .await
            .map_err(unavailable)?;
        let mut page_args = args;
        page_args.extend([Arg::Uint(offset), Arg::Uint(limit)]);
        let rows: Vec<AuditRow> = bind(
            self.clickhouse.query(&format!(
                "SELECT ?fields FROM audit_log {filter} ORDER BY occurred_at DESC, event_id DESC LIMIT ?, ?"
            )),
            &page_args,
        )
        .fetch_all()
        .await
        .map_err(unavailable)?;
        Ok(Page {
            items: rows.into_iter().map(entry).collect(),
            total: usize::try_from(total).unwrap_or(usize::MAX),
            offset: usize::try_from(offset).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }
}
