#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A start reads state, not history: the proxy's key table, the admin API's view and the
//! projector's state projection are saved as snapshots every N admin events, and a restarted service loads its snapshot and replays only
//! the events after it — with the same answers as a full replay. A snapshot it must not trust
//! (another build's, a forged one, one of another stream, one that does not read back) is
//! ignored: the service replays the whole stream, answers the same, and saves a good one.

use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use ccp_runtime::snapshot::{bucket_name, identity, Snapshots};
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::subjects::{Bucket, StreamKind};
use ccp_tests::system::{sigterm, wait_until, Options, System};
use serde_json::json;

const EVERY: u64 = 5;

/// A snapshot object's metadata.
type Meta = std::collections::HashMap<String, String>;
const NAME: &str = "proxy-key-table";
const ADMIN_NAME: &str = "admin-view";
const PROJECTOR_NAME: &str = "projector-state";

/// The admin stream's last sequence.
async fn admin_head(sys: &System) -> u64 {
    let client = async_nats::connect(&sys.settings.nats.url).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(ccp_tests::namespace(&sys.settings).stream(StreamKind::Admin)).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// The store of the snapshot `name`.
async fn store(sys: &System, name: &str) -> object_store::ObjectStore {
    let client = async_nats::connect(&sys.settings.nats.url).await.unwrap();
    let js = jetstream::new(client);
    let service = match name {
        NAME => "proxy",
        PROJECTOR_NAME => "projector",
        _ => "admin",
    };
    js.get_object_store(bucket_name(&ccp_tests::namespace(&sys.settings), service)).await.expect("the snapshot store")
}

/// The stored proxy snapshot's metadata.
async fn stored(sys: &System) -> Option<Meta> {
    stored_as(sys, NAME).await
}

/// The metadata of the snapshot `name`.
async fn stored_as(sys: &System, name: &str) -> Option<Meta> {
    store(sys, name).await.info(name).await.ok().map(|i| i.metadata)
}

/// The stored proxy snapshot's sequence.
async fn stored_seq(sys: &System) -> Option<u64> {
    seq_of(sys, NAME).await
}

/// The sequence of the snapshot `name`.
async fn seq_of(sys: &System, name: &str) -> Option<u64> {
    stored_as(sys, name).await.and_then(|m| m.get("ccp-seq")?.parse().ok())
}

/// Waits until there is a snapshot `name`: caught up at least EVERY events past the last one
/// (none: sequence 0), a service saves one.
async fn saved(sys: &System, name: &str) {
    wait_until(Duration::from_secs(10), &format!("snapshot {name}"), || async {
        seq_of(sys, name).await.is_some_and(|seq| seq >= EVERY)
    })
    .await;
}

/// Waits until the snapshot `name` stays at one sequence (no save under way); that sequence.
async fn settled(sys: &System, name: &str) -> u64 {
    let mut seq = seq_of(sys, name).await.expect("a snapshot");
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = seq_of(sys, name).await.expect("a snapshot");
        if again == seq {
            return seq;
        }
        seq = again;
    }
}

/// What a snapshot the proxy must not trust is made of.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// The stored one, labelled as another build's.
    OtherBuild,
    /// The stored one with its revoked key made active again, its metadata (and signature) kept.
    Forged,
    /// The stored content, signed with the services' key, but taken after another stream's
    /// message.
    OtherStream,
    /// Signed, at the admin stream's first message, but not a key table.
    Unreadable,
}

impl Attack {
    /// What the proxy's log says of it.
    fn reason(self) -> &'static str {
        match self {
            Self::OtherBuild => "written by build",
            Self::Forged => "signature does not match",
            Self::OtherStream => "no longer holds the message",
            Self::Unreadable => "does not read back",
        }
    }
}

/// Replaces the stored proxy snapshot as `attack` says.
async fn plant(sys: &System, attack: Attack) {
    use tokio::io::AsyncReadExt as _;
    let store = store(sys, NAME).await;
    let mut metadata = store.info(NAME).await.unwrap().metadata;
    let mut content = Vec::new();
    store.get(NAME).await.unwrap().read_to_end(&mut content).await.unwrap();
    let ns = ccp_tests::namespace(&sys.settings);
    let client = async_nats::connect(&sys.settings.nats.url).await.unwrap();
    let pepper = KeyPepper::new(&sys.settings.secrets.access_key_pepper).unwrap();
    let signed_for = |stream: String| {
        let (client, ns, pepper) = (client.clone(), ns.clone(), pepper.clone());
        async move { Snapshots::open(client, &ns, "proxy", stream, NAME, &pepper, 1).await.unwrap() }
    };
    match attack {
        Attack::OtherBuild | Attack::Forged => {
            if let Attack::OtherBuild = attack {
                metadata.insert("ccp-build".into(), "2 0.0.0 (0123456789ab) reading contract 1".into());
            } else {
                let text = String::from_utf8(content).unwrap();
                assert!(text.contains(r#""status":"revoked""#), "{text}");
                content = text.replace(r#""status":"revoked""#, r#""status":"active""#).into_bytes();
            }
            let meta = object_store::ObjectMetadata { name: NAME.into(), metadata, ..Default::default() };
            store.put(meta, &mut content.as_slice()).await.unwrap();
        }
        Attack::OtherStream => {
            let js = jetstream::new(client.clone());
            let name = format!("{}_SNAPTEST", ns.prefix().to_ascii_uppercase());
            let subject = format!("{}_snaptest.x", ns.prefix());
            let config =
                jetstream::stream::Config { name: name.clone(), subjects: vec![subject.clone()], ..Default::default() };
            js.get_or_create_stream(config).await.unwrap();
            js.publish(subject, "not an admin event".into()).await.unwrap().await.unwrap();
            signed_for(name.clone()).await.save(1, &content).await.unwrap();
            js.delete_stream(name).await.unwrap();
        }
        Attack::Unreadable => {
            signed_for(ns.stream(StreamKind::Admin)).await.save(1, br#"{"directory":"#).await.unwrap();
        }
    }
}

/// Restarts proxy 0 and returns the part of its log written by this start.
async fn restart(sys: &mut System) -> String {
    drop(sys.proxies[0].service.take());
    sys.start_proxy(0).await;
    let log = sys.proxies[0].service.as_ref().unwrap().log_text();
    // The key table is loaded before the proxy answers ready.
    assert!(log.contains("access keys loaded"), "{log}");
    log
}

/// Field `name` of the last (JSON) log line containing `message`.
fn field(log: &str, message: &str, name: &str) -> Option<u64> {
    let line = log.lines().rfind(|l| l.contains(message))?;
    serde_json::from_str::<serde_json::Value>(line).ok()?.get(name)?.as_u64()
}

/// Makes the next proxy start save a snapshot every `every` events.
fn set_every(sys: &mut System, every: u64) {
    set(&mut sys.env, "CCP__PROXY__KEY_TABLE_SNAPSHOT_EVERY", every);
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: u64) {
    env.retain(|(k, _)| k != name);
    env.push((name.into(), value.to_string()));
}

async fn statuses(sys: &System, keys: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for key in keys {
        out.push(sys.ping_status(0, key).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_loads_its_snapshot_and_replays_only_what_came_after() {
    let mut options = Options::new("snapshots");
    options.env.push(("CCP__PROXY__KEY_TABLE_SNAPSHOT_EVERY".into(), EVERY.to_string()));
    let mut sys = System::start(options).await;
    let (_, _, kept) = sys.developer("kept").await;
    let (_, revoked_id, revoked) = sys.developer("revoked").await;

    // Caught up with at least EVERY events past the last snapshot, the proxy saves one.
    let head = admin_head(&sys).await;
    assert!(head >= EVERY, "{head}");
    saved(&sys, NAME).await;
    let meta = stored(&sys).await.unwrap();
    assert_eq!(meta.get("ccp-build").map(String::as_str), identity().as_deref());

    // With the proxy stopped (nothing saves), a revocation and a new developer follow.
    drop(sys.proxies[0].service.take());
    let snapshot = settled(&sys, NAME).await;
    sys.admin(reqwest::Method::POST, &format!("/v1/keys/{revoked_id}/revoke"), Some(json!({}))).await;
    let (_, _, added) = sys.developer("added").await;
    let now = admin_head(&sys).await;
    assert!(now > head, "{head} → {now}");
    let keys = [kept.as_str(), revoked.as_str(), added.as_str()];
    let expected = vec![200, 401, 200];
    // Started again (saving only every 1,000 events now), it loads the snapshot and replays the
    // rest: the revocation included.
    set_every(&mut sys, 1000);
    let log = restart(&mut sys).await;
    assert_eq!(field(&log, "key table snapshot loaded", "seq"), Some(snapshot), "{log}");
    assert_eq!(field(&log, "access keys loaded", "from_snapshot"), Some(snapshot), "{log}");
    // Caught up (the admin API may add an event of its own after a command's answer).
    assert!(field(&log, "access keys loaded", "seq").unwrap() >= now, "{log}");
    assert_eq!(statuses(&sys, &keys).await, expected, "after loading the snapshot\n{log}");
    assert_eq!(stored_seq(&sys).await, Some(snapshot));

    // Snapshots it must not trust: each start replays the whole stream, answers the same, and
    // (saving every EVERY events again) replaces the snapshot by a good one.
    set_every(&mut sys, EVERY);

    for attack in [Attack::OtherBuild, Attack::Forged, Attack::OtherStream, Attack::Unreadable] {
        let why = attack.reason();
        plant(&sys, attack).await;
        let log = restart(&mut sys).await;
        assert!(log.contains(why), "expected '{why}' in\n{log}");
        assert!(!log.contains("key table snapshot loaded"), "{log}");
        assert_eq!(field(&log, "access keys loaded", "from_snapshot"), Some(0), "{log}");
        assert!(field(&log, "access keys loaded", "replayed").unwrap() >= now, "{log}");
        assert_eq!(statuses(&sys, &keys).await, expected, "after replaying ({why})\n{log}");
        wait_until(Duration::from_secs(10), "a fresh snapshot", || async {
            sys.proxies[0].service.as_ref().unwrap().log_text().contains("key table snapshot saved")
        })
        .await;
        let log = sys.proxies[0].service.as_ref().unwrap().log_text();
        let saved = field(&log, "key table snapshot saved", "seq").unwrap();
        assert!(saved >= now, "{log}");
        let meta = stored(&sys).await.unwrap();
        assert_eq!(meta.get("ccp-build").map(String::as_str), identity().as_deref(), "{why}");
        assert_eq!(meta.get("ccp-seq").cloned(), Some(saved.to_string()), "{why}");
    }
    // And the next start uses it.
    let log = restart(&mut sys).await;
    assert!(field(&log, "access keys loaded", "from_snapshot").unwrap() >= now, "{log}");
    assert_eq!(statuses(&sys, &keys).await, expected);
    sys.finish().await;
}

/// The admin API's answer to `GET path` with `token`: status, body and `ETag`. Without
/// `last_used_at`, which comes from the usage tables, not the admin stream.
async fn get(sys: &System, path: &str, token: &str) -> (u16, serde_json::Value, Option<String>) {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("last_used_at");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let resp = sys.http.get(format!("{}{path}", sys.admin_url)).bearer_auth(token).send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = resp.json().await.unwrap_or_default();
    strip(&mut body);
    (status, body, etag)
}

/// The answers to `GET` each of `paths`.
async fn answers(sys: &System, paths: &[String], token: &str) -> Vec<(u16, serde_json::Value, Option<String>)> {
    let mut out = Vec::new();
    for path in paths {
        out.push(get(sys, path, token).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_admin_api_loads_its_view_snapshot_and_answers_as_after_a_replay() {
    let mut options = Options::new("adminsnap");
    options.env.push(("CCP__ADMIN__VIEW_SNAPSHOT_EVERY".into(), EVERY.to_string()));
    let mut sys = System::start(options).await;
    let (kept_user, _, _) = sys.developer("kept").await;
    let (_, revoked_key, _) = sys.developer("revoked").await;
    let mut tokens = Vec::new();
    for name in ["ci", "old-ci"] {
        let issued = sys.admin(reqwest::Method::POST, "/v1/api-tokens", Some(json!({ "name": name }))).await;
        let id = issued["token_id"].as_str().unwrap().to_owned();
        tokens.push((id, issued["token"].as_str().unwrap().to_owned()));
    }
    saved(&sys, ADMIN_NAME).await;

    // Started again saving only every 1,000 events: it loads the snapshot it saved.
    set(&mut sys.admin_env, "CCP__ADMIN__VIEW_SNAPSHOT_EVERY", 1000);
    sigterm(&sys.admin.child);
    let _ = sys.admin.child.wait();
    let snapshot = settled(&sys, ADMIN_NAME).await;
    sys.restart_admin().await;
    let log = sys.admin.log_text();
    assert_eq!(field(&log, "admin view snapshot loaded", "seq"), Some(snapshot), "{log}");
    assert_eq!(field(&log, "admin state loaded", "from_snapshot"), Some(snapshot), "{log}");

    // Then: a key and an API token revoked, a developer added — after the snapshot.
    sys.admin(reqwest::Method::POST, &format!("/v1/keys/{revoked_key}/revoke"), Some(json!({}))).await;
    let old_ci = &tokens[1].0;
    sys.admin(reqwest::Method::POST, &format!("/v1/api-tokens/{old_ci}/revoke"), Some(json!({}))).await;
    let (added_user, _, _) = sys.developer("added").await;
    let paths = [
        "/v1/users".to_owned(),
        format!("/v1/users/{kept_user}"),
        format!("/v1/keys/{revoked_key}"),
        format!("/v1/users/{added_user}"),
    ];
    // The Bedrock key's readiness check is appended in the background after the command.
    wait_until(Duration::from_secs(10), "the added key's readiness", || async {
        let (_, user, _) = get(&sys, &format!("/v1/users/{added_user}"), &tokens[0].1).await;
        !user["keys"][0]["bedrock_key"]["readiness"].is_null()
    })
    .await;
    let before = answers(&sys, &paths, &tokens[0].1).await;
    assert!(before.iter().all(|(status, ..)| *status == 200), "{before:?}");
    assert_eq!(before[2].1["status"], "revoked", "{before:?}");
    assert_eq!(get(&sys, "/v1/users", &tokens[1].1).await.0, 401, "a revoked token");

    // A start from the same snapshot (nothing saved since) replays what came after it and
    // answers exactly as before: lists, states, versions (ETags), tokens.
    sys.restart_admin().await;
    let log = sys.admin.log_text();
    assert_eq!(field(&log, "admin state loaded", "from_snapshot"), Some(snapshot), "{log}");
    assert!(field(&log, "admin state loaded", "replayed").unwrap() > 0, "{log}");
    let after = answers(&sys, &paths, &tokens[0].1).await;
    assert_eq!(after, before);
    assert_eq!(get(&sys, "/v1/users", &tokens[1].1).await.0, 401, "a revoked token stays revoked");

    // With snapshots off, the whole stream is read, and the answers are the same again.
    set(&mut sys.admin_env, "CCP__ADMIN__VIEW_SNAPSHOT_EVERY", 0);
    sys.restart_admin().await;
    let log = sys.admin.log_text();
    assert_eq!(field(&log, "admin state loaded", "from_snapshot"), Some(0), "{log}");
    let replayed = answers(&sys, &paths, &tokens[0].1).await;
    assert_eq!(replayed, before);
    sys.finish().await;
}

/// Every entry of the state projection's users, access keys and key hashes buckets:
/// (bucket, key) → value (JSON, or the text of a hash entry).
async fn state_buckets(sys: &System) -> std::collections::BTreeMap<(String, String), serde_json::Value> {
    use futures_util::TryStreamExt as _;
    let client = async_nats::connect(&sys.settings.nats.url).await.unwrap();
    let (js, ns) = (jetstream::new(client), ccp_tests::namespace(&sys.settings));
    let mut out = std::collections::BTreeMap::new();
    for bucket in [Bucket::Users, Bucket::AccessKeys, Bucket::KeyHashes] {
        let store = js.get_key_value(ns.bucket(bucket)).await.unwrap();
        let keys: Vec<String> = store.keys().await.unwrap().try_collect().await.unwrap();
        for key in keys {
            let Some(value) = store.get(&key).await.unwrap() else { continue };
            let value = serde_json::from_slice(&value)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&value).into_owned()));
            out.insert((ns.bucket(bucket), key), value);
        }
    }
    out
}

/// Purges every entry of those buckets.
async fn purge_state_buckets(sys: &System) {
    use futures_util::TryStreamExt as _;
    let client = async_nats::connect(&sys.settings.nats.url).await.unwrap();
    let (js, ns) = (jetstream::new(client), ccp_tests::namespace(&sys.settings));
    for bucket in [Bucket::Users, Bucket::AccessKeys, Bucket::KeyHashes] {
        let store = js.get_key_value(ns.bucket(bucket)).await.unwrap();
        let keys: Vec<String> = store.keys().await.unwrap().try_collect().await.unwrap();
        for key in keys {
            store.purge(&key).await.unwrap();
        }
    }
}

/// Starts the projector (after emptying its buckets) and waits until its state projection has
/// written every user and key; the projector's log.
async fn start_projector_afresh(sys: &mut System) -> String {
    sys.kill_projector();
    purge_state_buckets(sys).await;
    assert!(state_buckets(sys).await.is_empty());
    sys.start_projector().await;
    wait_until(Duration::from_secs(20), "the state projection written", || async {
        sys.projector.as_ref().unwrap().log_text().contains("state projection caught up")
    })
    .await;
    sys.projector.as_ref().unwrap().log_text()
}

/// The projector's state projection starts from its snapshot, replays only the admin events
/// after it, and writes the buckets exactly as a replay of the whole stream does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_projector_loads_its_state_snapshot_and_writes_as_after_a_replay() {
    let mut options = Options::new("projsnap");
    options.env.push(("CCP__PROJECTOR__STATE_SNAPSHOT_EVERY".into(), EVERY.to_string()));
    let mut sys = System::start(options).await;
    let (kept_user, kept_key, _) = sys.developer("kept").await;
    let (_, revoked_key, _) = sys.developer("revoked").await;
    saved(&sys, PROJECTOR_NAME).await;
    let meta = stored_as(&sys, PROJECTOR_NAME).await.unwrap();
    assert_eq!(meta.get("ccp-build").map(String::as_str), identity().as_deref());

    // With the projector stopped (nothing saves), a revocation and a new developer follow.
    sys.kill_projector();
    let snapshot = settled(&sys, PROJECTOR_NAME).await;
    sys.admin(reqwest::Method::POST, &format!("/v1/keys/{revoked_key}/revoke"), Some(json!({}))).await;
    let (added_user, added_key, _) = sys.developer("added").await;

    // Started again on empty buckets (saving only every 1,000 events now): it loads the
    // snapshot, replays the rest, and writes every user and key — those of the snapshot too.
    set(&mut sys.env, "CCP__PROJECTOR__STATE_SNAPSHOT_EVERY", 1000);
    let log = start_projector_afresh(&mut sys).await;
    assert_eq!(field(&log, "state projection snapshot loaded", "seq"), Some(snapshot), "{log}");
    assert_eq!(field(&log, "state projection caught up", "from_snapshot"), Some(snapshot), "{log}");
    let from_snapshot = state_buckets(&sys).await;
    let ns = ccp_tests::namespace(&sys.settings);
    let entry = |bucket: Bucket, key: &str| from_snapshot.get(&(ns.bucket(bucket), key.to_owned())).cloned();
    assert!(entry(Bucket::Users, &kept_user).is_some(), "a user of the snapshot: {from_snapshot:?}");
    assert!(entry(Bucket::AccessKeys, &kept_key).is_some(), "a key of the snapshot: {from_snapshot:?}");
    assert!(entry(Bucket::Users, &added_user).is_some(), "a user added after it: {from_snapshot:?}");
    assert!(entry(Bucket::AccessKeys, &added_key).is_some(), "a key added after it: {from_snapshot:?}");
    assert_eq!(entry(Bucket::AccessKeys, &revoked_key).unwrap()["status"], "revoked", "revoked after it");

    // With snapshots off, the whole stream is read, and the buckets are the same.
    set(&mut sys.env, "CCP__PROJECTOR__STATE_SNAPSHOT_EVERY", 0);
    let log = start_projector_afresh(&mut sys).await;
    assert!(!log.contains("state projection snapshot loaded"), "{log}");
    assert_eq!(field(&log, "state projection caught up", "from_snapshot"), Some(0), "{log}");
    assert_eq!(state_buckets(&sys).await, from_snapshot);
    sys.finish().await;
}
