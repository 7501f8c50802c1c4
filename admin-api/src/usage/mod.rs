//! The usage store: read-only queries over the projector's ClickHouse tables — usage over time,
//! a user's budget this month, one request by id, a user's latest requests, the audit log, and
//! when keys were last used. The admin routes (`routes::queries`, `routes::keys`) and developer
//! self-service (`routes::self_service`) all read through it, so their figures agree by
//! construction. Its answers are the API's own types ([`crate::api::usage`]).
//!
//! Every client value reaches SQL as a bound literal (`?`), and only after it was checked here:
//! ids parse as ids, time zones are IANA names. Every query over request rows is bounded in time
//! (a range, a window around a request id's time) or by key (`key_last_used`). Usage of one user
//! or key is read from their own rows (`requests_by_user`, ordered by user, key and time); other
//! usage from the coarsest table that still answers exactly — `usage_day`, `usage_hour`, `usage_minute`
//! (while kept), else the raw `requests`: the range's ends and every bucket boundary in the time
//! zone must fall on that table's (UTC) buckets, so a rollup row is never split between two
//! answer buckets or cut by the range (a day in `Asia/Kolkata` starts at 18:30 UTC, inside an
//! hour row).
//!
//! - `checks`: query parameters checked (time zone, range, grouping, filters);
//! - `period`: presets as whole local periods (with [`ccp_schemas::calendar`]), instants shown
//!   in a time zone, nano-dollars as USD;
//! - `source`: which table answers a question exactly (its grid against the buckets' boundaries);
//! - `sql`: the usage query, built with bound arguments, its rows and their sums;
//! - `statement`: the finance statement of a month (per team, user and provider) and its CSV;
//! - `requests`, `audit`: the queries over the `requests` and `audit_log` rows and what the API
//!   shows of them (the row types are in [`ccp_runtime::tables`], shared with the projector);
//! - `testing` (unit tests only): instants and time zones written as text.

mod audit;
mod checks;
mod period;
mod requests;
mod source;
mod sql;
mod statement;
#[cfg(test)]
mod testing;

use ccp_runtime::config::Settings;
use ccp_schemas::calendar::Month;
use ccp_schemas::ids::{AccessKeyId, TeamId, UserId};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use self::checks::{check_model, parse_group_by, parse_tz, resolve_range};
use self::period::{local, usd};
use self::sql::{read_usage, Filters, Question, Totals};
use crate::api::usage::{
    Bucket, Budget, BudgetMonth, Dimension, ProviderFilter, TeamBudget, UsageQuery, UsageReport, UsageRow,
};
use crate::error::{ApiError, ApiResult};
use crate::routes::parse_id;

pub use self::audit::MAX_AUDIT_LIMIT;
pub use self::checks::{MAX_MINUTE_RANGE_DAYS, MAX_RANGE_DAYS};
pub use self::requests::last_used;
pub use self::statement::{csv as statement_csv, Names};

/// The usage store: the projector's ClickHouse tables, read in the deployment's budget time zone
/// and with its minute-rollup retention.
#[derive(Clone, Copy)]
pub struct UsageStore<'a> {
    clickhouse: &'a clickhouse::Client,
    settings: &'a Settings,
}

impl<'a> UsageStore<'a> {
    /// The store over `clickhouse`, configured by `settings` (`budgets`, `projector`).
    pub fn new(clickhouse: &'a clickhouse::Client, settings: &'a Settings) -> Self {
        Self { clickhouse, settings }
    }

    /// Usage and cost over time, bucketed in a time zone, optionally grouped and filtered
    /// (`GET /v1/usage`; 400 naming the parameter at fault).
    pub async fn report(&self, q: &UsageQuery) -> ApiResult<UsageReport> {
        let tz = match q.tz.as_deref() {
            Some(name) => parse_tz(name)?,
            None => self.budget_tz()?,
        };
        let now = Utc::now();
        let (from, to) = resolve_range(q, tz, now)?;
        let span = to - from;
        let bucket = match q.bucket {
            Some(Bucket::Minute) if span > Duration::days(MAX_MINUTE_RANGE_DAYS) => {
                return Err(ApiError::invalid(
                    "bucket",
                    format!(
                        "`minute` buckets need a range of at most {MAX_MINUTE_RANGE_DAYS} days; use `hour` or longer"
                    ),
                ));
            }
            Some(b) => b,
            None if span <= Duration::days(MAX_MINUTE_RANGE_DAYS) => Bucket::Hour,
            None => Bucket::Day,
        };
        let group_by = parse_group_by(q.group_by.as_deref())?;
        let filters = Filters {
            user_id: q.user_id.as_deref().map(|v| parse_id::<UserId>("user_id", v)).transpose()?.map(|u| u.to_string()),
            key_id: q
                .key_id
                .as_deref()
                .map(|v| parse_id::<AccessKeyId>("key_id", v))
                .transpose()?
                .map(|k| k.to_string()),
            team_id: q.team_id.as_deref().map(|v| parse_id::<TeamId>("team_id", v)).transpose()?.map(|t| t.to_string()),
            provider: q.provider.map(|p| match p {
                ProviderFilter::Anthropic => "anthropic".to_owned(),
                ProviderFilter::Bedrock => "bedrock".to_owned(),
            }),
            model: q.model.as_deref().map(check_model).transpose()?,
        };
        let question = Question { bucket, tz, from, to, group_by: &group_by, filters: &filters };
        let rows = read_usage(self.clickhouse, &question, self.minutes_kept_since(now)).await.map_err(|e| {
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
                    team_id: group_by.contains(&Dimension::Team).then(|| r.g_team.clone()),
                    usage: Totals::from_row(&r).counts(),
                }
            })
            .collect();
        Ok(UsageReport {
            from: local(from.timestamp(), tz),
            to: local(to.timestamp(), tz),
            tz: tz.name().to_owned(),
            bucket,
            group_by,
            rows,
            totals: totals.counts(),
        })
    }

    /// A user's budget status this month (in the budget time zone), given their monthly limit.
    pub async fn budget(&self, user_id: UserId, limit: Option<Decimal>) -> ApiResult<Budget> {
        let filters = Filters { user_id: Some(user_id.to_string()), ..Filters::default() };
        Ok(Budget { user_id: user_id.to_string(), month: self.budget_month(&filters, limit).await? })
    }

    /// A team's budget status this month: the spend of the requests made in the team (whoever is
    /// in it now), given the team's monthly limit.
    pub async fn team_budget(&self, team_id: TeamId, name: &str, limit: Option<Decimal>) -> ApiResult<TeamBudget> {
        let filters = Filters { team_id: Some(team_id.to_string()), ..Filters::default() };
        Ok(TeamBudget {
            team_id: team_id.to_string(),
            name: name.to_owned(),
            month: self.budget_month(&filters, limit).await?,
        })
    }

    /// The spend of `filters` this month in the budget time zone, against `limit`.
    async fn budget_month(&self, filters: &Filters, limit: Option<Decimal>) -> ApiResult<BudgetMonth> {
        let tz = self.budget_tz()?;
        let now = Utc::now();
        let month = Month::of(now, tz);
        let (from, to) = (month.start(tz), month.end(tz));
        let question = Question { bucket: Bucket::Month, tz, from, to, group_by: &[], filters };
        let rows = read_usage(self.clickhouse, &question, self.minutes_kept_since(now))
            .await
            .map_err(|e| ApiError::unavailable("ClickHouse", &e))?;
        let spent = usd(rows.iter().map(|r| r.n_cost).sum());
        Ok(BudgetMonth {
            month: month.to_string(),
            time_zone: tz.name().to_owned(),
            limit_usd: limit,
            spent_usd: spent,
            remaining_usd: limit.map(|l| (l - spent).max(Decimal::ZERO).normalize()),
            reset_at: local(to.timestamp(), tz),
            exhausted: limit.is_some_and(|l| spent >= l),
        })
    }

    /// The budget time zone (`budgets.time_zone`).
    fn budget_tz(&self) -> ApiResult<Tz> {
        self.settings.budgets.tz().map_err(|e| ApiError::internal(&e))
    }

    /// From when the minute rollups are surely complete (`projector.minute_retention_days`).
    fn minutes_kept_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        source::minutes_kept_since(self.settings.projector.minute_retention_days, now)
    }
}
