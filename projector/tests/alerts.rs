//! Alerts for admins against the real NATS (and ClickHouse for the audit log): events published
//! through the streams, alerts delivered to a webhook receiver in this test. Each rule fires
//! once per incident, a restart does not re-fire, a failing webhook is retried until it takes
//! the alert (or given up on), and a webhook that never answers holds up no other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccp_projector::alerts::deliver::{signature, ALERT_ID_HEADER, SIGNATURE_HEADER};
use ccp_projector::alerts::Alerts;
use ccp_runtime::config::{Settings, WebhookFormat, WebhookSettings};
use ccp_runtime::snapshot::bucket_name;
use ccp_schemas::events::{
    AlertRaised, AlertRule, BudgetSet, CircuitHalfOpened, CircuitOpened, Event, RequestCompleted, RoutingStrategy,
    TripReason,
};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::StreamKind;
use ccp_tests::events::Log;
use ccp_tests::{clickhouse, delete_namespace, free_port, service_env, test_settings, wait_http_ok, Service};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");
const WAIT: Duration = Duration::from_secs(30);

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200.
    Ok,
    /// 500 for the first `n` attempts, then 200.
    FailFirst(usize),
    /// Reads the request and never answers.
    Hang,
}

/// One accepted delivery.
#[derive(Debug, Clone)]
struct Delivery {
    headers: BTreeMap<String, String>,
    raw: Vec<u8>,
    body: Value,
}

/// A tiny HTTP/1.1 webhook receiver on a free port.
struct Receiver {
    url: String,
    attempts: Arc<AtomicUsize>,
    accepted: watch::Receiver<Vec<Delivery>>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook/s3cr3t-path-token", listener.local_addr().unwrap());
        let attempts = Arc::new(AtomicUsize::new(0));
        let (tx, accepted) = watch::channel(Vec::new());
        let (tx, counter) = (Arc::new(tx), attempts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let (tx, counter) = (tx.clone(), counter.clone());
                tokio::spawn(async move {
                    let Some((headers, raw)) = read_request(&mut socket).await else { return };
                    let attempt = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let status = match behaviour {
                        Behaviour::Hang => {
                            std::future::pending::<()>().await;
                            return;
                        }
                        Behaviour::FailFirst(n) if attempt <= n => "500 Internal Server Error",
                        _ => "200 OK",
                    };
                    if status.starts_with("200") {
                        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                        tx.send_modify(|v| v.push(Delivery { headers, raw, body }));
                    }
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, attempts, accepted }
    }

    fn webhook(&self, name: &str, format: WebhookFormat, secret: &str) -> WebhookSettings {
        WebhookSettings {
            name: name.into(),
            url: SecretString::new(self.url.clone()),
            format,
            secret: SecretString::new(secret),
        }
    }

    /// Waits until at least `n` deliveries were accepted; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        let mut rx = self.accepted.clone();
        let got = match tokio::time::timeout(WAIT, rx.wait_for(|v| v.len() >= n)).await {
            Ok(Ok(v)) => v.clone(),
            _ => panic!("{} of {n} deliveries within {WAIT:?}", self.accepted.borrow().len()),
        };
        got
    }

    fn accepted(&self) -> Vec<Delivery> {
        self.accepted.borrow().clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(BTreeMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((headers, buf[head_end..head_end + len].to_vec()))
}

fn request(user_id: UserId, key_id: AccessKeyId, cost: &str) -> RequestCompleted {
    serde_json::from_value(json!({
        "request_id": RequestId::new(), "key_id": key_id, "user_id": user_id, "endpoint": "messages",
        "provider": "anthropic", "fallback": false, "status": 200, "stream": true,
        "cost_usd": cost, "latency_ms": 10,
    }))
    .unwrap()
}

fn bedrock_auth_failure(user_id: UserId, key_id: AccessKeyId) -> Event {
    let mut r = request(user_id, key_id, "0");
    r.provider = ccp_schemas::events::Provider::Bedrock;
    r.fallback = true;
    r.status = 502;
    r.error_class = Some(ccp_schemas::events::ErrorClass::BedrockAuthError);
    Event::RequestCompleted(r)
}

fn opened(key_id: AccessKeyId) -> Event {
    Event::CircuitOpened(CircuitOpened {
        key_id,
        reason: TripReason::RateLimited,
        failures: 3,
        retry_at: chrono::Utc::now() + chrono::Duration::minutes(30),
    })
}

/// Every alert in the admin stream so far.
async fn alerts_in_stream(log: &Log) -> Vec<AlertRaised> {
    log.read_all(StreamKind::Admin)
        .await
        .into_iter()
        .filter_map(|(_, e)| match e.event {
            Event::AlertRaised(a) => Some(a),
            _ => None,
        })
        .collect()
}

/// Waits until the admin stream holds `n` alerts; returns them.
async fn wait_for_alerts(log: &Log, n: usize) -> Vec<AlertRaised> {
    let deadline = Instant::now() + WAIT;
    loop {
        let alerts = alerts_in_stream(log).await;
        if alerts.len() >= n {
            return alerts;
        }
        assert!(Instant::now() < deadline, "{} of {n} alerts in the stream: {alerts:#?}", alerts.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn settings_with(label: &str, hooks: Vec<WebhookSettings>) -> Settings {
    let mut settings = test_settings(label);
    let alerts = &mut settings.alerts;
    alerts.webhooks = hooks;
    alerts.open_circuits_threshold = 3;
    // A week-long window: the test cannot straddle two of them in practice.
    alerts.anomaly_window_mins = 7 * 24 * 60;
    alerts.anomaly_min_spend_usd = "50".parse().unwrap();
    alerts.anomaly_min_requests = 20;
    alerts.retry_backoff_base_ms = 20;
    alerts.retry_backoff_max_ms = 100;
    settings
}

async fn start(log: &Log, settings: &Settings) -> Alerts {
    Alerts::start(log.js.client(), log.ns.clone(), settings, None).await.unwrap()
}

/// Waits (bounded) until `condition` holds.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count_by_incident(alerts: &[AlertRaised]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in alerts {
        *out.entry(a.incident.clone()).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn each_rule_fires_once_per_incident_in_both_formats_and_a_restart_does_not_re_fire() {
    rules_fire_once_and_a_restart_does_not_re_fire("alertrules", None).await;
}

/// The same, where the restart starts from the rules' snapshot (saved at every admin event
/// here) instead of replaying the admin stream: the same alerts, none twice.
#[tokio::test]
async fn a_restart_from_the_rules_snapshot_does_not_re_fire_either() {
    rules_fire_once_and_a_restart_does_not_re_fire("alertsnap", Some(1)).await;
}

/// Every rule fires once per incident; a restart (from a snapshot of the rules saved every
/// `snapshot_every` admin events, or by replaying the admin stream) raises only new incidents.
async fn rules_fire_once_and_a_restart_does_not_re_fire(label: &str, snapshot_every: Option<u64>) {
    let json_hook = Receiver::start(Behaviour::Ok).await;
    let slack_hook = Receiver::start(Behaviour::Ok).await;
    let mut settings = settings_with(
        label,
        vec![
            json_hook.webhook("ops_json", WebhookFormat::Json, "whsec-test-secret"),
            slack_hook.webhook("ops_slack", WebhookFormat::Slack, ""),
        ],
    );
    settings.projector.state_snapshot_every = snapshot_every.unwrap_or(0);
    let log = Log::new(&settings).await;
    let (budgeted, budgeted_key, _) = log.user_with_key("ana").await;
    let (bedrock_user, bedrock_key, _) = log.user_with_key("ben").await;
    let (heavy, heavy_key, _) = log.user_with_key("cai").await;
    let circuit_keys: Vec<AccessKeyId> = (0..4).map(|_| AccessKeyId::new()).collect();
    log.append(Event::BudgetSet(BudgetSet { user_id: budgeted, monthly_limit_usd: Some("10".parse().unwrap()) })).await;
    let alerts = start(&log, &settings).await;

    // Budget: $8 then $2 cross 80% and 100%; more spend is the same incidents.
    for cost in ["8", "2", "1", "1"] {
        log.append(Event::RequestCompleted(request(budgeted, budgeted_key, cost))).await;
    }
    // Circuits: three keys open (one flaps through half-open), the third crosses the threshold.
    for key_id in &circuit_keys[..3] {
        log.append(opened(*key_id)).await;
    }
    log.append(Event::CircuitHalfOpened(CircuitHalfOpened { key_id: circuit_keys[0] })).await;
    log.append(opened(circuit_keys[0])).await;
    // Bedrock refuses one key's Bedrock API key, again and again.
    for _ in 0..5 {
        log.append(bedrock_auth_failure(bedrock_user, bedrock_key)).await;
    }
    // A burst far above a (zero) baseline: 25 requests, $75.
    for _ in 0..25 {
        log.append(Event::RequestCompleted(request(heavy, heavy_key, "3"))).await;
    }

    let expected_rules = [
        "budget_threshold",
        "budget_threshold",
        "circuit_open",
        "circuit_open",
        "circuit_open",
        "circuits_open",
        "bedrock_auth_failed",
        "spend_anomaly",
        "request_rate_anomaly",
    ];
    let raised = wait_for_alerts(&log, expected_rules.len()).await;
    let json_bodies = json_hook.wait_for(expected_rules.len()).await;
    let slack_bodies = slack_hook.wait_for(expected_rules.len()).await;
    let mut rules: Vec<&str> = raised.iter().map(|a| a.rule.as_str()).collect();
    rules.sort_unstable();
    let mut want = expected_rules.to_vec();
    want.sort_unstable();
    assert_eq!(rules, want, "{raised:#?}");
    assert!(count_by_incident(&raised).values().all(|n| *n == 1));
    let budget: Vec<&AlertRaised> = raised.iter().filter(|a| a.rule.as_str() == "budget_threshold").collect();
    assert!(budget.iter().all(|a| a.user_id == Some(budgeted)));
    assert!(budget.iter().any(|a| a.values["threshold_percent"] == json!(100)));
    let auth = raised.iter().find(|a| a.rule.as_str() == "bedrock_auth_failed").unwrap();
    assert_eq!(auth.key_id, Some(bedrock_key));
    let many = raised.iter().find(|a| a.rule.as_str() == "circuits_open").unwrap();
    assert_eq!(many.values["open_circuits"], json!(3));
    let anomalies: Vec<&AlertRaised> = raised.iter().filter(|a| a.rule.as_str().ends_with("_anomaly")).collect();
    assert!(anomalies.iter().all(|a| a.user_id == Some(heavy)), "{anomalies:#?}");

    // The JSON webhook: the alert with id and time, signed; the Slack one: a text.
    for d in &json_bodies {
        let id = d.body["id"].as_str().unwrap();
        assert_eq!(d.headers.get(ALERT_ID_HEADER).map(String::as_str), Some(id));
        assert!(raised.iter().any(|a| a.alert_id.to_string() == id && d.body["incident"] == a.incident.as_str()));
        assert!(d.body["time"].is_string() && d.body["severity"].is_string() && d.body["message"].is_string());
        let sig = d.headers.get(SIGNATURE_HEADER).expect("signed");
        assert_eq!(sig, &signature("whsec-test-secret", &d.raw));
    }
    for d in &slack_bodies {
        let text = d.body["text"].as_str().expect("slack text");
        assert!(raised.iter().any(|a| text.contains(&a.message)), "{text}");
        assert!(!d.headers.contains_key(SIGNATURE_HEADER), "no secret, no signature");
    }
    for text in json_bodies.iter().chain(&slack_bodies).map(|d| String::from_utf8_lossy(&d.raw).into_owned()) {
        assert!(!text.contains("s3cr3t-path-token") && !text.contains("whsec-test-secret"), "{text}");
    }
    let json_stats = alerts.stats.webhook("ops_json").unwrap();
    eventually("9 deliveries counted", || json_stats.ok.load(Ordering::Relaxed) == 9).await;

    // A restart replays every stream (the admin stream from the rules' snapshot on, when they
    // save one); only the two new incidents below are raised and delivered.
    let snapshot_seq = || async {
        let store = log.js.get_object_store(bucket_name(&log.ns, "projector")).await.ok()?;
        store.info(ccp_projector::alerts::SNAPSHOT_NAME).await.ok()?.metadata.get("ccp-seq")?.parse::<u64>().ok()
    };
    if snapshot_every.is_some() {
        // One more admin event, and again while a save under way skips it (each save waits a
        // random pause of up to 3 s): the rules save a snapshot at one, holding every alert
        // raised so far.
        let deadline = Instant::now() + Duration::from_secs(30);
        'saved: loop {
            let last = log.set_routing(heavy, RoutingStrategy::PlanFirst).await;
            let attempt = Instant::now() + Duration::from_secs(5);
            while Instant::now() < attempt {
                if snapshot_seq().await.is_some_and(|seq| seq >= last) {
                    break 'saved;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(Instant::now() < deadline, "no snapshot at {last}: {:?}", snapshot_seq().await);
        }
    }
    assert_eq!(alerts.stats.admin_from_snapshot(), 0, "the first start had no snapshot");
    drop(alerts);
    let (late, late_key, _) = log.user_with_key("dee").await;
    log.append(Event::BudgetSet(BudgetSet { user_id: late, monthly_limit_usd: Some("1".parse().unwrap()) })).await;
    let alerts = start(&log, &settings).await;
    log.append(Event::RequestCompleted(request(late, late_key, "0.9"))).await;
    if snapshot_every.is_some() {
        eventually("the restart loaded the snapshot", || alerts.stats.admin_from_snapshot() > 0).await;
    }
    log.append(Event::RequestCompleted(request(budgeted, budgeted_key, "1"))).await;
    log.append(bedrock_auth_failure(bedrock_user, bedrock_key)).await;
    log.append(opened(circuit_keys[3])).await;
    let raised = wait_for_alerts(&log, 11).await;
    json_hook.wait_for(11).await;
    slack_hook.wait_for(11).await;
    // The sentinels were evaluated after everything replayed before them in their streams.
    assert!(raised.iter().any(|a| a.user_id == Some(late) && a.values["threshold_percent"] == json!(80)));
    assert!(raised.iter().any(|a| a.key_id == Some(circuit_keys[3]) && a.rule.as_str() == "circuit_open"));
    let again = alerts_in_stream(&log).await;
    assert_eq!(again.len(), 11, "{:#?}", count_by_incident(&again));
    assert!(count_by_incident(&again).values().all(|n| *n == 1));
    assert_eq!(json_hook.accepted().len(), 11, "nothing was delivered twice");
    assert_eq!(slack_hook.accepted().len(), 11);
    // Recognised from the folded alert events, not merely dropped by NATS' duplicate window.
    assert_eq!(alerts.stats.duplicates(), 0);
    assert_eq!(alerts.stats.raised(AlertRule::BudgetThreshold), 1);
    assert_eq!(alerts.stats.raised(AlertRule::CircuitOpen), 1);
    assert_eq!(alerts.stats.raised(AlertRule::SpendAnomaly), 0);
    if snapshot_every.is_none() {
        assert_eq!(alerts.stats.admin_from_snapshot(), 0, "no snapshots: the admin stream replayed");
    }
    let delivered: std::collections::BTreeSet<String> =
        json_hook.accepted().iter().map(|d| d.body["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(delivered.len(), 11);
    drop(alerts);
    delete_namespace(&log.js, &log.ns).await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_a_broken_one_given_up_and_a_dead_one_delays_no_other() {
    let flaky = Receiver::start(Behaviour::FailFirst(2)).await;
    let broken = Receiver::start(Behaviour::FailFirst(usize::MAX)).await;
    let dead = Receiver::start(Behaviour::Hang).await;
    let good = Receiver::start(Behaviour::Ok).await;
    let mut settings = settings_with(
        "alertretry",
        vec![
            dead.webhook("dead", WebhookFormat::Json, ""),
            flaky.webhook("flaky", WebhookFormat::Json, ""),
            broken.webhook("broken", WebhookFormat::Json, ""),
            good.webhook("good", WebhookFormat::Slack, ""),
        ],
    );
    // The dead webhook's one attempt outlives the test; the others still get every alert.
    settings.alerts.delivery_timeout_secs = 3600;
    settings.alerts.retry_max_attempts = 3;
    let log = Log::new(&settings).await;
    let alerts = start(&log, &settings).await;
    let key_id = AccessKeyId::new();
    log.append(opened(key_id)).await;

    let got = good.wait_for(1).await;
    assert!(got[0].body["text"].as_str().unwrap().contains(&key_id.to_string()));
    let got = flaky.wait_for(1).await;
    assert_eq!(got[0].body["key_id"], key_id.to_string());
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3, "two 500s, then accepted");
    let stats = alerts.stats.webhook("flaky").unwrap();
    eventually("the flaky delivery counted", || stats.ok.load(Ordering::Relaxed) == 1).await;
    assert_eq!(stats.retried.load(Ordering::Relaxed), 2);

    let broken_stats = alerts.stats.webhook("broken").unwrap();
    eventually("the broken webhook given up on", || broken_stats.failed.load(Ordering::Relaxed) == 1).await;
    assert_eq!(broken_stats.retried.load(Ordering::Relaxed), 2);
    assert_eq!(broken.attempts.load(Ordering::SeqCst), 3, "bounded attempts");
    assert!(broken.accepted().is_empty());

    // A second alert still reaches the good webhook while the dead one hangs on the first.
    log.append(opened(AccessKeyId::new())).await;
    good.wait_for(2).await;
    assert_eq!(dead.attempts.load(Ordering::SeqCst), 1);
    assert_eq!(alerts.stats.webhook("dead").unwrap().ok.load(Ordering::Relaxed), 0);
    drop(alerts);
    delete_namespace(&log.js, &log.ns).await;
}

#[tokio::test]
async fn the_projector_binary_records_alerts_in_the_audit_log_and_metrics() {
    let hook = Receiver::start(Behaviour::Ok).await;
    let settings = test_settings("alertbin");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let config = std::env::temp_dir().join(format!("ccp-alerts-{}.toml", ulid::Ulid::new()));
    std::fs::write(
        &config,
        format!(
            "[[alerts.webhooks]]\nname = \"ops\"\nurl = \"{}\"\nformat = \"slack\"\nsecret = \"whsec-bin\"\n",
            hook.url
        ),
    )
    .unwrap();
    let port = free_port();
    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), format!("127.0.0.1:{port}")));
    let projector = Service::spawn(Path::new(BIN), &["--config", config.to_str().unwrap(), "serve"], &env).unwrap();
    let ready = wait_http_ok(&format!("http://127.0.0.1:{port}/ready"), WAIT).await;
    ready.unwrap_or_else(|e| panic!("{e}\n{}", projector.log_text()));

    let key_id = AccessKeyId::new();
    log.append(opened(key_id)).await;
    let got = hook.wait_for(1).await;
    assert!(got[0].body["text"].as_str().unwrap().contains(&key_id.to_string()));

    let ch = clickhouse().with_database(&db);
    let deadline = Instant::now() + WAIT;
    let (target_kind, details) = loop {
        let rows: Vec<(String, String)> = ch
            .query("SELECT target_kind, details FROM audit_log WHERE event_type = 'alert_raised'")
            .fetch_all()
            .await
            .unwrap();
        if let Some(row) = rows.into_iter().next() {
            break row;
        }
        assert!(Instant::now() < deadline, "no alert in the audit log\n{}", projector.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(target_kind, "alert");
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_eq!(details["rule"], "circuit_open");

    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = wait_http_ok(&format!("http://127.0.0.1:{port}/metrics"), WAIT).await.unwrap();
        let raised = metrics.contains("ccp_projector_alerts_raised_total{rule=\"circuit_open\"} 1\n");
        let delivered = metrics.contains("ccp_projector_alert_deliveries_total{webhook=\"ops\",outcome=\"ok\"} 1\n");
        if raised && delivered {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = projector.log_text();
    assert!(!logs.contains("s3cr3t-path-token") && !logs.contains("whsec-bin"), "a secret was logged");

    drop(projector);
    std::fs::remove_file(&config).ok();
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

/// A start with ClickHouse reads the month's spend from `requests` (one aggregate) and replays
/// only the requests since the anomaly baseline's start: budgets still count every request of the
/// month exactly once.
#[tokio::test]
async fn a_start_takes_the_months_spend_from_clickhouse_and_replays_only_the_baseline() {
    use ccp_projector::analytics::{Projection, Requests};
    let hook = Receiver::start(Behaviour::Ok).await;
    let mut settings = settings_with("alertseed", vec![hook.webhook("ops", WebhookFormat::Json, "")]);
    settings.alerts.anomaly_window_mins = 60;
    settings.alerts.anomaly_baseline_days = 1;
    let log = Log::new(&settings).await;
    let (ana, ana_key, _) = log.user_with_key("ana").await;
    log.append(Event::BudgetSet(BudgetSet { user_id: ana, monthly_limit_usd: Some("10".parse().unwrap()) })).await;
    let now = chrono::Utc::now();
    let month_start = ccp_schemas::calendar::Month::of(now, chrono_tz::UTC).start(chrono_tz::UTC);
    // The rules replay from one window and a baseline day (and five minutes) back.
    let baseline_start = now - chrono::Duration::minutes(60 + 24 * 60 + 5);
    let old_at = (month_start + chrono::Duration::minutes(1)).max(now - chrono::Duration::days(2));
    let at = |when: chrono::DateTime<chrono::Utc>, cost: &str| {
        let mut envelope = ccp_schemas::Envelope::new(
            Event::RequestCompleted(request(ana, ana_key, cost)),
            ccp_schemas::Actor::System { component: "test".into() },
        );
        envelope.occurred_at = when;
        envelope
    };
    let first_old = log.publish(&at(old_at, "5")).await;
    log.publish(&at(old_at, "2")).await;
    let recent = log.publish(&at(now - chrono::Duration::seconds(10), "0.5")).await;
    // Projected into ClickHouse, as the projector does.
    ccp_runtime::migrate::migrate(&settings.clickhouse).await.unwrap();
    let db = settings.clickhouse.database.clone();
    let ch = ccp_runtime::migrate::server_client(&settings.clickhouse).unwrap().with_database(&db);
    let mut projection =
        Projection::<Requests>::open(&log.js, &log.ns, ch.clone(), 100, Duration::from_millis(50)).await.unwrap();
    while projection.process_next_batch().await.unwrap().received > 0 {}

    let alerts = Alerts::start(log.js.client(), log.ns.clone(), &settings, Some(ch.clone())).await.unwrap();
    // The requests before the baseline were read as totals, not replayed (early in a month the
    // baseline reaches back before it, and they are replayed but not counted twice).
    let want_from = if old_at < baseline_start { recent } else { first_old };
    eventually("the replay began", || alerts.stats.request_replay_from() == want_from).await;
    // $1.5 more makes $9 of $10: the 80% threshold, once. Counting the replayed $0.5 twice (or
    // missing the seeded $7) would show another amount.
    log.append(Event::RequestCompleted(request(ana, ana_key, "1.5"))).await;
    let raised = wait_for_alerts(&log, 1).await;
    assert_eq!(raised.len(), 1, "{raised:#?}");
    assert_eq!(raised[0].values["threshold_percent"], json!(80));
    assert_eq!(raised[0].values["spend_usd"], json!("9"), "{raised:#?}");
    hook.wait_for(1).await;
    drop(alerts);
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    delete_namespace(&log.js, &log.ns).await;
}
