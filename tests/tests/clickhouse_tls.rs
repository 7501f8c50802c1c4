//! ClickHouse over HTTPS against a real server: a ClickHouse 18.16 started by the test with its
//! own `https_port`, a certificate from a CA the test makes, a user with a password and (in one
//! test) client certificates required. Migrations, LZ4-compressed inserts and selects go through
//! `server_client`; a missing or wrong CA, a wrong password and a missing client certificate each
//! fail with one line naming the server and the cause; `ccp-projector migrate` starts against it.
//! Also: the `ON CLUSTER` rendering of every migration parses on the stack's ClickHouse 18.16.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccp_runtime::config::{ClickHouseCompression, ClickHouseSettings};
use ccp_runtime::migrate::{migrate, server_client};
use ccp_schemas::migrations::{render, Layout, DEFAULT_REPLICATION_PATH, LEDGER_SQL, MIGRATIONS};
use ccp_schemas::secrets::SecretString;
use ccp_tests::pki::{IssuedFiles, TestCa};
use ccp_tests::{clickhouse, free_port, unique_name, Service};

const USER: &str = "ccp_tls";
const PASSWORD: &str = "pw-Tls-7f3a9c21-never-logged";

/// A clickhouse-server of its own, serving only HTTPS on a free port; killed when dropped.
struct TlsClickHouse {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl TlsClickHouse {
    /// Starts the server with `server`'s certificate; `require_client_cert` makes it verify
    /// clients against `ca` (`verificationMode` strict).
    fn start(ca: &TestCa, server: &IssuedFiles, require_client_cert: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("ccp-ch-tls-{}", ulid::Ulid::new()));
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = free_port();
        let d = dir.display();
        let mode = if require_client_cert { "strict" } else { "none" };
        let (cert, key, ca_file) = (server.cert.display(), server.key.display(), ca.ca_file().display().to_string());
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger><level>information</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <https_port>{port}</https_port>
    <openSSL>
        <server>
            <certificateFile>{cert}</certificateFile>
            <privateKeyFile>{key}</privateKeyFile>
            <caConfig>{ca_file}</caConfig>
            <verificationMode>{mode}</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("users.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <{USER}>
            <password>{PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{USER}>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("clickhouse-server is not installed (scripts/stack.sh install)");
        let log = std::fs::File::create(dir.join("log/stdout.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config-file={}/config.xml", dir.display()))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut server = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("clickhouse-server exited ({status}) before serving HTTPS:\n{}", server.logs());
            }
            assert!(Instant::now() < deadline, "clickhouse-server did not listen on {port}:\n{}", server.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Settings for this server: `https://localhost:<port>`, the test user, a fresh database,
    /// trusting `ca_file`.
    fn settings(&self, ca_file: Option<PathBuf>) -> ClickHouseSettings {
        ClickHouseSettings {
            url: format!("https://localhost:{}", self.port),
            database: unique_name("tls"),
            user: USER.into(),
            password: SecretString::new(PASSWORD),
            ca_file,
            ..ClickHouseSettings::default()
        }
    }

    fn logs(&self) -> String {
        ["stdout.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TlsClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, PartialEq, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct Note {
    id: u64,
    text: String,
}

/// Inserts `n` rows through `settings`' client into a fresh table and reads them back.
async fn round_trip(settings: &ClickHouseSettings, n: u64) -> Vec<Note> {
    let db = &settings.database;
    let client = server_client(settings).unwrap();
    client.query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute().await.unwrap();
    client
        .query(&format!("CREATE TABLE {db}.notes (id UInt64, text String) ENGINE = MergeTree() ORDER BY id"))
        .execute()
        .await
        .unwrap();
    let client = client.with_database(db);
    let mut insert = client.insert::<Note>("notes").await.unwrap();
    for id in 0..n {
        // Repetitive text: LZ4 has something to compress.
        insert.write(&Note { id, text: format!("note {id} {}", "abc".repeat(20)) }).await.unwrap();
    }
    insert.end().await.unwrap();
    client.query("SELECT id, text FROM notes ORDER BY id").fetch_all::<Note>().await.unwrap()
}

/// The error of migrating with `settings`, as one line, checked to be free of the password.
async fn migrate_error(settings: &ClickHouseSettings) -> String {
    let err = migrate(settings).await.expect_err("migrating should fail").to_string();
    assert!(!err.contains('\n'), "not one line: {err}");
    assert!(!err.contains(PASSWORD), "the password is in the error: {err}");
    err
}

#[tokio::test]
async fn migrations_inserts_and_selects_run_over_https_with_a_private_ca_and_lz4() {
    let ca = TestCa::new("chtls");
    let server = TlsClickHouse::start(&ca, &ca.server("clickhouse"), false);
    let settings = server.settings(Some(ca.ca_file()));
    assert_eq!(settings.compression, ClickHouseCompression::Lz4, "LZ4 is the default");

    let applied = migrate(&settings).await.unwrap();
    assert_eq!(applied, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
    assert!(migrate(&settings).await.unwrap().is_empty(), "a second run applied something");
    let client = server_client(&settings).unwrap();
    let tables: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(&settings.database)
        .fetch_all()
        .await
        .unwrap();
    for table in ["audit_log", "requests", "schema_migrations", "usage_day"] {
        assert!(tables.iter().any(|t| t == table), "{table} missing from {tables:?}");
    }

    // An LZ4-compressed insert (`decompress=1`, ClickHouse's block framing) of 18.16 reads back
    // exactly: a server that did not decompress would have refused or garbled the rows.
    let rows = round_trip(&settings, 2000).await;
    assert_eq!(rows.len(), 2000);
    assert_eq!(rows[1234], Note { id: 1234, text: format!("note 1234 {}", "abc".repeat(20)) });

    // The same uncompressed.
    let plain = ClickHouseSettings {
        compression: ClickHouseCompression::None,
        database: unique_name("tlsplain"),
        ..settings.clone()
    };
    let rows = round_trip(&plain, 10).await;
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_certificate_no_configured_ca_signed_fails_naming_the_server_and_the_cause() {
    let ca = TestCa::new("chtlsca");
    let server = TlsClickHouse::start(&ca, &ca.server("clickhouse"), false);
    let url = format!("https://localhost:{}", server.port);

    // No ca_file: only public CAs are trusted, and the test CA is none of them.
    let err = migrate_error(&server.settings(None)).await;
    assert!(err.contains(&format!("ClickHouse at {url}")), "{err}");
    assert!(err.contains("invalid peer certificate") && err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("check clickhouse.ca_file"), "{err}");

    // Another CA's file.
    let other = TestCa::new("chtlsother");
    let err = migrate_error(&server.settings(Some(other.ca_file()))).await;
    assert!(err.contains(&url) && err.contains("UnknownIssuer"), "{err}");

    // A CA file that is not one names the file before anything connects.
    let not_pem = ca.dir().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let err = migrate_error(&server.settings(Some(not_pem.clone()))).await;
    assert!(err.contains("clickhouse.ca_file") && err.contains(&not_pem.display().to_string()), "{err}");
    assert!(err.contains("holds no certificate"), "{err}");

    // TLS files with an http:// URL would be ignored silently: refused instead.
    let mut http = server.settings(Some(ca.ca_file()));
    http.url = format!("http://localhost:{}", server.port);
    let err = server_client(&http).unwrap_err().to_string();
    assert!(err.contains("clickhouse.ca_file is set but clickhouse.url") && err.contains("not https://"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_over_https_fails_with_one_clear_line() {
    let ca = TestCa::new("chtlspw");
    let server = TlsClickHouse::start(&ca, &ca.server("clickhouse"), false);
    let mut settings = server.settings(Some(ca.ca_file()));
    settings.password = SecretString::new("not-the-password-5d1e");
    let started = Instant::now();
    let err = migrate_error(&settings).await;
    assert!(err.contains(&format!("ClickHouse at https://localhost:{}", server.port)), "{err}");
    assert!(err.contains("Wrong password for user ccp_tls"), "{err}");
    assert!(err.contains("check clickhouse.user and clickhouse.password"), "{err}");
    assert!(!err.contains("not-the-password-5d1e"), "{err}");
    // Once, not retried until some timeout.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // A password in the URL itself is not repeated in messages either.
    let mut in_url = server.settings(Some(ca.ca_file()));
    in_url.url = format!("https://{USER}:{PASSWORD}@localhost:{}/?password={PASSWORD}", server.port);
    let other = TestCa::new("chtlspw2");
    in_url.ca_file = Some(other.ca_file());
    let err = migrate_error(&in_url).await;
    assert!(err.contains(&format!("ClickHouse at https://localhost:{}/: ", server.port)), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_gets_one() {
    let ca = TestCa::new("chmtls");
    let server = TlsClickHouse::start(&ca, &ca.server("clickhouse"), true);

    let without = server.settings(Some(ca.ca_file()));
    let err = migrate_error(&without).await;
    assert!(err.contains(&format!("https://localhost:{}", server.port)), "{err}");
    assert!(err.contains("client certificate") || err.contains("CertificateRequired"), "{err}");

    let client = ca.client("ccp-client", "ccp-projector");
    let mut with = server.settings(Some(ca.ca_file()));
    with.client_cert_file = Some(client.cert.clone());
    with.client_key_file = Some(client.key.clone());
    let applied = migrate(&with).await.unwrap();
    assert_eq!(applied.len(), MIGRATIONS.len());
    assert_eq!(round_trip(&with, 5).await.len(), 5);

    // An expired certificate is refused by the server.
    let expired = ca.expired_client("ccp-expired", "ccp-projector");
    let mut old = server.settings(Some(ca.ca_file()));
    old.client_cert_file = Some(expired.cert);
    old.client_key_file = Some(expired.key);
    let err = migrate_error(&old).await;
    assert!(err.contains(&format!("https://localhost:{}", server.port)), "{err}");
    assert!(err.contains("CertificateExpired") && err.contains("clickhouse.client_cert_file"), "{err}");

    // Half an identity is refused before connecting.
    let mut half = server.settings(Some(ca.ca_file()));
    half.client_cert_file = Some(client.cert);
    let err = server_client(&half).unwrap_err().to_string();
    assert!(err.contains("clickhouse.client_cert_file is set without clickhouse.client_key_file"), "{err}");
}

fn projector_env(settings: &ClickHouseSettings) -> Vec<(String, String)> {
    let mut env = vec![
        ("CCP__CLICKHOUSE__URL".to_owned(), settings.url.clone()),
        ("CCP__CLICKHOUSE__DATABASE".to_owned(), settings.database.clone()),
        ("CCP__CLICKHOUSE__USER".to_owned(), settings.user.clone()),
        ("CCP__CLICKHOUSE__PASSWORD".to_owned(), settings.password.expose().to_owned()),
        ("CCP__LOG__FORMAT".to_owned(), "text".to_owned()),
    ];
    if let Some(ca) = &settings.ca_file {
        env.push(("CCP__CLICKHOUSE__CA_FILE".to_owned(), ca.display().to_string()));
    }
    env
}

fn wait_exit(service: &mut Service) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "ccp-projector migrate still running:\n{}", service.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn ccp_projector_migrate_starts_against_the_https_server_or_says_why_not() {
    let ca = TestCa::new("chtlsbin");
    let server = TlsClickHouse::start(&ca, &ca.server("clickhouse"), false);
    let bin = ccp_tests::system::workspace_bin("ccp-projector", "ccp-projector");

    let good = server.settings(Some(ca.ca_file()));
    let mut run = Service::spawn(&bin, &["migrate"], &projector_env(&good)).unwrap();
    let status = wait_exit(&mut run);
    let log = run.log_text();
    assert!(status.success(), "{log}");
    assert!(log.contains("ClickHouse migrations applied"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    let count: u64 = server_client(&good)
        .unwrap()
        .query(&format!("SELECT count() FROM {}.schema_migrations", good.database))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, MIGRATIONS.len() as u64);

    let other = TestCa::new("chtlsbinother");
    let bad = server.settings(Some(other.ca_file()));
    let mut run = Service::spawn(&bin, &["migrate"], &projector_env(&bad)).unwrap();
    let status = wait_exit(&mut run);
    let log = run.log_text();
    assert!(!status.success(), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains(&format!("ClickHouse at https://localhost:{}", server.port)), "{log}");
    assert!(errors[0].contains("UnknownIssuer") && errors[0].contains("clickhouse.ca_file"), "{log}");
    assert_eq!(errors[0].matches("UnknownIssuer").count(), 1, "the cause is repeated: {log}");
    assert!(!log.contains(PASSWORD), "{log}");
}

#[tokio::test]
async fn the_on_cluster_rendering_parses_on_clickhouse_18_16() {
    // The stack's server has no cluster: a statement it can parse fails only at looking the
    // cluster up (code 170), never with a syntax error (code 62), and creates nothing.
    let db = unique_name("cluster");
    let layout = Layout::Cluster { name: "ccp-cluster.1", replication_path: DEFAULT_REPLICATION_PATH };
    let mut statements = vec![
        render("CREATE DATABASE IF NOT EXISTS {db}", &db, layout).unwrap(),
        render(LEDGER_SQL, &db, layout).unwrap(),
    ];
    for m in MIGRATIONS {
        statements.extend(m.statements_for(&db, layout).unwrap());
    }
    for stmt in &statements {
        let err = clickhouse().query(stmt).execute().await.expect_err(stmt).to_string();
        // A copy (`INSERT … SELECT`) is not run ON CLUSTER — replication carries its rows — so
        // here it only finds that the database does not exist (code 81): parsed, not a syntax error.
        let copy = stmt.trim_start().starts_with("INSERT") && err.contains("Code: 81");
        assert!(
            copy || (err.contains("Code: 170") && err.contains("Requested cluster 'ccp-cluster.1' not found")),
            "{stmt}\n{err}"
        );
    }
    let created: u64 =
        clickhouse().query("SELECT count() FROM system.databases WHERE name = ?").bind(&db).fetch_one().await.unwrap();
    assert_eq!(created, 0);
}
