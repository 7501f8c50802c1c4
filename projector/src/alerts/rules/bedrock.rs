//! Bedrock API keys: one incident per key from Bedrock's first refusal until a Bedrock request
//! of that key succeeds or its Bedrock API key is replaced; one each time a readiness check turns
//! a key from ready (or unchecked) to not ready.

use ccp_schemas::events::{AlertRule, AlertSeverity, BedrockKeyChecked, BedrockReadiness, ErrorClass, Provider};
use ccp_schemas::ids::AccessKeyId;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{values, Incident, RequestFacts, Rules};

impl Rules {
    /// A readiness check was recorded (the directory has applied it).
    pub(super) fn bedrock_key_checked(
        &mut self,
        seq: u64,
        e: &BedrockKeyChecked,
        at: DateTime<Utc>,
        out: &mut Vec<Incident>,
    ) {
        let before = self.readiness.insert(e.key_id, e.readiness);
        let was_ready = before.is_none_or(|r| r == BedrockReadiness::Ready);
        if was_ready && e.readiness != BedrockReadiness::Ready {
            let failing: Vec<&str> = e
                .models
                .iter()
                .filter(|m| m.readiness != BedrockReadiness::Ready)
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

    /// A new Bedrock API key starts unchecked.
    pub(super) fn bedrock_key_replaced(&mut self, key_id: AccessKeyId) {
        self.readiness.remove(&key_id);
    }

    pub(super) fn bedrock_auth(&mut self, seq: u64, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ccp_schemas::events::*;

    use crate::alerts::rules::given::*;

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
}
