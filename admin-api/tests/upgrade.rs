#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A rolling upgrade with an older and a newer admin API side by side on one event log: the
//! older replica is this build rehearsing contract revision 1 (`compat.emulate_contract = 1`:
//! it reads only revision-1 event types and announces so), the newer one writes revision 2's
//! `admin_sso_linked` at a first single sign-on.
//!
//! While the older replica runs, the newer one holds that event back — the sign-in is refused
//! with a retryable 503 naming the older replica — and the older replica keeps serving (ready,
//! logins work): no outage. Once it stops, the sign-in goes through. And the rule the hold-back
//! enforces is real: an older replica started after the event is in the log fails closed (it
//! refuses to start, naming the event) rather than serving from a state it cannot read. The same
//! hold-back, without single sign-on, for revision 3's `admin_team_scope_set` (team leads).

mod common;

use std::time::{Duration, Instant};

use ccp_tests::Service;
use common::oidc::{admin_with_sso, Agent};
use common::AdminApi;
use serde_json::{json, Value};

async fn status(url: &str) -> u16 {
    reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn password_login(url: &str) -> u16 {
    let body = json!({ "username": common::ADMIN_USER, "password": common::ADMIN_PASSWORD });
    reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Starts a second `ccp-admin` on the same log, as a build of contract revision 1.
async fn older_replica(api: &AdminApi) -> (Service, String) {
    let env = api.replica_env(ccp_tests::free_port(), &[("CCP__COMPAT__EMULATE_CONTRACT", "1")]);
    common::spawn_admin(&env).await
}

#[tokio::test]
async fn a_newer_writer_holds_back_events_an_older_reader_cannot_read() {
    let (idp, api) = admin_with_sso("upgrade", json!({ "dana": ["ccp-admins"] })).await;
    let (mut older, older_url) = older_replica(&api).await;
    assert!(older.log_text().contains("older contract revision"), "{}", older.log_text());
    let start = format!("{}/v1/auth/sso/start", api.url);

    // Mixed versions: the event the older replica cannot read is held back, with a reason.
    let agent = Agent::new();
    let callback = agent.through_provider(&start, &idp.issuer, "dana").await;
    let held = agent.get(&callback).await;
    assert_eq!(held.status, 503, "{}", held.text);
    let body: Value = serde_json::from_str(&held.text).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("admin_sso_linked") && message.contains("ccp-admin") && message.contains("revision 1"),
        "{message}"
    );
    // …and the older replica still serves.
    assert_eq!(status(&format!("{older_url}/ready")).await, 200, "{}", older.log_text());
    assert_eq!(password_login(&older_url).await, 200);
    let events = api.log.read_all(ccp_schemas::subjects::StreamKind::Admin).await;
    assert!(!events.iter().any(|(_, e)| e.event.event_type() == "admin_sso_linked"));

    // The older replica stops (cleanly: its announcement is withdrawn): the sign-in goes through.
    assert!(older.terminate(Duration::from_secs(15)).is_some_and(|s| s.success()));
    let agent = Agent::new();
    let callback = agent.through_provider(&start, &idp.issuer, "dana").await;
    let done = agent.get(&callback).await;
    assert_eq!(done.status, 302, "{}", done.text);
    assert_eq!(agent.me(&api.url).await.1["username"], "dana@example.com");

    // An older replica started now meets the event and fails closed (the order the hold-back
    // protects): it refuses to start, saying why — never serving from a state it cannot read.
    let env = api.replica_env(ccp_tests::free_port(), &[("CCP__COMPAT__EMULATE_CONTRACT", "1")]);
    let mut again = Service::spawn(std::path::Path::new(common::BIN), &[], &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(status) = again.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the older replica did not stop:\n{}", again.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!exit.success());
    let said = again.log_text();
    assert!(said.contains("admin_sso_linked") && said.contains("upgrade this admin API"), "{said}");
    drop(idp);
    api.finish().await;
}

/// The same hold-back for revision 3's `admin_team_scope_set` (team leads), without single
/// sign-on: while a replica of revision 2 runs, scoping an admin to a team is refused with a
/// retryable 503 naming the event and the older replica, and nothing is appended; once it stops,
/// the same command goes through.
#[tokio::test]
async fn scoping_a_team_lead_waits_for_the_last_older_reader() {
    let api = AdminApi::start("upgradescope").await;
    let team = api.post("/v1/teams", json!({"name": "Data"})).await.body["team_id"].as_str().unwrap().to_owned();
    let created = api
        .post("/v1/admins", json!({"username": "tess", "password": "tess has a long password", "role": "viewer"}))
        .await;
    let lead = created.body["admin_id"].as_str().unwrap().to_owned();
    let env = api.replica_env(ccp_tests::free_port(), &[("CCP__COMPAT__EMULATE_CONTRACT", "2")]);
    let (mut older, older_url) = common::spawn_admin(&env).await;

    let held = api.put(&format!("/v1/admins/{lead}/team-scope"), json!({"team_id": team})).await;
    assert_eq!(held.status, 503, "{}", held.text);
    assert!(held.header("retry-after").is_some(), "{:?}", held.headers);
    let message = held.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("admin_team_scope_set") && message.contains("revision 2"), "{message}");
    assert_eq!(status(&format!("{older_url}/ready")).await, 200, "{}", older.log_text());
    let events = api.log.read_all(ccp_schemas::subjects::StreamKind::Admin).await;
    assert!(!events.iter().any(|(_, e)| e.event.event_type() == "admin_team_scope_set"));

    assert!(older.terminate(Duration::from_secs(15)).is_some_and(|s| s.success()));
    let done = api.put(&format!("/v1/admins/{lead}/team-scope"), json!({"team_id": team})).await;
    assert_eq!((done.status, done.body["team_id"].as_str()), (200, Some(team.as_str())), "{}", done.text);
    api.finish().await;
}
