//! The alert rules as one pure fold: events in (admin, request and circuit streams), new
//! incidents out. No I/O and no clock: the time of an incident is its triggering event's.
//!
//! An incident is raised once: every incident key (already raised here, or seen as an
//! `alert_raised` event) is remembered, so replaying the streams after a restart finds the same
//! incidents again and raises none of them twice. What one incident is, per rule:
//! - budget: one per user, calendar month (budget time zone), threshold and limit — raising the
//!   limit re-arms the thresholds for the new limit;
//! - circuit open: one per opening of a key's circuit, until it closes (half-open and a failed
//!   probe are the same incident);
//! - open circuits: one when the number of open circuits reaches the threshold, re-armed when it
//!   falls below it again;
//! - Bedrock auth: one per key from the first refusal until a Bedrock request of that key
//!   succeeds or its Bedrock API key is replaced;
//! - anomalies: one per user and window;
//! - unpriced model: one per model name, ever (the first request whose tokens had no price);
//! - Bedrock key not ready: one per key each time a readiness check turns it from ready (or
//!   unchecked) to not ready.
//!
//! One file per rule family, each an `impl Rules` with its given/when/then tests: `budget.rs`,
//! `circuits.rs` (circuit open, many open circuits), `bedrock.rs` (auth failures, a key turning
//! not ready), `unpriced.rs`, `anomaly.rs` (spend and request rate); this file holds the fold that
//! dispatches events to them and remembers what was raised.

mod anomaly;
mod bedrock;
mod budget;
mod circuits;
#[cfg(test)]
mod given;
mod unpriced;

use std::collections::{BTreeMap, HashMap, HashSet};

use ccp_runtime::config::{AlertSettings, BudgetSettings, ConfigError};
use ccp_schemas::calendar::Month;
use ccp_schemas::events::{
    AlertRule, AlertSeverity, BedrockApiKeyRegistered, BedrockApiKeyRotated, ErrorClass, Event, Provider,
    RequestCompleted,
};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::state::Directory;
use ccp_schemas::Envelope;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::anomaly::Usage;

/// What the rules read of a usage event. The evaluator decodes just this from the request
/// stream (most of the events it reads), not the whole [`RequestCompleted`].
#[derive(Debug, Clone, Deserialize)]
pub struct RequestFacts {
    /// The request.
    pub request_id: RequestId,
    /// Its access key, when recognised.
    #[serde(default)]
    pub key_id: Option<AccessKeyId>,
    /// The key's owner.
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// The owner's team when the request was made.
    #[serde(default)]
    pub team_id: Option<ccp_schemas::ids::TeamId>,
    /// Who answered.
    pub provider: Provider,
    /// Status sent to the client.
    pub status: u16,
    /// What went wrong, if anything.
    #[serde(default)]
    pub error_class: Option<ErrorClass>,
    /// Cost in USD (an unknown cost, `null`, adds nothing).
    #[serde(default, deserialize_with = "cost_or_zero")]
    pub cost_usd: Decimal,
    /// No price covered the model (its cost is unknown).
    #[serde(default)]
    pub unpriced: bool,
    /// What the request was priced as.
    #[serde(default)]
    pub priced_model: Option<String>,
}

fn cost_or_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    Ok(ccp_schemas::pricing::decimal_str_option::deserialize(d)?.unwrap_or_default())
}

impl From<&RequestCompleted> for RequestFacts {
    fn from(r: &RequestCompleted) -> Self {
        Self {
            request_id: r.request_id,
            key_id: r.key_id,
            user_id: r.user_id,
            team_id: r.team_id,
            provider: r.provider,
            status: r.status,
            error_class: r.error_class,
            cost_usd: r.cost_usd.unwrap_or_default(),
            unpriced: r.unpriced,
            priced_model: r.priced_model.clone(),
        }
    }
}

/// The rules' thresholds.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// Budget percentages that raise an alert.
    pub budget_thresholds: Vec<u32>,
    /// Alert when a circuit opens.
    pub circuit_open: bool,
    /// Alert when this many circuits are open (0: off).
    pub open_circuits_threshold: usize,
    /// Alert when Bedrock refuses a key's Bedrock API key.
    pub bedrock_auth: bool,
    /// Anomaly window, in seconds.
    pub window_secs: i64,
    /// Windows in the baseline.
    pub baseline_windows: i64,
    /// Anomaly factor (0: off).
    pub factor: u32,
    /// Smallest anomalous spend.
    pub min_spend: Decimal,
    /// Smallest anomalous request count.
    pub min_requests: u64,
    /// Budget time zone.
    pub tz: chrono_tz::Tz,
}

impl RuleConfig {
    /// From the `[alerts]` and `[budgets]` settings.
    pub fn new(alerts: &AlertSettings, budgets: &BudgetSettings) -> Result<Self, ConfigError> {
        let window_secs = i64::from(alerts.anomaly_window_mins.max(1)) * 60;
        Ok(Self {
            budget_thresholds: alerts.budget_thresholds_percent.clone(),
            circuit_open: alerts.circuit_open,
            open_circuits_threshold: alerts.open_circuits_threshold,
            bedrock_auth: alerts.bedrock_auth_failure,
            window_secs,
            baseline_windows: (i64::from(alerts.anomaly_baseline_days.max(1)) * 86_400 / window_secs).max(1),
            factor: alerts.anomaly_factor,
            min_spend: alerts.anomaly_min_spend_usd,
            min_requests: alerts.anomaly_min_requests,
            tz: budgets.tz()?,
        })
    }
}

/// A new incident, before it becomes an `alert_raised` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// The rule.
    pub rule: AlertRule,
    /// The de-duplication key.
    pub key: String,
    /// How urgent.
    pub severity: AlertSeverity,
    /// The user concerned.
    pub user_id: Option<UserId>,
    /// The key concerned.
    pub key_id: Option<AccessKeyId>,
    /// For people.
    pub message: String,
    /// Measured values.
    pub values: BTreeMap<String, Value>,
    /// When the triggering event happened.
    pub at: DateTime<Utc>,
}

/// The rules' state.
#[derive(Debug)]
pub struct Rules {
    cfg: RuleConfig,
    dir: Directory,
    raised: HashSet<String>,
    /// Month-to-date spend per user and month (`YYYY-MM` in the budget time zone).
    spend: HashMap<(UserId, String), Decimal>,
    /// Month-to-date spend per team (the team of each request when it was made) and month.
    team_spend: HashMap<(ccp_schemas::ids::TeamId, String), Decimal>,
    /// Requests up to this request-stream sequence are in the spend already ([`Rules::seed_spend`]):
    /// replayed again (for the anomaly windows), their cost is not added twice.
    seeded_through: u64,
    /// Keys with an open circuit → the circuit stream sequence of the opening.
    open: BTreeMap<AccessKeyId, u64>,
    /// Whether the open-circuits alert can fire (below the threshold since it last did).
    many_armed: bool,
    /// Keys whose Bedrock API key is being refused → when that started.
    auth_failing: HashMap<AccessKeyId, DateTime<Utc>>,
    /// Usage per user and window index.
    usage: HashMap<UserId, BTreeMap<i64, Usage>>,
    /// The last readiness recorded per key (a new Bedrock API key starts unchecked).
    readiness: HashMap<AccessKeyId, ccp_schemas::events::BedrockReadiness>,
}

/// What a snapshot of the rules holds: the state folded from the admin stream (the directory,
/// each key's last Bedrock readiness) and every incident raised. The rest (spend, usage windows,
/// open circuits, refused Bedrock keys) is rebuilt from the request and circuit streams at each
/// start, after the admin stream, as without a snapshot.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    directory: &'a Directory,
    raised: Vec<&'a String>,
    readiness: Vec<(&'a AccessKeyId, &'a ccp_schemas::events::BedrockReadiness)>,
}

/// A snapshot of the rules, as read back.
#[derive(Deserialize)]
struct Snapshot {
    directory: Directory,
    raised: HashSet<String>,
    readiness: Vec<(AccessKeyId, ccp_schemas::events::BedrockReadiness)>,
}

impl Rules {
    /// The rules' admin-stream state and raised incidents as a snapshot saves them (JSON).
    pub fn snapshot(&self) -> serde_json::Result<Vec<u8>> {
        let mut raised: Vec<&String> = self.raised.iter().collect();
        raised.sort_unstable();
        let mut readiness: Vec<_> = self.readiness.iter().collect();
        readiness.sort_unstable_by_key(|(key, _)| **key);
        serde_json::to_vec(&SnapshotRef { directory: &self.dir, raised, readiness })
    }

    /// Takes the admin-stream state and raised incidents of a snapshot (rules with no history
    /// otherwise: call it before anything is applied).
    pub fn restore(&mut self, bytes: &[u8]) -> serde_json::Result<()> {
        let snapshot: Snapshot = serde_json::from_slice(bytes)?;
        self.dir = snapshot.directory;
        self.raised = snapshot.raised;
        self.readiness = snapshot.readiness.into_iter().collect();
        Ok(())
    }

    /// Rules with no history.
    pub fn new(cfg: RuleConfig) -> Self {
        Self {
            cfg,
            dir: Directory::default(),
            raised: HashSet::new(),
            spend: HashMap::new(),
            team_spend: HashMap::new(),
            seeded_through: 0,
            open: BTreeMap::new(),
            many_armed: true,
            auth_failing: HashMap::new(),
            usage: HashMap::new(),
            readiness: HashMap::new(),
        }
    }

    /// Starts the month-to-date spend of `month` (`YYYY-MM`) from totals of every request up to
    /// request-stream sequence `through` (per user, and per team at request time), read from the
    /// analytics tables instead of replaying the month.
    pub fn seed_spend(
        &mut self,
        month: &str,
        through: u64,
        users: impl IntoIterator<Item = (UserId, Decimal)>,
        teams: impl IntoIterator<Item = (ccp_schemas::ids::TeamId, Decimal)>,
    ) {
        for (user_id, usd) in users {
            *self.spend.entry((user_id, month.to_owned())).or_default() += usd;
        }
        for (team_id, usd) in teams {
            *self.team_spend.entry((team_id, month.to_owned())).or_default() += usd;
        }
        self.seeded_through = self.seeded_through.max(through);
    }

    /// Whether an incident was already raised.
    pub fn was_raised(&self, key: &str) -> bool {
        self.raised.contains(key)
    }

    /// Applies one event (`seq`: its sequence in its own stream); returns the incidents it
    /// starts that were not raised before (and remembers them as raised).
    pub fn apply(&mut self, seq: u64, envelope: &Envelope) -> Vec<Incident> {
        let at = envelope.occurred_at;
        let mut out = Vec::new();
        match &envelope.event {
            Event::AlertRaised(e) => {
                self.raised.insert(e.incident.clone());
            }
            Event::RequestCompleted(r) => return self.apply_request(seq, at, &RequestFacts::from(r)),
            Event::CircuitOpened(e) => self.circuit_opened(seq, e.key_id, e.failures, at, &mut out),
            Event::CircuitHalfOpened(_) => {}
            Event::CircuitClosed(e) => self.circuit_closed(e.key_id),
            Event::BedrockKeyChecked(e) => {
                self.dir.apply(envelope);
                self.bedrock_key_checked(seq, e, at, &mut out);
            }
            Event::BedrockApiKeyRegistered(BedrockApiKeyRegistered { key_id, .. })
            | Event::BedrockApiKeyRotated(BedrockApiKeyRotated { key_id, .. }) => {
                self.dir.apply(envelope);
                self.bedrock_key_replaced(*key_id);
            }
            Event::BudgetSet(e) => {
                self.dir.apply(envelope);
                let month = self.month(at);
                self.check_budget(e.user_id, &month, at, &mut out);
            }
            Event::TeamBudgetSet(e) => {
                self.dir.apply(envelope);
                let month = self.month(at);
                self.check_team_budget(e.team_id, &month, at, &mut out);
            }
            _ => {
                self.dir.apply(envelope);
            }
        }
        out.retain(|i| self.raised.insert(i.key.clone()));
        out
    }

    /// [`Rules::apply`] for a usage event that occurred at `at`.
    pub fn apply_request(&mut self, seq: u64, at: DateTime<Utc>, r: &RequestFacts) -> Vec<Incident> {
        let mut out = Vec::new();
        self.budget(r, at, seq > self.seeded_through, &mut out);
        self.anomaly(r, at, &mut out);
        self.bedrock_auth(seq, r, at, &mut out);
        self.unpriced(r, at, &mut out);
        out.retain(|i| self.raised.insert(i.key.clone()));
        out
    }

    /// `YYYY-MM` of the budget month `at` is in.
    fn month(&self, at: DateTime<Utc>) -> String {
        Month::of(at, self.cfg.tz).to_string()
    }

    fn user_name(&self, user_id: UserId) -> String {
        self.dir.user(&user_id).map_or_else(|| user_id.to_string(), |u| u.name.clone())
    }
}

fn values<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ccp_schemas::events::*;

    use super::given::*;
    use super::*;

    #[test]
    fn replaying_after_alert_events_raises_nothing_again() {
        let mut first = Given::new();
        first.budget("10");
        let fired = first.spend("20");
        assert_eq!(fired.len(), 2);
        // A restart: the alert events come first (admin stream), then the requests again.
        let mut again = Rules::new(cfg());
        let user_id = first.user;
        let created = Event::UserCreated(UserCreated {
            user_id,
            name: "dana".into(),
            description: None,
            email: None,
            status: UserStatus::Active,
        });
        again.apply(1, &at(created, first.now));
        for (seq, i) in fired.iter().enumerate() {
            let alert = AlertRaised {
                alert_id: ulid::Ulid::new(),
                rule: i.rule,
                incident: i.key.clone(),
                severity: i.severity,
                user_id: i.user_id,
                key_id: i.key_id,
                message: i.message.clone(),
                values: i.values.clone(),
            };
            again.apply(seq as u64, &at(Event::AlertRaised(alert), first.now));
        }
        let budget = Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd: Some(Decimal::TEN) });
        assert!(again.apply(10, &at(budget, first.now)).is_empty());
        let replayed = again.apply(11, &at(Event::RequestCompleted(request(user_id, first.key, "20")), first.now));
        assert!(replayed.is_empty(), "{:?}", keys(&replayed));
        assert!(again.was_raised(&fired[0].key));
    }
}
