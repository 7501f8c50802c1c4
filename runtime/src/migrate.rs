//! Applying the ClickHouse migrations of [`ccp_schemas::migrations`] to a server: the runner
//! behind `ccp-projector migrate` (and the projector at start), its ledger of applied migrations
//! (`schema_migrations`: [`create_ledger`], [`record_applied`]), and the client every service uses.

use ccp_schemas::migrations::{adds_columns, Migration, MIGRATIONS};
use clickhouse::Client;
use serde::Deserialize;

use crate::config::ClickHouseSettings;

/// ClickHouse's "column with this name already exists" (its code differs between versions).
fn column_exists(error: &clickhouse::error::Error) -> bool {
    error.to_string().contains("already exists")
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database name is not a plain identifier.
    #[error("clickhouse.database `{0}` must be letters, digits and _ (starting with a letter)")]
    BadDatabase(String),
    /// The server refused a statement or could not be reached.
    #[error("migration {version} ({name}): {source}")]
    Statement {
        /// The migration.
        version: u32,
        /// Its name.
        name: &'static str,
        /// ClickHouse's error.
        source: clickhouse::error::Error,
    },
    /// Bookkeeping query failed.
    #[error("ClickHouse at {url}: {source}")]
    Server {
        /// The server.
        url: String,
        /// Its error.
        source: clickhouse::error::Error,
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

/// A ClickHouse client for the configured server (no database selected).
pub fn server_client(settings: &ClickHouseSettings) -> Client {
    let client = Client::default().with_url(&settings.url).with_user(&settings.user).with_validation(false);
    if settings.password.is_empty() {
        client
    } else {
        client.with_password(settings.password.expose())
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
    let client = server_client(settings);
    let server = |source| MigrationError::Server { url: settings.url.clone(), source };
    client.query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute().await.map_err(server)?;
    create_ledger(&client, db).await.map_err(server)?;
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
        for stmt in m.statements(db) {
            match client.query(&stmt).execute().await {
                Ok(()) => {}
                // Another replica (or an interrupted run) added the columns already.
                Err(e) if adds_columns(&stmt) && column_exists(&e) => {
                    tracing::info!(version = m.version, name = m.name, "columns already added");
                }
                Err(source) => return Err(MigrationError::Statement { version: m.version, name: m.name, source }),
            }
        }
        record_applied(&client, db, m).await.map_err(server)?;
        tracing::info!(version = m.version, name = m.name, "applied ClickHouse migration");
        done.push(m.version);
    }
    Ok(done)
}

/// Creates `db`'s ledger of applied migrations, `schema_migrations`, unless it exists.
pub async fn create_ledger(client: &Client, db: &str) -> Result<(), clickhouse::error::Error> {
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
             (version UInt32, name String, checksum String, applied_at DateTime('UTC')) \
             ENGINE = MergeTree() ORDER BY version"
        ))
        .execute()
        .await
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
    fn database_names_are_checked() {
        assert!(check_identifier("ccp_test_1").is_ok());
        assert!(check_identifier("ccp; DROP").is_err());
        assert!(check_identifier("1ccp").is_err());
    }
}
