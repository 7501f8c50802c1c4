//! Reports and operations: `usage`, `budget`, `request`, `audit`, `circuit`, `circuits`,
//! `pricing`. Answers are read as JSON values, not typed: `usage` and `audit` get their own
//! tables, the rest a generic view (scalars as lines, lists as tables), so fields the server adds
//! appear without a new ccpctl, and `--json` prints the answers as they are. Tables and views show
//! the names of the users and keys beside their ids (`user`, `key`: `OWNER/LABEL`).

use std::path::Path;

use serde_json::{json, Value};

use std::io::Write as _;

use ccp_admin_api::api::statement::{Statement, StatementTotals};
use ccp_admin_api::usage::statement_csv;

use crate::cli::{AuditArgs, StatementArgs, UsageArgs};
use crate::client::{Answer, CliError, CliResult, Client};
use crate::output::{self, Out};
use crate::resolve::{self, Names};

/// Field order of the generic view (the API's own order; JSON objects arrive sorted by name).
const ORDER: &[&str] = &[
    // budget
    "user_id",
    "user",
    "month",
    "time_zone",
    "limit_usd",
    "spent_usd",
    "remaining_usd",
    "exhausted",
    "reset_at",
    // circuit
    "key_id",
    "key",
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

/// The generic view of an answer about one user or key, with their names added (`user`, `key`)
/// beside `user_id` and `key_id`.
async fn show_named(client: &Client, answer: &Answer, out: Out) -> CliResult<()> {
    if out.json || !answer.body.is_object() {
        return show(answer, out);
    }
    let mut body = answer.body.clone();
    name_fields(client, std::slice::from_mut(&mut body)).await;
    output::generic(&out, &body, ORDER)
}

/// Adds `user` and `key` (names) to objects that have `user_id` or `key_id`.
async fn name_fields(client: &Client, items: &mut [Value]) {
    let id = |v: &Value, field: &str| v[field].as_str().map(str::to_owned);
    let user_ids: Vec<String> = items.iter().filter_map(|v| id(v, "user_id")).collect();
    let key_ids: Vec<String> = items.iter().filter_map(|v| id(v, "key_id")).collect();
    if user_ids.is_empty() && key_ids.is_empty() {
        return;
    }
    let names = Names::load(client, user_ids.iter().map(String::as_str), key_ids.iter().map(String::as_str)).await;
    for item in items.iter_mut() {
        if let (Some(user_id), Some(map)) = (id(item, "user_id"), item.as_object_mut()) {
            map.insert("user".into(), Value::String(names.user(&user_id)));
        }
        if let (Some(key_id), Some(map)) = (id(item, "key_id"), item.as_object_mut()) {
            map.insert("key".into(), Value::String(names.key(&key_id)));
        }
    }
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
    if let Some(user) = args.user.filter(|u| !u.is_empty()) {
        query.push(("user_id", resolve::user_id(client, &user).await?));
    }
    if let Some(key) = args.key.filter(|k| !k.is_empty()) {
        query.push(("key_id", resolve::key_id(client, &key).await?));
    }
    if let Some(team) = args.team.filter(|t| !t.is_empty()) {
        query.push(("team_id", crate::teams::team_id(client, &team).await?));
    }
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
            Some("team") => "team_id".to_owned(),
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
    // Users and keys get a name column beside their id.
    let ids_of = |field: &str| -> Vec<String> {
        if !groups.iter().any(|g| g == field) {
            return Vec::new();
        }
        rows.iter().filter_map(|r| r[field].as_str().map(str::to_owned)).collect()
    };
    let (user_ids, key_ids) = (ids_of("user_id"), ids_of("key_id"));
    let names = if user_ids.is_empty() && key_ids.is_empty() {
        Names::default()
    } else {
        Names::load(client, user_ids.iter().map(String::as_str), key_ids.iter().map(String::as_str)).await
    };
    let group_cells = |row: &Value| -> Vec<String> {
        let mut cells = Vec::new();
        for g in &groups {
            let value = &row[g.as_str()];
            cells.push(cell(value));
            match (g.as_str(), value.as_str()) {
                ("user_id", Some(id)) => cells.push(names.user(id)),
                ("key_id", Some(id)) => cells.push(names.key(id)),
                ("user_id" | "key_id", None) => cells.push("–".to_owned()),
                _ => {}
            }
        }
        cells
    };
    let line = |first: String, row: &Value, with_groups: bool| {
        let mut cells = vec![first];
        let groups = group_cells(row);
        if with_groups {
            cells.extend(groups);
        } else {
            cells.extend(groups.iter().map(|_| String::new()));
        }
        cells.extend(COUNTS.iter().map(|(field, _)| cell(&row[*field])));
        cells
    };
    let mut table: Vec<Vec<String>> = rows.iter().map(|r| line(cell(&r["bucket_start"]), r, true)).collect();
    table.push(line("total".to_owned(), &report["totals"], false));
    let group_headers: Vec<String> = groups
        .iter()
        .flat_map(|g| {
            let mut h = vec![g.to_uppercase()];
            match g.as_str() {
                "user_id" => h.push("USER".to_owned()),
                "key_id" => h.push("KEY".to_owned()),
                _ => {}
            }
            h
        })
        .collect();
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

/// `statement` → `GET /v1/statements`: the lines as a table (or CSV), then the sums per team and
/// overall, with what the amounts mean.
pub async fn statement(client: &Client, args: StatementArgs, out: Out) -> CliResult<()> {
    if args.csv && out.json {
        return Err(CliError::Usage("give --csv or --json, not both".to_owned()));
    }
    let mut query = Vec::new();
    push(&mut query, "month", args.month);
    if let Some(team) = args.team.filter(|t| !t.is_empty()) {
        query.push(("team_id", crate::teams::team_id(client, &team).await?));
    }
    let answer = client.get_query(&["v1", "statements"], &query).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let s: Statement = answer.parse()?;
    if args.csv {
        write!(std::io::stdout().lock(), "{}", statement_csv(&s))?;
        return Ok(());
    }
    let state = if s.complete { "" } else { ", month not over yet" };
    out.line(&format!("statement {} ({}{state})", s.month, s.time_zone))?;
    let team_cell = |id: &str, name: &str| if id.is_empty() { "(no team)".to_owned() } else { name.to_owned() };
    let rows: Vec<Vec<String>> = s
        .lines
        .iter()
        .map(|l| {
            vec![
                team_cell(&l.team_id, &l.team_name),
                if l.user_name.is_empty() { output::or_dash(Some(&l.user_id)) } else { l.user_name.clone() },
                l.provider.clone(),
                l.requests.to_string(),
                format!("${}", l.cost_usd),
                output::label(&l.cost_basis),
                output::label(&l.cost_status),
            ]
        })
        .collect();
    out.table(&["TEAM", "USER", "PROVIDER", "REQUESTS", "COST_USD", "BASIS", "STATUS"], &rows)?;
    out.line("")?;
    let sums = |name: String, t: &StatementTotals| {
        vec![
            name,
            format!("${}", t.organisation_spend_usd),
            format!("${}", t.plan_value_usd),
            format!("${}", t.cost_usd),
            t.requests.to_string(),
            t.estimated_requests.to_string(),
            t.unpriced_requests.to_string(),
        ]
    };
    let mut teams: Vec<Vec<String>> =
        s.teams.iter().map(|t| sums(team_cell(&t.team_id, &t.team_name), &t.totals)).collect();
    teams.push(sums("total".to_owned(), &s.totals));
    out.table(&["TEAM", "ORG_SPEND_USD", "PLAN_VALUE_USD", "COST_USD", "REQUESTS", "ESTIMATED", "UNPRICED"], &teams)?;
    out.line(
        "ORG_SPEND: Bedrock, paid by the organisation's AWS account. PLAN_VALUE: Anthropic, answered on the \
         developers' own plans or keys, valued at list price (not an invoice of the organisation's).",
    )?;
    if s.totals.unpriced_requests > 0 {
        out.line(&format!(
            "{} requests ({} tokens) were of models without a price: their cost is unknown and not in the amounts",
            s.totals.unpriced_requests, s.totals.unpriced_tokens
        ))?;
    }
    if s.totals.estimated_requests > 0 {
        out.line(&format!(
            "{} requests have estimated output tokens (streams that ended before the final count)",
            s.totals.estimated_requests
        ))?;
    }
    Ok(())
}

/// `budget USER` → `GET /v1/users/{id}/budget`.
pub async fn budget(client: &Client, user: &str, out: Out) -> CliResult<()> {
    let user_id = resolve::user_id(client, user).await?;
    show_named(client, &client.get(&["v1", "users", &user_id, "budget"]).await?, out).await
}

/// `request REQUEST_ID` → `GET /v1/requests/{id}`.
pub async fn request(client: &Client, request_id: &str, out: Out) -> CliResult<()> {
    show_named(client, &client.get(&["v1", "requests", request_id]).await?, out).await
}

/// `audit` → `GET /v1/audit`: newest first; `--json` has each entry's details.
pub async fn audit(client: &Client, args: AuditArgs, out: Out) -> CliResult<()> {
    let mut query = Vec::new();
    push(&mut query, "actor", args.actor);
    if let Some(target) = args.target.filter(|t| !t.is_empty()) {
        query.push(("target", resolve::audit_target(client, &target).await?));
    }
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
    let field = |e: &Value, name: &str| e[name].as_str().map(str::to_owned);
    let user_ids: Vec<String> = items
        .iter()
        .flat_map(|e| [field(e, "user_id"), field(e, "target_id").filter(|id| id.starts_with("usr_"))])
        .flatten()
        .collect();
    let key_ids: Vec<String> = items
        .iter()
        .flat_map(|e| [field(e, "key_id"), field(e, "target_id").filter(|id| id.starts_with("key_"))])
        .flatten()
        .collect();
    let names = Names::load(client, user_ids.iter().map(String::as_str), key_ids.iter().map(String::as_str)).await;
    let admins: Vec<(String, String)> =
        if items.iter().any(|e| e["target_id"].as_str().is_some_and(|t| t.starts_with("adm_"))) {
            let listed =
                client.get(&["v1", "admins"]).await.ok().and_then(|a| a.parse::<Vec<ccp_admin_api::api::Admin>>().ok());
            listed.unwrap_or_default().into_iter().map(|a| (a.admin_id, a.username)).collect()
        } else {
            Vec::new()
        };
    let target_name = |id: &str| -> Option<String> {
        let name = if id.starts_with("usr_") {
            names.user(id)
        } else if id.starts_with("key_") {
            names.key(id)
        } else {
            admins.iter().find(|(a, _)| a == id).map(|(_, n)| n.clone())?
        };
        (name != "?").then_some(name)
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let actor = e["actor_name"].as_str().or(e["actor_id"].as_str()).unwrap_or("–");
            let target = match (e["target_kind"].as_str(), e["target_id"].as_str()) {
                (Some(kind), Some(id)) => match target_name(id) {
                    Some(name) => format!("{kind} {id} ({name})"),
                    None => format!("{kind} {id}"),
                },
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

/// `circuit KEY [--reset]` → `GET /v1/keys/{id}/circuit` or `POST …/circuit/reset`.
pub async fn circuit(client: &Client, key: &str, reset: bool, out: Out) -> CliResult<()> {
    let key_id = resolve::key_id(client, key).await?;
    let answer = if reset {
        client.post(&["v1", "keys", &key_id, "circuit", "reset"], None).await?
    } else {
        client.get(&["v1", "keys", &key_id, "circuit"]).await?
    };
    show_named(client, &answer, out).await
}

/// `circuits` → `GET /v1/circuits`: the tripped circuits, with their keys' names.
pub async fn circuits(client: &Client, out: Out) -> CliResult<()> {
    let answer = client.get(&["v1", "circuits"]).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let Some(items) = answer.body.as_array() else { return show(&answer, out) };
    if items.is_empty() {
        return out.line("no open or half-open circuits: every key goes to Anthropic");
    }
    let mut items = items.clone();
    name_fields(client, &mut items).await;
    output::generic(&out, &Value::Array(items), ORDER)
}

/// `sign-in-failures` → `GET /v1/sign-in-failures`: who was guessed at, how often, from how many
/// clients.
pub async fn sign_in_failures(
    client: &Client,
    from: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
    out: Out,
) -> CliResult<()> {
    let mut query = Vec::new();
    query.extend(from.map(|v| ("from", v)));
    query.extend(kind.map(|v| ("kind", v)));
    query.extend(limit.map(|v| ("limit", v.to_string())));
    let answer = client.get_query(&["v1", "sign-in-failures"], &query).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let Some(records) = answer.body["records"].as_array() else { return show(&answer, out) };
    if records.is_empty() {
        return out.line("no failed sign-ins recorded in that period");
    }
    output::generic(&out, &Value::Array(records.clone()), ORDER)
}

/// `pricing` → `GET /v1/pricing`.
pub async fn pricing(client: &Client, out: Out) -> CliResult<()> {
    show(&client.get(&["v1", "pricing"]).await?, out)
}

/// `pricing set` → `PUT /v1/pricing`: the whole list, from `--price` entries or a JSON file.
pub async fn set_pricing(client: &Client, prices: &[String], file: Option<&Path>, out: Out) -> CliResult<()> {
    let models = match file {
        Some(path) => price_file(path)?,
        None => prices.iter().map(|p| price_entry(p)).collect::<CliResult<Vec<Value>>>()?,
    };
    if models.is_empty() {
        return Err(CliError::Usage("no prices: give --price MODEL=PRICE (repeatable) or --file".into()));
    }
    show(&client.put(&["v1", "pricing"], &json!({ "models": models }), None).await?, out)
}

/// `MODEL=[PROVIDER[@REGION]:]IN/OUT/CACHE_WRITE/CACHE_READ`.
fn price_entry(spec: &str) -> CliResult<Value> {
    let Some((model, price)) = spec.split_once('=').filter(|(m, p)| !m.trim().is_empty() && !p.is_empty()) else {
        return Err(CliError::Usage(format!(
            "--price `{spec}`: expected MODEL=[PROVIDER[@REGION]:]INPUT/OUTPUT/CACHE_WRITE/CACHE_READ, \
             e.g. claude-sonnet-4-5=3/15/3.75/0.30"
        )));
    };
    let mut entry = crate::models::parse_price(price)?;
    entry["model"] = json!(model.trim());
    Ok(entry)
}

/// The entries of a price list file (`-`: stdin): `{"models": […]}` (what `pricing --json`
/// prints) or a bare array.
fn price_file(path: &Path) -> CliResult<Vec<Value>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read --file {}: {e}", path.display())))?
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--file {} is not JSON: {e}", path.display())))?;
    let models = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("models") {
            Some(Value::Array(items)) => items,
            _ => return Err(CliError::Usage(format!("--file {}: expected {{\"models\": […]}}", path.display()))),
        },
        _ => return Err(CliError::Usage(format!("--file {}: expected a list of prices", path.display()))),
    };
    Ok(models)
}
