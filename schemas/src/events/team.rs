//! Events of the team aggregate (subject `<prefix>.admin.team.<team_id>`) and the membership
//! event of the user aggregate (`user_team_set`, subject `<prefix>.admin.user.<user_id>`).
//!
//! A user belongs to at most one team: membership is a field of the user, so that rule is
//! kept by the user aggregate's own concurrency check. Teams are flat (no parent): a budget is
//! enforced against the user's and the team's month, the stricter applies.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::RoutingStrategy;
use crate::ids::{TeamId, UserId};

/// A team was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamCreated {
    /// The new team.
    pub team_id: TeamId,
    /// Display name, unique among teams (same rules as a user's name).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Some of a team's descriptive fields changed; absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamUpdated {
    /// The team.
    pub team_id: TeamId,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description (an empty string clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A team's monthly budget was set or cleared. It applies to the members' requests together,
/// besides each member's own budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamBudgetSet {
    /// The team.
    pub team_id: TeamId,
    /// Monthly limit in USD; `None` means unlimited.
    #[serde(default, with = "crate::pricing::decimal_str_option")]
    pub monthly_limit_usd: Option<Decimal>,
}

/// A team's routing default was set or cleared: members who never had a routing strategy set
/// of their own are routed by it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRoutingSet {
    /// The team.
    pub team_id: TeamId,
    /// The default; `None`: no default (members use their own, `plan_first` unless set).
    #[serde(default)]
    pub strategy: Option<RoutingStrategy>,
}

/// A team was deleted (only a team without members can be).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamDeleted {
    /// The team.
    pub team_id: TeamId,
}

/// A user joined a team, moved to another, or left theirs (`team_id: None`). Spend already
/// incurred stays with the team it was incurred in (each `request_completed` names its team).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTeamSet {
    /// The user.
    pub user_id: UserId,
    /// Their team from now on; `None`: no team.
    #[serde(default)]
    pub team_id: Option<TeamId>,
}
