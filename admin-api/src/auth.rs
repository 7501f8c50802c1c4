//! Admin authentication: argon2id passwords, expiring sessions (a Bearer token for the API, the
//! same token in an HttpOnly cookie for the dashboard, with a CSRF token for unsafe methods),
//! long-lived API tokens stored hashed, and login throttling. Every route under `/v1` except
//! `POST /v1/auth/login` goes through [`require_auth`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest};
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use async_nats::jetstream::kv;
use ccp_schemas::events::PasswordHash;
use ccp_schemas::ids::AdminId;
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::secrets::{random_token, SecretString};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorKind};
use crate::view::View;

/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "ccps_";
/// Prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "ccpt_";
/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "ccp_session";
/// The header carrying the CSRF token with cookie sessions.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 12;

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A session token as `Authorization: Bearer`.
    Session,
    /// The dashboard's session cookie (unsafe methods need the CSRF token).
    Cookie,
    /// A long-lived API token.
    ApiToken,
}

/// The authenticated admin of a request (in its extensions).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The admin.
    pub admin_id: AdminId,
    /// Their username.
    pub username: String,
    /// A session (bearer or the dashboard's cookie) or an API token.
    pub method: AuthMethod,
    /// What this request may do: the admin's current role, and for an API token no more than
    /// the token's.
    pub role: ccp_schemas::events::AdminRole,
    /// The team the admin is scoped to (a team lead: [`crate::scope`] limits what they may
    /// call), resolved from the admin's current state like `role`; their API tokens too.
    pub team_scope: Option<ccp_schemas::ids::TeamId>,
    /// The session's CSRF token, for a request authenticated by the dashboard's cookie.
    pub csrf_token: Option<String>,
}

/// A session, stored in the sessions KV bucket under the hash of its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The admin.
    pub admin_id: AdminId,
    /// Their username.
    pub username: String,
    /// The CSRF token for cookie-authenticated unsafe requests.
    pub csrf_token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was opened (records from before this field: the epoch, so "sign out everywhere"
    /// ends them too).
    #[serde(default)]
    pub issued_at: DateTime<Utc>,
}

/// Password hashing with argon2id (the crate's default parameters: m=19456, t=2, p=1).
pub async fn hash_password(password: SecretString) -> Result<PasswordHash, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_salt()?).map_err(|e| ApiError::internal(&e))?;
        let phc = Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map_err(|e| ApiError::internal(&e))?
            .to_string();
        PasswordHash::new(phc).ok_or_else(|| ApiError::internal(&"argon2 produced a non-argon2id hash"))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}

fn random_salt() -> Result<[u8; 16], ApiError> {
    let token = random_token("").map_err(|e| ApiError::internal(&e))?;
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&token.expose().as_bytes()[..16]);
    Ok(salt)
}

/// Verifies a password against a hash (or against a dummy hash, to take the same time).
pub async fn verify_password(password: SecretString, hash: Option<PasswordHash>) -> bool {
    tokio::task::spawn_blocking(move || {
        let dummy = dummy_hash();
        let phc = hash.as_ref().map_or(dummy.as_str(), PasswordHash::as_str);
        let Ok(parsed) = argon2::PasswordHash::new(phc) else { return false };
        let ok = Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok();
        ok && hash.is_some()
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> String {
    "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlzYWx0ZHVtbXk$2Qj5b6n3c7N2C2fL0mJ8xj5CwqQ7bq1G2yQ3f0s6x4Y".to_owned()
}

/// Checks a new password's strength; the message names the rule.
pub fn check_password(field: &str, password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::unprocessable(field, format!("passwords have at least {MIN_PASSWORD_LEN} characters")));
    }
    if password.chars().count() > 256 {
        return Err(ApiError::unprocessable(field, "passwords have at most 256 characters"));
    }
    Ok(())
}

/// Checks a new password of `username` against the strength rules: `check_password`'s lengths,
/// at least 5 different characters, and not containing the username.
pub fn check_new_password(field: &str, password: &str, username: &str) -> Result<(), ApiError> {
    check_password(field, password)?;
    let distinct: std::collections::HashSet<char> = password.chars().collect();
    if distinct.len() < 5 {
        return Err(ApiError::unprocessable(field, "passwords have at least 5 different characters"));
    }
    if username.chars().count() >= 3 && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(ApiError::unprocessable(field, "a password must not contain the username"));
    }
    Ok(())
}

/// The bearer token of a request (`Authorization: Bearer <token>`, scheme case-insensitive).
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Everything authentication needs.
pub struct Auth {
    /// Sessions, by token hash; entries expire with the bucket's max age.
    pub sessions: kv::Store,
    /// Hashes tokens.
    pub pepper: KeyPepper,
    /// Session lifetime.
    pub ttl: Duration,
    /// Login throttling.
    pub throttle: std::sync::Arc<crate::throttle::Throttle>,
    /// The read model (admins and API tokens).
    pub view: Arc<View>,
    /// Password verifications running at once (argon2 takes ~19 MiB and a core each).
    pub verifications: tokio::sync::Semaphore,
}

/// Password verifications allowed at once per process.
pub const CONCURRENT_VERIFICATIONS: usize = 4;

impl Auth {
    /// Opens a session for an admin: the token (shown once) and its record.
    pub async fn open_session(
        &self,
        admin_id: AdminId,
        username: &str,
    ) -> Result<(SecretString, SessionRecord), ApiError> {
        let token = random_token(SESSION_PREFIX).map_err(|e| ApiError::internal(&e))?;
        let csrf = random_token("").map_err(|e| ApiError::internal(&e))?;
        let record = SessionRecord {
            admin_id,
            username: username.to_owned(),
            csrf_token: csrf.expose().to_owned(),
            expires_at: Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or_default(),
            issued_at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| ApiError::internal(&e))?;
        self.sessions
            .put(self.pepper.hash(token.expose()).to_hex(), bytes.into())
            .await
            .map_err(|e| ApiError::unavailable("the session store", &e))?;
        Ok((token, record))
    }

    /// Ends a session.
    pub async fn close_session(&self, token: &str) -> Result<(), ApiError> {
        self.sessions
            .purge(self.pepper.hash(token).to_hex())
            .await
            .map_err(|e| ApiError::unavailable("the session store", &e))
    }

    async fn session(&self, token: &str) -> Result<Option<SessionRecord>, ApiError> {
        let entry = self
            .sessions
            .get(self.pepper.hash(token).to_hex())
            .await
            .map_err(|e| ApiError::unavailable("the session store", &e))?;
        Ok(entry
            .and_then(|bytes| serde_json::from_slice::<SessionRecord>(&bytes).ok())
            .filter(|s| s.expires_at > Utc::now()))
    }

    /// The current role and team scope of a session's admin, if the session still counts: the
    /// admin exists, is not disabled and has not signed out everywhere since it was opened (read
    /// from the view at every request, so a change applies at once).
    fn role_of(
        &self,
        session: &SessionRecord,
    ) -> Result<(ccp_schemas::events::AdminRole, Option<ccp_schemas::ids::TeamId>), ApiError> {
        let model = self.view.read();
        let admin = model
            .admins
            .get(&session.admin_id)
            .ok_or_else(|| ApiError::unauthenticated("the session's admin no longer exists; log in again"))?;
        if admin.disabled {
            return Err(ApiError::unauthenticated("this admin is disabled; ask another admin"));
        }
        if admin.sessions_valid_after.is_some_and(|after| session.issued_at < after) {
            return Err(ApiError::unauthenticated("this session was ended (signed out everywhere); log in again"));
        }
        Ok((admin.role, admin.team_id))
    }

    /// Who a request is, from `Authorization: Bearer` or the session cookie (with CSRF check).
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Identity, ApiError> {
        if let Some(why) = self.view.halted() {
            // Fail closed: the event this API cannot read may disable an admin or revoke a token.
            return Err(ApiError::unavailable("the admin API (older than the event log; upgrade it)", &why));
        }
        if let Some(token) = bearer_token(req) {
            if token.starts_with(API_TOKEN_PREFIX) {
                let hash = self.pepper.hash(token);
                let model = self.view.read();
                let admin = model
                    .admin_by_token(&hash)
                    .ok_or_else(|| ApiError::unauthenticated("the API token is unknown or revoked; issue a new one"))?;
                let token_role = admin.tokens.iter().find(|t| !t.revoked && t.hash.ct_eq(&hash)).and_then(|t| t.role);
                return Ok(Identity {
                    admin_id: admin.admin_id,
                    username: admin.username.clone(),
                    method: AuthMethod::ApiToken,
                    role: token_role.map_or(admin.role, |r| r.min(admin.role)),
                    team_scope: admin.team_id,
                    csrf_token: None,
                });
            }
            let session = self.session(token).await?.ok_or_else(expired)?;
            let (role, team_scope) = self.role_of(&session)?;
            return Ok(Identity {
                admin_id: session.admin_id,
                username: session.username,
                method: AuthMethod::Session,
                role,
                team_scope,
                csrf_token: None,
            });
        }
        if let Some(cookie) = req.cookie(SESSION_COOKIE) {
            let session = self.session(cookie.value()).await?.ok_or_else(expired)?;
            let safe = matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
            if !safe {
                let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
                let ok: bool = subtle_eq(sent.as_bytes(), session.csrf_token.as_bytes());
                if !ok {
                    return Err(ApiError::new(
                        ErrorKind::Forbidden,
                        format!("cookie-authenticated changes need the `{CSRF_HEADER}` header from the login response"),
                    ));
                }
            }
            let (role, team_scope) = self.role_of(&session)?;
            return Ok(Identity {
                admin_id: session.admin_id,
                username: session.username,
                method: AuthMethod::Cookie,
                role,
                team_scope,
                csrf_token: Some(session.csrf_token),
            });
        }
        Err(ApiError::unauthenticated(
            "authentication required: send `Authorization: Bearer <session or API token>` (POST /v1/auth/login)",
        ))
    }
}

fn expired() -> ApiError {
    ApiError::unauthenticated("the session is unknown or expired; log in again")
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: every request it wraps must authenticate; the [`Identity`] goes into the
/// request's extensions.
pub async fn require_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let Some(auth) = req.app_data::<actix_web::web::Data<Auth>>().cloned() else {
        return Ok(req.error_response(ApiError::internal(&"auth state missing")));
    };
    match auth.authenticate(req.request()).await {
        Ok(identity) => {
            // The one place roles are enforced ([`crate::roles`]). The route is matched on the
            // path as the router sees it (percent-encoded unreserved characters decoded: `/v1/%75sage`
            // is `/v1/usage`), not the raw one, which would match no pattern and escape the checks.
            let routed = req.match_info().as_str().to_owned();
            let pattern = req.resource_map().match_pattern(&routed);
            if let Err(e) = crate::roles::check(req.method().as_str(), pattern.as_deref(), identity.role) {
                return Ok(req.error_response(e));
            }
            // …and, for a team lead, what their team scope allows ([`crate::scope`]).
            if let Some(team_id) = identity.team_scope {
                let scoped = {
                    let model = auth.view.read();
                    let dir = &model.directory;
                    let team_name = dir.team(&team_id).map_or_else(|| team_id.to_string(), |t| t.name.clone());
                    let is_member =
                        |user_id| dir.user(&user_id).and_then(|u| dir.team_of(u)).is_some_and(|t| t.team_id == team_id);
                    let lead = crate::scope::Lead { team_id, team_name: &team_name, is_member: &is_member };
                    crate::scope::check(req.method().as_str(), pattern.as_deref(), &routed, req.query_string(), &lead)
                };
                if let Err(e) = scoped {
                    return Ok(req.error_response(e));
                }
            }
            req.extensions_mut().insert(identity);
            next.call(req).await.map(ServiceResponse::map_into_boxed_body)
        }
        // Answered here, inside the request-id scope, so the body carries the request id.
        Err(e) => Ok(req.error_response(e)),
    }
}
