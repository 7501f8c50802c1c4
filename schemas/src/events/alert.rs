//! Alerts for admins (subject `<prefix>.admin.alert.<rule>`, in the admin stream so they are kept
//! for ever and appear in the audit log). The projector raises them from the event stream; one
//! incident is one alert, identified by its [`AlertRaised::incident`] key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::ids::{AccessKeyId, UserId};

/// Which rule raised an alert (also the last subject token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertRule {
    /// A user's month-to-date spend reached a configured percentage of their budget.
    BudgetThreshold,
    /// A key's circuit breaker opened (Anthropic is skipped for it).
    CircuitOpen,
    /// The number of keys with an open circuit reached the configured threshold.
    CircuitsOpen,
    /// Bedrock refused a key's Bedrock API key.
    BedrockAuthFailed,
    /// A user's spend in a window is far above their own recent baseline.
    SpendAnomaly,
    /// A user's request count in a window is far above their own recent baseline.
    RequestRateAnomaly,
    /// Tokens were consumed of a model that has no price: its cost is unknown until one is set.
    UnpricedModel,
    /// A readiness check found that a key's Bedrock API key can no longer take a failover.
    BedrockKeyNotReady,
}

impl AlertRule {
    /// Every rule.
    pub const ALL: [Self; 8] = [
        Self::BudgetThreshold,
        Self::CircuitOpen,
        Self::CircuitsOpen,
        Self::BedrockAuthFailed,
        Self::SpendAnomaly,
        Self::RequestRateAnomaly,
        Self::UnpricedModel,
        Self::BedrockKeyNotReady,
    ];

    /// The snake_case name (subject token, metric label): its serde name ([`super::label()`]).
    pub fn as_str(self) -> &'static str {
        super::label(&self)
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// Worth a look.
    Warning,
    /// Someone is (or soon will be) affected.
    Critical,
}

/// An alert was raised for an incident. Never holds a secret (no key material, no webhook URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRaised {
    /// The alert (also the envelope id).
    pub alert_id: Ulid,
    /// The rule.
    pub rule: AlertRule,
    /// The incident (de-duplication key), e.g. `budget_threshold:<user>:2026-11:80:<limit>`.
    pub incident: String,
    /// How urgent.
    pub severity: AlertSeverity,
    /// The user concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The access key concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<AccessKeyId>,
    /// A sentence for people.
    pub message: String,
    /// The measured values (amounts in USD as exact decimal strings, counts as numbers).
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
}
