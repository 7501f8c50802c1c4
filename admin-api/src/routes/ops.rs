//! Operations: each access key's circuit breaker as the event log records it, with a manual reset
//! (a `circuit_closed` event every proxy replica applies), and the price list costs are computed
//! with (`pricing_set` events; version 0 is the list from configuration).
//!
//! A circuit's state is its last event on `<prefix>.circuit.<key_id>`: the proxies append
//! transitions there and follow it, so the log is the fleet's shared view of the breaker.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use ccp_schemas::events::{CircuitClosed, CloseCause, Event, ModelPrice, PricingSet, Provider, TripReason};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::Envelope;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{check_token, parse_id, versioned, AppState};
use crate::context::Ctx;
use crate::domain::Rejection;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::Json;

/// How often a reset racing a proxy's transition is tried again before answering 409.
const ATTEMPTS: usize = 5;
/// Most entries a price list may have.
pub const MAX_PRICES: usize = 200;
/// Highest accepted price, USD per million tokens.
pub const MAX_PRICE_PER_MTOK: i64 = 10_000;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/keys/{key_id}/circuit", web::get().to(get_circuit))
        .route("/keys/{key_id}/circuit/reset", web::post().to(reset_circuit))
        .route("/circuits", web::get().to(list_circuits))
        .route("/pricing", web::get().to(get_pricing))
        .route("/pricing", web::put().to(set_pricing));
}

/// Where a key's circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Anthropic is used.
    Closed,
    /// Anthropic is skipped (requests fail over to Bedrock) until `retry_at`.
    Open,
    /// The next request probes Anthropic; its outcome closes or re-opens the circuit.
    HalfOpen,
}

/// A key's circuit breaker, from its last transition in the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Circuit {
    /// `key_…`
    #[schema(value_type = String, example = "key_01JDQ7ABCDEFGHJKMNPQRSTVWX")]
    pub key_id: String,
    /// `closed`, `open` or `half_open`.
    pub state: CircuitState,
    /// When the last transition happened (`null`: the circuit never tripped).
    pub since: Option<DateTime<Utc>>,
    /// What tripped it (open only): `rate_limited`, `overloaded`, `server_error`,
    /// `connect_error`, `timeout`, `usage_limit` or `probe_failed`.
    #[schema(value_type = Option<String>, example = "rate_limited")]
    pub reason: Option<TripReason>,
    /// Failures counted when it tripped (open only, else 0).
    pub failures: u32,
    /// When a probe may be sent (open only).
    pub retry_at: Option<DateTime<Utc>>,
    /// Why it closed (closed after a trip only): `probe_succeeded` or `manual_reset`.
    #[schema(value_type = Option<String>, example = "manual_reset")]
    pub cause: Option<CloseCause>,
    /// Stream sequence of the last transition (0: none), also the `ETag`.
    pub version: u64,
}

impl Circuit {
    /// A circuit that never tripped.
    pub fn never_tripped(key_id: AccessKeyId) -> Self {
        Self {
            key_id: key_id.to_string(),
            state: CircuitState::Closed,
            since: None,
            reason: None,
            failures: 0,
            retry_at: None,
            cause: None,
            version: 0,
        }
    }

    /// The circuit after its last event (`None`: no events, closed).
    pub fn from_last(key_id: AccessKeyId, last: Option<&(Envelope, u64)>) -> Self {
        let mut circuit = Self::never_tripped(key_id);
        let Some((envelope, seq)) = last else { return circuit };
        circuit.version = *seq;
        circuit.since = Some(envelope.occurred_at);
        match &envelope.event {
            Event::CircuitOpened(e) => {
                circuit.state = CircuitState::Open;
                circuit.reason = Some(e.reason);
                circuit.failures = e.failures;
                circuit.retry_at = Some(e.retry_at);
            }
            Event::CircuitHalfOpened(_) => circuit.state = CircuitState::HalfOpen,
            Event::CircuitClosed(e) => circuit.cause = Some(e.cause),
            // Nothing else is published on a circuit subject.
            _ => circuit.since = None,
        }
        circuit
    }
}

fn require_key(state: &AppState, key_id: &AccessKeyId) -> ApiResult<()> {
    if state.view.read().directory.key(key_id).is_none() {
        return Err(ApiError::not_found(format!("no access key {key_id}")));
    }
    Ok(())
}

/// A key's circuit breaker: `closed` (Anthropic used), `open` (skipped until `retry_at`) or
/// `half_open` (the next request probes Anthropic).
#[utoipa::path(get, path = "/v1/keys/{key_id}/circuit", tag = "operations", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Circuit), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_circuit(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    require_key(&state, &key_id)?;
    let last = state.store.last_event(StreamKind::Circuit, &Aggregate::Circuit(key_id)).await?;
    let circuit = Circuit::from_last(key_id, last.as_ref());
    let version = circuit.version;
    Ok(versioned(HttpResponse::Ok(), &circuit, version))
}

/// Close a key's circuit now: every proxy replica uses Anthropic for the key again (and counts
/// failures afresh). A closed circuit is left as it is. Send `If-Match` to reset only the state
/// you saw.
#[utoipa::path(post, path = "/v1/keys/{key_id}/circuit/reset", tag = "operations",
    params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Circuit), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reset_circuit(state: web::Data<AppState>, ctx: Ctx, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    require_key(&state, &key_id)?;
    let meta = ctx.meta();
    let aggregate = Aggregate::Circuit(key_id);
    for _ in 0..ATTEMPTS {
        let last = state.store.last_event(StreamKind::Circuit, &aggregate).await?;
        let current = Circuit::from_last(key_id, last.as_ref());
        if let Some(expected) = meta.if_match.filter(|v| *v != current.version) {
            return Err(ApiError::conflict(format!(
                "the circuit is at version {}, not {expected} (If-Match); reload it and try again",
                current.version
            ))
            .field("if-match"));
        }
        if current.state == CircuitState::Closed {
            let version = current.version;
            return Ok(versioned(HttpResponse::Ok(), &current, version));
        }
        let event = Event::CircuitClosed(CircuitClosed { key_id, cause: CloseCause::ManualReset });
        match state.store.append_after(event, &meta, current.version).await? {
            Some(appended) => {
                tracing::info!(key_id = %key_id, from = ?current.state, seq = appended.1, "circuit reset");
                let circuit = Circuit::from_last(key_id, Some(&appended));
                let version = circuit.version;
                return Ok(versioned(HttpResponse::Ok(), &circuit, version));
            }
            None => tracing::info!(key_id = %key_id, "circuit changed concurrently; deciding again"),
        }
    }
    Err(ApiError::conflict("the circuit was changed concurrently; reload it and try again"))
}

/// Every key whose circuit is open or half-open, most recent transition first.
#[utoipa::path(get, path = "/v1/circuits", tag = "operations",
    responses((status = 200, body = Vec<Circuit>), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_circuits(state: web::Data<AppState>) -> ApiResult<web::Json<Vec<Circuit>>> {
    let lasts = state.store.last_per_subject(StreamKind::Circuit).await?;
    let mut tripped: Vec<Circuit> = lasts
        .iter()
        .filter_map(|last| match &last.0.event {
            Event::CircuitOpened(e) => Some(Circuit::from_last(e.key_id, Some(last))),
            Event::CircuitHalfOpened(e) => Some(Circuit::from_last(e.key_id, Some(last))),
            _ => None,
        })
        .collect();
    tripped.sort_by_key(|c| std::cmp::Reverse(c.version));
    Ok(web::Json(tripped))
}

/// The price of one model, USD per million tokens as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Anthropic model name or prefix (`claude-sonnet-4-5` also prices `claude-sonnet-4-5-20250929`).
    #[schema(example = "claude-sonnet-4-5", pattern = r"^[A-Za-z0-9.:_/-]{1,128}$")]
    pub model: String,
    /// Only for `anthropic` or `bedrock`; `null`: both.
    #[serde(default)]
    #[schema(value_type = Option<PriceProviderDoc>, example = "bedrock")]
    pub provider: Option<Provider>,
    /// Only in this AWS region (Bedrock regional prices); `null`: all.
    #[serde(default)]
    #[schema(example = "eu-central-1", pattern = r"^[A-Za-z0-9.:_/-]{0,128}$")]
    pub region: Option<String>,
    /// Uncached input tokens.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "3.00", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub input_per_mtok: Decimal,
    /// Output tokens.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "15.00", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub output_per_mtok: Decimal,
    /// Tokens written to the prompt cache.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "3.75", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub cache_write_per_mtok: Decimal,
    /// Tokens read from the prompt cache.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "0.30", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub cache_read_per_mtok: Decimal,
}

/// `anthropic` or `bedrock` (documentation of a price's provider).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PriceProviderDoc {
    /// Anthropic's API.
    Anthropic,
    /// Amazon Bedrock.
    Bedrock,
}

impl From<&ModelPrice> for Price {
    fn from(p: &ModelPrice) -> Self {
        Self {
            model: p.model.clone(),
            provider: p.provider,
            region: p.region.clone(),
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
            cache_write_per_mtok: p.cache_write_per_mtok,
            cache_read_per_mtok: p.cache_read_per_mtok,
        }
    }
}

impl From<&Price> for ModelPrice {
    fn from(p: &Price) -> Self {
        Self {
            model: p.model.clone(),
            provider: p.provider,
            region: p.region.clone(),
            input_per_mtok: p.input_per_mtok,
            output_per_mtok: p.output_per_mtok,
            cache_write_per_mtok: p.cache_write_per_mtok,
            cache_read_per_mtok: p.cache_read_per_mtok,
        }
    }
}

/// The price list in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pricing {
    /// 0: the list from configuration (`pricing.models`); then one more with every change. Usage
    /// events name the version their cost was computed with.
    pub version: u32,
    /// When this version took effect (`null`: the configured list, in effect since start).
    pub effective_from: Option<DateTime<Utc>>,
    /// The entries; the longest matching model prefix wins, then a provider-, then a
    /// region-specific entry.
    pub models: Vec<Price>,
}

impl Pricing {
    /// The configured list (version 0).
    pub fn configured(settings: &ccp_runtime::config::Settings) -> Self {
        Self { version: 0, effective_from: None, models: settings.pricing.models.iter().map(Price::from).collect() }
    }

    /// Folds `pricing_set` events (each replaces the whole list).
    pub fn apply(state: &mut Option<Self>, event: &Event, at: DateTime<Utc>) {
        if let Event::PricingSet(e) = event {
            *state = Some(Self {
                version: e.version,
                effective_from: Some(at),
                models: e.models.iter().map(Price::from).collect(),
            });
        }
    }
}

/// `PUT /v1/pricing`: the whole new list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPricing {
    /// 1–200 entries, at most one per model, provider and region; prices 0–10000.
    #[schema(min_items = 1, max_items = 200)]
    pub models: Vec<Price>,
}

/// The price list costs are computed with now.
#[utoipa::path(get, path = "/v1/pricing", tag = "operations",
    responses((status = 200, body = Pricing), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_pricing(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let last = state.store.last_event(StreamKind::Admin, &Aggregate::Pricing).await?;
    let (pricing, seq) = match last {
        Some((envelope, seq)) => {
            let mut pricing = None;
            Pricing::apply(&mut pricing, &envelope.event, envelope.occurred_at);
            (pricing.unwrap_or_else(|| Pricing::configured(&state.settings)), seq)
        }
        None => (Pricing::configured(&state.settings), 0),
    };
    Ok(versioned(HttpResponse::Ok(), &pricing, seq))
}

/// Replace the price list. Costs already recorded keep the version they were computed with;
/// every proxy uses the new list for the requests that follow. Sending the list in force changes
/// nothing. Send `If-Match` to replace only the version you saw.
#[utoipa::path(put, path = "/v1/pricing", tag = "operations", request_body = SetPricing,
    responses((status = 200, body = Pricing), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_pricing(state: web::Data<AppState>, ctx: Ctx, body: Json<SetPricing>) -> ApiResult<HttpResponse> {
    let models = check_prices(body.0.models)?;
    let executed = state
        .store
        .execute(Aggregate::Pricing, &ctx.meta(), Pricing::apply, |current: Option<&Pricing>| {
            if current.is_some_and(|c| c.models == models) {
                return Ok(Vec::new());
            }
            let version = current
                .map_or(0, |c| c.version)
                .checked_add(1)
                .ok_or_else(|| Rejection::Conflict("the price list version is exhausted".into()))?;
            Ok(vec![Event::PricingSet(PricingSet { version, models: models.iter().map(ModelPrice::from).collect() })])
        })
        .await?;
    state.settle(executed.seq).await;
    let pricing = executed.state.unwrap_or_else(|| Pricing::configured(&state.settings));
    if !executed.events.is_empty() {
        tracing::info!(version = pricing.version, models = pricing.models.len(), "price list set");
    }
    Ok(versioned(HttpResponse::Ok(), &pricing, executed.seq))
}

/// Checks a new price list entry by entry, naming the offending field (`models[2].region`).
pub(super) fn check_prices(models: Vec<Price>) -> ApiResult<Vec<Price>> {
    if models.is_empty() {
        return Err(ApiError::unprocessable("models", "must have at least one entry"));
    }
    if models.len() > MAX_PRICES {
        return Err(ApiError::unprocessable("models", format!("must have at most {MAX_PRICES} entries")));
    }
    let max = Decimal::from(MAX_PRICE_PER_MTOK);
    let mut seen: HashMap<(String, Option<Provider>, Option<String>), usize> = HashMap::new();
    let mut checked = Vec::with_capacity(models.len());
    for (i, p) in models.into_iter().enumerate() {
        let field = |name: &str| format!("models[{i}].{name}");
        let model = check_token(&field("model"), &p.model)?;
        let region = p.region.filter(|r| !r.is_empty()).map(|r| check_token(&field("region"), &r)).transpose()?;
        if p.provider == Some(Provider::None) {
            return Err(ApiError::unprocessable(&field("provider"), "must be anthropic, bedrock or null (both)"));
        }
        for (name, value) in [
            ("input_per_mtok", p.input_per_mtok),
            ("output_per_mtok", p.output_per_mtok),
            ("cache_write_per_mtok", p.cache_write_per_mtok),
            ("cache_read_per_mtok", p.cache_read_per_mtok),
        ] {
            if value < Decimal::ZERO || value > max {
                return Err(ApiError::unprocessable(
                    &field(name),
                    format!("must be between 0 and {MAX_PRICE_PER_MTOK} USD per million tokens"),
                ));
            }
        }
        if let Some(first) = seen.insert((model.clone(), p.provider, region.clone()), i) {
            return Err(ApiError::unprocessable(
                &field("model"),
                format!("models[{first}] already prices `{model}` for the same provider and region"),
            ));
        }
        checked.push(Price { model, region, ..p });
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(model: &str) -> Price {
        Price {
            model: model.into(),
            provider: None,
            region: None,
            input_per_mtok: Decimal::new(300, 2),
            output_per_mtok: Decimal::new(1500, 2),
            cache_write_per_mtok: Decimal::new(375, 2),
            cache_read_per_mtok: Decimal::new(30, 2),
        }
    }

    fn field_of(models: Vec<Price>) -> Option<String> {
        check_prices(models).err().and_then(|e| e.field)
    }

    #[test]
    fn price_lists_are_checked_entry_by_entry() {
        assert!(check_prices(vec![price("claude-sonnet-4-5"), price("claude-haiku-4-5")]).is_ok());
        assert_eq!(field_of(vec![]).as_deref(), Some("models"));
        assert_eq!(field_of(vec![price("claude-x"); MAX_PRICES + 1]).as_deref(), Some("models"));
        assert_eq!(field_of(vec![price("a"), price(" ")]).as_deref(), Some("models[1].model"));
        assert_eq!(field_of(vec![price("a"), price("a")]).as_deref(), Some("models[1].model"));
        let bedrock = Price { provider: Some(Provider::Bedrock), ..price("a") };
        let eu = Price { region: Some("eu-central-1".into()), ..bedrock.clone() };
        assert!(check_prices(vec![price("a"), bedrock.clone(), eu.clone()]).is_ok(), "distinct scopes");
        assert_eq!(field_of(vec![eu.clone(), bedrock, eu]).as_deref(), Some("models[2].model"));
        let none = Price { provider: Some(Provider::None), ..price("a") };
        assert_eq!(field_of(vec![none]).as_deref(), Some("models[0].provider"));
        let negative = Price { output_per_mtok: Decimal::new(-1, 2), ..price("a") };
        assert_eq!(field_of(vec![negative]).as_deref(), Some("models[0].output_per_mtok"));
        let huge = Price { cache_read_per_mtok: Decimal::new(1_000_001, 2), ..price("a") };
        assert_eq!(field_of(vec![huge]).as_deref(), Some("models[0].cache_read_per_mtok"));
        let free = Price { input_per_mtok: Decimal::ZERO, output_per_mtok: Decimal::from(10_000), ..price("a") };
        assert!(check_prices(vec![free]).is_ok(), "0 and 10000 are allowed");
        let blank_region = Price { region: Some(String::new()), ..price("a") };
        assert_eq!(check_prices(vec![blank_region]).unwrap()[0].region, None);
    }

    #[test]
    fn a_circuit_is_its_last_transition() {
        let key_id = AccessKeyId::new();
        assert_eq!(Circuit::from_last(key_id, None), Circuit::never_tripped(key_id));
        let retry_at = Utc::now();
        let opened = Event::CircuitOpened(ccp_schemas::events::CircuitOpened {
            key_id,
            reason: TripReason::Overloaded,
            failures: 3,
            retry_at,
        });
        let actor = ccp_schemas::Actor::System { component: "test".into() };
        let c = Circuit::from_last(key_id, Some(&(Envelope::new(opened, actor.clone()), 7)));
        assert_eq!(
            (c.state, c.reason, c.failures, c.retry_at, c.version),
            (CircuitState::Open, Some(TripReason::Overloaded), 3, Some(retry_at), 7)
        );
        let closed = Event::CircuitClosed(CircuitClosed { key_id, cause: CloseCause::ProbeSucceeded });
        let c = Circuit::from_last(key_id, Some(&(Envelope::new(closed, actor), 9)));
        assert_eq!(
            (c.state, c.cause, c.reason, c.version),
            (CircuitState::Closed, Some(CloseCause::ProbeSucceeded), None, 9)
        );
        assert!(c.since.is_some());
    }
}
