//! The usage query: built from a checked question with every value bound (`?`), read from the
//! table [`choose_source`] picks; its rows and their sums. Also what every query here shares:
//! bound arguments and empty text columns read as none.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::period::usd;
use super::source::{choose_source, Scope, Source};
use crate::api::usage::{Bucket, Dimension, UsageCounts};

/// Usage filters (already checked).
#[derive(Debug, Default)]
pub(super) struct Filters {
    pub(super) user_id: Option<String>,
    pub(super) key_id: Option<String>,
    pub(super) team_id: Option<String>,
    pub(super) provider: Option<String>,
    pub(super) model: Option<String>,
}

/// A bound value.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Str(String),
    Int(i64),
    Uint(u64),
}

/// `query` with `args` bound to its placeholders, in order.
pub(super) fn bind(query: clickhouse::query::Query, args: &[Arg]) -> clickhouse::query::Query {
    args.iter().fold(query, |q, a| match a {
        Arg::Str(s) => q.bind(s.as_str()),
        Arg::Int(n) => q.bind(*n),
        Arg::Uint(n) => q.bind(*n),
    })
}

/// A text column's `""` → `None`.
pub(super) fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// One row of a usage query (dimensions not grouped by are `''`).
#[derive(Debug, Deserialize, clickhouse::Row)]
pub(super) struct UsageDbRow {
    pub(super) b: u32,
    pub(super) g_user: String,
    pub(super) g_key: String,
    pub(super) g_model: String,
    pub(super) g_provider: String,
    pub(super) g_team: String,
    n_requests: u64,
    n_errors: u64,
    n_fallbacks: u64,
    n_input: u64,
    n_output: u64,
    n_cache_read: u64,
    n_cache_creation: u64,
    pub(super) n_cost: u64,
    n_unpriced: u64,
    n_unpriced_tokens: u64,
    n_estimated: u64,
}

/// Sums in whole units (cost in nano-dollars), turned into [`UsageCounts`] at the end.
#[derive(Debug, Default)]
pub(super) struct Totals {
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
    pub(super) fn from_row(r: &UsageDbRow) -> Self {
        let mut t = Self::default();
        t.add(r);
        t
    }

    pub(super) fn add(&mut self, r: &UsageDbRow) {
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

    pub(super) fn counts(&self) -> UsageCounts {
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
pub(super) struct Question<'a> {
    pub(super) bucket: Bucket,
    pub(super) tz: Tz,
    pub(super) from: DateTime<Utc>,
    pub(super) to: DateTime<Utc>,
    pub(super) group_by: &'a [Dimension],
    pub(super) filters: &'a Filters,
}

/// The bucket start of `column` in the bound time zone, as a `DateTime`; and how many
/// time-zone placeholders it has.
fn bucket_sql(bucket: Bucket, column: &str) -> (String, usize) {
    match bucket {
        Bucket::Minute => (format!("toStartOfMinute({column}, ?)"), 1),
        Bucket::Hour => (format!("toStartOfHour({column}, ?)"), 1),
        Bucket::Day => (format!("toStartOfDay({column}, ?)"), 1),
        Bucket::Week => (format!("toDateTime(toMonday({column}, ?), ?)"), 2),
        Bucket::Month => (format!("toDateTime(toStartOfMonth({column}, ?), ?)"), 2),
    }
}

/// The usage query: rows per bucket (and group), oldest first, from the coarsest exact table.
pub(super) async fn read_usage(
    clickhouse: &clickhouse::Client,
    q: &Question<'_>,
    minutes_since: DateTime<Utc>,
) -> Result<Vec<UsageDbRow>, clickhouse::error::Error> {
    let Question { bucket, tz, from, to, group_by, filters } = *q;
    let scope = if filters.user_id.is_some() || filters.key_id.is_some() {
        Scope::OneUser
    } else if filters.team_id.is_some() || group_by.contains(&Dimension::Team) {
        Scope::Teams
    } else {
        Scope::All
    };
    let source = choose_source(bucket, tz, (from, to), minutes_since, scope);
    let time = source.time();
    let (bucket_sql, tz_binds) = bucket_sql(bucket, time);
    let mut args: Vec<Arg> = (0..tz_binds).map(|_| Arg::Str(tz.name().to_owned())).collect();
    // Output aliases differ from column names: ClickHouse applies aliases everywhere, WHERE too.
    let dims = [
        (Dimension::User, "user_id", "g_user"),
        (Dimension::Key, "key_id", "g_key"),
        (Dimension::Model, source.model(), "g_model"),
        (Dimension::Provider, "provider", "g_provider"),
        (Dimension::Team, "team_id", "g_team"),
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
        (&filters.team_id, "team_id"),
        (&filters.provider, "provider"),
        (&filters.model, source.model()),
    ] {
        if let Some(v) = value {
            conditions.push(format!("{column} = ?"));
            args.push(Arg::Str(v.clone()));
        }
    }
    if let (Source::RawByUser, None, Some(key)) = (source, &filters.user_id, &filters.key_id) {
        // A key's rows lie under its user (the sort key's first column): name the user, from
        // `key_last_used`, which the same inserts fill (so it knows every key with requests).
        conditions.push("user_id IN (SELECT user_id FROM key_last_used WHERE key_id = ?)".to_owned());
        args.push(Arg::Str(key.clone()));
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
