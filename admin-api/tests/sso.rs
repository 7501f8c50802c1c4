#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Single sign-on end to end against a real OpenID provider — the certified `oidc-provider`
//! package on Node (`tests/node/oidc_provider.mjs`; scripts/install-clients.sh installs it) —
//! driven through its real login page by an HTTP user agent with a cookie jar:
//!
//! - a person mapped to `operator` is created just in time, signs in with the dashboard's
//!   cookie (whose CSRF token `/v1/auth/me` gives), and is audited (`admin_created`,
//!   `admin_sso_linked`, `admin_login_succeeded` with method `sso`);
//! - a changed group changes the role at the next sign-in; a person no group maps is refused and
//!   their admin disabled (their earlier session stops working);
//! - a wrong `state`, a replayed callback, a replayed code under a new state, an ID token for
//!   another audience, an expired one and one signed with an unpublished key are each refused
//!   with a page saying why, and counted by cause in the sign-in failure records;
//! - `ccpctl login --sso` signs in through its loopback listener;
//! - with `admin.sso.password_login = false`, password login is refused and the login methods
//!   say so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccp_schemas::events::{Event, LoginMethod};
use ccp_schemas::subjects::StreamKind;
use common::oidc::{admin_with_sso, Agent};
use common::AdminApi;
use reqwest::Method;
use serde_json::{json, Value};

async fn admin_events(api: &AdminApi) -> Vec<Event> {
    api.log.read_all(StreamKind::Admin).await.into_iter().map(|(_, e)| e.event).collect()
}

#[tokio::test]
async fn single_sign_on_admits_maps_roles_and_refuses_forgeries() {
    let (idp, api) = admin_with_sso("sso", json!({ "dana": ["platform"], "erin": ["finance"] })).await;
    let start = format!("{}/v1/auth/sso/start?return_to=%2F%3Fsso", api.url);

    let methods = api.get("/v1/auth/methods").await;
    assert_eq!(methods.body, json!({ "password": true, "sso": true }));

    // Just in time: dana (group `platform`) becomes an operator.
    let dana = Agent::new();
    let callback = dana.through_provider(&start, &idp.issuer, "dana").await;
    let done = dana.get(&callback).await;
    assert_eq!(done.status, 302, "{}", done.text);
    assert_eq!(done.location.as_deref(), Some("/?sso"));
    let (status, me) = dana.me(&api.url).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str(), me["method"].as_str()),
        (Some("dana@example.com"), Some("operator"), Some("cookie"))
    );
    assert!(me["csrf_token"].as_str().is_some_and(|t| t.len() > 20), "{me}");
    let events = admin_events(&api).await;
    let dana_id = events
        .iter()
        .find_map(|e| match e {
            Event::AdminCreated(c) if c.username == "dana@example.com" => Some(c.admin_id),
            _ => None,
        })
        .expect("admin_created for dana");
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::AdminSsoLinked(l) if l.admin_id == dana_id && l.subject == "dana")));
    assert!(events.iter().any(|e| matches!(e, Event::AdminLoginSucceeded(l)
        if l.admin_id == dana_id && l.method == LoginMethod::Sso)));

    // A changed group changes the role at the next sign-in.
    idp.people(json!({ "dana": ["ccp-admins"], "erin": ["finance"] })).await;
    let dana2 = Agent::new();
    let callback = dana2.through_provider(&start, &idp.issuer, "dana").await;
    assert_eq!(dana2.get(&callback).await.status, 302);
    assert_eq!(dana2.me(&api.url).await.1["role"], "admin");

    // No group mapped any more: refused, and the admin is disabled (the earlier session too).
    idp.people(json!({ "erin": ["finance"] })).await;
    let dana3 = Agent::new();
    let callback = dana3.through_provider(&start, &idp.issuer, "dana").await;
    let refused = dana3.get(&callback).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("dana@example.com is not granted a role"), "{}", refused.text);
    let admins = api.get("/v1/admins").await.body;
    let dana_now = admins.as_array().unwrap().iter().find(|a| a["username"] == "dana@example.com").unwrap();
    assert_eq!(dana_now["disabled"], true, "{dana_now}");
    assert_eq!(dana.me(&api.url).await.0, 401, "the disabled admin's earlier session still works");

    // A wrong state, and a callback replayed.
    let stranger = Agent::new();
    let wrong = stranger.get(&format!("{}/v1/auth/sso/callback?code=abc&state=not-a-state", api.url)).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.text.contains("(state)") && wrong.text.contains("wrong_state"), "{}", wrong.text);
    let erin = Agent::new();
    let callback = erin.through_provider(&start, &idp.issuer, "erin").await;
    assert_eq!(erin.get(&callback).await.status, 302);
    assert_eq!(erin.me(&api.url).await.1["role"], "viewer");
    let replayed = erin.get(&callback).await;
    assert_eq!(replayed.status, 400, "a replayed callback was accepted: {}", replayed.text);
    // The same code under a state this browser just started: the provider refuses it.
    let fresh = erin.through_provider(&start, &idp.issuer, "erin").await;
    let old_code = callback.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let fresh_state = fresh.split("state=").nth(1).unwrap().split('&').next().unwrap();
    let reused = erin.get(&format!("{}/v1/auth/sso/callback?code={old_code}&state={fresh_state}", api.url)).await;
    assert_eq!(reused.status, 403, "{}", reused.text);
    assert!(
        reused.text.contains("refused the sign-in code") && reused.text.contains("code_refused"),
        "{}",
        reused.text
    );

    // Forged or stale ID tokens.
    for (mode, words) in [
        ("wrong_audience", "another application (audience)"),
        ("expired", "has expired"),
        ("bad_signature", "signature does not match"),
    ] {
        idp.tamper(mode).await;
        let agent = Agent::new();
        let callback = agent.through_provider(&start, &idp.issuer, "erin").await;
        let page = agent.get(&callback).await;
        assert_eq!(page.status, 403, "{mode}: {}", page.text);
        assert!(page.text.contains(words), "{mode}: {}", page.text);
        assert_eq!(agent.me(&api.url).await.0, 401, "{mode}: a session was opened");
    }
    idp.tamper("none").await;

    // Each refusal is counted by cause (records are written every second here).
    let deadline = Instant::now() + Duration::from_secs(15);
    let expected = ["wrong_state", "no_role", "code_refused", "wrong_audience", "expired_token", "bad_signature"];
    loop {
        let report = api.get("/v1/sign-in-failures?kind=sso").await;
        assert_eq!(report.status, 200, "{}", report.text);
        let mut causes = std::collections::BTreeMap::<String, u64>::new();
        for record in report.body["records"].as_array().unwrap() {
            assert_eq!(record["kind"], "sso");
            for (cause, n) in record["reasons"].as_object().into_iter().flatten() {
                *causes.entry(cause.clone()).or_default() += n.as_u64().unwrap();
            }
        }
        if expected.iter().all(|c| causes.contains_key(*c)) {
            assert!(causes["wrong_state"] >= 2, "{causes:?}");
            break;
        }
        assert!(Instant::now() < deadline, "refusals not all recorded: {causes:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // ccpctl login --sso, through its loopback listener.
    let config = std::env::temp_dir().join(format!("ccpctl-sso-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&config).unwrap();
    let mut ctl = Command::new(env!("CARGO_BIN_EXE_ccpctl"))
        .args(["--url", &api.url, "login", "--sso", "--no-browser"])
        .env("CCPCTL_CONFIG_DIR", &config)
        .env_remove("CCPCTL_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = ctl.stderr.take().unwrap();
    let (sender, urls) = std::sync::mpsc::channel();
    // Read all of ccpctl's stderr (a closed pipe would fail its later lines), handing out the URL.
    let said_on_stderr = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim().strip_prefix("http") {
                let _ = sender.send(format!("http{rest}"));
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let url =
        tokio::task::spawn_blocking(move || urls.recv_timeout(Duration::from_secs(20)).expect("ccpctl printed no URL"))
            .await
            .unwrap();
    assert!(url.contains("/v1/auth/sso/start?cli_port="), "{url}");
    // 127.0.0.1 has been refused often enough to be slowed: the refusals above throttle it.
    let slowed = Agent::new().get(&format!("{}/v1/auth/sso/callback?code=x&state=y", api.url)).await;
    assert_eq!(slowed.status, 429, "{}", slowed.text);
    let browser = Agent::from_address("127.0.0.23");
    let callback = browser.through_provider(&url, &idp.issuer, "erin").await;
    // Not sent on by itself: the page asks first, and only its link goes to ccpctl.
    let asked = browser.get(&callback).await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    assert!(asked.text.contains("Continue only if you have just run"), "{}", asked.text);
    let loopback = asked
        .text
        .split("id=\"sso-continue\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no link to ccpctl: {}", asked.text))
        .replace("&amp;", "&");
    // Anything else reaching ccpctl's port (another page probing it) is ignored.
    let port_only = loopback.split("/callback").next().unwrap().to_owned();
    assert_eq!(browser.get(&format!("{port_only}/callback?code=forged")).await.status, 404);
    assert!(loopback.starts_with("http://127.0.0.1:") && loopback.contains("/callback?code="), "{loopback}");
    let closed = browser.get(&loopback).await;
    assert!(closed.text.contains("Signed in"), "{}", closed.text);
    let finished = tokio::task::spawn_blocking(move || ctl.wait_with_output().unwrap()).await.unwrap();
    let said = String::from_utf8_lossy(&finished.stdout);
    let stderr = said_on_stderr.join().unwrap();
    assert!(finished.status.success(), "ccpctl login --sso failed: {said}{stderr}\n{}", api.service.log_text());
    assert!(said.contains("logged in to") && said.contains("erin@example.com"), "{said}");
    let whoami = Command::new(env!("CARGO_BIN_EXE_ccpctl"))
        .args(["whoami", "--json"])
        .env("CCPCTL_CONFIG_DIR", &config)
        .env_remove("CCPCTL_TOKEN")
        .env_remove("CCPCTL_URL")
        .output()
        .unwrap();
    let me: Value = serde_json::from_slice(&whoami.stdout).unwrap_or(Value::Null);
    assert_eq!((me["username"].as_str(), me["role"].as_str()), (Some("erin@example.com"), Some("viewer")), "{me}");
    // The one-time code is spent.
    let code = loopback.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let again = api.post("/v1/auth/sso/token", json!({ "code": code, "verifier": "x" })).await;
    assert_eq!(again.status, 401, "{}", again.text);
    std::fs::remove_dir_all(&config).ok();
    api.finish().await;
}

#[tokio::test]
async fn password_login_can_be_turned_off() {
    // Start with passwords on (the test helper logs in), then again on the same port with them off.
    let (idp, api) = admin_with_sso("sso-off", json!({ "dana": ["ccp-admins"] })).await;
    let port: u16 = api.url.rsplit(':').next().unwrap().parse().unwrap();
    let env_off = api.replica_env(port, &[("CCP__ADMIN__SSO__PASSWORD_LOGIN", "false")]);
    api.finish().await;
    let (service, url) = common::spawn_admin(&env_off).await;
    let http = reqwest::Client::new();
    let methods: Value = http.get(format!("{url}/v1/auth/methods")).send().await.unwrap().json().await.unwrap();
    assert_eq!(methods, json!({ "password": false, "sso": true }));
    let login = http
        .request(Method::POST, format!("{url}/v1/auth/login"))
        .json(&json!({ "username": common::ADMIN_USER, "password": common::ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403);
    let body: Value = login.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("password login is turned off"), "{body}");
    // Single sign-on still works.
    let agent = Agent::new();
    let callback = agent.through_provider(&format!("{url}/v1/auth/sso/start"), &idp.issuer, "dana").await;
    assert_eq!(agent.get(&callback).await.status, 302);
    assert_eq!(agent.me(&url).await.1["role"], "admin");
    drop(service);
}

/// Single sign-on never takes over, disables or changes an admin that is not linked to the
/// person signing in: a password admin of the same username is refused (unless
/// `admin.sso.link_by_username`, then linked once), a person with no role cannot disable them,
/// and a token without the role claim disables nobody.
#[tokio::test]
async fn an_admin_not_linked_to_the_person_is_left_alone() {
    let people = json!({ "victim": ["ccp-admins"], "nobody": [], "quiet": null });
    let (idp, api) = admin_with_sso("sso-takeover", people).await;
    for name in ["victim@example.com", "nobody@example.com"] {
        let created = api
            .post("/v1/admins", json!({ "username": name, "password": "a long password 0123", "role": "admin" }))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
    }
    let start = format!("{}/v1/auth/sso/start", api.url);
    for (login, status, words) in [
        ("victim", 403, "already exists and is not linked"),
        ("nobody", 403, "is not granted a role"),
        ("quiet", 403, "carries no `groups` claim"),
    ] {
        let agent = Agent::new();
        let callback = agent.through_provider(&start, &idp.issuer, login).await;
        let page = agent.get(&callback).await;
        assert_eq!(page.status, status, "{login}: {}", page.text);
        assert!(page.text.contains(words), "{login}: {}", page.text);
        assert_eq!(agent.me(&api.url).await.0, 401, "{login} got a session");
    }
    let admins = api.get("/v1/admins").await.body;
    for name in ["victim@example.com", "nobody@example.com"] {
        let admin = admins.as_array().unwrap().iter().find(|a| a["username"] == name).unwrap();
        assert_eq!((admin["disabled"].as_bool(), admin["role"].as_str()), (Some(false), Some("admin")), "{admin}");
    }
    assert!(!admin_events(&api).await.iter().any(|e| matches!(e, Event::AdminSsoLinked(_))));
    assert_eq!(api.get("/v1/sign-in-failures?kind=sso").await.status, 200);

    // Opted in: the first sign-in links the existing admin (a verified email), once.
    let port: u16 = api.url.rsplit(':').next().unwrap().parse().unwrap();
    let env = api.replica_env(port, &[("CCP__ADMIN__SSO__LINK_BY_USERNAME", "true")]);
    let victim_id = admins.as_array().unwrap().iter().find(|a| a["username"] == "victim@example.com").unwrap()
        ["admin_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(api.service);
    let (service, url) = common::spawn_admin(&env).await;
    let agent = Agent::new();
    let callback = agent.through_provider(&format!("{url}/v1/auth/sso/start"), &idp.issuer, "victim").await;
    assert_eq!(agent.get(&callback).await.status, 302);
    let (_, me) = agent.me(&url).await;
    assert_eq!((me["admin_id"].as_str(), me["role"].as_str()), (Some(victim_id.as_str()), Some("admin")), "{me}");
    let linked: Vec<Event> = api.log.read_all(StreamKind::Admin).await.into_iter().map(|(_, e)| e.event).collect();
    assert_eq!(
        linked.iter().filter(|e| matches!(e, Event::AdminSsoLinked(l) if l.admin_id.to_string() == victim_id)).count(),
        1
    );
    drop(service);
    ccp_tests::delete_namespace(&api.log.js, &api.log.ns).await;
}
