//! The decisions: pure functions from an aggregate's current state (folded from its own events)
//! and a command to the events that record it, or the reason it is refused. No I/O here; the
//! [`crate::store`] loads the state, calls `decide` and appends with a concurrency check.
//!
//! A command that would change nothing decides no events (deactivating an inactive user,
//! revoking a revoked key): repeating a command is harmless.
//!
//! One file per aggregate, each with its given/when/then tests: `users.rs` ([`decide_user`],
//! and a property test of command sequences), `keys.rs` ([`decide_key`]: access keys and their
//! Bedrock API keys), `teams.rs` ([`decide_team`]: a team's name, budget, routing default,
//! deletion), `admins.rs` ([`decide_admin`] and the admin state it decides on, folded
//! here since only the admin API keeps it); `testing.rs` is the tests' shared framework.

mod admins;
mod keys;
mod teams;
#[cfg(test)]
mod testing;
mod users;

use ccp_schemas::events::Event;

pub use self::admins::{decide_admin, AdminCommand, AdminState, TokenState};
pub use self::keys::{decide_key, KeyCommand, RECHECK_RECORD_AFTER};
pub use self::teams::{decide_team, TeamCommand};
pub use self::users::{decide_user, UserCommand};

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The aggregate does not exist.
    NotFound(String),
    /// The command contradicts the aggregate's state.
    Conflict(String),
}

/// A decision: the events to append.
pub type Decision = Result<Vec<Event>, Rejection>;
