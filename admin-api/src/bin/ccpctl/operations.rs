//! Which command calls each operation of the admin API: the one table, printed by
//! `ccpctl endpoints`. `admin-api/tests/cli_surface.rs` checks it against the OpenAPI document in
//! both directions (every operation has a row; every row's command exists), so an operation
//! added to the API without a command fails the tests.
//!
//! This file is plain data: the test includes it as it is.

/// `(method, OpenAPI path, command)`: the command is the words after `ccpctl`, then the flag that
/// selects the operation, if one does (`circuit --reset`).
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    ("POST", "/v1/auth/login", "login"),
    ("POST", "/v1/auth/logout", "logout"),
    ("GET", "/v1/auth/me", "whoami"),
    ("GET", "/v1/admins", "admins list"),
    ("POST", "/v1/admins", "admins create"),
    ("PUT", "/v1/admins/{admin_id}/role", "admins role"),
    ("GET", "/v1/api-tokens", "tokens list"),
    ("POST", "/v1/api-tokens", "tokens issue"),
    ("POST", "/v1/api-tokens/{token_id}/revoke", "tokens revoke"),
    ("POST", "/v1/users", "users create"),
    ("GET", "/v1/users", "users list"),
    ("GET", "/v1/users/{user_id}", "users get"),
    ("PATCH", "/v1/users/{user_id}", "users update"),
    ("POST", "/v1/users/{user_id}/deactivate", "users deactivate"),
    ("POST", "/v1/users/{user_id}/reactivate", "users reactivate"),
    ("PUT", "/v1/users/{user_id}/budget", "users budget"),
    ("PUT", "/v1/users/{user_id}/routing", "users routing"),
    ("POST", "/v1/users/{user_id}/keys", "keys issue"),
    ("GET", "/v1/users/{user_id}/keys", "keys list"),
    ("GET", "/v1/keys/{key_id}", "keys get"),
    ("POST", "/v1/keys/{key_id}/revoke", "keys revoke"),
    ("POST", "/v1/keys/{key_id}/rotate", "keys rotate"),
    ("PUT", "/v1/keys/{key_id}/bedrock", "keys bedrock"),
    ("POST", "/v1/keys/{key_id}/bedrock-key/check", "keys check"),
    ("PUT", "/v1/keys/{key_id}/bedrock-key", "bedrock-key set"),
    ("DELETE", "/v1/keys/{key_id}/bedrock-key", "bedrock-key remove"),
    ("GET", "/v1/keys/{key_id}/circuit", "circuit"),
    ("POST", "/v1/keys/{key_id}/circuit/reset", "circuit --reset"),
    ("GET", "/v1/circuits", "circuits"),
    ("GET", "/v1/pricing", "pricing show"),
    ("PUT", "/v1/pricing", "pricing set"),
    ("GET", "/v1/models", "models list"),
    ("GET", "/v1/models/{model}", "models get"),
    ("PUT", "/v1/models/{model}", "models set"),
    ("DELETE", "/v1/models/{model}", "models remove"),
    ("GET", "/v1/usage", "usage"),
    ("GET", "/v1/users/{user_id}/budget", "budget"),
    ("GET", "/v1/requests/{request_id}", "request"),
    ("GET", "/v1/audit", "audit"),
    ("GET", "/v1/sign-in-failures", "sign-in-failures"),
    ("GET", "/v1/self", "self"),
];
