//! Delivery of alerts to one webhook: a durable JetStream consumer of the alert subjects per
//! webhook (its own progress and retries), one alert at a time, POSTed with a timeout and
//! retried with exponential backoff and jitter up to a bounded number of attempts; then it is
//! acknowledged either way (a failure is logged and counted). A webhook that stays down holds up
//! only its own queue. Neither the URL nor the signing secret is ever logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy, AckKind};
use ccp_runtime::config::{AlertSettings, WebhookFormat, WebhookSettings};
use ccp_schemas::events::{AlertRaised, AlertSeverity, Event};
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::{Envelope, Namespace};
use futures_util::StreamExt as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The signature header: `sha256=<hex HMAC-SHA256 of the body under the webhook's secret>`.
pub const SIGNATURE_HEADER: &str = "x-ccp-signature";
/// The alert id header (receivers can de-duplicate retried deliveries with it).
pub const ALERT_ID_HEADER: &str = "x-ccp-alert-id";

/// Delivery counters of one webhook.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Alerts the webhook accepted (2xx).
    pub ok: AtomicU64,
    /// Alerts given up on after the last attempt.
    pub failed: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
}

/// The body POSTed for an alert.
pub fn body(format: WebhookFormat, envelope: &Envelope, alert: &AlertRaised) -> Value {
    match format {
        WebhookFormat::Json => {
            let mut v = serde_json::to_value(alert).unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.insert("id".into(), json!(alert.alert_id.to_string()));
                map.insert("time".into(), json!(envelope.occurred_at.to_rfc3339()));
            }
            v
        }
        WebhookFormat::Slack => {
            let icon = match alert.severity {
                AlertSeverity::Critical => ":rotating_light:",
                AlertSeverity::Warning => ":warning:",
            };
            let severity = crate::analytics::label(&alert.severity).to_ascii_uppercase();
            json!({
                "text": format!(
                    "{icon} *{severity}* {}\n`{}` · incident `{}` · {}",
                    alert.message,
                    alert.rule.as_str(),
                    alert.incident,
                    envelope.occurred_at.to_rfc3339()
                ),
            })
        }
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        })
        .unwrap_or_default()
}

/// The wait before retry number `attempt` (1-based): `base · 2^(attempt-1)`, capped at `max`,
/// then a random point in its upper half (`jitter`: any random number).
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: u64) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    let half = u64::try_from(full.as_millis() / 2).unwrap_or(u64::MAX);
    Duration::from_millis(half + jitter % (half + 1))
}

/// The durable consumer of one webhook (created on first start at the end of the alert
/// subjects; afterwards it keeps its progress).
pub async fn consumer(
    js: &jetstream::Context,
    ns: &Namespace,
    hook: &WebhookSettings,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = js.get_stream(ns.stream(StreamKind::Admin)).await?;
    let name = ns.consumer(&format!("alerts_webhook_{}", hook.name));
    let consumer = stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("alert delivery to webhook {}", hook.name)),
                deliver_policy: DeliverPolicy::New,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 1,
                filter_subject: ns.alert_subjects(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the delivery consumer of webhook {}: {e}", hook.name))?;
    Ok(consumer)
}

/// One webhook's delivery loop.
pub struct Webhook {
    hook: WebhookSettings,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    http: reqwest::Client,
    attempts: u32,
    base: Duration,
    max: Duration,
    /// Deliveries made, retried and given up, for `/metrics`.
    pub stats: Arc<DeliveryStats>,
}

impl Webhook {
    /// A webhook delivering from `consumer`.
    pub fn new(
        hook: WebhookSettings,
        consumer: jetstream::consumer::Consumer<pull::Config>,
        settings: &AlertSettings,
        egress: &ccp_runtime::egress::Egress,
    ) -> anyhow::Result<Self> {
        let http = egress
            .reqwest_builder()?
            .timeout(Duration::from_secs(settings.delivery_timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(settings.delivery_timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ccp-projector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            hook,
            consumer,
            http,
            attempts: settings.retry_max_attempts.max(1),
            base: Duration::from_millis(settings.retry_backoff_base_ms.max(1)),
            max: Duration::from_millis(settings.retry_backoff_max_ms.max(1)),
            stats: Arc::new(DeliveryStats::default()),
        })
    }

    /// The webhook's name.
    pub fn name(&self) -> &str {
        &self.hook.name
    }

    /// Delivers alerts for ever (errors of the consumer are logged and retried).
    pub async fn run(self) {
        loop {
            if let Err(e) = self.deliver_next().await {
                tracing::warn!(webhook = %self.hook.name, error = %format!("{e:#}"), "alert delivery: reading the queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Waits (up to 5 s) for the next alert and delivers it (with retries), then acknowledges it.
    pub async fn deliver_next(&self) -> anyhow::Result<()> {
        let mut batch = self.consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages().await?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("fetching an alert: {e}"))?;
            let alert = match Envelope::decode(&message.payload) {
                Ok(envelope) => match &envelope.event {
                    Event::AlertRaised(alert) => Some((body(self.hook.format, &envelope, alert), alert.alert_id)),
                    _ => None,
                },
                Err(e) => {
                    tracing::error!(webhook = %self.hook.name, error = %e, "alert delivery skips an undecodable event");
                    None
                }
            };
            if let Some((body, alert_id)) = alert {
                self.post_with_retries(&message, &body, alert_id).await;
            }
            message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        }
        Ok(())
    }

    async fn post_with_retries(&self, message: &jetstream::Message, body: &Value, alert_id: ulid::Ulid) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        for attempt in 1..=self.attempts {
            // Keeps the message ours while we retry (each attempt is well inside `ack_wait`).
            let _ = message.ack_with(AckKind::Progress).await;
            let outcome = self.post(&bytes, alert_id).await;
            match outcome {
                Ok(()) => {
                    self.stats.ok.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(webhook = %self.hook.name, %alert_id, attempt, "alert delivered");
                    return;
                }
                Err(reason) if attempt < self.attempts => {
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff(attempt, self.base, self.max, getrandom::u64().unwrap_or(0));
                    tracing::warn!(webhook = %self.hook.name, %alert_id, attempt, %reason,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "alert delivery failed; retrying");
                    let mut left = wait;
                    while !left.is_zero() {
                        let step = left.min(Duration::from_secs(20));
                        tokio::time::sleep(step).await;
                        left -= step;
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
                Err(reason) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(webhook = %self.hook.name, %alert_id, attempts = attempt, %reason,
                        "alert delivery failed; giving up on this alert for this webhook");
                }
            }
        }
    }

    /// One POST; the reason of a failure never contains the URL.
    async fn post(&self, body: &[u8], alert_id: ulid::Ulid) -> Result<(), String> {
        let mut request = self
            .http
            .post(self.hook.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ALERT_ID_HEADER, alert_id.to_string());
        if !self.hook.secret.is_empty() {
            request = request.header(SIGNATURE_HEADER, signature(self.hook.secret.expose(), body));
        }
        match request.body(body.to_vec()).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("status {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Err("timeout".into()),
            Err(e) if e.is_connect() => Err("connection failed".into()),
            Err(_) => Err("request failed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ccp_schemas::events::AlertRule;
    use ccp_schemas::Actor;

    use super::*;

    fn alert() -> (Envelope, AlertRaised) {
        let alert = AlertRaised {
            alert_id: ulid::Ulid::new(),
            rule: AlertRule::CircuitOpen,
            incident: "circuit_open:key_x:7".into(),
            severity: AlertSeverity::Critical,
            user_id: None,
            key_id: None,
            message: "The circuit opened".into(),
            values: [("failures".to_owned(), json!(3))].into_iter().collect(),
        };
        let envelope = Envelope::new(Event::AlertRaised(alert.clone()), Actor::System { component: "t".into() });
        (envelope, alert)
    }

    #[test]
    fn json_bodies_are_the_alert_with_id_and_time() {
        let (envelope, alert) = alert();
        let v = body(WebhookFormat::Json, &envelope, &alert);
        assert_eq!(v["id"], alert.alert_id.to_string());
        assert_eq!(v["rule"], "circuit_open");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["values"]["failures"], 3);
        assert!(v["time"].as_str().unwrap().starts_with(&envelope.occurred_at.format("%Y-%m-%d").to_string()));
    }

    #[test]
    fn slack_bodies_are_one_text() {
        let (envelope, alert) = alert();
        let v = body(WebhookFormat::Slack, &envelope, &alert);
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("*CRITICAL* The circuit opened"), "{text}");
        assert!(text.contains("circuit_open:key_x:7"), "{text}");
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff(1, base, max, 0), Duration::from_millis(50));
        assert_eq!(backoff(1, base, max, 50), Duration::from_millis(100));
        assert_eq!(backoff(3, base, max, 0), Duration::from_millis(200));
        assert_eq!(backoff(10, base, max, 0), Duration::from_millis(500));
        assert!(backoff(40, base, max, u64::MAX) <= max);
    }
}
