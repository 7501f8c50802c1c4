//! Users: create, list, get, update, deactivate, reactivate, budget, routing.

use actix_web::{web, HttpResponse};
use ccp_schemas::ids::UserId;
use ccp_schemas::state::{KeyStatus, UserState};
use ccp_schemas::subjects::Aggregate;
use rust_decimal::Decimal;

use super::{check_email, check_name, check_text, parse_id, versioned, AppState};
use crate::api::{CreateUser, ListUsers, Page, Reason, SetBudget, SetRouting, UpdateUser, User, UserDetail};
use crate::context::Ctx;
use crate::domain::{decide_user, UserCommand};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::{Json, OptionalJson};
use crate::query::Query;

/// Largest accepted monthly budget.
pub const MAX_BUDGET_USD: i64 = 1_000_000;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::post().to(create_user))
        .route("/users", web::get().to(list_users))
        .route("/users/{user_id}", web::get().to(get_user))
        .route("/users/{user_id}", web::patch().to(update_user))
        .route("/users/{user_id}/deactivate", web::post().to(deactivate_user))
        .route("/users/{user_id}/reactivate", web::post().to(reactivate_user))
        .route("/users/{user_id}/budget", web::put().to(set_budget))
        .route("/users/{user_id}/routing", web::put().to(set_routing));
}

fn active_keys(state: &AppState, user_id: UserId) -> usize {
    state.view.read().directory.keys().filter(|k| k.user_id == user_id && k.status == KeyStatus::Active).count()
}

pub(super) fn check_budget(limit: Option<Decimal>) -> ApiResult<Option<Decimal>> {
    match limit {
        Some(l) if l.is_sign_negative() || l > Decimal::from(MAX_BUDGET_USD) => Err(ApiError::unprocessable(
            "monthly_limit_usd",
            format!("must be between 0 and {MAX_BUDGET_USD} USD, or null for unlimited"),
        )),
        Some(l) if l.scale() > 6 => {
            Err(ApiError::unprocessable("monthly_limit_usd", "must have at most 6 decimal places"))
        }
        other => Ok(other.map(|l| l.normalize())),
    }
}

fn name_taken(state: &AppState, name: &str, except: Option<UserId>) -> bool {
    state.view.read().directory.users().any(|u| u.name.eq_ignore_ascii_case(name) && Some(u.user_id) != except)
}

/// Runs a user command and answers with the user.
pub(super) async fn run(state: &AppState, ctx: &Ctx, user_id: UserId, command: UserCommand) -> ApiResult<HttpResponse> {
    let (user, version) = run_versioned(state, ctx, user_id, command).await?;
    Ok(versioned(HttpResponse::Ok(), &user, version))
}

async fn run_versioned(state: &AppState, ctx: &Ctx, user_id: UserId, command: UserCommand) -> ApiResult<(User, u64)> {
    let executed = state
        .store
        .execute(Aggregate::User(user_id), &ctx.meta(), UserState::apply, |s| decide_user(s, user_id, command.clone()))
        .await?;
    state.settle(executed.seq).await;
    let user = executed.state.ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))?;
    let active = active_keys(state, user_id);
    Ok((User::from_state(&user, active, &state.view.read().directory), executed.seq))
}

/// Create a user.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_user(state: web::Data<AppState>, ctx: Ctx, body: Json<CreateUser>) -> ApiResult<HttpResponse> {
    let body = body.0;
    let name = check_name("name", &body.name)?;
    let description = body.description.as_deref().map(|d| check_text("description", d, 500)).transpose()?;
    let email = body.email.as_deref().map(|e| check_email("email", e)).transpose()?.filter(|e| !e.is_empty());
    let monthly_limit_usd = check_budget(body.monthly_limit_usd)?;
    if name_taken(&state, &name, None) {
        return Err(ApiError::conflict(format!("a user named `{name}` already exists")).field("name"));
    }
    let user_id = UserId::new();
    let command = UserCommand::Create {
        user_id,
        name,
        description: description.filter(|d| !d.is_empty()),
        email,
        status: body.status.unwrap_or_default(),
        monthly_limit_usd,
        routing: body.routing,
    };
    let (user, version) = run_versioned(&state, &ctx, user_id, command).await?;
    let mut created = HttpResponse::Created();
    created.insert_header(("location", format!("/v1/users/{user_id}")));
    Ok(versioned(created, &user, version))
}

/// List users, with search, status filter and paging (sorted by name).
#[utoipa::path(get, path = "/v1/users", tag = "users", params(ListUsers),
    responses((status = 200, body = Page<User>), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_users(state: web::Data<AppState>, query: Query<ListUsers>) -> ApiResult<web::Json<Page<User>>> {
    let q = query.0;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > super::MAX_OFFSET {
        return Err(ApiError::invalid("offset", format!("must be at most {}", super::MAX_OFFSET)));
    }
    let needle = q.search.as_deref().map(str::to_lowercase).filter(|s| !s.is_empty());
    // `Some(None)`: users without a team.
    let team: Option<Option<ccp_schemas::ids::TeamId>> = match q.team.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(raw) => Some(Some(parse_id("team", raw)?)),
    };
    let model = state.view.read();
    let mut matching: Vec<&UserState> = model
        .directory
        .users()
        .filter(|u| q.status.is_none_or(|s| u.status == s))
        .filter(|u| team.is_none_or(|t| model.directory.team_of(u).map(|t| t.team_id) == t))
        .filter(|u| {
            needle.as_deref().is_none_or(|n| {
                u.name.to_lowercase().contains(n)
                    || u.email.as_deref().is_some_and(|e| e.to_lowercase().contains(n))
                    || u.description.as_deref().is_some_and(|d| d.to_lowercase().contains(n))
            })
        })
        .collect();
    matching.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.user_id.cmp(&b.user_id)));
    let total = matching.len();
    let mut counts = std::collections::HashMap::new();
    for k in model.directory.keys().filter(|k| k.status == KeyStatus::Active) {
        *counts.entry(k.user_id).or_insert(0usize) += 1;
    }
    let items = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|u| User::from_state(u, counts.get(&u.user_id).copied().unwrap_or(0), &model.directory))
        .collect();
    Ok(web::Json(Page { items, total, offset, limit }))
}

/// A user with their keys.
#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = UserDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_user(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let (user, keys, version) = {
        let model = state.view.read();
        let user = model.directory.user(&user_id).ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))?;
        let active = model.directory.keys().filter(|k| k.user_id == user_id && k.status == KeyStatus::Active).count();
        (
            User::from_state(user, active, &model.directory),
            super::keys::keys_of(&model, user_id),
            model.version(&Aggregate::User(user_id)),
        )
    };
    let keys = super::keys::with_last_used(&state, keys).await;
    let detail = UserDetail { user, keys };
    Ok(versioned(HttpResponse::Ok(), &detail, version))
}

/// Change a user's name, description or email.
#[utoipa::path(patch, path = "/v1/users/{user_id}", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = UpdateUser,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_user(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<UpdateUser>,
) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let body = body.0;
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    if let Some(n) = &name {
        if name_taken(&state, n, Some(user_id)) {
            return Err(ApiError::conflict(format!("a user named `{n}` already exists")).field("name"));
        }
    }
    let description = body.description.as_deref().map(|d| check_text("description", d, 500)).transpose()?;
    let email = body.email.as_deref().map(|e| check_email("email", e)).transpose()?;
    run(&state, &ctx, user_id, UserCommand::Update { name, description, email }).await
}

/// Deactivate a user: every key of theirs is refused at once.
#[utoipa::path(post, path = "/v1/users/{user_id}/deactivate", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body(content = Option<Reason>),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deactivate_user(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: OptionalJson<Reason>,
) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let reason = body.0.and_then(|b| b.reason).map(|r| check_text("reason", &r, 500)).transpose()?;
    run(&state, &ctx, user_id, UserCommand::Deactivate { reason }).await
}

/// Reactivate a user.
#[utoipa::path(post, path = "/v1/users/{user_id}/reactivate", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reactivate_user(state: web::Data<AppState>, ctx: Ctx, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    run(&state, &ctx, user_id, UserCommand::Reactivate).await
}

/// Set or clear a user's monthly budget.
#[utoipa::path(put, path = "/v1/users/{user_id}/budget", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetBudget,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_budget(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetBudget>,
) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let limit = check_budget(body.0.monthly_limit_usd)?;
    run(&state, &ctx, user_id, UserCommand::SetBudget(limit)).await
}

/// Set a user's routing strategy.
#[utoipa::path(put, path = "/v1/users/{user_id}/routing", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetRouting,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_routing(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetRouting>,
) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    run(&state, &ctx, user_id, UserCommand::SetRouting(body.0.strategy)).await
}
