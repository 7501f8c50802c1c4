//! The status line itself, as a pure function of what is known: one line of at most
//! [`WIDTH`] columns (ASCII only, so bytes are columns), optionally with ANSI colours, and the
//! same facts as JSON.
//!
//! ```text
//! Plan 5h 42% (resets 17:00) | 7d 63% (resets Mon 09:00) | $12.40 of $200 budget
//! Bedrock since 14:02 (Plan limit) | Plan 5h 100% (17:00) | 7d 63% | $12.40/$200
//! ```
//!
//! When everything does not fit, details go in this order: the words "resets", the 7-day reset,
//! "On" and the budget's words, the 7-day window, the 5-hour reset, the budget; what is left is
//! cut with `...`.

use ccp_schemas::events::{FallbackReason, TripReason, UnifiedLimit, UnifiedWindow};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// The widest line.
pub const WIDTH: usize = 80;
/// Above this share of a window, or of the budget, it is shown in amber.
pub const WARN_ABOVE: f64 = 0.8;

const AMBER: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BLUE: &str = "\x1b[34m";
const RESET: &str = "\x1b[0m";

/// Why the key's requests go to Bedrock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BedrockReason {
    /// Anthropic failed the last request (or opened the circuit) for this reason.
    Fallback(FallbackReason),
    /// The circuit opened for this reason.
    Trip(TripReason),
}

impl BedrockReason {
    /// What the developer reads.
    pub fn text(self) -> &'static str {
        match self {
            Self::Fallback(FallbackReason::UsageLimit) | Self::Trip(TripReason::UsageLimit) => "Plan limit",
            Self::Fallback(FallbackReason::RateLimited) | Self::Trip(TripReason::RateLimited) => "rate limited",
            Self::Fallback(FallbackReason::Overloaded) | Self::Trip(TripReason::Overloaded) => "overloaded",
            Self::Fallback(FallbackReason::ServerError) | Self::Trip(TripReason::ServerError) => "Anthropic errors",
            Self::Fallback(FallbackReason::ConnectError) | Self::Trip(TripReason::ConnectError) => "unreachable",
            Self::Fallback(FallbackReason::Timeout) | Self::Trip(TripReason::Timeout) => "timeouts",
            Self::Trip(TripReason::ProbeFailed) => "still failing",
            Self::Fallback(FallbackReason::CircuitOpen) => "circuit open",
            Self::Fallback(FallbackReason::Routing) => "routing",
        }
    }

    /// The snake_case code (the event's `fallback_reason` or `trip reason`).
    pub fn code(self) -> &'static str {
        match self {
            Self::Fallback(FallbackReason::UsageLimit) | Self::Trip(TripReason::UsageLimit) => "usage_limit",
            Self::Fallback(FallbackReason::RateLimited) | Self::Trip(TripReason::RateLimited) => "rate_limited",
            Self::Fallback(FallbackReason::Overloaded) | Self::Trip(TripReason::Overloaded) => "overloaded",
            Self::Fallback(FallbackReason::ServerError) | Self::Trip(TripReason::ServerError) => "server_error",
            Self::Fallback(FallbackReason::ConnectError) | Self::Trip(TripReason::ConnectError) => "connect_error",
            Self::Fallback(FallbackReason::Timeout) | Self::Trip(TripReason::Timeout) => "timeout",
            Self::Trip(TripReason::ProbeFailed) => "probe_failed",
            Self::Fallback(FallbackReason::CircuitOpen) => "circuit_open",
            Self::Fallback(FallbackReason::Routing) => "routing",
        }
    }
}

/// The key's requests go to Bedrock.
#[derive(Debug, Clone, PartialEq)]
pub struct OnBedrock {
    /// Since when (unknown for a user routed to Bedrock whose requests were not seen).
    pub since: Option<DateTime<Utc>>,
    /// Why the key is on Bedrock: the last failover's reason or the circuit's trip reason.
    pub reason: BedrockReason,
    /// The circuit's state when it is what sends them (`open`, `half_open`).
    pub circuit: Option<&'static str>,
}

/// The user's month against their budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Month to date, every replica's finished requests.
    pub spent: Decimal,
    /// The monthly limit.
    pub limit: Decimal,
    /// `YYYY-MM-01` of the next month (in the budget time zone).
    pub resets_on: String,
    /// The budget time zone.
    pub tz: Tz,
}

/// Everything a line is made of.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The time the line is rendered for (times are shown relative to it, in its zone).
    pub now: DateTime<Utc>,
    /// The developer's time zone (for reset and "since" times).
    pub tz: Tz,
    /// The newest Plan-limit state with the unified limits, and when it was observed.
    pub plan: Option<(&'a UnifiedLimit, DateTime<Utc>)>,
    /// Whether Anthropic has reported any limits for the key (an API key without a Plan
    /// reports only request/token limits).
    pub limits_seen: bool,
    /// Where requests go, when it is Bedrock.
    pub bedrock: Option<OnBedrock>,
    /// The budget, when the user has one.
    pub budget: Option<Budget>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Colour {
    Amber,
    Red,
    Blue,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Self::Amber => AMBER,
            Self::Red => RED,
            Self::Blue => BLUE,
        }
    }
}

/// How much of a part is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Detail {
    Hidden,
    /// The figure alone.
    Figure,
    /// The figure and its time, briefly.
    Short,
    /// Everything, in words.
    Full,
}

/// One detail level per part: 5-hour window, 7-day window, Bedrock, budget.
const LEVELS: [[Detail; 4]; 7] = {
    use Detail::{Figure, Full, Hidden, Short};
    [
        [Full, Full, Full, Full],
        [Short, Short, Full, Full],
        [Short, Figure, Full, Full],
        [Short, Figure, Short, Short],
        [Short, Hidden, Short, Short],
        [Figure, Hidden, Short, Short],
        [Figure, Hidden, Short, Hidden],
    ]
};

/// A window is used up: Anthropic says `rejected`, or it is at 100 %.
pub fn exhausted(window: &UnifiedWindow) -> bool {
    window.status.as_deref() == Some("rejected") || window.utilization.is_some_and(|u| u >= 1.0)
}

/// The window's figures are from before its reset: they describe nothing current.
pub fn stale(window: &UnifiedWindow, now: DateTime<Utc>) -> bool {
    window.reset.is_some_and(|r| r <= now)
}

/// The share used, as a whole percentage.
fn percent(share: f64) -> i64 {
    // Bounded: a figure far off the scale is still shown as a percentage.
    (share.clamp(0.0, 100.0) * 100.0).round() as i64
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `HH:MM` today, `Ddd HH:MM` within six days either way, else `Mmm D`, in `tz`.
pub fn when(at: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> String {
    let (local, today) = (at.with_timezone(&tz), now.with_timezone(&tz));
    let days = (local.date_naive() - today.date_naive()).num_days();
    let hm = format!("{:02}:{:02}", local.hour(), local.minute());
    match days {
        0 => hm,
        -6..=6 => format!("{} {hm}", WEEKDAYS[local.weekday().num_days_from_monday() as usize]),
        _ => format!("{} {}", MONTHS[local.month0() as usize], local.day()),
    }
}

/// Dollars with cents; a whole limit without them.
fn dollars(amount: Decimal, cents: bool) -> String {
    let rounded = amount.round_dp(2);
    if !cents && rounded.fract().is_zero() {
        format!("${}", rounded.trunc())
    } else {
        format!("${rounded:.2}")
    }
}

struct Part {
    text: String,
    colour: Option<Colour>,
}

fn window_part(name: &str, w: &UnifiedWindow, facts: &Facts<'_>, detail: Detail, first: bool) -> Option<Part> {
    if detail == Detail::Hidden {
        return None;
    }
    let plan = if first { "Plan " } else { "" };
    if stale(w, facts.now) {
        // The window has reset since Anthropic last reported it: its share is unknown.
        return Some(Part { text: format!("{plan}{name} --"), colour: None });
    }
    let Some(share) = w.utilization else {
        return Some(Part { text: format!("{plan}{name} ?%"), colour: None });
    };
    let figure = format!("{plan}{name} {}%", percent(share));
    let text = match (detail, w.reset) {
        (Detail::Full, Some(r)) => format!("{figure} (resets {})", when(r, facts.now, facts.tz)),
        (Detail::Short, Some(r)) => format!("{figure} ({})", when(r, facts.now, facts.tz)),
        _ => figure,
    };
    let colour = if exhausted(w) {
        Some(Colour::Red)
    } else if share > WARN_ABOVE {
        Some(Colour::Amber)
    } else {
        None
    };
    Some(Part { text, colour })
}

fn parts(facts: &Facts<'_>, level: [Detail; 4]) -> Vec<Part> {
    let [five, seven, bedrock, budget] = level;
    let mut out = Vec::with_capacity(4);
    if let Some(b) = &facts.bedrock {
        let lead = if bedrock == Detail::Full { "On Bedrock" } else { "Bedrock" };
        let since = b.since.map(|s| format!(" since {}", when(s, facts.now, facts.tz))).unwrap_or_default();
        out.push(Part { text: format!("{lead}{since} ({})", b.reason.text()), colour: Some(Colour::Blue) });
    }
    match facts.plan {
        Some((unified, _)) => {
            let mut first = true;
            for (name, window, detail) in [("5h", &unified.five_hour, five), ("7d", &unified.seven_day, seven)] {
                if let Some(part) = window.as_ref().and_then(|w| window_part(name, w, facts, detail, first)) {
                    first = false;
                    out.push(part);
                }
            }
            if first {
                // Unified limits without windows: their overall status.
                let status = unified.status.as_deref().unwrap_or("?");
                let colour = (status == "rejected").then_some(Colour::Red);
                out.push(Part { text: format!("Plan {status}"), colour });
            }
        }
        None if facts.limits_seen => out.push(Part { text: "no Plan limits reported".into(), colour: None }),
        None => out.push(Part { text: "Plan limits: none seen yet".into(), colour: None }),
    }
    if let (Some(b), true) = (&facts.budget, budget != Detail::Hidden) {
        let (spent, limit) = (dollars(b.spent, true), dollars(b.limit, false));
        let text = match budget {
            Detail::Full if b.spent >= b.limit => format!("budget used up: {spent} of {limit}"),
            Detail::Full => format!("{spent} of {limit} budget"),
            _ => format!("{spent}/{limit}"),
        };
        let colour = if b.spent >= b.limit {
            Some(Colour::Red)
        } else if b.limit > Decimal::ZERO && b.spent > b.limit * Decimal::new(8, 1) {
            Some(Colour::Amber)
        } else {
            None
        };
        out.push(Part { text, colour });
    }
    out
}

fn join(parts: &[Part], colour: bool) -> String {
    let mut line = String::with_capacity(WIDTH + 32);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            line.push_str(" | ");
        }
        match (colour, part.colour) {
            (true, Some(c)) => {
                line.push_str(c.code());
                line.push_str(&part.text);
                line.push_str(RESET);
            }
            _ => line.push_str(&part.text),
        }
    }
    line
}

/// Keeps ASCII printable characters only (nothing in a line can move the cursor or recolour).
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect()
}

/// The line, at most [`WIDTH`] columns; with ANSI colours when `colour`.
pub fn line(facts: &Facts<'_>, colour: bool) -> String {
    for level in LEVELS {
        let parts = parts(facts, level);
        let plain_width: usize =
            parts.iter().map(|p| printable(&p.text).len()).sum::<usize>() + 3 * parts.len().saturating_sub(1);
        if plain_width <= WIDTH {
            let parts: Vec<Part> =
                parts.into_iter().map(|p| Part { text: printable(&p.text), colour: p.colour }).collect();
            return join(&parts, colour);
        }
    }
    // Still too wide (cannot happen with the parts above): cut, without colour.
    let plain = printable(&join(&parts(facts, LEVELS[LEVELS.len() - 1]), false));
    format!("{}...", &plain[..WIDTH - 3])
}

/// One window as JSON.
fn window_json(w: &UnifiedWindow, facts: &Facts<'_>) -> Value {
    let is_stale = stale(w, facts.now);
    json!({
        "utilization": if is_stale { None } else { w.utilization },
        "percent": if is_stale { None } else { w.utilization.map(percent) },
        "status": w.status,
        "resets_at": w.reset,
        "resets_local": w.reset.map(|r| when(r, facts.now, facts.tz)),
        "exhausted": !is_stale && exhausted(w),
        "stale": is_stale,
    })
}

/// The overall state: `exhausted` (a window used up), `bedrock`, `warning` (a window above
/// 80 %), `ok`.
pub fn state(facts: &Facts<'_>) -> &'static str {
    let windows = || {
        facts
            .plan
            .iter()
            .flat_map(|(u, _)| [u.five_hour.as_ref(), u.seven_day.as_ref()])
            .flatten()
            .filter(|w| !stale(w, facts.now))
    };
    if windows().any(exhausted) || facts.plan.is_some_and(|(u, _)| u.status.as_deref() == Some("rejected")) {
        "exhausted"
    } else if facts.bedrock.is_some() {
        "bedrock"
    } else if windows().any(|w| w.utilization.is_some_and(|u| u > WARN_ABOVE)) {
        "warning"
    } else {
        "ok"
    }
}

/// The JSON form: the plain line and the facts it shows.
pub fn json(facts: &Facts<'_>, key_prefix: &str) -> Value {
    let plan = facts.plan.map(|(u, observed_at)| {
        json!({
            "status": u.status,
            "observed_at": observed_at,
            "five_hour": u.five_hour.as_ref().map(|w| window_json(w, facts)),
            "seven_day": u.seven_day.as_ref().map(|w| window_json(w, facts)),
        })
    });
    let bedrock = facts.bedrock.as_ref().map(|b| {
        json!({
            "since": b.since,
            "since_local": b.since.map(|s| when(s, facts.now, facts.tz)),
            "reason": b.reason.code(),
            "reason_text": b.reason.text(),
            "circuit": b.circuit,
        })
    });
    let budget = facts.budget.as_ref().map(|b| {
        json!({
            "spent_usd": b.spent.round_dp(9).normalize().to_string(),
            "limit_usd": b.limit.normalize().to_string(),
            "remaining_usd": (b.limit - b.spent).max(Decimal::ZERO).round_dp(9).normalize().to_string(),
            "resets_on": b.resets_on,
            "time_zone": b.tz.name(),
        })
    });
    json!({
        "line": line(facts, false),
        "state": state(facts),
        "key_prefix": key_prefix,
        "time_zone": facts.tz.name(),
        "plan": plan,
        "on_bedrock": facts.bedrock.is_some(),
        "bedrock": bedrock,
        "budget": budget,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn window(share: f64, reset: &str, status: &str) -> UnifiedWindow {
        UnifiedWindow { status: Some(status.into()), reset: Some(t(reset)), utilization: Some(share) }
    }

    fn unified(five: f64, seven: f64) -> UnifiedLimit {
        UnifiedLimit {
            status: Some("allowed".into()),
            five_hour: Some(window(five, "2026-05-13T15:00:00Z", if five >= 1.0 { "rejected" } else { "allowed" })),
            seven_day: Some(window(seven, "2026-05-18T07:00:00Z", "allowed")),
            ..UnifiedLimit::default()
        }
    }

    /// Wednesday 2026-05-13, 12:30 UTC (14:30 in Berlin).
    fn facts(plan: &UnifiedLimit) -> Facts<'_> {
        Facts {
            now: t("2026-05-13T12:30:00Z"),
            tz: chrono_tz::Europe::Berlin,
            plan: Some((plan, t("2026-05-13T12:29:00Z"))),
            limits_seen: true,
            bedrock: None,
            budget: None,
        }
    }

    fn budget(spent: i64, limit: i64) -> Budget {
        Budget {
            spent: Decimal::new(spent, 2),
            limit: Decimal::new(limit, 0),
            resets_on: "2026-06-01".into(),
            tz: chrono_tz::UTC,
        }
    }

    #[test]
    fn the_plan_windows_show_their_share_and_next_reset_in_the_developers_zone() {
        let plan = unified(0.42, 0.63);
        let mut f = facts(&plan);
        f.budget = Some(budget(1240, 200));
        assert_eq!(line(&f, false), "Plan 5h 42% (resets 17:00) | 7d 63% (resets Mon 09:00) | $12.40 of $200 budget");
        f.tz = chrono_tz::UTC;
        assert!(line(&f, false).starts_with("Plan 5h 42% (resets 15:00) | 7d 63% (resets Mon 07:00)"));
        f.tz = chrono_tz::America::Los_Angeles;
        assert!(line(&f, false).starts_with("Plan 5h 42% (resets 08:00)"), "{}", line(&f, false));
        assert_eq!(state(&f), "ok");
    }

    #[test]
    fn bedrock_comes_first_and_the_line_gives_up_details_to_fit() {
        let plan = unified(1.0, 0.63);
        let mut f = facts(&plan);
        f.bedrock = Some(OnBedrock {
            since: Some(t("2026-05-13T12:02:00Z")),
            reason: BedrockReason::Fallback(FallbackReason::UsageLimit),
            circuit: None,
        });
        f.budget = Some(budget(1240, 200));
        let l = line(&f, false);
        assert_eq!(l, "Bedrock since 14:02 (Plan limit) | Plan 5h 100% (17:00) | 7d 63% | $12.40/$200");
        assert!(l.len() <= WIDTH, "{} columns", l.len());
        assert_eq!(state(&f), "exhausted");
        f.budget = None;
        let l = line(&f, false);
        assert_eq!(l, "On Bedrock since 14:02 (Plan limit) | Plan 5h 100% (17:00) | 7d 63% (Mon 09:00)");
        // The longest reason, a date, a large budget spent: still one line of 80 at most.
        f.bedrock = Some(OnBedrock {
            since: Some(t("2026-04-01T00:00:00Z")),
            reason: BedrockReason::Fallback(FallbackReason::ServerError),
            circuit: Some("open"),
        });
        f.budget = Some(budget(987_654_321, 10_000_000));
        let l = line(&f, false);
        assert!(l.len() <= WIDTH && l.starts_with("Bedrock since Apr 1 (Anthropic errors) | Plan 5h 100%"), "{l}");
    }

    #[test]
    fn colours_mark_warning_exhaustion_and_bedrock_and_are_off_by_default() {
        let plan = unified(0.91, 0.5);
        let f = facts(&plan);
        let plain = line(&f, false);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        let coloured = line(&f, true);
        assert!(coloured.starts_with(&format!("{AMBER}Plan 5h 91%")), "{coloured:?}");
        assert!(coloured.contains(&format!("{RESET} | 7d 50%")), "7d is below 80 %: {coloured:?}");
        assert_eq!(state(&f), "warning");
        let plan = unified(1.0, 0.5);
        let mut f = facts(&plan);
        f.bedrock =
            Some(OnBedrock { since: None, reason: BedrockReason::Fallback(FallbackReason::Routing), circuit: None });
        let coloured = line(&f, true);
        assert!(
            coloured.starts_with(&format!("{BLUE}On Bedrock (routing){RESET} | {RED}Plan 5h 100%")),
            "{coloured:?}"
        );
        // Without the escapes the coloured line is the plain one.
        let stripped = coloured.replace(AMBER, "").replace(RED, "").replace(BLUE, "").replace(RESET, "");
        assert_eq!(stripped, line(&f, false));
    }

    #[test]
    fn a_window_past_its_reset_is_unknown_not_full() {
        let plan = unified(1.0, 0.2);
        let mut f = facts(&plan);
        f.now = t("2026-05-13T15:30:00Z");
        assert!(line(&f, false).starts_with("Plan 5h -- | 7d 20%"), "{}", line(&f, false));
        assert_eq!(state(&f), "ok");
        let j = json(&f, "ak_abc");
        assert_eq!(j["plan"]["five_hour"]["stale"], true);
        assert_eq!(j["plan"]["five_hour"]["percent"], Value::Null);
        assert_eq!(j["plan"]["seven_day"]["percent"], 20);
    }

    #[test]
    fn without_plan_limits_the_line_says_so() {
        let empty = UnifiedLimit::default();
        let mut f = facts(&empty);
        f.plan = None;
        assert_eq!(line(&f, false), "no Plan limits reported");
        f.limits_seen = false;
        f.budget = Some(budget(25_000, 200));
        let l = line(&f, true);
        assert_eq!(l, format!("Plan limits: none seen yet | {RED}budget used up: $250.00 of $200{RESET}"));
    }

    #[test]
    fn times_are_today_this_week_or_a_date() {
        let now = t("2026-05-13T12:30:00Z");
        let tz = chrono_tz::Asia::Tokyo;
        assert_eq!(when(t("2026-05-13T13:00:00Z"), now, tz), "22:00");
        assert_eq!(when(t("2026-05-13T15:05:00Z"), now, tz), "Thu 00:05", "after midnight in Tokyo");
        assert_eq!(when(t("2026-05-08T01:00:00Z"), now, tz), "Fri 10:00");
        assert_eq!(when(t("2026-06-30T01:00:00Z"), now, tz), "Jun 30");
    }

    #[test]
    fn json_carries_the_figures_and_the_plain_line() {
        let plan = unified(0.42, 0.63);
        let mut f = facts(&plan);
        f.budget = Some(budget(1240, 200));
        f.bedrock = Some(OnBedrock {
            since: Some(t("2026-05-13T12:02:00Z")),
            reason: BedrockReason::Trip(TripReason::RateLimited),
            circuit: Some("open"),
        });
        let j = json(&f, "ak_abc");
        assert_eq!(j["line"], line(&f, false));
        assert_eq!(j["state"], "bedrock");
        assert_eq!(j["plan"]["five_hour"]["percent"], 42);
        assert_eq!(j["plan"]["five_hour"]["resets_local"], "17:00");
        assert_eq!(j["bedrock"]["reason"], "rate_limited");
        assert_eq!(j["bedrock"]["circuit"], "open");
        assert_eq!(j["bedrock"]["since_local"], "14:02");
        assert_eq!(j["budget"]["spent_usd"], "12.4");
        assert_eq!(j["budget"]["remaining_usd"], "187.6");
        assert_eq!(j["time_zone"], "Europe/Berlin");
    }
}
