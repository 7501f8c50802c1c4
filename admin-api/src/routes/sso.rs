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

use super::admins::{admin_view, session_cookie};
use super::AppState;
use crate::api::Session;
use crate::auth::Auth;
use crate::context::Ctx;
use crate::domain::{AdminCommand, AdminState};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorKind};
use crate::json::Json;
use crate::sso::{challenge_of, random_url_token, Oidc, Person, Refusal};
use crate::throttle::{Admission, Throttle};

/// The cookie binding a sign-in's `state` to the browser that started it (over HTTPS with the
/// `__Host-` prefix, so no sibling domain or plain-HTTP page can plant it).
fn state_cookie(req: &HttpRequest) -> &'static str {
    if https(req) {
        "__Host-ccp_sso_state"
    } else {
        "ccp_sso_state"
    }
}

fn https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}
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
    /// With `cli_port`: a random value `ccpctl` expects back on its listener (it ignores any
    /// other request).
    #[param(pattern = "^[A-Za-z0-9_-]{16,64}$")]
    pub cli_state: Option<String>,
}

/// A sign-in that ends at `ccpctl`'s loopback listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CliFlow {
    port: u16,
    challenge: String,
    state: String,
}

impl CliFlow {
    /// The listener's URL with `query` and the state it expects.
    fn url(&self, query: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        q.append_pair("state", &self.state);
        format!("http://127.0.0.1:{}/callback?{}", self.port, q.finish())
    }
}

/// A started sign-in, until its callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    nonce: String,
    verifier: String,
    return_to: String,
    cli: Option<CliFlow>,
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
    let token_like = |v: &str, min: usize, max: usize| {
        (min..=max).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let cli = match (q.cli_port, q.cli_challenge, q.cli_state) {
        (None, None, None) => None,
        (Some(port), Some(challenge), Some(state)) => {
            if port < 1024 {
                return Err(ApiError::invalid("cli_port", "must be between 1024 and 65535"));
            }
            if !token_like(&challenge, 43, 43) {
                return Err(ApiError::invalid(
                    "cli_challenge",
                    "must be the base64url SHA-256 of a verifier (43 characters)",
                ));
            }
            if !token_like(&state, 16, 64) {
                return Err(ApiError::invalid("cli_state", "must be 16–64 characters of A-Z a-z 0-9 - _"));
            }
            Some(CliFlow { port, challenge, state })
        }
        _ => return Err(ApiError::invalid("cli_port", "`cli_port`, `cli_challenge` and `cli_state` go together")),
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
    let cookie = Cookie::build(state_cookie(&req), authorization.state)
        .secure(https(&req))
        .http_only(true)
        // Lax: the provider's redirect back is a top-level navigation from another site.
        .same_site(SameSite::Lax)
        .path("/")
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
    // Settled as a failure or success below; anything else (an error answer) abandons it.
    let mut attempt = Attempt { throttle: &sso.throttle, client: ctx.source, settled: false };
    // The state must be this browser's before it is taken (so nobody else can spend it).
    let state_param = param("state").filter(|s| !s.is_empty() && s.len() <= 128);
    let browser_ok = req.cookie(state_cookie(&req)).is_some_and(|c| Some(c.value()) == state_param);
    let taken = match state_param {
        Some(s) if browser_ok => take(pending, &key("s", s, &auth)).await?,
        _ => None,
    };
    let Some(started) = taken.and_then(|bytes| serde_json::from_slice::<Pending>(&bytes).ok()) else {
        return Ok(refuse(&mut attempt, None, "-", Refusal::WrongState));
    };
    let cli = started.cli.clone();
    if Utc::now() - started.started_at >= chrono::Duration::seconds(SIGN_IN_SECS) {
        return Ok(refuse(&mut attempt, cli, "-", Refusal::WrongState));
    }
    if let Some(error) = param("error") {
        let detail = param("error_description").unwrap_or("");
        let text: String = format!("{error} {detail}").chars().filter(|c| !c.is_control()).take(200).collect();
        return Ok(refuse(&mut attempt, cli, "-", Refusal::ProviderError(text.trim().to_owned())));
    }
    let Some(code) = param("code").filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Ok(refuse(&mut attempt, cli, "-", Refusal::ProviderError("no code in the answer".into())));
    };
    let person = match oidc.complete(code, &started.verifier, &started.nonce).await {
        Err(unavailable) => {
            tracing::warn!(error = %unavailable, "single sign-on: the identity provider cannot be used");
            return Ok(page(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                &format!("Single sign-on is unavailable: {unavailable}. Try again shortly."),
            ));
        }
        Ok(Err(refusal)) => return Ok(refuse(&mut attempt, cli, "-", refusal)),
        Ok(Ok(person)) => person,
    };
    let admin = match admit(&state, &ctx, oidc, &person).await? {
        Ok(admin) => admin,
        Err(refusal) => return Ok(refuse(&mut attempt, cli, &person.username, refusal)),
    };
    attempt.settled = true;
    sso.throttle.succeeded("-", ctx.source);
    let mut meta = ctx.meta();
    meta.actor = Actor::Admin { admin_id: admin.admin_id, username: admin.username.clone() };
    let login =
        AdminLoginSucceeded { admin_id: admin.admin_id, username: admin.username.clone(), method: LoginMethod::Sso };
    state.store.record(Event::AdminLoginSucceeded(login), &meta).await?;
    tracing::info!(admin = %admin.username, role = admin.role.as_str(), "single sign-on: signed in");
    let mut gone = Cookie::build(state_cookie(&req), "").path("/").finish();
    gone.make_removal();
    if let Some(flow) = cli {
        let code = random_url_token().map_err(|e| ApiError::internal(&e))?;
        let handoff = Handoff {
            admin_id: admin.admin_id,
            username: admin.username.clone(),
            challenge: flow.challenge.clone(),
            at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&handoff).map_err(|e| ApiError::internal(&e))?;
        pending
            .put(key("h", &code, &auth), bytes.into())
            .await
            .map_err(|e| ApiError::unavailable("the sign-in store", &e))?;
        // Not a redirect: a link the person follows only if they started `ccpctl` themselves (a
        // sign-in started from someone else's link would otherwise hand their session to
        // whatever listens on that port).
        let mut answer = confirm_page(&admin.username, &flow.url(&[("code", &code)]));
        answer.add_cookie(&gone).map_err(|e| ApiError::internal(&e))?;
        return Ok(answer);
    }
    let (token, _) = auth.open_session(admin.admin_id, &admin.username).await?;
    Ok(HttpResponse::Found()
        .cookie(gone)
        .cookie(session_cookie(&req, &auth, &token))
        .insert_header(("location", started.return_to))
        .insert_header(("cache-control", "no-store"))
        .finish())
}

/// A callback's claim on the sign-in throttle: abandoned when dropped unsettled.
struct Attempt<'a> {
    throttle: &'a Throttle,
    client: Option<std::net::IpAddr>,
    settled: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.abandoned(self.client);
        }
    }
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

/// The admin a vouched-for person signs in as: the one linked to them (issuer + subject); the
/// first time, a new one (just in time) — or, only with `admin.sso.link_by_username`, the
/// unlinked admin of their username. Their role follows the mapping at every sign-in; an admin
/// linked to them is disabled when it grants nothing any more. Nothing is ever done to an admin
/// that is not linked to this person.
async fn admit(state: &AppState, ctx: &Ctx, oidc: &Oidc, person: &Person) -> ApiResult<Result<AdminState, Refusal>> {
    let settings = oidc.settings();
    if !person.role_claim_present {
        // Not "no role": nobody is disabled because the provider stopped sending the claim.
        return Ok(Err(Refusal::NoRoleClaim(settings.role_claim.clone())));
    }
    let role = settings.roles.role_for(person.role_values.iter().map(String::as_str));
    let mut meta = ctx.meta();
    meta.actor = Actor::System { component: "sso".into() };
    let (linked, same_name) = {
        let model = state.view.read();
        (model.admin_by_sso(&person.issuer, &person.subject).cloned(), model.admin_by_name(&person.username).cloned())
    };
    let Some(role) = role else {
        if let Some(admin) = linked.filter(|a| !a.disabled) {
            let reason = Some("single sign-on no longer grants a role".to_owned());
            let disable = AdminCommand::Disable { reason, now: Utc::now() };
            super::accounts::execute_as(state, &meta, admin.admin_id, disable).await?;
            tracing::warn!(admin = %admin.username, "single sign-on: no role granted any more; admin disabled");
        }
        return Ok(Err(Refusal::NoRole(person.username.clone())));
    };
    let admin = match (linked, same_name) {
        (Some(admin), _) if admin.disabled => return Ok(Err(Refusal::Disabled(admin.username))),
        (Some(admin), _) => admin,
        (None, Some(admin)) => {
            let verified = settings.username_claim != "email" || person.email_verified == Some(true);
            if !settings.link_by_username || !verified || admin.sso.is_some() {
                return Ok(Err(Refusal::UsernameTaken(admin.username)));
            }
            if admin.disabled {
                return Ok(Err(Refusal::Disabled(admin.username)));
            }
            let link = AdminCommand::LinkSso { issuer: person.issuer.clone(), subject: person.subject.clone() };
            let admin = super::accounts::execute_as(state, &meta, admin.admin_id, link).await?;
            tracing::warn!(admin = %admin.username, "single sign-on: linked to the existing admin of that username");
            admin
        }
        (None, None) => {
            if super::check_username("username", &person.username).is_err() {
                return Ok(Err(Refusal::NoUsername));
            }
            // Nobody knows this password: the admin signs in through the provider (another
            // admin may set one later).
            let password = ccp_schemas::secrets::random_token("").map_err(|e| ApiError::internal(&e))?;
            let password_hash = crate::auth::hash_password(password).await?;
            let create = AdminCommand::CreateLinked {
                username: person.username.clone(),
                password_hash,
                role,
                issuer: person.issuer.clone(),
                subject: person.subject.clone(),
            };
            let admin = super::accounts::execute_as(state, &meta, AdminId::new(), create).await?;
            tracing::info!(admin = %admin.username, role = role.as_str(), "single sign-on: admin created just in time");
            admin
        }
    };
    if admin.role == role {
        return Ok(Ok(admin));
    }
    Ok(Ok(super::accounts::execute_as(state, &meta, admin.admin_id, AdminCommand::SetRole(role)).await?))
}

/// Counts and logs a refusal and answers it: a page for the browser, or for `ccpctl` a redirect
/// to its listener carrying the cause (nothing secret).
fn refuse(attempt: &mut Attempt<'_>, cli: Option<CliFlow>, name: &str, refusal: Refusal) -> HttpResponse {
    attempt.settled = true;
    attempt.throttle.failed_because(name, attempt.client, refusal.code());
    let message = refusal.message();
    tracing::warn!(cause = refusal.code(), name, client = ?attempt.client, "single sign-on refused: {message}");
    if let Some(flow) = cli {
        let url = flow.url(&[("error", refusal.code()), ("error_description", &message)]);
        return HttpResponse::Found().insert_header(("location", url)).finish();
    }
    let status = match refusal {
        Refusal::WrongState | Refusal::Malformed(_) => actix_web::http::StatusCode::BAD_REQUEST,
        _ => actix_web::http::StatusCode::FORBIDDEN,
    };
    page(status, &format!("Single sign-on refused: {message}. ({})", refusal.code()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The page asking to hand the session to `ccpctl` on this computer.
fn confirm_page(username: &str, url: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header(("cache-control", "no-store")).body(
        format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in ccpctl · ClaudeCodeProxy</title>\
         </head><body><main><h1>ClaudeCodeProxy</h1><p id=\"sso-message\">Sign in <code>ccpctl</code> on this computer \
         as {}? Continue only if you have just run <code>ccpctl login --sso</code> yourself.</p>\
         <p><a id=\"sso-continue\" href=\"{}\">Continue</a></p></main></body></html>",
        escape(username),
        escape(url)
    ),
    )
}

/// A minimal page (no script) with `message` and a way back.
fn page(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    let escaped = escape(message);
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
