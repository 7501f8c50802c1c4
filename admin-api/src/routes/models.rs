//! The model catalogue: which Claude models the proxies know, the names each answers to, its
//! family and Bedrock targets, with the prices the price list has for it. The shipped catalogue
//! is version 0; `PUT` and `DELETE` append `model_catalogued` / `model_removed` events that every
//! proxy applies within a second. A `PUT` that carries `prices` also replaces the model's entries
//! in the price list (a `pricing_set` event), so a new model is routable and priced in one call.

use actix_web::{web, HttpResponse};
use ccp_schemas::catalogue::Catalogue;
use ccp_schemas::events::{
    BedrockTarget, CatalogueEntry, Event, ModelCatalogued, ModelFamily, ModelPrice, ModelRemoved, PricingSet,
};
use ccp_schemas::subjects::{Aggregate, StreamKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ops::{check_prices, Price, Pricing};
use super::{versioned, AppState};
use crate::context::Ctx;
use crate::domain::Rejection;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::Json;
use crate::store::CommandMeta;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/models", web::get().to(list_models))
        .route("/models/{model}", web::get().to(get_model))
        .route("/models/{model}", web::put().to(put_model))
        .route("/models/{model}", web::delete().to(remove_model));
}

/// One Bedrock target of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// An AWS region (`eu-central-1`), a geography (`us`, `eu`, `apac`, `jp`, `au`, `ca`,
    /// `us-gov`), `global` or `*`; the most specific one covering the key's region wins.
    #[schema(example = "global")]
    pub scope: String,
    /// A Bedrock model or inference-profile id (or ARN) of a Claude model.
    #[schema(example = "global.anthropic.claude-opus-4-5-20251101-v1:0")]
    pub model_id: String,
}

/// A catalogued model, with its prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// The Anthropic model id; dated names (`…-20251101`) match it too.
    #[schema(example = "claude-opus-5-5")]
    pub id: String,
    /// Other names it answers to exactly.
    pub aliases: Vec<String>,
    /// `opus`, `sonnet` or `haiku`.
    #[schema(value_type = String, example = "opus")]
    pub family: ModelFamily,
    /// Where it runs on Bedrock (none: the key's own Bedrock model listing is asked, then the
    /// family's fallback).
    pub bedrock: Vec<Target>,
    /// The price-list entries for this model (empty: its requests are recorded as unpriced).
    pub prices: Vec<Price>,
    /// Whether any price applies to it.
    pub priced: bool,
}

/// The catalogue in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Models {
    /// Catalogue events applied (0: as shipped with this release).
    pub version: u64,
    /// The price list version the prices are from.
    pub pricing_version: u32,
    /// Every model, by id.
    pub models: Vec<Model>,
}

/// `PUT /v1/models/{model}`: the whole entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutModel {
    /// `opus`, `sonnet` or `haiku`.
    #[schema(value_type = String, example = "opus")]
    pub family: ModelFamily,
    /// Other names it answers to (at most 16); none may name another model.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Bedrock targets (at most 32, one per scope).
    #[serde(default)]
    pub bedrock: Vec<Target>,
    /// When present, replaces this model's entries in the price list (each entry's `model` may
    /// be left out or must be this model).
    #[serde(default)]
    pub prices: Option<Vec<ModelPriceInput>>,
}

/// A price of the model being set (USD per million tokens, decimal strings).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceInput {
    /// Only for `anthropic` or `bedrock`; both when left out.
    #[serde(default)]
    #[schema(value_type = Option<super::ops::PriceProviderDoc>, example = "bedrock")]
    pub provider: Option<ccp_schemas::events::Provider>,
    /// Only in this AWS region; all when left out.
    #[serde(default)]
    #[schema(example = "eu-central-1", pattern = r"^[A-Za-z0-9.:_/-]{0,128}$")]
    pub region: Option<String>,
    /// Uncached input tokens.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "5", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub input_per_mtok: rust_decimal::Decimal,
    /// Output tokens.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "25", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub output_per_mtok: rust_decimal::Decimal,
    /// Prompt-cache writes.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "6.25", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub cache_write_per_mtok: rust_decimal::Decimal,
    /// Prompt-cache reads.
    #[serde(with = "crate::api::strict_decimal::required")]
    #[schema(value_type = String, example = "0.50", pattern = r"^(10000(\.0{1,6})?|[0-9]{1,4}(\.[0-9]{1,6})?)$")]
    pub cache_read_per_mtok: rust_decimal::Decimal,
}

fn apply(state: &mut Option<Catalogue>, event: &Event, _at: DateTime<Utc>) {
    state.get_or_insert_with(Catalogue::shipped).apply(event);
}

/// The catalogue in force (the shipped one with every catalogue event applied).
pub async fn current_catalogue(state: &AppState) -> ApiResult<Catalogue> {
    let (history, _) = state.store.load(&Aggregate::Catalogue).await?;
    let mut catalogue = Catalogue::shipped();
    for (event, _) in &history {
        catalogue.apply(event);
    }
    Ok(catalogue)
}

/// The catalogue and the price list in force, and the catalogue's version (its `ETag`).
async fn current(state: &AppState) -> ApiResult<(Catalogue, u64, Pricing)> {
    let (history, seq) = state.store.load(&Aggregate::Catalogue).await?;
    let mut catalogue = Catalogue::shipped();
    for (event, _) in &history {
        catalogue.apply(event);
    }
    let pricing = match state.store.last_event(StreamKind::Admin, &Aggregate::Pricing).await? {
        Some((envelope, _)) => {
            let mut p = None;
            Pricing::apply(&mut p, &envelope.event, envelope.occurred_at);
            p.unwrap_or_else(|| Pricing::configured(&state.settings))
        }
        None => Pricing::configured(&state.settings),
    };
    Ok((catalogue, seq, pricing))
}

fn view(entry: &CatalogueEntry, pricing: &Pricing) -> Model {
    let prices: Vec<Price> =
        pricing.models.iter().filter(|p| ccp_schemas::catalogue::name_matches(&entry.id, &p.model)).cloned().collect();
    Model {
        id: entry.id.clone(),
        aliases: entry.aliases.clone(),
        family: entry.family,
        bedrock: entry
            .bedrock
            .iter()
            .map(|t| Target { scope: t.scope.clone(), model_id: t.model_id.clone() })
            .collect(),
        priced: !prices.is_empty(),
        prices,
    }
}

fn model_id(raw: &str) -> ApiResult<String> {
    ccp_schemas::catalogue::check_model_name(raw).map_err(|why| ApiError::invalid("model", why))?;
    Ok(raw.to_owned())
}

/// The catalogue: every model the proxies route and price by name.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, body = Models), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_models(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let (catalogue, seq, pricing) = current(&state).await?;
    let models = Models {
        version: catalogue.version(),
        pricing_version: pricing.version,
        models: catalogue.entries().map(|e| view(e, &pricing)).collect(),
    };
    Ok(versioned(HttpResponse::Ok(), &models, seq))
}

/// One model, by its id or any name it answers to (an alias, a dated name).
#[utoipa::path(get, path = "/v1/models/{model}", tag = "models",
    params(("model" = String, Path, description = "A model id, alias or dated name", pattern = r"^[a-z][a-z0-9.-]{0,63}$")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_model(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    // A name that cannot be a model's is not in the catalogue either.
    let name = model_id(&path).map_err(|_| ApiError::not_found("no such model in the catalogue"))?;
    let (catalogue, seq, pricing) = current(&state).await?;
    let entry = catalogue
        .lookup(&name)
        .ok_or_else(|| ApiError::not_found(format!("model `{name}` is not in the catalogue")))?;
    Ok(versioned(HttpResponse::Ok(), &view(entry, &pricing), seq))
}

/// Add a model to the catalogue or replace its entry (send `If-Match` with the catalogue's
/// `ETag` to replace only what you saw). Every proxy routes by it within a second.
#[utoipa::path(put, path = "/v1/models/{model}", tag = "models", request_body = PutModel,
    params(("model" = String, Path, description = "The model id", pattern = r"^[a-z][a-z0-9.-]{0,63}$")),
    responses((status = 200, body = Model), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_model(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<PutModel>,
) -> ApiResult<HttpResponse> {
    let id = model_id(&path)?;
    let body = body.0;
    if body.prices.is_some() {
        // Prices are the `admin` role's, also when they come with a catalogue entry.
        crate::roles::at_least(ccp_schemas::events::AdminRole::Admin, ctx.admin()?.role)?;
    }
    let entry = CatalogueEntry {
        id: id.clone(),
        aliases: body.aliases,
        family: body.family,
        bedrock: body.bedrock.into_iter().map(|t| BedrockTarget { scope: t.scope, model_id: t.model_id }).collect(),
    };
    // The prices are checked before anything is appended.
    let prices = body
        .prices
        .map(|list| {
            let priced: Vec<Price> = list
                .into_iter()
                .map(|p| Price {
                    model: id.clone(),
                    provider: p.provider,
                    region: p.region,
                    input_per_mtok: p.input_per_mtok,
                    output_per_mtok: p.output_per_mtok,
                    cache_write_per_mtok: p.cache_write_per_mtok,
                    cache_read_per_mtok: p.cache_read_per_mtok,
                })
                .collect();
            if priced.is_empty() {
                Ok(priced)
            } else {
                check_prices(priced).map_err(|mut e| {
                    e.field = e.field.map(|f| f.replacen("models", "prices", 1));
                    e
                })
            }
        })
        .transpose()?;
    let checked = std::cell::RefCell::new(None);
    let executed = state
        .store
        .execute(Aggregate::Catalogue, &ctx.meta(), apply, |current: Option<&Catalogue>| {
            let shipped;
            let catalogue = match current {
                Some(c) => c,
                None => {
                    shipped = Catalogue::shipped();
                    &shipped
                }
            };
            if let Err(e) = catalogue.check(&entry) {
                *checked.borrow_mut() = Some(e);
                return Err(Rejection::Conflict(String::new()));
            }
            if catalogue.get(&id).is_some_and(|e| **e == entry) {
                return Ok(Vec::new());
            }
            Ok(vec![Event::ModelCatalogued(ModelCatalogued { entry: entry.clone() })])
        })
        .await;
    if let Some(e) = checked.into_inner() {
        return Err(if e.conflict {
            ApiError::conflict(e.message).field(&e.field)
        } else {
            ApiError::unprocessable(&e.field, e.message)
        });
    }
    let executed = executed?;
    if let Some(prices) = prices {
        set_model_prices(&state, &ctx, &id, prices).await?;
    }
    state.settle(executed.seq).await;
    if !executed.events.is_empty() {
        tracing::info!(model = %id, "model catalogued");
    }
    let (catalogue, seq, pricing) = current(&state).await?;
    let entry =
        catalogue.get(&id).ok_or_else(|| ApiError::internal(&"the catalogued model is not in the catalogue"))?;
    Ok(versioned(HttpResponse::Ok(), &view(entry, &pricing), seq))
}

/// Replaces `model`'s entries of the price list with `prices` (one `pricing_set` event, unless
/// nothing changes).
async fn set_model_prices(state: &AppState, ctx: &Ctx, model: &str, prices: Vec<Price>) -> ApiResult<()> {
    let configured = Pricing::configured(&state.settings);
    let executed = state
        .store
        .execute(
            Aggregate::Pricing,
            &CommandMeta { if_match: None, ..ctx.meta() },
            Pricing::apply,
            |current: Option<&Pricing>| {
                let list = current.unwrap_or(&configured);
                let mut models: Vec<Price> = list.models.iter().filter(|p| p.model != model).cloned().collect();
                models.extend(prices.iter().cloned());
                if models == list.models {
                    return Ok(Vec::new());
                }
                let version = list
                    .version
                    .checked_add(1)
                    .ok_or_else(|| Rejection::Conflict("the price list version is exhausted".into()))?;
                Ok(vec![Event::PricingSet(PricingSet {
                    version,
                    models: models.iter().map(ModelPrice::from).collect(),
                })])
            },
        )
        .await?;
    state.settle(executed.seq).await;
    Ok(())
}

/// Remove a model from the catalogue. Its requests are still served by Anthropic; a failover
/// resolves it like any model the catalogue does not know. A later release's shipped entry of
/// the same id stays removed.
#[utoipa::path(delete, path = "/v1/models/{model}", tag = "models",
    params(("model" = String, Path, description = "The model id", pattern = r"^[a-z][a-z0-9.-]{0,63}$")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_model(state: web::Data<AppState>, ctx: Ctx, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = model_id(&path).map_err(|_| ApiError::not_found("no such model in the catalogue"))?;
    let executed = state
        .store
        .execute(Aggregate::Catalogue, &ctx.meta(), apply, |current: Option<&Catalogue>| {
            let present = match current {
                Some(c) => c.get(&id).is_some(),
                None => Catalogue::shipped().get(&id).is_some(),
            };
            if !present {
                return Err(Rejection::NotFound(format!("model `{id}` is not in the catalogue")));
            }
            Ok(vec![Event::ModelRemoved(ModelRemoved { model: id.clone() })])
        })
        .await?;
    state.settle(executed.seq).await;
    tracing::info!(model = %id, "model removed from the catalogue");
    Ok(HttpResponse::NoContent().insert_header(("etag", format!("\"{}\"", executed.seq))).finish())
}
