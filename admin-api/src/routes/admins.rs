//! Admin accounts and authentication: login/logout/me, admins, API tokens.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use ccp_schemas::events::{AdminLoginSucceeded, AdminRole, Event, LoginMethod};
use ccp_schemas::ids::{AdminId, ApiTokenId};
use ccp_schemas::secrets::access_key::KeyPrefix;
use ccp_schemas::secrets::{random_token, SecretString};
use ccp_schemas::subjects::Aggregate;
use ccp_schemas::Actor;

use super::{check_name, check_username, parse_id, AppState};
use crate::api::{
    Admin, ApiToken, CreateAdmin, IssueApiToken, IssuedApiToken, Login, Me, Role, Session, SetRole, SetTeamScope,
};
use crate::auth::{check_password, hash_password, verify_password, Auth, API_TOKEN_PREFIX, SESSION_COOKIE};
use crate::context::Ctx;
use crate::domain::{decide_admin, AdminCommand, AdminState, TokenState};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorKind};
use crate::json::Json;
use crate::throttle::{Admission, Throttle};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me))
        .route("/admins", web::get().to(list_admins))
        .route("/admins", web::post().to(create_admin))
        .route("/admins/{admin_id}/role", web::put().to(set_admin_role))
        .route("/admins/{admin_id}/team-scope", web::put().to(set_team_scope))
        .route("/api-tokens", web::get().to(list_tokens))
        .route("/api-tokens", web::post().to(issue_token))
        .route("/api-tokens/{token_id}/revoke", web::post().to(revoke_token));
}

/// The one unauthenticated command.
pub fn configure_login(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/login", web::post().to(login));
}

/// Log in with username and password: a session token (also set as an HttpOnly cookie) and
/// its CSRF token. Failures are throttled per username and per address.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = Session), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn login(
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    ctx: Ctx,
    req: HttpRequest,
    body: Json<Login>,
) -> ApiResult<HttpResponse> {
    if !state.settings.admin.sso.password_login {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "password login is turned off here: sign in with single sign-on (the dashboard's button, or \
             `ccpctl login --sso`)",
        ));
    }
    let Login { username, password } = body.0;
    let username: String = username.trim().chars().take(64).collect();
    let password = SecretString::new(password);
    // A client that keeps failing waits; a much-failed username is only slowed, so the owner
    // still gets in ([`crate::throttle`]). Failures are counted there, not one event each.
    let delay = match auth.throttle.begin(&username, ctx.source) {
        Admission::Refused(wait) => {
            let mut e = ApiError::new(ErrorKind::RateLimited, format!("too many failed logins; try again in {wait} s"));
            e.retry_after = Some(wait);
            return Err(e);
        }
        Admission::Go(delay) => delay,
    };
    // Settled when dropped (also when the request is cancelled): untried until checked.
    let mut attempt =
        Attempt { throttle: &auth.throttle, name: &username, client: ctx.source, outcome: Outcome::NotTried };
    tokio::time::sleep(delay).await;
    let Ok(_permit) = tokio::time::timeout(std::time::Duration::from_secs(5), auth.verifications.acquire()).await
    else {
        let mut e = ApiError::new(ErrorKind::RateLimited, "too many logins at once; try again shortly");
        e.retry_after = Some(1);
        return Err(e);
    };
    if let Some(why) = state.view.halted() {
        // Fail closed: the event this API cannot read may disable this admin or change a password.
        return Err(ApiError::unavailable("the admin API (older than the event log; upgrade it)", &why));
    }
    attempt.outcome = Outcome::Failed;
    let admin = state.view.read().admin_by_name(&username).cloned();
    if !verify_password(password, admin.as_ref().map(|a| a.password_hash.clone())).await {
        return Err(ApiError::unauthenticated("wrong username or password"));
    }
    let Some(admin) = admin else { return Err(ApiError::unauthenticated("wrong username or password")) };
    if admin.disabled {
        return Err(ApiError::new(ErrorKind::Forbidden, "this admin is disabled; ask another admin to enable it"));
    }
    attempt.outcome = Outcome::Succeeded;
    drop(attempt);
    let (token, record) = auth.open_session(admin.admin_id, &admin.username).await?;
    let mut meta = ctx.meta();
    meta.actor = Actor::Admin { admin_id: admin.admin_id, username: admin.username.clone() };
    state
        .store
        .record(
            Event::AdminLoginSucceeded(AdminLoginSucceeded {
                admin_id: admin.admin_id,
                username: admin.username.clone(),
                method: LoginMethod::Password,
            }),
            &meta,
        )
        .await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(&req, &auth, &token))
        .insert_header(("cache-control", "no-store"))
        .json(Session {
            token: token.expose().to_owned(),
            csrf_token: record.csrf_token,
            expires_at: record.expires_at,
            admin: admin_view(&admin),
        }))
}

/// The dashboard's HttpOnly session cookie for `token` (`Secure` when the request came over HTTPS).
pub(super) fn session_cookie(req: &HttpRequest, auth: &Auth, token: &SecretString) -> Cookie<'static> {
    let https = req.connection_info().scheme() == "https";
    Cookie::build(SESSION_COOKIE, token.expose().to_owned())
        .secure(https)
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(i64::try_from(auth.ttl.as_secs()).unwrap_or(i64::MAX)))
        .finish()
}

/// End the current session (API tokens are revoked instead).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(auth: web::Data<Auth>, req: HttpRequest) -> ApiResult<HttpResponse> {
    let bearer = crate::auth::bearer_token(&req).map(str::to_owned);
    let token = bearer.or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()));
    if let Some(t) = token.filter(|t| !t.starts_with(API_TOKEN_PREFIX)) {
        auth.close_session(&t).await?;
    }
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Who is calling.
#[utoipa::path(get, path = "/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn me(ctx: Ctx) -> ApiResult<web::Json<Me>> {
    let admin = ctx.admin()?;
    Ok(web::Json(Me {
        admin_id: admin.admin_id.to_string(),
        username: admin.username.clone(),
        method: admin.method,
        role: admin.role.into(),
        team_id: admin.team_scope.map(|t| t.to_string()),
        csrf_token: admin.csrf_token.clone(),
    }))
}

pub(super) fn admin_view(a: &AdminState) -> Admin {
    Admin {
        admin_id: a.admin_id.to_string(),
        username: a.username.clone(),
        role: a.role.into(),
        disabled: a.disabled,
        team_id: a.team_id.map(|t| t.to_string()),
        created_at: Some(a.created_at),
    }
}

/// Every admin account.
#[utoipa::path(get, path = "/v1/admins", tag = "auth",
    responses((status = 200, body = Vec<Admin>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_admins(state: web::Data<AppState>) -> web::Json<Vec<Admin>> {
    let model = state.view.read();
    let mut admins: Vec<Admin> = model.admins.values().map(admin_view).collect();
    admins.sort_by(|a, b| a.username.cmp(&b.username));
    web::Json(admins)
}

/// Creates an admin account (also used for the initial admin at start).
pub async fn create_admin_account(
    state: &AppState,
    meta: &crate::store::CommandMeta,
    admin_id: AdminId,
    username: String,
    password: SecretString,
    role: AdminRole,
) -> ApiResult<AdminState> {
    let password_hash = hash_password(password).await?;
    let executed = state
        .store
        .execute(Aggregate::Admin(admin_id), meta, AdminState::apply, |s| {
            decide_admin(
                s,
                admin_id,
                AdminCommand::Create { username: username.clone(), password_hash: password_hash.clone(), role },
            )
        })
        .await?;
    state.settle(executed.seq).await;
    executed.state.ok_or_else(|| ApiError::internal(&"admin missing after creation"))
}

/// The id of the admin with this username in this deployment.
pub fn admin_id_for(ns: &ccp_schemas::Namespace, username: &str) -> AdminId {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{}:{username}", ns.prefix()).as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[0] &= 0x7f; // a ULID's first character is 0–7
    AdminId::from_ulid(ulid::Ulid::from_bytes(bytes))
}

/// Create another admin account.
#[utoipa::path(post, path = "/v1/admins", tag = "auth", request_body = CreateAdmin,
    responses((status = 201, body = Admin), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_admin(state: web::Data<AppState>, ctx: Ctx, body: Json<CreateAdmin>) -> ApiResult<HttpResponse> {
    let CreateAdmin { username, password, role } = body.0;
    let username = check_username("username", &username)?;
    check_password("password", &password)?;
    if state.view.read().admin_by_name(&username).is_some() {
        return Err(ApiError::conflict(format!("an admin named `{username}` already exists")).field("username"));
    }
    let role = role.map_or(AdminRole::Admin, AdminRole::from);
    let admin =
        create_admin_account(&state, &ctx.meta(), AdminId::new(), username, SecretString::new(password), role).await?;
    Ok(HttpResponse::Created().json(admin_view(&admin)))
}

/// Change an admin's role. The last admin with the `admin` role cannot be given another one.
#[utoipa::path(put, path = "/v1/admins/{admin_id}/role", tag = "auth", request_body = SetRole,
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_admin_role(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetRole>,
) -> ApiResult<web::Json<Admin>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    let role = AdminRole::from(body.0.role);
    if role != AdminRole::Admin && state.view.read().is_last_admin(admin_id) {
        return Err(ApiError::conflict(
            "this is the last admin with the `admin` role; give another admin that role first",
        )
        .field("role"));
    }
    let admin = super::accounts::execute(&state, &ctx, admin_id, AdminCommand::SetRole(role)).await?;
    Ok(web::Json(admin_view(&admin)))
}

/// Scope an admin to one team — a team lead: a `viewer` who may read only that team, its budget,
/// its members and its usage — or unscope them (`team_id` null). Only a `viewer` is scoped
/// (409 otherwise), and a team lead's role is not changed until they are unscoped. A team with
/// team leads is not deleted (409).
#[utoipa::path(put, path = "/v1/admins/{admin_id}/team-scope", tag = "auth", request_body = SetTeamScope,
    params(("admin_id" = String, Path, pattern = r"^adm_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Admin), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_team_scope(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetTeamScope>,
) -> ApiResult<web::Json<Admin>> {
    let admin_id: AdminId = parse_id("admin_id", &path)?;
    let team_id = match body.0.team_id.as_deref() {
        None => None,
        Some(raw) => {
            let team_id: ccp_schemas::ids::TeamId = parse_id("team_id", raw)?;
            if state.view.read().directory.team(&team_id).is_none() {
                return Err(ApiError::not_found(format!("no team {team_id}")).field("team_id"));
            }
            Some(team_id)
        }
    };
    let admin = super::accounts::execute(&state, &ctx, admin_id, AdminCommand::SetTeamScope(team_id)).await?;
    Ok(web::Json(admin_view(&admin)))
}

pub(super) fn token_view(t: &TokenState) -> ApiToken {
    ApiToken {
        token_id: t.token_id.to_string(),
        name: t.name.clone(),
        prefix: t.prefix.as_str().to_owned(),
        role: t.role.map(Role::from),
        revoked: t.revoked,
        created_at: t.created_at,
    }
}

/// The caller's API tokens.
#[utoipa::path(get, path = "/v1/api-tokens", tag = "auth",
    responses((status = 200, body = Vec<ApiToken>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_tokens(state: web::Data<AppState>, ctx: Ctx) -> ApiResult<web::Json<Vec<ApiToken>>> {
    let admin_id = ctx.admin()?.admin_id;
    let model = state.view.read();
    let tokens = model.admins.get(&admin_id).map(|a| a.tokens.iter().map(token_view).collect()).unwrap_or_default();
    Ok(web::Json(tokens))
}

/// Issue a long-lived API token for automation. The answer is the only place it appears.
#[utoipa::path(post, path = "/v1/api-tokens", tag = "auth", request_body = IssueApiToken,
    responses((status = 201, body = IssuedApiToken), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn issue_token(state: web::Data<AppState>, ctx: Ctx, body: Json<IssueApiToken>) -> ApiResult<HttpResponse> {
    let caller = ctx.admin()?;
    let admin_id = caller.admin_id;
    let name = check_name("name", &body.0.name)?;
    // A token never carries more than its issuer may do.
    let role = body.0.role.map(AdminRole::from);
    if let Some(role) = role {
        crate::roles::at_least(role, caller.role)?;
    }
    let token = random_token(API_TOKEN_PREFIX).map_err(|e| ApiError::internal(&e))?;
    let token_id = ApiTokenId::new();
    let command = AdminCommand::IssueToken {
        token_id,
        name,
        token_hash: state.pepper.hash(token.expose()),
        token_prefix: KeyPrefix::of_candidate(token.expose()),
        role,
    };
    let executed = state
        .store
        .execute(Aggregate::Admin(admin_id), &ctx.meta(), AdminState::apply, |s| {
            decide_admin(s, admin_id, command.clone())
        })
        .await?;
    state.settle(executed.seq).await;
    let admin = executed.state.ok_or_else(|| ApiError::not_found("the calling admin no longer exists"))?;
    let info = admin
        .tokens
        .iter()
        .find(|t| t.token_id == token_id)
        .map(token_view)
        .ok_or_else(|| ApiError::internal(&"token missing after issue"))?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(IssuedApiToken { info, token: Some(token.expose().to_owned()) }))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(post, path = "/v1/api-tokens/{token_id}/revoke", tag = "auth", params(("token_id" = String, Path, pattern = r"^tok_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = ApiToken), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
) -> ApiResult<web::Json<ApiToken>> {
    let admin_id = ctx.admin()?.admin_id;
    let token_id: ApiTokenId = parse_id("token_id", &path)?;
    let executed = state
        .store
        .execute(Aggregate::Admin(admin_id), &ctx.meta(), AdminState::apply, |s| {
            decide_admin(s, admin_id, AdminCommand::RevokeToken(token_id))
        })
        .await?;
    state.settle(executed.seq).await;
    let admin = executed.state.ok_or_else(|| ApiError::not_found("the calling admin no longer exists"))?;
    let token = admin.tokens.iter().find(|t| t.token_id == token_id).map(token_view);
    token.map(web::Json).ok_or_else(|| ApiError::not_found(format!("no API token {token_id}")))
}

/// How a sign-in attempt ended, for the throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The credential was wrong (or the attempt was abandoned after it was checked).
    Failed,
    /// It was right.
    Succeeded,
    /// It was never checked (busy, or the API is halted).
    NotTried,
}

/// An attempt the throttle let go; settled when dropped, so an early return or a cancelled
/// request cannot leave it pending.
pub(crate) struct Attempt<'a> {
    pub(crate) throttle: &'a Throttle,
    pub(crate) name: &'a str,
    pub(crate) client: Option<std::net::IpAddr>,
    pub(crate) outcome: Outcome,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        match self.outcome {
            Outcome::Failed => self.throttle.failed(self.name, self.client),
            Outcome::Succeeded => self.throttle.succeeded(self.name, self.client),
            Outcome::NotTried => self.throttle.abandoned(self.client),
        }
    }
}
