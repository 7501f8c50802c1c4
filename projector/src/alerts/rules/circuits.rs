//! Circuits: one incident per opening of a key's circuit until it closes (half-open and a
//! failed probe are the same incident), and one when the number of open circuits reaches the
//! threshold, re-armed when it falls below it again.

use ccp_schemas::events::{AlertRule, AlertSeverity};
use ccp_schemas::ids::AccessKeyId;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{values, Incident, Rules};

impl Rules {
    pub(super) fn circuit_opened(
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

    pub(super) fn circuit_closed(&mut self, key_id: AccessKeyId) {
        self.open.remove(&key_id);
        if self.open.len() < self.cfg.open_circuits_threshold {
            self.many_armed = true;
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
}
