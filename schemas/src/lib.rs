//! The wire contract of ClaudeCodeProxy and the pieces every service shares.
//!
//! - [`events`]: the event envelope and every event payload (the log's contract).
//! - [`subjects`]: subject, stream, KV bucket and consumer names under one prefix.
//! - [`streams`]: JetStream stream and bucket definitions, created idempotently.
//! - [`migrations`]: numbered ClickHouse migrations and their runner.
//! - [`secrets`]: access-key and Bedrock-key codecs; the only place secrets are handled.
//! - [`calendar`]: budget months, local days and hours in a time zone; one rule for DST gaps and folds.
//! - [`catalogue`]: the model catalogue (shipped entries + catalogue events) and its matcher.
//! - [`config`]: typed settings (defaults → TOML file → `CCP__…` environment).
//! - [`state`]: the fold of admin events into user and access-key state.
//! - [`ids`]: typed, prefixed identifiers.
//! - [`telemetry`]: logging, NATS connection and shutdown signals.

pub mod calendar;
pub mod catalogue;
pub mod config;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod migrations;
pub mod pricing;
pub mod secrets;
pub mod state;
pub mod streams;
pub mod subjects;
pub mod telemetry;

pub use events::{Actor, Envelope, Event};
pub use subjects::Namespace;
