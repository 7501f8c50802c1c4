//! Access keys (issue, list, get, revoke, rotate, Bedrock settings) and their Bedrock API keys
//! (register or replace, remove). The plaintext access key exists only in the answer that
//! issues it; the Bedrock API key only while it is sealed.

use actix_web::{web, HttpResponse};
use ccp_schemas::events::BedrockSettings;
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_schemas::secrets::envelope::{BedrockApiKey, SealedSecret};
use ccp_schemas::state::AccessKeyState;
use ccp_schemas::subjects::Aggregate;

use super::{check_name, check_text, check_token, parse_id, versioned, AppState};
use crate::api::{ClaudeCodeSetup, IssueKey, IssuedKey, Key, Reason, SetBedrockKey, SetBedrockSettings};
use crate::context::Ctx;
use crate::domain::{decide_key, KeyCommand};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorKind};
use crate::json::{Json, OptionalJson};
use crate::store::CommandMeta;
use ccp_schemas::events::{BedrockKeyChecked, CheckCause};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/{user_id}/keys", web::post().to(issue_key))
        .route("/users/{user_id}/keys", web::get().to(list_keys))
        .route("/keys/{key_id}", web::get().to(get_key))
        .route("/keys/{key_id}/revoke", web::post().to(revoke_key))
        .route("/keys/{key_id}/rotate", web::post().to(rotate_key))
        .route("/keys/{key_id}/bedrock", web::put().to(set_bedrock_settings))
        .route("/keys/{key_id}/bedrock-key", web::put().to(set_bedrock_key))
        .route("/keys/{key_id}/bedrock-key", web::delete().to(remove_bedrock_key))
        .route("/keys/{key_id}/bedrock-key/check", web::post().to(check_bedrock_key));
}

/// Checks a key's Bedrock API key now (CountTokens on the models it would fail over to, and
/// the model listing: calls that cost nothing) and records the verdict as a
/// `bedrock_key_checked` event (a periodic check only when it changed, or a day after the last).
pub async fn run_check(
    state: &AppState,
    meta: &CommandMeta,
    key_id: AccessKeyId,
    cause: CheckCause,
) -> ApiResult<(AccessKeyState, u64)> {
    let key = state
        .view
        .read()
        .directory
        .key(&key_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no access key {key_id}")))?;
    let bedrock = key.bedrock_key.as_ref().ok_or_else(|| {
        ApiError::conflict(format!("access key {key_id} has no Bedrock API key to check; register one first"))
    })?;
    let master = state.master.as_ref().ok_or_else(|| {
        ApiError::new(ErrorKind::Unavailable, "no master key is configured: Bedrock API keys cannot be opened")
    })?;
    let region = key.bedrock.region.clone().unwrap_or_else(|| state.settings.proxy.bedrock_default_region.clone());
    if !ccp_schemas::catalogue::is_aws_region(&region) {
        return Err(ApiError::conflict(format!(
            "access key {key_id} has Bedrock region `{region}`, which is not an AWS region; set a valid one first"
        )));
    }
    let catalogue = super::models::current_catalogue(state).await?;
    let models = crate::readiness::models_to_check(&catalogue, &key.bedrock, &region);
    let api_key = bedrock
        .sealed
        .open(master, &key_id.to_string())
        .await
        .map_err(|e| ApiError::unavailable("the master key", &e))?;
    let report = state.checker.check(&api_key, &region, &models).await;
    drop(api_key);
    let check = BedrockKeyChecked {
        key_id,
        user_id: key.user_id,
        readiness: report.readiness,
        region,
        models: report.models,
        listing: Some(report.listing),
        cause,
    };
    let command = KeyCommand::RecordCheck { check, checked: bedrock.sealed.nonce.clone(), now: chrono::Utc::now() };
    let executed = state
        .store
        .execute(Aggregate::AccessKey(key_id), meta, AccessKeyState::apply, |s| {
            decide_key(s, key_id, None, command.clone())
        })
        .await?;
    state.settle(executed.seq).await;
    let key = executed.state.ok_or_else(|| ApiError::not_found(format!("no access key {key_id}")))?;
    Ok((key, executed.seq))
}

/// Check whether the key's Bedrock API key can take a failover now: CountTokens on each Bedrock
/// model it would fail over to and its model listing (calls that cost nothing), recorded as a
/// `bedrock_key_checked` event. The answer is the key with `bedrock_key.readiness`.
#[utoipa::path(post, path = "/v1/keys/{key_id}/bedrock-key/check", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Key), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn check_bedrock_key(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    let (key, version) = run_check(&state, &ctx.meta(), key_id, CheckCause::OnDemand).await?;
    if let Some(r) = key.bedrock_key.as_ref().and_then(|b| b.readiness.as_ref()) {
        tracing::info!(%key_id, readiness = r.readiness.as_str(), "Bedrock API key checked");
    }
    Ok(versioned(HttpResponse::Ok(), &Key::from_state(&key), version))
}

/// Checks every registered Bedrock API key every `interval`, as the system (recorded when a
/// verdict changes, or a day after the last record); runs until the process ends.
pub async fn check_periodically(state: web::Data<AppState>, interval: std::time::Duration) {
    let meta = CommandMeta {
        actor: ccp_schemas::Actor::System { component: "admin-api".into() },
        request_id: String::new(),
        source: None,
        if_match: None,
    };
    loop {
        // Spread replicas and restarts over the interval.
        let jitter = std::time::Duration::from_millis(u64::from(rand_u16()) % 10_000);
        tokio::time::sleep(interval + jitter).await;
        let keys: Vec<AccessKeyId> = state
            .view
            .read()
            .directory
            .keys()
            .filter(|k| k.status == ccp_schemas::state::KeyStatus::Active && k.bedrock_key.is_some())
            .map(|k| k.key_id)
            .collect();
        for key_id in keys {
            let meta = CommandMeta { request_id: format!("check_{}", ulid::Ulid::new()), ..meta.clone() };
            if let Err(e) = run_check(&state, &meta, key_id, CheckCause::Periodic).await {
                tracing::warn!(%key_id, error = %e.message, "periodic Bedrock readiness check failed");
            }
        }
    }
}

fn rand_u16() -> u16 {
    let id = ulid::Ulid::new();
    (id.random() & 0xffff) as u16
}

/// The Claude Code settings for a key.
pub fn claude_code_setup(public_proxy_url: &str, key: &AccessKey) -> ClaudeCodeSetup {
    let base_url = format!("{}/ak/{}", public_proxy_url.trim_end_matches('/'), key.expose());
    ClaudeCodeSetup {
        shell: format!("export ANTHROPIC_BASE_URL={base_url}"),
        settings_json: serde_json::json!({ "env": { "ANTHROPIC_BASE_URL": base_url } }),
        base_url,
    }
}

/// Runs a command and answers the key's state with its version.
async fn run(state: &AppState, ctx: &Ctx, key_id: AccessKeyId, command: KeyCommand) -> ApiResult<HttpResponse> {
    let (key, version) = run_with_owner(state, ctx, key_id, None, command).await?;
    Ok(versioned(HttpResponse::Ok(), &Key::from_state(&key), version))
}

async fn run_with_owner(
    state: &AppState,
    ctx: &Ctx,
    key_id: AccessKeyId,
    owner: Option<ccp_schemas::state::UserState>,
    command: KeyCommand,
) -> ApiResult<(AccessKeyState, u64)> {
    let executed = state
        .store
        .execute(Aggregate::AccessKey(key_id), &ctx.meta(), AccessKeyState::apply, |s| {
            decide_key(s, key_id, owner.as_ref(), command.clone())
        })
        .await?;
    state.settle(executed.seq).await;
    let key = executed.state.ok_or_else(|| ApiError::not_found(format!("no access key {key_id}")))?;
    Ok((key, executed.seq))
}

fn bedrock_settings(region: Option<String>, model: Option<String>, prefix: &str) -> ApiResult<BedrockSettings> {
    let region = region.filter(|r| !r.is_empty()).map(|r| check_token(&format!("{prefix}region"), &r)).transpose()?;
    if let Some(r) = region.as_deref().filter(|r| !ccp_schemas::catalogue::is_aws_region(r)) {
        // It becomes part of Bedrock's host name: anything else could send the key elsewhere.
        return Err(ApiError::unprocessable(
            &format!("{prefix}region"),
            format!("`{r}` is not an AWS region (e.g. us-east-1, eu-central-1)"),
        ));
    }
    Ok(BedrockSettings {
        region,
        default_model: model
            .filter(|m| !m.is_empty())
            .map(|m| check_token(&format!("{prefix}default_model"), &m))
            .transpose()?,
    })
}

/// Issue an access key to a user. The answer is the only place the key ever appears.
#[utoipa::path(post, path = "/v1/users/{user_id}/keys", tag = "keys", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body(content = Option<IssueKey>),
    responses((status = 201, body = IssuedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn issue_key(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: OptionalJson<IssueKey>,
) -> ApiResult<HttpResponse> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let body = body.0.unwrap_or_default();
    let name = body.name.as_deref().filter(|n| !n.is_empty()).map(|n| check_name("name", n)).transpose()?;
    let bedrock = bedrock_settings(body.bedrock_region, body.bedrock_default_model, "bedrock_")?;
    let owner = state
        .view
        .read()
        .directory
        .user(&user_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))?;
    let key = AccessKey::generate().map_err(|e| ApiError::internal(&e))?;
    let key_id = AccessKeyId::new();
    let command =
        KeyCommand::Issue { name, key_hash: key.hash(&state.pepper), key_prefix: key.display_prefix(), bedrock };
    let (issued, version) = run_with_owner(&state, &ctx, key_id, Some(owner), command).await?;
    let answer = IssuedKey {
        key: Key::from_state(&issued),
        claude_code: Some(claude_code_setup(&state.public_proxy_url, &key)),
        access_key: Some(key.expose().to_owned()),
    };
    let mut created = HttpResponse::Created();
    created.insert_header(("location", format!("/v1/keys/{key_id}"))).insert_header(("cache-control", "no-store"));
    Ok(versioned(created, &answer, version))
}

/// A user's access keys, newest first (prefix and mask only).
#[utoipa::path(get, path = "/v1/users/{user_id}/keys", tag = "keys", params(("user_id" = String, Path, pattern = r"^usr_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Vec<Key>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<web::Json<Vec<Key>>> {
    let user_id: UserId = parse_id("user_id", &path)?;
    let keys = {
        let model = state.view.read();
        if model.directory.user(&user_id).is_none() {
            return Err(ApiError::not_found(format!("no user {user_id}")));
        }
        keys_of(&model, user_id)
    };
    Ok(web::Json(with_last_used(&state, keys).await))
}

/// Fills `last_used_at` from the usage analytics (left `null` if ClickHouse cannot answer).
pub async fn with_last_used(state: &AppState, mut keys: Vec<Key>) -> Vec<Key> {
    let ids: Vec<String> = keys.iter().map(|k| k.key_id.clone()).collect();
    let used = crate::usage::last_used(&state.clickhouse, &ids).await;
    for key in &mut keys {
        key.last_used_at = used.get(&key.key_id).copied();
    }
    keys
}

/// A user's keys, newest first.
pub fn keys_of(model: &crate::view::Model, user_id: UserId) -> Vec<Key> {
    let mut keys: Vec<Key> = model.directory.keys().filter(|k| k.user_id == user_id).map(Key::from_state).collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    keys
}

/// One access key.
#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Key), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_key(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    let (key, version) = {
        let model = state.view.read();
        let key = model.directory.key(&key_id).ok_or_else(|| ApiError::not_found(format!("no access key {key_id}")))?;
        (Key::from_state(key), model.version(&Aggregate::AccessKey(key_id)))
    };
    let key =
        with_last_used(&state, vec![key]).await.into_iter().next().ok_or_else(|| ApiError::internal(&"key lost"))?;
    Ok(versioned(HttpResponse::Ok(), &key, version))
}

/// Revoke an access key for good.
#[utoipa::path(post, path = "/v1/keys/{key_id}/revoke", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body(content = Option<Reason>),
    responses((status = 200, body = Key), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: OptionalJson<Reason>,
) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    let reason = body.0.and_then(|b| b.reason).map(|r| check_text("reason", &r, 500)).transpose()?;
    run(&state, &ctx, key_id, KeyCommand::Revoke { reason }).await
}

/// Rotate an access key: a new secret (shown once), the old one refused at once; id, Bedrock
/// key and settings stay.
#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = IssuedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_key(state: web::Data<AppState>, ctx: Ctx, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    let key = AccessKey::generate().map_err(|e| ApiError::internal(&e))?;
    let command = KeyCommand::Rotate { key_hash: key.hash(&state.pepper), key_prefix: key.display_prefix() };
    let (rotated, version) = run_with_owner(&state, &ctx, key_id, None, command).await?;
    let answer = IssuedKey {
        key: Key::from_state(&rotated),
        claude_code: Some(claude_code_setup(&state.public_proxy_url, &key)),
        access_key: Some(key.expose().to_owned()),
    };
    let mut ok = HttpResponse::Ok();
    ok.insert_header(("cache-control", "no-store"));
    Ok(versioned(ok, &answer, version))
}

/// Set a key's Bedrock region and default model.
#[utoipa::path(put, path = "/v1/keys/{key_id}/bedrock", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetBedrockSettings,
    responses((status = 200, body = Key), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_bedrock_settings(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetBedrockSettings>,
) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    let settings = bedrock_settings(body.0.region, body.0.default_model, "")?;
    run(&state, &ctx, key_id, KeyCommand::SetBedrockSettings(settings)).await
}

/// Register (or replace) the key's Bedrock API key. It is encrypted before it is stored and
/// never returned.
#[utoipa::path(put, path = "/v1/keys/{key_id}/bedrock-key", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    request_body = SetBedrockKey,
    responses((status = 200, body = Key), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_bedrock_key(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
    body: Json<SetBedrockKey>,
) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    let raw = &body.0.api_key;
    let shaped = (1..=1024).contains(&raw.chars().count()) && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    let secret = BedrockApiKey::new(raw).ok().filter(|_| shaped).ok_or_else(|| {
        ApiError::unprocessable(
            "api_key",
            "must be the Bedrock API key: 1–1024 characters, no spaces or control characters",
        )
    })?;
    let master = state.master.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unavailable,
            "no master key is configured (secrets.master_key or secrets.kms_key_id); Bedrock API keys cannot be stored",
        )
    })?;
    if state.view.read().directory.key(&key_id).is_none() {
        return Err(ApiError::not_found(format!("no access key {key_id}")));
    }
    let sealed = SealedSecret::seal(master, &secret, &key_id.to_string())
        .await
        .map_err(|e| ApiError::unavailable("the master key", &e))?;
    let command = KeyCommand::SetBedrockKey { sealed, hint: secret.hint() };
    drop(secret);
    let answer = run(&state, &ctx, key_id, command).await?;
    // Checked right away, in the background: the answer does not wait for Bedrock.
    let (state, meta) = (state.clone(), ctx.meta());
    actix_web::rt::spawn(async move {
        if let Err(e) = run_check(&state, &meta, key_id, CheckCause::Registered).await {
            tracing::warn!(%key_id, error = %e.message, "checking a newly registered Bedrock API key failed");
        }
    });
    Ok(answer)
}

/// Remove the key's Bedrock API key (the key no longer fails over).
#[utoipa::path(delete, path = "/v1/keys/{key_id}/bedrock-key", tag = "keys", params(("key_id" = String, Path, pattern = r"^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$")),
    responses((status = 200, body = Key), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_bedrock_key(
    state: web::Data<AppState>,
    ctx: Ctx,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let key_id: AccessKeyId = parse_id("key_id", &path)?;
    run(&state, &ctx, key_id, KeyCommand::RemoveBedrockKey).await
}
