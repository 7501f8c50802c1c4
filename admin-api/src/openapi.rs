//! The OpenAPI 3 document, generated from the handlers' annotations and the request and response
//! types themselves, so it cannot drift from them. Served at `GET /openapi.json`.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admins, keys, users};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "ClaudeCodeProxy admin API", description = "Users, access keys, Bedrock API keys, budgets, routing, usage and audit for ClaudeCodeProxy. Every route except login, health and this document needs `Authorization: Bearer <session or API token>`."),
    paths(
        admins::login, admins::logout, admins::me, admins::list_admins, admins::create_admin,
        admins::list_tokens, admins::issue_token, admins::revoke_token,
        users::create_user, users::list_users, users::get_user, users::update_user,
        users::deactivate_user, users::reactivate_user, users::set_budget, users::set_routing,
        keys::issue_key, keys::list_keys, keys::get_key, keys::revoke_key, keys::rotate_key,
        keys::set_bedrock_settings, keys::set_bedrock_key, keys::remove_bedrock_key,
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Login, sessions, admins and API tokens"),
        (name = "users", description = "Developers using Claude Code through the proxy"),
        (name = "keys", description = "Access keys and their Bedrock API keys"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
