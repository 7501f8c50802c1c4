//! Process plumbing shared by the services: logging, NATS connection, shutdown signals.

use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings, NatsSettings};

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true).with_ansi(ansi);
    let json = json_lines(settings.format, std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let result = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}

/// Whether logs are JSON lines: `auto` means JSON unless a person reads the terminal.
fn json_lines(format: LogFormat, on_terminal: bool) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !on_terminal,
    }
}

/// Connects to NATS with the configured credentials, retrying until `connect_timeout_secs`.
pub async fn connect_nats(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)));
    if !settings.token.is_empty() {
        options = options.token(settings.token.expose().to_owned());
    }
    if let Some(user) = &settings.user {
        options = options.user_and_password(user.clone(), settings.password.expose().to_owned());
    }
    let connect = options.connect(settings.url.as_str());
    let client = tokio::time::timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)), connect)
        .await
        .map_err(|_| {
            anyhow::anyhow!("NATS at {} did not answer within {} s", settings.url, settings.connect_timeout_secs)
        })?
        .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {}: {e}", settings.url))?;
    Ok(client)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                    _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The git commit this build was made from (`unknown` when it was built without git and without
/// `CCP_GIT_COMMIT`; see `runtime/build.rs`).
pub const COMMIT: &str = env!("CCP_GIT_COMMIT");

/// The release version of every binary of the workspace (one version for all).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `--version` prints after the binary's name: `0.1.0 (3f2a9c1d0b7e)`.
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CCP_GIT_COMMIT"), ")");

/// The line `--version` prints: `<binary> <version> (<commit>)`.
pub fn version_line(binary: &str) -> String {
    format!("{binary} {VERSION_LINE}")
}

/// The command line every service binary accepts:
/// `[--config PATH] [--print-config] [--version] [COMMAND]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceArgs {
    /// `--config PATH` (otherwise `CCP_CONFIG`, otherwise defaults and environment only).
    pub config: Option<std::path::PathBuf>,
    /// `--print-config`: print the effective settings (secrets redacted) and exit.
    pub print_config: bool,
    /// The sub-command, if any.
    pub command: Option<String>,
    /// `--help` / `-h`.
    pub help: bool,
    /// `--version` / `-V`: print the version line and exit.
    pub version: bool,
}

impl ServiceArgs {
    /// Parses arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--config" | "-c" => {
                    out.config = Some(args.next().ok_or("--config needs a path")?.into());
                }
                s if s.starts_with("--config=") => out.config = Some(s["--config=".len()..].into()),
                "--print-config" => out.print_config = true,
                "--help" | "-h" => out.help = true,
                "--version" | "-V" => out.version = true,
                s if s.starts_with('-') => return Err(format!("unknown option `{s}` (try --help)")),
                s if out.command.is_none() => out.command = Some(s.to_owned()),
                s => return Err(format!("unexpected argument `{s}` (try --help)")),
            }
        }
        Ok(out)
    }
}

/// What a service binary does after reading its command line and settings.
pub enum Start {
    /// Run the given command with these settings.
    Run(ServiceArgs, Box<crate::config::Settings>),
    /// Exit now (help shown, settings printed, or an error reported on stderr).
    Exit(std::process::ExitCode),
}

/// The common start of every binary: parse arguments, load settings, init logging; handles
/// `--help` and `--print-config`. Errors are reported on stderr in one line.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn start(binary: &str, usage: &str) -> Start {
    use std::process::ExitCode;
    let args = match ServiceArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return Start::Exit(ExitCode::from(2));
        }
    };
    if args.help {
        println!("{usage}");
        return Start::Exit(ExitCode::SUCCESS);
    }
    if args.version {
        println!("{}", version_line(binary));
        return Start::Exit(ExitCode::SUCCESS);
    }
    let settings = match crate::config::Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return Start::Exit(ExitCode::from(2));
        }
    };
    if args.print_config {
        print!("{}", settings.to_redacted_toml());
        return Start::Exit(ExitCode::SUCCESS);
    }
    init_logging(&settings.log);
    Start::Run(args, Box::new(settings))
}

/// The exit code of a finished service, logging the error (with its causes) if there is one.
pub fn exit_code(binary: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{binary} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The JSON body of every service's `GET /health` (with the commit it was built from).
pub fn health_body(service: &str, version: &str) -> serde_json::Value {
    serde_json::json!({ "status": "ok", "service": service, "version": version, "commit": COMMIT })
}

#[cfg(test)]
mod tests {

    #[test]
    fn auto_logs_are_json_unless_on_a_terminal() {
        use super::{json_lines, LogFormat};
        assert!(json_lines(LogFormat::Auto, false) && !json_lines(LogFormat::Auto, true));
        assert!(json_lines(LogFormat::Json, true) && !json_lines(LogFormat::Text, false));
    }

    use super::*;

    fn parse(args: &[&str]) -> Result<ServiceArgs, String> {
        ServiceArgs::parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_options_and_command() {
        let a = parse(&["--config", "/etc/ccp.toml", "migrate"]).unwrap();
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("/etc/ccp.toml")));
        assert_eq!(a.command.as_deref(), Some("migrate"));
        assert!(parse(&["--print-config"]).unwrap().print_config);
        assert!(parse(&["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["--version"]).unwrap().version && parse(&["-V"]).unwrap().version);
    }

    #[test]
    fn the_version_line_names_binary_version_and_commit() {
        let line = version_line("ccp-proxy");
        assert!(line.starts_with(&format!("ccp-proxy {VERSION} (")) && line.ends_with(')'), "{line}");
        assert!(!COMMIT.is_empty() && COMMIT.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
    }
}
