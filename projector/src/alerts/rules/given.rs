//! The rules' test framework: given events, when each is applied in order, the incidents raised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ccp_runtime::config::{AlertSettings, BudgetSettings};
use ccp_schemas::events::*;
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::{Actor, Envelope};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Incident, RuleConfig, Rules};

/// The defaults, anomaly rules off.
pub(super) fn cfg() -> RuleConfig {
    let alerts = AlertSettings { anomaly_factor: 0, ..AlertSettings::default() };
    RuleConfig::new(&alerts, &BudgetSettings::default()).unwrap()
}

pub(super) fn at(event: Event, when: DateTime<Utc>) -> Envelope {
    let mut e = Envelope::new(event, Actor::Anonymous);
    e.occurred_at = when;
    e
}

pub(super) fn request(user_id: UserId, key_id: AccessKeyId, cost: &str) -> RequestCompleted {
    serde_json::from_value(json!({
        "request_id": RequestId::new(), "key_id": key_id, "user_id": user_id, "endpoint": "messages",
        "provider": "anthropic", "fallback": false, "status": 200, "stream": true,
        "cost_usd": cost, "latency_ms": 10,
    }))
    .unwrap()
}

/// Given events, when each is applied in order: the rules of every incident raised.
pub(super) struct Given {
    pub(super) rules: Rules,
    pub(super) seq: u64,
    pub(super) now: DateTime<Utc>,
    pub(super) user: UserId,
    pub(super) key: AccessKeyId,
}

impl Given {
    pub(super) fn new() -> Self {
        Self::with(cfg())
    }

    pub(super) fn with(cfg: RuleConfig) -> Self {
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

    pub(super) fn when(&mut self, event: Event) -> Vec<Incident> {
        self.seq += 1;
        self.rules.apply(self.seq, &at(event, self.now))
    }

    pub(super) fn spend(&mut self, cost: &str) -> Vec<Incident> {
        self.when(Event::RequestCompleted(request(self.user, self.key, cost)))
    }

    pub(super) fn budget(&mut self, limit: &str) -> Vec<Incident> {
        self.when(Event::BudgetSet(BudgetSet { user_id: self.user, monthly_limit_usd: Some(limit.parse().unwrap()) }))
    }
}

pub(super) fn keys(incidents: &[Incident]) -> Vec<&str> {
    incidents.iter().map(|i| i.key.as_str()).collect()
}
