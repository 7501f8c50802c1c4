//! `ccp-admin`: the admin API and dashboard for platform engineers.

use std::process::ExitCode;

use ccp_runtime::telemetry::{exit_code, start, Start};

const USAGE: &str = "ccp-admin [--config PATH] [--print-config] [--version] [COMMAND]

Commands:
  serve        (default) serve the admin API on admin.listen
  gen-secrets  print a fresh [secrets] section (access-key pepper, Bedrock master key) and exit
  recover      break-glass, on a server with this deployment's configuration: read a username
               and a new password (stdin lines, or prompts) and make that admin usable again
               (created if missing, else password set, enabled, role admin); audited

Settings: defaults, then the TOML file given by --config or CCP_CONFIG, then CCP__SECTION__KEY
environment variables (see README).";

#[actix_web::main]
async fn main() -> ExitCode {
    match start("ccp-admin", USAGE) {
        Start::Run(args, settings) => exit_code("ccp-admin", ccp_admin_api::run(args, *settings).await),
        Start::Exit(code) => code,
    }
}
