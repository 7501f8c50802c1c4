//! The OpenAPI 3 document, generated from the handlers' annotations and the request and response
//! types themselves, so it cannot drift from them. Served at `GET /openapi.json`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    accounts, admins, keys, models, ops, queries, self_service, sign_ins, sso, statements, teams, users,
};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "ClaudeCodeProxy admin API", description = "Users, access keys, Bedrock API keys, budgets, routing, usage and audit for ClaudeCodeProxy. Every route except login (password or single sign-on), health, this document and `/v1/self` (a developer's own usage, authenticated by their access key in `x-ccp-access-key`) needs `Authorization: Bearer <session or API token>`."),
    paths(
        admins::login, admins::logout, admins::me, admins::list_admins, admins::create_admin,
        admins::set_admin_role, admins::set_team_scope, admins::list_tokens,
        accounts::change_own_password, accounts::sign_out_everywhere, accounts::reset_password,
        accounts::disable_admin, accounts::enable_admin, accounts::sign_admin_out, accounts::list_sessions,
        accounts::revoke_session, accounts::list_admin_tokens, accounts::revoke_admin_token, admins::issue_token, admins::revoke_token,
        users::create_user, users::list_users, users::get_user, users::update_user,
        users::deactivate_user, users::reactivate_user, users::set_budget, users::set_routing,
        teams::set_user_team, teams::create_team, teams::list_teams, teams::get_team, teams::update_team,
        teams::delete_team, teams::set_team_budget, teams::set_team_routing,
        keys::issue_key, keys::list_keys, keys::get_key, keys::revoke_key, keys::rotate_key,
        keys::set_bedrock_settings, keys::set_bedrock_key, keys::remove_bedrock_key, keys::check_bedrock_key,
        ops::get_circuit, ops::reset_circuit, ops::list_circuits, ops::get_pricing, ops::set_pricing,
        models::list_models, models::get_model, models::put_model, models::remove_model,
        queries::usage, queries::get_budget, queries::get_team_budget, queries::get_request, queries::audit,
        statements::statement,
        sign_ins::sign_in_failures,
        sso::methods, sso::start, sso::callback, sso::token,
        self_service::self_usage,
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Login, sessions, admins and API tokens"),
        (name = "users", description = "Developers using Claude Code through the proxy"),
        (name = "teams", description = "Teams of users: a shared monthly budget (besides each member's own; the stricter applies) and a routing default; a user is in at most one team"),
        (name = "keys", description = "Access keys and their Bedrock API keys"),
        (name = "operations", description = "Circuit breakers per access key, and the price list"),
        (name = "models", description = "The model catalogue: names, families, Bedrock targets and prices of the Claude models the proxies route (shipped defaults, changed at runtime)"),
        (name = "usage", description = "Usage and cost over time, budgets, request lookup and the audit log (from ClickHouse)"),
        (name = "self-service", description = "A developer's own usage, budget and Plan limits, authenticated by their access key (`x-ccp-access-key`), not by an admin account"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme(
            "access_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(crate::routes::self_service::ACCESS_KEY_HEADER))),
        );
        // Any status an operation does not list (401, 413, 415, 429, 503, …) is an error in the
        // one error shape.
        let error = utoipa::openapi::ResponseBuilder::new()
            .description("An error: `{\"error\":{\"type\",\"message\",\"field\"},\"request_id\"}`")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PUT", &mut item.put),
                ("PATCH", &mut item.patch),
                ("DELETE", &mut item.delete),
            ] {
                let Some(operation) = operation else { continue };
                operation.responses.responses.entry("default".into()).or_insert_with(|| error.clone().into());
                // The role the operation needs, from the one table that enforces it.
                if let Some(role) = crate::roles::required(method, path) {
                    let role = utoipa::openapi::extensions::ExtensionsBuilder::new()
                        .add("x-required-role", role.as_str())
                        .build();
                    operation.extensions.get_or_insert_with(Default::default).merge(role);
                }
            }
        }
    }
}

/// The methods the document lists for a request path (matching `{param}` segments), if the
/// path is one of its routes.
pub fn allowed_methods(path: &str) -> Option<Vec<&'static str>> {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        document()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template.split('/').map(str::to_owned).collect();
                (segments, operation_methods(item))
            })
            .collect()
    });
    let wanted: Vec<&str> = path.split('/').collect();
    routes
        .iter()
        .find(|(segments, _)| {
            segments.len() == wanted.len()
                && segments.iter().zip(&wanted).all(|(t, w)| (t.starts_with('{') && !w.is_empty()) || t == w)
        })
        .map(|(_, methods)| methods.clone())
}

/// The methods a path item of the document has operations for.
pub fn operation_methods(item: &utoipa::openapi::PathItem) -> Vec<&'static str> {
    [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
        ("HEAD", &item.head),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.is_some().then_some(method))
    .collect()
}

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
