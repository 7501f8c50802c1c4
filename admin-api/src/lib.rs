//! The admin API: commands become events, queries read projections and ClickHouse.

pub mod api;
pub mod auth;
pub mod context;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod json;
mod metrics;
pub mod openapi;
pub mod query;
pub mod readiness;
mod recover;
pub mod roles;
pub mod routes;
pub mod scope;
pub mod sso;
mod startup;
pub mod store;
pub mod throttle;
pub mod usage;
pub mod view;

use std::io::Write as _;

use ccp_runtime::config::Settings;
use ccp_runtime::telemetry::ServiceArgs;
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::secrets::envelope::LocalMasterKey;

pub use startup::Application;

/// Runs the command line's command.
pub async fn run(args: ServiceArgs, settings: Settings) -> anyhow::Result<()> {
    match args.command.as_deref() {
        None | Some("serve") => Application::build(settings).await?.run_until_stopped().await,
        Some("gen-secrets") => gen_secrets(),
        Some("recover") => recover::recover(settings).await,
        Some(other) => anyhow::bail!("unknown command `{other}` (try --help)"),
    }
}

/// Prints a `[secrets]` section with fresh random values, for a new deployment's config file.
fn gen_secrets() -> anyhow::Result<()> {
    let pepper = KeyPepper::generate()?;
    let master = LocalMasterKey::generate_b64()?;
    let id = format!("local-{}", chrono::Utc::now().format("%Y%m%d"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "[secrets]")?;
    writeln!(out, "access_key_pepper = \"{}\"", pepper.expose())?;
    writeln!(out, "master_key_provider = \"local\"")?;
    writeln!(out, "master_key_id = \"{id}\"")?;
    writeln!(out, "master_key = \"{}\"", master.expose())?;
    Ok(())
}
