//! Numbered ClickHouse migrations: the analytics tables' contract, embedded in the binaries and
//! applied by `ccp_runtime::migrate` (`ccp-projector migrate`, and the projector at start).
//!
//! Each migration is a `.sql` file of `;`-separated statements using `IF NOT EXISTS`, so a
//! migration interrupted half-way can simply run again. Applied migrations are recorded in
//! `{db}.schema_migrations` with a checksum; editing an applied migration is refused.
//!
//! The files are written for one server. [`Layout::Cluster`] renders the same statements for a
//! self-hosted cluster ([`on_cluster`]): `ON CLUSTER <name>` on every statement and the
//! `Replicated` form of every `*MergeTree` engine, so the checksums (of the files) are the same
//! in both layouts.

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
    Migration {
        version: 6,
        name: "dimensions_and_user_order",
        sql: include_str!("../migrations/0006_dimensions_and_user_order.sql"),
    },
    Migration { version: 7, name: "teams", sql: include_str!("../migrations/0007_teams.sql") },
    Migration { version: 8, name: "team_rollups", sql: include_str!("../migrations/0008_team_rollups.sql") },
];

/// The ledger of applied migrations, `{db}.schema_migrations` (created before any migration).
pub const LEDGER_SQL: &str = "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
     (version UInt32, name String, checksum String, applied_at DateTime('UTC')) \
     ENGINE = MergeTree() ORDER BY version";

/// The ZooKeeper path of a replicated table unless configured: one per shard, database and
/// table (`{shard}` is the server's macro, `{db}` and `{table}` are filled in here, because
/// ClickHouse 18.16 has no `{database}`/`{table}` macros).
pub const DEFAULT_REPLICATION_PATH: &str = "/clickhouse/tables/{shard}/{db}/{table}";

/// Where the tables live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout<'a> {
    /// One server: the statements as written.
    Single,
    /// A cluster of the servers' `remote_servers`: every statement `ON CLUSTER name`, tables
    /// on `Replicated*MergeTree` engines at `replication_path`.
    Cluster {
        /// The cluster's name.
        name: &'a str,
        /// ZooKeeper path template (`{db}`, `{table}` filled in; `{shard}` left to the server).
        replication_path: &'a str,
    },
}

/// Why a statement has no cluster form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The statement is not one of the forms the renderer knows.
    #[error("no ON CLUSTER form for the statement starting `{0}`: the renderer knows CREATE DATABASE/TABLE/VIEW/MATERIALIZED VIEW, ALTER TABLE and DROP TABLE/VIEW")]
    Unsupported(String),
    /// A table engine with no replicated form.
    #[error("table {table}: engine {engine} has no replicated form (use a *MergeTree engine)")]
    Engine {
        /// The table.
        table: String,
        /// Its engine.
        engine: String,
    },
    /// A bad cluster name or replication path.
    #[error("{0}")]
    Setting(String),
}

/// Whether a cluster name can be written in a statement (letters, digits, `_`, `-`, `.`).
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "clickhouse.cluster `{}` must be the name of a cluster in the servers' remote_servers: letters, digits, _, - and .",
            name.chars().take(64).collect::<String>()
        ))
    }
}

/// Whether a replication path template can be written in a statement: it starts with `/`,
/// holds no quote or backslash, and contains `{table}` (else every table would share one path).
pub fn check_replication_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains(['\'', '\\']) || path.chars().any(char::is_control) {
        return Err(format!(
            "clickhouse.replication_path `{}` must be a ZooKeeper path starting with / without quotes or backslashes",
            path.chars().take(128).collect::<String>()
        ));
    }
    if !path.contains("{table}") {
        return Err("clickhouse.replication_path must contain {table} (each table needs its own path)".into());
    }
    Ok(())
}

/// Heads of the statements the cluster renderer knows, as words; the object's name follows.
const HEADS: &[&[&str]] = &[
    &["CREATE", "DATABASE", "IF", "NOT", "EXISTS"],
    &["CREATE", "TABLE", "IF", "NOT", "EXISTS"],
    &["CREATE", "MATERIALIZED", "VIEW", "IF", "NOT", "EXISTS"],
    &["CREATE", "VIEW", "IF", "NOT", "EXISTS"],
    &["ALTER", "TABLE"],
    &["DROP", "TABLE", "IF", "EXISTS"],
    &["DROP", "VIEW", "IF", "EXISTS"],
];

/// Engines of the MergeTree family, each with a `Replicated` form taking the ZooKeeper path and
/// the replica name before its own arguments.
const MERGE_TREES: &[&str] = &[
    "MergeTree",
    "ReplacingMergeTree",
    "SummingMergeTree",
    "AggregatingMergeTree",
    "CollapsingMergeTree",
    "VersionedCollapsingMergeTree",
    "GraphiteMergeTree",
];

/// `stmt` (with its database already substituted) for a cluster: `ON CLUSTER `name`` after the
/// object's name, and a `*MergeTree` engine replaced by its `Replicated` form at
/// `replication_path` (with `{db}` and `{table}` filled in) with replica `{replica}`.
pub fn on_cluster(stmt: &str, cluster: &str, replication_path: &str) -> Result<String, RenderError> {
    check_cluster_name(cluster).map_err(RenderError::Setting)?;
    check_replication_path(replication_path).map_err(RenderError::Setting)?;
    if backfills(stmt) {
        // Data, not DDL: it runs on the server the runner talks to (as the projector's inserts
        // do), and replication copies it to that shard's other replicas.
        return Ok(stmt.to_owned());
    }
    let unsupported = || RenderError::Unsupported(stmt.trim().lines().next().unwrap_or("").chars().take(80).collect());
    let (head, name_at) =
        HEADS.iter().find_map(|head| Some((*head, after_words(stmt, head)?))).ok_or_else(unsupported)?;
    let rest = &stmt[name_at..];
    let name_len = rest.find(|c: char| c.is_whitespace() || c == '(' || c == ';').unwrap_or(rest.len());
    if name_len == 0 {
        return Err(unsupported());
    }
    let name_end = name_at + name_len;
    let name = &stmt[name_at..name_end];
    let marker = format!(" ON CLUSTER `{cluster}`");
    let mut out = format!("{}{marker}{}", &stmt[..name_end], &stmt[name_end..]);
    let creates = head[0] == "CREATE" && head[1] != "DATABASE";
    if !creates {
        return Ok(out);
    }
    let (db, table) = match name.rsplit_once('.') {
        Some((db, table)) => (db.trim_matches('`'), table.trim_matches('`')),
        None => ("", name.trim_matches('`')),
    };
    match engine_at(&out, name_end + marker.len()) {
        Some((start, engine, args, end)) => {
            let replicated = format!("Replicated{engine}");
            if !MERGE_TREES.contains(&engine.as_str()) {
                return Err(RenderError::Engine { table: table.into(), engine });
            }
            let path = replication_path.replace("{db}", db).replace("{table}", table);
            let args = if args.trim().is_empty() { String::new() } else { format!(", {}", args.trim()) };
            out.replace_range(start..end, &format!("ENGINE = {replicated}('{path}', '{{replica}}'{args})"));
            Ok(out)
        }
        // A view (or a materialized view writing `TO` a table) keeps no data of its own.
        None if head[1] != "TABLE" => Ok(out),
        None => Err(RenderError::Engine { table: table.into(), engine: "(none)".into() }),
    }
}

/// Where the name after the words `head` starts in `stmt` (words case-insensitive, separated by
/// whitespace), or `None` when `stmt` does not start with them.
fn after_words(stmt: &str, head: &[&str]) -> Option<usize> {
    let mut at = stmt.len() - stmt.trim_start().len();
    for word in head {
        let rest = &stmt[at..];
        let candidate = rest.get(..word.len())?;
        let next = rest[word.len()..].chars().next();
        if !candidate.eq_ignore_ascii_case(word) || !next.is_some_and(char::is_whitespace) {
            return None;
        }
        let after = &rest[word.len()..];
        at += word.len() + (after.len() - after.trim_start().len());
    }
    Some(at)
}

/// The `ENGINE = Name(args)` clause of a CREATE statement at parenthesis depth 0 from `from`
/// (before any `AS`): its byte range, the engine's name and its argument text.
fn engine_at(stmt: &str, from: usize) -> Option<(usize, String, String, usize)> {
    let bytes = stmt.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = from;
    let word_at = |i: usize, word: &str| {
        stmt.get(i..i + word.len()).is_some_and(|w| w.eq_ignore_ascii_case(word))
            && (i == 0 || !is_word_byte(bytes[i - 1]))
            && bytes.get(i + word.len()).is_none_or(|b| !is_word_byte(*b))
    };
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if b == b'\\' {
                i += 1;
            } else if b == q {
                quote = None;
            }
        } else if matches!(b, b'\'' | b'`' | b'"') {
            quote = Some(b);
        } else if b == b'(' {
            depth += 1;
        } else if b == b')' {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && word_at(i, "AS") {
            return None;
        } else if depth == 0 && word_at(i, "ENGINE") {
            let start = i;
            let rest = stmt[i + "ENGINE".len()..].trim_start().strip_prefix('=')?.trim_start();
            let name_at = stmt.len() - rest.len();
            let name_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let engine = rest[..name_len].to_owned();
            let after_name = &stmt[name_at + name_len..];
            let open = after_name.len() - after_name.trim_start().len();
            if after_name[open..].starts_with('(') {
                let args_at = name_at + name_len + open + 1;
                let close = matching_paren(stmt, args_at)?;
                return Some((start, engine, stmt[args_at..close].to_owned(), close + 1));
            }
            return Some((start, engine, String::new(), name_at + name_len));
        }
        i += 1;
    }
    None
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The index of the `)` closing the parenthesis opened just before `from`.
fn matching_paren(stmt: &str, from: usize) -> Option<usize> {
    let mut depth = 1usize;
    for (i, b) in stmt.bytes().enumerate().skip(from) {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether a statement is a backfill, `INSERT INTO table (columns) SELECT …`: the rows a new
/// derived table needs from the tables before it (migration 0006). It has no `ON CLUSTER` form
/// and is written to be idempotent by its own condition (it copies only what is not there yet,
/// or what a second copy cannot change).
pub fn backfills(stmt: &str) -> bool {
    let upper = stmt.trim_start().to_ascii_uppercase();
    upper.starts_with("INSERT INTO") && upper.contains("SELECT") && !upper.contains("VALUES")
}

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

    /// The statements for `layout` (for [`Layout::Single`], [`Migration::statements`]).
    pub fn statements_for(&self, db: &str, layout: Layout<'_>) -> Result<Vec<String>, RenderError> {
        let statements = self.statements(db);
        match layout {
            Layout::Single => Ok(statements),
            Layout::Cluster { name, replication_path } => {
                statements.iter().map(|stmt| on_cluster(stmt, name, replication_path)).collect()
            }
        }
    }
}

/// `sql` (one statement with `{db}`) for `db` in `layout`.
pub fn render(sql: &str, db: &str, layout: Layout<'_>) -> Result<String, RenderError> {
    let stmt = sql.replace("{db}", db);
    match layout {
        Layout::Single => Ok(stmt),
        Layout::Cluster { name, replication_path } => on_cluster(&stmt, name, replication_path),
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
                // A backfill is idempotent by its condition (reviewed with its migration).
                assert!(
                    upper.contains("IF NOT EXISTS")
                        || upper.contains("IF EXISTS")
                        || adds_columns(&stmt)
                        || backfills(&stmt),
                    "{stmt}"
                );
                assert!(!stmt.contains("{db}"));
            }
        }
    }

    const CLUSTER: Layout<'static> =
        Layout::Cluster { name: "ccp_cluster", replication_path: DEFAULT_REPLICATION_PATH };

    #[test]
    fn the_single_layout_is_the_files_as_written() {
        for m in MIGRATIONS {
            assert_eq!(m.statements_for("ccp", Layout::Single).unwrap(), m.statements("ccp"));
        }
        assert_eq!(render(LEDGER_SQL, "ccp", Layout::Single).unwrap(), LEDGER_SQL.replace("{db}", "ccp"));
    }

    #[test]
    fn every_statement_has_a_cluster_form_on_replicated_engines() {
        for m in MIGRATIONS {
            let single = m.statements("ccp");
            let cluster = m.statements_for("ccp", CLUSTER).unwrap();
            assert_eq!(single.len(), cluster.len());
            for (one, many) in single.iter().zip(&cluster) {
                if backfills(one) {
                    assert_eq!(one, many, "a backfill runs as written");
                    continue;
                }
                assert!(many.contains(" ON CLUSTER `ccp_cluster`"), "{many}");
                // Nothing else changes but the engine.
                let plain = many.replace(" ON CLUSTER `ccp_cluster`", "");
                match one.find("ENGINE") {
                    None => assert_eq!(&plain, one),
                    Some(at) => assert_eq!(plain[..at], one[..at]),
                }
                if one.trim_start().starts_with("CREATE TABLE") {
                    assert!(many.contains("ENGINE = Replicated"), "{many}");
                    assert!(many.contains("'/clickhouse/tables/{shard}/ccp/"), "{many}");
                    assert!(many.contains("'{replica}'"), "{many}");
                }
            }
        }
    }

    #[test]
    fn each_kind_of_statement_renders_as_clickhouse_expects() {
        let on = |sql: &str| render(sql, "ccp", CLUSTER).unwrap();
        assert_eq!(
            on("CREATE DATABASE IF NOT EXISTS {db}"),
            "CREATE DATABASE IF NOT EXISTS ccp ON CLUSTER `ccp_cluster`"
        );
        assert_eq!(
            on(LEDGER_SQL),
            "CREATE TABLE IF NOT EXISTS ccp.schema_migrations ON CLUSTER `ccp_cluster` (version UInt32, name String, \
             checksum String, applied_at DateTime('UTC')) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/ccp/\
             schema_migrations', '{replica}') ORDER BY version"
        );
        assert_eq!(
            on("CREATE TABLE IF NOT EXISTS {db}.offsets\n(\n    last_seq UInt64\n)\nENGINE = ReplacingMergeTree(last_seq)\nORDER BY x"),
            "CREATE TABLE IF NOT EXISTS ccp.offsets ON CLUSTER `ccp_cluster`\n(\n    last_seq UInt64\n)\n\
             ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/ccp/offsets', '{replica}', last_seq)\nORDER BY x"
        );
        assert_eq!(
            on("CREATE TABLE IF NOT EXISTS {db}.s (a UInt8) ENGINE = SummingMergeTree ORDER BY a"),
            "CREATE TABLE IF NOT EXISTS ccp.s ON CLUSTER `ccp_cluster` (a UInt8) \
             ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/ccp/s', '{replica}') ORDER BY a"
        );
        // A view writing TO a table has no engine; an ENGINE word in its query is not touched.
        assert_eq!(
            on("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.v TO {db}.t AS\nSELECT engine FROM {db}.u"),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS ccp.v ON CLUSTER `ccp_cluster` TO ccp.t AS\nSELECT engine FROM ccp.u"
        );
        assert_eq!(
            on("ALTER TABLE {db}.requests\n    ADD COLUMN a UInt8"),
            "ALTER TABLE ccp.requests ON CLUSTER `ccp_cluster`\n    ADD COLUMN a UInt8"
        );
        assert_eq!(on("DROP TABLE IF EXISTS {db}.v"), "DROP TABLE IF EXISTS ccp.v ON CLUSTER `ccp_cluster`");
        // A backfill is data, sent as written to the server the runner talks to.
        assert_eq!(
            on("INSERT INTO {db}.t (a) SELECT a FROM {db}.u WHERE a NOT IN (SELECT a FROM {db}.t)"),
            "INSERT INTO ccp.t (a) SELECT a FROM ccp.u WHERE a NOT IN (SELECT a FROM ccp.t)"
        );
        assert_eq!(on("  drop table if exists {db}.v"), "  drop table if exists ccp.v ON CLUSTER `ccp_cluster`");
        let custom = Layout::Cluster { name: "prod-eu.1", replication_path: "/ch/{shard}/{table}" };
        assert_eq!(
            render("CREATE TABLE IF NOT EXISTS {db}.t (a UInt8) ENGINE = MergeTree() ORDER BY a", "ccp", custom)
                .unwrap(),
            "CREATE TABLE IF NOT EXISTS ccp.t ON CLUSTER `prod-eu.1` (a UInt8) \
             ENGINE = ReplicatedMergeTree('/ch/{shard}/t', '{replica}') ORDER BY a"
        );
    }

    #[test]
    fn what_has_no_cluster_form_is_refused_by_name() {
        let on = |sql: &str| render(sql, "ccp", CLUSTER).unwrap_err().to_string();
        let err = on("INSERT INTO {db}.t VALUES (1)");
        assert!(err.contains("no ON CLUSTER form") && err.contains("INSERT INTO ccp.t"), "{err}");
        let err = on("CREATE TABLE IF NOT EXISTS {db}.t (a UInt8) ENGINE = Memory");
        assert!(err.contains("table t: engine Memory has no replicated form"), "{err}");
        let err = on("CREATE TABLE IF NOT EXISTS {db}.t (a UInt8)");
        assert!(err.contains("table t"), "{err}");
        let bad = |name, path| {
            render("DROP TABLE IF EXISTS {db}.v", "ccp", Layout::Cluster { name, replication_path: path })
                .unwrap_err()
                .to_string()
        };
        assert!(bad("c`; DROP", DEFAULT_REPLICATION_PATH).contains("clickhouse.cluster"));
        assert!(bad("", DEFAULT_REPLICATION_PATH).contains("clickhouse.cluster"));
        assert!(bad("c", "/ch/{shard}").contains("must contain {table}"));
        assert!(bad("c", "/ch/{table}'").contains("without quotes"));
        assert!(bad("c", "ch/{table}").contains("starting with /"));
    }

    /// The cluster DDL, rendered: `fixtures/clickhouse/on_cluster.sql` (which
    /// `scripts/check_clickhouse_lts.py` parses on a current ClickHouse).
    fn cluster_fixture() -> String {
        let mut out = String::from(
            "-- Generated from schemas/migrations/*.sql by `cargo test -p ccp-schemas` (CCP_UPDATE_FIXTURES=1\n\
             -- rewrites it): the statements the runner sends with clickhouse.cluster = \"ccp_cluster\".\n\
             -- scripts/check_clickhouse_lts.py parses each on a current ClickHouse. Do not edit.\n",
        );
        let mut add = |what: &str, stmt: String| out.push_str(&format!("\n-- {what}\n{stmt};\n"));
        add("database", render("CREATE DATABASE IF NOT EXISTS {db}", "{db}", CLUSTER).unwrap());
        add("ledger", render(LEDGER_SQL, "{db}", CLUSTER).unwrap());
        for m in MIGRATIONS {
            for stmt in m.statements_for("{db}", CLUSTER).unwrap() {
                add(&format!("{:04}_{}", m.version, m.name), stmt);
            }
        }
        out
    }

    #[test]
    fn the_committed_cluster_ddl_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clickhouse/on_cluster.sql");
        let fresh = cluster_fixture();
        if std::env::var_os("CCP_UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{} is not the rendering of the migrations: run `CCP_UPDATE_FIXTURES=1 cargo test -p ccp-schemas migrations`",
            path.display()
        );
    }
}
