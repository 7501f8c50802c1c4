//! Events of the user aggregate (subject `<prefix>.admin.user.<user_id>`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// Whether a user's keys work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Keys work.
    #[default]
    Active,
    /// Every key of the user is refused.
    Inactive,
}

/// How a user's requests are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoutingStrategy {
    /// Anthropic first, Bedrock on rate limits and failures (the default).
    #[default]
    PlanFirst,
    /// Always Bedrock.
    BedrockOnly,
    /// Never Bedrock.
    PlanOnly,
}

/// A user was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The new user.
    pub user_id: UserId,
    /// Display name, unique among users.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Contact address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Initial status.
    pub status: UserStatus,
}

/// Some of a user's descriptive fields changed; absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// The user.
    pub user_id: UserId,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description (`Some(None)` is not representable: an empty string clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New email (empty string clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A user was deactivated: all their keys stop working.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDeactivated {
    /// The user.
    pub user_id: UserId,
    /// Why, as the admin wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A deactivated user was reactivated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserReactivated {
    /// The user.
    pub user_id: UserId,
}

/// A user's monthly budget was set or cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetSet {
    /// The user.
    pub user_id: UserId,
    /// Monthly limit in USD; `None` means unlimited.
    #[serde(default, with = "crate::pricing::decimal_str_option")]
    pub monthly_limit_usd: Option<Decimal>,
}

/// A user's routing strategy was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingStrategySet {
    /// The user.
    pub user_id: UserId,
    /// The new strategy.
    pub strategy: RoutingStrategy,
}
