//! Anomalies: a user's spend or request count in one window against their own average over the
//! baseline windows before it; one incident per user and window.

use ccp_schemas::events::{AlertRule, AlertSeverity};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::{values, Incident, RequestFacts, Rules};

/// Spend and request count of one window.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Usage {
    spend: Decimal,
    requests: u64,
}

impl Rules {
    pub(super) fn anomaly(&mut self, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
        let (Some(user_id), true) = (r.user_id, self.cfg.factor > 0) else { return };
        let (window, n) = (self.cfg.window_secs, self.cfg.baseline_windows);
        let index = at.timestamp().div_euclid(window);
        let windows = self.usage.entry(user_id).or_default();
        let current = {
            let u = windows.entry(index).or_default();
            u.spend += r.cost_usd;
            u.requests += 1;
            *u
        };
        // Keep the baseline's windows and the current one (and any later, out of order).
        let newest = windows.keys().next_back().copied().unwrap_or(index);
        *windows = windows.split_off(&(newest - n));
        let (spend, requests) =
            windows.range(index - n..index).fold((Decimal::ZERO, 0u64), |(s, c), (_, u)| (s + u.spend, c + u.requests));
        let factor = Decimal::from(self.cfg.factor);
        let n_dec = Decimal::from(n);
        let start = DateTime::<Utc>::from_timestamp(index * window, 0).unwrap_or(at);
        let base = |rule: AlertRule, what: &str, now: String, baseline: String| Incident {
            rule,
            key: format!("{}:{user_id}:{}", rule.as_str(), start.format("%Y-%m-%dT%H:%MZ")),
            severity: AlertSeverity::Warning,
            user_id: Some(user_id),
            key_id: None,
            message: String::new(),
            values: values([
                ("window_start", json!(start.to_rfc3339())),
                ("window_mins", json!(window / 60)),
                (what, json!(now)),
                ("baseline", json!(baseline)),
                ("factor", json!(self.cfg.factor)),
            ]),
            at,
        };
        let name = self.user_name(user_id);
        if current.spend >= self.cfg.min_spend && current.spend * n_dec > factor * spend {
            let baseline = (spend / n_dec).round_dp(4).normalize();
            let mut i =
                base(AlertRule::SpendAnomaly, "spend_usd", current.spend.normalize().to_string(), baseline.to_string());
            i.message = format!(
                "{name} spent ${} in the {}-minute window from {start}, over {}× their average of ${baseline}",
                current.spend.round_dp(2),
                window / 60,
                self.cfg.factor
            );
            out.push(i);
        }
        if current.requests >= self.cfg.min_requests
            && u128::from(current.requests) * n.unsigned_abs() as u128
                > u128::from(self.cfg.factor) * u128::from(requests)
        {
            let baseline = (Decimal::from(requests) / n_dec).round_dp(2).normalize();
            let mut i =
                base(AlertRule::RequestRateAnomaly, "requests", current.requests.to_string(), baseline.to_string());
            i.values.insert("requests".into(), json!(current.requests));
            i.message = format!(
                "{name} sent {} requests in the {}-minute window from {start}, over {}× their average of {baseline}",
                current.requests,
                window / 60,
                self.cfg.factor
            );
            out.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ccp_schemas::events::*;

    use super::*;
    use crate::alerts::rules::given::*;
    use crate::alerts::rules::*;

    /// Anomaly rules on: 5× the hourly average of a week, at least $10 or 50 requests.
    fn anomaly_cfg() -> RuleConfig {
        let alerts =
            AlertSettings { anomaly_min_spend_usd: Decimal::TEN, anomaly_min_requests: 50, ..AlertSettings::default() };
        RuleConfig::new(&alerts, &BudgetSettings::default()).unwrap()
    }

    #[test]
    fn anomalies_need_both_the_factor_and_the_floor() {
        let mut g = Given::with(anomaly_cfg());
        // Baseline: $1 per hour for a week → 168 windows averaging $1.
        let now = g.now;
        for h in 1..=168 {
            g.now = now - chrono::Duration::hours(h);
            assert!(g.spend("1").is_empty());
        }
        g.now = now;
        assert!(g.spend("4.99").is_empty(), "not 5× the average of $1");
        assert!(g.spend("0.02").is_empty(), "$5.01 is over 5× the average but under the $10 floor");
        let fired = g.spend("5");
        assert_eq!(keys(&fired), [format!("spend_anomaly:{}:2026-11-20T12:00Z", g.user)]);
        assert!(g.spend("100").is_empty(), "once per window");
        g.now = now + chrono::Duration::hours(1);
        assert_eq!(g.spend("50").len(), 1, "the next window is a new incident");
    }

    #[test]
    fn a_request_burst_is_a_rate_anomaly_even_when_cheap() {
        let mut g = Given::with(anomaly_cfg());
        let fired: Vec<Incident> = (0..60).flat_map(|_| g.spend("0")).collect();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].rule, AlertRule::RequestRateAnomaly);
        assert_eq!(fired[0].values["requests"], json!(50));
    }
}
