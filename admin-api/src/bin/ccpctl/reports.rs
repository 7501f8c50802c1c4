//! Read-only reports: `usage`, `budget`, `request`, `audit`, `circuit`, `pricing`. They are read
//! as JSON values, not typed: `usage` and `audit` get their own tables, the rest a generic view
//! (scalars as lines, lists as tables), so fields the server adds appear without a new ccpctl,
//! and `--json` prints the answers as they are.

use serde_json::Value;

use crate::cli::{AuditArgs, UsageArgs};
use crate::client::{Answer, CliResult, Client};
use crate::output::{self, Out};

/// Field order of the generic view (the API's own order; JSON objects arrive sorted by name).
const ORDER: &[&str] = &[
    // budget
    "user_id",
    "month",
    "time_zone",
    "limit_usd",
    "spent_usd",
    "remaining_usd",
    "exhausted",
    "reset_at",
    // circuit
    "key_id",
    "state",
    "since",
    "reason",
    "failures",
    "retry_at",
    "cause",
    // pricing
    "version",
    "effective_from",
    "model",
    "provider",
    "region",
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_per_mtok",
    "cache_read_per_mtok",
    // request
    "request_id",
    "occurred_at",
    "key_prefix",
    "endpoint",
    "status",
    "fallback",
    "fallback_reason",
    "error_class",
    "stream",
    "incomplete",
    "stop_reason",
    "requested_model",
    "response_model",
    "bedrock_model_id",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "unpriced",
    "priced_model",
    "usage_estimated",
    "bedrock_resolution",
    "model_substituted",
    "pricing_version",
    "latency_ms",
    "ttfb_ms",
];

fn show(answer: &Answer, out: Out) -> CliResult<()> {
    if out.json {
        return out.document(&answer.body);
    }
    if answer.body.is_null() {
        return out.line("done");
    }
    output::generic(&out, &answer.body, ORDER)
}

fn push(query: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        query.push((name, v));
    }
}

/// `usage` → `GET /v1/usage`: one row per bucket and group, then the totals.
pub async fn usage(client: &Client, args: UsageArgs, out: Out) -> CliResult<()> {
    let mut query = Vec::new();
    push(&mut query, "preset", args.preset);
    push(&mut query, "from", args.from);
    push(&mut query, "to", args.to);
    push(&mut query, "bucket", args.bucket);
    push(&mut query, "group_by", args.group_by.map(|g| g.replace(' ', "")));
    push(&mut query, "user_id", args.user);
    push(&mut query, "key_id", args.key);
    push(&mut query, "provider", args.provider);
    push(&mut query, "model", args.model);
    push(&mut query, "tz", args.tz);
    let answer = client.get_query(&["v1", "usage"], &query).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let report = &answer.body;
    let (Some(rows), Some(group_by)) = (report["rows"].as_array(), report["group_by"].as_array()) else {
        return output::generic(&out, report, ORDER);
    };
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let grouping = if group_by.is_empty() {
        String::new()
    } else {
        format!(", by {}", group_by.iter().map(text).collect::<Vec<_>>().join(", "))
    };
    out.line(&format!(
        "usage {} – {} ({}, {} buckets{grouping})",
        text(&report["from"]),
        text(&report["to"]),
        text(&report["tz"]),
        text(&report["bucket"])
    ))?;
    // A dimension is named `user` in `group_by` and `user_id` in the rows.
    let groups: Vec<String> = group_by
        .iter()
        .map(|d| match d.as_str() {
            Some("user") => "user_id".to_owned(),
            Some("key") => "key_id".to_owned(),
            _ => text(d),
        })
        .collect();
    const COUNTS: [(&str, &str); 9] = [
        ("requests", "REQUESTS"),
        ("errors", "ERRORS"),
        ("fallbacks", "FALLBACKS"),
        ("input_tokens", "INPUT"),
        ("output_tokens", "OUTPUT"),
        ("cache_read_tokens", "CACHE_READ"),
        ("cache_creation_tokens", "CACHE_WRITE"),
        ("cost_usd", "COST_USD"),
        ("unpriced_requests", "UNPRICED"),
    ];
    let cell = |v: &Value| if v.is_null() { "–".to_owned() } else { text(v) };
    let line = |first: String, row: &Value, with_groups: bool| {
        let mut cells = vec![first];
        cells.extend(groups.iter().map(|g| if with_groups { cell(&row[g.as_str()]) } else { String::new() }));
        cells.extend(COUNTS.iter().map(|(field, _)| cell(&row[*field])));
        cells
    };
    let mut table: Vec<Vec<String>> = rows.iter().map(|r| line(cell(&r["bucket_start"]), r, true)).collect();
    table.push(line("total".to_owned(), &report["totals"], false));
    let group_headers: Vec<String> = groups.iter().map(|g| g.to_uppercase()).collect();
    let mut headers = vec!["BUCKET"];
    headers.extend(group_headers.iter().map(String::as_str));
    headers.extend(COUNTS.iter().map(|(_, h)| *h));
    out.table(&headers, &table)?;
    let totals = &report["totals"];
    let unpriced = totals["unpriced_requests"].as_u64().unwrap_or(0);
    if unpriced > 0 {
        out.line(&format!(
            "{unpriced} requests ({} tokens) were of models without a price: their cost is unknown and not in COST_USD \
             (ccpctl models list shows which; set a price with ccpctl models set)",
            totals["unpriced_tokens"].as_u64().unwrap_or(0)
        ))?;
    }
    let estimated = totals["estimated_requests"].as_u64().unwrap_or(0);
    if estimated > 0 {
        out.line(&format!(
            "{estimated} requests have estimated output tokens (streams that ended before the final count)"
        ))?;
    }
    Ok(())
}

/// `budget USER_ID` → `GET /v1/users/{id}/budget`.
pub async fn budget(client: &Client, user_id: &str, out: Out) -> CliResult<()> {
    show(&client.get(&["v1", "users", user_id, "budget"]).await?, out)
}

/// `request REQUEST_ID` → `GET /v1/requests/{id}`.
pub async fn request(client: &Client, request_id: &str, out: Out) -> CliResult<()> {
    show(&client.get(&["v1", "requests", request_id]).await?, out)
}

/// `audit` → `GET /v1/audit`: newest first; `--json` has each entry's details.
pub async fn audit(client: &Client, args: AuditArgs, out: Out) -> CliResult<()> {
    let mut query = Vec::new();
    push(&mut query, "actor", args.actor);
    push(&mut query, "target", args.target);
    push(&mut query, "type", args.kind);
    push(&mut query, "from", args.from);
    push(&mut query, "to", args.to);
    push(&mut query, "limit", args.limit.map(|l| l.to_string()));
    push(&mut query, "offset", args.offset.map(|o| o.to_string()));
    let answer = client.get_query(&["v1", "audit"], &query).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let page = &answer.body;
    let Some(items) = page["items"].as_array() else {
        return output::generic(&out, page, ORDER);
    };
    if items.is_empty() {
        return out.line("no audit entries");
    }
    let s = |v: &Value| v.as_str().unwrap_or("–").to_owned();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let actor = e["actor_name"].as_str().or(e["actor_id"].as_str()).unwrap_or("–");
            let target = match (e["target_kind"].as_str(), e["target_id"].as_str()) {
                (Some(kind), Some(id)) => format!("{kind} {id}"),
                (Some(kind), None) => kind.to_owned(),
                _ => "–".to_owned(),
            };
            vec![
                s(&e["occurred_at"]),
                s(&e["event_type"]),
                format!("{} {actor}", s(&e["actor_kind"])),
                target,
                s(&e["request_id"]),
            ]
        })
        .collect();
    out.table(&["OCCURRED_AT", "TYPE", "ACTOR", "TARGET", "REQUEST_ID"], &rows)?;
    let (offset, total) = (page["offset"].as_u64().unwrap_or(0), page["total"].as_u64().unwrap_or(0));
    let shown_to = offset + items.len() as u64;
    if shown_to < total {
        out.line(&format!("entries {}–{shown_to} of {total} (--offset {shown_to} for more)", offset + 1))?;
    }
    Ok(())
}

/// `circuit KEY_ID [--reset]` → `GET /v1/keys/{id}/circuit` or `POST …/circuit/reset`.
pub async fn circuit(client: &Client, key_id: &str, reset: bool, out: Out) -> CliResult<()> {
    let answer = if reset {
        client.post(&["v1", "keys", key_id, "circuit", "reset"], None).await?
    } else {
        client.get(&["v1", "keys", key_id, "circuit"]).await?
    };
    show(&answer, out)
}

/// `pricing` → `GET /v1/pricing`.
pub async fn pricing(client: &Client, out: Out) -> CliResult<()> {
    show(&client.get(&["v1", "pricing"]).await?, out)
}
