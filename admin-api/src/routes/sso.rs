//! Single sign-on for admins (OpenID Connect, authorization code + PKCE): the dashboard's
//! redirect flow and `ccpctl login --sso`.
//!
//! 1. `GET /v1/auth/sso/start` remembers a fresh `state`, `nonce` and PKCE verifier (in the
//!    `<prefix>_admin_sso` bucket, ten minutes, so any replica can finish the sign-in), binds the
//!    `state` to the browser with a cookie, and sends the browser to the provider.
//! 2. `GET /v1/auth/sso/callback` takes the `state` back once (a second use finds nothing),
//!    checks it is this browser's, exchanges the code and checks the ID token
//!    ([`crate::sso`]), maps the role claim to a role, creates the admin the first time (just in
//!    time) or updates their role, disables them when the mapping grants nothing any more, and
//!    opens a session: the dashboard's cookie, or for `ccpctl` a one-time code sent to its
//!    loopback listener.
//! 3. `POST /v1/auth/sso/token`: `ccpctl` trades that code and the verifier whose challenge it
//!    sent at the start for a session token.
//!
//! Every refusal answers with its cause in words, is logged, and is counted by cause in the
//! sign-in failure records of the security stream (kind `sso`; see [`crate::throttle`]), which
//! also slows a client that keeps failing.

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use async_nats::jetstream::kv;
use ccp_schemas::events::{AdminLoginSucceeded, Event, LoginMethod};
use ccp_schemas::ids::AdminId;
use ccp_schemas::Actor;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admins::{admin_view, create_admin_account, session_cookie};
use super::AppState;
use crate::api::Session;
use crate::auth::Auth;
use crate::context::Ctx;
use crate::domain::{AdminCommand, AdminState};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorKind};
use crate::json::Json;
use crate::sso::{challenge_of, random_url_token, Oidc, Person, Refusal};
use crate::throttle::{Admission, Throttle};

/// The cookie binding a sign-in's `state` to the browser that started it.
pub const STATE_COOKIE: &str = "ccp_sso_state";
/// How long a started sign-in may take.
pub const SIGN_IN_SECS: i64 = 600;
/// How long `ccpctl` has to trade its one-time code.
const HANDOFF_SECS: i64 = 120;

/// Single sign-on's parts (present even when it is off, so the routes can say so).
pub struct SsoState {
    /// The relying party (`None`: single sign-on is off).
    pub oidc: Option<Oidc>,
    /// Started sign-ins and `ccpctl` hand-offs, by the hash of their secret.
    pub pending: Option<kv::Store>,
    /// Refusals slow the client and are counted.
    pub throttle: Arc<Throttle>,
}

/// Mounts the unauthenticated sign-in routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/methods", web::get().to(methods))
        .route("/auth/sso/start", web::get().to(start))
        .route("/auth/sso/callback", web::get().to(callback))
        .route("/auth/sso/token", web::post().to(token));
}

/// How admins can sign in here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthMethods {
    /// Username and password (`POST /v1/auth/login`).
    pub password: bool,
    /// Single sign-on (`GET /v1/auth/sso/start`).
    pub sso: bool,
}

/// How admins can sign in (for the dashboard's login page; no authentication).
#[utoipa::path(get, path = "/v1/auth/methods", tag = "auth", responses((status = 200, body = AuthMethods)))]
pub async fn methods(state: web::Data<AppState>) -> web::Json<AuthMethods> {
    let sso = &state.settings.admin.sso;
    web::Json(AuthMethods { password: sso.password_login, sso: sso.enabled() })
}

/// Query of `GET /v1/auth/sso/start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Where the dashboard continues after signing in: a path on this server (default `/`).
    #[param(pattern = "^/[^/\\\\].{0,199}$|^/$")]
    pub return_to: Option<String>,
    /// `ccpctl`'s loopback port: the sign-in ends at `http://127.0.0.1:<port>/callback`.
    #[param(minimum = 1024, maximum = 65535)]
    pub cli_port: Option<u16>,
    /// With `cli_port`: base64url SHA-256 of the verifier `ccpctl` will present.
    #[param(pattern = "^[A-Za-z0-9_-]{43}$")]
    pub cli_challenge: Option<String>,
}

/// A started sign-in, until its callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    nonce: String,
    verifier: String,
    return_to: String,
    cli: Option<(u16, String)>,
    started_at: DateTime<Utc>,
}

/// A signed-in `ccpctl`, until it trades its code.
#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    admin_id: AdminId,
    username: String,
    challenge: String,
    at: DateTime<Utc>,
}

fn off() -> ApiError {
    ApiError::not_found("single sign-on (not configured here: admin.sso.issuer)")
}

fn key(kind: &str, secret: &str, auth: &Auth) -> String {
    format!("{kind}{}", auth.pepper.hash(secret).to_hex())
}

/// Send the browser to the identity provider (no authentication).
#[utoipa::path(get, path = "/v1/auth/sso/start", tag = "auth", params(StartQuery),
    responses((status = 302, description = "to the identity provider"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn start(
    sso: web::Data<SsoState>,
    auth: web::Data<Auth>,
    req: HttpRequest,
    query: crate::query::Query<StartQuery>,
) -> ApiResult<HttpResponse> {
    let (Some(oidc), Some(pending)) = (&sso.oidc, &sso.pending) else { return Err(off()) };
    let q = query.0;
    let return_to = q.return_to.unwrap_or_else(|| "/".into());
    let local_path = return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.contains('\\')
        && return_to.chars().count() <= 200
        && !return_to.chars().any(char::is_control);
    if !local_path {
        return Err(ApiError::invalid("return_to", "must be a path on this server, e.g. `/` or `/#/users`"));
    }
    let cli = match (q.cli_port, q.cli_challenge) {
        (None, None) => None,
        (Some(port), Some(challenge)) => {
            if port < 1024 {
                return Err(ApiError::invalid("cli_port", "must be between 1024 and 65535"));
            }
            if challenge.len() != 43 || !challenge.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ApiError::invalid(
                    "cli_challenge",
                    "must be the base64url SHA-256 of a verifier (43 characters)",
                ));
            }
            Some((port, challenge))
        }
        _ => return Err(ApiError::invalid("cli_port", "`cli_port` and `cli_challenge` go together")),
    };
    let authorization = oidc.authorize().await.map_err(|e| ApiError::unavailable("single sign-on", &e))?;
    let record = Pending {
        nonce: authorization.nonce,
        verifier: authorization.verifier,
        return_to,
        cli,
        started_at: Utc::now(),
    };
    let bytes = serde_json::to_vec(&record).map_err(|e| ApiError::internal(&e))?;
    pending
        .put(key("s", &authorization.state, &auth), bytes.into())
        .await
        .map_err(|e| ApiError::unavailable("the sign-in store", &e))?;
    let cookie = Cookie::build(STATE_COOKIE, authorization.state)
        .secure(req.connection_info().scheme() == "https")
        .http_only(true)
        // Lax: the provider's redirect back is a top-level navigation from another site.
        .same_site(SameSite::Lax)
        .path("/v1/auth/sso")
        .max_age(actix_web::cookie::time::Duration::seconds(SIGN_IN_SECS))
        .finish();
    Ok(HttpResponse::Found()
        .cookie(cookie)
        .insert_header(("location", authorization.url))
        .insert_header(("cache-control", "no-store"))
        .finish())
}

/// Where the identity provider sends the browser back (no authentication; `code` and `state`,
/// or `error`).
#[utoipa::path(get, path = "/v1/auth/sso/callback", tag = "auth",
    params(("code" = Option<String>, Query, description = "the authorization code"),
           ("state" = Option<String>, Query, description = "the state sent at the start"),
           ("error" = Option<String>, Query, description = "the provider's error, instead of a code")),
    responses((status = 302, description = "signed in: to the dashboard (or to ccpctl)"),
              (status = 403, description = "refused: a page saying why"), (status = 404, body = ErrorBody),
              (status = 429, description = "too many refusals from this client"),
              (status = 503, description = "the identity provider cannot be reached")))]
pub async fn callback(
    state: web::Data<AppState>,
    sso: web::Data<SsoState>,
    auth: web::Data<Auth>,
    ctx: Ctx,
    req: HttpRequest,
) -> ApiResult<HttpResponse> {
    let (Some(oidc), Some(pending)) = (&sso.oidc, &sso.pending) else { return Err(off()) };
    // Providers add parameters (`iss`, `session_state`): read only the ones used.
    let params: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if let Admission::Refused(wait) = sso.throttle.begin("-", ctx.source) {
        return Ok(page(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many refused sign-ins from this address; try again in {wait} s."),
        ));
    }
    // The started sign-in, taken once.
    let taken = match param("state") {
        Some(s) if !s.is_empty() && s.len() <= 128 => take(pending, &key("s", s, &auth)).await?,
        _ => None,
    };
    let Some(started) = taken.and_then(|bytes| serde_json::from_slice::<Pending>(&bytes).ok()) else {
        return Ok(refuse(&sso, &ctx, None, "-", Refusal::WrongState));
    };
    let cli = started.cli.clone();
    let browser_ok = req.cookie(STATE_COOKIE).is_some_and(|c| Some(c.value()) == param("state"));
    let fresh = Utc::now() - started.started_at < chrono::Duration::seconds(SIGN_IN_SECS);
    if !browser_ok || !fresh {
        return Ok(refuse(&sso, &ctx, cli, "-", Refusal::WrongState));
    }
    if let Some(error) = param("error") {
        let detail = param("error_description").unwrap_or("");
        let text: String = format!("{error} {detail}").chars().filter(|c| !c.is_control()).take(200).collect();
        return Ok(refuse(&sso, &ctx, cli, "-", Refusal::ProviderError(text.trim().to_owned())));
    }
    let Some(code) = param("code").filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Ok(refuse(&sso, &ctx, cli, "-", Refusal::ProviderError("no code in the answer".into())));
    };
    let person = match oidc.complete(code, &started.verifier, &started.nonce).await {
        Err(unavailable) => {
            sso.throttle.abandoned(ctx.source);
            tracing::warn!(error = %unavailable, "single sign-on: the identity provider cannot be used");
            return Ok(page(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                &format!("Single sign-on is unavailable: {unavailable}. Try again shortly."),
            ));
        }
        Ok(Err(refusal)) => return Ok(refuse(&sso, &ctx, cli, "-", refusal)),
        Ok(Ok(person)) => person,
    };
    let admin = match admit(&state, &ctx, oidc, &person).await? {
        Ok(admin) => admin,
        Err(refusal) => return Ok(refuse(&sso, &ctx, cli, &person.username, refusal)),
    };
    sso.throttle.succeeded("-", ctx.source);
    let mut meta = ctx.meta();
    meta.actor = Actor::Admin { admin_id: admin.admin_id, username: admin.username.clone() };
    let login =
        AdminLoginSucceeded { admin_id: admin.admin_id, username: admin.username.clone(), method: LoginMethod::Sso };
    state.store.record(Event::AdminLoginSucceeded(login), &meta).await?;
    tracing::info!(admin = %admin.username, role = admin.role.as_str(), "single sign-on: signed in");
    let mut gone = Cookie::build(STATE_COOKIE, "").path("/v1/auth/sso").finish();
    gone.make_removal();
    if let Some((port, challenge)) = cli {
        let code = random_url_token().map_err(|e| ApiError::internal(&e))?;
        let handoff = Handoff { admin_id: admin.admin_id, username: admin.username.clone(), challenge, at: Utc::now() };
        let bytes = serde_json::to_vec(&handoff).map_err(|e| ApiError::internal(&e))?;
        pending
            .put(key("h", &code, &auth), bytes.into())
            .await
            .map_err(|e| ApiError::unavailable("the sign-in store", &e))?;
        return Ok(HttpResponse::Found()
            .cookie(gone)
            .insert_header(("location", format!("http://127.0.0.1:{port}/callback?code={code}")))
            .insert_header(("cache-control", "no-store"))
            .finish());
    }
    let (token, _) = auth.open_session(admin.admin_id, &admin.username).await?;
    Ok(HttpResponse::Found()
        .cookie(gone)
        .cookie(session_cookie(&req, &auth, &token))
        .insert_header(("location", started.return_to))
        .insert_header(("cache-control", "no-store"))
        .finish())
}

/// `POST /v1/auth/sso/token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoToken {
    /// The one-time code the sign-in sent to `ccpctl`'s loopback listener.
    pub code: String,
    /// The verifier whose challenge `ccpctl` sent at the start.
    pub verifier: String,
}

/// Trade `ccpctl`'s one-time code for a session (no authentication).
#[utoipa::path(post, path = "/v1/auth/sso/token", tag = "auth", request_body = SsoToken,
    responses((status = 200, body = Session), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn token(
    state: web::Data<AppState>,
    sso: web::Data<SsoState>,
    auth: web::Data<Auth>,
    body: Json<SsoToken>,
) -> ApiResult<HttpResponse> {
    let Some(pending) = &sso.pending else { return Err(off()) };
    let SsoToken { code, verifier } = body.0;
    if code.is_empty() || code.len() > 128 {
        return Err(ApiError::invalid("code", "must be the code ccpctl received"));
    }
    let refused = || ApiError::unauthenticated("the sign-in code is unknown, expired or already used; sign in again");
    let bytes = take(pending, &key("h", &code, &auth)).await?.ok_or_else(refused)?;
    let handoff: Handoff = serde_json::from_slice(&bytes).map_err(|_| refused())?;
    if Utc::now() - handoff.at > chrono::Duration::seconds(HANDOFF_SECS) {
        return Err(refused());
    }
    if challenge_of(&verifier) != handoff.challenge {
        return Err(ApiError::unauthenticated("the verifier does not match the sign-in's challenge"));
    }
    let admin = state.view.read().admins.get(&handoff.admin_id).cloned().ok_or_else(refused)?;
    if admin.disabled {
        return Err(ApiError::new(ErrorKind::Forbidden, "this admin is disabled; ask another admin to enable it"));
    }
    let (token, record) = auth.open_session(admin.admin_id, &handoff.username).await?;
    Ok(HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(Session {
        token: token.expose().to_owned(),
        csrf_token: record.csrf_token,
        expires_at: record.expires_at,
        admin: admin_view(&admin),
    }))
}

/// Gets and deletes `key` (only one caller gets it: the delete expects the revision read).
async fn take(pending: &kv::Store, key: &str) -> ApiResult<Option<bytes::Bytes>> {
    let entry = pending.entry(key).await.map_err(|e| ApiError::unavailable("the sign-in store", &e))?;
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else { return Ok(None) };
    match pending.purge_expect_revision(key, Some(entry.revision)).await {
        Ok(()) => Ok(Some(entry.value)),
        // Someone else took it first.
        Err(_) => Ok(None),
    }
}

/// The admin a vouched-for person signs in as: created the first time, their role kept in step
/// with the mapping, disabled when it grants nothing.
async fn admit(state: &AppState, ctx: &Ctx, oidc: &Oidc, person: &Person) -> ApiResult<Result<AdminState, Refusal>> {
    let settings = oidc.settings();
    let role = settings.roles.role_for(person.role_values.iter().map(String::as_str));
    let mut meta = ctx.meta();
    meta.actor = Actor::System { component: "sso".into() };
    let existing = {
        let model = state.view.read();
        model.admin_by_sso(&person.issuer, &person.subject).or_else(|| model.admin_by_name(&person.username)).cloned()
    };
    let Some(role) = role else {
        if let Some(admin) = existing.filter(|a| !a.disabled) {
            let reason = Some("single sign-on no longer grants a role".to_owned());
            super::accounts::execute_as(
                state,
                &meta,
                admin.admin_id,
                AdminCommand::Disable { reason, now: Utc::now() },
            )
            .await?;
            tracing::warn!(admin = %admin.username, "single sign-on: no role granted any more; admin disabled");
        }
        return Ok(Err(Refusal::NoRole(person.username.clone())));
    };
    let admin = match existing {
        Some(admin) => {
            if admin.sso.as_ref().is_some_and(|(i, s)| *i != person.issuer || *s != person.subject) {
                return Ok(Err(Refusal::Disabled(format!(
                    "{} (bound to another person at the identity provider)",
                    admin.username
                ))));
            }
            if admin.disabled {
                return Ok(Err(Refusal::Disabled(admin.username)));
            }
            admin
        }
        None => {
            if super::check_username("username", &person.username).is_err() {
                return Ok(Err(Refusal::NoUsername));
            }
            // Nobody knows this password: the admin signs in through the provider (another
            // admin may set one later).
            let password = random_url_token().map_err(|e| ApiError::internal(&e))?;
            let password = ccp_schemas::secrets::SecretString::new(password);
            let admin =
                create_admin_account(state, &meta, AdminId::new(), person.username.clone(), password, role).await?;
            tracing::info!(admin = %admin.username, role = role.as_str(), "single sign-on: admin created just in time");
            admin
        }
    };
    let link = AdminCommand::LinkSso { issuer: person.issuer.clone(), subject: person.subject.clone() };
    let mut admin = super::accounts::execute_as(state, &meta, admin.admin_id, link).await?;
    if admin.role != role {
        admin = super::accounts::execute_as(state, &meta, admin.admin_id, AdminCommand::SetRole(role)).await?;
    }
    Ok(Ok(admin))
}

/// Counts and logs a refusal and answers it: a page for the browser, or for `ccpctl` a redirect
/// to its listener carrying the cause.
fn refuse(sso: &SsoState, ctx: &Ctx, cli: Option<(u16, String)>, name: &str, refusal: Refusal) -> HttpResponse {
    sso.throttle.failed_because(name, ctx.source, refusal.code());
    let message = refusal.message();
    tracing::warn!(cause = refusal.code(), name, client = ?ctx.source, "single sign-on refused: {message}");
    if let Some((port, _)) = cli {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("error", refusal.code())
            .append_pair("error_description", &message)
            .finish();
        return HttpResponse::Found()
            .insert_header(("location", format!("http://127.0.0.1:{port}/callback?{query}")))
            .finish();
    }
    let status = match refusal {
        Refusal::WrongState | Refusal::Malformed(_) => actix_web::http::StatusCode::BAD_REQUEST,
        _ => actix_web::http::StatusCode::FORBIDDEN,
    };
    page(status, &format!("Single sign-on refused: {message}. ({})", refusal.code()))
}

/// A minimal page (no script) with `message` and a way back.
fn page(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    let escaped = message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in · ClaudeCodeProxy</title>\
             </head><body><main><h1>ClaudeCodeProxy</h1><p id=\"sso-message\">{escaped}</p>\
             <p><a href=\"/\">Back to the dashboard</a></p></main></body></html>"
        ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_page_escapes_what_it_quotes() {
        let page = super::page(actix_web::http::StatusCode::FORBIDDEN, "<script>x</script> & \"y\"");
        let body = actix_web::body::MessageBody::try_into_bytes(page.into_body()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("&lt;script&gt;x&lt;/script&gt; &amp; &quot;y&quot;") && !text.contains("<script>"));
    }
}
