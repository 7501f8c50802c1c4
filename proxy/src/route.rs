//! The routing policy as pure decisions, no I/O: where a request goes (Anthropic, Bedrock or
//! a refusal) from its key's strategy, the endpoint, the key's circuit, whether it can fail
//! over and the user's budget; what happens when Anthropic fails; and which Bedrock model a
//! failover calls. `forward` and `failover` are the I/O around these functions.

use std::collections::BTreeMap;

use ccp_runtime::config::BudgetEnforcement;
use ccp_schemas::catalogue::{self, Catalogue};
use ccp_schemas::events::{BedrockTarget, Endpoint, FallbackReason, ModelFamily, RoutingStrategy, TargetSource};

use crate::breaker::Route;

/// What the decision needs to know about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Which API.
    pub endpoint: Endpoint,
    /// Whether it is a `POST` (only a `POST /v1/messages` can be replayed on Bedrock).
    pub post: bool,
    /// The user's routing strategy.
    pub routing: RoutingStrategy,
    /// The key has a Bedrock API key and the proxy can open it (a master key is configured).
    pub bedrock_ready: bool,
    /// What the key's circuit breaker says (only asked when [`uses_breaker`]).
    pub breaker: Route,
    /// The user's monthly budget is used up (by every replica's finished requests).
    pub budget_spent: bool,
    /// Which requests an exhausted budget stops.
    pub enforcement: BudgetEnforcement,
}

/// Whether a request of this kind may fail over at all, and so whether its outcome counts for
/// the key's circuit breaker (and the breaker is asked).
pub fn uses_breaker(endpoint: Endpoint, post: bool, routing: RoutingStrategy) -> bool {
    routing != RoutingStrategy::PlanOnly && endpoint == Endpoint::Messages && post
}

/// Where a request goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Ask Anthropic; if it fails before answering, do `on_failure`.
    Plan {
        /// What a 429/529/5xx, connection error or timeout leads to.
        on_failure: OnFailure,
    },
    /// Replay on Bedrock at once, for this reason.
    Bedrock(FallbackReason),
    /// Answer with the proxy's own error.
    Refuse(Refusal),
}

/// What an Anthropic failure before the answer leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Replay on Bedrock ([`after_plan_failure`] decides with the budget at that moment).
    Bedrock,
    /// A 503 explaining there is no Bedrock fallback for this key.
    Explain,
    /// Anthropic's own answer is relayed (a transport error becomes a 502/504): the request
    /// cannot fail over (not a Messages `POST`, or the user is `plan_only`).
    Relay,
}

/// Why the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The monthly budget is used up (429); `failover` names the reason when it was Bedrock
    /// that the budget stopped.
    BudgetExhausted {
        /// Why the request was going to Bedrock, if it was.
        failover: Option<FallbackReason>,
    },
    /// Bedrock was needed for this reason, but the key has no usable Bedrock API key (503).
    NoFallback(FallbackReason),
}

/// The first decision for a request.
pub fn route(f: &Facts) -> Decision {
    if f.routing == RoutingStrategy::BedrockOnly && f.endpoint == Endpoint::Messages {
        return bedrock(f, FallbackReason::Routing);
    }
    if f.enforcement == BudgetEnforcement::All && f.budget_spent {
        return Decision::Refuse(Refusal::BudgetExhausted { failover: None });
    }
    if !uses_breaker(f.endpoint, f.post, f.routing) {
        return Decision::Plan { on_failure: OnFailure::Relay };
    }
    if !f.bedrock_ready {
        // The breaker's verdict cannot be acted on: Anthropic is the only way.
        return Decision::Plan { on_failure: OnFailure::Explain };
    }
    if f.breaker == Route::Skip {
        return bedrock(f, FallbackReason::CircuitOpen);
    }
    Decision::Plan { on_failure: OnFailure::Bedrock }
}

/// The decision once Anthropic failed before answering with `reason` (for a request whose
/// [`route`] was `Plan { on_failure: OnFailure::Bedrock }`), with the budget as it is now.
pub fn after_plan_failure(f: &Facts, reason: FallbackReason) -> Decision {
    bedrock(f, reason)
}

fn bedrock(f: &Facts, reason: FallbackReason) -> Decision {
    if !f.bedrock_ready {
        Decision::Refuse(Refusal::NoFallback(reason))
    } else if f.budget_spent {
        Decision::Refuse(Refusal::BudgetExhausted { failover: Some(reason) })
    } else {
        Decision::Bedrock(reason)
    }
}

/// A Bedrock model found in the key's own model listing (its account and region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The Claude model name inside the id (`claude-opus-5-5`, `claude-sonnet-4-5-20250929`).
    pub claude_name: String,
    /// Where it runs, as a catalogue scope: the profile's geography (`us`, `eu`, `global`, …)
    /// or, for an in-region foundation model, the listing's region.
    pub scope: String,
    /// The id to call.
    pub model_id: String,
}

/// What a failover needs to pick the Bedrock model.
#[derive(Debug, Clone, Copy)]
pub struct TargetQuery<'a> {
    /// The model the client asked for.
    pub requested: Option<&'a str>,
    /// The key's Bedrock region.
    pub region: &'a str,
    /// The key's default Bedrock model id.
    pub key_default: Option<&'a str>,
    /// The catalogue in force.
    pub catalogue: &'a Catalogue,
    /// The configured fallback per family.
    pub family_fallback: &'a BTreeMap<ModelFamily, String>,
}

/// The Bedrock model a failover calls, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The model or inference-profile id.
    pub model_id: String,
    /// How it was found.
    pub source: TargetSource,
    /// Another model than the one requested answers.
    pub substituted: bool,
    /// What the request is priced as: the catalogue entry of the model called, else its name.
    pub priced_as: Option<String>,
}

/// The catalogue step alone: the requested model's entry has a target for the key's region.
/// `None` means the listing may help ([`resolve_target`] with it).
pub fn catalogue_target(q: &TargetQuery<'_>) -> Option<Target> {
    let entry = q.catalogue.lookup(q.requested?)?;
    let target = catalogue::target_for(&entry.bedrock, q.region)?;
    Some(Target {
        model_id: target.model_id.clone(),
        source: TargetSource::Catalogue,
        substituted: false,
        priced_as: Some(entry.id.clone()),
    })
}

/// The Bedrock model for a failover, in this order: the catalogue entry's target for the
/// region → the key's own listing (`listed`, when it could be read) → the family's configured
/// fallback, else its newest catalogued model with a target → the key's default model. `None`:
/// nothing maps (a 503 `model_not_mapped`).
pub fn resolve_target(q: &TargetQuery<'_>, listed: Option<&[Listed]>) -> Option<Target> {
    if let Some(t) = catalogue_target(q) {
        return Some(t);
    }
    let entry = q.requested.and_then(|r| q.catalogue.lookup(r));
    // The names the requested model goes by: its catalogue id and aliases, else itself.
    let names: Vec<&str> = match (entry, q.requested) {
        (Some(e), _) => std::iter::once(e.id.as_str()).chain(e.aliases.iter().map(String::as_str)).collect(),
        (None, Some(r)) => vec![r],
        (None, None) => vec![],
    };
    if let Some(listed) = listed {
        let same_model = |l: &&Listed| {
            names
                .iter()
                .any(|n| catalogue::name_matches(&l.claude_name, n) || catalogue::name_matches(n, &l.claude_name))
        };
        let targets: Vec<BedrockTarget> = listed
            .iter()
            .filter(same_model)
            .map(|l| BedrockTarget { scope: l.scope.clone(), model_id: l.model_id.clone() })
            .collect();
        if let Some(t) = catalogue::target_for(&targets, q.region) {
            return Some(Target {
                model_id: t.model_id.clone(),
                source: TargetSource::Listing,
                substituted: false,
                priced_as: entry.map(|e| e.id.clone()).or_else(|| q.requested.map(str::to_owned)),
            });
        }
    }
    let family = entry.map(|e| e.family).or_else(|| q.requested.and_then(catalogue::family_of));
    if let Some(family) = family {
        let configured = q.family_fallback.get(&family).and_then(|id| q.catalogue.get(id));
        let fallback = match configured {
            Some(e) => catalogue::target_for(&e.bedrock, q.region).map(|t| (e, t)),
            None => q.catalogue.newest_with_target(family, q.region),
        };
        if let Some((e, t)) = fallback {
            return Some(Target {
                model_id: t.model_id.clone(),
                source: TargetSource::FamilyFallback,
                substituted: true,
                priced_as: Some(e.id.clone()),
            });
        }
    }
    let default = q.key_default?;
    let default_entry = q.catalogue.by_bedrock_id(default);
    let priced_as = default_entry
        .map(|e| e.id.clone())
        .or_else(|| catalogue::claude_name_in_bedrock_id(default).map(str::to_owned));
    let same = match (default_entry, entry) {
        (Some(d), Some(e)) => d.id == e.id,
        _ => catalogue::claude_name_in_bedrock_id(default)
            .is_some_and(|n| names.iter().any(|r| catalogue::name_matches(n, r) || catalogue::name_matches(r, n))),
    };
    Some(Target { model_id: default.to_owned(), source: TargetSource::KeyDefault, substituted: !same, priced_as })
}

/// What a request answered by Anthropic is priced as: the catalogue entry of the requested
/// model, else the requested name.
pub fn plan_priced_as(catalogue: &Catalogue, requested: Option<&str>) -> Option<String> {
    let requested = requested?;
    Some(catalogue.lookup(requested).map_or_else(|| requested.to_owned(), |e| e.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccp_schemas::events::{CatalogueEntry, Event, ModelCatalogued};
    use Decision::{Bedrock, Plan, Refuse};
    use FallbackReason::{CircuitOpen, RateLimited, Routing};
    use OnFailure::{Explain, Relay};

    const ENDPOINTS: [Endpoint; 3] = [Endpoint::Messages, Endpoint::CountTokens, Endpoint::Other];
    const STRATEGIES: [RoutingStrategy; 3] =
        [RoutingStrategy::PlanFirst, RoutingStrategy::PlanOnly, RoutingStrategy::BedrockOnly];
    const BREAKER: [Route; 3] = [Route::Plan, Route::Probe, Route::Skip];
    const ENFORCE: [BudgetEnforcement; 2] = [BudgetEnforcement::Bedrock, BudgetEnforcement::All];

    /// The policy, written as a table: given every combination of the facts, the decision is
    /// the one the rules in the README name. Each rule is one line below, checked in order.
    fn expected(f: &Facts) -> Decision {
        let messages = f.endpoint == Endpoint::Messages;
        let replayable = messages && f.post && f.routing != RoutingStrategy::PlanOnly;
        let to_bedrock = |reason| match (f.bedrock_ready, f.budget_spent) {
            (false, _) => Refuse(Refusal::NoFallback(reason)),
            (true, true) => Refuse(Refusal::BudgetExhausted { failover: Some(reason) }),
            (true, false) => Bedrock(reason),
        };
        // 1. bedrock_only users' Messages calls never go to Anthropic (any method).
        if f.routing == RoutingStrategy::BedrockOnly && messages {
            return to_bedrock(Routing);
        }
        // 2. With `budgets.enforce = "all"`, a spent budget stops everything else.
        if f.enforcement == BudgetEnforcement::All && f.budget_spent {
            return Refuse(Refusal::BudgetExhausted { failover: None });
        }
        // 3. What cannot be replayed on Bedrock is relayed as Anthropic answers it.
        if !replayable {
            return Plan { on_failure: Relay };
        }
        // 4. A key without a usable Bedrock key goes to Anthropic whatever its circuit says,
        //    and a failure is explained.
        if !f.bedrock_ready {
            return Plan { on_failure: Explain };
        }
        // 5. An open circuit skips Anthropic (budget permitting).
        if f.breaker == Route::Skip {
            return to_bedrock(CircuitOpen);
        }
        // 6. Otherwise Anthropic first, Bedrock on failure.
        Plan { on_failure: OnFailure::Bedrock }
    }

    fn every_fact() -> Vec<Facts> {
        let mut all = Vec::new();
        for endpoint in ENDPOINTS {
            for post in [true, false] {
                for routing in STRATEGIES {
                    for bedrock_ready in [true, false] {
                        for breaker in BREAKER {
                            for budget_spent in [true, false] {
                                for enforcement in ENFORCE {
                                    all.push(Facts {
                                        endpoint,
                                        post,
                                        routing,
                                        bedrock_ready,
                                        breaker,
                                        budget_spent,
                                        enforcement,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        all
    }

    #[test]
    fn every_combination_routes_as_the_table_says() {
        let all = every_fact();
        assert_eq!(all.len(), 3 * 2 * 3 * 2 * 3 * 2 * 2);
        for f in &all {
            assert_eq!(route(f), expected(f), "{f:?}");
        }
    }

    #[test]
    fn named_cases() {
        let base = Facts {
            endpoint: Endpoint::Messages,
            post: true,
            routing: RoutingStrategy::PlanFirst,
            bedrock_ready: true,
            breaker: Route::Plan,
            budget_spent: false,
            enforcement: BudgetEnforcement::Bedrock,
        };
        assert_eq!(route(&base), Plan { on_failure: OnFailure::Bedrock });
        // A spent budget does not stop Plan traffic under `enforce = "bedrock"`…
        let spent = Facts { budget_spent: true, ..base };
        assert_eq!(route(&spent), Plan { on_failure: OnFailure::Bedrock });
        // …but does stop the failover.
        assert_eq!(
            after_plan_failure(&spent, RateLimited),
            Refuse(Refusal::BudgetExhausted { failover: Some(RateLimited) })
        );
        assert_eq!(after_plan_failure(&base, RateLimited), Bedrock(RateLimited));
        assert_eq!(route(&Facts { breaker: Route::Skip, ..base }), Bedrock(CircuitOpen));
        assert_eq!(route(&Facts { breaker: Route::Probe, ..base }), Plan { on_failure: OnFailure::Bedrock });
        assert_eq!(route(&Facts { endpoint: Endpoint::CountTokens, ..base }), Plan { on_failure: Relay });
        assert_eq!(
            route(&Facts { routing: RoutingStrategy::PlanOnly, breaker: Route::Skip, ..base }),
            Plan { on_failure: Relay }
        );
        assert_eq!(
            route(&Facts { routing: RoutingStrategy::BedrockOnly, bedrock_ready: false, ..base }),
            Refuse(Refusal::NoFallback(Routing))
        );
        assert!(uses_breaker(Endpoint::Messages, true, RoutingStrategy::BedrockOnly));
        assert!(!uses_breaker(Endpoint::Messages, false, RoutingStrategy::PlanFirst));
    }

    fn query<'a>(catalogue: &'a Catalogue, requested: &'a str, region: &'a str) -> TargetQuery<'a> {
        static NONE: std::sync::OnceLock<BTreeMap<ModelFamily, String>> = std::sync::OnceLock::new();
        TargetQuery {
            requested: Some(requested),
            region,
            key_default: None,
            catalogue,
            family_fallback: NONE.get_or_init(BTreeMap::new),
        }
    }

    fn listed(name: &str, scope: &str) -> Listed {
        let prefix = if scope.contains('-') { String::new() } else { format!("{scope}.") };
        Listed { claude_name: name.into(), scope: scope.into(), model_id: format!("{prefix}anthropic.{name}-v1:0") }
    }

    #[test]
    fn targets_come_from_the_catalogue_first() {
        let c = Catalogue::shipped();
        let t = resolve_target(&query(&c, "claude-sonnet-4-5-20250929", "us-east-1"), None).unwrap();
        assert_eq!(t.model_id, "global.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(
            (t.source, t.substituted, t.priced_as.as_deref()),
            (TargetSource::Catalogue, false, Some("claude-sonnet-4-5"))
        );
    }

    #[test]
    fn an_uncatalogued_target_comes_from_the_listing_in_the_keys_geography() {
        let c = Catalogue::shipped();
        let list = [
            listed("claude-opus-5-5", "global"),
            listed("claude-opus-5-5", "eu"),
            listed("claude-opus-4-5-20251101", "eu"),
        ];
        let t = resolve_target(&query(&c, "claude-opus-5-5", "eu-west-1"), Some(&list)).unwrap();
        assert_eq!((t.model_id.as_str(), t.source), ("eu.anthropic.claude-opus-5-5-v1:0", TargetSource::Listing));
        assert_eq!((t.substituted, t.priced_as.as_deref()), (false, Some("claude-opus-5-5")));
        let t = resolve_target(&query(&c, "claude-opus-5-5", "us-east-1"), Some(&list)).unwrap();
        assert_eq!(t.model_id, "global.anthropic.claude-opus-5-5-v1:0");
        // An unknown model is matched by its own name too, dated or not.
        let list = [listed("claude-sonnet-5-20261101", "us")];
        let t = resolve_target(&query(&c, "claude-sonnet-5", "us-west-2"), Some(&list)).unwrap();
        assert_eq!((t.source, t.priced_as.as_deref()), (TargetSource::Listing, Some("claude-sonnet-5")));
    }

    #[test]
    fn without_a_target_the_family_falls_back_and_it_is_a_substitution() {
        let c = Catalogue::shipped();
        // Claude Code 2.1.332's default model, nothing configured, no listing: the newest opus.
        let t = resolve_target(&query(&c, "claude-opus-5-5", "us-east-1"), None).unwrap();
        assert_eq!(t.model_id, "global.anthropic.claude-opus-4-5-20251101-v1:0");
        assert_eq!(
            (t.source, t.substituted, t.priced_as.as_deref()),
            (TargetSource::FamilyFallback, true, Some("claude-opus-4-5"))
        );
        // claude-opus-4-8 is never claude-opus-4.
        let t = resolve_target(&query(&c, "claude-opus-4-8", "us-east-1"), Some(&[])).unwrap();
        assert_eq!(t.priced_as.as_deref(), Some("claude-opus-4-5"));
        // An unknown name of a known family, too.
        let t = resolve_target(&query(&c, "claude-haiku-9", "eu-west-1"), None).unwrap();
        assert_eq!(t.priced_as.as_deref(), Some("claude-haiku-4-5"));
        // A configured fallback wins over the newest.
        let fallback = BTreeMap::from([(ModelFamily::Opus, "claude-opus-4-1".to_owned())]);
        let q = TargetQuery { family_fallback: &fallback, ..query(&c, "claude-opus-5-5", "us-east-1") };
        assert_eq!(resolve_target(&q, None).unwrap().model_id, "us.anthropic.claude-opus-4-1-20250805-v1:0");
    }

    #[test]
    fn the_keys_default_model_is_the_last_resort() {
        let mut c = Catalogue::shipped();
        let mut q = query(&c, "mystery-model", "us-east-1");
        assert_eq!(resolve_target(&q, None), None);
        q.key_default = Some("us.anthropic.claude-sonnet-4-20250514-v1:0");
        let t = resolve_target(&q, None).unwrap();
        assert_eq!(
            (t.source, t.substituted, t.priced_as.as_deref()),
            (TargetSource::KeyDefault, true, Some("claude-sonnet-4"))
        );
        // The same model as requested is no substitution.
        let entry =
            CatalogueEntry { id: "claude-opus-9".into(), aliases: vec![], family: ModelFamily::Opus, bedrock: vec![] };
        c.apply(&Event::ModelCatalogued(ModelCatalogued { entry }));
        for e in c.clone().entries().filter(|e| e.family == ModelFamily::Opus && e.id != "claude-opus-9") {
            c.apply(&Event::ModelRemoved(ccp_schemas::events::ModelRemoved { model: e.id.clone() }));
        }
        let q = TargetQuery {
            key_default: Some("global.anthropic.claude-opus-9-v1:0"),
            ..query(&c, "claude-opus-9", "us-east-1")
        };
        let t = resolve_target(&q, None).unwrap();
        assert_eq!((t.source, t.substituted), (TargetSource::KeyDefault, false));
    }

    #[test]
    fn plan_requests_are_priced_as_their_catalogue_entry() {
        let c = Catalogue::shipped();
        assert_eq!(plan_priced_as(&c, Some("claude-opus-4-0")).as_deref(), Some("claude-opus-4"));
        assert_eq!(plan_priced_as(&c, Some("claude-new-1")).as_deref(), Some("claude-new-1"));
        assert_eq!(plan_priced_as(&c, None), None);
    }
}
