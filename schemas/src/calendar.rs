//! The calendar of budgets and reports: which local hour, day and month an instant belongs to in
//! a time zone, and when each of them starts — decided here once for the proxy's spend, the
//! projector's alerts and the admin API's queries.
//!
//! # The rule for local times
//!
//! A local time (a day's or a month's midnight, an hour) names the **first instant at which the
//! clocks of the zone show it or a later time** ([`local_instant`]):
//!
//! - normally the one instant that has that local time;
//! - in a **fold** (clocks set back, so the local time happens twice) the **earlier** instant;
//! - in a **gap** (clocks set forward over it, so it never happens) the **end of the gap**: the
//!   first instant after it (e.g. `America/Santiago` skipped 2026-09-06 00:00–01:00, so that
//!   day starts at 01:00 `-03`, `2026-09-06T04:00:00Z`).
//!
//! # Periods
//!
//! An hour, a day or a month is the half-open range `[start, start of the next one)` between the
//! instants its local start and the next one's name ([`Period`]). Those starts never go back in
//! time, so consecutive periods are contiguous and never overlap: every instant is in exactly one
//! hour, one day and one month. A period whose start and end coincide (a local day or hour wholly
//! in a gap) holds no instant. Because a fold's local times belong to the earlier instant, the
//! second pass of a repeated hour belongs to the period that started at the first pass: Berlin's
//! repeated 02:00–03:00 is one hour bucket of two hours, and where the repeated local times include
//! a midnight (clocks set back from 00:30 to 23:30, say), the second pass of the times before
//! midnight belongs to the new day — and, on the 1st, to the new month (so [`Month::of`] is not
//! always the local month).

use std::fmt;

use chrono::{DateTime, Datelike as _, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _};
use chrono::{Offset as _, Timelike as _, Utc};
use chrono_tz::Tz;

/// The instant local time `local` names in `tz` (see the [module](self) documentation): the one
/// instant with that local time; the earlier one in a fold; the end of the gap in a gap.
pub fn local_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => end_of_gap(tz, local),
    }
}

/// The first instant after the gap that `local` falls in: the first one whose local time is later.
fn end_of_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    // Offsets stay within ±16 h and a gap is at most a day long (Pacific/Apia skipped
    // 2011-12-30), so 26 h before `local` read as UTC the clocks showed an earlier time and
    // 26 h after it a later one. Local time moves forward one second a second except at
    // transitions, which are whole seconds and hours apart: scan by hours for the first later
    // one, then halve the hour down to the second.
    const SPAN: i64 = 26 * 3600;
    let later =
        |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0).is_none_or(|u| u.with_timezone(&tz).naive_local() > local);
    let naive = local.and_utc().timestamp();
    let (mut before, mut after) = (naive - SPAN, naive - SPAN + 3600);
    while !later(after) {
        if after > naive + SPAN {
            // Unreachable with real zone data; the local time read with the offset it has as UTC.
            return (local - Duration::seconds(offset_seconds(tz, local.and_utc()))).and_utc();
        }
        before = after;
        after += 3600;
    }
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if later(middle) {
            after = middle;
        } else {
            before = middle;
        }
    }
    DateTime::<Utc>::from_timestamp(after, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `tz`'s UTC offset at `at`, in seconds.
fn offset_seconds(tz: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc())
}

/// A local period (hour, day) and the instants it spans: `start ≤ t < end` for every instant `t`
/// in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period<L> {
    /// Its local name: the hour (`2026-11-25T14:00:00`) or the day (`2026-11-25`).
    pub label: L,
    /// Its first instant ([`local_instant`] of its local start).
    pub start: DateTime<Utc>,
    /// The next period's first instant.
    pub end: DateTime<Utc>,
}

/// The period of `at` among consecutive ones named by labels, starting from a guess (the label of
/// `at`'s local time): the one whose start is the last at or before `at`. The guess is right
/// except in a fold longer than the distance to the next label's start.
fn locate<L: Copy>(
    at: DateTime<Utc>,
    mut label: L,
    start: impl Fn(L) -> DateTime<Utc>,
    next: impl Fn(L) -> L,
    previous: impl Fn(L) -> L,
) -> Period<L> {
    // Bounded: real zone data needs at most a day's worth of steps (Alaska's repeated day, 1867).
    const STEPS: usize = 48;
    let mut from = start(label);
    for _ in 0..STEPS {
        if from <= at {
            break;
        }
        label = previous(label);
        from = start(label);
    }
    let mut to = start(next(label));
    for _ in 0..STEPS {
        if to > at {
            break;
        }
        label = next(label);
        from = to;
        to = start(next(label));
    }
    Period { label, start: from, end: to }
}

/// The instant local midnight at the start of `date` names in `tz` (the end of the gap if
/// midnight is in one, the earlier of two).
pub fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_instant(tz, date.and_time(NaiveTime::MIN))
}

/// The local day `at` is in, in `tz`.
pub fn day(at: DateTime<Utc>, tz: Tz) -> Period<NaiveDate> {
    let step = |d: NaiveDate, n: i64| d.checked_add_signed(Duration::days(n)).unwrap_or(d);
    locate(at, at.with_timezone(&tz).date_naive(), |d| day_start(tz, d), |d| step(d, 1), |d| step(d, -1))
}

/// The local hour `at` is in, in `tz` (named by its local start, `HH:00:00`). In zones whose
/// offsets are not whole hours (`Asia/Kolkata`, +05:30) an hour starts at the half hour UTC; a
/// transition that moves the clocks by half an hour (`Australia/Lord_Howe`) makes an hour of 30
/// or 90 minutes.
pub fn hour(at: DateTime<Utc>, tz: Tz) -> Period<NaiveDateTime> {
    let local = at.with_timezone(&tz).naive_local();
    let label = local.with_minute(0).and_then(|l| l.with_second(0)).and_then(|l| l.with_nanosecond(0)).unwrap_or(local);
    let step = |h: NaiveDateTime, n: i64| h.checked_add_signed(Duration::hours(n)).unwrap_or(h);
    locate(at, label, |h| local_instant(tz, h), |h| step(h, 1), |h| step(h, -1))
}

/// A calendar month in a time zone (the budget month): from [`Month::start`] to the next month's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    /// 1–12.
    month: u32,
}

impl Month {
    /// `month` (1–12) of `year`; `None` for a month that is not one (or out of chrono's range).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| Self { year, month })
    }

    /// The month `at` is in, in `tz`: its local month, except where clocks go back over the
    /// start of a month — the repeated local times are then already the new month's.
    pub fn of(at: DateTime<Utc>, tz: Tz) -> Self {
        let local = at.with_timezone(&tz).date_naive();
        let month = Self { year: local.year(), month: local.month() };
        // Far from the month's ends its local month is the answer (the hot path: one offset
        // look-up); near them the start instants decide.
        let near_start = local.day() <= 2;
        let near_end = local.checked_add_signed(Duration::days(3)).is_none_or(|d| d.month() != local.month());
        if !near_start && !near_end {
            return month;
        }
        locate(at, month, |m| m.start(tz), Self::next, Self::previous).label
    }

    /// The year.
    pub const fn year(self) -> i32 {
        self.year
    }

    /// The month of the year, 1–12.
    pub const fn month(self) -> u32 {
        self.month
    }

    /// Its first day.
    pub fn first_date(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// Its first day as text, `YYYY-MM-01` (when a budget resets, for the next month).
    pub fn first_day(self) -> String {
        format!("{:04}-{:02}-01", self.year, self.month)
    }

    /// Its first instant: local midnight of its first day (see [`day_start`]).
    pub fn start(self, tz: Tz) -> DateTime<Utc> {
        day_start(tz, self.first_date())
    }

    /// The next month's first instant (when its budgets reset).
    pub fn end(self, tz: Tz) -> DateTime<Utc> {
        self.next().start(tz)
    }

    /// The next month (itself at the end of chrono's range).
    pub fn next(self) -> Self {
        let (year, month) = if self.month == 12 { (self.year + 1, 1) } else { (self.year, self.month + 1) };
        Self::new(year, month).unwrap_or(self)
    }

    /// The month before (itself at the start of chrono's range).
    pub fn previous(self) -> Self {
        let (year, month) = if self.month == 1 { (self.year - 1, 12) } else { (self.year, self.month - 1) };
        Self::new(year, month).unwrap_or(self)
    }
}

/// `YYYY-MM` (as in spend keys and alert incidents).
impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    fn local(s: &str) -> NaiveDateTime {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn months_follow_the_time_zone() {
        let ny = tz("America/New_York");
        let t = at("2026-12-01T03:00:00Z");
        assert_eq!(Month::of(t, ny), Month::new(2026, 11).unwrap(), "still November in New York");
        assert_eq!(Month::of(t, chrono_tz::UTC), Month::new(2026, 12).unwrap());
        let december = Month::new(2026, 12).unwrap();
        assert_eq!(december.start(ny), at("2026-12-01T05:00:00Z"));
        assert_eq!(december.end(ny), at("2027-01-01T05:00:00Z"));
        assert_eq!(december.next().first_day(), "2027-01-01");
        assert_eq!(december.next().previous(), december);
        assert_eq!(december.to_string(), "2026-12");
        assert_eq!(Month::new(2026, 13), None);
        assert!(Month::new(2026, 11).unwrap() < december && december < december.next());
    }

    #[test]
    fn a_local_time_in_a_gap_is_the_end_of_the_gap() {
        // Santiago skipped 2026-09-06 00:00–01:00 (-04 → -03 at midnight).
        let santiago = tz("America/Santiago");
        assert_eq!(day_start(santiago, date("2026-09-06")), at("2026-09-06T04:00:00Z"));
        assert_eq!(local_instant(santiago, local("2026-09-06T00:30:00")), at("2026-09-06T04:00:00Z"));
        // Berlin skips 02:00–03:00 on 2026-03-29 (+01 → +02 at 01:00 UTC).
        let berlin = tz("Europe/Berlin");
        assert_eq!(local_instant(berlin, local("2026-03-29T02:00:00")), at("2026-03-29T01:00:00Z"));
        assert_eq!(local_instant(berlin, local("2026-03-29T02:59:59")), at("2026-03-29T01:00:00Z"));
        // Lord Howe moves half an hour: 02:00–02:30 is skipped (+10:30 → +11).
        let lord_howe = tz("Australia/Lord_Howe");
        assert_eq!(local_instant(lord_howe, local("2026-10-04T02:15:00")), at("2026-10-03T15:30:00Z"));
        // Apia skipped a whole day.
        let apia = tz("Pacific/Apia");
        assert_eq!(day_start(apia, date("2011-12-30")), at("2011-12-30T10:00:00Z"));
        assert_eq!(day(at("2011-12-30T09:59:59Z"), apia).label, date("2011-12-29"));
        assert_eq!(day(at("2011-12-30T10:00:00Z"), apia).label, date("2011-12-31"));
    }

    #[test]
    fn a_local_time_in_a_fold_is_the_earlier_instant() {
        // Berlin repeats 02:00–03:00 on 2026-10-25 (+02 → +01 at 01:00 UTC).
        let berlin = tz("Europe/Berlin");
        assert_eq!(local_instant(berlin, local("2026-10-25T02:30:00")), at("2026-10-25T00:30:00Z"));
        let repeated = hour(at("2026-10-25T01:30:00Z"), berlin);
        assert_eq!(repeated, hour(at("2026-10-25T00:10:00Z"), berlin), "both passes are one hour bucket");
        assert_eq!((repeated.start, repeated.end), (at("2026-10-25T00:00:00Z"), at("2026-10-25T02:00:00Z")));
        // São Paulo set clocks back from midnight to 23:00 on 2019-02-16/17: midnight happened
        // once, after the repeated hour, so the 16th had 25 hours.
        let sao_paulo = tz("America/Sao_Paulo");
        assert_eq!(day_start(sao_paulo, date("2019-02-17")), at("2019-02-17T03:00:00Z"));
        let second_pass = day(at("2019-02-17T02:30:00Z"), sao_paulo); // 23:30 -03 on the 16th
        assert_eq!(second_pass.label, date("2019-02-16"));
        assert_eq!(second_pass.end - second_pass.start, Duration::hours(25));
        // Havana repeats 00:00–01:00 on 2026-11-01 (-04 → -05 at 01:00): November starts at the
        // first midnight, and its first hour lasts until 01:00 -05.
        let havana = tz("America/Havana");
        let november = Month::new(2026, 11).unwrap();
        assert_eq!(november.start(havana), at("2026-11-01T04:00:00Z"));
        assert_eq!(Month::of(at("2026-11-01T05:30:00Z"), havana), november);
        let first = hour(at("2026-11-01T05:30:00Z"), havana);
        assert_eq!((first.start, first.end), (at("2026-11-01T04:00:00Z"), at("2026-11-01T06:00:00Z")));
    }

    #[test]
    fn hours_and_days_of_whole_and_half_hour_zones() {
        let kolkata = tz("Asia/Kolkata");
        let t = at("2026-11-25T01:10:00Z"); // 06:40 on the 25th
        let h = hour(t, kolkata);
        assert_eq!(
            (h.label, h.start, h.end),
            (local("2026-11-25T06:00:00"), at("2026-11-25T00:30:00Z"), at("2026-11-25T01:30:00Z"))
        );
        let d = day(t, kolkata);
        assert_eq!(
            (d.label, d.start, d.end),
            (date("2026-11-25"), at("2026-11-24T18:30:00Z"), at("2026-11-25T18:30:00Z"))
        );
        // Lord Howe's half-hour jump: a 30-minute hour 02:00 (02:30–03:00 local).
        let lord_howe = tz("Australia/Lord_Howe");
        let short = hour(at("2026-10-03T15:40:00Z"), lord_howe);
        assert_eq!((short.start, short.end), (at("2026-10-03T15:30:00Z"), at("2026-10-03T16:00:00Z")));
    }

    mod properties {
        use std::sync::OnceLock;

        use proptest::prelude::*;

        use super::super::*;
        use super::at;

        /// Zones with every kind of transition: whole-hour DST in both hemispheres, half-hour
        /// DST, a fixed half-hour offset, a +12:45 zone with DST, DST at midnight (historical
        /// São Paulo, Santiago, Asunción), a 2-hour shift (Troll), a skipped day (Apia), LMT
        /// offsets with seconds.
        const ZONES: [&str; 14] = [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "America/Sao_Paulo",
            "America/Santiago",
            "America/Asuncion",
            "America/Havana",
            "Antarctica/Troll",
            "Pacific/Apia",
            "Asia/Tehran",
            "Europe/London",
            "UTC",
        ];

        /// Where the offsets of each zone change, found by sampling every 6 hours from 1880 to
        /// 2040 and halving down to the second.
        fn transitions() -> &'static Vec<(Tz, Vec<i64>)> {
            static ALL: OnceLock<Vec<(Tz, Vec<i64>)>> = OnceLock::new();
            ALL.get_or_init(|| {
                let offset = |tz: Tz, s: i64| offset_seconds(tz, DateTime::<Utc>::from_timestamp(s, 0).unwrap());
                ZONES
                    .iter()
                    .map(|name| {
                        let tz: Tz = name.parse().unwrap();
                        let (first, last) =
                            (at("1880-01-01T00:00:00Z").timestamp(), at("2040-01-01T00:00:00Z").timestamp());
                        let mut found = Vec::new();
                        let mut s = first;
                        while s < last {
                            let next = s + 6 * 3600;
                            if offset(tz, s) != offset(tz, next) {
                                let (mut lo, mut hi) = (s, next);
                                while hi - lo > 1 {
                                    let mid = lo + (hi - lo) / 2;
                                    if offset(tz, mid) == offset(tz, s) {
                                        lo = mid;
                                    } else {
                                        hi = mid;
                                    }
                                }
                                found.push(hi);
                            }
                            s = next;
                        }
                        (tz, found)
                    })
                    .collect()
            })
        }

        fn near_transitions() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
            (0..ZONES.len(), any::<prop::sample::Index>(), -40 * 3600i64..40 * 3600).prop_map(|(z, i, delta)| {
                let (tz, found) = &transitions()[z];
                let base = if found.is_empty() { 1_790_000_000 } else { found[i.index(found.len())] };
                (*tz, DateTime::<Utc>::from_timestamp(base + delta, 0).unwrap())
            })
        }

        fn anywhere() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
            (0..ZONES.len(), -2_800_000_000i64..2_200_000_000)
                .prop_map(|(z, s)| (transitions()[z].0, DateTime::<Utc>::from_timestamp(s, 0).unwrap()))
        }

        fn instants() -> impl Strategy<Value = (Tz, DateTime<Utc>)> {
            prop_oneof![3 => near_transitions(), 1 => anywhere()]
        }

        fn local_of(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
            t.with_timezone(&tz).naive_local()
        }

        /// `start` is the instant `name` names: that local time, or the end of a gap over it
        /// (the local time just before is earlier, at it later); never a later pass of a fold.
        fn names(tz: Tz, name: NaiveDateTime, start: DateTime<Utc>) -> Result<(), TestCaseError> {
            let just_before = local_of(tz, start - Duration::seconds(1));
            prop_assert!(just_before < name, "{tz} {name}: the second before {start} shows {just_before}");
            let shown = local_of(tz, start);
            match tz.from_local_datetime(&name) {
                LocalResult::None => prop_assert!(shown > name, "{tz} {name}: {start} shows {shown}"),
                LocalResult::Single(one) => prop_assert_eq!(start, one.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, b) => {
                    prop_assert_eq!(start, a.min(b).with_timezone(&Utc), "the earlier pass")
                }
            }
            Ok(())
        }

        fn a_period<L: Copy + PartialEq + fmt::Debug>(
            t: DateTime<Utc>,
            u: f64,
            of: impl Fn(DateTime<Utc>) -> Period<L>,
        ) -> Result<Period<L>, TestCaseError> {
            let p = of(t);
            prop_assert!(p.start <= t && t < p.end, "{t} outside {p:?}");
            prop_assert_eq!(of(p.start), p, "its start is in it");
            prop_assert_eq!(of(p.end - Duration::seconds(1)), p, "its last second is in it");
            prop_assert_eq!(of(p.end).start, p.end, "the next one starts where it ends");
            prop_assert_eq!(of(p.start - Duration::seconds(1)).end, p.start, "the one before ends where it starts");
            // Every instant inside it is in it (so periods never overlap).
            #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
            let inside = p.start + Duration::seconds(((p.end - p.start).num_seconds() as f64 * u) as i64);
            prop_assert_eq!(of(inside), p);
            Ok(p)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

            #[test]
            fn every_instant_is_in_exactly_one_month((tz, t) in instants()) {
                let m = Month::of(t, tz);
                let (start, end) = (m.start(tz), m.end(tz));
                prop_assert!(start <= t && t < end, "{tz} {t}: {m} is {start}..{end}");
                prop_assert_eq!(Month::of(start, tz), m);
                prop_assert_eq!(Month::of(end - Duration::seconds(1), tz), m);
                prop_assert_eq!(Month::of(end, tz), m.next());
                prop_assert_eq!(m.next().start(tz), end);
                // The start is local midnight of the 1st, or the end of a gap over it.
                names(tz, m.first_date().and_time(NaiveTime::MIN), start)?;
                // The local month, except for a fold's second pass over the start of a month.
                let local = local_of(tz, t);
                if (local.year(), local.month()) != (m.year(), m.month()) {
                    prop_assert_eq!(Month::new(local.year(), local.month()).unwrap().next(), m);
                    prop_assert!(local_of(tz, start) > local, "{tz} {t}: not a fold over {start}");
                }
            }

            #[test]
            fn days_are_contiguous_and_start_at_local_midnight((tz, t) in instants(), u in 0.0..1.0f64) {
                let d = a_period(t, u, |t| day(t, tz))?;
                names(tz, d.label.and_time(NaiveTime::MIN), d.start)?;
                prop_assert_eq!(Month::of(t, tz), Month::of(d.start, tz), "a day is in one month");
                prop_assert!((d.end - d.start) <= Duration::hours(50), "{d:?}");
            }

            #[test]
            fn hours_are_contiguous_and_start_at_local_hours((tz, t) in instants(), u in 0.0..1.0f64) {
                let h = a_period(t, u, |t| hour(t, tz))?;
                names(tz, h.label, h.start)?;
                prop_assert_eq!((h.label.minute(), h.label.second()), (0, 0));
                prop_assert_eq!(day(t, tz), day(h.start, tz), "an hour is in one day");
            }

            #[test]
            fn a_local_time_names_the_first_instant_showing_it(
                (tz, t) in near_transitions(), minutes in -180i64..180
            ) {
                let name = local_of(tz, t) + Duration::minutes(minutes);
                let start = local_instant(tz, name);
                names(tz, name, start)?;
            }
        }

        #[test]
        fn the_zones_have_transitions_to_test() {
            for (tz, found) in transitions() {
                assert!(*tz == chrono_tz::UTC || found.len() > 2, "{tz}: {}", found.len());
            }
        }

        /// Every month from 1880 to 2040 in every zone, and every hour, day and month around every
        /// transition: the properties hold, and gaps and folds at a month's start are met.
        #[test]
        fn every_month_and_every_transition() {
            let (mut gaps, mut folds) = (0, 0);
            for (tz, found) in transitions() {
                let mut m = Month::new(1880, 1).unwrap();
                while m.year() < 2040 {
                    let midnight = m.first_date().and_time(NaiveTime::MIN);
                    match tz.from_local_datetime(&midnight) {
                        LocalResult::None => gaps += 1,
                        LocalResult::Ambiguous(..) => folds += 1,
                        LocalResult::Single(_) => {}
                    }
                    names(*tz, midnight, m.start(*tz)).unwrap();
                    assert_eq!(Month::of(m.start(*tz), *tz), m, "{tz} {m}");
                    assert_eq!(Month::of(m.start(*tz) - Duration::seconds(1), *tz), m.previous(), "{tz} {m}");
                    m = m.next();
                }
                for t in found {
                    for delta in [-3601, -3600, -1801, -1, 0, 1, 1799, 3599, 3600] {
                        let t = DateTime::<Utc>::from_timestamp(t + delta, 0).unwrap();
                        a_period(t, 0.5, |t| hour(t, *tz)).unwrap();
                        a_period(t, 0.5, |t| day(t, *tz)).unwrap();
                        let m = Month::of(t, *tz);
                        assert!(m.start(*tz) <= t && t < m.end(*tz), "{tz} {t}");
                    }
                }
            }
            assert!(gaps > 0 && folds > 0, "month starts in a gap: {gaps}, in a fold: {folds}");
        }
    }
}
