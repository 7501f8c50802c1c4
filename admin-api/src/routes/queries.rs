//! The usage routes: usage over time, a user's and a team's budget this month, one request by id
//! and the audit log. Handlers only bind HTTP to the usage store ([`crate::usage`]), which checks the
//! query and reads ClickHouse; the bodies are [`crate::api::usage`]'s.

use actix_web::web;
use ccp_schemas::ids::{RequestId, TeamId, UserId};

use super::{parse_id, AppState};
use crate::api::usage::{AuditEntry, AuditQuery, Budget, RequestDetail, TeamBudget, UsageQuery, UsageReport};
use crate::api::Page;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::query::Query;
use crate::usage::UsageStore;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/usage", web::get().to(usage))
        .route("/users/{user_id}/budget", web::get().to(get_budget))
        .route("/teams/{team_id}/budget", web::get().to(get_team_budget))
        .route("/requests/{request_id}", web::get().to(get_request))
        .route("/audit", web::get().to(audit));
}

/// The usage store of this deployment.
fn store(state: &AppState) -> UsageStore<'_> {
    UsageStore::new(&state.clickhouse, &state.settings)
}

/// Usage and cost over time, bucketed in a time zone, optionally grouped and filtered.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(state: web::Data<AppState>, query: Query<UsageQuery>) -> ApiResult<web::Json<UsageReport>> {
    store(&state).report(&query.0).await.map(web::Json)
}

/// A user's spend this calendar month (in the budget time zone) against their monthly limit.
#[utoipa::path(get, path = "/v1/users/{user_id}/budget", tag = "usage", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Budget), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_budget(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<web::Json<Budget>> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let limit = state
        .view
        .read()
        .directory
        .user(&user_id)
        .map(|u| u.monthly_limit_usd)
        .ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))?;
    store(&state).budget(user_id, limit).await.map(web::Json)
}

/// A team's spend this calendar month (in the budget time zone): the requests its members made
/// while in it, against the team's monthly limit.
#[utoipa::path(get, path = "/v1/teams/{team_id}/budget", tag = "usage", params(("team_id" = String, Path, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = TeamBudget), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_team_budget(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<web::Json<TeamBudget>> {
    let team_id: TeamId = parse_id("team_id", &path)?;
    let (name, limit) = state
        .view
        .read()
        .directory
        .team(&team_id)
        .map(|t| (t.name.clone(), t.monthly_limit_usd))
        .ok_or_else(|| ApiError::not_found(format!("no team {team_id}")))?;
    store(&state).team_budget(team_id, &name, limit).await.map(web::Json)
}

/// One request through the proxy, by the request id the developer saw (`x-ccp-request-id`).
#[utoipa::path(get, path = "/v1/requests/{request_id}", tag = "usage", params(("request_id" = String, Path, pattern = r"^req_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = RequestDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_request(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<web::Json<RequestDetail>> {
    let request_id: RequestId = parse_id("request_id", &path)?;
    let detail = store(&state).request(request_id).await?.ok_or_else(|| {
        ApiError::not_found(format!("no request {request_id} (requests appear about a second after they end)"))
    })?;
    Ok(web::Json(detail))
}

/// The audit log: every admin command and login, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "usage", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit(state: web::Data<AppState>, query: Query<AuditQuery>) -> ApiResult<web::Json<Page<AuditEntry>>> {
    store(&state).audit(&query.0).await.map(web::Json)
}
