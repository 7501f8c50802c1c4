//! Mixed versions against the real NATS: what the services of this build do with an event that a
//! newer version wrote (`ccp_runtime::follow`'s policies).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use async_nats::jetstream;
use ccp_runtime::snapshot::bucket_name;
use ccp_schemas::events::RoutingStrategy;
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::subjects::{Aggregate, Bucket};
use ccp_tests::system::{wait_until, Options, System};
use serde_json::Value;

/// A revocation of `key_id` as a newer admin API would write it: schema version 2, with a payload
/// this build cannot read.
fn newer_revocation(key_id: &str, user_id: &str) -> Vec<u8> {
    let sample = include_str!("../../schemas/fixtures/events/v1/access_key_revoked.json");
    let mut event: Value = serde_json::from_str(sample).unwrap();
    event["id"] = ulid::Ulid::new().to_string().into();
    event["schema_version"] = 2.into();
    event["occurred_at"] = chrono::Utc::now().to_rfc3339().into();
    event["payload"] = serde_json::json!({ "key_id": key_id, "user_id": user_id, "revocation": { "reason": "v2" } });
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_and_the_kv_state_both_refuse_a_key_revoked_by_a_newer_version() {
    let mut options = Options::new("newer");
    // The projector would save a snapshot of its state at every event.
    options.env.push(("CCP__PROJECTOR__STATE_SNAPSHOT_EVERY".into(), "1".into()));
    let mut sys = System::start(options).await;
    let (user_a, key_a, access_a) = sys.developer("Dana Scully").await;
    let (user_b, key_b, _) = sys.developer("Walter Skinner").await;
    let client = async_nats::connect(&sys.settings.nats.url).await.unwrap();
    let js = jetstream::new(client);
    let ns = ccp_tests::namespace(&sys.settings);
    let keys = js.get_key_value(ns.bucket(Bucket::AccessKeys)).await.unwrap();
    let hashes = js.get_key_value(ns.bucket(Bucket::KeyHashes)).await.unwrap();
    let pepper = KeyPepper::new(&sys.settings.secrets.access_key_pepper).unwrap();
    let hash_a = pepper.hash(&access_a).to_hex();
    wait_until(Duration::from_secs(10), "the projector wrote both keys", || async {
        keys.get(&key_a).await.unwrap().is_some()
            && keys.get(&key_b).await.unwrap().is_some()
            && hashes.get(&hash_a).await.unwrap().is_some()
    })
    .await;
    sys.wait_key_status(0, &access_a, |s| s == 200, "served before").await;
    // The projector has saved a snapshot and no save is under way (none for longer than a
    // save's random pause, 3 s): the next event it applies would make one.
    let snapshots = js.get_object_store(bucket_name(&ns, "projector")).await.unwrap();
    let snapshot_seq = || async {
        snapshots.info("projector-state").await.ok().and_then(|i| i.metadata.get("ccp-seq")?.parse::<u64>().ok())
    };
    let (mut seen, mut since, deadline) = (None, Instant::now(), Instant::now() + Duration::from_secs(30));
    while seen.is_none() || since.elapsed() < Duration::from_millis(3500) {
        let now = snapshot_seq().await;
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        assert!(Instant::now() < deadline, "the projector's snapshots never settled (at {seen:?})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let subject = ns.subject(&Aggregate::AccessKey(key_a.parse().unwrap()));
    let newer = js.publish(subject, newer_revocation(&key_a, &user_a).into()).await.unwrap().await.unwrap().sequence;

    // The proxy fails closed: it cannot tell what the event changed, so it serves nobody.
    sys.wait_key_status(0, &access_a, |s| s == 503, "the proxy refuses the key").await;
    let refusal = sys
        .http
        .post(format!("{}/ak/{access_a}/v1/messages", sys.proxy_url(0)))
        .header("content-type", "application/json")
        .body(r#"{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[{"role":"user","content":"ping"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal.status(), 503);
    let body: Value = refusal.json().await.unwrap();
    assert_eq!(body["type"], "error", "in Anthropic's error format: {body}");
    // The KV state agrees on the key: it is gone from both buckets, so a reader refuses it too;
    // the other developer's key, whose events it can read, is still there.
    wait_until(Duration::from_secs(10), "the projector quarantined the key", || async {
        keys.get(&key_a).await.unwrap().is_none() && hashes.get(&hash_a).await.unwrap().is_none()
    })
    .await;
    assert!(keys.get(&key_b).await.unwrap().is_some(), "another key is not quarantined");
    // The admin API's view halts too: it refuses requests rather than decide on stale state.
    let status = sys.http.get(format!("{}/v1/users", sys.admin_url)).bearer_auth(&sys.token).send().await.unwrap();
    assert_eq!(status.status(), 503);
    let body: Value = status.json().await.unwrap();
    assert!(body.to_string().contains("upgrade"), "{body}");
    let ready = sys.http.get(format!("{}/ready", sys.admin_url)).send().await.unwrap();
    assert_eq!(ready.status(), 503, "the admin API says it is not ready");
    assert!(ready.text().await.unwrap().contains("newer version"));
    // The proxy counts it where an operator's alerting looks.
    let metrics = sys.http.get(format!("{}/metrics", sys.proxy_url(0))).send().await.unwrap().text().await.unwrap();
    let halted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ccp_proxy_events_not_applied_total{cause=\"halted\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(halted.is_some_and(|n| n >= 1.0), "{metrics}");
    // A service not on a terminal logs JSON lines (`log.format = auto`), for log collectors.
    let proxy_log = sys.proxies[0].service.as_ref().unwrap().log_text();
    let lines: Vec<&str> = proxy_log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{proxy_log}");
    // And every service says why in its log.
    let logs = sys.logs();
    assert!(logs.matches("schema version 2").count() >= 3, "each service logs the reason: {logs}");

    // While a key is quarantined the projector saves no snapshot of its state, though an event
    // follows: its fold lacks the newer revocation, and a start from it would never read that
    // event again and would write the key back as active.
    let log = ccp_tests::events::Log::new(&sys.settings).await;
    log.set_routing(user_b.parse().unwrap(), RoutingStrategy::BedrockOnly).await;
    let users = js.get_key_value(ns.bucket(Bucket::Users)).await.unwrap();
    wait_until(Duration::from_secs(10), "the later event projected", || async {
        users
            .get(&user_b)
            .await
            .unwrap()
            .is_some_and(|u| serde_json::from_slice::<Value>(&u).unwrap()["routing"] == "bedrock_only")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await; // twice a save's random pause (3 s)
    let saved = snapshot_seq().await;
    assert!(saved.is_some_and(|seq| seq < newer), "snapshot at {saved:?}, the newer event at {newer}");
    sys.kill_projector();
    sys.start_projector().await;
    let projector = || sys.projector.as_ref().unwrap().log_text();
    wait_until(Duration::from_secs(20), "the restarted projector caught up", || async {
        projector().contains("state projection caught up")
    })
    .await;
    assert!(projector().contains("state projection snapshot loaded"), "{}", projector());
    assert!(keys.get(&key_a).await.unwrap().is_none(), "the quarantined key stays out of the buckets");
    assert!(hashes.get(&hash_a).await.unwrap().is_none());
    assert!(keys.get(&key_b).await.unwrap().is_some());
    sys.finish().await;
}
