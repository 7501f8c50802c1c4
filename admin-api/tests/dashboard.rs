#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The dashboard end to end in a real headless Chromium, driven through chromedriver's W3C
//! WebDriver HTTP API (a small client below): log in, create a user, issue a key (read once from
//! its dialog), register a Bedrock key, send requests through a running `ccp-proxy` (two of them
//! fail over to Bedrock and open the key's circuit), see them in the overview, usage, request
//! lookup and circuits pages (projected into ClickHouse by a running `ccp-projector`), revoke the
//! key and see the proxy refuse it, find every change in the audit log. And a developer's `/me`
//! page: their access key pasted, their figures shown as `GET /v1/self` answers them, the key
//! kept nowhere but in the page's memory. Every page is saved as a PNG in
//! `target/dashboard-screenshots/` (`/me`'s in `me/` there), and no page ever holds a secret
//! outside the one-time key dialog. Chromium and chromedriver come from Debian (`scripts/test`
//! installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_schemas::subjects::StreamKind;
use ccp_tests::fake_anthropic::{FakeAnthropic, Scenario, ScenarioName, Usage};
use ccp_tests::fake_bedrock::FakeBedrock;
use common::AdminApi;
use reqwest::Method;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const BEDROCK_KEY: &str = "ABSKZGFzaGJvYXJkLXRlc3QtYmVkcm9jay1rZXktOTg3NjU0MzIx";
const MESSAGE: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
/// How long the page may take to show something (ClickHouse projection included).
const WAIT: Duration = Duration::from_secs(20);
/// The browser window (width, height).
const WINDOW: (u64, u64) = (1400, 1000);

// ---------------------------------------------------------------------------------------------
// A tiny WebDriver client
// ---------------------------------------------------------------------------------------------

/// A chromedriver process with one Chromium session; both end when dropped.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    driver: Child,
    /// chromedriver's log (kept when the test fails).
    driver_log: PathBuf,
    profile: PathBuf,
    shots: PathBuf,
    shot_count: usize,
}

/// A WebDriver error answer (`{"value":{"error","message"}}`).
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl Browser {
    async fn start(downloads: &Path, shots: &Path) -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver (scripts/test does)"
            );
        }
        let port = ccp_tests::free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{}.log", ulid::Ulid::new()));
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            // Dates on the page are then UTC, like the test's own clock.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r.json::<Value>().await.ok().and_then(|v| v["value"]["ready"].as_bool()).unwrap_or(false),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start; log: {}", log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("ccp-chromium-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&profile).unwrap();
        // Without the background-networking flags Chromium's own outbound connections are
        // refused here and it stalls; the rest keep it quiet and reproducible.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"implicit": 0, "pageLoad": 30000, "script": 15000},
        }}});
        let answer: Value =
            http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_owned();
        let browser = Self {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            driver_log: log,
            profile,
            shots: shots.to_owned(),
            shot_count: 0,
        };
        // Headless downloads go where this says (the preference alone is not always honoured).
        let _ = browser
            .cmd(
                Method::POST,
                "/goog/cdp/execute",
                json!({"cmd": "Browser.setDownloadBehavior",
                       "params": {"behavior": "allow", "downloadPath": downloads.display().to_string()}}),
            )
            .await;
        // The copy buttons are checked by reading the clipboard back.
        browser
            .cmd(
                Method::POST,
                "/goog/cdp/execute",
                json!({"cmd": "Browser.grantPermissions",
                       "params": {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}}),
            )
            .await
            .unwrap_or_else(|e| panic!("granting clipboard access: {} {}", e.error, e.message));
        browser
    }

    /// What the page's clipboard holds now.
    async fn clipboard(&self) -> String {
        let script = "const done = arguments[arguments.length - 1];\n\
                      navigator.clipboard.readText().then(done, (e) => done('clipboard error: ' + e));";
        let v = self
            .cmd(Method::POST, "/execute/async", json!({ "script": script, "args": [] }))
            .await
            .unwrap_or_else(|e| panic!("reading the clipboard: {} {}", e.error, e.message));
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn cmd(&self, method: Method, path: &str, body: Value) -> Result<Value, WdError> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.session));
        if method != Method::GET && method != Method::DELETE {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| WdError { error: "transport".into(), message: e.to_string() })?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.map_err(|e| WdError { error: "decode".into(), message: e.to_string() })?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(WdError {
                error: v["value"]["error"].as_str().unwrap_or("?").to_owned(),
                message: v["value"]["message"].as_str().unwrap_or("").lines().next().unwrap_or("").to_owned(),
            })
        }
    }

    async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", json!({ "url": url })).await.unwrap();
    }

    async fn current_url(&self) -> String {
        self.cmd(Method::GET, "/url", Value::Null).await.unwrap().as_str().unwrap().to_owned()
    }

    async fn find(&self, css: &str) -> Option<String> {
        let v = self.cmd(Method::POST, "/element", json!({"using": "css selector", "value": css})).await.ok()?;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(Method::POST, "/execute/sync", json!({ "script": script, "args": args }))
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls a script until it returns something truthy; fails the test (with a screenshot and
    /// the page's text) at the deadline.
    async fn until(&mut self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.die(&format!("timed out waiting for {what}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element; returns its reference.
    async fn wait(&mut self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                self.die(&format!("no element `{css}`")).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an element's text contains `needle`; returns the text.
    async fn wait_text(&mut self, css: &str, needle: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); \
                      return e && e.textContent.includes(arguments[1]) ? e.textContent : null;";
        let v = self.until(&format!("`{css}` to contain {needle:?}"), script, json!([css, needle])).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn click(&mut self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self.wait(css).await;
            match self.cmd(Method::POST, &format!("/element/{element}/click"), json!({})).await {
                Ok(_) => return,
                // Re-rendered or not yet clickable (a dialog opening): find it again.
                Err(e)
                    if Instant::now() < deadline
                        && ["stale element reference", "element click intercepted", "element not interactable"]
                            .contains(&e.error.as_str()) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => self.die(&format!("cannot click `{css}`: {e}")).await,
            }
        }
    }

    async fn type_into(&mut self, css: &str, text: &str) {
        let element = self.wait(css).await;
        self.cmd(Method::POST, &format!("/element/{element}/clear"), json!({})).await.unwrap();
        self.cmd(Method::POST, &format!("/element/{element}/value"), json!({ "text": text })).await.unwrap();
    }

    async fn press_escape(&mut self, css: &str) {
        let element = self.wait(css).await;
        self.cmd(Method::POST, &format!("/element/{element}/value"), json!({ "text": "\u{E00C}" })).await.unwrap();
    }

    /// Sets a `<select>` like a person choosing an option (the change event included).
    async fn choose(&mut self, css: &str, value: &str) {
        self.wait(css).await;
        let script = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                      s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1];";
        assert_eq!(self.js(script, json!([css, value])).await, json!(true), "{css} has no option {value}");
    }

    async fn text(&mut self, css: &str) -> String {
        let element = self.wait(css).await;
        self.cmd(Method::GET, &format!("/element/{element}/text"), Value::Null)
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn source(&self) -> String {
        self.cmd(Method::GET, "/source", Value::Null).await.unwrap().as_str().unwrap_or_default().to_owned()
    }

    /// Saves a PNG of the whole page as `NN-name.png` (the window is made as tall as the page
    /// for the shot: WebDriver screenshots show the viewport).
    async fn screenshot(&mut self, name: &str) -> PathBuf {
        self.shot_count += 1;
        // The window's height minus the viewport's is the browser's own frame.
        let sizes = self
            .js("return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]", json!([]))
            .await;
        let needed = sizes[0].as_u64().unwrap_or(0) + sizes[1].as_u64().unwrap_or(0);
        let tall = needed.clamp(WINDOW.1, 5000);
        if tall > WINDOW.1 {
            let _ = self.cmd(Method::POST, "/window/rect", json!({"width": WINDOW.0, "height": tall})).await;
        }
        let png = self.cmd(Method::GET, "/screenshot", Value::Null).await;
        if tall > WINDOW.1 {
            let _ = self.cmd(Method::POST, "/window/rect", json!({"width": WINDOW.0, "height": WINDOW.1})).await;
        }
        let png = png.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot_count));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Browser console entries so far (chromedriver's log endpoint).
    async fn console(&self) -> Vec<Value> {
        match self.cmd(Method::POST, "/se/log", json!({"type": "browser"})).await {
            Ok(Value::Array(entries)) => entries,
            _ => Vec::new(),
        }
    }

    async fn die(&mut self, why: &str) -> ! {
        let shot = self.screenshot("FAILED").await;
        let text = self.js("return document.body.innerText", json!([])).await;
        panic!(
            "{why}\nat {}\nscreenshot: {}\npage text:\n{}\nconsole: {:?}",
            self.current_url().await,
            shot.display(),
            text.as_str().unwrap_or_default(),
            self.console().await
        );
    }

    async fn quit(mut self) {
        let _ = self.cmd(Method::DELETE, "", Value::Null).await;
        self.session.clear();
        let _ = std::fs::remove_file(&self.driver_log);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Best effort without a runtime: end the session so Chromium exits with chromedriver.
            delete_blocking(&self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE <url>` over a plain TCP connection (used from `Drop`).
fn delete_blocking(url: &str) {
    use std::io::{Read as _, Write as _};
    let Some(rest) = url.strip_prefix("http://") else { return };
    let Some((host, path)) = rest.split_once('/') else { return };
    if let Ok(mut stream) = std::net::TcpStream::connect(host) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ =
            write!(stream, "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
}

// ---------------------------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------------------------

/// Starts a service binary with `env` and waits for `ready_path`.
async fn spawn_service(
    bin: &Path,
    args: &[&str],
    env: &[(String, String)],
    url: &str,
    ready_path: &str,
) -> ccp_tests::Service {
    let service = ccp_tests::Service::spawn(bin, args, env).unwrap();
    if let Err(e) = ccp_tests::wait_http_ok(&format!("{url}{ready_path}"), Duration::from_secs(30)).await {
        panic!("{} did not start: {e}\n{}", bin.display(), service.log_text());
    }
    service
}

async fn through_proxy(proxy: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{proxy}/ak/{key}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .body(MESSAGE)
        .send()
        .await
        .unwrap()
}

/// Polls until the proxy answers `want` for the key.
async fn until_status(proxy: &str, key: &str, want: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = through_proxy(proxy, key).await.status().as_u16();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: the proxy still answers {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails if any secret is in the page (the one-time dialog must be closed before).
fn assert_no_secrets(page: &str, what: &str, secrets: &[(&str, &str)]) {
    for (name, secret) in secrets.iter().filter(|(_, s)| !s.is_empty()) {
        assert!(!page.contains(secret), "the {name} is in the HTML of {what}");
    }
}

/// `target/dashboard-screenshots/`, or its subdirectory `sub`, without the PNGs of an earlier run.
/// The tests run in parallel: each clears only its own shots (never another test's directory).
fn screenshots_dir(sub: Option<&str>) -> PathBuf {
    let mut dir = ccp_tests::target_dir().join("dashboard-screenshots");
    if let Some(sub) = sub {
        dir = dir.join(sub);
    }
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|x| x == "png") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    dir
}

/// The CSV file the browser downloaded into `downloads` (its path and text), once it is whole.
async fn downloaded_csv(b: &mut Browser, downloads: &Path) -> (PathBuf, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let done = std::fs::read_dir(downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"));
        // Chromium may show the final name before the content is written: wait for a
        // non-empty file that no longer changes.
        if let Some(path) = done {
            let first = std::fs::read_to_string(&path).unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let second = std::fs::read_to_string(&path).unwrap_or_default();
            if !second.is_empty() && first == second {
                return (path, second);
            }
        }
        if Instant::now() > deadline {
            b.die("no CSV was downloaded (or it stayed empty)").await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the projector and the proxy, drops the scenario's ClickHouse database and download
/// directory, and finishes the admin API.
async fn tear_down(api: AdminApi, services: (ccp_tests::Service, ccp_tests::Service), downloads: &Path) {
    let _ = std::fs::remove_dir_all(downloads);
    drop(services);
    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}

/// A `ccp-projector` (it migrates ClickHouse) and a `ccp-proxy` (upstreams: the fakes) on the
/// admin API's log; the proxy's URL.
async fn start_projector_and_proxy(
    api: &AdminApi,
    anthropic: &FakeAnthropic,
    bedrock: &FakeBedrock,
) -> (ccp_tests::Service, ccp_tests::Service, String) {
    let proxy_bin = ccp_tests::system::workspace_bin("ccp-proxy", "ccp-proxy");
    let projector_bin = ccp_tests::system::workspace_bin("ccp-projector", "ccp-projector");
    let projector_port = ccp_tests::free_port();
    let mut env = ccp_tests::service_env(&api.settings);
    env.extend([
        ("CCP__PROJECTOR__LISTEN".to_owned(), format!("127.0.0.1:{projector_port}")),
        ("CCP__PROJECTOR__FLUSH_INTERVAL_MS".to_owned(), "100".to_owned()),
    ]);
    let projector =
        spawn_service(&projector_bin, &["serve"], &env, &format!("http://127.0.0.1:{projector_port}"), "/ready").await;
    let proxy_port = ccp_tests::free_port();
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    let mut env = ccp_tests::service_env(&api.settings);
    env.extend([
        ("CCP__PROXY__LISTEN".to_owned(), format!("127.0.0.1:{proxy_port}")),
        ("CCP__PROXY__ANTHROPIC_BASE_URL".to_owned(), anthropic.url()),
        ("CCP__PROXY__BEDROCK_ENDPOINT_URL".to_owned(), bedrock.url()),
        ("CCP__PROXY__CIRCUIT_FAILURE_THRESHOLD".to_owned(), "2".to_owned()),
        ("CCP__SECRETS__MASTER_KEY".to_owned(), common::MASTER_KEY.to_owned()),
        ("CCP__SECRETS__MASTER_KEY_ID".to_owned(), "local-test".to_owned()),
        (
            "CCP__PROXY__SPOOL_DIR".to_owned(),
            std::env::temp_dir().join(format!("ccp-spool-dash-{}", ulid::Ulid::new())).display().to_string(),
        ),
    ]);
    let proxy = spawn_service(&proxy_bin, &[], &env, &proxy_url, "/ready").await;
    (projector, proxy, proxy_url)
}

/// Waits until the proxy has applied the whole admin stream, so that no request is refused
/// (a refused request would be counted too).
async fn until_proxy_caught_up(api: &AdminApi, proxy_url: &str) {
    let mut admin_stream = api.log.js.get_stream(api.log.ns.stream(StreamKind::Admin)).await.unwrap();
    let last = admin_stream.info().await.unwrap().state.last_sequence;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Value = reqwest::get(format!("{proxy_url}/ready")).await.unwrap().json().await.unwrap();
        if ready["admin_stream_seq"].as_u64().unwrap_or(0) >= last {
            break;
        }
        assert!(Instant::now() < deadline, "the proxy did not apply seq {last}: {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails on a script error or CSP violation in the browser's console so far (a marker proves
/// the log is read).
async fn assert_clean_console(b: &Browser) {
    b.js("console.warn('ccp-console-marker')", json!([])).await;
    let messages: Vec<String> =
        b.console().await.into_iter().filter_map(|e| e["message"].as_str().map(str::to_owned)).collect();
    assert!(messages.iter().any(|m| m.contains("ccp-console-marker")), "the browser log is not readable: {messages:?}");
    let problems: Vec<String> = messages
        .into_iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Uncaught") || m.contains("TypeError"))
        .collect();
    assert!(problems.is_empty(), "browser console: {problems:#?}");
}

#[tokio::test]
async fn a_platform_engineer_manages_a_developer_and_watches_usage_in_the_dashboard() {
    let started = Instant::now();
    let anthropic = FakeAnthropic::start().unwrap();
    let bedrock = FakeBedrock::start(&[BEDROCK_KEY]).unwrap();
    // The admin API checks Bedrock API keys' failover readiness against the same fake.
    let bedrock_url = bedrock.url();
    let api = AdminApi::start_with("dashboard", &[("CCP__PROXY__BEDROCK_ENDPOINT_URL", bedrock_url.as_str())]).await;
    let (projector, proxy, proxy_url) = start_projector_and_proxy(&api, &anthropic, &bedrock).await;

    let shots = screenshots_dir(None);
    let downloads = std::env::temp_dir().join(format!("ccp-downloads-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&downloads).unwrap();
    let mut b = Browser::start(&downloads, &shots).await;
    let base = api.url.clone();
    let mut access_key = String::new();
    let mut rotated_key = String::new();
    macro_rules! no_secrets {
        ($what:expr) => {{
            let page = b.source().await;
            assert_no_secrets(
                &page,
                $what,
                &[
                    ("access key", access_key.as_str()),
                    ("rotated access key", rotated_key.as_str()),
                    ("Bedrock API key", BEDROCK_KEY),
                    ("admin password", common::ADMIN_PASSWORD),
                ],
            );
        }};
    }

    // Log in: a wrong password shows the API's message, the right one opens the overview.
    b.goto(&format!("{base}/")).await;
    b.wait("#login-form").await;
    let focused = b.js("return document.activeElement.id", json!([])).await;
    assert_eq!(focused, "login-username", "the username field has the focus");
    b.screenshot("login").await;
    b.type_into("#login-username", common::ADMIN_USER).await;
    b.type_into("#login-password", "not the password at all").await;
    b.click("#login-submit").await;
    b.wait_text("#login-form .error-box", "wrong username or password").await;
    b.type_into("#login-password", common::ADMIN_PASSWORD).await;
    b.click("#login-submit").await;
    b.wait("#topbar:not([hidden])").await;
    b.wait_text("h1", "Overview").await;
    let cookies = b.js("return document.cookie", json!([])).await;
    assert_eq!(cookies, "", "the session cookie is HttpOnly");
    let storage =
        b.js("return JSON.stringify([Object.keys(sessionStorage), Object.keys(localStorage)])", json!([])).await;
    assert_eq!(storage, r#"[["ccp.csrf"],[]]"#, "only the CSRF token is kept");
    b.wait("#stat-today-requests").await;
    no_secrets!("the overview after login");

    // Create a user.
    b.click("a[data-nav=users]").await;
    b.wait("#users-table, #main .empty").await;
    b.click("#new-user").await;
    b.wait("#new-user-dialog[open]").await;
    assert_eq!(b.js("return document.activeElement.id", json!([])).await, "user-name");
    b.type_into("#user-name", "Dana Scully").await;
    b.type_into("#user-email", "dana@example.com").await;
    b.type_into("#user-budget", "50").await;
    b.click("#new-user-dialog button[data-role=submit]").await;
    b.wait_text("h1", "Dana Scully").await;
    let url = b.current_url().await;
    let user_id = url.rsplit('/').next().unwrap().to_owned();
    assert!(user_id.starts_with("usr_"), "{url}");
    b.wait_text("#user-keys", "No access keys yet").await;
    b.wait_text("#user-budget-panel", "of $50.00 spent").await;

    // The list finds her by search, not among the inactive.
    b.click("nav.breadcrumb a").await;
    b.wait_text("#users-table", "Dana Scully").await;
    b.type_into("#user-search", "SCULLY").await;
    b.until(
        "the search to apply",
        "return location.hash.includes('search=SCULLY') && !document.querySelector('#main [aria-busy]') \
                && document.querySelector('#users-table')?.textContent.includes('dana@example.com');",
        json!([]),
    )
    .await;
    b.choose("#user-status", "inactive").await;
    b.wait_text("#main .empty", "No user matches these filters").await;
    b.choose("#user-status", "active").await;
    b.wait_text("#users-table", "Dana Scully").await;
    b.screenshot("users").await;
    b.click("#users-table a").await;
    b.wait_text("h1", "Dana Scully").await;
    b.wait_text("#user-keys", "No access keys yet").await;

    // Issue a key: shown once, with copy buttons for the key and the export line.
    b.click("#issue-key").await;
    b.wait("#issue-key-dialog[open]").await;
    b.type_into("#key-name", "laptop").await;
    b.click("#issue-key-dialog button[data-role=submit]").await;
    b.wait("#onetime-dialog[open]").await;
    access_key = b.text("#onetime-key").await;
    assert!(access_key.starts_with("ak_") && access_key.len() > 40, "{access_key}");
    let export = b.text("#onetime-export").await;
    assert_eq!(export, format!("export ANTHROPIC_BASE_URL={}/ak/{access_key}", common::PUBLIC_PROXY_URL));
    b.wait("#copy-key").await;
    b.wait("#copy-export").await;
    assert_eq!(b.js("return document.activeElement.id", json!([])).await, "copy-key");
    b.click("#copy-key").await;
    b.wait_text("#copy-key", "Copied").await;
    assert_eq!(b.clipboard().await, access_key, "the copy button put something else on the clipboard");
    b.screenshot("one-time-key-dialog").await;
    b.click("#copy-export").await;
    b.wait_text("#copy-export", "Copied").await;
    assert_eq!(b.clipboard().await, export, "the export line's copy button");
    b.press_escape("#copy-export").await;
    b.until("the one-time dialog to close", "return !document.querySelector('#onetime-dialog')", json!([])).await;
    b.wait_text("#keys-table", "laptop").await;
    no_secrets!("the user page after the key dialog closed");

    // Register the key's Bedrock API key (a password field, never shown again).
    b.click("#keys-table button[data-action=bedrock-key]").await;
    b.wait("#bedrock-key-dialog[open]").await;
    let kind = b.js("return document.querySelector('#bedrock-key-input').type", json!([])).await;
    assert_eq!(kind, "password");
    b.type_into("#bedrock-key-input", BEDROCK_KEY).await;
    b.click("#bedrock-key-dialog button[data-role=submit]").await;
    b.until("the dialog to close", "return !document.querySelector('#bedrock-key-dialog')", json!([])).await;
    b.wait_text("#keys-table", "linked").await;
    b.wait("#keys-table button[data-action=remove-bedrock-key]").await;
    no_secrets!("the user page after registering the Bedrock key");
    // Its failover readiness, checked on demand (free calls to the fake Bedrock).
    b.click("#keys-table button[data-action=check-bedrock-key]").await;
    b.wait_text("#keys-table [data-readiness=ready]", "failover ready").await;

    // Traffic: three requests on the Plan, then two rate-limited ones that fail over to Bedrock
    // (and open the key's circuit: its threshold is 2).
    until_proxy_caught_up(&api, &proxy_url).await;
    let traffic_day = chrono::Utc::now().date_naive();
    for _ in 0..3 {
        assert_eq!(through_proxy(&proxy_url, &access_key).await.status(), 200);
    }
    let mut fallback_id = String::new();
    for _ in 0..2 {
        anthropic.enqueue(Scenario::new(ScenarioName::RateLimit));
        let resp = through_proxy(&proxy_url, &access_key).await;
        assert_eq!(resp.status(), 200, "failed over to Bedrock");
        assert_eq!(resp.headers().get("x-ccp-provider").and_then(|v| v.to_str().ok()), Some("bedrock"));
        fallback_id = resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned();
    }
    let invoked = bedrock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/invoke") || r.path.ends_with("/invoke-with-response-stream"))
        .count();
    assert_eq!(invoked, 2, "two answers (the readiness checks are CountTokens and listings)");

    // The overview shows them (the page refreshes itself; the button makes it sooner).
    b.click("a[data-nav=overview]").await;
    b.wait("#refresh").await;
    // Each section reads its own rollup table, and ClickHouse may show one a moment before another:
    // refresh until every section shows the traffic.
    let script = "const ready = document.querySelector('#stat-month-requests')?.dataset.value === '5' \
                    && (!arguments[0] || document.querySelector('#stat-today-requests')?.dataset.value === '5') \
                    && document.querySelector('#top-users') \
                    && document.querySelector('li[data-provider=bedrock]') \
                    && document.querySelector('#chart-throughput svg rect.bar-rect') \
                    && document.querySelector('#overview-circuits'); \
                  if (ready) return true; \
                  if (!(Date.now() - window.ccpTestRefreshed < 1000)) { \
                    window.ccpTestRefreshed = Date.now(); document.querySelector('#refresh')?.click(); } \
                  return null;";
    // (Today's count too, unless midnight passed since the traffic.)
    let same_day = chrono::Utc::now().date_naive() == traffic_day;
    b.until("the overview to show the 5 requests", script, json!([same_day])).await;
    b.wait_text("li[data-provider=bedrock]", "2 requests").await;
    b.wait_text("li[data-provider=anthropic]", "3 requests").await;
    b.wait_text("#stat-fallback-rate", "40.0%").await;
    b.wait_text("#top-users", "Dana Scully").await;
    b.wait("#chart-throughput svg rect.bar-rect").await;
    b.wait("#overview-circuits").await;
    b.screenshot("overview").await;
    no_secrets!("the overview");

    // The usage page, filtered to the user, by provider, with CSV export.
    b.goto(&format!("{base}/#/usage?preset=last_24h&bucket=hour&group=provider&user_id={user_id}")).await;
    b.until(
        "the usage totals",
        "const e = document.querySelector('#usage-total-requests'); \
         if (e && e.dataset.value === '5') return true; \
         if (e && !(Date.now() - window.ccpTestRefreshed < 1000)) { \
           window.ccpTestRefreshed = Date.now(); document.querySelector('#usage-apply')?.click(); } \
         return null;",
        json!([]),
    )
    .await;
    b.wait("#chart-usage-tokens svg rect.bar-rect").await;
    b.wait("#chart-usage-cost").await;
    b.wait_text("#usage-table", "Bedrock").await;
    b.wait_text("#usage-table", "Plan (Anthropic)").await;
    let selected = b.js("return document.querySelector('#usage-user').value", json!([])).await;
    assert_eq!(selected, user_id.as_str(), "the user filter is applied");
    b.click("#export-csv").await;
    let (_, csv) = downloaded_csv(&mut b, &downloads).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "bucket_start,time_zone,provider,requests,errors,fallbacks,input_tokens,output_tokens,\
             cache_read_tokens,cache_creation_tokens,cost_usd"
        )
    );
    // (requests, fallbacks) per provider, over however many hours the traffic spans.
    let mut sums = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for row in lines {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), 11, "{row}");
        let sum = sums.entry(cells[2].to_owned()).or_default();
        sum.0 += cells[3].parse::<u64>().unwrap();
        sum.1 += cells[5].parse::<u64>().unwrap();
    }
    assert_eq!(sums.get("anthropic"), Some(&(3, 0)), "{csv}");
    assert_eq!(sums.get("bedrock"), Some(&(2, 2)), "{csv}");
    b.screenshot("usage").await;
    no_secrets!("the usage page");

    // A custom range (read in the chosen time zone) by week, and by month: the same totals.
    let from = (chrono::Utc::now() - chrono::Duration::hours(3)).format("%Y-%m-%dT%H:%M").to_string();
    b.choose("#usage-preset", "custom").await;
    b.js("document.querySelector('#usage-from').value = arguments[0]", json!([from])).await;
    for bucket in ["week", "month"] {
        b.choose("#usage-bucket", bucket).await;
        b.click("#usage-apply").await;
        b.until(
            &format!("usage per {bucket} of the custom range"),
            "const e = document.querySelector('#usage-total-requests'); \
             return e && e.dataset.value === '5' && location.hash.includes('bucket=' + arguments[0]) \
                    && location.hash.includes('from=') && document.querySelector('#chart-usage-cost rect.bar-rect');",
            json!([bucket]),
        )
        .await;
    }

    // Request lookup of a fallback.
    b.goto(&format!("{base}/#/requests/{fallback_id}")).await;
    b.wait_text("#request-detail", "Bedrock").await;
    b.wait_text("#request-detail", "fallback: rate_limited").await;
    b.wait_text("#request-detail", "Dana Scully").await;
    b.screenshot("request-lookup").await;
    no_secrets!("the request lookup");
    // An unknown id shows the API's own message.
    b.type_into("#request-id", &format!("req_{}", ulid::Ulid::new())).await;
    b.click("#request-form button[type=submit]").await;
    b.wait_text("#request-result .error-box", "no request req_").await;

    // The open circuit, reset by hand.
    b.click("a[data-nav=circuits]").await;
    b.wait_text("#circuits-table", "open").await;
    b.wait_text("#circuits-table", "Dana Scully").await;
    b.screenshot("circuits").await;
    b.click("#circuits-table button[data-action=reset-circuit]").await;
    b.wait("dialog[open] button[data-role=submit]").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("#main", "All circuits are closed").await;
    let key_id = api.get(&format!("/v1/users/{user_id}/keys")).await.body[0]["key_id"].as_str().unwrap().to_owned();
    b.type_into("#circuit-key", &key_id).await;
    b.click("#circuit-form button[type=submit]").await;
    b.wait_text("#circuit-result", "manual_reset").await;
    b.wait_text("#circuit-result", "closed").await;
    no_secrets!("the circuits page");

    // The user page: usage, budget spent, last use; then revoke the key.
    b.goto(&format!("{base}/#/users/{user_id}")).await;
    b.wait("#chart-user-tokens svg rect.bar-rect").await;
    b.wait("#keys-table .last-used time").await;
    b.wait_text("#keys-table", "closed").await;
    b.screenshot("user").await;
    no_secrets!("the user page");

    // Budget, routing, deactivation (confirmed) and reactivation.
    b.type_into("#budget-input", "75.5").await;
    b.click("#budget-form button[type=submit]").await;
    b.wait_text("#user-budget-panel", "of $75.50 spent").await;
    b.choose("#routing-select", "plan_only").await;
    b.click("#routing-form button[type=submit]").await;
    b.until(
        "the routing to be saved",
        "return document.querySelector('#toast').textContent.includes('Plan only') \
                && document.querySelector('#routing-select')?.value === 'plan_only';",
        json!([]),
    )
    .await;
    let saved = api.get(&format!("/v1/users/{user_id}")).await.body;
    assert_eq!((saved["routing"].as_str(), saved["monthly_limit_usd"].as_str()), (Some("plan_only"), Some("75.5")));
    b.click("#deactivate-user").await;
    b.wait("dialog[open] button[data-role=submit]").await;
    b.press_escape("dialog[open] textarea[name=reason]").await;
    b.until("Escape to cancel", "return !document.querySelector('dialog')", json!([])).await;
    let focused = b.js("return document.activeElement.id", json!([])).await;
    assert_eq!(focused, "deactivate-user", "the focus returns to the button that opened the dialog");
    assert_eq!(api.get(&format!("/v1/users/{user_id}")).await.body["status"], "active", "cancelled");
    b.click("#deactivate-user").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait("#reactivate-user").await;
    b.wait_text("#main .page-head", "inactive").await;
    until_status(&proxy_url, &access_key, 401, "the deactivated user's key").await;
    b.click("#reactivate-user").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait("#deactivate-user").await;
    until_status(&proxy_url, &access_key, 200, "the reactivated user's key").await;

    // Bedrock settings of the key.
    b.click("#keys-table button[data-action=bedrock-settings]").await;
    b.type_into("dialog[open] input[name=region]", "eu-central-1").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("#keys-table", "eu-central-1").await;

    // Rotation: a new secret, shown once; the old one is refused.
    b.click("#keys-table button[data-action=rotate]").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait("#onetime-dialog[open]").await;
    rotated_key = b.text("#onetime-key").await;
    assert!(rotated_key.starts_with("ak_") && rotated_key != access_key);
    b.click("#onetime-close").await;
    b.until("the one-time dialog to close", "return !document.querySelector('dialog')", json!([])).await;
    no_secrets!("the user page after rotation");
    until_status(&proxy_url, &rotated_key, 200, "the rotated key").await;
    assert_eq!(through_proxy(&proxy_url, &access_key).await.status(), 401, "the old secret");

    // Revocation.
    b.wait_text("#keys-table", "active").await;
    b.click("#keys-table button[data-action=revoke]").await;
    b.wait("dialog[open] textarea[name=reason]").await;
    b.type_into("dialog[open] textarea[name=reason]", "laptop lost").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("#keys-table", "revoked").await;
    until_status(&proxy_url, &rotated_key, 401, "the revoked key").await;

    // Every change is in the audit log (a failed login is counted on the security stream instead:
    // SECURITY.md, "Sign-in throttling").
    b.click("a[data-nav=audit]").await;
    let wanted = [
        "admin_login_succeeded",
        "user_created",
        "access_key_issued",
        "access_key_rotated",
        "bedrock_api_key_registered",
        "budget_set",
        "routing_strategy_set",
        "user_deactivated",
        "user_reactivated",
        "access_key_revoked",
    ];
    let script =
        "const types = [...document.querySelectorAll('#audit-table code.event-type')].map(e => e.textContent); \
                  const missing = arguments[0].filter(t => !types.includes(t)); \
                  if (!missing.length) return types; \
                  if (!(Date.now() - window.ccpTestRefreshed < 1000)) { \
                    window.ccpTestRefreshed = Date.now(); document.querySelector('#audit-apply')?.click(); } \
                  return null;";
    b.until("every action in the audit log", script, json!([wanted])).await;
    b.type_into("#audit-target", &user_id).await;
    b.type_into("#audit-type", "access_key_revoked").await;
    b.click("#audit-apply").await;
    b.until(
        "the filtered audit log",
        "const rows = document.querySelectorAll('#audit-table tbody tr'); \
         return rows.length === 1 && rows[0].textContent.includes('access_key_revoked');",
        json!([]),
    )
    .await;
    b.wait_text("#audit-table", "laptop lost").await;
    b.screenshot("audit").await;
    no_secrets!("the audit log");

    // Models: Claude Code's default model is shipped unpriced; a price and a Bedrock target set
    // on the page are what the API then answers.
    b.click("a[data-nav=models]").await;
    b.wait("#models-table").await;
    b.until(
        "claude-opus-5-5 marked unpriced",
        "const row = [...document.querySelectorAll('#models-table tbody tr')].find(r => r.textContent.includes('claude-opus-5-5')); \
         return row && row.textContent.includes('unpriced') ? true : null;",
        json!([]),
    )
    .await;
    b.click("button[data-action=edit-model][data-model='claude-opus-5-5']").await;
    b.wait("#model-dialog[open]").await;
    b.type_into("#model-bedrock", "global=global.anthropic.claude-opus-5-5-v1:0").await;
    b.type_into("#model-price", "5/25").await;
    b.click("#model-dialog button[data-role=submit]").await;
    b.wait_text("#model-dialog .error-box", "IN/OUT/CACHE_WRITE/CACHE_READ").await;
    b.js("document.querySelector('#model-price').value = ''", json!([])).await;
    b.type_into("#model-price", "5/25/6.25/0.50").await;
    b.click("#model-dialog button[data-role=submit]").await;
    b.until(
        "claude-opus-5-5 priced",
        "const row = [...document.querySelectorAll('#models-table tbody tr')].find(r => r.textContent.includes('claude-opus-5-5')); \
         return row && row.textContent.includes('$5 in / $25 out') && !row.textContent.includes('unpriced') ? true : null;",
        json!([]),
    )
    .await;
    b.screenshot("models").await;
    let model = api.get("/v1/models/claude-opus-5-5").await;
    assert_eq!(model.body["priced"], true, "{}", model.text);
    assert_eq!(model.body["bedrock"][0]["model_id"], "global.anthropic.claude-opus-5-5-v1:0", "{}", model.text);
    no_secrets!("the models page");

    // No script error or CSP violation on any page.
    assert_clean_console(&b).await;

    // Log out: the page forgets the session; the API refuses the old cookie.
    b.click("#logout").await;
    b.wait("#login-form").await;
    b.wait_text("main", "You are logged out").await;
    b.goto(&format!("{base}/#/users")).await;
    b.wait("#login-form").await;
    let me =
        b.until("a fetch of /v1/auth/me", "return fetch('/v1/auth/me').then(r => String(r.status))", json!([])).await;
    assert_eq!(me, "401", "the session ended on the server too");
    no_secrets!("the login page after logout");

    b.quit().await;
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
        .count();
    assert!(pngs >= 9, "{pngs} screenshots");
    tear_down(api, (projector, proxy), &downloads).await;
    eprintln!("dashboard scenario took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// The developer's self-service page, /me
// ---------------------------------------------------------------------------------------------

/// A count as the page writes it (en-US grouping: `12,345`).
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count of an API answer.
fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Checks a dollar figure the page shows against the API's decimal string: the same value, with
/// the page's precision (cents; four decimals below one cent).
fn assert_usd(shown: &str, api: &Value, what: &str) {
    let want: f64 = api.as_str().unwrap_or_else(|| panic!("{what}: no decimal string: {api}")).parse().unwrap();
    let digits = if want != 0.0 && want.abs() < 0.01 { 4 } else { 2 };
    let number = shown.strip_prefix('$').unwrap_or_else(|| panic!("{what}: {shown:?} is not in dollars"));
    assert_eq!(number.split_once('.').map(|(_, d)| d.len()), Some(digits), "{what}: {shown:?} for {api}");
    let got: f64 = number.parse().unwrap_or_else(|_| panic!("{what}: {shown:?}"));
    let step = 10f64.powi(-i32::try_from(digits).unwrap());
    assert!((got - want).abs() <= step / 2.0 + 1e-9, "{what}: the page shows {shown}, the API answers {api}");
}

/// The value and the small print of the stat labelled `label` (as read by `ME_PAGE_SCRIPT`).
fn stat(stats: &Value, label: &str) -> (String, Option<String>) {
    let s = stats.get(label).unwrap_or_else(|| panic!("no stat {label:?} in {stats}"));
    (s[0].as_str().unwrap_or_default().to_owned(), s[1].as_str().map(str::to_owned))
}

/// The cells of table rows (as read by `ME_PAGE_SCRIPT`).
fn cells(rows: &Value) -> Vec<Vec<String>> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|c| c.as_str().unwrap_or_default().to_owned()).collect())
        .collect()
}

/// What `/me` shows, read from the DOM: per panel its stats (`label: [value, small print]`),
/// table rows (cell texts), headings and notes.
const ME_PAGE_SCRIPT: &str = "\
    const q = (s, root) => (root || document).querySelector(s);\n\
    const stats = (root) => Object.fromEntries([...root.querySelectorAll('.stat')].map((s) => {\n\
      const dd = q('dd', s);\n\
      return [q('dt', s).textContent, [dd.firstChild.textContent, q('.sub', dd)?.textContent ?? null]];\n\
    }));\n\
    const rows = (root) => [...root.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent));\n\
    const usage = (label) => {\n\
      const s = [...document.querySelectorAll('#me-report section[aria-label]')].find((e) => e.getAttribute('aria-label') === label);\n\
      return s ? { stats: stats(s), rows: rows(s) } : null;\n\
    };\n\
    return {\n\
      title: q('#me-report h1').textContent,\n\
      today: usage(arguments[0]),\n\
      month: usage(arguments[1]),\n\
      budget: { title: q('#me-budget h2').textContent, stats: stats(q('#me-budget')),\n\
                bar: q('#me-budget .bar')?.getAttribute('aria-label') ?? null, note: q('#me-budget p.muted').textContent },\n\
      plan: { stats: stats(q('#me-plan')), note: q('#me-plan p.muted')?.textContent ?? null },\n\
      keys: rows(q('#me-keys')),\n\
      failovers: { title: q('#me-failovers h2').textContent, rows: rows(q('#me-failovers')) },\n\
      requests: rows(q('#me-requests')),\n\
    };";

/// Checks a usage panel (today, this month) against the API's report.
fn assert_usage_panel(shown: &Value, api: &Value, what: &str) {
    assert!(shown.is_object(), "{what}: no panel");
    let t = &api["totals"];
    let stats = &shown["stats"];
    assert_eq!(
        stat(stats, "Requests"),
        (int(count(&t["requests"])), Some(format!("{} errors", int(count(&t["errors"]))))),
        "{what}"
    );
    assert_usd(&stat(stats, "Cost").0, &t["cost_usd"], &format!("{what}: cost"));
    assert_eq!(stat(stats, "Failed over to Bedrock").0, int(count(&t["fallbacks"])), "{what}");
    assert_eq!(stat(stats, "Output tokens").0, int(count(&t["output_tokens"])), "{what}");
    let rows = api["rows"].as_array().unwrap();
    let shown_rows = cells(&shown["rows"]);
    assert_eq!(shown_rows.len(), rows.len(), "{what}: rows {shown_rows:?} for {rows:?}");
    for (cells, r) in shown_rows.iter().zip(rows) {
        let input = count(&r["input_tokens"]) + count(&r["cache_read_tokens"]) + count(&r["cache_creation_tokens"]);
        assert_eq!(
            cells[..5],
            [
                r["model"].as_str().unwrap_or("—").to_owned(),
                r["provider"].as_str().unwrap_or("—").to_owned(),
                int(count(&r["requests"])),
                int(input),
                int(count(&r["output_tokens"])),
            ],
            "{what}: {r}"
        );
        assert_usd(&cells[5], &r["cost_usd"], &format!("{what}: cost of {r}"));
    }
}

/// Checks request rows (latest requests, failovers) against the API's list; `times` are the
/// browser's own renderings of each `occurred_at`.
fn assert_request_rows(shown: &Value, api: &Value, times: &[String], what: &str) {
    let list = api.as_array().unwrap();
    let shown_rows = cells(shown);
    assert_eq!(shown_rows.len(), list.len(), "{what}: {shown_rows:?}");
    for ((cells, r), time) in shown_rows.iter().zip(list).zip(times) {
        let model = r["response_model"].as_str().or(r["requested_model"].as_str()).unwrap_or("—");
        let provider = match r["fallback_reason"].as_str() {
            Some(reason) => format!("{} ({reason})", r["provider"].as_str().unwrap()),
            None => r["provider"].as_str().unwrap().to_owned(),
        };
        let status = match r["error_class"].as_str() {
            Some(class) => format!("{} {class}", r["status"]),
            None => r["status"].to_string(),
        };
        assert_eq!(
            cells[..5],
            [r["request_id"].as_str().unwrap().to_owned(), time.clone(), model.to_owned(), provider, status],
            "{what}: {r}"
        );
        assert_usd(&cells[5], &r["cost_usd"], &format!("{what}: cost of {r}"));
    }
}

/// Each timestamp as the page renders it (`toLocaleString` in the browser).
async fn local_times(b: &Browser, isos: &[&str]) -> Vec<String> {
    let v = b.js("return arguments[0].map((s) => new Date(s).toLocaleString());", json!([isos])).await;
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_developer_sees_their_own_usage_budget_and_plan_limits_on_the_me_page() {
    let started = Instant::now();
    let anthropic = FakeAnthropic::start().unwrap();
    let bedrock = FakeBedrock::start(&[BEDROCK_KEY]).unwrap();
    let api = AdminApi::start("dashme").await;
    let (projector, proxy, proxy_url) = start_projector_and_proxy(&api, &anthropic, &bedrock).await;

    // A developer with a monthly budget and a key that can fail over to Bedrock.
    let user_id = api.create_user("Walter Skinner").await;
    let budget = api.put(&format!("/v1/users/{user_id}/budget"), json!({"monthly_limit_usd": "2.5"})).await;
    assert_eq!(budget.status, 200, "{}", budget.text);
    let issued = api.post(&format!("/v1/users/{user_id}/keys"), json!({"name": "laptop"})).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let key_id = issued.body["key"]["key_id"].as_str().unwrap().to_owned();
    let access_key = issued.body["access_key"].as_str().unwrap().to_owned();
    let linked = api.put(&format!("/v1/keys/{key_id}/bedrock-key"), json!({"api_key": BEDROCK_KEY})).await;
    assert_eq!(linked.status, 200, "{}", linked.text);
    until_proxy_caught_up(&api, &proxy_url).await;

    // Traffic: three answers on the Plan, then the subscription's limit is reached (Anthropic's
    // 429 with the unified headers) and Bedrock answers.
    let traffic_day = chrono::Utc::now().date_naive();
    let mut sent = Vec::new();
    for _ in 0..3 {
        anthropic.enqueue(Scenario::text("Hello Walter").with_usage(Usage::new(20_000, 4_000, 100_000, 0)));
        let resp = through_proxy(&proxy_url, &access_key).await;
        assert_eq!(resp.status(), 200);
        sent.push(resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned());
    }
    anthropic.enqueue(Scenario::new(ScenarioName::UsageLimit));
    let resp = through_proxy(&proxy_url, &access_key).await;
    assert_eq!(resp.status(), 200, "failed over to Bedrock");
    assert_eq!(resp.headers().get("x-ccp-provider").and_then(|v| v.to_str().ok()), Some("bedrock"));
    let failover_id = resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned();
    sent.push(failover_id.clone());

    let shots = screenshots_dir(Some("me"));
    let downloads = std::env::temp_dir().join(format!("ccp-downloads-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&downloads).unwrap();
    let mut b = Browser::start(&downloads, &shots).await;
    let base = api.url.clone();
    let wrong = AccessKey::generate().unwrap();
    let wrong_key = wrong.expose().to_owned();
    let secrets = [
        ("access key", access_key.as_str()),
        ("wrong access key", wrong_key.as_str()),
        ("Bedrock API key", BEDROCK_KEY),
    ];

    b.goto(&format!("{base}/me")).await;
    b.wait("#me-form").await;
    let tz = b.js("return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'", json!([])).await;
    let tz = tz.as_str().unwrap().to_owned();
    // What the API answers for the key, in the page's time zone, once the projector has
    // written every request (each rollup may show them a moment after another).
    let self_usage = || async {
        let resp = api
            .http
            .get(format!("{base}/v1/self"))
            .query(&[("tz", tz.as_str())])
            .header("x-ccp-access-key", &access_key)
            .send()
            .await
            .unwrap();
        AdminApi::answer(resp).await
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let a = self_usage().await;
        assert_eq!(a.status, 200, "{}", a.text);
        let m = &a.body;
        let same_day = chrono::Utc::now().date_naive() == traffic_day;
        let spent: rust_decimal::Decimal = m["budget"]["spent_usd"].as_str().unwrap().parse().unwrap();
        let month_cost: rust_decimal::Decimal =
            m["this_month"]["totals"]["cost_usd"].as_str().unwrap().parse().unwrap();
        if m["this_month"]["totals"]["requests"] == 4
            && m["this_month_by_key"]["totals"]["requests"] == 4
            && (!same_day || m["today"]["totals"]["requests"] == 4)
            && m["recent_requests"].as_array().unwrap().len() == 4
            && m["failovers"]["recent"].as_array().unwrap().len() == 1
            && m["failovers"]["this_month"] == 1
            && !m["plan_limit"].is_null()
            && spent == month_cost
        {
            break;
        }
        assert!(Instant::now() < deadline, "the traffic is not projected yet: {}", a.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    no_secrets_in(&b, "the key form", &secrets).await;
    b.screenshot("key-form").await;

    // Nothing pasted: the page says what it needs.
    b.click("#me-submit").await;
    b.wait_text("#me-error", "Paste your access key").await;

    // The key: the page shows the developer's own figures, as the API answers them.
    b.type_into("#me-key", &access_key).await;
    b.click("#me-submit").await;
    b.wait("#me-report:not([hidden]) #me-requests").await;
    b.wait_text("#me-report h1", "Walter Skinner: my usage").await;
    // The status-line settings, the same fragment `ccpctl onboard` prints, with no key in it.
    let fragment: Value =
        serde_json::from_str(&b.text("#me-statusline-settings").await).expect("the status-line settings are JSON");
    assert_eq!(fragment["statusLine"]["command"], "~/.claude/ccp-statusline", "{fragment}");
    assert_eq!(
        b.js(
            "return [document.querySelector('#me-login').hidden, document.querySelector('#me-error').hidden]",
            json!([])
        )
        .await,
        json!([true, true]),
        "the key form and its error are hidden"
    );
    let a = self_usage().await;
    assert_eq!(a.status, 200, "{}", a.text);
    let me = a.body;
    assert_eq!(me["user"]["user_id"], user_id.as_str());
    let api_tz = me["tz"].as_str().unwrap();
    let page = b.js(ME_PAGE_SCRIPT, json!([format!("Today ({api_tz})"), format!("This month ({api_tz})")])).await;

    // Today and this month, by model and provider.
    if chrono::Utc::now().date_naive() == traffic_day {
        assert_eq!(me["today"]["totals"]["requests"], 4);
    }
    assert_usage_panel(&page["today"], &me["today"], "today");
    assert_eq!(me["this_month"]["totals"]["requests"], 4);
    assert_eq!(me["this_month"]["totals"]["fallbacks"], 1);
    assert!(me["this_month"]["rows"].as_array().unwrap().len() >= 2, "Plan and Bedrock rows: {}", me["this_month"]);
    assert_usage_panel(&page["month"], &me["this_month"], "this month");
    assert_eq!(stat(&page["month"]["stats"], "Requests").0, "4");
    assert_eq!(stat(&page["month"]["stats"], "Failed over to Bedrock").0, "1");

    // The budget: spent, limit, remaining, reset.
    let budget = &me["budget"];
    assert_eq!(budget["limit_usd"], "2.5");
    let spent: f64 = budget["spent_usd"].as_str().unwrap().parse().unwrap();
    assert!(spent > 0.0, "the requests cost something: {budget}");
    assert_eq!(page["budget"]["title"], format!("Budget {}", budget["month"].as_str().unwrap()));
    let stats = &page["budget"]["stats"];
    assert_usd(&stat(stats, "Spent").0, &budget["spent_usd"], "spent");
    assert_usd(&stat(stats, "Limit").0, &budget["limit_usd"], "limit");
    assert_usd(&stat(stats, "Remaining").0, &budget["remaining_usd"], "remaining");
    let used = ((spent / 2.5).min(1.0) * 100.0).round();
    assert_eq!(page["budget"]["bar"], format!("{used}% of the budget used"));
    let reset = local_times(&b, &[budget["reset_at"].as_str().unwrap()]).await.remove(0);
    assert_eq!(page["budget"]["note"], format!("Resets {reset} ({}).", budget["time_zone"].as_str().unwrap()));

    // The newest Plan-limit state: the subscription was rejected, with its reset time.
    let state = &me["plan_limit"]["state"];
    let unified = &state["unified"];
    assert_eq!((state["status"].as_u64(), unified["status"].as_str()), (Some(429), Some("rejected")), "{state}");
    let times = local_times(&b, &[unified["reset"].as_str().unwrap(), state["observed_at"].as_str().unwrap()]).await;
    let stats = &page["plan"]["stats"];
    assert_eq!(stat(stats, "Subscription"), ("rejected".to_owned(), Some(format!("resets {}", times[0]))));
    let pct = |v: &Value| format!("{}%", (v.as_f64().unwrap() * 100.0).round());
    assert_eq!(stat(stats, "5-hour window").0, pct(&unified["five_hour"]["utilization"]));
    assert_eq!(stat(stats, "5-hour window").0, "100%");
    assert_eq!(stat(stats, "7-day window").0, pct(&unified["seven_day"]["utilization"]));
    assert_eq!(stat(stats, "Retry after").0, format!("{} s", int(count(&state["retry_after_secs"]))));
    assert_eq!(page["plan"]["note"], format!("Seen {} on an HTTP 429 answer (key {key_id}).", times[1]));

    // This month by key: the key (by its prefix only) with its requests and cost.
    let key = &me["keys"][0];
    assert_eq!((key["key_id"].as_str(), key["current"].as_bool()), (Some(key_id.as_str()), Some(true)));
    let keys = cells(&page["keys"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let by_key = &me["this_month_by_key"]["totals"];
    assert_eq!(
        keys[0][..5],
        [
            format!("{}… (this key)", key["key_prefix"].as_str().unwrap()),
            "laptop".to_owned(),
            "active".to_owned(),
            "yes".to_owned(),
            int(count(&by_key["requests"])),
        ]
    );
    assert_usd(&keys[0][5], &by_key["cost_usd"], "the key's cost");

    // Failovers this month, with time and reason.
    assert_eq!(page["failovers"]["title"], "Failovers to Amazon Bedrock: 1 this month");
    let failovers = &me["failovers"]["recent"];
    assert_eq!(failovers[0]["request_id"], failover_id.as_str());
    assert_eq!(failovers[0]["fallback_reason"], "usage_limit");
    let times = local_times(&b, &[failovers[0]["occurred_at"].as_str().unwrap()]).await;
    assert_request_rows(&page["failovers"]["rows"], failovers, &times, "failovers");
    assert!(cells(&page["failovers"]["rows"])[0][3].ends_with("(usage_limit)"));

    // The latest requests: exactly the ones sent, by the request ids the proxy answered.
    let recent = &me["recent_requests"];
    let mut api_ids: Vec<&str> = recent.as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    api_ids.sort_unstable();
    let mut sent_ids: Vec<&str> = sent.iter().map(String::as_str).collect();
    sent_ids.sort_unstable();
    assert_eq!(api_ids, sent_ids);
    let isos: Vec<&str> = recent.as_array().unwrap().iter().map(|r| r["occurred_at"].as_str().unwrap()).collect();
    let times = local_times(&b, &isos).await;
    assert_request_rows(&page["requests"], recent, &times, "latest requests");
    let shown_ids: Vec<String> = cells(&page["requests"]).into_iter().map(|r| r[0].clone()).collect();
    assert!(sent.iter().all(|id| shown_ids.contains(id)), "{shown_ids:?} vs {sent:?}");
    b.screenshot("report").await;

    // The key stays in the page's memory only: not in the URL, storage, cookies, the input or
    // the DOM, nor in any URL the page fetched (it goes in a header).
    let kept = b
        .js(
            "return { href: location.href, cookie: document.cookie, input: document.querySelector('#me-key').value, \
                      local: Object.entries(localStorage), session: Object.entries(sessionStorage), \
                      history: JSON.stringify(history.state), fetched: performance.getEntries().map((e) => e.name) };",
            json!([]),
        )
        .await;
    assert_eq!(kept["href"], format!("{base}/me"), "{kept}");
    assert_eq!((&kept["cookie"], &kept["input"]), (&json!(""), &json!("")), "{kept}");
    assert_eq!((&kept["local"], &kept["session"]), (&json!([]), &json!([])), "nothing stored: {kept}");
    assert!(!kept.to_string().contains(&access_key), "the key is kept outside the page's memory: {kept}");
    no_secrets_in(&b, "the report", &secrets).await;

    // Refresh uses the key kept in memory.
    b.js("window.ccpOldHeading = document.querySelector('#me-report h1')", json!([])).await;
    b.click("#me-refresh").await;
    b.until(
        "the refreshed report",
        "const h = document.querySelector('#me-report h1'); \
         return h && h !== window.ccpOldHeading && h.textContent.includes('Walter Skinner');",
        json!([]),
    )
    .await;
    b.wait_text("#me-requests", &failover_id).await;

    // Forget the key: back to the empty form.
    b.click("#me-forget").await;
    b.until(
        "the key to be forgotten",
        "return !document.querySelector('#me-login').hidden && document.querySelector('#me-report').hidden \
                && !document.querySelector('#me-report').childElementCount \
                && document.activeElement.id === 'me-key' && document.querySelector('#me-key').value === '';",
        json!([]),
    )
    .await;
    no_secrets_in(&b, "the form after forgetting the key", &secrets).await;

    // A wrong key: the API's message (the same for every refused key), no figures.
    let refused = api.http.get(format!("{base}/v1/self")).header("x-ccp-access-key", &wrong_key).send().await.unwrap();
    let refused = AdminApi::answer(refused).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    let message = refused.body["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("not accepted"), "{message}");
    b.type_into("#me-key", &wrong_key).await;
    b.click("#me-submit").await;
    let shown = b.wait_text("#me-error", &message).await;
    assert!(shown.contains("(request id req_"), "{shown}");
    assert_eq!(
        b.js(
            "return [document.querySelector('#me-error').hidden, document.querySelector('#me-login').hidden, \
                     document.querySelector('#me-report').hidden, document.querySelector('#me-report').childElementCount, \
                     document.querySelector('#me-key').value]",
            json!([])
        )
        .await,
        json!([false, false, true, 0, ""]),
        "the error is shown with the form, and no report"
    );
    let text = b.js("return document.body.innerText", json!([])).await;
    assert!(!text.as_str().unwrap().contains("Walter Skinner"), "{text}");
    b.screenshot("wrong-key").await;
    no_secrets_in(&b, "the wrong key's error", &secrets).await;

    // The right key again: the report is back (and the client's failures are forgotten).
    b.type_into("#me-key", &access_key).await;
    b.click("#me-submit").await;
    b.wait_text("#me-report h1", "Walter Skinner: my usage").await;
    b.wait_text("#me-requests", &failover_id).await;

    // Someone at this client guesses keys with this key's prefix: the client is throttled (the
    // prefix itself is only slowed: SECURITY.md, "Sign-in throttling"), and a refresh says so
    // above the figures already shown (instead of failing silently).
    let guess = format!("{access_key}-guess");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let resp = api.http.get(format!("{base}/v1/self")).header("x-ccp-access-key", &guess).send().await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    b.click("#me-refresh").await;
    let shown = b.wait_text("#me-report-error", "Not refreshed: too many refused access keys").await;
    assert!(shown.contains("(request id req_"), "{shown}");
    b.wait_text("#me-report h1", "Walter Skinner: my usage").await;
    b.wait_text("#me-requests", &failover_id).await;

    // No script error or CSP violation.
    assert_clean_console(&b).await;

    b.quit().await;
    let pngs = std::fs::read_dir(&shots).unwrap().count();
    assert!(pngs >= 3, "{pngs} screenshots");
    tear_down(api, (projector, proxy), &downloads).await;
    eprintln!("/me scenario took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_viewer_sees_the_figures_but_no_control_its_role_cannot_use() {
    let api = AdminApi::start("dashviewer").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let user_id = api.create_user("Monica Reyes").await;
    let issued = api.post(&format!("/v1/users/{user_id}/keys"), json!({"name": "laptop"})).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let password = "a viewer's long password";
    let created = api.post("/v1/admins", json!({"username": "finance", "password": password, "role": "viewer"})).await;
    assert_eq!(created.status, 201, "{}", created.text);

    let shots = screenshots_dir(Some("viewer"));
    let downloads = std::env::temp_dir().join(format!("ccp-downloads-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&downloads).unwrap();
    let mut b = Browser::start(&downloads, &shots).await;
    b.goto(&format!("{}/", api.url)).await;
    b.wait("#login-form").await;
    b.type_into("#login-username", "finance").await;
    b.type_into("#login-password", password).await;
    b.click("#login-submit").await;
    b.wait_text("#whoami", "finance (viewer)").await;
    let hidden = |css: &str| {
        format!(
            "const e = document.querySelector('{css}'); return e !== null && getComputedStyle(e).display === 'none';"
        )
    };
    b.click("a[data-nav=users]").await;
    b.wait_text("#users-table", "Monica Reyes").await;
    assert_eq!(b.js(&hidden("#new-user"), json!([])).await, true, "no New user for a viewer");
    b.goto(&format!("{}/#/users/{user_id}", api.url)).await;
    b.wait_text("h1", "Monica Reyes").await;
    b.wait("#keys-table").await;
    for css in ["#issue-key", "#deactivate-user", "#budget-form", "#routing-form", "#keys-table button[data-action]"] {
        b.wait(css).await;
        assert_eq!(b.js(&hidden(css), json!([])).await, true, "{css} is hidden for a viewer");
    }
    b.wait_text("#user-keys", "laptop").await;
    b.screenshot("viewer-user").await;
    // The API refuses what the page hides, naming the role needed.
    let login = api
        .send(reqwest::Method::POST, "/v1/auth/login", None, Some(json!({"username": "finance", "password": password})))
        .await;
    let token = login.body["token"].as_str().unwrap().to_owned();
    let refused = api.send(reqwest::Method::POST, "/v1/users", Some(&token), Some(json!({"name": "X"}))).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("`operator`"), "{}", refused.text);
    assert_eq!(b.js(&hidden("li[data-needs=admin]"), json!([])).await, true, "no Admins page for a viewer");
    assert_clean_console(&b).await;

    // The admin sees every admin's role, sessions and tokens, and signs the viewer out.
    b.click("#logout").await;
    b.wait("#login-form").await;
    b.type_into("#login-username", common::ADMIN_USER).await;
    b.type_into("#login-password", common::ADMIN_PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_text("#whoami", "(admin)").await;
    b.click("a[data-nav=admins]").await;
    b.wait_text("#admins-table", "finance").await;
    let row = b.text("#admins-table").await;
    assert!(row.contains("viewer") && row.contains("enabled"), "{row}");
    b.goto(&format!("{}/#/admins/{}", api.url, created.body["admin_id"].as_str().unwrap())).await;
    b.wait_text("h1", "finance").await;
    b.wait("#admin-sessions-table").await;
    b.wait_text("#admin-profile", "enabled").await;
    b.screenshot("admin-page").await;
    b.click("#sign-out-admin").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("#admin-sessions", "No open sessions").await;
    let me = api.send(reqwest::Method::GET, "/v1/auth/me", Some(&token), None).await;
    assert_eq!(me.status, 401, "the viewer's session ended: {}", me.text);
    b.click("#disable-admin").await;
    b.type_into("dialog[open] textarea[name=reason]", "moved to another team").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("#admin-profile", "disabled").await;
    assert_clean_console(&b).await;
    b.quit().await;
    let _ = std::fs::remove_dir_all(&downloads);
    api.finish().await;
}

/// Fails if a secret is in the page's HTML.
async fn no_secrets_in(b: &Browser, what: &str, secrets: &[(&str, &str)]) {
    assert_no_secrets(&b.source().await, what, secrets);
}

#[tokio::test]
async fn the_dashboard_is_served_with_strict_headers_and_stays_out_of_the_api() {
    let api = AdminApi::start("dashstatic").await;
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/dashboard/", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/js/shared/dom.js", "text/javascript; charset=utf-8"),
        ("/dashboard/js/admin/router.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let a = AdminApi::answer(http.get(format!("{}{path}", api.url)).send().await.unwrap()).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), Some(content_type), "{path}");
        let csp = a.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"));
        assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(a.header("cache-control"), Some("no-cache"));
        let etag = a.header("etag").unwrap().to_owned();
        let again = http.get(format!("{}{path}", api.url)).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{path} is revalidated by its ETag");
        let head = http.head(format!("{}{path}", api.url)).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"].to_str().unwrap(), a.text.len().to_string());
        assert!(a.header("x-request-id").is_some());
    }
    let html = http.get(format!("{}/", api.url)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/dashboard/app.js"></script>"#));
    assert!(!html.contains("<script>") && !html.contains("style="), "nothing inline");

    // Static files are read-only; unknown ones are the API's 404.
    let a = AdminApi::answer(http.post(format!("{}/", api.url)).send().await.unwrap()).await;
    assert_eq!((a.status, a.error_type(), a.header("allow")), (405, "method_not_allowed", Some("GET, HEAD")));
    let a = AdminApi::answer(http.delete(format!("{}/dashboard/app.js", api.url)).send().await.unwrap()).await;
    assert_eq!((a.status, a.error_type()), (405, "method_not_allowed"));
    let a = AdminApi::answer(http.get(format!("{}/dashboard/secrets.json", api.url)).send().await.unwrap()).await;
    assert_eq!((a.status, a.error_type()), (404, "not_found"));
    let a = AdminApi::answer(http.get(format!("{}/index.php", api.url)).send().await.unwrap()).await;
    assert_eq!((a.status, a.error_type()), (404, "not_found"));

    // Not part of the API: absent from its document; the API still needs authentication.
    let doc = api.get("/openapi.json").await.body;
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(paths.iter().all(|p| p.starts_with("/v1/")), "{paths:?}");
    let a = api.send(Method::GET, "/v1/users", None, None).await;
    assert_eq!(a.status, 401);
    api.finish().await;
}

/// Single sign-on in the dashboard: the login page offers it, the provider's own login page
/// signs the person in, the dashboard opens as them with a working CSRF token (a change is
/// accepted), and a person no group maps sees why they are refused.
#[tokio::test]
async fn an_admin_signs_in_to_the_dashboard_with_single_sign_on() {
    let (idp, api) = common::oidc::admin_with_sso("dashboard-sso", json!({ "dana": ["platform"] })).await;
    let shots = screenshots_dir(Some("sso"));
    let downloads = std::env::temp_dir().join(format!("ccp-downloads-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&downloads).unwrap();
    let mut b = Browser::start(&downloads, &shots).await;

    for (login, outcome) in [("dana", "signed in"), ("mallory", "refused")] {
        b.goto(&format!("{}/", api.url)).await;
        b.until(
            "the single sign-on button",
            "const a = document.querySelector('#login-sso'); \
                 return a && !a.closest('[hidden]');",
            json!([]),
        )
        .await;
        b.screenshot(&format!("sso-login-{login}")).await;
        b.click("#login-sso").await;
        // The provider's own (development) login page.
        b.type_into("input[name=login]", login).await;
        b.type_into("input[name=password]", "any password").await;
        b.click("button[type=submit]").await;
        if outcome == "signed in" {
            let who = b.wait_text("#whoami", "dana@example.com").await;
            assert!(who.contains("(operator)"), "{who}");
            assert!(!b.current_url().await.contains("sso"), "the ?sso marker stayed in the address bar");
            b.screenshot("sso-signed-in").await;
            // The CSRF token came from /v1/auth/me: a change goes through.
            let script = "return fetch('/v1/users', {method: 'POST', headers: {'content-type': 'application/json', \
                          'x-csrf-token': sessionStorage.getItem('ccp.csrf') || ''}, \
                          body: JSON.stringify({name: 'Made after single sign-on'})}).then(r => r.status);";
            assert_eq!(b.js(script, json!([])).await, json!(201));
            b.click("#logout").await;
            b.wait("#login-form").await;
            // Also forget the provider's own session (its cookies share the host 127.0.0.1).
            b.cmd(Method::DELETE, "/cookie", Value::Null).await.unwrap();
        } else {
            let said = b.wait_text("#sso-message", "not granted a role").await;
            assert!(said.contains("mallory@example.com") && said.contains("no_role"), "{said}");
            b.screenshot("sso-refused").await;
        }
    }
    b.quit().await;
    let _ = std::fs::remove_dir_all(&downloads);
    drop(idp);
    api.finish().await;
}

#[tokio::test]
async fn a_platform_engineer_creates_a_team_adds_members_and_cannot_delete_it_while_they_are_in_it() {
    let api = AdminApi::start("dashteams").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let user_id = api.create_user("Dana Scully").await;
    let shots = screenshots_dir(Some("teams"));
    let downloads = std::env::temp_dir().join(format!("ccp-downloads-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&downloads).unwrap();
    let mut b = Browser::start(&downloads, &shots).await;
    b.goto(&format!("{}/", api.url)).await;
    b.wait("#login-form").await;
    b.type_into("#login-username", common::ADMIN_USER).await;
    b.type_into("#login-password", common::ADMIN_PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_text("#whoami", "(admin)").await;
    b.click("a[data-nav=teams]").await;
    b.wait_text("#main", "No teams yet").await;

    b.click("#new-team").await;
    b.type_into("#team-name", "X-Files").await;
    b.type_into("#team-budget", "500").await;
    b.choose("#team-routing", "bedrock_only").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("h1", "X-Files").await;
    b.wait_text("#team-budget-value", "$500.00").await;
    b.wait_text("#team-routing-value", "Bedrock only").await;
    b.wait_text("#main", "No members yet").await;

    b.choose("#add-member-user", &user_id).await;
    b.click("#add-member button[type=submit]").await;
    b.wait_text("#team-members", "Dana Scully").await;
    b.wait_text("#team-members", "Bedrock only").await;
    let team = api.get("/v1/teams").await;
    assert_eq!(team.body[0]["members"], 1, "{}", team.text);
    let user = api.get(&format!("/v1/users/{user_id}")).await;
    assert_eq!(user.body["team"], "X-Files", "{}", user.text);
    b.wait_text("#team-budget-spent", "$0.00").await;
    b.screenshot("team").await;
    // The team's finance statement downloads as CSV with the session's cookie.
    b.click("#statement-csv").await;
    let (path, csv) = downloaded_csv(&mut b, &downloads).await;
    let team_id = team.body[0]["team_id"].as_str().unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("ccp-statement-") && name.ends_with(&format!("-{team_id}.csv")), "{name}");
    assert!(csv.starts_with("month,time_zone,team_id,team_name,user_id,"), "{csv}");
    std::fs::remove_file(&path).unwrap();
    // The member's page names the team and how they are routed because of it.
    b.click("#team-members a").await;
    b.wait_text("#user-team", "X-Files").await;
    b.wait_text("#user-effective-routing", "Bedrock only (the team’s default)").await;
    b.click("#user-team a").await;
    b.wait_text("h1", "X-Files").await;

    // Deleting a team with a member is refused, and the dialog says why.
    b.click("#team-delete").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("dialog[open] .dialog-error", "1 member").await;
    b.press_escape("dialog[open]").await;
    b.click("#team-members button[data-action=remove-member]").await;
    b.wait_text("#main", "No members yet").await;
    b.click("#team-delete").await;
    b.click("dialog[open] button[data-role=submit]").await;
    b.wait_text("#main", "No teams yet").await;
    assert_eq!(api.get("/v1/teams").await.body, json!([]));
    assert_clean_console(&b).await;
    b.quit().await;
    let _ = std::fs::remove_dir_all(&downloads);
    api.finish().await;
}

#[tokio::test]
async fn an_admin_makes_a_viewer_a_team_lead_who_sees_only_their_team() {
    let api = AdminApi::start("dashlead").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let team = api.post("/v1/teams", json!({"name": "X-Files"})).await.body["team_id"].as_str().unwrap().to_owned();
    let member = api.create_user("Dana Scully").await;
    assert_eq!(api.put(&format!("/v1/users/{member}/team"), json!({"team_id": team})).await.status, 200);
    api.create_user("Walter Skinner").await;
    let password = "a team lead's long password";
    let created = api.post("/v1/admins", json!({"username": "fox", "password": password, "role": "viewer"})).await;
    let lead_id = created.body["admin_id"].as_str().unwrap().to_owned();

    let shots = screenshots_dir(Some("team-lead"));
    let downloads = std::env::temp_dir().join(format!("ccp-downloads-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&downloads).unwrap();
    let mut b = Browser::start(&downloads, &shots).await;
    b.goto(&format!("{}/", api.url)).await;
    b.wait("#login-form").await;
    b.type_into("#login-username", common::ADMIN_USER).await;
    b.type_into("#login-password", common::ADMIN_PASSWORD).await;
    b.click("#login-submit").await;
    b.wait_text("#whoami", "(admin)").await;
    // The admin scopes the viewer on their admin page.
    b.goto(&format!("{}/#/admins/{lead_id}", api.url)).await;
    b.wait_text("h1", "fox").await;
    b.wait_text("#admin-scope-value", "–").await;
    b.choose("#admin-scope-select", &team).await;
    b.click("#admin-scope-form button[type=submit]").await;
    b.wait_text("#admin-scope-value", "team lead of X-Files").await;
    b.click("a[data-nav=admins]").await;
    b.wait_text("#admins-table", "team lead of X-Files").await;
    b.click("#logout").await;

    // The team lead lands on their team's page, with no navigation, whatever the address.
    b.wait("#login-form").await;
    b.type_into("#login-username", "fox").await;
    b.type_into("#login-password", password).await;
    b.click("#login-submit").await;
    b.wait_text("#whoami", "fox (team lead)").await;
    b.wait_text("h1", "X-Files").await;
    b.wait_text("#team-members", "Dana Scully").await;
    b.wait_text("#team-budget-spent", "$0.00").await;
    b.wait("#statement-csv").await;
    let nav_hidden = "return getComputedStyle(document.querySelector('#nav')).display === 'none';";
    assert_eq!(b.js(nav_hidden, json!([])).await, true, "no navigation for a team lead");
    assert_eq!(b.js("return document.querySelector('#team-members a') === null;", json!([])).await, true);
    assert!(!b.text("#main").await.contains("Walter Skinner"), "no other users");
    b.screenshot("team-lead").await;
    b.goto(&format!("{}/#/users", api.url)).await;
    b.wait_text("h1", "X-Files").await;
    assert!(b.current_url().await.ends_with(&format!("#/teams/{team}")), "{}", b.current_url().await);
    assert_clean_console(&b).await;
    b.quit().await;
    let _ = std::fs::remove_dir_all(&downloads);
    api.finish().await;
}
