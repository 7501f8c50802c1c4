//! Which table answers a usage question exactly. A question about one user or key reads that
//! user's raw rows in `requests_by_user` (ordered by user, key and time: exact in any time zone,
//! and only their rows are read — the rollups are ordered by time first, so a user's month there
//! reads every user's month, and with many developers an hour rollup has nearly as many rows as
//! `requests`). Any other question reads the coarsest rollup whose (UTC) rows fit both the
//! range's ends and every bucket boundary in the time zone, else the raw `requests`; a question
//! about teams (grouped by team or filtered on one) reads the team rollups, which hold the team
//! at request time.

use chrono::{DateTime, Duration, Offset as _, TimeZone as _, Utc};
use chrono_tz::Tz;

use crate::api::usage::Bucket;

/// Where usage rows are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Day,
    Hour,
    Minute,
    /// `usage_team_day`: like `Day`, with the team at request time.
    TeamDay,
    /// `usage_team_hour`.
    TeamHour,
    Raw,
    /// The raw rows of one user or key: `requests_by_user`.
    RawByUser,
}

impl Source {
    /// Width of its rows (UTC-aligned), in seconds.
    const fn seconds(self) -> i64 {
        match self {
            Self::Day | Self::TeamDay => 86_400,
            Self::Hour | Self::TeamHour => 3_600,
            Self::Minute => 60,
            Self::Raw | Self::RawByUser => 1,
        }
    }

    pub(super) const fn table(self) -> &'static str {
        match self {
            Self::Day => "usage_day",
            Self::Hour => "usage_hour",
            Self::Minute => "usage_minute",
            Self::TeamDay => "usage_team_day",
            Self::TeamHour => "usage_team_hour",
            Self::Raw => "requests",
            Self::RawByUser => "requests_by_user",
        }
    }

    pub(super) const fn time(self) -> &'static str {
        match self {
            Self::Raw | Self::RawByUser => "occurred_at",
            _ => "bucket",
        }
    }

    pub(super) const fn model(self) -> &'static str {
        match self {
            Self::Raw => {
                "if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model))"
            }
            // The same expression, computed when the row was copied.
            _ => "model",
        }
    }

    pub(super) const fn measures(self) -> &'static str {
        match self {
            Self::Raw | Self::RawByUser => {
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

/// The shortest `bucket` can be, in seconds (a local day may have 23 hours, but its boundaries
/// are still whole hours wherever the offsets are).
const fn min_seconds(bucket: Bucket) -> i64 {
    match bucket {
        Bucket::Minute => 60,
        Bucket::Hour => 3_600,
        Bucket::Day | Bucket::Week | Bucket::Month => 86_400,
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

/// Who a usage question is about, as far as the choice of table goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Anyone (no user, key or team named or grouped by).
    All,
    /// One user or key (filtered on).
    OneUser,
    /// Teams: grouped by team or filtered on one (and no user or key filter).
    Teams,
}

/// `requests_by_user` for one user or key, else the coarsest table (of the team rollups for a
/// question about teams) whose rows fit both the range's ends and the buckets' boundaries in `tz`
/// (the minute table only from `minutes_since`, within its retention).
pub(super) fn choose_source(
    bucket: Bucket,
    tz: Tz,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    minutes_since: DateTime<Utc>,
    scope: Scope,
) -> Source {
    let candidates: &[Source] = match scope {
        Scope::OneUser => return Source::RawByUser,
        Scope::All => &[Source::Day, Source::Hour, Source::Minute],
        Scope::Teams => &[Source::TeamDay, Source::TeamHour],
    };
    candidates
        .iter()
        .copied()
        .find(|s| {
            let g = s.seconds();
            g <= min_seconds(bucket)
                && from.timestamp().rem_euclid(g) == 0
                && to.timestamp().rem_euclid(g) == 0
                && (*s != Source::Minute || from >= minutes_since)
                && offsets_aligned(tz, from, to, g)
        })
        .unwrap_or(Source::Raw)
}

/// From when the minute rollups are surely complete: the projector drops whole UTC days older
/// than `projector.minute_retention_days` (`retention_days`); one day of margin.
pub(super) fn minutes_kept_since(retention_days: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    let days = i64::from(retention_days);
    if days < 2 {
        return DateTime::<Utc>::MAX_UTC;
    }
    now - Duration::days(days - 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::usage::testing::{at, tz};

    #[test]
    fn the_coarsest_exact_table_is_read() {
        let recent = at("2026-01-01T00:00:00Z");
        let utc = chrono_tz::UTC;
        let (berlin, kolkata) = (tz("Europe/Berlin"), tz("Asia/Kolkata"));
        let (from, to) = (at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z"));
        assert_eq!(choose_source(Bucket::Day, utc, (from, to), recent, Scope::All), Source::Day);
        assert_eq!(choose_source(Bucket::Month, utc, (from, to), recent, Scope::All), Source::Day);
        assert_eq!(choose_source(Bucket::Hour, utc, (from, to), recent, Scope::All), Source::Hour);
        assert_eq!(choose_source(Bucket::Minute, utc, (from, to), recent, Scope::All), Source::Minute);
        // Berlin's days start at 23:00 or 22:00 UTC (DST on 29 March): whole hours.
        let (bf, bt) = (at("2026-02-28T23:00:00Z"), at("2026-03-31T22:00:00Z"));
        assert_eq!(choose_source(Bucket::Day, berlin, (bf, bt), recent, Scope::All), Source::Hour);
        // Kolkata's start at 18:30 UTC: minutes while kept, else the raw rows.
        let (kf, kt) = (at("2026-02-28T18:30:00Z"), at("2026-03-31T18:30:00Z"));
        assert_eq!(choose_source(Bucket::Day, kolkata, (kf, kt), recent, Scope::All), Source::Minute);
        assert_eq!(choose_source(Bucket::Day, kolkata, (kf, kt), at("2026-03-15T00:00:00Z"), Scope::All), Source::Raw);
        // Range ends off the rollup grid.
        assert_eq!(choose_source(Bucket::Day, utc, (at("2026-03-01T00:00:30Z"), to), recent, Scope::All), Source::Raw);
        assert_eq!(
            choose_source(Bucket::Day, utc, (at("2026-03-01T00:10:00Z"), to), recent, Scope::All),
            Source::Minute
        );
        assert_eq!(choose_source(Bucket::Day, utc, (at("2026-03-01T01:00:00Z"), to), recent, Scope::All), Source::Hour);
        // One user's or key's rows come from the table ordered by user, whatever the grid.
        assert_eq!(
            choose_source(Bucket::Day, utc, (at("2026-03-01T00:00:30Z"), to), recent, Scope::OneUser),
            Source::RawByUser
        );
        assert_eq!(choose_source(Bucket::Month, utc, (from, to), recent, Scope::OneUser), Source::RawByUser);
        // Teams: their own day and hour rollups, else the raw rows (no team minutes).
        assert_eq!(choose_source(Bucket::Month, utc, (from, to), recent, Scope::Teams), Source::TeamDay);
        assert_eq!(choose_source(Bucket::Day, berlin, (bf, bt), recent, Scope::Teams), Source::TeamHour);
        assert_eq!(choose_source(Bucket::Day, kolkata, (kf, kt), recent, Scope::Teams), Source::Raw);
        assert_eq!(choose_source(Bucket::Minute, utc, (from, to), recent, Scope::Teams), Source::Raw);
    }
}
