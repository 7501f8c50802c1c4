//! `ccp-proxy`: the gateway Claude Code talks to.

use std::process::ExitCode;

use ccp_runtime::telemetry::{exit_code, start, Start};

const USAGE: &str = "ccp-proxy [--config PATH] [--print-config] [--version]

Serves Claude Code traffic on proxy.listen. Settings: defaults, then the TOML file given by
--config or CCP_CONFIG, then CCP__SECTION__KEY environment variables (see README).";

#[actix_web::main]
async fn main() -> ExitCode {
    match start("ccp-proxy", USAGE) {
        Start::Run(args, settings) => exit_code("ccp-proxy", ccp_proxy::run(args, *settings).await),
        Start::Exit(code) => code,
    }
}
