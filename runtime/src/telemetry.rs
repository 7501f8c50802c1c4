//! Process plumbing shared by the services: logging, NATS connection, shutdown signals.

use std::time::Duration;

use ccp_schemas::secrets::SecretString;
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

/// Connects to NATS with the configured TLS material and credentials.
///
/// The first attempt is made here, within `connect_timeout_secs`. A refusal that retrying cannot
/// fix — an untrusted server certificate, a refused client certificate, refused credentials, an
/// unreadable file — is returned as one error naming the URL, the cause and the setting to check.
/// A server that is only unreachable (refused, timed out, not resolvable) is not an error: the
/// client keeps connecting in the background, as a proxy starts and spools without NATS. Either
/// way, a later refusal of the credentials or certificate is logged with the URL at each attempt.
pub async fn connect_nats(settings: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    let url = shown_url(&settings.url);
    let servers = server_list(&settings.url);
    // The buckets this process opens for itself are kept as its streams are.
    let timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
    let first = nats_options(settings, name, &url).await?.connect(servers.as_slice());
    match tokio::time::timeout(timeout, first).await {
        Ok(Ok(client)) => return Ok(client),
        Ok(Err(e)) if !unreachable(&e) => {
            anyhow::bail!("cannot connect to NATS at {url}: {}", nats_cause(&e, settings))
        }
        Ok(Err(e)) => {
            tracing::warn!(nats = %url, error = %e, "NATS is not reachable yet; connecting in the background")
        }
        Err(_) => tracing::warn!(
            nats = %url,
            "NATS did not answer within {} s; connecting in the background",
            timeout.as_secs()
        ),
    }
    let options = nats_options(settings, name, &url).await?.retry_on_initial_connect();
    options.connect(servers.as_slice()).await.map_err(|e| anyhow::anyhow!("cannot connect to NATS at {url}: {e}"))
}

/// The servers of `nats.url`, one per comma-separated URL (async-nats reads one string as one URL).
fn server_list(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// The connection options of `settings`: TLS from the PEM files (read now, so a missing or
/// broken file fails the start naming it), the one configured credential, and a callback that
/// logs refused credentials on every (re)connection attempt.
async fn nats_options(settings: &NatsSettings, name: &str, url: &str) -> anyhow::Result<async_nats::ConnectOptions> {
    let fail = |what: String| anyhow::anyhow!("cannot connect to NATS at {url}: {what}");
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)));
    if settings.ca_file.is_some() || settings.client_cert_file.is_some() {
        // Only the private CA when one is given: a public CA must not vouch for the event log.
        let roots = crate::tls::root_store(settings.ca_file.as_deref(), settings.ca_file.is_none())
            .map_err(|e| fail(format!("nats.ca_file: {e}")))?;
        let identity = match (&settings.client_cert_file, &settings.client_key_file) {
            (Some(cert), Some(key)) => Some(
                crate::tls::ClientIdentity::load(cert, key)
                    .map_err(|e| fail(format!("nats.client_cert_file / nats.client_key_file: {e}")))?,
            ),
            _ => None,
        };
        let config = crate::tls::client_config(roots, identity).map_err(|e| fail(e.to_string()))?;
        options = options.require_tls(true).tls_client_config(std::sync::Arc::unwrap_or_clone(config));
    }
    if let Some(path) = &settings.creds_file {
        // Held as a secret: zeroed when dropped.
        let creds = std::fs::read_to_string(path)
            .map(SecretString::new)
            .map_err(|e| fail(format!("nats.creds_file {}: cannot read it: {e}", path.display())))?;
        // async-nats names the part that did not parse, never the secret.
        options = options
            .credentials(creds.expose())
            .map_err(|e| fail(format!("nats.creds_file {}: {e}", path.display())))?;
    } else if let Some(path) = &settings.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .map(SecretString::new)
            .map_err(|e| fail(format!("nats.nkey_seed_file {}: cannot read it: {e}", path.display())))?;
        NatsSettings::check_user_seed(seed.expose())
            .map_err(|why| fail(format!("nats.nkey_seed_file {}: {why}", path.display())))?;
        options = options.nkey(seed.expose().trim().to_owned());
    } else if !settings.nkey_seed.is_empty() {
        options = options.nkey(settings.nkey_seed.expose().trim().to_owned());
    }
    if !settings.token.is_empty() {
        options = options.token(settings.token.expose().to_owned());
    }
    if let Some(user) = &settings.user {
        options = options.user_and_password(user.clone(), settings.password.expose().to_owned());
    }
    let (url, check) = (url.to_owned(), settings.auth_setting());
    Ok(options.event_callback(move |event| {
        if let async_nats::Event::ClientError(async_nats::ClientError::Other(kind)) = &event {
            // The kinds of `ConnectErrorKind` that retrying will not fix.
            let refused = [
                async_nats::ConnectErrorKind::AuthorizationViolation.to_string(),
                async_nats::ConnectErrorKind::Authentication.to_string(),
                async_nats::ConnectErrorKind::Tls.to_string(),
            ];
            if refused.contains(kind) {
                tracing::error!(nats = %url, error = %kind, "NATS refused the connection; check {check}");
            }
        }
        async {}
    }))
}

/// Whether a failed first attempt only means the server is not there (yet): the caller then
/// connects in the background instead of failing the start.
fn unreachable(e: &async_nats::ConnectError) -> bool {
    use async_nats::ConnectErrorKind as Kind;
    use std::io::ErrorKind as Io;
    match e.kind() {
        Kind::TimedOut | Kind::Dns => true,
        Kind::Io => match io_cause(e) {
            // A TLS failure travels as an I/O error carrying the rustls error.
            Some(io) if tls_cause(io).is_some() => false,
            Some(io) => matches!(
                io.kind(),
                Io::ConnectionRefused
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::NotConnected
                    | Io::AddrNotAvailable
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
                    | Io::TimedOut
                    | Io::UnexpectedEof
                    | Io::BrokenPipe
            ),
            // "expected INFO, got nothing", "broken pipe": closed before it said anything.
            None => true,
        },
        _ => false,
    }
}

/// The I/O error inside a connection error, if there is one.
fn io_cause(e: &async_nats::ConnectError) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = err.source();
    }
    None
}

/// The rustls error an I/O error carries (a failed handshake, an alert from the server).
fn tls_cause(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// One sentence on why the connection was refused, and which setting to look at.
fn nats_cause(e: &async_nats::ConnectError, settings: &NatsSettings) -> String {
    use async_nats::ConnectErrorKind as Kind;
    if let Some(tls) = io_cause(e).and_then(tls_cause) {
        return match tls {
            rustls::Error::InvalidCertificate(_) => {
                let trusted = match &settings.ca_file {
                    Some(ca) => format!("is nats.ca_file ({}) the CA that signed it?", ca.display()),
                    None => "nats.ca_file is not set, so only the system's CAs are trusted".into(),
                };
                format!("TLS: the server's certificate is not trusted ({tls}); {trusted}")
            }
            rustls::Error::AlertReceived(_) => match &settings.client_cert_file {
                Some(cert) => format!(
                    "TLS: the server refused the handshake ({tls}); check the client certificate nats.client_cert_file ({}): expired, or not signed by a CA the server trusts?",
                    cert.display()
                ),
                None => format!(
                    "TLS: the server refused the handshake ({tls}); does it require a client certificate (nats.client_cert_file, nats.client_key_file)?"
                ),
            },
            other => format!("TLS: the handshake failed ({other}); is TLS enabled on the server?"),
        };
    }
    match e.kind() {
        Kind::AuthorizationViolation => {
            format!("the server refused the credentials (authorization violation); check {}", settings.auth_setting())
        }
        Kind::Authentication => format!("could not sign the server's challenge; check {}", settings.auth_setting()),
        _ => e.to_string(),
    }
}

/// The URL as it may be shown: a password in it (`nats://user:secret@host`) is replaced.
fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let rest = one.find("://").map_or(0, |i| i + 3);
            // The credentials end at the authority's last `@` (a password may contain `@`).
            let authority_end = one[rest..].find(['/', '?', '#']).map_or(one.len(), |i| rest + i);
            match one[rest..authority_end].rfind('@') {
                Some(at) => format!("{}<redacted>@{}", &one[..rest], &one[rest + at + 1..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
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
    if let Some(revision) = settings.compat.emulate_contract {
        ccp_schemas::compat::emulate(revision);
        tracing::warn!(
            revision = ccp_schemas::compat::reading(),
            "behaving as a build of an older contract revision (compat.emulate_contract)"
        );
    }
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
    fn every_comma_separated_url_is_a_server() {
        let servers = server_list(" nats://a:4222, nats://b:4222 ,,nats://c:4222");
        assert_eq!(servers, ["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
        for s in servers {
            assert!(s.parse::<async_nats::ServerAddr>().is_ok(), "{s}");
        }
        assert_eq!(server_list("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        // Why: async-nats reads the whole list as one (invalid) URL.
        assert!("nats://a:4222,nats://b:4222".parse::<async_nats::ServerAddr>().is_err());
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
    fn a_password_in_the_nats_url_is_not_shown() {
        assert_eq!(shown_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(shown_url("nats://ccp:hunter2@a:4222, tls://b:4222"), "nats://<redacted>@a:4222,tls://b:4222");
        assert!(!shown_url("tls://token-s3cr3t@nats.internal").contains("s3cr3t"));
        assert_eq!(shown_url("nats://u:p@ss@host:4222"), "nats://<redacted>@host:4222", "a password with @");
    }

    #[test]
    fn the_version_line_names_binary_version_and_commit() {
        let line = version_line("ccp-proxy");
        assert!(line.starts_with(&format!("ccp-proxy {VERSION} (")) && line.ends_with(')'), "{line}");
        assert!(!COMMIT.is_empty() && COMMIT.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)));
    }
}
