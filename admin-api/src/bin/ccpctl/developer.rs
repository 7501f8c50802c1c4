//! `self`: a developer's own usage, budget and Plan limits (`GET /v1/self`), authenticated by
//! their access key alone — no admin login. The key is a secret, so it is never an argument: it
//! comes from stdin, else where Claude Code and `scripts/ccp-statusline` find it
//! (`CCP_ACCESS_KEY`, `x-ccp-access-key` in `ANTHROPIC_CUSTOM_HEADERS`, `ANTHROPIC_BASE_URL`'s
//! `/ak/<key>`), else a no-echo prompt.

use serde_json::Value;

use crate::cli::SelfArgs;
use crate::client::{CliError, CliResult, Client};
use crate::input;
use crate::output::{self, Out};

/// The access key in the environment Claude Code runs with, if any.
fn key_from_environment() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(key) = var("CCP_ACCESS_KEY") {
        return Some(key);
    }
    if let Some(headers) = var("ANTHROPIC_CUSTOM_HEADERS") {
        for line in headers.lines() {
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("x-ccp-access-key") {
                    return value.split_whitespace().next().map(str::to_owned);
                }
            }
        }
    }
    let base = var("ANTHROPIC_BASE_URL")?;
    let (_, rest) = base.split_once("/ak/")?;
    rest.split('/').next().map(str::to_owned).filter(|k| !k.is_empty())
}

fn access_key() -> CliResult<String> {
    let key = match input::piped_line("access key")? {
        Some(key) => key,
        None => match key_from_environment() {
            Some(key) => key,
            None if input::interactive() => input::secret("Your access key (ak_…, not echoed): ", "access key")?,
            None => {
                return Err(CliError::Usage(
                    "no access key: pipe it on stdin, or set CCP_ACCESS_KEY (or ANTHROPIC_BASE_URL/ANTHROPIC_CUSTOM_HEADERS as for Claude Code)".into(),
                ))
            }
        },
    };
    if !key.starts_with("ak_") {
        return Err(CliError::Usage("that is not a ClaudeCodeProxy access key (they start with ak_)".into()));
    }
    Ok(key)
}

/// Runs `self`.
pub async fn run(client: &Client, args: SelfArgs, out: Out) -> CliResult<()> {
    let key = access_key()?;
    let mut query = Vec::new();
    if let Some(tz) = args.tz {
        query.push(("tz", tz));
    }
    if let Some(n) = args.recent {
        query.push(("recent", n.to_string()));
    }
    let answer = match client.get_as_developer(&["v1", "self"], &query, &key).await {
        Ok(a) => a,
        // Not the admin's credentials: the hint to log in again would mislead.
        Err(CliError::Api(f)) if f.status == reqwest::StatusCode::UNAUTHORIZED => {
            return Err(CliError::Other(anyhow::anyhow!("{}", CliError::Api(f))))
        }
        Err(e) => return Err(e),
    };
    if out.json {
        return out.document(&answer.body);
    }
    render(&answer.body, out)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn money(v: &Value) -> String {
    if v.is_null() {
        "unknown".to_owned()
    } else {
        format!("${}", text(v))
    }
}

fn render(body: &Value, out: Out) -> CliResult<()> {
    let user = &body["user"];
    out.line(&format!("{} ({})", text(&user["name"]), text(&user["user_id"])))?;
    let totals = |report: &Value| {
        let t = &report["totals"];
        format!("{} requests, {}", text(&t["requests"]), money(&t["cost_usd"]))
    };
    let budget = &body["budget"];
    let limit = if budget["limit_usd"].is_null() {
        "no budget".to_owned()
    } else {
        format!(
            "budget {} ({} left, resets {})",
            money(&budget["limit_usd"]),
            money(&budget["remaining_usd"]),
            text(&budget["reset_at"])
        )
    };
    let team = &body["team_budget"];
    let team = if team.is_null() {
        "not in a team".to_owned()
    } else if team["limit_usd"].is_null() {
        format!("{}: {} spent this month, no team budget", text(&team["name"]), money(&team["spent_usd"]))
    } else {
        format!(
            "{}: {} of {} spent this month ({} left{})",
            text(&team["name"]),
            money(&team["spent_usd"]),
            money(&team["limit_usd"]),
            money(&team["remaining_usd"]),
            if team["exhausted"].as_bool() == Some(true) { "; exhausted: requests are refused" } else { "" }
        )
    };
    out.fields(&[
        ("today", format!("{} ({})", totals(&body["today"]), text(&body["tz"]))),
        ("this month", format!("{}; {limit}", totals(&body["this_month"]))),
        ("team", team),
        ("failovers", format!("{} this month (to Bedrock)", text(&body["failovers"]["this_month"]))),
        ("plan limit", plan_limit(&body["plan_limit"])),
    ])?;
    out.line("")?;
    let keys: Vec<Vec<String>> = body["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|k| {
            vec![
                text(&k["key_id"]),
                output::or_dash(k["name"].as_str()),
                format!("{}…", text(&k["key_prefix"])),
                text(&k["status"]),
                if k["bedrock_fallback"].as_bool() == Some(true) { "yes" } else { "no" }.to_owned(),
                if k["current"].as_bool() == Some(true) { "this one" } else { "" }.to_owned(),
            ]
        })
        .collect();
    out.table(&["KEY_ID", "NAME", "KEY", "STATUS", "FAILOVER", ""], &keys)?;
    let recent = body["recent_requests"].as_array().map(Vec::as_slice).unwrap_or_default();
    if recent.is_empty() {
        return Ok(());
    }
    out.line("")?;
    let rows: Vec<Vec<String>> = recent
        .iter()
        .map(|r| {
            vec![
                text(&r["occurred_at"]),
                text(&r["request_id"]),
                r["response_model"].as_str().or(r["requested_model"].as_str()).unwrap_or("–").to_owned(),
                text(&r["provider"]),
                text(&r["status"]),
                money(&r["cost_usd"]),
            ]
        })
        .collect();
    out.table(&["OCCURRED_AT", "REQUEST_ID", "MODEL", "PROVIDER", "STATUS", "COST"], &rows)
}

/// `allowed; 5h 42% (resets …), 7d 18% (resets …)`, or why there is none.
fn plan_limit(limit: &Value) -> String {
    let state = &limit["state"];
    if state.is_null() {
        return "none reported yet".to_owned();
    }
    let unified = &state["unified"];
    let mut parts = vec![unified["status"].as_str().unwrap_or("not a Plan (API limits)").to_owned()];
    for (name, label) in [("five_hour", "5h"), ("seven_day", "7d"), ("overage", "overage")] {
        let window = &unified[name];
        if let Some(used) = window["utilization"].as_f64() {
            let reset = window["reset"].as_str().map(|r| format!(" (resets {r})")).unwrap_or_default();
            parts.push(format!("{label} {:.0}%{reset}", used * 100.0));
        }
    }
    format!("{} (observed {})", parts.join(", "), text(&state["observed_at"]))
}
