//! What every ClaudeCodeProxy service runs on, over the contract in [`ccp_schemas`]:
//!
//! - `bedrock` (feature `bedrock`): the Bedrock Runtime client of the proxy and the admin API.
//! - [`config`]: typed settings (defaults → TOML file → `CCP__…` environment), with errors that
//!   name the key, its source and the accepted values.
//! - [`telemetry`]: command line, logging, NATS connection and shutdown signals.
//! - [`streams`]: JetStream stream and bucket definitions, created idempotently.
//! - [`follow`]: the one way to follow a stream: resume, back-off, and a policy for events of a
//!   newer version (fail closed where state gates access).
//! - [`migrate`]: the ClickHouse client and the runner of [`ccp_schemas::migrations`].
//! - [`tables`]: the ClickHouse rows every service reads or writes, one type per table.

#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod config;
pub mod follow;
pub mod migrate;
pub mod streams;
pub mod tables;
pub mod telemetry;
