//! What every ClaudeCodeProxy service runs on, over the contract in [`ccp_schemas`]:
//!
//! - `bedrock` (feature `bedrock`): the Bedrock Runtime client of the proxy and the admin API.
//! - [`config`]: typed settings (defaults → TOML file → `CCP__…` environment), with errors that
//!   name the key, its source and the accepted values.
//! - [`egress`]: how outbound connections leave (HTTPS proxy, bypass list, extra CA), for
//!   every outbound client.
//! - [`telemetry`]: command line (`--version` with the git commit of the build), logging, NATS
//!   connection and shutdown signals.
//! - [`streams`]: JetStream stream and bucket definitions, created idempotently.
//! - [`snapshot`]: a service's fold of a stream saved with its sequence, so a start reads state
//!   rather than history (only by the build that wrote it, only while the stream matches).
//! - [`follow`]: the one way to follow a stream: resume, back-off, and a policy for events of a
//!   newer version (fail closed where state gates access).
//! - [`migrate`]: the ClickHouse client and the runner of [`ccp_schemas::migrations`].
//! - [`tables`]: the ClickHouse rows every service reads or writes, one type per table.
//! - [`compat`]: each service announces the contract revision it reads; writers hold back
//!   events older readers could not read (rolling upgrades).
//! - [`tls`]: CA bundles and client certificates from files, and the rustls client
//!   configuration outbound connections build from them.
//! - [`ops`]: the ops listener (`ops.listen`): `/health`, `/ready`, `/metrics` off the public
//!   port; [`metrics`]: what every `/metrics` shares (`build_info`, `process_*`, rendering).

#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod compat;
pub mod config;
pub mod egress;
pub mod follow;
pub mod metrics;
pub mod migrate;
pub mod ops;
pub mod snapshot;
pub mod streams;
pub mod tables;
pub mod telemetry;
pub mod tls;
