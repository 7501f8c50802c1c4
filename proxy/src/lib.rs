//! The proxy: the hot path between Claude Code and its models.
//!
//! - `startup`: builds the server, the key table follower and the event publisher.
//! - `forward`: the request pipeline: authenticate, read the body, ask `route`, do it.
//! - `route`: the routing policy and the failover's model resolution, as pure decisions.
//! - `body`: what is read of a request body (`model`, `stream`) before forwarding.
//! - `relay`: headers passed on, the request to Anthropic, the answer streamed back.
//! - `failover`: the replay on Bedrock; `bedrock`: the Bedrock client and body rules;
//!   `listing`: the key's own Bedrock model listing, cached.
//! - `breaker`, `circuits`: the per-key circuit breaker and its transitions shared by the fleet.
//! - `spend`: month-to-date spend per user, shared by the fleet, for budgets.
//! - `tap`: reads usage from the bytes passing by.
//! - `usage`: one `request_completed` event per request.
//! - `rate_limits`: the latest Anthropic rate-limit state per key, carried in those events.
//! - `directory`: the in-memory key table, folded live from the admin stream.
//! - `publisher`, `spool`: events to JetStream without waiting, durable while NATS is away.
//! - `error`: the proxy's own answers, in Anthropic's error format.
//! - `metrics`, `routes`: `/metrics`, `/health`, `/ready`.
//! - `statusline`: `/ccp/statusline`, the developer's Plan limits, Bedrock state and budget as
//!   one line for Claude Code's status line, from memory.
//!
//! Invariants: the request path never waits on NATS or ClickHouse; an access key is never
//! logged, put in a metric label or in an event (only its hash or display prefix).

mod bedrock;
mod body;
mod breaker;
mod circuits;
mod directory;
mod error;
mod failover;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod listing;
mod metrics;
mod publisher;
mod rate_limits;
mod relay;
mod reserve;
mod route;
mod routes;
pub mod spend;
mod spool;
mod startup;
mod statusline;
mod tap;
mod usage;

use ccp_runtime::config::Settings;
use ccp_runtime::telemetry::ServiceArgs;

pub use body::claude_code_shape;

/// The body a failover sends Bedrock for a Messages `body`, under `settings`' rules (for the
/// benchmark, which replays what the proxy sends).
pub fn bedrock_body(
    settings: &ccp_runtime::config::BedrockSettings,
    body: &[u8],
    beta_header: Option<&str>,
) -> Result<Vec<u8>, String> {
    bedrock::Rules::from(settings).adapt(body, beta_header).map(|r| r.body)
}

/// The Bedrock model a failover calls for `requested` under the shipped catalogue and
/// `settings`, for a key in `region` with `key_default`, without a model listing.
pub fn bedrock_model_for(
    settings: &ccp_runtime::config::BedrockSettings,
    requested: Option<&str>,
    region: &str,
    key_default: Option<&str>,
) -> Option<String> {
    let catalogue = ccp_schemas::catalogue::Catalogue::shipped();
    let query = route::TargetQuery {
        requested,
        region,
        key_default,
        catalogue: &catalogue,
        family_fallback: &settings.family_fallback,
    };
    route::resolve_target(&query, None).map(|t| t.model_id)
}
pub use forward::{anthropic_client, proxied_path, ProxiedPath};
pub use relay::{forwarded_headers, move_forwarded, relay_answer, upstream_request};
pub use spool::{Record as SpoolRecord, Spool};
pub use startup::Application;

/// Runs the command line's command.
pub async fn run(args: ServiceArgs, settings: Settings) -> anyhow::Result<()> {
    match args.command.as_deref() {
        None | Some("serve") => Application::build(settings).await?.run_until_stopped().await,
        Some(other) => anyhow::bail!("unknown command `{other}` (try --help)"),
    }
}
