//! A model without a price: one incident per model name, ever (the first request whose tokens
//! had no price).

use ccp_schemas::events::{AlertRule, AlertSeverity};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{values, Incident, RequestFacts, Rules};

impl Rules {
    pub(super) fn unpriced(&self, r: &RequestFacts, at: DateTime<Utc>, out: &mut Vec<Incident>) {
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use ccp_schemas::events::*;

    use crate::alerts::rules::given::*;

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
}
