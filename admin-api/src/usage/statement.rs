//! The finance statement: a month in the budget time zone, per team (at request time), user and
//! provider, from the same usage query as `GET /v1/usage` (so its totals are the usage API's, to
//! the nano-dollar), with each amount's meaning (organisation spend on Bedrock, plan value on
//! Anthropic) and exactness (estimated, partly unpriced). Names are today's, from the admin API's
//! view; a deleted team's name from ClickHouse's `teams` table. Also its CSV form.

use std::collections::HashMap;

use ccp_schemas::calendar::Month;
use ccp_schemas::events::label;
use ccp_schemas::ids::TeamId;
use chrono::Utc;

use super::period::{local, usd};
use super::sql::{bind, read_usage, Arg, Filters, Question, Totals, UsageDbRow};
use super::UsageStore;
use crate::api::statement::{CostBasis, CostStatus, Statement, StatementLine, StatementTeam, StatementTotals};
use crate::api::usage::{Bucket, Dimension};
use crate::error::{ApiError, ApiResult};

/// Today's names of teams and users (`user_id` → name and e-mail), from the admin API's view.
#[derive(Debug, Default)]
pub struct Names {
    /// `team_…` → name.
    pub teams: HashMap<String, String>,
    /// `usr_…` → (name, e-mail or `""`).
    pub users: HashMap<String, (String, String)>,
}

/// `YYYY-MM` → the month (400 naming `month` otherwise).
pub(super) fn parse_month(value: &str) -> ApiResult<Month> {
    let bad = || {
        let shown: String = value.chars().take(20).collect();
        ApiError::invalid("month", format!("`{shown}` is not a month like 2026-11 (YYYY-MM)"))
    };
    let (y, m) = value.trim().split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (year, month) = (y.parse::<i32>().map_err(|_| bad())?, m.parse::<u32>().map_err(|_| bad())?);
    if !(1970..2100).contains(&year) {
        return Err(ApiError::invalid("month", "must be between 1970 and 2099"));
    }
    Month::new(year, month).ok_or_else(bad)
}

impl UsageStore<'_> {
    /// The statement of `month` (`YYYY-MM`; default the last complete month) in the budget time
    /// zone, of one team or of everyone.
    pub async fn statement(&self, month: Option<&str>, team_id: Option<TeamId>, names: &Names) -> ApiResult<Statement> {
        let tz = self.budget_tz()?;
        let now = Utc::now();
        let month = match month {
            Some(m) => parse_month(m)?,
            None => Month::of(now, tz).previous(),
        };
        let (from, to) = (month.start(tz), month.end(tz));
        if from > now {
            return Err(ApiError::invalid("month", format!("{month} has not started yet")));
        }
        let filters = Filters { team_id: team_id.map(|t| t.to_string()), ..Filters::default() };
        let group_by = [Dimension::Team, Dimension::User, Dimension::Provider];
        let question = Question { bucket: Bucket::Month, tz, from, to, group_by: &group_by, filters: &filters };
        let rows = read_usage(self.clickhouse, &question, self.minutes_kept_since(now))
            .await
            .map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
        let gone = self.deleted_team_names(&rows, names).await?;
        let team_name = |id: &str| names.teams.get(id).or_else(|| gone.get(id)).cloned().unwrap_or_default();
        let mut pairs: Vec<(StatementLine, &UsageDbRow)> =
            rows.iter().map(|r| (line(r, team_name(&r.g_team), names), r)).collect();
        pairs.sort_by_cached_key(|(l, _)| {
            (
                l.team_name.to_lowercase(),
                l.team_id.clone(),
                l.user_name.to_lowercase(),
                l.user_id.clone(),
                l.provider.clone(),
            )
        });
        let mut teams: Vec<(String, Sums)> = Vec::new();
        let mut all = Sums::default();
        for (l, row) in &pairs {
            match teams.last_mut() {
                Some((id, sums)) if *id == l.team_id => sums.add(row),
                _ => {
                    let mut sums = Sums::default();
                    sums.add(row);
                    teams.push((l.team_id.clone(), sums));
                }
            }
            all.add(row);
        }
        let teams = teams
            .into_iter()
            .map(|(id, sums)| StatementTeam { team_name: team_name(&id), team_id: id, totals: sums.totals() })
            .collect();
        let lines = pairs.into_iter().map(|(l, _)| l).collect();
        Ok(Statement {
            month: month.to_string(),
            time_zone: tz.name().to_owned(),
            from: local(from.timestamp(), tz),
            to: local(to.timestamp(), tz),
            complete: to <= now,
            team_id: team_id.map(|t| t.to_string()),
            lines,
            teams,
            totals: all.totals(),
        })
    }

    /// Names of the teams in `rows` that the view no longer has (deleted), from `teams`.
    async fn deleted_team_names(&self, rows: &[UsageDbRow], names: &Names) -> ApiResult<HashMap<String, String>> {
        let mut missing: Vec<&str> =
            rows.iter().map(|r| r.g_team.as_str()).filter(|t| !t.is_empty() && !names.teams.contains_key(*t)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(HashMap::new());
        }
        let marks = vec!["?"; missing.len()].join(", ");
        let sql =
            format!("SELECT team_id, argMax(name, stream_seq) FROM teams WHERE team_id IN ({marks}) GROUP BY team_id");
        let args: Vec<Arg> = missing.iter().map(|t| Arg::Str((*t).to_owned())).collect();
        let found: Vec<(String, String)> = bind(self.clickhouse.query(&sql), &args)
            .fetch_all()
            .await
            .map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
        Ok(found.into_iter().collect())
    }
}

/// What a provider's amounts are.
fn basis(provider: &str) -> CostBasis {
    match provider {
        "bedrock" => CostBasis::OrganisationSpend,
        "anthropic" => CostBasis::PlanValue,
        _ => CostBasis::None,
    }
}

/// One row of the usage query (by team, user and provider) as a statement line.
fn line(r: &UsageDbRow, team_name: String, names: &Names) -> StatementLine {
    let (user_name, user_email) = names.users.get(&r.g_user).cloned().unwrap_or_default();
    let c = Totals::from_row(r).counts();
    StatementLine {
        team_id: r.g_team.clone(),
        team_name,
        user_id: r.g_user.clone(),
        user_name,
        user_email,
        provider: r.g_provider.clone(),
        cost_basis: basis(&r.g_provider),
        cost_status: CostStatus::of(c.unpriced_requests, c.estimated_requests),
        requests: c.requests,
        fallbacks: c.fallbacks,
        input_tokens: c.input_tokens,
        output_tokens: c.output_tokens,
        cache_read_tokens: c.cache_read_tokens,
        cache_creation_tokens: c.cache_creation_tokens,
        cost_usd: c.cost_usd,
        estimated_requests: c.estimated_requests,
        unpriced_requests: c.unpriced_requests,
        unpriced_tokens: c.unpriced_tokens,
    }
}

/// Sums of some rows, in nano-dollars until shown.
#[derive(Debug, Default)]
struct Sums {
    all: Totals,
    bedrock_nanos: u64,
    anthropic_nanos: u64,
}

impl Sums {
    fn add(&mut self, r: &UsageDbRow) {
        self.all.add(r);
        match basis(&r.g_provider) {
            CostBasis::OrganisationSpend => self.bedrock_nanos = self.bedrock_nanos.saturating_add(r.n_cost),
            CostBasis::PlanValue => self.anthropic_nanos = self.anthropic_nanos.saturating_add(r.n_cost),
            CostBasis::None => {}
        }
    }

    fn totals(&self) -> StatementTotals {
        let c = self.all.counts();
        StatementTotals {
            organisation_spend_usd: usd(self.bedrock_nanos),
            plan_value_usd: usd(self.anthropic_nanos),
            cost_usd: c.cost_usd,
            cost_status: CostStatus::of(c.unpriced_requests, c.estimated_requests),
            requests: c.requests,
            estimated_requests: c.estimated_requests,
            unpriced_requests: c.unpriced_requests,
            unpriced_tokens: c.unpriced_tokens,
        }
    }
}

/// The CSV header of [`csv`].
const CSV_HEADER: &[&str] = &[
    "month",
    "time_zone",
    "team_id",
    "team_name",
    "user_id",
    "user_name",
    "user_email",
    "provider",
    "cost_basis",
    "cost_status",
    "requests",
    "fallbacks",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "estimated_requests",
    "unpriced_requests",
    "unpriced_tokens",
];

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break; text a spreadsheet
/// would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`.
fn field(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The statement's lines as CSV (a header line, then one line per team, user and provider;
/// CRLF line ends).
pub fn csv(s: &Statement) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for l in &s.lines {
        let cells: [String; 20] = [
            s.month.clone(),
            s.time_zone.clone(),
            l.team_id.clone(),
            l.team_name.clone(),
            l.user_id.clone(),
            l.user_name.clone(),
            l.user_email.clone(),
            l.provider.clone(),
            label(&l.cost_basis).to_owned(),
            label(&l.cost_status).to_owned(),
            l.requests.to_string(),
            l.fallbacks.to_string(),
            l.input_tokens.to_string(),
            l.output_tokens.to_string(),
            l.cache_read_tokens.to_string(),
            l.cache_creation_tokens.to_string(),
            l.cost_usd.to_string(),
            l.estimated_requests.to_string(),
            l.unpriced_requests.to_string(),
            l.unpriced_tokens.to_string(),
        ];
        let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn months_parse_strictly() {
        assert_eq!(parse_month("2026-11").unwrap().to_string(), "2026-11");
        for bad in
            ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-11-01", "abcd-ef", "1969-12", "2026-+1", "+026-11"]
        {
            assert_eq!(parse_month(bad).unwrap_err().field.as_deref(), Some("month"), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("Platform"), "Platform");
        assert_eq!(field("Ops, EU"), "\"Ops, EU\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(field("a\nb"), "\"a\nb\"");
    }

    #[test]
    fn unpriced_outranks_estimated() {
        assert_eq!(CostStatus::of(0, 0), CostStatus::Exact);
        assert_eq!(CostStatus::of(0, 3), CostStatus::Estimated);
        assert_eq!(CostStatus::of(1, 3), CostStatus::PartlyUnpriced);
    }
}
