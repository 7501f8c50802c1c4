//! Numbered ClickHouse migrations: the analytics tables' contract, embedded in the binaries and
//! applied by `ccp_runtime::migrate` (`ccp-projector migrate`, and the projector at start).
//!
//! Each migration is a `.sql` file of `;`-separated statements using `IF NOT EXISTS`, so a
//! migration interrupted half-way can simply run again. Applied migrations are recorded in
//! `{db}.schema_migrations` with a checksum; editing an applied migration is refused.

use sha2::{Digest, Sha256};

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; applied in increasing order.
    pub version: u32,
    /// Short name (the file name without number and extension).
    pub name: &'static str,
    /// The statements, with `{db}` for the database.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/0001_initial.sql") },
    Migration { version: 2, name: "usage_rollups", sql: include_str!("../migrations/0002_usage_rollups.sql") },
    Migration { version: 3, name: "plan_limits", sql: include_str!("../migrations/0003_plan_limits.sql") },
    Migration {
        version: 4,
        name: "catalogue_metering",
        sql: include_str!("../migrations/0004_catalogue_metering.sql"),
    },
    Migration { version: 5, name: "rollup_metering", sql: include_str!("../migrations/0005_rollup_metering.sql") },
];

/// Whether a statement is an `ALTER TABLE … ADD COLUMN` (which ClickHouse 18.16 cannot write
/// with `IF NOT EXISTS`).
pub fn adds_columns(stmt: &str) -> bool {
    let upper = stmt.trim_start().to_ascii_uppercase();
    upper.starts_with("ALTER TABLE") && upper.contains("ADD COLUMN")
}

impl Migration {
    /// SHA-256 of the SQL text, recorded when applied.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }

    /// The statements with the database substituted, comments and blank ones removed.
    pub fn statements(&self, db: &str) -> Vec<String> {
        self.sql
            .split(';')
            .map(|stmt| {
                stmt.lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .replace("{db}", db)
            })
            .filter(|s| !s.trim().is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(!m.statements("ccp").is_empty());
        }
    }

    #[test]
    fn every_statement_is_idempotent() {
        for m in MIGRATIONS {
            for stmt in m.statements("ccp") {
                let upper = stmt.to_uppercase();
                // ADD COLUMN cannot say IF NOT EXISTS on 18.16; the runner makes it idempotent.
                assert!(
                    upper.contains("IF NOT EXISTS") || upper.contains("IF EXISTS") || adds_columns(&stmt),
                    "{stmt}"
                );
                assert!(!stmt.contains("{db}"));
            }
        }
    }
}
