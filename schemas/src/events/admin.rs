//! Admin authentication events (subject `<prefix>.admin.auth`), for the audit log.

use serde::{Deserialize, Serialize};

use crate::ids::AdminId;

/// How an admin authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// Username and password.
    Password,
    /// A long-lived API token.
    ApiToken,
}

/// Why a login failed. Never the submitted password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// Unknown username or wrong password (deliberately indistinguishable).
    BadCredentials,
    /// Too many recent failures from this address or for this username.
    Throttled,
    /// The admin account is disabled.
    Disabled,
}

/// An admin logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLoginSucceeded {
    /// The admin.
    pub admin_id: AdminId,
    /// Their username.
    pub username: String,
    /// How.
    pub method: LoginMethod,
}

/// A login attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLoginFailed {
    /// The username tried (truncated to 64 characters).
    pub username: String,
    /// Why.
    pub reason: LoginFailure,
}
