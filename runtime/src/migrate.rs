//! Applying the ClickHouse migrations of [`ccp_schemas::migrations`] to a server: the runner
//! behind `ccp-projector migrate` (and the projector at start), its ledger of applied migrations
//! (`schema_migrations`: [`create_ledger`], [`record_applied`]), and the client every service
//! uses ([`server_client`]: plain HTTP, or HTTPS with a private CA and a client certificate; LZ4).
//! With `clickhouse.cluster` set the migrations run `ON CLUSTER` on replicated engines.

use std::time::Duration;

use ccp_schemas::migrations::{self, adds_columns, Layout, Migration, MIGRATIONS};
use clickhouse::{Client, Compression};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::config::{ClickHouseCompression, ClickHouseSettings};
use crate::tls;

/// ClickHouse's "column with this name already exists" (its code differs between versions).
fn column_exists(error: &clickhouse::error::Error) -> bool {
    error.to_string().contains("already exists")
}

/// A ClickHouse error with its causes, on one line: the client's own message for a failed
/// connection is only "client error (Connect)"; the reason (a refused connection, a certificate
/// no configured CA signed) is in its sources.
pub fn describe(error: &clickhouse::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    let hint = if text.contains("invalid peer certificate") {
        " (check clickhouse.ca_file: it must hold the CA that signed the server's certificate; unset, only public CAs are trusted)"
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        " (the server requires a client certificate: set clickhouse.client_cert_file and clickhouse.client_key_file)"
    } else if text.contains("received fatal alert: Certificate")
        || text.contains("received fatal alert: BadCertificate")
    {
        " (the server refused the client certificate of clickhouse.client_cert_file: expired, or not signed by a CA it trusts)"
    } else if text.contains("Code: 516") || text.contains("Code: 192") || text.contains("Code: 193") {
        " (check clickhouse.user and clickhouse.password)"
    } else {
        ""
    };
    text.push_str(hint);
    text
}

/// `url` without credentials or query (which may hold a password), for messages.
pub fn display_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    if scheme.is_empty() {
        rest.to_owned()
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Why no client could be made from the settings.
#[derive(Debug, thiserror::Error)]
#[error("ClickHouse at {url}: {cause}")]
pub struct ClientError {
    /// The server (without credentials).
    pub url: String,
    /// What is wrong (names the setting or file).
    pub cause: String,
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database name is not a plain identifier.
    #[error("clickhouse.database `{0}` must be letters, digits and _ (starting with a letter)")]
    BadDatabase(String),
    /// The settings cannot make a client (TLS files, combinations).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A statement has no form for the configured cluster.
    #[error("migration {version} ({name}): {error}")]
    Render {
        /// The migration (0: the ledger).
        version: u32,
        /// Its name.
        name: &'static str,
        /// Why.
        error: migrations::RenderError,
    },
    /// The server refused a statement or could not be reached.
    // The causes are in the message (`describe`), so no `source` field repeats them in a chain.
    #[error("migration {version} ({name}) on ClickHouse at {url}: {}", describe(error))]
    Statement {
        /// The migration.
        version: u32,
        /// Its name.
        name: &'static str,
        /// The server (without credentials).
        url: String,
        /// ClickHouse's error.
        error: clickhouse::error::Error,
    },
    /// Bookkeeping query failed.
    #[error("ClickHouse at {url}: {}", describe(error))]
    Server {
        /// The server (without credentials).
        url: String,
        /// Its error.
        error: clickhouse::error::Error,
    },
    /// An applied migration's SQL changed since.
    #[error("migration {version} ({name}) was applied with checksum {applied} but the code has {current}; never edit an applied migration, add a new one")]
    Edited {
        /// The migration.
        version: u32,
        /// Its name.
        name: &'static str,
        /// Recorded checksum.
        applied: String,
        /// Checksum of the embedded SQL.
        current: String,
    },
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct AppliedRow {
    version: u32,
    checksum: String,
}

/// Refuses settings that cannot work, naming the setting: half a client identity, TLS files
/// with an `http://` URL, a cluster name or replication path that cannot be written in DDL.
/// The files themselves are read by [`server_client`].
pub fn check_settings(settings: &ClickHouseSettings) -> Result<(), String> {
    match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(_), None) => return Err(
            "clickhouse.client_cert_file is set without clickhouse.client_key_file: a client certificate needs both"
                .into(),
        ),
        (None, Some(_)) => return Err(
            "clickhouse.client_key_file is set without clickhouse.client_cert_file: a client certificate needs both"
                .into(),
        ),
        _ => {}
    }
    if !is_https(&settings.url) {
        for (key, set) in [
            ("clickhouse.ca_file", settings.ca_file.is_some()),
            ("clickhouse.client_cert_file", settings.client_cert_file.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{key} is set but clickhouse.url `{}` is not https://: TLS files apply to https:// URLs only",
                    display_url(&settings.url)
                ));
            }
        }
    }
    if let Some(cluster) = &settings.cluster {
        migrations::check_cluster_name(cluster)?;
        migrations::check_replication_path(&settings.replication_path)?;
    }
    Ok(())
}

fn is_https(url: &str) -> bool {
    url.trim_start().get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// How idle connections are kept: the client's defaults (ClickHouse closes idle connections
/// after 3 s by default, so the pool gives them up after 2 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A ClickHouse client for the configured server (no database selected): plain HTTP, or HTTPS
/// trusting `ca_file` (else the public roots) and presenting the client certificate if set;
/// compressed as `compression` says. Fails, naming the server and the setting or file, when
/// the settings or TLS files are unusable; connecting happens on the first query.
pub fn server_client(settings: &ClickHouseSettings) -> Result<Client, ClientError> {
    let url = display_url(&settings.url);
    let fail = |cause: String| ClientError { url: url.clone(), cause };
    check_settings(settings).map_err(fail)?;
    let client = if is_https(&settings.url) {
        let roots = tls::root_store(settings.ca_file.as_deref(), settings.ca_file.is_none())
            .map_err(|e| fail(format!("clickhouse.ca_file: {e}")))?;
        let identity = match (&settings.client_cert_file, &settings.client_key_file) {
            (Some(cert), Some(key)) => Some(
                tls::ClientIdentity::load(cert, key)
                    .map_err(|e| fail(format!("clickhouse.client_cert_file/client_key_file: {e}")))?,
            ),
            _ => None,
        };
        let config = tls::client_config(roots, identity).map_err(|e| fail(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_keepalive(Some(TCP_KEEPALIVE));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(std::sync::Arc::unwrap_or_clone(config))
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Client::with_http_client(http_client)
    } else {
        Client::default()
    };
    let compression = match settings.compression {
        ClickHouseCompression::Lz4 => Compression::Lz4,
        ClickHouseCompression::None => Compression::None,
    };
    let client =
        client.with_url(&settings.url).with_user(&settings.user).with_validation(false).with_compression(compression);
    Ok(if settings.password.is_empty() { client } else { client.with_password(settings.password.expose()) })
}

/// The table layout the settings ask for.
pub fn layout(settings: &ClickHouseSettings) -> Layout<'_> {
    match &settings.cluster {
        Some(name) => Layout::Cluster { name, replication_path: &settings.replication_path },
        None => Layout::Single,
    }
}

fn check_identifier(db: &str) -> Result<(), MigrationError> {
    let ok = db.starts_with(|c: char| c.is_ascii_alphabetic())
        && db.len() <= 64
        && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(MigrationError::BadDatabase(db.chars().take(64).collect()))
    }
}

/// Applies every migration not yet applied; returns the versions it applied (empty when the
/// database was up to date). Safe to run again, and from several processes in turn.
pub async fn migrate(settings: &ClickHouseSettings) -> Result<Vec<u32>, MigrationError> {
    let db = settings.database.as_str();
    check_identifier(db)?;
    let client = server_client(settings)?;
    let layout = layout(settings);
    let url = display_url(&settings.url);
    let server = |error| MigrationError::Server { url: url.clone(), error };
    let render = |sql: &str| {
        migrations::render(sql, db, layout).map_err(|error| MigrationError::Render {
            version: 0,
            name: "schema_migrations",
            error,
        })
    };
    client.query(&render("CREATE DATABASE IF NOT EXISTS {db}")?).execute().await.map_err(server)?;
    client.query(&render(migrations::LEDGER_SQL)?).execute().await.map_err(server)?;
    let applied: Vec<AppliedRow> = client
        .query(&format!("SELECT version, any(checksum) AS checksum FROM {db}.schema_migrations GROUP BY version"))
        .fetch_all()
        .await
        .map_err(server)?;
    let mut done = Vec::new();
    for m in MIGRATIONS {
        if let Some(row) = applied.iter().find(|r| r.version == m.version) {
            let current = m.checksum();
            if row.checksum != current {
                return Err(MigrationError::Edited {
                    version: m.version,
                    name: m.name,
                    applied: row.checksum.clone(),
                    current,
                });
            }
            continue;
        }
        let statements = m.statements_for(db, layout).map_err(|error| MigrationError::Render {
            version: m.version,
            name: m.name,
            error,
        })?;
        for stmt in statements {
            match client.query(&stmt).execute().await {
                Ok(()) => {}
                // Another replica (or an interrupted run) added the columns already.
                Err(e) if adds_columns(&stmt) && column_exists(&e) => {
                    tracing::info!(version = m.version, name = m.name, "columns already added");
                }
                Err(error) => {
                    return Err(MigrationError::Statement { version: m.version, name: m.name, url: url.clone(), error })
                }
            }
        }
        record_applied(&client, db, m).await.map_err(server)?;
        tracing::info!(version = m.version, name = m.name, "applied ClickHouse migration");
        done.push(m.version);
    }
    Ok(done)
}

/// Creates `db`'s ledger of applied migrations, `schema_migrations`, unless it exists (on one
/// server; [`migrate`] creates it on the configured layout).
pub async fn create_ledger(client: &Client, db: &str) -> Result<(), clickhouse::error::Error> {
    client.query(&migrations::LEDGER_SQL.replace("{db}", db)).execute().await
}

/// Records in `db`'s ledger that `m` was applied (now, with its checksum).
pub async fn record_applied(client: &Client, db: &str, m: &Migration) -> Result<(), clickhouse::error::Error> {
    client
        .query(&format!(
            "INSERT INTO {db}.schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, now())"
        ))
        .bind(m.version)
        .bind(m.name)
        .bind(m.checksum())
        .execute()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_carry_no_credentials() {
        assert_eq!(display_url("https://u:secret@host:8443/?password=secret"), "https://host:8443/");
        assert_eq!(display_url("http://127.0.0.1:8123"), "http://127.0.0.1:8123");
        assert_eq!(display_url("host:8123?user=a"), "host:8123");
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let https = ClickHouseSettings { url: "https://ch.example.com:8443".into(), ..Default::default() };
        assert!(check_settings(&ClickHouseSettings::default()).is_ok());
        assert!(check_settings(&https).is_ok());
        let half = ClickHouseSettings { client_key_file: Some("/k.pem".into()), ..https.clone() };
        assert!(check_settings(&half).unwrap_err().contains("clickhouse.client_key_file is set without"));
        let plain_ca = ClickHouseSettings { ca_file: Some("/ca.pem".into()), ..Default::default() };
        let err = check_settings(&plain_ca).unwrap_err();
        assert!(err.contains("clickhouse.ca_file") && err.contains("not https://"), "{err}");
        let cluster = ClickHouseSettings { cluster: Some("a b".into()), ..https.clone() };
        assert!(check_settings(&cluster).unwrap_err().contains("clickhouse.cluster"));
        let path = ClickHouseSettings { cluster: Some("c".into()), replication_path: "/x".into(), ..https.clone() };
        assert!(check_settings(&path).unwrap_err().contains("{table}"));
        let err = server_client(&half).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("ClickHouse at https://ch.example.com:8443: clickhouse.client_key_file"), "{err}");
    }

    #[test]
    fn the_layout_follows_the_cluster_setting() {
        assert_eq!(layout(&ClickHouseSettings::default()), Layout::Single);
        let s = ClickHouseSettings { cluster: Some("c".into()), ..Default::default() };
        assert!(
            matches!(layout(&s), Layout::Cluster { name: "c", replication_path } if replication_path.contains("{table}"))
        );
    }

    #[test]
    fn database_names_are_checked() {
        assert!(check_identifier("ccp_test_1").is_ok());
        assert!(check_identifier("ccp; DROP").is_err());
        assert!(check_identifier("1ccp").is_err());
    }
}
