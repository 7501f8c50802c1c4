//! Budget thresholds: one incident per user (or team), calendar month (budget time zone),
//! threshold and limit — raising the limit re-arms the thresholds for the new limit. A team's
//! spend is what its members spent while in it (each request's `team_id`).

use ccp_schemas::events::{AlertRule, AlertSeverity};
use ccp_schemas::ids::{TeamId, UserId};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::{values, Incident, RequestFacts, Rules};

impl Rules {
    /// Counts a request's cost (unless `count` is false: it is in the seeded spend already) and
    /// checks the thresholds of its user's and team's budgets.
    pub(super) fn budget(&mut self, r: &RequestFacts, at: DateTime<Utc>, count: bool, out: &mut Vec<Incident>) {
        let Some(user_id) = r.user_id else { return };
        let month = self.month(at);
        if count {
            *self.spend.entry((user_id, month.clone())).or_default() += r.cost_usd;
        }
        self.check_budget(user_id, &month, at, out);
        if let Some(team_id) = r.team_id {
            if count {
                *self.team_spend.entry((team_id, month.clone())).or_default() += r.cost_usd;
            }
            self.check_team_budget(team_id, &month, at, out);
        }
    }

    pub(super) fn check_team_budget(&self, team_id: TeamId, month: &str, at: DateTime<Utc>, out: &mut Vec<Incident>) {
        let Some(team) = self.dir.team(&team_id) else { return };
        let Some(limit) = team.monthly_limit_usd.filter(|l| *l > Decimal::ZERO) else { return };
        let spend = self.team_spend.get(&(team_id, month.to_owned())).copied().unwrap_or_default();
        let percent = (spend * Decimal::ONE_HUNDRED / limit).floor();
        for &threshold in &self.cfg.budget_thresholds {
            if spend * Decimal::ONE_HUNDRED < limit * Decimal::from(threshold) {
                continue;
            }
            let limit = limit.normalize();
            out.push(Incident {
                rule: AlertRule::BudgetThreshold,
                key: format!("team_budget_threshold:{team_id}:{month}:{threshold}:{limit}"),
                severity: if threshold >= 100 { AlertSeverity::Critical } else { AlertSeverity::Warning },
                user_id: None,
                key_id: None,
                message: format!(
                    "Team {} has spent ${} of its ${limit} monthly budget ({percent}%, threshold {threshold}%) in {month}",
                    team.name,
                    spend.round_dp(2),
                ),
                values: values([
                    ("team_id", json!(team_id.to_string())),
                    ("month", json!(month)),
                    ("spend_usd", json!(spend.normalize().to_string())),
                    ("limit_usd", json!(limit.to_string())),
                    ("percent", json!(percent.to_string().parse::<u64>().unwrap_or(0))),
                    ("threshold_percent", json!(threshold)),
                ]),
                at,
            });
        }
    }

    pub(super) fn check_budget(&self, user_id: UserId, month: &str, at: DateTime<Utc>, out: &mut Vec<Incident>) {
        let Some(limit) = self.dir.user(&user_id).and_then(|u| u.monthly_limit_usd) else { return };
        if limit <= Decimal::ZERO {
            return;
        }
        let spend = self.spend.get(&(user_id, month.to_owned())).copied().unwrap_or_default();
        let percent = (spend * Decimal::ONE_HUNDRED / limit).floor();
        for &threshold in &self.cfg.budget_thresholds {
            if spend * Decimal::ONE_HUNDRED < limit * Decimal::from(threshold) {
                continue;
            }
            let limit = limit.normalize();
            out.push(Incident {
                rule: AlertRule::BudgetThreshold,
                key: format!("budget_threshold:{user_id}:{month}:{threshold}:{limit}"),
                severity: if threshold >= 100 { AlertSeverity::Critical } else { AlertSeverity::Warning },
                user_id: Some(user_id),
                key_id: None,
                message: format!(
                    "{} has spent ${} of the ${limit} monthly budget ({percent}%, threshold {threshold}%) in {month}",
                    self.user_name(user_id),
                    spend.round_dp(2),
                ),
                values: values([
                    ("month", json!(month)),
                    ("spend_usd", json!(spend.normalize().to_string())),
                    ("limit_usd", json!(limit.to_string())),
                    ("percent", json!(percent.to_string().parse::<u64>().unwrap_or(0))),
                    ("threshold_percent", json!(threshold)),
                ]),
                at,
            });
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

    #[test]
    fn budget_thresholds_fire_once_per_month_and_again_for_a_new_limit() {
        let mut g = Given::new();
        g.budget("100");
        assert!(g.spend("79.99").is_empty());
        let fired = g.spend("0.01");
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].key, format!("budget_threshold:{}:2026-11:80:100", g.user));
        assert_eq!(fired[0].severity, AlertSeverity::Warning);
        assert_eq!(fired[0].values["percent"], json!(80));
        assert!(fired[0].message.contains("dana"), "{}", fired[0].message);
        assert!(g.spend("5").is_empty(), "one incident, one alert");
        let full = g.spend("20");
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].severity, AlertSeverity::Critical);
        assert!(g.spend("1").is_empty());
        // A higher limit re-arms: 105 of 200 is below 80%, 160 is not.
        assert!(g.budget("200").is_empty());
        assert_eq!(keys(&g.spend("55")), [format!("budget_threshold:{}:2026-11:80:200", g.user)]);
        // A new month starts from zero.
        g.now = "2026-12-01T00:00:01Z".parse().unwrap();
        assert!(g.spend("1").is_empty());
    }

    #[test]
    fn team_thresholds_count_what_members_spent_in_the_team_and_not_after_they_left() {
        use ccp_schemas::ids::TeamId;
        let mut g = Given::new();
        let team_id = TeamId::new();
        g.when(Event::TeamCreated(TeamCreated { team_id, name: "x-files".into(), description: None }));
        g.when(Event::TeamBudgetSet(TeamBudgetSet { team_id, monthly_limit_usd: Some("100".parse().unwrap()) }));
        let in_team = |g: &mut Given, cost: &str, team: Option<TeamId>| {
            let mut r = request(g.user, g.key, cost);
            r.team_id = team;
            g.when(Event::RequestCompleted(r))
        };
        assert!(in_team(&mut g, "70", Some(team_id)).is_empty());
        // Spent after leaving the team: not the team's.
        assert!(in_team(&mut g, "20", None).is_empty());
        let fired = in_team(&mut g, "10", Some(team_id));
        assert_eq!(keys(&fired), [format!("team_budget_threshold:{team_id}:2026-11:80:100")]);
        assert!(fired[0].message.contains("Team x-files has spent $80 of its $100"), "{}", fired[0].message);
        assert_eq!(fired[0].values["team_id"], json!(team_id.to_string()));
        assert!(in_team(&mut g, "1", Some(team_id)).is_empty(), "one incident, one alert");
        // Lowering the team's limit under its spend fires the 100% threshold at once.
        let lowered =
            g.when(Event::TeamBudgetSet(TeamBudgetSet { team_id, monthly_limit_usd: Some("50".parse().unwrap()) }));
        assert_eq!(lowered.len(), 2, "{:?}", keys(&lowered));
    }

    #[test]
    fn lowering_the_limit_under_the_spend_fires_at_once() {
        let mut g = Given::new();
        g.spend("60");
        let fired = g.budget("50");
        assert_eq!(fired.len(), 2, "{:?}", keys(&fired));
    }

    #[test]
    fn the_month_is_the_budget_time_zone_s() {
        let alerts = AlertSettings { anomaly_factor: 0, ..AlertSettings::default() };
        let budgets = BudgetSettings { time_zone: "Asia/Tokyo".into(), ..BudgetSettings::default() };
        let mut g = Given::with(RuleConfig::new(&alerts, &budgets).unwrap());
        g.budget("10");
        g.now = "2026-11-30T14:59:59Z".parse().unwrap(); // 23:59:59 on 30 November in Tokyo
        assert!(g.spend("7").is_empty());
        g.now = "2026-11-30T15:00:00Z".parse().unwrap(); // 00:00 on 1 December in Tokyo
        assert!(g.spend("7.9").is_empty(), "December starts from zero in Tokyo");
        let fired = g.spend("0.1");
        assert_eq!(keys(&fired), [format!("budget_threshold:{}:2026-12:80:10", g.user)]);
    }
}
