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

use std::collections::{BTreeMap, HashMap, HashSet};

use ccp_schemas::calendar::Month;
use ccp_schemas::config::{AlertSettings, BudgetSettings, ConfigError};
use ccp_schemas::events::{
    AlertRule, AlertSeverity, BedrockApiKeyRegistered, BedrockApiKeyRotated, ErrorClass, Event, Provider,
    RequestCompleted,
};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::state::Directory;
use ccp_schemas::Envelope;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

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

/// Spend and request count of one window.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    spend: Decimal,
    requests: u64,
}

/// The rules' state.
#[derive(Debug)]
pub struct Rules {
    cfg: RuleConfig,
    dir: Directory,
    raised: HashSet<String>,
    /// Month-to-date spend per user and month (`YYYY-MM` in the budget time zone).
    spend: HashMap<(UserId, String), Decimal>,
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

impl Rules {
    /// Rules with no history.
    pub fn new(cfg: RuleConfig) -> Self {
        Self {
            cfg,
            dir: Directory::default(),
            raised: HashSet::new(),
            spend: HashMap::new(),
            open: BTreeMap::new(),
            many_armed: true,
            auth_failing: HashMap::new(),
            usage: HashMap::new(),
            readiness: HashMap::new(),
        }
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
            Event::CircuitClosed(e) => {
                self.open.remove(&e.key_id);
                if self.open.len() < self.cfg.open_circuits_threshold {
                    self.many_armed = true;
                }
            }
            Event::BedrockKeyChecked(e) => {
                self.dir.apply(envelope);
                let before = self.readiness.insert(e.key_id, e.readiness);
                let was_ready = before.is_none_or(|r| r == ccp_schemas::events::BedrockReadiness::Ready);
                if was_ready && e.readiness != ccp_schemas::events::BedrockReadiness::Ready {
                    let failing: Vec<&str> = e
                        .models
                        .iter()
                        .filter(|m| m.readiness != ccp_schemas::events::BedrockReadiness::Ready)
                        .map(|m| m.model_id.as_str())
                        .collect();
                    out.push(Incident {
                        rule: AlertRule::BedrockKeyNotReady,
                        key: format!("bedrock_key_not_ready:{}:{seq}", e.key_id),
                        severity: AlertSeverity::Critical,
                        user_id: Some(e.user_id),
                        key_id: Some(e.key_id),
                        message: format!(
                            "The Bedrock API key of key {} (user {}) is not ready for failover: {}{} in {}",
                            e.key_id,
                            self.user_name(e.user_id),
                            e.readiness.as_str().replace('_', " "),
                            if failing.is_empty() { String::new() } else { format!(" ({})", failing.join(", ")) },
                            e.region
                        ),
                        values: values([
                            ("readiness", json!(e.readiness.as_str())),
                            ("region", json!(e.region)),
                            ("models", json!(failing)),
                        ]),
                        at,
                    });
                }
            }
            Event::BedrockApiKeyRegistered(BedrockApiKeyRegistered { key_id, .. })
            | Event::BedrockApiKeyRotated(BedrockApiKeyRotated { key_id, .. }) => {
                self.dir.apply(envelope);
                self.readiness.remove(key_id);
            }
            Event::BudgetSet(e) => {
                self.dir.apply(envelope);
                let month = self.month(at);
                self.check_budget(e.user_id, &month, at, &mut out);
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
        self.budget(r, at, &mut out);
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

    fn budget(&mut self, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
        let Some(user_id) = r.user_id else { return };
        let month = self.month(at);
        *self.spend.entry((user_id, month.clone())).or_default() += r.cost_usd;
        self.check_budget(user_id, &month, at, out);
    }

    fn check_budget(&self, user_id: UserId, month: &str, at: DateTime<Utc>, out: &mut Vec<Incident>) {
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

    fn circuit_opened(
        &mut self,
        seq: u64,
        key_id: AccessKeyId,
        failures: u32,
        at: DateTime<Utc>,
        out: &mut Vec<Incident>,
    ) {
        if self.open.contains_key(&key_id) {
            return; // A failed probe re-opens: the same incident.
        }
        self.open.insert(key_id, seq);
        let owner = self.dir.key(&key_id).map(|k| k.user_id);
        if self.cfg.circuit_open {
            let who = owner.map(|u| format!(" (user {})", self.user_name(u))).unwrap_or_default();
            out.push(Incident {
                rule: AlertRule::CircuitOpen,
                key: format!("circuit_open:{key_id}:{seq}"),
                severity: AlertSeverity::Warning,
                user_id: owner,
                key_id: Some(key_id),
                message: format!(
                    "The circuit of key {key_id}{who} opened after {failures} Anthropic failures; its requests go to Bedrock"
                ),
                values: values([("failures", json!(failures)), ("open_circuits", json!(self.open.len()))]),
                at,
            });
        }
        let threshold = self.cfg.open_circuits_threshold;
        if threshold > 0 && self.open.len() >= threshold && self.many_armed {
            self.many_armed = false;
            let keys: Vec<String> = self.open.keys().map(ToString::to_string).collect();
            out.push(Incident {
                rule: AlertRule::CircuitsOpen,
                key: format!("circuits_open:{seq}"),
                severity: AlertSeverity::Critical,
                user_id: None,
                key_id: None,
                message: format!(
                    "{} keys have an open circuit at once (threshold {threshold}): Anthropic may be failing broadly",
                    self.open.len()
                ),
                values: values([
                    ("open_circuits", json!(self.open.len())),
                    ("threshold", json!(threshold)),
                    ("key_ids", json!(keys)),
                ]),
                at,
            });
        }
    }

    fn bedrock_auth(&mut self, seq: u64, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
        let Some(key_id) = r.key_id else { return };
        if r.provider == Provider::Bedrock && r.error_class.is_none() {
            self.auth_failing.remove(&key_id);
            return;
        }
        if r.error_class != Some(ErrorClass::BedrockAuthError) || !self.cfg.bedrock_auth {
            return;
        }
        let replaced_at = self.dir.key(&key_id).and_then(|k| k.bedrock_key.as_ref()).map(|b| b.updated_at);
        let ongoing = self
            .auth_failing
            .get(&key_id)
            .is_some_and(|started| replaced_at.is_none_or(|replaced| *started >= replaced || at < replaced));
        if ongoing {
            return;
        }
        self.auth_failing.insert(key_id, at);
        out.push(Incident {
            rule: AlertRule::BedrockAuthFailed,
            key: format!("bedrock_auth_failed:{key_id}:{seq}"),
            severity: AlertSeverity::Critical,
            user_id: r.user_id,
            key_id: Some(key_id),
            message: format!(
                "Bedrock refused the Bedrock API key of key {key_id}{}: failover for it does not work",
                r.user_id.map(|u| format!(" (user {})", self.user_name(u))).unwrap_or_default()
            ),
            values: values([("status", json!(r.status)), ("request_id", json!(r.request_id.to_string()))]),
            at,
        });
    }

    fn unpriced(&self, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
        if !r.unpriced {
            return;
        }
        let model = r.priced_model.as_deref().unwrap_or("(unnamed)");
        out.push(Incident {
            rule: AlertRule::UnpricedModel,
            key: format!("unpriced_model:{model}"),
            severity: AlertSeverity::Warning,
            user_id: None,
            key_id: None,
            message: format!(
                "Model `{model}` has no price: its requests are recorded as unpriced (cost unknown) and not counted \
                 in budgets until a price is set (PUT /v1/pricing, ccpctl pricing set)"
            ),
            values: values([
                ("model", json!(model)),
                ("provider", json!(r.provider.as_str())),
                ("request_id", json!(r.request_id.to_string())),
            ]),
            at,
        });
    }

    fn anomaly(&mut self, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
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

fn values<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ccp_schemas::events::*;
    use ccp_schemas::ids::RequestId;
    use ccp_schemas::Actor;

    use super::*;

    /// The defaults, anomaly rules off.
    fn cfg() -> RuleConfig {
        let alerts = AlertSettings { anomaly_factor: 0, ..AlertSettings::default() };
        RuleConfig::new(&alerts, &BudgetSettings::default()).unwrap()
    }

    /// Anomaly rules on: 5× the hourly average of a week, at least $10 or 50 requests.
    fn anomaly_cfg() -> RuleConfig {
        let alerts =
            AlertSettings { anomaly_min_spend_usd: Decimal::TEN, anomaly_min_requests: 50, ..AlertSettings::default() };
        RuleConfig::new(&alerts, &BudgetSettings::default()).unwrap()
    }

    fn at(event: Event, when: DateTime<Utc>) -> Envelope {
        let mut e = Envelope::new(event, Actor::Anonymous);
        e.occurred_at = when;
        e
    }

    fn request(user_id: UserId, key_id: AccessKeyId, cost: &str) -> RequestCompleted {
        serde_json::from_value(json!({
            "request_id": RequestId::new(), "key_id": key_id, "user_id": user_id, "endpoint": "messages",
            "provider": "anthropic", "fallback": false, "status": 200, "stream": true,
            "cost_usd": cost, "latency_ms": 10,
        }))
        .unwrap()
    }

    /// Given events, when each is applied in order: the rules of every incident raised.
    struct Given {
        rules: Rules,
        seq: u64,
        now: DateTime<Utc>,
        user: UserId,
        key: AccessKeyId,
    }

    impl Given {
        fn new() -> Self {
            Self::with(cfg())
        }

        fn with(cfg: RuleConfig) -> Self {
            let mut g = Self {
                rules: Rules::new(cfg),
                seq: 0,
                now: "2026-11-20T12:00:00Z".parse().unwrap(),
                user: UserId::new(),
                key: AccessKeyId::new(),
            };
            let user_id = g.user;
            g.when(Event::UserCreated(UserCreated {
                user_id,
                name: "dana".into(),
                description: None,
                email: None,
                status: UserStatus::Active,
            }));
            g
        }

        fn when(&mut self, event: Event) -> Vec<Incident> {
            self.seq += 1;
            self.rules.apply(self.seq, &at(event, self.now))
        }

        fn spend(&mut self, cost: &str) -> Vec<Incident> {
            self.when(Event::RequestCompleted(request(self.user, self.key, cost)))
        }

        fn budget(&mut self, limit: &str) -> Vec<Incident> {
            self.when(Event::BudgetSet(BudgetSet {
                user_id: self.user,
                monthly_limit_usd: Some(limit.parse().unwrap()),
            }))
        }
    }

    fn keys(incidents: &[Incident]) -> Vec<&str> {
        incidents.iter().map(|i| i.key.as_str()).collect()
    }

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

    #[test]
    fn an_unpriced_model_is_one_incident_per_model() {
        let mut g = Given::new();
        let unpriced = |g: &mut Given, model: &str| {
            let mut r = request(g.user, g.key, "0");
            r.cost_usd = None;
            r.unpriced = true;
            r.priced_model = Some(model.into());
            g.when(Event::RequestCompleted(r))
        };
        assert_eq!(keys(&unpriced(&mut g, "claude-opus-5-5")), ["unpriced_model:claude-opus-5-5"]);
        assert!(unpriced(&mut g, "claude-opus-5-5").is_empty());
        assert_eq!(unpriced(&mut g, "claude-opus-4-8").len(), 1);
        assert!(g.spend("0.01").is_empty(), "a priced request raises nothing");
    }

    #[test]
    fn a_bedrock_key_turning_not_ready_is_one_incident_until_it_is_ready_again() {
        use ccp_schemas::events::{BedrockKeyChecked, BedrockReadiness, CheckCause, ModelReadiness};
        let mut g = Given::new();
        let (key_id, user_id) = (g.key, g.user);
        let check = |g: &mut Given, readiness| {
            g.when(Event::BedrockKeyChecked(BedrockKeyChecked {
                key_id,
                user_id,
                readiness,
                region: "us-east-1".into(),
                models: vec![ModelReadiness { model_id: "us.anthropic.claude-x-v1:0".into(), readiness }],
                listing: Some(BedrockReadiness::Ready),
                cause: CheckCause::Periodic,
            }))
        };
        assert!(check(&mut g, BedrockReadiness::Ready).is_empty());
        let first = check(&mut g, BedrockReadiness::ModelNotEnabled);
        assert_eq!(keys(&first), [format!("bedrock_key_not_ready:{key_id}:3")]);
        assert!(first[0].message.contains("model not enabled (us.anthropic.claude-x-v1:0)"), "{}", first[0].message);
        assert!(check(&mut g, BedrockReadiness::KeyRefused).is_empty(), "still not ready: the same incident");
        assert!(check(&mut g, BedrockReadiness::Ready).is_empty());
        assert_eq!(check(&mut g, BedrockReadiness::Throttled).len(), 1, "ready, then not again: a new one");
    }

    #[test]
    fn a_circuit_is_one_incident_until_it_closes() {
        let mut g = Given::new();
        let key_id = g.key;
        let opened = |g: &mut Given| {
            g.when(Event::CircuitOpened(CircuitOpened {
                key_id,
                reason: TripReason::RateLimited,
                failures: 3,
                retry_at: g.now,
            }))
        };
        let first = opened(&mut g);
        assert_eq!(keys(&first), [format!("circuit_open:{key_id}:2")]);
        g.when(Event::CircuitHalfOpened(CircuitHalfOpened { key_id }));
        assert!(opened(&mut g).is_empty(), "a failed probe is the same incident");
        g.when(Event::CircuitClosed(CircuitClosed { key_id, cause: CloseCause::ProbeSucceeded }));
        assert_eq!(opened(&mut g).len(), 1, "a new opening is a new incident");
    }

    #[test]
    fn many_open_circuits_fire_when_crossing_and_re_arm_below() {
        let mut g = Given::new();
        let keys_: Vec<AccessKeyId> = (0..4).map(|_| AccessKeyId::new()).collect();
        let open = |g: &mut Given, key_id| {
            g.when(Event::CircuitOpened(CircuitOpened {
                key_id,
                reason: TripReason::Overloaded,
                failures: 3,
                retry_at: g.now,
            }))
        };
        let rules = |v: Vec<Incident>| v.into_iter().map(|i| i.rule).collect::<Vec<_>>();
        assert_eq!(rules(open(&mut g, keys_[0])), [AlertRule::CircuitOpen]);
        assert_eq!(rules(open(&mut g, keys_[1])), [AlertRule::CircuitOpen]);
        let third = open(&mut g, keys_[2]);
        assert_eq!(rules(third.clone()), [AlertRule::CircuitOpen, AlertRule::CircuitsOpen]);
        assert_eq!(third[1].values["open_circuits"], json!(3));
        assert_eq!(rules(open(&mut g, keys_[3])), [AlertRule::CircuitOpen], "still the same incident");
        g.when(Event::CircuitClosed(CircuitClosed { key_id: keys_[3], cause: CloseCause::ManualReset }));
        assert!(rules(open(&mut g, keys_[3])).len() == 1, "3 → 4 without falling below 3 does not re-fire");
        for k in &keys_[..2] {
            g.when(Event::CircuitClosed(CircuitClosed { key_id: *k, cause: CloseCause::ProbeSucceeded }));
        }
        assert_eq!(rules(open(&mut g, keys_[0])), [AlertRule::CircuitOpen, AlertRule::CircuitsOpen]);
    }

    #[test]
    fn bedrock_auth_failures_are_one_incident_until_bedrock_works_again() {
        let mut g = Given::new();
        let failing = |g: &Given| {
            let mut r = request(g.user, g.key, "0");
            r.provider = Provider::Bedrock;
            r.status = 502;
            r.error_class = Some(ErrorClass::BedrockAuthError);
            Event::RequestCompleted(r)
        };
        let first = g.when(failing(&g));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].rule, AlertRule::BedrockAuthFailed);
        assert_eq!(first[0].key_id, Some(g.key));
        for _ in 0..10 {
            assert!(g.when(failing(&g)).is_empty());
        }
        let mut ok = request(g.user, g.key, "0.01");
        ok.provider = Provider::Bedrock;
        g.when(Event::RequestCompleted(ok));
        assert_eq!(g.when(failing(&g)).len(), 1, "failing again after a success is a new incident");
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
