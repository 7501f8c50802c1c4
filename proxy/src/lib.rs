//! The proxy: the hot path between Claude Code and its models.
//!
//! - `startup`: builds the server, the key table follower and the event publisher.
//! - `forward`: authenticate, read, forward, stream back (the request path).
//! - `tap`: reads usage from the bytes passing by.
//! - `usage`: one `request_completed` event per request.
//! - `rate_limits`: the latest Anthropic rate-limit state per key, carried in those events.
//! - `directory`: the in-memory key table, folded live from the admin stream.
//! - `publisher`, `spool`: events to JetStream without waiting, durable while NATS is away.
//! - `error`: the proxy's own answers, in Anthropic's error format.
//! - `metrics`, `routes`: `/metrics`, `/health`, `/ready`.
//!
//! Invariants: the request path never waits on NATS or ClickHouse; an access key is never
//! logged, put in a metric label or in an event (only its hash or display prefix).

mod bedrock;
mod breaker;
mod circuits;
mod directory;
mod error;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod publisher;
mod rate_limits;
mod routes;
pub mod spend;
mod spool;
mod startup;
mod tap;
mod usage;

use ccp_schemas::config::Settings;
use ccp_schemas::telemetry::ServiceArgs;

pub use forward::{
    anthropic_client, claude_code_shape, forwarded_headers, move_forwarded, proxied_path, relay_answer,
    upstream_request, ProxiedPath,
};
pub use spool::{Record as SpoolRecord, Spool};
pub use startup::Application;

/// Runs the command line's command.
pub async fn run(args: ServiceArgs, settings: Settings) -> anyhow::Result<()> {
    match args.command.as_deref() {
        None | Some("serve") => Application::build(settings).await?.run_until_stopped().await,
        Some(other) => anyhow::bail!("unknown command `{other}` (try --help)"),
    }
}
