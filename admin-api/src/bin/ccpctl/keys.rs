//! `keys …` and `bedrock-key …`.

use ccp_admin_api::api::{IssueKey, IssuedKey, Key, Reason, SetBedrockKey, SetBedrockSettings, User};

use crate::auth::replayed;
use crate::cli::{BedrockKeyCommand, KeysCommand};
use crate::client::{Answer, CliError, CliResult, Client};
use crate::output::{self, note, Out};
use crate::resolve::{self, Names};
use crate::{input, to_json};

/// Runs a `keys` subcommand.
pub async fn run(client: &Client, command: KeysCommand, out: Out) -> CliResult<()> {
    match command {
        KeysCommand::List { user_id: None } => {
            let users = resolve::users(client, None).await?;
            let keys = resolve::all_keys(client, &users).await?;
            if out.json {
                let keys: Vec<&Key> = keys.iter().map(|(k, _)| k).collect();
                return out.document(&crate::to_json(&keys)?);
            }
            if keys.is_empty() {
                return out.line(&format!("no access keys (of {} users)", users.len()));
            }
            let names = Names::of(users, []);
            let (keys, _): (Vec<Key>, Vec<User>) = keys.into_iter().unzip();
            keys_table(&keys, Some(&names), out)
        }
        KeysCommand::List { user_id: Some(given) } => {
            let (user_id, user) = resolve::user(client, &given).await?;
            let answer = client.get(&["v1", "users", &user_id, "keys"]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let keys: Vec<Key> = answer.parse()?;
            let names = match user {
                Some(user) => Names::of([user], []),
                None => Names::load(client, [user_id.as_str()], []).await,
            };
            if keys.is_empty() {
                return out.line(&format!(
                    "{} has no access keys (issue one: ccpctl keys issue {user_id})",
                    names.user(&user_id)
                ));
            }
            keys_table(&keys, Some(&names), out)
        }
        KeysCommand::Get { key_id } => {
            let key_id = resolve::key_id(client, &key_id).await?;
            let answer = client.get(&["v1", "keys", &key_id]).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let key: Key = answer.parse()?;
            let names = Names::load(client, [key.user_id.as_str()], []).await;
            out.fields(&key_fields(&key, &names.user(&key.user_id)))
        }
        KeysCommand::Issue { user_id, key } => {
            let user_id = resolve::user_id(client, &user_id).await?;
            let body = to_json(&IssueKey {
                name: key.name,
                bedrock_region: key.region,
                bedrock_default_model: key.default_model,
            })?;
            let answer = client.post(&["v1", "users", &user_id, "keys"], Some(&body)).await?;
            show_issued(&answer, "issued", out)
        }
        KeysCommand::Revoke { key_id, reason } => {
            let key_id = resolve::key_id(client, &key_id).await?;
            let body = to_json(&Reason { reason })?;
            let answer = client.post(&["v1", "keys", &key_id, "revoke"], Some(&body)).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let key: Key = answer.parse()?;
            let names = Names::load(client, [key.user_id.as_str()], []).await;
            out.line(&format!(
                "revoked key {} ({}) of {} ({})",
                key.key_id,
                key.masked,
                names.user(&key.user_id),
                key.user_id
            ))
        }
        KeysCommand::Rotate { key_id } => {
            let key_id = resolve::key_id(client, &key_id).await?;
            let answer = client.post(&["v1", "keys", &key_id, "rotate"], None).await?;
            show_issued(&answer, "rotated", out)
        }
        KeysCommand::Bedrock { key_id, region, default_model } => {
            if region.is_none() && default_model.is_none() {
                return Err(CliError::Usage("nothing to change: give --region and/or --default-model".into()));
            }
            let key_id = resolve::key_id(client, &key_id).await?;
            // The API replaces both settings; keep the one not given, and refuse to overwrite a
            // change made in between (If-Match with the version just read).
            let current = client.get(&["v1", "keys", &key_id]).await?;
            let key: Key = current.parse()?;
            let body = to_json(&SetBedrockSettings {
                region: region.or(key.bedrock_region),
                default_model: default_model.or(key.bedrock_default_model),
            })?;
            let answer = client.put(&["v1", "keys", &key_id, "bedrock"], &body, current.etag.as_deref()).await?;
            show(&answer, out, |k| {
                format!(
                    "key {}: Bedrock region {}, default model {}",
                    k.key_id,
                    k.bedrock_region.as_deref().unwrap_or("(the proxy's default)"),
                    output::or_dash(k.bedrock_default_model.as_deref())
                )
            })
        }
        KeysCommand::Check { key_id } => {
            let key_id = resolve::key_id(client, &key_id).await?;
            let answer = client.post(&["v1", "keys", &key_id, "bedrock-key", "check"], None).await?;
            if out.json {
                return out.document(&answer.body);
            }
            let key: Key = answer.parse()?;
            for line in readiness_lines(&key) {
                out.line(&line)?;
            }
            Ok(())
        }
    }
}

/// The lines that tell whether a key's Bedrock API key can take a failover, and why not.
pub fn readiness_lines(key: &Key) -> Vec<String> {
    let Some(bedrock) = key.bedrock_key.as_ref() else {
        return vec![format!("key {}: no Bedrock API key: requests Anthropic refuses are not failed over", key.key_id)];
    };
    let Some(r) = bedrock.readiness.as_ref() else {
        return vec![format!("key {}: Bedrock API key {} not checked yet", key.key_id, bedrock.hint)];
    };
    let verdict = output::label(&r.readiness);
    let mut lines = vec![if verdict == "ready" {
        format!("key {}: failover ready ({}, checked {})", key.key_id, r.region, output::time(&r.checked_at))
    } else {
        format!(
            "key {}: failover NOT ready: {} ({}, checked {})",
            key.key_id,
            verdict.replace('_', " "),
            r.region,
            output::time(&r.checked_at)
        )
    }];
    for m in r.models.iter().filter(|m| output::label(&m.readiness) != "ready") {
        lines.push(format!("  {}: {}", m.model_id, output::label(&m.readiness).replace('_', " ")));
    }
    if r.listing.is_some_and(|l| output::label(&l) != "ready") {
        lines.push("  the key cannot read its Bedrock model listing (models the catalogue has no target for will fall back to their family)".into());
    }
    lines
}

/// Runs a `bedrock-key` subcommand.
pub async fn bedrock_key(client: &Client, command: BedrockKeyCommand, out: Out) -> CliResult<()> {
    match command {
        BedrockKeyCommand::Set { key_id } => {
            let api_key = read_bedrock_key()?;
            let key_id = resolve::key_id(client, &key_id).await?;
            let key = set_bedrock_key(client, &key_id, api_key).await?;
            if out.json {
                return out.document(&key.body);
            }
            let key: Key = key.parse()?;
            let hint = key.bedrock_key.as_ref().map_or("?", |b| b.hint.as_str());
            out.line(&format!("registered Bedrock API key {hint} for key {} ({})", key.key_id, key.masked))
        }
        BedrockKeyCommand::Remove { key_id } => {
            let key_id = resolve::key_id(client, &key_id).await?;
            let answer = client.delete(&["v1", "keys", &key_id, "bedrock-key"]).await?;
            show(&answer, out, |k| format!("removed the Bedrock API key of key {} ({})", k.key_id, k.masked))
        }
    }
}

/// Reads a Bedrock API key from stdin or a no-echo prompt.
pub fn read_bedrock_key() -> CliResult<String> {
    let raw = input::secret("Bedrock API key (not echoed): ", "Bedrock API key")?;
    let key = raw.trim();
    if key.is_empty() {
        return Err(CliError::Usage("no Bedrock API key: the input is blank".into()));
    }
    Ok(key.to_owned())
}

/// PUT the Bedrock API key (consumed: it is not kept after the request).
pub async fn set_bedrock_key(client: &Client, key_id: &str, api_key: String) -> CliResult<Answer> {
    let body = to_json(&SetBedrockKey { api_key })?;
    client.put(&["v1", "keys", key_id, "bedrock-key"], &body, None).await
}

fn show(answer: &Answer, out: Out, line: impl Fn(&Key) -> String) -> CliResult<()> {
    if out.json {
        return out.document(&answer.body);
    }
    out.line(&line(&answer.parse::<Key>()?))
}

/// Prints a new access key: the only time it is ever shown.
fn show_issued(answer: &Answer, verb: &str, out: Out) -> CliResult<()> {
    if out.json {
        return out.document(&answer.body);
    }
    let issued: IssuedKey = answer.parse()?;
    let k = &issued.key;
    let label = k.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    out.line(&format!("{verb} key {}{label} for user {}", k.key_id, k.user_id))?;
    let (Some(access_key), Some(setup)) = (issued.access_key, issued.claude_code) else {
        return Err(replayed("access key"));
    };
    note("warning: this is the only time the access key is shown; it will not be shown again (rotate the key if it is lost)");
    out.line(&format!("access key: {access_key}"))?;
    out.line("Claude Code setup (shell profile):")?;
    out.line(&setup.shell)
}

/// The table of `keys list` (with `owners`: a USER column of names) and `users get`.
pub fn keys_table(keys: &[Key], owners: Option<&Names>, out: Out) -> CliResult<()> {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let mut row = vec![k.key_id.clone()];
            if let Some(names) = owners {
                row.push(names.user(&k.user_id));
            }
            row.extend([
                output::or_dash(k.name.as_deref()),
                k.masked.clone(),
                output::label(&k.status),
                k.bedrock_key.as_ref().map_or_else(|| "–".to_owned(), |b| b.hint.clone()),
                output::or_dash(k.bedrock_region.as_deref()),
                output::or_dash(k.bedrock_default_model.as_deref()),
                output::time(&k.created_at),
                output::time_or(k.last_used_at.as_ref(), "never"),
            ]);
            row
        })
        .collect();
    let mut headers = vec!["KEY_ID"];
    if owners.is_some() {
        headers.push("USER");
    }
    headers.extend(["NAME", "KEY", "STATUS", "BEDROCK_KEY", "REGION", "DEFAULT_MODEL", "CREATED", "LAST_USED"]);
    out.table(&headers, &rows)
}

fn key_fields(k: &Key, owner: &str) -> Vec<(&'static str, String)> {
    vec![
        ("key_id", k.key_id.clone()),
        ("user_id", k.user_id.clone()),
        ("user", owner.to_owned()),
        ("name", output::or_dash(k.name.as_deref())),
        ("key", k.masked.clone()),
        ("status", output::label(&k.status)),
        ("bedrock key", k.bedrock_key.as_ref().map_or_else(|| "none".to_owned(), |b| b.hint.clone())),
        ("bedrock region", k.bedrock_region.clone().unwrap_or_else(|| "(the proxy's default)".to_owned())),
        ("default model", output::or_dash(k.bedrock_default_model.as_deref())),
        ("created", output::time(&k.created_at)),
        ("updated", output::time(&k.updated_at)),
        ("last used", output::time_or(k.last_used_at.as_ref(), "never")),
    ]
}
