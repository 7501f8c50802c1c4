//! What the deployment decides about money and attention: prices, budgets and alerts.

use ccp_schemas::secrets::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The price list from configuration (pricing version 0). A `pricing_set` event (admin API)
/// replaces it with a numbered version; costs already recorded are never recomputed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingSettings {
    /// Prices per model (and optionally provider and region), USD per million tokens.
    pub models: Vec<ccp_schemas::events::ModelPrice>,
}

impl Default for PricingSettings {
    fn default() -> Self {
        Self { models: ccp_schemas::pricing::shipped_prices() }
    }
}

/// When budgets apply and what a month is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// IANA time zone whose calendar months budgets count (e.g. `Europe/Berlin`).
    pub time_zone: String,
    /// `bedrock`: an exhausted budget stops Bedrock requests only; `all`: every request.
    pub enforce: BudgetEnforcement,
    /// Most USD one request in flight reserves of a budget (its estimate: the body as input and
    /// `max_tokens` as output at the model's prices). Larger: fewer parallel requests near a
    /// budget's end, a smaller overshoot.
    #[serde(with = "rust_decimal::serde::str")]
    pub max_reservation_usd: rust_decimal::Decimal,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            enforce: BudgetEnforcement::Bedrock,
            max_reservation_usd: rust_decimal::Decimal::new(2, 0),
        }
    }
}

impl BudgetSettings {
    /// The configured time zone.
    pub fn tz(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.time_zone.parse().map_err(|_| {
            ConfigError::Invalid(format!("budgets.time_zone `{}` is not an IANA time zone", self.time_zone))
        })
    }
}

/// Which requests an exhausted budget stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetEnforcement {
    /// Requests that would go to Bedrock (the Plan is the developer's own).
    Bedrock,
    /// Every request.
    All,
}

/// Alerts for admins: rules evaluated by the projector on the event stream, each alert an
/// `alert_raised` event delivered to every webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Evaluate the rules (and deliver to the webhooks).
    pub enabled: bool,
    /// Percentages of a user's monthly budget that raise an alert (each once per user, month
    /// and limit).
    pub budget_thresholds_percent: Vec<u32>,
    /// Alert when a key's circuit opens (once until it closes).
    pub circuit_open: bool,
    /// Alert when this many keys have an open circuit at once (0: off); re-armed below it.
    pub open_circuits_threshold: usize,
    /// Alert when Bedrock refuses a key's Bedrock API key (once until it works again or is
    /// replaced).
    pub bedrock_auth_failure: bool,
    /// Anomaly window length in minutes (windows are aligned to the epoch).
    pub anomaly_window_mins: u32,
    /// Days of preceding windows whose average is a user's baseline.
    pub anomaly_baseline_days: u32,
    /// A window above this many times the baseline is an anomaly (0: anomaly rules off).
    pub anomaly_factor: u32,
    /// …and only when the window's spend is at least this many USD.
    #[serde(with = "rust_decimal::serde::str")]
    pub anomaly_min_spend_usd: rust_decimal::Decimal,
    /// …or (request rate) at least this many requests.
    pub anomaly_min_requests: u64,
    /// Incidents whose triggering event is older than this many minutes (seen when catching up
    /// after a first start or an outage) update the rules' state but raise no alert.
    pub max_alert_age_mins: u32,
    /// Seconds to wait for a webhook's answer.
    pub delivery_timeout_secs: u64,
    /// Attempts per alert and webhook before giving up (logged and counted).
    pub retry_max_attempts: u32,
    /// First retry delay in milliseconds (doubled per attempt, with jitter).
    pub retry_backoff_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_backoff_max_ms: u64,
    /// Where alerts go.
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            budget_thresholds_percent: vec![80, 100],
            circuit_open: true,
            open_circuits_threshold: 3,
            bedrock_auth_failure: true,
            anomaly_window_mins: 60,
            anomaly_baseline_days: 7,
            anomaly_factor: 5,
            anomaly_min_spend_usd: rust_decimal::Decimal::new(20, 0),
            anomaly_min_requests: 500,
            max_alert_age_mins: 60,
            delivery_timeout_secs: 5,
            retry_max_attempts: 8,
            retry_backoff_base_ms: 500,
            retry_backoff_max_ms: 60_000,
            webhooks: Vec::new(),
        }
    }
}

impl AlertSettings {
    /// Refuses webhooks the projector cannot deliver to (the URL is never in the message).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for hook in &self.webhooks {
            let ok_name = (1..=32).contains(&hook.name.len())
                && hook.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok_name {
                return Err(ConfigError::Invalid(format!(
                    "alerts.webhooks: name `{}` must be 1–32 characters of a-z, 0-9 and _",
                    hook.name.chars().take(40).collect::<String>()
                )));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(ConfigError::Invalid(format!("alerts.webhooks: name `{}` is used twice", hook.name)));
            }
            let url = hook.url.expose();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!(
                    "alerts.webhooks `{}`: url must start with https:// or http://",
                    hook.name
                )));
            }
        }
        if self.enabled && self.anomaly_factor > 0 && (self.anomaly_window_mins == 0 || self.anomaly_baseline_days == 0)
        {
            return Err(ConfigError::Invalid(
                "alerts.anomaly_window_mins and alerts.anomaly_baseline_days must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// One alert webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// A name for logs, metrics and its delivery consumer (a-z, 0-9, _).
    pub name: String,
    /// Where alerts are POSTed. A secret (Slack's URLs are credentials): never logged.
    pub url: SecretString,
    /// The body: `json` (the alert) or `slack` (`{"text": …}`).
    #[serde(default)]
    pub format: WebhookFormat,
    /// When set, each body is signed: `x-ccp-signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: SecretString,
}

/// A webhook's body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The alert as JSON: `{"id", "time", "rule", "incident", "severity", …}`.
    #[default]
    Json,
    /// A Slack-compatible incoming-webhook message.
    Slack,
}
