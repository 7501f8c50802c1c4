//! Replaying a request on Amazon Bedrock: the key's Bedrock API key opened for the call, the
//! body adapted, the model resolved ([`crate::route::resolve_target`], with the key's model
//! listing when the catalogue has no target), and Bedrock's answer given as Anthropic's; the
//! proxy's own answers when no failover is possible.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::Bytes;
use ccp_schemas::events::{ErrorClass, FallbackReason, Provider};
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::secrets::envelope::BedrockApiKey;
use futures_util::StreamExt as _;

use crate::bedrock::{self, Answer, BedrockFailure};
use crate::error::{ProxyError, REQUEST_ID_HEADER};
use crate::forward::{answer_error, budget_refusal, header_str, reserve, PlanFailure, Shared, Upstream};
use crate::listing::Cache;
use crate::metrics::OutcomeLabels;
use crate::relay::{TapBody, FALLBACK_REASON_HEADER, PROVIDER_HEADER};
use crate::route::{self, Listed, Refusal, TargetQuery};
use crate::tap::{Coding, Framing, UsageTap};
use crate::usage::RequestRecord;

/// The `x-ccp-fallback-reason` value (the reason's serde name).
pub(crate) fn fallback_label(reason: FallbackReason) -> &'static str {
    ccp_schemas::events::label(&reason)
}

/// The proxy's answer to a [`Refusal`] of the routing policy.
pub(crate) fn refuse(
    shared: &Shared,
    refusal: Refusal,
    cause: Option<&PlanFailure>,
    mut record: RequestRecord,
) -> HttpResponse {
    match refusal {
        Refusal::BudgetExhausted { failover } => {
            record.fallback_reason = failover;
            match budget_refusal(shared, &record) {
                Some(err) => answer_error(err, record),
                // Spent a moment ago, not now (a budget raised meanwhile): explain rather than guess.
                None => no_fallback(cause.unwrap_or(&PlanFailure::routing()), record),
            }
        }
        Refusal::NoFallback(reason) => {
            record.fallback_reason = Some(reason);
            let routing = PlanFailure::routing();
            no_fallback(cause.unwrap_or(&routing), record)
        }
    }
}

/// 503 naming why Anthropic failed, when the key has no Bedrock fallback.
pub(crate) fn no_fallback(cause: &PlanFailure, record: RequestRecord) -> HttpResponse {
    let message = if cause.reason == FallbackReason::Routing {
        "This access key is routed to Amazon Bedrock only, but it has no Bedrock API key; ask your platform team."
            .to_owned()
    } else {
        format!(
            "Anthropic returned {} and this access key has no Bedrock fallback; ask your platform team.",
            cause.what
        )
    };
    let err = ProxyError::upstream(StatusCode::SERVICE_UNAVAILABLE, ErrorClass::NoBedrockFallback, message)
        .retry_after(cause.retry_after.clone());
    answer_error(err, record)
}

/// The answer to the client when Bedrock fails before answering.
fn bedrock_error(failure: &BedrockFailure, cause: &PlanFailure) -> ProxyError {
    let before = if cause.reason == FallbackReason::Routing {
        "Amazon Bedrock".to_owned()
    } else {
        format!("Anthropic returned {}; the Amazon Bedrock fallback", cause.what)
    };
    // What the developer sees names no AWS account or IAM principal (the log has the detail).
    let detail = failure.public_detail();
    let (status, message) = match failure.class {
        ErrorClass::BedrockAuthError => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{before} refused this access key's Bedrock API key ({detail}); ask your platform team."),
        ),
        ErrorClass::BedrockQuotaExceeded => {
            (StatusCode::TOO_MANY_REQUESTS, format!("{before} is throttled ({detail})."))
        }
        ErrorClass::BedrockValidation => {
            (StatusCode::BAD_REQUEST, format!("{before} rejected the request ({detail})."))
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, format!("{before} failed ({detail}).")),
    };
    let kind = match status.as_u16() {
        429 => crate::error::ApiErrorType::RateLimit,
        400 => crate::error::ApiErrorType::InvalidRequest,
        _ => crate::error::ApiErrorType::Api,
    };
    ProxyError::new(status, kind, failure.class, message)
}

/// The key's Bedrock model listing for `region`: cached, refreshed in the background when old,
/// read now (with the key already opened for the call) when there is none yet.
async fn listing(
    shared: &Shared,
    upstream: &Upstream,
    key_id: AccessKeyId,
    region: &str,
    registration: &[u8],
    api_key: &BedrockApiKey,
) -> Option<std::sync::Arc<Vec<Listed>>> {
    let listings = &shared.listings;
    if !listings.enabled() {
        return None;
    }
    match listings.cached(key_id, region, registration) {
        Cache::Fresh(models) => models,
        Cache::Stale(models) => {
            refresh_in_background(shared, upstream, key_id, region);
            models
        }
        Cache::Missing => {
            let outcome = listings.fetch(&upstream.client, api_key, region, &shared.recorder.metrics).await;
            listings.store(key_id, region, registration, &outcome);
            outcome.ok().map(std::sync::Arc::new)
        }
    }
}

/// Reads a key's listing again on this worker, opening the key for that call only.
fn refresh_in_background(shared: &Shared, upstream: &Upstream, key_id: AccessKeyId, region: &str) {
    let (Some(creds), Some(master)) = (shared.keys.bedrock_credentials(&key_id), shared.master.clone()) else {
        return;
    };
    let listings = shared.listings.clone();
    let metrics = shared.recorder.metrics.clone();
    let client = upstream.client.clone();
    let region = region.to_owned();
    actix_web::rt::spawn(async move {
        match creds.sealed.open(master.as_ref(), &key_id.to_string()).await {
            Ok(api_key) => {
                let outcome = listings.fetch(&client, &api_key, &region, &metrics).await;
                drop(api_key);
                listings.store(key_id, &region, &creds.sealed.nonce, &outcome);
            }
            Err(e) => tracing::warn!(error = %e, "cannot open a key's Bedrock API key to refresh its model listing"),
        }
    });
}

/// Replays the request on Bedrock and answers as Anthropic would.
pub(crate) async fn failover(
    req: &actix_web::HttpRequest,
    body: Bytes,
    cause: PlanFailure,
    shared: &Shared,
    upstream: &Upstream,
    mut record: RequestRecord,
) -> HttpResponse {
    record.fallback_reason = Some(cause.reason);
    let Some(key_id) = record.key.as_ref().map(|k| k.key_id) else {
        return no_fallback(&cause, record);
    };
    let (Some(creds), Some(master)) = (shared.keys.bedrock_credentials(&key_id), shared.master.as_ref()) else {
        return no_fallback(&cause, record);
    };
    // First: the body may not have been parsed yet (`claude_code_shape`), and a malformed one
    // must get its 400 before a model is resolved or a key opened.
    let request = match shared.rules.adapt(&body, header_str(req.headers(), "anthropic-beta")) {
        Ok(r) => r,
        Err(e) => {
            return answer_error(
                ProxyError::bad_request(format!("The request cannot be sent to Amazon Bedrock: {e}.")),
                record,
            )
        }
    };
    record.provider = Provider::Bedrock;
    let region = creds.settings.region.clone().unwrap_or_else(|| shared.default_region.clone());
    if !ccp_schemas::catalogue::is_aws_region(&region) {
        // It becomes part of Bedrock's host name: the key is never sent to anything else.
        tracing::error!(request_id = %record.request_id, "the key's Bedrock region is not an AWS region");
        let err = ProxyError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal,
            "This access key's Bedrock region is not an AWS region; ask your platform team.",
        );
        return answer_error(err, record);
    }
    let catalogue = shared.keys.catalogue();
    let query = TargetQuery {
        requested: record.requested_model.as_deref(),
        region: &region,
        key_default: creds.settings.default_model.as_deref(),
        catalogue: &catalogue,
        family_fallback: &shared.family_fallback,
    };
    let api_key = match creds.sealed.open(master.as_ref(), &key_id.to_string()).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(request_id = %record.request_id, error = %e, "cannot open the key's Bedrock API key");
            let err = ProxyError::upstream(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorClass::Internal,
                "The proxy cannot decrypt this access key's Bedrock API key; ask your platform team.",
            );
            return answer_error(err, record);
        }
    };
    // The catalogue answers without I/O; only a model it has no target for needs the listing.
    let target = match route::catalogue_target(&query) {
        Some(t) => Some(t),
        None => {
            let listed = listing(shared, upstream, key_id, &region, &creds.sealed.nonce, &api_key).await;
            route::resolve_target(&query, listed.as_deref().map(Vec::as_slice))
        }
    };
    let metrics = &shared.recorder.metrics;
    let Some(target) = target else {
        drop(api_key);
        metrics.bedrock_resolutions.get_or_create(&OutcomeLabels { outcome: "not_mapped" }).inc();
        let model = record.requested_model.clone().unwrap_or_else(|| "(none)".into());
        let err = ProxyError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::ModelNotMapped,
            format!("Anthropic returned {} and model `{model}` has no Amazon Bedrock mapping: it is not in the model catalogue or this key's Bedrock model list, its family is unknown, and this access key has no default Bedrock model; ask your platform team.", cause.what),
        )
        .retry_after(cause.retry_after.clone());
        return answer_error(err, record);
    };
    metrics.bedrock_resolutions.get_or_create(&OutcomeLabels { outcome: target.source.as_str() }).inc();
    if target.substituted {
        tracing::info!(
            request_id = %record.request_id,
            requested = record.requested_model.as_deref().unwrap_or("(none)"),
            called = %target.model_id,
            source = target.source.as_str(),
            "failover substitutes another model for the requested one"
        );
    }
    record.bedrock_model_id = Some(target.model_id.clone());
    record.region = Some(region.clone());
    record.bedrock_resolution = Some(target.source);
    record.model_substituted = target.substituted;
    // The budget counts this request while it runs: its Plan reservation, if any, is replaced.
    record.reservation = None;
    record.team_reservation = None;
    if let Err(err) = reserve(shared, &mut record, target.priced_as.as_deref(), body.len(), request.max_tokens) {
        drop(api_key);
        return answer_error(err, record);
    }
    record.priced_model = target.priced_as;
    let answer = upstream.bedrock.invoke(&api_key, &region, &target.model_id, request).await;
    drop(api_key);
    answer_as_anthropic(answer, &cause, record)
}

/// Bedrock's answer (or failure) as Anthropic would give it.
fn answer_as_anthropic(
    answer: Result<Answer, BedrockFailure>,
    cause: &PlanFailure,
    mut record: RequestRecord,
) -> HttpResponse {
    let reason = fallback_label(cause.reason);
    match answer {
        Ok(Answer::Json { body, request_id }) => {
            let mut tap = UsageTap::new(Framing::Json, Coding::Identity);
            tap.feed(&body);
            record.first_byte();
            let observed = tap.finish();
            let mut builder = HttpResponse::Ok();
            builder
                .content_type("application/json")
                .insert_header((REQUEST_ID_HEADER, record.request_id.to_string()))
                .insert_header((PROVIDER_HEADER, "bedrock"))
                .insert_header((FALLBACK_REASON_HEADER, reason));
            if let Some(id) = request_id {
                builder.insert_header(("request-id", id));
            }
            let incomplete = !observed.complete;
            record.finish(200, None, incomplete, observed);
            builder.body(body)
        }
        Ok(Answer::Stream { events, request_id }) => {
            let mut builder = HttpResponse::Ok();
            builder
                .content_type("text/event-stream; charset=utf-8")
                .insert_header(("cache-control", "no-cache"))
                .insert_header((REQUEST_ID_HEADER, record.request_id.to_string()))
                .insert_header((PROVIDER_HEADER, "bedrock"))
                .insert_header((FALLBACK_REASON_HEADER, reason));
            if let Some(id) = request_id {
                builder.insert_header(("request-id", id));
            }
            let fault = std::rc::Rc::new(std::cell::Cell::new(None));
            let sink = fault.clone();
            let events = events.scan(false, move |ended, item| {
                let out = match item {
                    _ if *ended => None,
                    Ok(bytes) => Some(Ok::<Bytes, std::convert::Infallible>(bytes)),
                    Err(failure) => {
                        tracing::warn!(error = %failure.detail, "Bedrock stream failed after it started");
                        sink.set(Some(failure.class));
                        *ended = true;
                        Some(Ok(bedrock::sse_error(&failure)))
                    }
                };
                std::future::ready(out)
            });
            let body = TapBody {
                inner: Box::pin(events),
                tap: Some(UsageTap::new(Framing::Sse, Coding::Identity)),
                record: Some(record),
                status: 200,
                class: None,
                fault: Some(fault),
                on_upstream_failure: None,
            };
            builder.streaming(body)
        }
        Err(failure) => {
            tracing::warn!(request_id = %record.request_id, class = ?failure.class, detail = %failure.detail, "Bedrock failed");
            answer_error(bedrock_error(&failure, cause), record)
        }
    }
}
