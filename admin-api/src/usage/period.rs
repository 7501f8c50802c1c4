//! Time and money as answers show them: presets as whole local periods, instants with a time
//! zone's offset, nano-dollars as USD.

use ccp_schemas::calendar::{self, Month};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::api::usage::Preset;

/// A preset's `[from, to)` at `now` in `tz`: whole local days, hours and months of
/// [`calendar`] (which decides where a midnight in a daylight-saving gap or fold falls).
pub(super) fn preset_range(preset: Preset, tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = calendar::day(now, tz).label;
    let day = |n: i64| calendar::day_start(tz, today + Duration::days(n));
    let month = Month::of(now, tz);
    match preset {
        Preset::Today => (day(0), day(1)),
        Preset::Yesterday => (day(-1), day(0)),
        Preset::Last24h => {
            // Up to the end of the local hour.
            let to = calendar::hour(now, tz).end;
            (to - Duration::hours(24), to)
        }
        Preset::Last7d => (day(-6), day(1)),
        Preset::Last30d => (day(-29), day(1)),
        Preset::ThisMonth => (month.start(tz), month.end(tz)),
        Preset::LastMonth => (month.previous().start(tz), month.start(tz)),
    }
}

/// An instant as RFC 3339 with `tz`'s offset.
pub(super) fn local(timestamp: i64, tz: Tz) -> DateTime<FixedOffset> {
    DateTime::<Utc>::from_timestamp(timestamp, 0).unwrap_or_default().with_timezone(&tz).fixed_offset()
}

/// Whole nano-dollars as USD.
pub(super) fn usd(nanos: u64) -> Decimal {
    // A u64 always fits the 96-bit mantissa, so this cannot overflow.
    Decimal::from_i128_with_scale(i128::from(nanos), 9).normalize()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::usage::testing::{at, tz};

    #[test]
    fn presets_are_whole_local_periods() {
        let now = at("2026-11-25T01:10:00Z");
        let kolkata = tz("Asia/Kolkata"); // 06:40 on the 25th there
        assert_eq!(preset_range(Preset::Today, kolkata, now), (at("2026-11-24T18:30:00Z"), at("2026-11-25T18:30:00Z")));
        assert_eq!(
            preset_range(Preset::Yesterday, kolkata, now),
            (at("2026-11-23T18:30:00Z"), at("2026-11-24T18:30:00Z"))
        );
        assert_eq!(
            preset_range(Preset::Last24h, kolkata, now),
            (at("2026-11-24T01:30:00Z"), at("2026-11-25T01:30:00Z")),
            "up to the end of the local hour 06:00–07:00"
        );
        assert_eq!(preset_range(Preset::Last7d, chrono_tz::UTC, now).0, at("2026-11-19T00:00:00Z"));
        assert_eq!(preset_range(Preset::Last30d, chrono_tz::UTC, now).0, at("2026-10-27T00:00:00Z"));
        let ny = tz("America/New_York"); // still the 24th there; November is EST, October EDT
        assert_eq!(preset_range(Preset::Today, ny, now).0, at("2026-11-24T05:00:00Z"));
        assert_eq!(preset_range(Preset::ThisMonth, ny, now), (at("2026-11-01T04:00:00Z"), at("2026-12-01T05:00:00Z")));
        assert_eq!(preset_range(Preset::LastMonth, ny, now), (at("2026-10-01T04:00:00Z"), at("2026-11-01T04:00:00Z")));
        let january = at("2027-01-15T12:00:00Z");
        assert_eq!(preset_range(Preset::LastMonth, chrono_tz::UTC, january).0, at("2026-12-01T00:00:00Z"));
        let december = at("2026-12-15T12:00:00Z");
        assert_eq!(preset_range(Preset::ThisMonth, chrono_tz::UTC, december).1, at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn a_midnight_in_a_dst_gap_is_the_end_of_the_gap() {
        // Santiago skipped 2026-09-06 00:00–01:00 (clocks went from -04 to -03 at midnight).
        let santiago = tz("America/Santiago");
        let date = chrono::NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(calendar::day_start(santiago, date), at("2026-09-06T04:00:00Z"));
        assert_eq!(preset_range(Preset::Today, santiago, at("2026-09-06T12:00:00Z")).0, at("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn cost_is_exact_decimal_usd() {
        assert_eq!(usd(0).to_string(), "0");
        assert_eq!(usd(1).to_string(), "0.000000001");
        assert_eq!(usd(1_500_000_000).to_string(), "1.5");
        assert_eq!(usd(u64::MAX).to_string(), "18446744073.709551615");
    }
}
