//! The REST handlers, grouped by resource, and the input checks they share.

pub mod accounts;
pub mod admins;
pub mod keys;
pub mod models;
pub mod ops;
pub mod queries;
pub mod self_service;
pub mod sign_ins;
pub mod sso;
pub mod statements;
pub mod teams;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::secrets::envelope::ConfiguredMasterKey;

use crate::error::{ApiError, ApiResult};
use crate::store::EventStore;
use crate::view::View;

/// What handlers share.
pub struct AppState {
    /// Appends commands' events.
    pub store: EventStore,
    /// The read model.
    pub view: Arc<View>,
    /// Hashes access keys and API tokens.
    pub pepper: KeyPepper,
    /// Seals Bedrock API keys (`None`: not configured, registering them is refused).
    pub master: Option<ConfiguredMasterKey>,
    /// Checks Bedrock API keys' failover readiness.
    pub checker: Arc<crate::readiness::Checker>,
    /// The proxy URL developers use.
    pub public_proxy_url: String,
    /// The usage analytics (the projector's tables).
    pub clickhouse: clickhouse::Client,
    /// The whole configuration (budget time zone, pricing, …).
    pub settings: ccp_runtime::config::Settings,
}

/// Largest `offset` of a paged list.
pub const MAX_OFFSET: usize = 1_000_000;

/// Longest a command waits for the read model to show its events.
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

impl AppState {
    /// Waits until the read model shows `seq`; logs (but still answers) if it is slow.
    pub async fn settle(&self, seq: u64) {
        if !self.view.wait_for(seq, READ_YOUR_WRITES).await {
            tracing::warn!(seq, applied = self.view.applied(), "the read model is behind the log");
        }
    }
}

/// A JSON answer carrying the aggregate version as `ETag` (send it back as `If-Match`).
pub fn versioned<T: serde::Serialize>(
    mut builder: actix_web::HttpResponseBuilder,
    body: &T,
    version: u64,
) -> actix_web::HttpResponse {
    builder.insert_header(("etag", format!("\"{version}\""))).json(body)
}

/// Mounts every authenticated resource route on a scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    users::configure(cfg);
    teams::configure(cfg);
    keys::configure(cfg);
    admins::configure(cfg);
    accounts::configure(cfg);
    queries::configure(cfg);
    statements::configure(cfg);
    ops::configure(cfg);
    models::configure(cfg);
    sign_ins::configure(cfg);
}

fn is_control(c: char) -> bool {
    c.is_control()
}

/// A display name: 1–64 characters, no control characters, not starting or ending with
/// whitespace (the OpenAPI pattern says the same).
pub fn check_name(field: &str, value: &str) -> ApiResult<String> {
    let n = value.chars().count();
    if n == 0 || n > 64 {
        return Err(ApiError::unprocessable(field, "must be 1–64 characters"));
    }
    if value.chars().any(is_control) {
        return Err(ApiError::unprocessable(field, "must not contain control characters"));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(ApiError::unprocessable(field, "must not start or end with whitespace"));
    }
    Ok(value.to_owned())
}

/// Free text: at most `max` characters, no control characters other than newlines.
pub fn check_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    if value.chars().count() > max {
        return Err(ApiError::unprocessable(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(|c| is_control(c) && c != '\n') {
        return Err(ApiError::unprocessable(field, "must not contain control characters other than newlines"));
    }
    Ok(value.trim().to_owned())
}

/// An email address (`local@domain.tld`, at most 254 characters) or `""` for none.
pub fn check_email(field: &str, value: &str) -> ApiResult<String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let plain = |c: char| c != '@' && !c.is_whitespace() && !is_control(c);
    let valid = value.chars().count() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.chars().all(plain)
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty() && label.chars().all(plain))
        });
    if !valid {
        return Err(ApiError::unprocessable(field, "must be an email address like dana@example.com"));
    }
    Ok(value.to_owned())
}

/// An identifier-like value (AWS region, Bedrock model id): 1–128 of `[A-Za-z0-9.:_/-]`.
pub fn check_token(field: &str, value: &str) -> ApiResult<String> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(|c| c.is_ascii_alphanumeric() || ".:_/-".contains(c))
    {
        return Err(ApiError::unprocessable(field, "must be 1–128 characters of letters, digits and . : _ / -"));
    }
    Ok(value.to_owned())
}

/// A login name: like a display name, without any whitespace.
pub fn check_username(field: &str, value: &str) -> ApiResult<String> {
    let name = check_name(field, value)?;
    if name.chars().any(char::is_whitespace) {
        return Err(ApiError::unprocessable(field, "must not contain whitespace"));
    }
    Ok(name)
}

/// A path id of type `T` (`usr_…`, `key_…`), or 404 naming what was not found.
pub fn parse_id<T: std::str::FromStr>(field: &str, raw: &str) -> ApiResult<T> {
    raw.parse::<T>().map_err(|_| ApiError::invalid(field, format!("`{}` is not a valid {field}", truncate(raw))))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
