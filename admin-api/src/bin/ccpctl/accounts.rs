//! Admin account lifecycle: `passwd`, `sign-out-everywhere`, and `admins password | disable |
//! enable | sign-out | sessions | tokens`. Passwords come from stdin or a no-echo prompt, never
//! from arguments.

use ccp_admin_api::api::{Admin, ApiToken, SessionInfo};
use serde_json::json;

use crate::auth::role_name;
use crate::client::{CliError, CliResult, Client};
use crate::input;
use crate::output::{self, Out};

/// The id of an admin given as `adm_…` or a username.
pub async fn admin_id(client: &Client, admin: String) -> CliResult<String> {
    if admin.starts_with("adm_") {
        return Ok(admin);
    }
    let admins: Vec<Admin> = client.get(&["v1", "admins"]).await?.parse()?;
    admins
        .into_iter()
        .find(|a| a.username == admin)
        .map(|a| a.admin_id)
        .ok_or_else(|| CliError::Usage(format!("no admin named `{admin}` (see `ccpctl admins list`)")))
}

fn describe(a: &Admin) -> String {
    let status = if a.disabled { "disabled" } else { "enabled" };
    format!("{} ({}, {}, {status})", a.username, a.admin_id, role_name(a.role))
}

async fn show_admin(answer: crate::client::Answer, what: &str, out: Out) -> CliResult<()> {
    if out.json {
        return out.document(&answer.body);
    }
    let admin: Admin = answer.parse()?;
    out.line(&format!("{what}: {}", describe(&admin)))
}

/// `passwd` → `PUT /v1/auth/password`.
pub async fn passwd(client: &Client, out: Out) -> CliResult<()> {
    let current = input::secret("Current password: ", "current password")?;
    let new = input::new_secret("New password: ", "new password")?;
    let body = json!({ "current_password": current, "new_password": new });
    let answer = client.put(&["v1", "auth", "password"], &body, None).await?;
    show_admin(answer, "password changed; every session ended, log in again", out).await
}

/// `sign-out-everywhere` → `POST /v1/auth/sign-out-everywhere`.
pub async fn sign_out_everywhere(client: &Client, out: Out) -> CliResult<()> {
    let answer = client.post(&["v1", "auth", "sign-out-everywhere"], None).await?;
    show_admin(answer, "every session ended (this one too; API tokens still work)", out).await
}

/// `admins password ADMIN` → `PUT /v1/admins/{id}/password`.
pub async fn reset_password(client: &Client, admin: String, out: Out) -> CliResult<()> {
    let admin_id = admin_id(client, admin).await?;
    let new = input::new_secret("New password for the admin: ", "new password")?;
    let answer = client.put(&["v1", "admins", &admin_id, "password"], &json!({ "new_password": new }), None).await?;
    show_admin(answer, "password set; their sessions ended", out).await
}

/// `admins disable ADMIN [--reason]` → `POST /v1/admins/{id}/disable`.
pub async fn disable(client: &Client, admin: String, reason: Option<String>, out: Out) -> CliResult<()> {
    let admin_id = admin_id(client, admin).await?;
    let answer = client.post(&["v1", "admins", &admin_id, "disable"], Some(&json!({ "reason": reason }))).await?;
    show_admin(answer, "disabled", out).await
}

/// `admins enable ADMIN` → `POST /v1/admins/{id}/enable`.
pub async fn enable(client: &Client, admin: String, out: Out) -> CliResult<()> {
    let admin_id = admin_id(client, admin).await?;
    let answer = client.post(&["v1", "admins", &admin_id, "enable"], None).await?;
    show_admin(answer, "enabled", out).await
}

/// `admins sign-out ADMIN` → `POST /v1/admins/{id}/sign-out-everywhere`.
pub async fn sign_out(client: &Client, admin: String, out: Out) -> CliResult<()> {
    let admin_id = admin_id(client, admin).await?;
    let answer = client.post(&["v1", "admins", &admin_id, "sign-out-everywhere"], None).await?;
    show_admin(answer, "every session ended", out).await
}

/// `admins sessions ADMIN [--end SESSION]` → `GET /v1/admins/{id}/sessions` or
/// `POST …/sessions/{session}/revoke`.
pub async fn sessions(client: &Client, admin: String, end: Option<String>, out: Out) -> CliResult<()> {
    let admin_id = admin_id(client, admin).await?;
    if let Some(session) = end {
        client.post(&["v1", "admins", &admin_id, "sessions", &session, "revoke"], None).await?;
        return out.line(&format!("ended session {session}"));
    }
    let answer = client.get(&["v1", "admins", &admin_id, "sessions"]).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let sessions: Vec<SessionInfo> = answer.parse()?;
    if sessions.is_empty() {
        return out.line("no open sessions");
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| vec![s.session_id.clone(), output::time(&s.issued_at), output::time(&s.expires_at)])
        .collect();
    out.table(&["SESSION_ID", "OPENED", "EXPIRES"], &rows)
}

/// `admins tokens ADMIN [--revoke TOKEN]` → `GET /v1/admins/{id}/api-tokens` or
/// `POST …/api-tokens/{token}/revoke`.
pub async fn tokens(client: &Client, admin: String, revoke: Option<String>, out: Out) -> CliResult<()> {
    let admin_id = admin_id(client, admin).await?;
    if let Some(token) = revoke {
        let answer = client.post(&["v1", "admins", &admin_id, "api-tokens", &token, "revoke"], None).await?;
        if out.json {
            return out.document(&answer.body);
        }
        let token: ApiToken = answer.parse()?;
        return out.line(&format!("revoked API token {} ({})", token.name, token.token_id));
    }
    let answer = client.get(&["v1", "admins", &admin_id, "api-tokens"]).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let tokens: Vec<ApiToken> = answer.parse()?;
    crate::auth::token_table(&tokens, "(the admin's)", out)
}
