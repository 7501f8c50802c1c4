//! Who may call what: the one table of the role each authenticated operation needs, enforced in
//! one place ([`check`], called by [`crate::auth::require_auth`] for every authenticated route)
//! and listed in the OpenAPI document (`x-required-role` on each operation).
//!
//! `viewer` reads (usage, audit, users, teams, keys without secrets, circuits, models, prices)
//! and manages its own API tokens; `operator` also changes users, teams and membership, access
//! keys, Bedrock keys, budgets, routing, circuits and the model catalogue; `admin` also manages admins, prices and reads the
//! security records. A route missing from the table is refused (and fails
//! `admin-api/tests/roles.rs`, which walks every operation with every role). A team lead (a
//! `viewer` scoped to one team) is limited further, right after this check: [`crate::scope`].

use ccp_schemas::events::AdminRole::{self, Admin, Operator, Viewer};

use crate::error::{ApiError, ErrorKind};

/// `(method, path as the OpenAPI document and the router write it, role needed)`.
pub const REQUIRED: &[(&str, &str, AdminRole)] = &[
    ("POST", "/v1/auth/logout", Viewer),
    ("GET", "/v1/auth/me", Viewer),
    ("GET", "/v1/admins", Admin),
    ("POST", "/v1/admins", Admin),
    ("PUT", "/v1/admins/{admin_id}/role", Admin),
    ("PUT", "/v1/admins/{admin_id}/team-scope", Admin),
    ("PUT", "/v1/auth/password", Viewer),
    ("POST", "/v1/auth/sign-out-everywhere", Viewer),
    ("PUT", "/v1/admins/{admin_id}/password", Admin),
    ("POST", "/v1/admins/{admin_id}/disable", Admin),
    ("POST", "/v1/admins/{admin_id}/enable", Admin),
    ("POST", "/v1/admins/{admin_id}/sign-out-everywhere", Admin),
    ("GET", "/v1/admins/{admin_id}/sessions", Admin),
    ("POST", "/v1/admins/{admin_id}/sessions/{session_id}/revoke", Admin),
    ("GET", "/v1/admins/{admin_id}/api-tokens", Admin),
    ("POST", "/v1/admins/{admin_id}/api-tokens/{token_id}/revoke", Admin),
    ("GET", "/v1/api-tokens", Viewer),
    ("POST", "/v1/api-tokens", Viewer),
    ("POST", "/v1/api-tokens/{token_id}/revoke", Viewer),
    ("POST", "/v1/users", Operator),
    ("GET", "/v1/users", Viewer),
    ("GET", "/v1/users/{user_id}", Viewer),
    ("PATCH", "/v1/users/{user_id}", Operator),
    ("POST", "/v1/users/{user_id}/deactivate", Operator),
    ("POST", "/v1/users/{user_id}/reactivate", Operator),
    ("PUT", "/v1/users/{user_id}/budget", Operator),
    ("GET", "/v1/users/{user_id}/budget", Viewer),
    ("PUT", "/v1/users/{user_id}/routing", Operator),
    ("PUT", "/v1/users/{user_id}/team", Operator),
    ("POST", "/v1/teams", Operator),
    ("GET", "/v1/teams", Viewer),
    ("GET", "/v1/teams/{team_id}", Viewer),
    ("PATCH", "/v1/teams/{team_id}", Operator),
    ("DELETE", "/v1/teams/{team_id}", Operator),
    ("PUT", "/v1/teams/{team_id}/budget", Operator),
    ("GET", "/v1/teams/{team_id}/budget", Viewer),
    ("PUT", "/v1/teams/{team_id}/routing", Operator),
    ("POST", "/v1/users/{user_id}/keys", Operator),
    ("GET", "/v1/users/{user_id}/keys", Viewer),
    ("GET", "/v1/keys/{key_id}", Viewer),
    ("POST", "/v1/keys/{key_id}/revoke", Operator),
    ("POST", "/v1/keys/{key_id}/rotate", Operator),
    ("PUT", "/v1/keys/{key_id}/bedrock", Operator),
    ("PUT", "/v1/keys/{key_id}/bedrock-key", Operator),
    ("DELETE", "/v1/keys/{key_id}/bedrock-key", Operator),
    ("POST", "/v1/keys/{key_id}/bedrock-key/check", Operator),
    ("GET", "/v1/keys/{key_id}/circuit", Viewer),
    ("POST", "/v1/keys/{key_id}/circuit/reset", Operator),
    ("GET", "/v1/circuits", Viewer),
    ("GET", "/v1/pricing", Viewer),
    ("PUT", "/v1/pricing", Admin),
    ("GET", "/v1/models", Viewer),
    ("GET", "/v1/models/{model}", Viewer),
    // A PUT that also sets prices needs `admin` (checked by the handler: the body decides).
    ("PUT", "/v1/models/{model}", Operator),
    ("DELETE", "/v1/models/{model}", Operator),
    ("GET", "/v1/usage", Viewer),
    ("GET", "/v1/requests/{request_id}", Viewer),
    ("GET", "/v1/audit", Viewer),
    ("GET", "/v1/statements", Viewer),
    ("GET", "/v1/sign-in-failures", Admin),
];

/// The role an operation needs (`None`: not in the table).
pub fn required(method: &str, path: &str) -> Option<AdminRole> {
    REQUIRED.iter().find(|(m, p, _)| *m == method && *p == path).map(|(_, _, role)| *role)
}

/// Whether `role` may call `method` on the route `pattern` (the router's pattern, `None` when no
/// route matched: the handler answers 404/405 itself).
pub fn check(method: &str, pattern: Option<&str>, role: AdminRole) -> Result<(), ApiError> {
    let Some(pattern) = pattern else { return Ok(()) };
    match required(method, pattern) {
        Some(needed) => at_least(needed, role),
        // HEAD is answered like GET.
        None if method == "HEAD" => check("GET", Some(pattern), role),
        // A method the route does not have: the router answers 405 with `Allow`.
        None if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method)
            || crate::openapi::allowed_methods(pattern).is_some_and(|allowed| !allowed.contains(&method)) =>
        {
            Ok(())
        }
        None => Err(ApiError::new(ErrorKind::Forbidden, format!("{method} {pattern} declares no role; refused"))),
    }
}

/// 403 naming the role needed unless `role` is at least `needed`.
pub fn at_least(needed: AdminRole, role: AdminRole) -> Result<(), ApiError> {
    if role >= needed {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::Forbidden,
        format!("this needs the `{}` role; you are `{}`", needed.as_str(), role.as_str()),
    )
    .field("role"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn roles_are_ordered_and_insufficient_ones_are_named() {
        assert!(at_least(Operator, Admin).is_ok() && at_least(Viewer, Viewer).is_ok());
        let e = at_least(Admin, Operator).unwrap_err();
        assert!(e.message.contains("`admin`") && e.message.contains("`operator`"), "{}", e.message);
        assert!(check("PUT", Some("/v1/pricing"), Operator).is_err());
        assert!(check("HEAD", Some("/v1/users"), Viewer).is_ok());
        assert!(check("POST", Some("/v1/nowhere"), Admin).is_err(), "an undeclared route is refused");
        assert!(check("DELETE", Some("/v1/users"), Viewer).is_ok(), "a method the route lacks: the router's 405");
        assert!(check("TRACE", Some("/v1/auth/login"), Viewer).is_ok());
        assert!(check("PUT", Some("/v1/auth/login"), Viewer).is_ok());
        assert!(check("GET", None, Viewer).is_ok(), "no route: the router answers");
    }

    #[test]
    fn every_entry_is_unique() {
        for (i, (m, p, _)) in REQUIRED.iter().enumerate() {
            assert!(!REQUIRED[i + 1..].iter().any(|(m2, p2, _)| m == m2 && p == p2), "{m} {p} twice");
        }
    }
}
