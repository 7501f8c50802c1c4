//! Query parameters checked before they reach SQL: time zones, instants, ranges, groupings and
//! free-text filters (400 naming the parameter at fault).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::period::preset_range;
use crate::api::usage::{Dimension, Preset, UsageQuery};
use crate::error::{ApiError, ApiResult};

/// Longest range of a usage query.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Longest range that may be bucketed by minute.
pub const MAX_MINUTE_RANGE_DAYS: i64 = 2;

/// An IANA time zone name (400 naming `tz` otherwise).
pub(super) fn parse_tz(name: &str) -> ApiResult<Tz> {
    name.parse::<Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        ApiError::invalid("tz", format!("`{shown}` is not an IANA time zone like `Europe/Berlin` or `UTC`"))
    })
}

/// Earliest and latest accepted instants (what ClickHouse's `DateTime` holds, with margin).
fn time_bounds() -> (DateTime<Utc>, DateTime<Utc>) {
    (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH + Duration::days(47_482))
    // 2100-01-01
}

/// An RFC 3339 instant between 1970 and 2100.
pub(super) fn parse_time(field: &str, value: &str) -> ApiResult<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(value.trim()).map_err(|_| {
        let shown: String = value.chars().take(40).collect();
        ApiError::invalid(
            field,
            format!("`{shown}` is not an RFC 3339 time like 2026-11-01T00:00:00Z (send `+` as `%2B`)"),
        )
    })?;
    let t = t.with_timezone(&Utc);
    let (min, max) = time_bounds();
    if t < min || t >= max {
        return Err(ApiError::invalid(field, "must be between 1970 and 2100"));
    }
    Ok(t)
}

/// A model name to filter by: 1–128 characters, no control characters.
pub(super) fn check_model(value: &str) -> ApiResult<String> {
    check_text_param("model", value, 128)
}

pub(super) fn check_text_param(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, format!("must be 1–{max} characters without control characters")));
    }
    Ok(v.to_owned())
}

/// `user,model` → the dimensions, in order, without repeats.
pub(super) fn parse_group_by(value: Option<&str>) -> ApiResult<Vec<Dimension>> {
    let mut out = Vec::new();
    for part in value.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d = match part {
            "user" => Dimension::User,
            "key" => Dimension::Key,
            "model" => Dimension::Model,
            "provider" => Dimension::Provider,
            "team" => Dimension::Team,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(ApiError::invalid(
                    "group_by",
                    format!("`{shown}` is not one of `user`, `key`, `model`, `provider`, `team`"),
                ));
            }
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// The `[from, to)` of a usage query.
pub(super) fn resolve_range(q: &UsageQuery, tz: Tz, now: DateTime<Utc>) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    if q.preset.is_some() && (q.from.is_some() || q.to.is_some()) {
        return Err(ApiError::invalid("preset", "give either `preset` or `from`/`to`, not both"));
    }
    let (from, to) = match (q.preset, q.from.as_deref(), q.to.as_deref()) {
        (Some(p), _, _) => preset_range(p, tz, now),
        (None, None, None) => preset_range(Preset::Last24h, tz, now),
        (None, None, Some(_)) => return Err(ApiError::invalid("from", "is required with `to`")),
        (None, Some(f), t) => {
            let from = parse_time("from", f)?;
            let to = match t {
                Some(t) => parse_time("to", t)?,
                // Now, rounded up to the minute (so recent ranges stay on rollup boundaries).
                None => DateTime::<Utc>::from_timestamp((now.timestamp() / 60 + 1) * 60, 0).unwrap_or(now),
            };
            (from, to)
        }
    };
    if from >= to {
        return Err(ApiError::invalid("to", "must be later than `from`"));
    }
    if to - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::invalid("to", format!("the range may be at most {MAX_RANGE_DAYS} days long")));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::usage::testing::at;

    #[test]
    fn ranges_are_checked() {
        let now = at("2026-11-25T10:00:00Z");
        let q = |preset: Option<Preset>, from: Option<&str>, to: Option<&str>| UsageQuery {
            preset,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            ..UsageQuery::default()
        };
        let field = |r: ApiResult<(DateTime<Utc>, DateTime<Utc>)>| r.unwrap_err().field.unwrap();
        let utc = chrono_tz::UTC;
        assert_eq!(
            field(resolve_range(&q(Some(Preset::Today), Some("2026-01-01T00:00:00Z"), None), utc, now)),
            "preset"
        );
        assert_eq!(field(resolve_range(&q(None, None, Some("2026-01-01T00:00:00Z")), utc, now)), "from");
        assert_eq!(field(resolve_range(&q(None, Some("yesterday"), None), utc, now)), "from");
        assert_eq!(
            field(resolve_range(&q(None, Some("2026-01-02T00:00:00Z"), Some("2026-01-02T00:00:00Z")), utc, now)),
            "to"
        );
        assert_eq!(
            field(resolve_range(&q(None, Some("2024-01-01T00:00:00Z"), Some("2025-03-01T00:00:00Z")), utc, now)),
            "to"
        );
        assert_eq!(field(resolve_range(&q(None, Some("1969-12-31T00:00:00Z"), None), utc, now)), "from");
        let (from, to) = resolve_range(&q(None, Some("2026-11-25T01:00:00+01:00"), None), utc, now).unwrap();
        assert_eq!((from, to), (at("2026-11-25T00:00:00Z"), at("2026-11-25T10:01:00Z")));
        assert_eq!(resolve_range(&q(None, None, None), utc, now).unwrap().1, at("2026-11-25T11:00:00Z"));
    }

    #[test]
    fn group_by_is_a_set_of_known_dimensions() {
        assert_eq!(parse_group_by(None).unwrap(), vec![]);
        assert_eq!(parse_group_by(Some("model, user,model")).unwrap(), vec![Dimension::Model, Dimension::User]);
        assert_eq!(parse_group_by(Some("user,team")).unwrap(), vec![Dimension::User, Dimension::Team]);
        assert_eq!(parse_group_by(Some("user,cost_centre")).unwrap_err().field.as_deref(), Some("group_by"));
    }
}
