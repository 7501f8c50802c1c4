//! Alerts for admins: rules evaluated on the event stream ([`rules`]), each incident raised once
//! as an `alert_raised` event in the admin stream (kept for ever, projected into the audit log),
//! then delivered to every configured webhook ([`deliver`]).
//!
//! Restarts never re-fire: every start folds the admin stream first — which holds every alert
//! already raised — and only then replays the circuit stream and the request stream, so the
//! rules' state is rebuilt and the incidents they find again are recognised as raised. Start-up
//! does not grow with the month's traffic: the month-to-date spend per user and team comes from
//! the analytics tables (`requests`, every request up to the projection's progress, one
//! aggregate), and the request stream is replayed only from the anomaly baseline's start (or from
//! that progress, when ClickHouse is behind). Without ClickHouse (unreachable, nothing projected
//! yet) the whole month is replayed, as a rebuild. Each alert
//! is also published with `Nats-Msg-Id` = a hash of its incident, so two runs racing within the
//! duplicate window store it once. Incidents whose triggering event is older than
//! `alerts.max_alert_age_mins` update the state but raise nothing (a first start on an old log
//! or a long outage does not flood the webhooks with stale news).
//!
//! The proxy takes no part: a slow or dead webhook can never slow a request.

pub mod deliver;
pub mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ccp_runtime::config::Settings;
use ccp_runtime::follow::{Decoded, Delivery, Follower, Next, Start};
use ccp_schemas::calendar::Month;
use std::collections::HashMap;

use ccp_schemas::events::{AlertRaised, AlertRule, Event};
use ccp_schemas::ids::{TeamId, UserId};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Actor, Envelope, Namespace};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use rust_decimal::Decimal;
use sha2::{Digest as _, Sha256};

use self::deliver::{DeliveryStats, Webhook};
use self::rules::{Incident, RequestFacts, RuleConfig, Rules};

/// The actor of alert events.
pub const ACTOR_COMPONENT: &str = "projector-alerts";

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertStats {
    raised: [AtomicU64; AlertRule::ALL.len()],
    duplicates: AtomicU64,
    /// The first request-stream sequence the last start replayed (0: none yet).
    replay_from: AtomicU64,
    /// The admin-stream sequence of the snapshot the last start loaded (0: it replayed).
    admin_from_snapshot: AtomicU64,
    webhooks: Vec<(String, Arc<DeliveryStats>)>,
}

impl AlertStats {
    /// Alerts raised by this process for `rule`.
    pub fn raised(&self, rule: AlertRule) -> u64 {
        self.raised[rule_index(rule)].load(Ordering::Relaxed)
    }

    /// Alerts this process published that NATS dropped as duplicates of an incident already
    /// raised (within the duplicate window): a sign of two evaluators racing.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// The first request-stream sequence the last (re)start of the rules replayed: everything
    /// before it came from the analytics tables' totals (or, after a whole-month replay, was
    /// before the month).
    pub fn request_replay_from(&self) -> u64 {
        self.replay_from.load(Ordering::Relaxed)
    }

    /// The admin-stream sequence of the snapshot the last start loaded (0: it replayed the
    /// admin stream from sequence 1).
    pub fn admin_from_snapshot(&self) -> u64 {
        self.admin_from_snapshot.load(Ordering::Relaxed)
    }

    /// The delivery counters of a webhook.
    pub fn webhook(&self, name: &str) -> Option<&DeliveryStats> {
        self.webhooks.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_ref())
    }

    /// Writes these counters as `ccp_projector_alerts_raised_total{rule}`,
    /// `ccp_projector_alerts_duplicate_total` and
    /// `ccp_projector_alert_deliveries_total{webhook,outcome}` (under the registry's prefix).
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut raised =
            encoder.encode_descriptor("alerts_raised", "Alerts raised, by rule.", None, MetricType::Counter)?;
        for rule in AlertRule::ALL {
            ConstCounter::new(self.raised(rule)).encode(raised.encode_family(&[("rule", rule.as_str())])?)?;
        }
        ConstCounter::new(self.duplicates()).encode(encoder.encode_descriptor(
            "alerts_duplicate",
            "Alerts dropped by NATS as duplicates of an incident already raised.",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(i64::try_from(self.request_replay_from()).unwrap_or(i64::MAX)).encode(
            encoder.encode_descriptor(
                "alerts_request_replay_from_seq",
                "First request-stream sequence the alert rules replayed at their last start.",
                None,
                MetricType::Gauge,
            )?,
        )?;
        let mut deliveries = encoder.encode_descriptor(
            "alert_deliveries",
            "Alert deliveries to webhooks by outcome (retried: failed attempts that were retried).",
            None,
            MetricType::Counter,
        )?;
        for (hook, s) in &self.webhooks {
            for (outcome, n) in [("ok", &s.ok), ("failed", &s.failed), ("retried", &s.retried)] {
                let labels = [("webhook", hook.as_str()), ("outcome", outcome)];
                ConstCounter::new(n.load(Ordering::Relaxed)).encode(deliveries.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The alert rules' snapshot in the projector's store (`<prefix>_snapshots_projector`).
pub const SNAPSHOT_NAME: &str = "alert-rules";

fn rule_index(rule: AlertRule) -> usize {
    AlertRule::ALL.iter().position(|r| *r == rule).unwrap_or(0)
}

/// The running alert tasks (evaluation and one delivery loop per webhook); dropping it stops them.
pub struct Alerts {
    /// Alerts raised and events evaluated, for `/metrics`.
    pub stats: Arc<AlertStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Alerts {
    /// Binds every webhook's delivery consumer, then starts delivery and evaluation.
    /// With `clickhouse` (the analytics database), a start reads the month's spend there instead
    /// of replaying the month's requests.
    pub async fn start(
        client: async_nats::Client,
        ns: Namespace,
        settings: &Settings,
        clickhouse: Option<clickhouse::Client>,
    ) -> anyhow::Result<Self> {
        let cfg = RuleConfig::new(&settings.alerts, &settings.budgets)?;
        let js = jetstream::new(client.clone());
        let mut webhooks = Vec::new();
        let mut tasks = Vec::new();
        // Webhooks connect as `egress` says (HTTPS proxy, extra CA).
        let egress = ccp_runtime::egress::Egress::from_settings(&settings.egress)?;
        if !settings.alerts.webhooks.is_empty() {
            tracing::info!("webhooks: {}", egress.describe());
        }
        // Consumers first: an alert raised from now on is delivered even to a brand-new webhook.
        for hook in &settings.alerts.webhooks {
            let consumer = deliver::consumer(&js, &ns, hook).await?;
            let webhook = Webhook::new(hook.clone(), consumer, &settings.alerts, &egress)?;
            webhooks.push((webhook.name().to_owned(), webhook.stats.clone()));
            tasks.push(tokio::spawn(webhook.run()));
        }
        let stats = Arc::new(AlertStats { webhooks, ..AlertStats::default() });
        let evaluator = Evaluator {
            js,
            client,
            ns,
            cfg,
            max_age: chrono::Duration::minutes(i64::from(settings.alerts.max_alert_age_mins)),
            snapshots: crate::state::snapshot_policy(settings),
            stats: stats.clone(),
            // On a replicated cluster a replica that lags may miss parts below the progress it
            // reports: the seed reads with sequential consistency there.
            clickhouse: clickhouse.map(|ch| {
                if settings.clickhouse.cluster.is_some() {
                    ch.with_setting("select_sequential_consistency", "1")
                } else {
                    ch
                }
            }),
        };
        tasks.push(tokio::spawn(evaluator.run()));
        tracing::info!(webhooks = settings.alerts.webhooks.len(), "alerts started");
        Ok(Self { stats, tasks })
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Evaluator {
    js: jetstream::Context,
    client: async_nats::Client,
    ns: Namespace,
    cfg: RuleConfig,
    max_age: chrono::Duration,
    stats: Arc<AlertStats>,
    clickhouse: Option<clickhouse::Client>,
    /// Snapshots of the rules' admin-stream state (with the state projection's policy).
    snapshots: ccp_runtime::snapshot::SnapshotPolicy,
}

/// Month-to-date spend of one user in one team (`''`: none), in nano-dollars.
#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct SpendRow {
    user_id: String,
    team_id: String,
    nanos: u64,
}

impl Evaluator {
    async fn run(self) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %format!("{e:#}"), "alert evaluation failed; rebuilding its state");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// A follower of `kind` for the rules: events they cannot read are skipped (an alert rule is
    /// advisory; it gates nothing).
    fn follower(&self, kind: StreamKind, start: Start) -> Follower {
        Follower::new("alert rules", self.client.clone(), &self.ns, kind).start(start)
    }

    /// The start of the anomaly baseline (with five minutes of margin).
    fn baseline_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::seconds(self.cfg.window_secs * (self.cfg.baseline_windows + 1))
            - chrono::Duration::minutes(5)
    }

    /// Where the request replay starts without ClickHouse: this budget month's start or the
    /// anomaly baseline's, whichever is earlier.
    fn request_replay_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let month_start = Month::of(now, self.cfg.tz).start(self.cfg.tz) - chrono::Duration::minutes(5);
        month_start.min(self.baseline_start(now))
    }

    /// Seeds the rules' month-to-date spend from ClickHouse's `requests` (every request up to the
    /// projection's progress) and returns the request-stream sequence the replay starts after:
    /// the baseline's first request or the progress, whichever is earlier. `None`: nothing to seed
    /// from (no ClickHouse, nothing projected yet).
    async fn seed(&self, rules: &mut Rules, now: DateTime<Utc>) -> anyhow::Result<Option<u64>> {
        let Some(ch) = &self.clickhouse else { return Ok(None) };
        // The projection inserts batches in stream order: its rows are every request up to here.
        let through: u64 = ch.query("SELECT max(stream_seq) FROM requests").fetch_one().await?;
        if through == 0 {
            return Ok(None);
        }
        let month = Month::of(now, self.cfg.tz);
        let rows: Vec<SpendRow> = ch
            .query(
                "SELECT user_id, team_id, sum(cost_nanos) AS nanos FROM requests \
                 WHERE occurred_at >= toDateTime(?) AND stream_seq <= ? AND user_id != '' GROUP BY user_id, team_id",
            )
            .bind(month.start(self.cfg.tz).timestamp())
            .bind(through)
            .fetch_all()
            .await?;
        let usd = |nanos: u64| Decimal::from_i128_with_scale(i128::from(nanos), 9);
        let mut users: HashMap<UserId, Decimal> = HashMap::new();
        let mut teams: HashMap<TeamId, Decimal> = HashMap::new();
        for row in &rows {
            if let Ok(user_id) = row.user_id.parse::<UserId>() {
                *users.entry(user_id).or_default() += usd(row.nanos);
            }
            if let Ok(team_id) = row.team_id.parse::<TeamId>() {
                *teams.entry(team_id).or_default() += usd(row.nanos);
            }
        }
        rules.seed_spend(&month.to_string(), through, users, teams);
        // `min` over no rows is 0: no request since the baseline's start, everything after the
        // progress is newer.
        let first: u64 = ch
            .query("SELECT min(stream_seq) FROM requests WHERE occurred_at >= toDateTime(?)")
            .bind(self.baseline_start(now).timestamp())
            .fetch_one()
            .await?;
        let after = if first == 0 { through } else { (first - 1).min(through) };
        tracing::info!(through, users = rows.len(), month = %month, replay_after = after, "alert rules: month spend from ClickHouse");
        Ok(Some(after))
    }

    async fn run_once(&self) -> anyhow::Result<()> {
        let mut rules = Rules::new(self.cfg.clone());
        // The admin stream first, up to where it was (from the stored snapshot on, if there is
        // one this build may use): users, budgets and every alert raised.
        let restore = |_, bytes: &[u8]| rules.restore(bytes);
        let (from, saver) =
            self.snapshots.load(&self.client, &self.ns, ("projector", SNAPSHOT_NAME, "alert rules"), restore).await;
        self.stats.admin_from_snapshot.store(from, Ordering::Relaxed);
        let mut admin = self.follower(StreamKind::Admin, Start::After(from));
        loop {
            let Next::Message(delivery) = admin.next().await else { break };
            self.apply(&mut rules, &mut admin, &delivery).await?;
            if delivery.caught_up {
                break;
            }
        }
        // Saved once caught up with the admin stream, when it is `every` events past the last.
        let save = |rules: &Rules, seq: u64| {
            if let Some(saver) = &saver {
                saver.maybe_save(seq, || rules.snapshot());
            }
        };
        save(&rules, admin.last());
        let now = Utc::now();
        let start = match self.seed(&mut rules, now).await {
            Ok(Some(after)) => Start::After(after),
            Ok(None) => Start::Since(self.request_replay_start(now)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "alert rules: ClickHouse did not answer; replaying the month's requests");
                Start::Since(self.request_replay_start(now))
            }
        };
        let mut requests = self.follower(StreamKind::Requests, start);
        let mut circuits = self.follower(StreamKind::Circuit, Start::All);
        let mut first_request = true;
        tracing::info!(admin_events = admin.last(), from_snapshot = from, requests = ?start, "alert rules loaded; replaying usage and circuits");
        loop {
            let (next, follower, is_admin) = tokio::select! {
                next = admin.next() => (next, &mut admin, true),
                next = circuits.next() => (next, &mut circuits, false),
                next = requests.next() => {
                    if let Next::Message(delivery) = &next {
                        if first_request {
                            first_request = false;
                            self.stats.replay_from.store(delivery.seq, Ordering::Relaxed);
                        }
                        if let Some((at, facts)) = request_facts(&delivery.message.payload) {
                            for incident in rules.apply_request(delivery.seq, at, &facts) {
                                self.raise(incident).await?;
                            }
                            continue;
                        }
                    }
                    (next, &mut requests, false)
                }
            };
            if let Next::Message(delivery) = next {
                self.apply(&mut rules, follower, &delivery).await?;
                if is_admin && delivery.caught_up {
                    save(&rules, delivery.seq);
                }
            }
        }
    }

    async fn apply(&self, rules: &mut Rules, follower: &mut Follower, delivery: &Delivery) -> anyhow::Result<()> {
        let Decoded::Apply(envelope) = follower.decode(delivery) else { return Ok(()) };
        for incident in rules.apply(delivery.seq, &envelope) {
            self.raise(incident).await?;
        }
        Ok(())
    }

    async fn raise(&self, incident: Incident) -> anyhow::Result<()> {
        if incident.at < Utc::now() - self.max_age {
            tracing::debug!(incident = %incident.key, at = %incident.at, "stale incident not raised");
            return Ok(());
        }
        let key = incident.key.clone();
        let alert = AlertRaised {
            alert_id: ulid::Ulid::new(),
            rule: incident.rule,
            incident: incident.key,
            severity: incident.severity,
            user_id: incident.user_id,
            key_id: incident.key_id,
            message: incident.message,
            values: incident.values,
        };
        let (alert_id, rule) = (alert.alert_id, alert.rule);
        let mut envelope =
            Envelope::new(Event::AlertRaised(alert), Actor::System { component: ACTOR_COMPONENT.into() });
        envelope.id = alert_id;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id(&key).as_str());
        let ack = self
            .js
            .publish_with_headers(envelope.subject(&self.ns), headers, envelope.encode()?.into())
            .await
            .map_err(|e| anyhow::anyhow!("publishing an alert: {e}"))?
            .await
            .map_err(|e| anyhow::anyhow!("publishing an alert: {e}"))?;
        if ack.duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::info!(incident = %key, "alert already raised (duplicate)");
        } else {
            self.stats.raised[rule_index(rule)].fetch_add(1, Ordering::Relaxed);
            tracing::info!(rule = rule.as_str(), incident = %key, %alert_id, seq = ack.sequence, "alert raised");
        }
        Ok(())
    }
}

/// The time and the rules' facts of a version-1 `request_completed` event, decoded without the
/// rest of it (a replay reads a month of them); `None` for anything else, which then goes through
/// the full decode.
fn request_facts(payload: &[u8]) -> Option<(DateTime<Utc>, RequestFacts)> {
    #[derive(serde::Deserialize)]
    struct Lean<'a> {
        #[serde(rename = "type", borrow)]
        event_type: std::borrow::Cow<'a, str>,
        schema_version: u16,
        occurred_at: DateTime<Utc>,
        payload: RequestFacts,
    }
    let lean: Lean<'_> = serde_json::from_slice(payload).ok()?;
    (lean.event_type == "request_completed" && lean.schema_version == 1).then_some((lean.occurred_at, lean.payload))
}

/// The `Nats-Msg-Id` of an incident's alert.
pub fn msg_id(incident: &str) -> String {
    format!("alert-{}", hex::encode(&Sha256::digest(incident.as_bytes())[..16]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::RequestCompleted;
    use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_lean_decode_reads_what_the_full_one_does_and_only_usage_events() {
        let r: RequestCompleted = serde_json::from_value(json!({
            "request_id": RequestId::new(), "key_id": AccessKeyId::new(), "user_id": UserId::new(),
            "endpoint": "messages", "provider": "bedrock", "fallback": true, "status": 502,
            "error_class": "bedrock_auth_error", "stream": true, "cost_usd": "0.001234", "latency_ms": 10,
            "usage": {"input_tokens": 5, "output_tokens": 7}, "session_id": "s", "rate_limit": null,
        }))
        .unwrap();
        let envelope = Envelope::new(Event::RequestCompleted(r.clone()), Actor::Proxy { replica: "a".into() });
        let (at, facts) = request_facts(&envelope.encode().unwrap()).unwrap();
        assert_eq!(at, envelope.occurred_at);
        assert_eq!(format!("{facts:?}"), format!("{:?}", RequestFacts::from(&r)));
        assert_eq!(facts.cost_usd.to_string(), "0.001234");

        let circuit = include_bytes!("../../schemas/fixtures/events/v1/circuit_opened.json");
        assert!(Envelope::decode(circuit).is_ok());
        assert!(request_facts(circuit).is_none());
        let mut newer: serde_json::Value = serde_json::from_slice(&envelope.encode().unwrap()).unwrap();
        newer["schema_version"] = 2.into();
        assert!(request_facts(&serde_json::to_vec(&newer).unwrap()).is_none());
        assert!(request_facts(b"not json").is_none());
    }
}
