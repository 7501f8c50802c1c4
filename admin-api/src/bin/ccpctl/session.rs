//! Where the credentials come from: `CCPCTL_TOKEN`, or the session file `login` writes
//! (`session.json`, mode 0600, holding the URL, the session token and its expiry — never a
//! password). A saved session is only ever sent to the URL it was made for.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::{normalize_url, CliError, CliResult};

/// The admin API URL when nothing says otherwise: where `scripts/run` starts it by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081";
/// The admin API's listen address in `scripts/run`'s (and the service's) settings.
pub const LISTEN_VAR: &str = "CCP__ADMIN__LISTEN";
const FILE: &str = "session.json";

/// What `login` saves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSession {
    /// The admin API it is for.
    pub url: String,
    /// The session token (`Authorization: Bearer`).
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Who logged in.
    pub username: String,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `$CCPCTL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ccpctl`, else `~/.config/ccpctl`.
pub fn config_dir() -> CliResult<PathBuf> {
    if let Some(dir) = env_nonempty("CCPCTL_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env_nonempty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("ccpctl"));
    }
    env_nonempty("HOME").map(|home| PathBuf::from(home).join(".config").join("ccpctl")).ok_or_else(|| {
        CliError::Usage("cannot find a config directory: set CCPCTL_CONFIG_DIR (or HOME or XDG_CONFIG_HOME)".into())
    })
}

/// The session file's path.
pub fn path() -> CliResult<PathBuf> {
    Ok(config_dir()?.join(FILE))
}

/// The saved session, if any.
pub fn load() -> CliResult<Option<SavedSession>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Other(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))))
        }
    };
    warn_if_shared(&path);
    let session = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; delete it and run `ccpctl login`", path.display()))?;
    Ok(Some(session))
}

#[cfg(unix)]
fn warn_if_shared(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            crate::output::note(&format!(
                "warning: {} is readable by other users; run `chmod 600` on it (or log in again)",
                path.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &std::path::Path) {}

/// Writes the session file (owner-only), replacing any previous one atomically.
pub fn save(session: &SavedSession) -> CliResult<PathBuf> {
    let dir = config_dir()?;
    create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(FILE);
    let tmp = dir.join(format!(".{FILE}.{}", ulid::Ulid::new()));
    let json = serde_json::to_vec_pretty(session).context("cannot encode the session")?;
    let written = (|| -> std::io::Result<()> {
        let mut file = open_private(&tmp)?;
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError::Other(anyhow::Error::new(e).context(format!("cannot write {}", path.display()))));
    }
    Ok(path)
}

/// Deletes the session file; `false` if there was none.
pub fn remove() -> CliResult<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::Other(anyhow::Error::new(e).context(format!("cannot delete {}", path.display())))),
    }
}

#[cfg(unix)]
fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn open_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Where a request goes and with which credential.
#[derive(Debug)]
pub struct Target {
    /// The normalised admin API URL.
    pub url: String,
    /// The bearer token, if one applies to this URL.
    pub token: Option<String>,
    /// Why there is none (shown when a command needs one).
    pub no_token_reason: String,
}

/// The admin API of this machine's `scripts/run`: `http://` + `CCP__ADMIN__LISTEN` (an unspecified
/// address such as `0.0.0.0` is reached on loopback), else [`DEFAULT_URL`].
pub fn local_url() -> CliResult<String> {
    let Some(listen) = env_nonempty(LISTEN_VAR) else { return Ok(DEFAULT_URL.to_owned()) };
    let listen = listen.trim();
    let host_port = match listen.parse::<std::net::SocketAddr>() {
        Ok(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            addr.to_string()
        }
        Err(_) => listen.to_owned(),
    };
    normalize_url(&format!("http://{host_port}")).map_err(|_| {
        CliError::Usage(format!("{LISTEN_VAR}={listen} is not a listen address (e.g. 127.0.0.1:8081); set --url"))
    })
}

/// The URL `login` uses: `--url`/`CCPCTL_URL`, else the saved session's (even if the file is
/// unreadable, logging in again must work), else [`local_url`].
pub fn login_url(url_flag: Option<&str>) -> CliResult<String> {
    if let Some(flag) = url_flag.filter(|u| !u.trim().is_empty()) {
        return normalize_url(flag);
    }
    match load().ok().flatten() {
        Some(saved) => Ok(saved.url),
        None => local_url(),
    }
}

/// Picks the URL and token: `--url`/`CCPCTL_URL`, else the saved session's URL (not with
/// `CCPCTL_TOKEN`: that token is not the session's), else [`local_url`]; `CCPCTL_TOKEN`, else
/// the saved session if it is for that URL and not expired.
pub fn resolve(url_flag: Option<&str>) -> CliResult<Target> {
    let flag = url_flag.filter(|u| !u.trim().is_empty()).map(normalize_url).transpose()?;
    if let Some(token) = env_nonempty("CCPCTL_TOKEN") {
        let url = match flag {
            Some(url) => url,
            None => local_url()?,
        };
        return Ok(Target { url, token: Some(token.trim().to_owned()), no_token_reason: String::new() });
    }
    let saved = load()?;
    let url = match flag.or_else(|| saved.as_ref().map(|s| s.url.clone())) {
        Some(url) => url,
        None => local_url()?,
    };
    let (token, no_token_reason) = match saved {
        None => (None, format!("not logged in to {url}")),
        Some(s) if s.url != url => (None, format!("not logged in to {url} (the saved session is for {})", s.url)),
        Some(s) if s.expires_at <= Utc::now() => {
            (None, format!("the session of {} at {url} expired at {}", s.username, s.expires_at.format("%F %T UTC")))
        }
        Some(s) => (Some(s.token), String::new()),
    };
    Ok(Target { url, token, no_token_reason })
}
