//! `ccp-projector`: folds the event log into KV state and ClickHouse.

use std::process::ExitCode;

use ccp_runtime::telemetry::{exit_code, start, Start};

const USAGE: &str = "ccp-projector [--config PATH] [--print-config] [--version] [COMMAND]

Commands:
  serve     (default) apply migrations, ensure streams, project events; /health /ready on projector.listen
  migrate   apply pending ClickHouse migrations and exit
  rebuild   rebuild the ClickHouse analytics from sequence 1 into fresh tables and swap them in
            (stop the running projector first), with progress output

Settings: defaults, then the TOML file given by --config or CCP_CONFIG, then CCP__SECTION__KEY
environment variables (see README).";

#[actix_web::main]
async fn main() -> ExitCode {
    match start("ccp-projector", USAGE) {
        Start::Run(args, settings) => exit_code("ccp-projector", ccp_projector::run(args, *settings).await),
        Start::Exit(code) => code,
    }
}
