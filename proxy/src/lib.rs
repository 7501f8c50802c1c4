//! The proxy: the hot path between Claude Code and its models.
//!
//! `startup` binds the server; `routes` holds the handlers.

mod routes;
mod startup;

use ccp_schemas::config::Settings;
use ccp_schemas::telemetry::ServiceArgs;

pub use startup::Application;

/// Runs the command line's command.
pub async fn run(args: ServiceArgs, settings: Settings) -> anyhow::Result<()> {
    match args.command.as_deref() {
        None | Some("serve") => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Some(other) => anyhow::bail!("unknown command `{other}` (try --help)"),
    }
}
