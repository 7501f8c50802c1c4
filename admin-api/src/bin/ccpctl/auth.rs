//! `login`, `logout`, `whoami`, `tokens …` and `admins …`.

use ccp_admin_api::api::{
    Admin, ApiToken, CreateAdmin, IssueApiToken, IssuedApiToken, Login, Me, Role, Session, SetRole, SetTeamScope,
};
use serde_json::json;

use crate::cli::{AdminsCommand, TokensCommand};
use crate::client::{CliError, CliResult, Client};
use crate::output::{self, note, Out};
use crate::session::{self, SavedSession};
use crate::{input, to_json};

/// `login`: the session token is saved, never printed; the password is never saved.
pub async fn login(url: &str, username: Option<String>, out: Out) -> CliResult<()> {
    let username = match username {
        Some(u) => u,
        None => input::visible("Username: ", "--username")?,
    };
    let password = input::secret(&format!("Password for {username} at {url}: "), "password")?;
    let client = Client::new(url, None, String::new())?;
    let body = to_json(&Login { username, password })?;
    let session: Session = client.post(&["v1", "auth", "login"], Some(&body)).await?.parse()?;
    save_session(url, session, out)
}

/// `login --sso`: the browser signs in at the identity provider; the admin API sends a one-time
/// code to a listener on 127.0.0.1, which is traded (with the verifier only this process knows)
/// for the session.
pub async fn login_sso(url: &str, no_browser: bool, out: Out) -> CliResult<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on 127.0.0.1 for the sign-in: {e}")))?;
    let port = listener.local_addr().map_err(|e| CliError::Usage(e.to_string()))?.port();
    let verifier = ccp_admin_api::sso::random_url_token().map_err(CliError::Usage)?;
    let challenge = ccp_admin_api::sso::challenge_of(&verifier);
    // Only the request carrying this comes from the sign-in this process started.
    let expected = ccp_admin_api::sso::random_url_token().map_err(CliError::Usage)?;
    let start = format!(
        "{}/v1/auth/sso/start?cli_port={port}&cli_challenge={challenge}&cli_state={expected}",
        url.trim_end_matches('/')
    );
    note(&format!("Sign in with your identity provider at:\n\n  {start}\n"));
    if !no_browser {
        let opened = ["xdg-open", "open"].iter().any(|opener| {
            std::process::Command::new(opener)
                .arg(&start)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .is_ok()
        });
        if !opened {
            note("(no browser could be opened here: open the URL above on this machine)");
        }
    }
    note("waiting for the sign-in (5 minutes at most) ...");
    let params = tokio::time::timeout(std::time::Duration::from_secs(300), wait_for_callback(&listener, &expected))
        .await
        .map_err(|_| CliError::Other(anyhow::anyhow!("the sign-in did not finish within 5 minutes")))??;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if let Some(error) = param("error") {
        // Printed on a terminal: no control characters from the network.
        let clean = |s: String| s.chars().filter(|c| !c.is_control()).take(500).collect::<String>();
        let (error, why) = (clean(error), clean(param("error_description").unwrap_or_default()));
        return Err(CliError::Other(anyhow::anyhow!("single sign-on refused ({error}): {why}")));
    }
    let code = param("code").ok_or_else(|| CliError::Other(anyhow::anyhow!("the sign-in ended without a code")))?;
    let client = Client::new(url, None, String::new())?;
    let body = to_json(&json!({ "code": code, "verifier": verifier }))?;
    let session: Session = client.post(&["v1", "auth", "sso", "token"], Some(&body)).await?.parse()?;
    save_session(url, session, out)
}

/// Answers the request the sign-in ends with (carrying `expected` as `state`; anything else on
/// the port is answered 404 and ignored); its query parameters.
async fn wait_for_callback(listener: &tokio::net::TcpListener, expected: &str) -> CliResult<Vec<(String, String)>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let (mut stream, _) = listener.accept().await.map_err(|e| CliError::Usage(format!("sign-in listener: {e}")))?;
        let mut buffer = vec![0u8; 8192];
        // A connection that sends nothing does not hold the listener.
        let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(n)) => n,
            _ => continue,
        };
        let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let target = head.lines().next().and_then(|line| line.split(' ').nth(1)).unwrap_or("");
        let params: Vec<(String, String)> = target
            .strip_prefix("/callback?")
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if !params.iter().any(|(k, v)| k == "state" && v == expected) {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            continue;
        }
        let text = if params.iter().any(|(k, _)| k == "error") {
            "Single sign-on was refused: see the terminal."
        } else {
            "Signed in: you can close this tab and return to the terminal."
        };
        let page = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(page.as_bytes()).await;
        return Ok(params);
    }
}

fn save_session(url: &str, session: Session, out: Out) -> CliResult<()> {
    let saved = SavedSession {
        url: url.to_owned(),
        token: session.token,
        expires_at: session.expires_at,
        username: session.admin.username.clone(),
    };
    let path = session::save(&saved)?;
    if std::env::var("CCPCTL_TOKEN").is_ok_and(|t| !t.trim().is_empty()) {
        note("warning: CCPCTL_TOKEN is set and takes precedence over this session; unset it to use the session");
    }
    if out.json {
        return out.document(&json!({
            "url": url,
            "admin": session.admin,
            "expires_at": session.expires_at,
            "session_file": path,
        }));
    }
    out.line(&format!(
        "logged in to {url} as {} (session until {}, saved in {})",
        saved.username,
        output::time(&saved.expires_at),
        path.display()
    ))
}

/// `logout`: ends the session on the server (best effort) and deletes the file.
pub async fn logout(out: Out) -> CliResult<()> {
    let Some(saved) = session::load()? else {
        return if out.json { out.document(&json!({ "logged_out": false })) } else { out.line("not logged in") };
    };
    let client = Client::new(&saved.url, Some(saved.token.clone()), String::new())?;
    if let Err(e) = client.post(&["v1", "auth", "logout"], None).await {
        note(&format!("warning: the server did not end the session ({e}); deleting it here anyway"));
    }
    session::remove()?;
    if out.json {
        return out.document(&json!({ "logged_out": true, "url": saved.url, "username": saved.username }));
    }
    out.line(&format!("logged out {} from {}", saved.username, saved.url))
}

/// `whoami`.
pub async fn whoami(client: &Client, out: Out) -> CliResult<()> {
    let answer = client.get(&["v1", "auth", "me"]).await?;
    if out.json {
        return out.document(&answer.body);
    }
    let me: Me = answer.parse()?;
    let lead = me.team_id.as_ref().map(|t| format!(", team lead of {t}")).unwrap_or_default();
    out.line(&format!(
        "{} ({}, {}{lead}) at {}, authenticated by {}",
        me.username,
        me.admin_id,
        role_name(me.role),
        client.base(),
        output::label(&me.method).replace('_', " ")
    ))
}

/// `tokens …`.
pub async fn tokens(client: &Client, command: TokensCommand, out: Out) -> CliResult<()> {
    match command {
        TokensCommand::List => {
            let answer = client.get(&["v1", "api-tokens"]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let tokens: Vec<ApiToken> = answer.parse()?;
            token_table(&tokens, "(yours)", out)
        }
        TokensCommand::Issue { name, role } => {
            let body = to_json(&IssueApiToken { name, role: role.as_deref().map(parse_role) })?;
            let answer = client.post(&["v1", "api-tokens"], Some(&body)).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let issued: IssuedApiToken = answer.parse()?;
            out.line(&format!("issued API token {} ({})", issued.info.name, issued.info.token_id))?;
            match issued.token {
                Some(token) => {
                    note("warning: this is the only time the token is shown; store it now (e.g. in your CI's secrets)");
                    out.line(&format!("token: {token}"))
                }
                None => Err(replayed("token")),
            }
        }
        TokensCommand::Revoke { token_id } => {
            let answer = client.post(&["v1", "api-tokens", &token_id, "revoke"], None).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let token: ApiToken = answer.parse()?;
            out.line(&format!("revoked API token {} ({})", token.name, token.token_id))
        }
    }
}

/// API tokens as a table; `inherited` labels a token without a role of its own.
pub fn token_table(tokens: &[ApiToken], inherited: &'static str, out: Out) -> CliResult<()> {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.token_id.clone(),
                t.name.clone(),
                format!("{}…", t.prefix),
                t.role.map_or(inherited, role_name).to_owned(),
                if t.revoked { "revoked" } else { "active" }.to_owned(),
                output::time(&t.created_at),
            ]
        })
        .collect();
    out.table(&["TOKEN_ID", "NAME", "TOKEN", "ROLE", "STATUS", "CREATED"], &rows)
}

/// A role named on the command line (clap has checked the name).
fn parse_role(name: &str) -> Role {
    match name {
        "viewer" => Role::Viewer,
        "operator" => Role::Operator,
        _ => Role::Admin,
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

/// The error for an idempotent replay, whose secret the server no longer has.
pub fn replayed(what: &str) -> CliError {
    CliError::Other(anyhow::anyhow!(
        "the server replayed an earlier answer to this request, without the {what}; it cannot be shown again"
    ))
}

/// `admins …`.
pub async fn admins(client: &Client, command: AdminsCommand, out: Out) -> CliResult<()> {
    match command {
        AdminsCommand::List => {
            let answer = client.get(&["v1", "admins"]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let admins: Vec<Admin> = answer.parse()?;
            let rows: Vec<Vec<String>> = admins
                .iter()
                .map(|a| {
                    vec![
                        a.admin_id.clone(),
                        a.username.clone(),
                        role_name(a.role).to_owned(),
                        a.team_id.clone().unwrap_or_else(|| "–".to_owned()),
                        if a.disabled { "disabled" } else { "enabled" }.to_owned(),
                        output::time_or(a.created_at.as_ref(), "–"),
                    ]
                })
                .collect();
            out.table(&["ADMIN_ID", "USERNAME", "ROLE", "TEAM_SCOPE", "STATUS", "CREATED"], &rows)
        }
        AdminsCommand::Role { admin, role } => {
            let admin_id = crate::accounts::admin_id(client, admin).await?;
            let body = to_json(&SetRole { role: parse_role(&role) })?;
            let answer = client.put(&["v1", "admins", &admin_id, "role"], &body, None).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let admin: Admin = answer.parse()?;
            out.line(&format!("{} ({}) is now {}", admin.username, admin.admin_id, role_name(admin.role)))
        }
        AdminsCommand::Scope { admin, team, clear: _ } => {
            let admin_id = crate::accounts::admin_id(client, admin).await?;
            // `--team` and `--clear` are exclusive and one is required (clap): no team = clear.
            let team_id = match team {
                Some(team) => Some(crate::teams::team_id(client, &team).await?),
                None => None,
            };
            let body = to_json(&SetTeamScope { team_id })?;
            let answer = client.put(&["v1", "admins", &admin_id, "team-scope"], &body, None).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let admin: Admin = answer.parse()?;
            out.line(&match &admin.team_id {
                Some(team_id) => format!("{} ({}) is now a team lead of {team_id}", admin.username, admin.admin_id),
                None => format!("{} ({}) is no longer scoped to a team", admin.username, admin.admin_id),
            })
        }
        AdminsCommand::Password { admin } => crate::accounts::reset_password(client, admin, out).await,
        AdminsCommand::Disable { admin, reason } => crate::accounts::disable(client, admin, reason, out).await,
        AdminsCommand::Enable { admin } => crate::accounts::enable(client, admin, out).await,
        AdminsCommand::SignOut { admin } => crate::accounts::sign_out(client, admin, out).await,
        AdminsCommand::Sessions { admin, end } => crate::accounts::sessions(client, admin, end, out).await,
        AdminsCommand::Tokens { admin, revoke } => crate::accounts::tokens(client, admin, revoke, out).await,
        AdminsCommand::Create { username, role } => {
            let password = input::new_secret(&format!("Password for the new admin {username}: "), "password")?;
            let body = to_json(&CreateAdmin { username, password, role: Some(parse_role(&role)) })?;
            let answer = client.post(&["v1", "admins"], Some(&body)).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let admin: Admin = answer.parse()?;
            out.line(&format!("created admin {} ({}, {})", admin.username, admin.admin_id, role_name(admin.role)))
        }
    }
}
