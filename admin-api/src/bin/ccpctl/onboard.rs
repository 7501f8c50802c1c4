//! `onboard`: user, access key and (optionally) Bedrock API key in one go. stdout carries only
//! the result (the `export` line followed by the Claude Code status-line settings as shell
//! comments — so it can still be appended to a shell profile or `eval`ed — or the JSON);
//! progress goes to stderr. A failure after the key was issued still prints the key, since it
//! can never be shown again.

use ccp_admin_api::api::{CreateUser, IssueKey, IssuedKey, Key, User};
use serde_json::json;

use crate::cli::OnboardArgs;
use crate::client::{CliResult, Client};
use crate::keys::{read_bedrock_key, set_bedrock_key};
use crate::output::{note, Out};
use crate::to_json;

/// Where the developer puts `scripts/ccp-statusline` (the settings fragment runs it from there).
pub const STATUSLINE_COMMAND: &str = "~/.claude/ccp-statusline";

/// How often Claude Code re-runs the status line while a session is idle, in seconds (it also
/// runs it as the session changes).
pub const STATUSLINE_REFRESH_SECS: u32 = 5;

/// The Claude Code settings fragment (`~/.claude/settings.json`) for the status line. It holds no
/// key: the script finds it where Claude Code has it (`ANTHROPIC_BASE_URL` or
/// `ANTHROPIC_CUSTOM_HEADERS`), see docs/statusline.md.
pub fn statusline_settings() -> serde_json::Value {
    json!({ "statusLine": {
        "type": "command",
        "command": STATUSLINE_COMMAND,
        "refreshInterval": STATUSLINE_REFRESH_SECS,
    } })
}

/// Runs `onboard`.
pub async fn run(client: &Client, args: OnboardArgs, out: Out) -> CliResult<()> {
    // Read the secret first, so bad input leaves nothing half-made on the server.
    let bedrock_key = if args.bedrock_key_stdin { Some(read_bedrock_key()?) } else { None };

    note(&format!("creating user {}…", args.name));
    let body = to_json(&CreateUser {
        name: args.name,
        description: None,
        email: args.email,
        status: None,
        monthly_limit_usd: args.budget,
        routing: None,
    })?;
    let user: User = client.post(&["v1", "users"], Some(&body)).await?.parse()?;
    note(&format!("  created user {} ({})", user.name, user.user_id));

    note("issuing an access key…");
    let body = to_json(&IssueKey {
        name: args.key_name,
        bedrock_region: args.region,
        bedrock_default_model: args.default_model,
    })?;
    let issued: IssuedKey = match client.post(&["v1", "users", &user.user_id, "keys"], Some(&body)).await {
        Ok(answer) => answer.parse()?,
        Err(e) => {
            note(&format!("the user {} exists now; finish with `ccpctl keys issue {}`", user.name, user.user_id));
            return Err(e);
        }
    };
    let key_id = issued.key.key_id.clone();
    let (Some(access_key), Some(setup)) = (issued.access_key, issued.claude_code) else {
        return Err(crate::auth::replayed("access key"));
    };
    note(&format!("  issued key {key_id} ({})", issued.key.masked));

    let mut failure = None;
    let mut readiness = serde_json::Value::Null;
    if let Some(secret) = bedrock_key {
        note("registering the Bedrock API key…");
        match set_bedrock_key(client, &key_id, secret).await.and_then(|a| a.parse::<Key>()) {
            Ok(key) => {
                let hint = key.bedrock_key.as_ref().map_or("?", |b| b.hint.as_str());
                note(&format!("  registered Bedrock API key {hint}"));
                // Whether failover works, checked now with calls that cost nothing.
                note("checking that it can take a failover…");
                match client
                    .post(&["v1", "keys", &key_id, "bedrock-key", "check"], None)
                    .await
                    .and_then(|a| a.parse::<Key>())
                {
                    Ok(checked) => {
                        for line in crate::keys::readiness_lines(&checked) {
                            note(&format!("  {line}"));
                        }
                        readiness =
                            serde_json::to_value(checked.bedrock_key.and_then(|b| b.readiness)).unwrap_or_default();
                    }
                    Err(e) => note(&format!("  the check failed ({e}); run `ccpctl keys check {key_id}` later")),
                }
            }
            Err(e) => failure = Some(e),
        }
    } else {
        note("  no Bedrock API key: requests Anthropic refuses are not failed over (add one with --bedrock-key-stdin or `ccpctl bedrock-key set`)");
    }

    if out.json {
        out.document(&json!({
            "user_id": user.user_id,
            "key_id": key_id,
            "access_key": access_key,
            "base_url": setup.base_url,
            "statusline_settings": statusline_settings(),
            "failover": readiness,
        }))?;
    } else {
        note(&format!(
            "done. Give {} this line for their shell profile (the access key is shown only this once):",
            user.name
        ));
        out.line(&setup.shell)?;
        out.line(&format!(
            "# Claude Code status line (Plan limits, Bedrock, budget): copy scripts/ccp-statusline to \
             {STATUSLINE_COMMAND}\n# and add to ~/.claude/settings.json:\n# {}",
            statusline_settings()
        ))?;
    }
    match failure {
        None => Ok(()),
        Some(e) => {
            note(&format!("the Bedrock API key was not registered; retry with `ccpctl bedrock-key set {key_id}`"));
            Err(e)
        }
    }
}
