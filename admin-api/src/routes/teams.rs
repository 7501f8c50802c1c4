//! Teams: create, list, get, update, delete, budget, routing default; and a user's team
//! (`PUT /v1/users/{user_id}/team`, the membership is the user's).

use actix_web::{web, HttpResponse};
use ccp_schemas::ids::{TeamId, UserId};
use ccp_schemas::state::{KeyStatus, TeamState, UserState};
use ccp_schemas::subjects::Aggregate;

use super::users::check_budget;
use super::{check_name, check_text, parse_id, versioned, AppState};
use crate::api::{CreateTeam, SetBudget, SetTeam, SetTeamRouting, Team, TeamDetail, UpdateTeam, User};
use crate::context::Ctx;
use crate::domain::{decide_team, TeamCommand, UserCommand};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::json::Json;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/teams", web::post().to(create_team))
        .route("/teams", web::get().to(list_teams))
        .route("/teams/{team_id}", web::get().to(get_team))
        .route("/teams/{team_id}", web::patch().to(update_team))
        .route("/teams/{team_id}", web::delete().to(delete_team))
        .route("/teams/{team_id}/budget", web::put().to(set_team_budget))
        .route("/teams/{team_id}/routing", web::put().to(set_team_routing))
        .route("/users/{user_id}/team", web::put().to(set_user_team));
}

fn name_taken(state: &AppState, name: &str, except: Option<TeamId>) -> bool {
    state.view.read().directory.teams().any(|t| t.name.eq_ignore_ascii_case(name) && Some(t.team_id) != except)
}

fn members(state: &AppState, team_id: TeamId) -> usize {
    state.view.read().directory.members(team_id).count()
}

/// Its team leads: the admins scoped to it.
fn leads(state: &AppState, team_id: TeamId) -> usize {
    state.view.read().admins.values().filter(|a| a.team_id == Some(team_id)).count()
}

async fn run(state: &AppState, ctx: &Ctx, team_id: TeamId, command: TeamCommand) -> ApiResult<(Team, u64)> {
    let executed = state
        .store
        .execute(Aggregate::Team(team_id), &ctx.meta(), TeamState::apply, |s| decide_team(s, team_id, command.clone()))
        .await?;
    state.settle(executed.seq).await;
    let team =
        executed.state.filter(|t| !t.deleted).ok_or_else(|| ApiError::not_found(format!("no team {team_id}")))?;
    Ok((Team::from_state(&team, members(state, team_id)), executed.seq))
}

/// Create a team.
#[utoipa::path(post, path = "/v1/teams", tag = "teams", request_body = CreateTeam,
    responses((status = 201, body = Team), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_team(state: web::Data<AppState>, ctx: Ctx, body: Json<CreateTeam>) -> ApiResult<HttpResponse> {
    let body = body.0;
    let name = check_name("name", &body.name)?;
    let description = body.description.as_deref().map(|d| check_text("description", d, 500)).transpose()?;
    let monthly_limit_usd = check_budget(body.monthly_limit_usd)?;
    if name_taken(&state, &name, None) {
        return Err(ApiError::conflict(format!("a team named `{name}` already exists")).field("name"));
    }
    let team_id = TeamId::new();
    let command = TeamCommand::Create {
        name,
        description: description.filter(|d| !d.is_empty()),
        monthly_limit_usd,
        routing: body.routing,
    };
    let (team, version) = run(&state, &ctx, team_id, command).await?;
    let mut created = HttpResponse::Created();
    created.insert_header(("location", format!("/v1/teams/{team_id}")));
    Ok(versioned(created, &team, version))
}

/// Every team, sorted by name, with its member count.
#[utoipa::path(get, path = "/v1/teams", tag = "teams",
    responses((status = 200, body = Vec<Team>)), security(("bearer" = [])))]
pub async fn list_teams(state: web::Data<AppState>) -> ApiResult<web::Json<Vec<Team>>> {
    let model = state.view.read();
    let mut counts = std::collections::HashMap::new();
    for u in model.directory.users() {
        if let Some(t) = model.directory.team_of(u) {
            *counts.entry(t.team_id).or_insert(0usize) += 1;
        }
    }
    let mut teams: Vec<&TeamState> = model.directory.teams().collect();
    teams.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.team_id.cmp(&b.team_id)));
    Ok(web::Json(
        teams.into_iter().map(|t| Team::from_state(t, counts.get(&t.team_id).copied().unwrap_or(0))).collect(),
    ))
}

/// A team with its members.
#[utoipa::path(get, path = "/v1/teams/{team_id}", tag = "teams", params(("team_id" = String, Path, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = TeamDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_team(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let team_id: TeamId = parse_id("team_id", &path)?;
    let model = state.view.read();
    let dir = &model.directory;
    let team = dir.team(&team_id).ok_or_else(|| ApiError::not_found(format!("no team {team_id}")))?;
    let mut users: Vec<&UserState> = dir.members(team_id).collect();
    users.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.user_id.cmp(&b.user_id)));
    let active = |u: UserId| dir.keys().filter(|k| k.user_id == u && k.status == KeyStatus::Active).count();
    let users: Vec<User> = users.into_iter().map(|u| User::from_state(u, active(u.user_id), dir)).collect();
    let detail = TeamDetail { team: Team::from_state(team, users.len()), users };
    Ok(versioned(HttpResponse::Ok(), &detail, model.version(&Aggregate::Team(team_id))))
}

/// Change a team's name or description.
#[utoipa::path(patch, path = "/v1/teams/{team_id}", tag = "teams", params(("team_id" = String, Path, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = UpdateTeam,
    responses((status = 200, body = Team), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_team(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<UpdateTeam>,
) -> ApiResult<HttpResponse> {
    let team_id: TeamId = parse_id("team_id", &path)?;
    let body = body.0;
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    if let Some(n) = &name {
        if name_taken(&state, n, Some(team_id)) {
            return Err(ApiError::conflict(format!("a team named `{n}` already exists")).field("name"));
        }
    }
    let description = body.description.as_deref().map(|d| check_text("description", d, 500)).transpose()?;
    let (team, version) = run(&state, &ctx, team_id, TeamCommand::Update { name, description }).await?;
    Ok(versioned(HttpResponse::Ok(), &team, version))
}

/// Delete a team. Refused with 409 while it has members or team leads (admins scoped to it);
/// spend already recorded keeps its team id.
#[utoipa::path(delete, path = "/v1/teams/{team_id}", tag = "teams", params(("team_id" = String, Path, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_team(state: web::Data<AppState>, ctx: Ctx, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let team_id: TeamId = parse_id("team_id", &path)?;
    if state.view.read().directory.team(&team_id).is_none() {
        return Err(ApiError::not_found(format!("no team {team_id}")));
    }
    let executed = state
        .store
        .execute(Aggregate::Team(team_id), &ctx.meta(), TeamState::apply, |s| {
            decide_team(
                s,
                team_id,
                TeamCommand::Delete { members: members(&state, team_id), leads: leads(&state, team_id) },
            )
        })
        .await?;
    state.settle(executed.seq).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Set or clear a team's monthly budget (the members' spend together).
#[utoipa::path(put, path = "/v1/teams/{team_id}/budget", tag = "teams", params(("team_id" = String, Path, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetBudget,
    responses((status = 200, body = Team), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_team_budget(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetBudget>,
) -> ApiResult<HttpResponse> {
    let team_id: TeamId = parse_id("team_id", &path)?;
    let limit = check_budget(body.0.monthly_limit_usd)?;
    let (team, version) = run(&state, &ctx, team_id, TeamCommand::SetBudget(limit)).await?;
    Ok(versioned(HttpResponse::Ok(), &team, version))
}

/// Set or clear a team's routing default (members with a strategy of their own keep it).
#[utoipa::path(put, path = "/v1/teams/{team_id}/routing", tag = "teams", params(("team_id" = String, Path, pattern = r"^team_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetTeamRouting,
    responses((status = 200, body = Team), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_team_routing(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetTeamRouting>,
) -> ApiResult<HttpResponse> {
    let team_id: TeamId = parse_id("team_id", &path)?;
    let (team, version) = run(&state, &ctx, team_id, TeamCommand::SetRouting(body.0.strategy)).await?;
    Ok(versioned(HttpResponse::Ok(), &team, version))
}

/// Put a user in a team, move them to another or take them out of theirs (`null`). A user is
/// in at most one team. Spend already incurred stays with the team it was incurred in.
#[utoipa::path(put, path = "/v1/users/{user_id}/team", tag = "users", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetTeam,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_user_team(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetTeam>,
) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let team_id = match body.0.team_id.as_deref() {
        None => None,
        Some(raw) => {
            let id: TeamId = raw.parse().map_err(|_| {
                ApiError::unprocessable(
                    "team_id",
                    format!("`{}` is not a team id (team_…)", raw.chars().take(40).collect::<String>()),
                )
            })?;
            if state.view.read().directory.team(&id).is_none() {
                return Err(ApiError::unprocessable("team_id", format!("no team {id}")));
            }
            Some(id)
        }
    };
    super::users::run(&state, &ctx, user_id, UserCommand::SetTeam(team_id)).await
}
