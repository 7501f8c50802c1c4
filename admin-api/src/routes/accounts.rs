//! An admin account's lifecycle: change your own password or sign out everywhere; as an `admin`,
//! reset another admin's password, disable and enable an admin (their password, sessions and
//! API tokens stop working on every replica as soon as its view has the event — milliseconds),
//! list and end their sessions, list and revoke their API tokens. Every change is an event on the
//! admin's account, so it is in the audit log.

use actix_web::{web, HttpResponse};
use ccp_schemas::ids::{AdminId, ApiTokenId};
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::Aggregate;
use chrono::Utc;
use futures_util::StreamExt as _;

use super::admins::{admin_view, token_view};
use super::{parse_id, AppState};
use crate::api::{Admin, ApiToken, ChangePassword, DisableAdmin, ResetPassword, SessionInfo};
use crate::auth::{check_new_password, hash_password, verify_password, Auth, SessionRecord};
use crate::context::Ctx;
use crate::domain::{decide_admin, AdminCommand, AdminState};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorKind};
use crate::json::Json;
use crate::throttle::Admission;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/password", web::put().to(change_own_password))
        .route("/auth/sign-out-everywhere", web::post().to(sign_out_everywhere))
        .route("/admins/{admin_id}/password", web::put().to(reset_password))
        .route("/admins/{admin_id}/disable", web::post().to(disable_admin))
        .route("/admins/{admin_id}/enable", web::post().to(enable_admin))
        .route("/admins/{admin_id}/sign-out-everywhere", web::post().to(sign_admin_out))
        .route("/admins/{admin_id}/sessions", web::get().to(list_sessions))
        .route("/admins/{admin_id}/sessions/{session_id}/revoke", web::post().to(revoke_session))
        .route("/admins/{admin_id}/api-tokens", web::get().to(list_admin_tokens))
        .route("/admins/{admin_id}/api-tokens/{token_id}/revoke", web::post().to(revoke_admin_token));
}

/// Applies `command` to admin `admin_id` and answers its resulting state.
pub(super) async fn execute(
    state: &AppState,
    ctx: &Ctx,
    admin_id: AdminId,
    command: AdminCommand,
) -> ApiResult<AdminState> {
    execute_as(state, &ctx.meta(), admin_id, command).await
}

/// [`execute`] on behalf of `meta`'s actor (single sign-on acts as the system).
pub(super) async fn execute_as(
    state: &AppState,
    meta: &crate::store::CommandMeta,
    admin_id: AdminId,
    command: AdminCommand,
) -> ApiResult<AdminState> {
    let executed = state
        .store
        .execute(Aggregate::Admin(admin_id), meta, AdminState::apply, |s| decide_admin(s, admin_id, command.clone()))
        .await?;
    state.settle(executed.seq).await;
    executed.state.ok_or_else(|| ApiError::not_found(format!("no admin {admin_id}")))
}

fn existing(state: &AppState, admin_id: AdminId) -> ApiResult<AdminState> {
    state.view.read().admins.get(&admin_id).cloned().ok_or_else(|| ApiError::not_found(format!("no admin {admin_id}")))
}

/// Change your own password (the current one is checked, and throttled like a login). Every
/// session of yours ends, this one included: log in again.
#[utoipa::path(put, path = "/v1/auth/password", tag = "auth", request_body = ChangePassword,
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn change_own_password(
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    ctx: Ctx,
    body: Json<ChangePassword>,
) -> ApiResult<web::Json<Admin>> {
    let caller = ctx.admin()?.clone();
    let ChangePassword { current_password, new_password } = body.0;
    let admin = existing(&state, caller.admin_id)?;
    match auth.throttle.begin(&caller.username, ctx.source) {
        Admission::Refused(wait) => {
            let mut e =
                ApiError::new(ErrorKind::RateLimited, format!("too many failed attempts; try again in {wait} s"));
            e.retry_after = Some(wait);
            return Err(e);
        }
        Admission::Go(delay) => tokio::time::sleep(delay).await,
    }
    let same = current_password == new_password;
    if !verify_password(SecretString::new(current_password), Some(admin.password_hash.clone())).await {
        auth.throttle.failed(&caller.username, ctx.source);
        return Err(ApiError::new(ErrorKind::Forbidden, "the current password is wrong").field("current_password"));
    }
    auth.throttle.succeeded(&caller.username, ctx.source);
    // Checked once the current password is: nothing about the new one is said to a guesser.
    check_new_password("new_password", &new_password, &caller.username)?;
    if same {
        return Err(ApiError::unprocessable("new_password", "the new password is the current one"));
    }
    let password_hash = hash_password(SecretString::new(new_password)).await?;
    let admin =
        execute(&state, &ctx, caller.admin_id, AdminCommand::ChangePassword { password_hash, now: Utc::now() }).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// End every session of yours, on every device (API tokens are revoked one by one instead).
#[utoipa::path(post, path = "/v1/auth/sign-out-everywhere", tag = "auth",
    responses((status = 200, body = Admin), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn sign_out_everywhere(state: web::Data<AppState>, ctx: Ctx) -> ApiResult<web::Json<Admin>> {
    let admin_id = ctx.admin()?.admin_id;
    let admin = execute(&state, &ctx, admin_id, AdminCommand::RevokeSessions(Utc::now())).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// Set another admin's password (their sessions end).
#[utoipa::path(put, path = "/v1/admins/{admin_id}/password", tag = "auth", request_body = ResetPassword,
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reset_password(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<ResetPassword>,
) -> ApiResult<web::Json<Admin>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    let admin = existing(&state, admin_id)?;
    check_new_password("new_password", &body.0.new_password, &admin.username)?;
    let password_hash = hash_password(SecretString::new(body.0.new_password)).await?;
    let admin =
        execute(&state, &ctx, admin_id, AdminCommand::ChangePassword { password_hash, now: Utc::now() }).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// Disable an admin: their password, sessions and API tokens stop working at once. You cannot
/// disable yourself or the last enabled `admin`.
#[utoipa::path(post, path = "/v1/admins/{admin_id}/disable", tag = "auth", request_body = DisableAdmin,
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable_admin(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<DisableAdmin>,
) -> ApiResult<web::Json<Admin>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    existing(&state, admin_id)?; // 404 before any other check
    let reason = body.0.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500 || r.chars().any(char::is_control)) {
        return Err(ApiError::unprocessable("reason", "at most 500 characters, no control characters"));
    }
    if admin_id == ctx.admin()?.admin_id {
        return Err(ApiError::conflict("you cannot disable yourself; ask another admin").field("admin_id"));
    }
    if state.view.read().is_last_admin(admin_id) {
        return Err(ApiError::conflict("this is the last enabled admin with the `admin` role").field("admin_id"));
    }
    let admin = execute(&state, &ctx, admin_id, AdminCommand::Disable { reason, now: Utc::now() }).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// Enable a disabled admin (their API tokens work again; earlier sessions stay ended).
#[utoipa::path(post, path = "/v1/admins/{admin_id}/enable", tag = "auth",
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable_admin(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
) -> ApiResult<web::Json<Admin>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    let admin = execute(&state, &ctx, admin_id, AdminCommand::Enable).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// End every session of another admin.
#[utoipa::path(post, path = "/v1/admins/{admin_id}/sign-out-everywhere", tag = "auth",
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sign_admin_out(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
) -> ApiResult<web::Json<Admin>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    let admin = execute(&state, &ctx, admin_id, AdminCommand::RevokeSessions(Utc::now())).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// The sessions of `admin_id` that still work, with their ids and KV keys.
async fn sessions_of(auth: &Auth, admin: &AdminState) -> ApiResult<Vec<(SessionInfo, String)>> {
    let mut keys = auth.sessions.keys().await.map_err(|e| ApiError::unavailable("the session store", &e))?;
    let mut found = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| ApiError::unavailable("the session store", &e))?;
        let Ok(Some(bytes)) = auth.sessions.get(&key).await else { continue };
        let Ok(record) = serde_json::from_slice::<SessionRecord>(&bytes) else { continue };
        let live = record.expires_at > Utc::now()
            && admin.sessions_valid_after.is_none_or(|after| record.issued_at >= after)
            && !admin.disabled;
        if record.admin_id == admin.admin_id && live {
            let info = SessionInfo {
                session_id: format!("ses_{}", &key[..key.len().min(16)]),
                issued_at: record.issued_at,
                expires_at: record.expires_at,
            };
            found.push((info, key));
        }
    }
    found.sort_by_key(|a| a.0.issued_at);
    Ok(found)
}

/// An admin's open sessions (ids only, never tokens).
#[utoipa::path(get, path = "/v1/admins/{admin_id}/sessions", tag = "auth",
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Vec<SessionInfo>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    path: web::Path<String>,
) -> ApiResult<web::Json<Vec<SessionInfo>>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    let admin = existing(&state, admin_id)?;
    Ok(web::Json(sessions_of(&auth, &admin).await?.into_iter().map(|(info, _)| info).collect()))
}

/// End one session of an admin.
#[utoipa::path(post, path = "/v1/admins/{admin_id}/sessions/{session_id}/revoke", tag = "auth",
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
           ("session_id" = String, Path, pattern = r"^ses_[0-9a-f]{16}$")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (admin_id, session_id) = path.into_inner();
    let admin_id: AdminId = parse_id("admin_id", &admin_id)?;
    let valid =
        session_id.strip_prefix("ses_").is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(ApiError::invalid("session_id", "must be a session id such as ses_0123456789abcdef"));
    }
    let admin = existing(&state, admin_id)?;
    let sessions = sessions_of(&auth, &admin).await?;
    let (_, key) = sessions
        .into_iter()
        .find(|(info, _)| info.session_id == session_id)
        .ok_or_else(|| ApiError::not_found(format!("no open session {session_id} of admin {admin_id}")))?;
    auth.sessions.purge(&key).await.map_err(|e| ApiError::unavailable("the session store", &e))?;
    tracing::info!(%admin_id, session_id, "session ended by an admin");
    Ok(HttpResponse::NoContent().finish())
}

/// An admin's API tokens.
#[utoipa::path(get, path = "/v1/admins/{admin_id}/api-tokens", tag = "auth",
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Vec<ApiToken>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_admin_tokens(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<web::Json<Vec<ApiToken>>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    Ok(web::Json(existing(&state, admin_id)?.tokens.iter().map(token_view).collect()))
}

/// Revoke an API token of any admin.
#[utoipa::path(post, path = "/v1/admins/{admin_id}/api-tokens/{token_id}/revoke", tag = "auth",
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$"),
           ("token_id" = String, Path, pattern = r"^tok_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = ApiToken), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_admin_token(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<ApiToken>> {
    let (admin_id, token_id) = path.into_inner();
    let admin_id: AdminId = parse_id("admin_id", &admin_id)?;
    let token_id: ApiTokenId = parse_id("token_id", &token_id)?;
    let admin = execute(&state, &ctx, admin_id, AdminCommand::RevokeToken(token_id)).await?;
    let token = admin.tokens.iter().find(|t| t.token_id == token_id).map(token_view);
    token.map(web::Json).ok_or_else(|| ApiError::not_found(format!("no API token {token_id}")))
}
