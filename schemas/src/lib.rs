//! The contract of ClaudeCodeProxy: what is written to the log and to ClickHouse, and the pure
//! rules every service applies to it. The runtime (settings, logging, NATS, the migration runner)
//! is `ccp-runtime`.
//!
//! - [`events`]: the event envelope and every event payload (the log's contract).
//! - [`compat`]: the contract revision: which builds read which event types (rolling upgrades).
//! - [`subjects`]: subject, stream, KV bucket and consumer names under one prefix.
//! - [`migrations`]: numbered ClickHouse migrations (the analytics tables).
//! - [`secrets`]: access-key and Bedrock-key codecs; the only place secrets are handled.
//! - [`calendar`]: budget months, local days and hours in a time zone; one rule for DST gaps and folds.
//! - [`catalogue`]: the model catalogue (shipped entries + catalogue events) and its matcher.
//! - [`state`]: the fold of admin events into user and access-key state.
//! - [`ids`]: typed, prefixed identifiers.

pub mod calendar;
pub mod catalogue;
pub mod compat;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod migrations;
pub mod pricing;
pub mod secrets;
pub mod state;
pub mod subjects;

pub use events::{Actor, Envelope, Event};
pub use subjects::Namespace;
