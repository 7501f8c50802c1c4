//! Developer self-service: `GET /v1/self`, authenticated only by the developer's own access key
//! (`x-ccp-access-key`, or `Authorization: Bearer ak_…`), never by an admin session. It answers
//! for the key's user — all of their keys, with a per-key breakdown: usage today and this month
//! by model and provider, the budget, the latest Plan-limit state Anthropic reported, failovers
//! to Bedrock and the latest requests with their request ids.
//!
//! *Invariants:* only the presented key's user's data is read (every query is filtered by that
//! user id, taken from the read model, never from the request); an unknown, malformed or revoked
//! key or a deactivated user is one and the same 401, so the answer never tells whether a key
//! exists; failed attempts are throttled per key prefix and per client address. The figures come
//! from the usage store the admin API reads too ([`UsageStore::report`], [`UsageStore::budget`]),
//! so they agree by construction.

use actix_web::{web, HttpRequest, HttpResponse};
use async_nats::jetstream;
use ccp_schemas::events::{Event, RateLimitState};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPrefix};
use ccp_schemas::state::KeyStatus;
use ccp_schemas::subjects::{Aggregate, StreamKind};
use ccp_schemas::{Envelope, Namespace};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::api::usage::{Budget, Preset, RequestDetail, TeamBudget, UsageQuery, UsageReport};
use crate::auth::bearer_token;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorKind};
use crate::query::Query;
use crate::routes::admins::{Attempt, Outcome};
use crate::throttle::{Admission, Throttle};
use crate::usage::UsageStore;

/// The header carrying the access key (the same one the proxy accepts).
pub const ACCESS_KEY_HEADER: &str = "x-ccp-access-key";
/// Most recent requests (and failovers) an answer lists.
pub const MAX_RECENT: u64 = 100;
/// How far back recent requests and failovers are looked for.
const RECENT_DAYS: i64 = 31;

/// What the self-service endpoint needs beyond [`AppState`].
pub struct SelfService {
    /// JetStream, to read each key's latest usage event (its Plan-limit state).
    pub js: jetstream::Context,
    /// The deployment's names.
    pub ns: Namespace,
    /// Failed access-key attempts, per key prefix and per client.
    pub throttle: std::sync::Arc<Throttle>,
}

/// Mounts `GET /v1/self`, outside the admin authentication (and CSRF: it is not cookie-based).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/self", web::get().to(self_usage));
}

/// Query of `GET /v1/self`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SelfQuery {
    /// IANA time zone of "today" and "this month" (default `budgets.time_zone`, normally `UTC`).
    pub tz: Option<String>,
    /// How many recent requests to list, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub recent: Option<u64>,
}

/// The developer and the key they authenticated with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SelfUser {
    /// `usr_…`
    pub user_id: String,
    /// Their name.
    pub name: String,
    /// Their monthly budget in USD (`null`: none).
    #[serde(with = "rust_decimal::serde::str_option")]
    #[schema(value_type = Option<String>, example = "250")]
    pub monthly_limit_usd: Option<rust_decimal::Decimal>,
}

/// One of the developer's access keys (never the secret: its display prefix).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SelfKey {
    /// `key_…`
    pub key_id: String,
    /// First characters of the key.
    pub key_prefix: String,
    /// Its label.
    pub name: Option<String>,
    /// `active` or `revoked`.
    pub status: String,
    /// Whether this is the key the request authenticated with.
    pub current: bool,
    /// Whether requests with it can fail over to Amazon Bedrock (a Bedrock API key is set).
    pub bedrock_fallback: bool,
}

/// The latest rate-limit state Anthropic reported for one of the developer's keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanLimit {
    /// The key it was reported for.
    pub key_id: String,
    /// The state: `observed_at`, `status`, `retry_after_secs`, `unified` (the subscription:
    /// `status`, `reset`, `representative_claim`, `five_hour`/`seven_day`/`overage` windows with
    /// `status`, `reset`, `utilization`), `requests`/`tokens`/`input_tokens`/`output_tokens`
    /// (`limit`, `remaining`, `reset`) and `other` headers.
    #[schema(value_type = Object)]
    pub state: RateLimitState,
}

/// Failovers to Amazon Bedrock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Failovers {
    /// Requests Bedrock answered this month (the month of `this_month`).
    pub this_month: u64,
    /// The latest failed-over requests (last 31 days), newest first, with `fallback_reason`.
    pub recent: Vec<RequestDetail>,
}

/// `GET /v1/self`: a developer's own usage, budget, Plan limits, failovers and requests.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SelfUsage {
    /// The developer.
    pub user: SelfUser,
    /// Their access keys.
    pub keys: Vec<SelfKey>,
    /// Time zone of `today` and `this_month`.
    pub tz: String,
    /// Today, by model and provider.
    pub today: UsageReport,
    /// This calendar month, by model and provider.
    pub this_month: UsageReport,
    /// This calendar month, by access key.
    pub this_month_by_key: UsageReport,
    /// The monthly budget (in the budget time zone).
    pub budget: Budget,
    /// The team's monthly budget, shared with its members (`null`: not in a team). Requests are
    /// refused when either budget is exhausted (the stricter applies).
    pub team_budget: Option<TeamBudget>,
    /// The newest Plan-limit state of any of their keys (`null`: none reported yet).
    pub plan_limit: Option<PlanLimit>,
    /// Failovers to Bedrock.
    pub failovers: Failovers,
    /// The latest requests (last 31 days), newest first; quote `request_id` when asking for help.
    pub recent_requests: Vec<RequestDetail>,
}

/// The access key a request presents: `x-ccp-access-key`, else `Authorization: Bearer ak_…`.
fn presented_key(req: &HttpRequest) -> Option<&str> {
    if let Some(v) = req.headers().get(ACCESS_KEY_HEADER) {
        return v.to_str().ok().map(str::trim);
    }
    bearer_token(req).filter(|t| t.starts_with("ak_"))
}

/// The one answer for every refused key.
fn refused() -> ApiError {
    ApiError::unauthenticated(
        "this access key is not accepted (unknown, revoked, or its user is deactivated); ask your platform team",
    )
}

/// The key's user and keys, or 401 (429 when too many attempts failed).
async fn authenticate(
    state: &AppState,
    service: &SelfService,
    req: &HttpRequest,
    ctx: &Ctx,
) -> ApiResult<(AccessKeyId, UserId)> {
    let raw = presented_key(req).ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "send your ClaudeCodeProxy access key in the `{ACCESS_KEY_HEADER}` header (or as `Authorization: Bearer ak_…`)"
        ))
    })?;
    // As for admin logins ([`crate::throttle`]): a client that keeps failing waits, a much-tried
    // key prefix is only slowed, so its owner still gets their figures.
    let prefix = KeyPrefix::of_candidate(raw);
    let delay = match service.throttle.begin(prefix.as_str(), ctx.source) {
        Admission::Refused(wait) => {
            let mut e =
                ApiError::new(ErrorKind::RateLimited, format!("too many refused access keys; try again in {wait} s"));
            e.retry_after = Some(wait);
            return Err(e);
        }
        Admission::Go(delay) => delay,
    };
    let mut attempt =
        Attempt { throttle: &service.throttle, name: prefix.as_str(), client: ctx.source, outcome: Outcome::NotTried };
    tokio::time::sleep(delay).await;
    attempt.outcome = Outcome::Failed;
    let key = AccessKey::parse(raw).map_err(|_| refused())?;
    let hash = key.hash(&state.pepper);
    drop(key);
    let model = state.view.read();
    let (key, user) = model.directory.authenticate(&hash).map_err(|_| refused())?;
    let found = (key.key_id, user.user_id);
    drop(model);
    attempt.outcome = Outcome::Succeeded;
    Ok(found)
}

/// The newest Plan-limit state among `keys`' latest usage events (read from JetStream).
async fn plan_limit(service: &SelfService, keys: &[AccessKeyId]) -> Option<PlanLimit> {
    let stream = match service.js.get_stream_no_info(service.ns.stream(StreamKind::Requests)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the request stream for Plan limits");
            return None;
        }
    };
    let mut best: Option<PlanLimit> = None;
    for key_id in keys {
        let subject = service.ns.subject(&Aggregate::Request(Some(*key_id)));
        let message = match stream.direct_get_last_for_subject(subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(error = %e, %key_id, "reading a key's latest usage event failed");
                continue;
            }
        };
        let Ok(Envelope { event: Event::RequestCompleted(r), .. }) = Envelope::decode(&message.payload) else {
            continue;
        };
        if let Some(state) = r.rate_limit {
            if best.as_ref().is_none_or(|b| state.observed_at > b.state.observed_at) {
                best = Some(PlanLimit { key_id: key_id.to_string(), state });
            }
        }
    }
    best
}

async fn report(
    store: &UsageStore<'_>,
    user_id: UserId,
    tz: &str,
    preset: Preset,
    group_by: &str,
) -> ApiResult<UsageReport> {
    let query = UsageQuery {
        preset: Some(preset),
        group_by: Some(group_by.to_owned()),
        user_id: Some(user_id.to_string()),
        tz: Some(tz.to_owned()),
        ..UsageQuery::default()
    };
    store.report(&query).await
}

/// Your own usage, authenticated by your access key: today and this month by model and
/// provider (and by key), cost, budget, the latest Plan-limit state, failovers to Bedrock and
/// your latest requests with their request ids. Covers every key of the key's user.
#[utoipa::path(get, path = "/v1/self", tag = "self-service", params(SelfQuery),
    responses((status = 200, body = SelfUsage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn self_usage(
    state: web::Data<AppState>,
    service: web::Data<SelfService>,
    ctx: Ctx,
    req: HttpRequest,
    query: Query<SelfQuery>,
) -> ApiResult<HttpResponse> {
    let (key_id, user_id) = authenticate(&state, &service, &req, &ctx).await?;
    let q = query.0;
    let recent = q.recent.unwrap_or(20);
    if !(1..=MAX_RECENT).contains(&recent) {
        return Err(ApiError::invalid("recent", format!("must be between 1 and {MAX_RECENT}")));
    }
    let (user, keys, team) = {
        let model = state.view.read();
        let user = model.directory.user(&user_id).ok_or_else(refused)?;
        let team = model.directory.team_of(user).map(|t| (t.team_id, t.name.clone(), t.monthly_limit_usd));
        let user = SelfUser {
            user_id: user_id.to_string(),
            name: user.name.clone(),
            monthly_limit_usd: user.monthly_limit_usd,
        };
        let mut keys: Vec<SelfKey> = model
            .directory
            .keys()
            .filter(|k| k.user_id == user_id)
            .map(|k| SelfKey {
                key_id: k.key_id.to_string(),
                key_prefix: k.key_prefix.as_str().to_owned(),
                name: k.name.clone(),
                status: match k.status {
                    KeyStatus::Active => "active".to_owned(),
                    KeyStatus::Revoked => "revoked".to_owned(),
                },
                current: k.key_id == key_id,
                bedrock_fallback: k.bedrock_key.is_some(),
            })
            .collect();
        keys.sort_by(|a, b| b.current.cmp(&a.current).then_with(|| a.key_id.cmp(&b.key_id)));
        (user, keys, team)
    };
    let tz = match q.tz {
        Some(tz) => tz,
        None => state.settings.budgets.time_zone.clone(),
    };
    let store = UsageStore::new(&state.clickhouse, &state.settings);
    let today = report(&store, user_id, &tz, Preset::Today, "model,provider").await?;
    let this_month = report(&store, user_id, &tz, Preset::ThisMonth, "model,provider").await?;
    let this_month_by_key = report(&store, user_id, &tz, Preset::ThisMonth, "key").await?;
    let budget = store.budget(user_id, user.monthly_limit_usd).await?;
    let team_budget = match team {
        Some((team_id, name, limit)) => Some(store.team_budget(team_id, &name, limit).await?),
        None => None,
    };
    let key_ids: Vec<AccessKeyId> = keys.iter().filter_map(|k| k.key_id.parse().ok()).collect();
    let plan_limit = plan_limit(&service, &key_ids).await;
    let since: DateTime<Utc> = Utc::now() - chrono::Duration::days(RECENT_DAYS);
    let recent_requests = store.recent_requests(user_id, since, recent, false).await?;
    let failed_over = store.recent_requests(user_id, since, recent, true).await?;
    let body = SelfUsage {
        user,
        keys,
        tz: today.tz.clone(),
        failovers: Failovers { this_month: this_month.totals.fallbacks, recent: failed_over },
        today,
        this_month,
        this_month_by_key,
        budget,
        team_budget,
        plan_limit,
        recent_requests,
    };
    // Personal data: never cached by a browser or a shared cache.
    Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(body))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_key_comes_from_the_header_or_an_access_key_bearer_token() {
        let req = TestRequest::default().insert_header((ACCESS_KEY_HEADER, " ak_abc ")).to_http_request();
        assert_eq!(presented_key(&req), Some("ak_abc"));
        let req = TestRequest::default().insert_header(("authorization", "Bearer ak_xyz")).to_http_request();
        assert_eq!(presented_key(&req), Some("ak_xyz"));
        let req = TestRequest::default().insert_header(("authorization", "Bearer ccps_session")).to_http_request();
        assert_eq!(presented_key(&req), None, "an admin session is not an access key");
        assert_eq!(presented_key(&TestRequest::default().to_http_request()), None);
    }
}
