//! NATS with TLS and decentralized auth, against real `nats-server`s this test starts with their
//! own configuration (JetStream on, own store, free port): server TLS with a private CA, mutual
//! TLS, NKey users, and `.creds` (user JWT + NKey seed) users of a server in operator mode. Each
//! way works through `connect_nats` and creates the event streams; each refusal — an untrusted
//! CA, an expired or missing client certificate, another user's seed, another account's `.creds`
//! — fails at once with one line naming the URL and the cause, never showing a seed or a JWT.
//! The projector binary starts through TLS + `.creds`, and fails with one such line when refused;
//! a proxy that started before its NATS existed logs a refusal instead of retrying silently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ccp_runtime::config::NatsSettings;
use ccp_runtime::streams::{self, StreamPolicy};
use ccp_runtime::telemetry::connect_nats;
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::StreamKind;
use ccp_tests::pki::TestCa;
use ccp_tests::system::workspace_bin;
use ccp_tests::{free_port, service_env, test_settings, wait_http_ok, Service};
use nkeys::KeyPair;
use serde_json::{json, Value};

/// Seconds a test lets `connect_nats` wait; a refusal must come well within it.
const CONNECT_TIMEOUT: u64 = 8;

/// A `nats-server` with JetStream, started from a configuration written here; killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts one on a free port; `extra` (TLS, authorization, operator) is added to its config.
    fn start(label: &str, extra: &str) -> Self {
        Self::start_on(free_port(), label, extra)
    }

    /// Starts one on `port`.
    fn start_on(port: u16, label: &str, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ccp-nats-auth-{label}-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nats.conf");
        let store = dir.join("store");
        std::fs::write(
            &conf,
            format!("host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: {}\n}}\n{extra}\n", quoted(&store)),
        )
        .unwrap();
        let bin = std::env::var("CCP_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (nats-server ≥ 2.10 on PATH, or CCP_TEST_NATS_SERVER): {e}"));
        let mut server = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("nats-server exited ({status}):\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "nats-server did not start:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A path as a quoted string of the server's configuration language.
fn quoted(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap()
}

/// The `tls { … }` block of a server presenting `ca`'s certificate for 127.0.0.1; with
/// `verify`, it also demands a client certificate signed by `ca`.
fn tls_block(ca: &TestCa, verify: bool) -> String {
    let server = ca.server("nats-server");
    let verify = if verify { format!("  ca_file: {}\n  verify: true\n", quoted(&ca.ca_file())) } else { String::new() };
    format!(
        "tls {{\n  cert_file: {}\n  key_file: {}\n{verify}  timeout: 5\n}}\n",
        quoted(&server.cert),
        quoted(&server.key)
    )
}

/// NATS settings for `url` with a fresh prefix and no TLS or credentials.
fn settings_for(url: &str) -> NatsSettings {
    let mut nats = test_settings("natsauth").nats;
    nats.url = url.to_owned();
    nats.connect_timeout_secs = CONNECT_TIMEOUT;
    nats
}

/// Connects with `settings`, creates the event streams and buckets, and reads one back.
async fn works(settings: &NatsSettings) {
    settings.validate().unwrap_or_else(|e| panic!("settings refused: {e}"));
    let client = connect_nats(settings, "ccp-test").await.unwrap_or_else(|e| panic!("{e:#}"));
    let js = async_nats::jetstream::new(client);
    let ns = settings.namespace().unwrap();
    let report = streams::ensure(&js, &ns, &StreamPolicy::from(settings)).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.len() >= StreamKind::ALL.len(), "{report:?}");
    let name = ns.stream(StreamKind::Admin);
    let info = js.get_stream(&name).await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.config.name, name);
}

/// Connects with `settings`, expecting a refusal: one line, within the connect timeout, naming
/// the URL. Returns the message.
async fn refused(settings: &NatsSettings) -> String {
    let started = Instant::now();
    let err = match connect_nats(settings, "ccp-test").await {
        Ok(_) => panic!("connected to {} although it should be refused", settings.url),
        Err(e) => format!("{e:#}"),
    };
    assert!(started.elapsed() < Duration::from_secs(CONNECT_TIMEOUT), "took {:?}: {err}", started.elapsed());
    assert!(!err.contains('\n'), "not one line: {err}");
    assert!(err.contains(&format!("cannot connect to NATS at {}", settings.url)), "{err}");
    err
}

#[tokio::test]
async fn server_tls_needs_the_ca_that_signed_the_server() {
    let ca = TestCa::new("natstls");
    let server = Server::start("tls", &tls_block(&ca, false));
    let mut settings = settings_for(&server.url());
    settings.ca_file = Some(ca.ca_file());
    works(&settings).await;

    // Without the CA only the system's CAs are trusted: refused, saying which setting to set.
    settings.ca_file = None;
    let err = refused(&settings).await;
    assert!(err.contains("TLS: the server's certificate is not trusted"), "{err}");
    assert!(err.contains("UnknownIssuer") && err.contains("nats.ca_file is not set"), "{err}");

    // Another CA: refused, naming that CA file.
    let other = TestCa::new("natsother");
    settings.ca_file = Some(other.ca_file());
    let err = refused(&settings).await;
    assert!(err.contains("not trusted") && err.contains(&other.ca_file().display().to_string()), "{err}");

    // A CA file that is not there: refused before connecting, naming the setting and the file.
    settings.ca_file = Some(ca.dir().join("missing.pem"));
    let err = refused(&settings).await;
    assert!(err.contains("nats.ca_file") && err.contains("missing.pem") && err.contains("cannot read"), "{err}");
}

#[tokio::test]
async fn mutual_tls_takes_a_valid_client_certificate_and_refuses_an_expired_or_missing_one() {
    let ca = TestCa::new("natsmtls");
    let server = Server::start("mtls", &tls_block(&ca, true));
    let mut settings = settings_for(&server.url());
    settings.ca_file = Some(ca.ca_file());
    let client = ca.client("ccp-client", "ccp-proxy");
    settings.client_cert_file = Some(client.cert.clone());
    settings.client_key_file = Some(client.key.clone());
    works(&settings).await;

    let expired = ca.expired_client("ccp-expired", "ccp-proxy");
    settings.client_cert_file = Some(expired.cert.clone());
    settings.client_key_file = Some(expired.key.clone());
    let err = refused(&settings).await;
    assert!(err.contains("TLS: the server refused the handshake"), "{err}");
    assert!(err.contains("nats.client_cert_file") && err.contains("ccp-expired.pem"), "{err}");

    // A certificate from another CA.
    let other = TestCa::new("natsmtlsother");
    let stranger = other.client("ccp-stranger", "ccp-proxy");
    settings.client_cert_file = Some(stranger.cert.clone());
    settings.client_key_file = Some(stranger.key.clone());
    let err = refused(&settings).await;
    assert!(err.contains("the server refused the handshake") && err.contains("ccp-stranger.pem"), "{err}");

    // None at all: the message asks whether the server wants one.
    settings.client_cert_file = None;
    settings.client_key_file = None;
    let err = refused(&settings).await;
    assert!(err.contains("does it require a client certificate"), "{err}");

    // Half an identity is refused when the settings load, naming both keys.
    settings.client_cert_file = Some(client.cert.clone());
    let err = settings.validate().unwrap_err();
    assert!(err.contains("nats.client_cert_file") && err.contains("nats.client_key_file"), "{err}");
    let env = vec![("CCP__NATS__CLIENT_CERT_FILE".to_owned(), client.cert.display().to_string())];
    let err = ccp_runtime::config::Settings::load_from(None, env).unwrap_err().to_string();
    assert!(err.contains("nats.client_cert_file is set without nats.client_key_file"), "{err}");
}

#[tokio::test]
async fn plain_text_nats_of_the_local_stack_still_connects_and_a_ca_file_requires_tls() {
    let mut settings = settings_for(&ccp_tests::nats_url());
    works(&settings).await;
    let js = async_nats::jetstream::new(ccp_tests::nats().await);
    ccp_tests::delete_namespace(&js, &settings.namespace().unwrap()).await;

    // A CA file means TLS: a server without it is refused rather than used in plain text.
    let ca = TestCa::new("natsplain");
    settings.ca_file = Some(ca.ca_file());
    let err = refused(&settings).await;
    assert!(err.contains("TLS: the handshake failed") && err.contains("is TLS enabled"), "{err}");
}

#[tokio::test]
async fn an_nkey_user_connects_and_another_seed_is_refused_without_being_shown() {
    let user = KeyPair::new_user();
    let seed = user.seed().unwrap();
    let server =
        Server::start("nkey", &format!("authorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n", user.public_key()));
    let mut settings = settings_for(&server.url());
    settings.nkey_seed = SecretString::new(seed.clone());
    works(&settings).await;
    let shown = format!("{settings:?}{}", toml::to_string(&settings).unwrap());
    assert!(!shown.contains(&seed), "the seed is printed: {shown}");

    // The same seed from a file.
    let dir = std::env::temp_dir().join(format!("ccp-nkey-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed_file = dir.join("user.nk");
    std::fs::write(&seed_file, format!("{seed}\n")).unwrap();
    let mut from_file = settings_for(&server.url());
    from_file.nkey_seed_file = Some(seed_file.clone());
    works(&from_file).await;

    // Another user's seed: refused, naming the setting, not the seed.
    let stranger = KeyPair::new_user().seed().unwrap();
    settings.nkey_seed = SecretString::new(stranger.clone());
    let err = refused(&settings).await;
    assert!(err.contains("authorization violation") && err.contains("check nats.nkey_seed"), "{err}");
    assert!(!err.contains(&stranger) && !err.contains(&seed), "{err}");

    // Something that is not a user seed is refused when the settings load, without echoing it.
    let account_seed = KeyPair::new_account().seed().unwrap();
    settings.nkey_seed = SecretString::new(account_seed.clone());
    let err = settings.validate().unwrap_err();
    assert!(err.contains("nats.nkey_seed") && err.contains("not a user's") && !err.contains(&account_seed), "{err}");
    let garbage = format!("{}x", &seed[..20]);
    settings.nkey_seed = SecretString::new(garbage.clone());
    let err = settings.validate().unwrap_err();
    assert!(err.contains("is not an NKey seed") && !err.contains(&garbage), "{err}");
    std::fs::write(&seed_file, "not a seed at all\n").unwrap();
    let err = refused(&from_file).await;
    assert!(err.contains("nats.nkey_seed_file") && err.contains("is not an NKey seed"), "{err}");
    // Two ways at once are refused when the settings load.
    from_file.nkey_seed = SecretString::new(seed.clone());
    let err = from_file.validate().unwrap_err();
    assert!(err.contains("nats.nkey_seed and nats.nkey_seed_file") && !err.contains(&seed), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A signed NATS JWT (v2 claims) about `subject`, issued by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "typ": "JWT", "alg": "ed25519-nkey" }).to_string());
    let claims = json!({
        "jti": ulid::Ulid::new().to_string(),
        "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An account of `operator` allowed to use JetStream without limits; its key and JWT.
fn account(operator: &KeyPair, name: &str) -> (KeyPair, String) {
    let key = KeyPair::new_account();
    let limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let token = jwt(operator, &key.public_key(), name, json!({ "type": "account", "version": 2, "limits": limits }));
    (key, token)
}

/// The system account an operator-mode server with JetStream needs (without JetStream itself).
fn system_account(operator: &KeyPair) -> (KeyPair, String) {
    let key = KeyPair::new_account();
    let limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1,
    });
    let token = jwt(operator, &key.public_key(), "SYS", json!({ "type": "account", "version": 2, "limits": limits }));
    (key, token)
}

/// A `.creds` file's text for a new user of `account`; and that user's seed.
fn creds(account: &KeyPair, name: &str) -> (String, String) {
    let user = KeyPair::new_user();
    let nats = json!({ "type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1 });
    let token = jwt(account, &user.public_key(), name, nats);
    let seed = user.seed().unwrap();
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    (text, seed)
}

/// An operator-mode server configuration (memory resolver) trusting `operator`, knowing
/// `accounts` and a system account.
fn operator_block(dir: &Path, operator: &KeyPair, accounts: &[(&KeyPair, &str)]) -> String {
    let operator_jwt = dir.join("operator.jwt");
    std::fs::write(
        &operator_jwt,
        jwt(operator, &operator.public_key(), "ccp-test-operator", json!({ "type": "operator", "version": 2 })),
    )
    .unwrap();
    let (system, system_jwt) = system_account(operator);
    let preload: Vec<String> = accounts
        .iter()
        .copied()
        .chain([(&system, system_jwt.as_str())])
        .map(|(key, token)| format!("  {}: \"{token}\"", key.public_key()))
        .collect();
    format!(
        "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n{}\n}}\n",
        quoted(&operator_jwt),
        system.public_key(),
        preload.join("\n")
    )
}

/// Files of one test: `.creds` and the operator's JWT.
struct Files(PathBuf);

impl Files {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ccp-creds-{label}-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn creds_of_a_known_account_connect_and_another_accounts_creds_are_refused() {
    let files = Files::new("jwt");
    let operator = KeyPair::new_operator();
    let (team, team_jwt) = account(&operator, "ccp");
    // Signed by the same operator, but not an account this server knows.
    let (elsewhere, _) = account(&operator, "elsewhere");
    let server = Server::start("jwt", &operator_block(&files.0, &operator, &[(&team, &team_jwt)]));

    let (text, seed) = creds(&team, "ccp-proxy");
    let mut settings = settings_for(&server.url());
    settings.creds_file = Some(files.write("ccp.creds", &text));
    works(&settings).await;

    let (text, other_seed) = creds(&elsewhere, "ccp-proxy");
    settings.creds_file = Some(files.write("elsewhere.creds", &text));
    let err = refused(&settings).await;
    assert!(err.contains("authorization violation") && err.contains("check nats.creds_file"), "{err}");
    let other_jwt = text.lines().nth(1).unwrap();
    assert!(!err.contains(&other_seed) && !err.contains(other_jwt) && !err.contains(&seed), "{err}");

    // A user JWT of the known account with another user's seed: the nonce signature fails.
    let (good, good_seed) = creds(&team, "ccp-proxy");
    let (_, wrong_seed) = creds(&team, "someone-else");
    let mixed = good.replace(&good_seed, &wrong_seed);
    settings.creds_file = Some(files.write("mixed.creds", &mixed));
    let err = refused(&settings).await;
    assert!(err.contains("authorization violation") && !err.contains(&wrong_seed), "{err}");

    // A file that is not `.creds`, and one that is not there.
    settings.creds_file = Some(files.write("broken.creds", "just a token\n"));
    let err = refused(&settings).await;
    assert!(err.contains("nats.creds_file") && err.contains("broken.creds") && err.contains("cannot parse"), "{err}");
    settings.creds_file = Some(files.0.join("absent.creds"));
    let err = refused(&settings).await;
    assert!(err.contains("nats.creds_file") && err.contains("absent.creds"), "{err}");
}

/// The environment that points a service binary at `url` with `extra` NATS settings.
fn env_with(settings: &ccp_runtime::config::Settings, url: &str, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        service_env(settings).into_iter().filter(|(k, _)| k != "CCP__NATS__URL").collect();
    env.push(("CCP__NATS__URL".into(), url.to_owned()));
    env.push(("CCP__NATS__CONNECT_TIMEOUT_SECS".into(), CONNECT_TIMEOUT.to_string()));
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

/// Waits for a service to exit; its status, or a panic with its log.
fn exits(service: &mut Service, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = service.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {within:?}:\n{}", service.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_runs_over_tls_with_creds_and_fails_in_one_line_when_refused() {
    let files = Files::new("projector");
    let ca = TestCa::new("natsprojector");
    let operator = KeyPair::new_operator();
    let (team, team_jwt) = account(&operator, "ccp");
    let (elsewhere, _) = account(&operator, "elsewhere");
    let extra = format!("{}{}", tls_block(&ca, false), operator_block(&files.0, &operator, &[(&team, &team_jwt)]));
    let server = Server::start("projector", &extra);
    let settings = test_settings("natsauthproj");
    let (text, seed) = creds(&team, "ccp-projector");
    let creds_file = files.write("projector.creds", &text);

    let port = free_port();
    let env = env_with(
        &settings,
        &server.url(),
        &[
            ("CCP__NATS__CA_FILE", ca.ca_file().display().to_string()),
            ("CCP__NATS__CREDS_FILE", creds_file.display().to_string()),
            ("CCP__PROJECTOR__LISTEN", format!("127.0.0.1:{port}")),
        ],
    );
    let bin = workspace_bin("ccp-projector", "ccp-projector");
    let mut projector = Service::spawn(&bin, &["serve"], &env).unwrap();
    wait_http_ok(&format!("http://127.0.0.1:{port}/ready"), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", projector.log_text(), server.log()));
    // It made its streams on that server, in that account.
    let mut nats = settings_for(&server.url());
    nats.prefix = settings.nats.prefix.clone();
    nats.ca_file = Some(ca.ca_file());
    nats.creds_file = Some(creds_file.clone());
    let js = async_nats::jetstream::new(connect_nats(&nats, "ccp-test").await.unwrap());
    for kind in StreamKind::ALL {
        let name = nats.namespace().unwrap().stream(kind);
        assert!(js.get_stream(&name).await.is_ok(), "stream {name} is missing");
    }
    projector.terminate(Duration::from_secs(10));
    assert!(!projector.log_text().contains(&seed), "the seed is in the projector's log");

    // Another account's credentials: it exits, saying why in one line, without the secret.
    let (text, other_seed) = creds(&elsewhere, "ccp-projector");
    let other = files.write("elsewhere.creds", &text);
    let env = env_with(
        &settings,
        &server.url(),
        &[
            ("CCP__NATS__CA_FILE", ca.ca_file().display().to_string()),
            ("CCP__NATS__CREDS_FILE", other.display().to_string()),
            ("CCP__PROJECTOR__LISTEN", format!("127.0.0.1:{}", free_port())),
        ],
    );
    let started = Instant::now();
    let mut refused = Service::spawn(&bin, &["serve"], &env).unwrap();
    let status = exits(&mut refused, Duration::from_secs(60));
    let log = refused.log_text();
    assert!(!status.success(), "{log}");
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("ccp-projector failed")).collect();
    assert_eq!(failed.len(), 1, "{log}");
    let expected = format!("cannot connect to NATS at {}: the server refused the credentials", server.url());
    assert!(failed[0].contains(&expected) && failed[0].contains("nats.creds_file"), "{log}");
    assert!(!log.contains(&other_seed) && !log.contains(text.lines().nth(1).unwrap()), "{log}");
    assert!(started.elapsed() < Duration::from_secs(45), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_before_its_nats_logs_the_refusal_instead_of_retrying_silently() {
    let files = Files::new("late");
    let operator = KeyPair::new_operator();
    let (team, team_jwt) = account(&operator, "ccp");
    let (elsewhere, _) = account(&operator, "elsewhere");
    let settings = test_settings("natsauthlate");
    let (text, seed) = creds(&elsewhere, "ccp-proxy");
    let creds_file = files.write("proxy.creds", &text);

    // Nothing listens yet: the proxy starts anyway (it spools) and connects in the background.
    let nats_port = free_port();
    let url = format!("nats://127.0.0.1:{nats_port}");
    let port = free_port();
    let spool = files.0.join("spool");
    let env = env_with(
        &settings,
        &url,
        &[
            ("CCP__NATS__CREDS_FILE", creds_file.display().to_string()),
            ("CCP__NATS__CONNECT_TIMEOUT_SECS", "2".into()),
            ("CCP__PROXY__LISTEN", format!("127.0.0.1:{port}")),
            ("CCP__PROXY__SPOOL_DIR", spool.display().to_string()),
            ("CCP__PROXY__WORKERS", "1".into()),
        ],
    );
    let proxy = Service::spawn(&workspace_bin("ccp-proxy", "ccp-proxy"), &[], &env).unwrap();
    wait_http_ok(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_text()));
    assert!(proxy.log_text().contains("connecting in the background"), "{}", proxy.log_text());

    // Then NATS comes up, but does not know the account of the proxy's credentials.
    let server = Server::start_on(nats_port, "late", &operator_block(&files.0, &operator, &[(&team, &team_jwt)]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let log = proxy.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("NATS refused the connection")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no refusal logged:\n{log}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        line.contains(&url) && line.contains("authorization violation") && line.contains("nats.creds_file"),
        "{line}"
    );
    assert!(!proxy.log_text().contains(&seed), "the seed is in the proxy's log");
}
