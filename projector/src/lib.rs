//! The projector: builds every read model from the event log.
//!
//! Invariant: projections are derived data; each can be thrown away and rebuilt from sequence 1.

pub mod alerts;
pub mod analytics;
mod metrics;
pub mod rebuild;
mod startup;
pub mod state;

use ccp_runtime::config::Settings;
use ccp_runtime::telemetry::ServiceArgs;

pub use startup::Application;

/// Runs the command line's command.
pub async fn run(args: ServiceArgs, settings: Settings) -> anyhow::Result<()> {
    match args.command.as_deref() {
        None | Some("serve") => Application::build(settings).await?.run_until_stopped().await,
        Some("migrate") => {
            let applied = ccp_runtime::migrate::migrate(&settings.clickhouse).await?;
            if applied.is_empty() {
                tracing::info!(database = %settings.clickhouse.database, "ClickHouse schema is up to date");
            } else {
                tracing::info!(database = %settings.clickhouse.database, ?applied, "ClickHouse migrations applied");
            }
            Ok(())
        }
        Some("rebuild") => {
            let ns = settings.nats.namespace()?;
            let client = ccp_runtime::telemetry::connect_nats(&settings.nats, "ccp-projector-rebuild").await?;
            let js = async_nats::jetstream::new(client);
            ccp_runtime::streams::ensure(&js, &ns, &ccp_runtime::streams::StreamPolicy::from(&settings.nats)).await?;
            ccp_runtime::migrate::migrate(&settings.clickhouse).await?;
            rebuild::rebuild(&settings, &js, &ns).await
        }
        Some(other) => anyhow::bail!("unknown command `{other}` (try --help)"),
    }
}
