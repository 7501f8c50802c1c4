#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `ccpctl` with users and keys named the way people name them (name, e-mail, label, prefix,
//! USER/LABEL), names beside ids in its tables, and the operations added to cover the whole API
//! (`circuits`, `pricing set`, `self`), against a real `ccp-admin` on the test stack; usage and
//! audit rows are projected into ClickHouse by the real projector code.

mod common;

use std::time::Duration;

use ccp_projector::analytics::{Audit, Projection, Requests};
use ccp_schemas::events::{CircuitOpened, Event, RequestCompleted, TokenUsage, TripReason};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_tests::events::{completed, wait_rollups};
use common::ctl::Ctl;
use common::AdminApi;
use rust_decimal::Decimal;
use serde_json::json;

/// A user with an e-mail.
async fn user(api: &AdminApi, name: &str, email: &str) -> String {
    let a = api.post("/v1/users", json!({ "name": name, "email": email })).await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body["user_id"].as_str().unwrap().to_owned()
}

/// A labelled key: (key id, display prefix, access key).
async fn key(api: &AdminApi, user_id: &str, label: &str) -> (String, String, String) {
    let a = api.post(&format!("/v1/users/{user_id}/keys"), json!({ "name": label })).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let k = &a.body["key"];
    (
        k["key_id"].as_str().unwrap().to_owned(),
        k["prefix"].as_str().unwrap().to_owned(),
        a.body["access_key"].as_str().unwrap().to_owned(),
    )
}

fn request(user_id: &str, key_id: &str, n: u64) -> Event {
    Event::RequestCompleted(RequestCompleted {
        response_model: Some("claude-sonnet-4-5-20250929".into()),
        usage: TokenUsage { input_tokens: n * 100, output_tokens: n * 10, ..TokenUsage::default() },
        cost_usd: Some(Decimal::new(i64::try_from(n).unwrap(), 2)),
        latency_ms: 900,
        ttfb_ms: Some(200),
        ..completed(user_id.parse::<UserId>().unwrap(), key_id.parse::<AccessKeyId>().unwrap())
    })
}

/// Users and keys by name, e-mail, label, prefix and USER/LABEL; ambiguity and absence are
/// refused with the candidates or what was searched; tables show names.
#[tokio::test]
async fn users_and_keys_are_found_by_what_people_call_them() {
    let api = AdminApi::start("cli_names").await;
    // `budget` reads the month's spend from ClickHouse: an empty, migrated database answers.
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let ctl = Ctl::new(&api);
    let ann = user(&api, "Ann Lee", "ann@example.com").await;
    let bob = user(&api, "Bob Stone", "bob@example.com").await;
    let bobby = user(&api, "Bobby Stone", "bobby@example.com").await;
    let cy1 = user(&api, "Cy One", "team@example.com").await;
    let cy2 = user(&api, "Cy Two", "team@example.com").await;
    let (ann_laptop, ann_laptop_prefix, ann_access_key) = key(&api, &ann, "laptop").await;
    let (ann_desktop, _, _) = key(&api, &ann, "desktop").await;
    let (bob_laptop, _, _) = key(&api, &bob, "laptop").await;

    // Users: exact name (case aside) or e-mail.
    for given in ["Ann Lee", "ann lee", "ann@example.com", "ANN@example.com", ann.as_str()] {
        let got = ctl.run(&["users", "get", given, "--json"]).ok().json();
        assert_eq!(got["user_id"], ann.as_str(), "{given}");
    }
    let r = ctl.run(&["users", "get", "team@example.com"]).fails(1);
    assert!(r.stderr.contains("fits 2 users"), "{}", r.stderr);
    for id in [&cy1, &cy2] {
        assert!(r.stderr.contains(id.as_str()), "candidates are listed: {}", r.stderr);
    }
    assert!(r.stderr.contains("Cy One <team@example.com>"), "{}", r.stderr);
    let r = ctl.run(&["users", "get", "Stone"]).fails(1);
    assert!(r.stderr.contains("no user has the name or e-mail \"Stone\""), "{}", r.stderr);
    assert!(r.stderr.contains(&bob) && r.stderr.contains(&bobby), "partial matches are suggested: {}", r.stderr);
    let r = ctl.run(&["users", "get", "Nobody At All"]).fails(1);
    assert!(r.stderr.contains("usr_") && !r.stderr.contains("contains it"), "{}", r.stderr);

    // Commands that change a user take the same.
    let updated = ctl.run(&["users", "budget", "ann@example.com", "50", "--json"]).ok().json();
    assert_eq!((updated["user_id"].as_str(), updated["monthly_limit_usd"].as_str()), (Some(ann.as_str()), Some("50")));
    ctl.run(&["users", "routing", "Bob Stone", "plan_only"]).ok();
    assert_eq!(api.get(&format!("/v1/users/{bob}")).await.body["routing"], "plan_only");

    // Keys: label, prefix, USER/LABEL, a user with one key.
    let r = ctl.run(&["keys", "get", "laptop"]).fails(1);
    assert!(r.stderr.contains("fits 2 access keys"), "{}", r.stderr);
    assert!(r.stderr.contains(&ann_laptop) && r.stderr.contains(&bob_laptop), "{}", r.stderr);
    assert!(r.stderr.contains("of Ann Lee <ann@example.com>") && r.stderr.contains("of Bob Stone"), "{}", r.stderr);
    let prefix_shown = format!("{ann_laptop_prefix}…");
    let prefix_under_owner = format!("Ann Lee/{ann_laptop_prefix}");
    for (given, expected) in [
        ("Ann Lee/laptop", &ann_laptop),
        ("ann@example.com/desktop", &ann_desktop),
        ("Ann Lee/DESKTOP", &ann_desktop),
        (ann_laptop_prefix.as_str(), &ann_laptop),
        (prefix_shown.as_str(), &ann_laptop),
        (prefix_under_owner.as_str(), &ann_laptop),
        ("Bob Stone", &bob_laptop),
        ("bob@example.com", &bob_laptop),
        (bob_laptop.as_str(), &bob_laptop),
    ] {
        let got = ctl.run(&["keys", "get", given, "--json"]).ok().json();
        assert_eq!(got["key_id"], expected.as_str(), "{given}");
    }
    let r = ctl.run(&["keys", "get", "Ann Lee"]).fails(1);
    assert!(r.stderr.contains("fits 2 access keys") && r.stderr.contains("USER/LABEL"), "{}", r.stderr);
    let r = ctl.run(&["keys", "get", "Ann Lee/tablet"]).fails(1);
    assert!(r.stderr.contains("Ann Lee") && r.stderr.contains("no key with that label or prefix"), "{}", r.stderr);
    let r = ctl.run(&["keys", "get", "tablet"]).fails(1);
    assert!(r.stderr.contains("searched the keys of") && r.stderr.contains("key_"), "{}", r.stderr);
    let r = ctl.run(&["keys", "get", "Cy One"]).fails(1);
    assert!(r.stderr.contains("Cy One") && r.stderr.contains("no access key that is not revoked"), "{}", r.stderr);
    // A whole access key is a secret: refused, never repeated.
    let r = ctl.run(&["keys", "get", &ann_access_key]).fails(2);
    assert!(!r.stderr.contains(&ann_access_key[..12]), "{}", r.stderr);

    // Names beside ids: a user's keys and every key.
    let r = ctl.run(&["keys", "list", "Ann Lee"]).ok();
    let header = r.stdout.lines().next().unwrap();
    assert!(header.starts_with("KEY_ID") && header.contains("USER") && header.contains("NAME"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().filter(|l| l.contains("Ann Lee")).count(), 2, "{}", r.stdout);
    let r = ctl.run(&["keys", "list"]).ok();
    for (id, owner) in [(&ann_laptop, "Ann Lee"), (&ann_desktop, "Ann Lee"), (&bob_laptop, "Bob Stone")] {
        let row = r.stdout.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{}", r.stdout));
        assert!(row.contains(owner), "{row}");
    }
    let every = ctl.run(&["keys", "list", "--json"]).ok().json();
    assert_eq!(every.as_array().unwrap().len(), 3, "{every}");
    let r = ctl.run(&["keys", "list", "Cy Two"]).ok();
    assert!(r.stdout.starts_with("Cy Two has no access keys"), "{}", r.stdout);
    let r = ctl.run(&["keys", "get", "Ann Lee/laptop"]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("user:") && l.ends_with("Ann Lee")), "{}", r.stdout);
    let r = ctl.run(&["budget", "Ann Lee"]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("user:") && l.ends_with("Ann Lee")), "{}", r.stdout);
    let r = ctl.run(&["circuit", "Ann Lee/desktop"]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("key:") && l.ends_with("Ann Lee/desktop")), "{}", r.stdout);

    // Tripped circuits name their keys.
    let r = ctl.run(&["circuits"]).ok();
    assert!(r.stdout.contains("no open or half-open circuits"), "{}", r.stdout);
    let retry_at = chrono::Utc::now() + chrono::Duration::minutes(30);
    let key_id: AccessKeyId = ann_desktop.parse().unwrap();
    api.log
        .append(Event::CircuitOpened(CircuitOpened { key_id, reason: TripReason::RateLimited, failures: 3, retry_at }))
        .await;
    let r = ctl.run(&["circuits"]).ok();
    let row = r.stdout.lines().find(|l| l.contains(&ann_desktop)).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains("Ann Lee/desktop") && row.contains("open"), "{}", r.stdout);
    let listed = ctl.run(&["circuits", "--json"]).ok().json();
    assert_eq!(listed[0]["key_id"], ann_desktop.as_str(), "--json is the API's answer: {listed}");
    assert!(listed[0].get("key").is_none(), "{listed}");
    ctl.run(&["circuit", "Ann Lee/desktop", "--reset"]).ok();

    // Revoking by name; a revoked key is no longer a user's only key.
    let r = ctl.run(&["keys", "revoke", "Bob Stone", "--reason", "left"]).ok();
    assert!(
        r.stdout.contains(&format!("revoked key {bob_laptop}")) && r.stdout.contains("of Bob Stone"),
        "{}",
        r.stdout
    );
    let r = ctl.run(&["keys", "get", "Bob Stone"]).fails(1);
    assert!(r.stderr.contains("no access key that is not revoked"), "{}", r.stderr);
    let got = ctl.run(&["keys", "get", "Bob Stone/laptop", "--json"]).ok().json();
    assert_eq!(got["status"], "revoked");
    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}

/// Usage and audit tables name users and keys; their filters take names.
#[tokio::test]
async fn usage_and_audit_show_and_take_names() {
    let api = AdminApi::start("cli_names_usage").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let ch = ccp_runtime::migrate::server_client(&api.settings.clickhouse)
        .unwrap()
        .with_database(&api.settings.clickhouse.database);
    let flush = Duration::from_millis(100);
    let mut requests = Projection::<Requests>::open(&api.log.js, &api.log.ns, ch.clone(), 1000, flush).await.unwrap();
    let mut audit = Projection::<Audit>::open(&api.log.js, &api.log.ns, ch.clone(), 1000, flush).await.unwrap();
    let ctl = Ctl::new(&api);
    let dee = user(&api, "Dee Park", "dee@example.com").await;
    let eve = user(&api, "Eve Moss", "eve@example.com").await;
    let (dee_laptop, _, _) = key(&api, &dee, "laptop").await;
    let (eve_ci, _, _) = key(&api, &eve, "ci").await;
    ctl.run(&["users", "deactivate", "Eve Moss", "--reason", "test"]).ok();
    for (u, k, n) in [(&dee, &dee_laptop, 2), (&dee, &dee_laptop, 3), (&eve, &eve_ci, 7)] {
        api.log.append(request(u, k, n)).await;
    }
    while requests.process_next_batch().await.unwrap().received > 0 {}
    while audit.process_next_batch().await.unwrap().received > 0 {}
    wait_rollups(&api.settings.clickhouse.database, 3).await;

    let r = ctl.run(&["usage", "--preset", "last_24h", "--group-by", "user,key"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    let header = lines[1];
    for column in ["USER_ID", "USER", "KEY_ID", "KEY", "REQUESTS"] {
        assert!(header.split_whitespace().any(|h| h == column), "{column} missing: {}", r.stdout);
    }
    let dee_row = lines.iter().find(|l| l.contains(&dee)).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(dee_row.contains("Dee Park") && dee_row.contains("Dee Park/laptop"), "{dee_row}");
    let eve_row = lines.iter().find(|l| l.contains(&eve)).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(eve_row.contains("Eve Moss/ci"), "{eve_row}");
    let r = ctl.run(&["usage", "--preset", "last_24h", "--group-by", "key"]).ok();
    assert!(r.stdout.contains("Dee Park/laptop") && r.stdout.contains("Eve Moss/ci"), "{}", r.stdout);

    let only = ctl.run(&["usage", "--preset", "last_24h", "--user", "Dee Park", "--json"]).ok().json();
    assert_eq!(only["totals"]["requests"], 2, "{only}");
    let only = ctl.run(&["usage", "--preset", "last_24h", "--key", "Eve Moss/ci", "--json"]).ok().json();
    assert_eq!(only["totals"]["requests"], 1, "{only}");
    ctl.run(&["usage", "--user", "Nobody Here"]).fails(1);

    let r = ctl.run(&["audit", "--target", "Eve Moss"]).ok();
    let row = r.stdout.lines().find(|l| l.contains("user_deactivated")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(row.contains(&format!("{eve} (Eve Moss)")), "{row}");
    assert!(!r.stdout.contains("Dee Park"), "only Eve's entries: {}", r.stdout);
    let r = ctl.run(&["audit", "--target", "Dee Park/laptop"]).ok();
    assert!(r.stdout.contains("(Dee Park/laptop)") && !r.stdout.contains("Eve Moss"), "{}", r.stdout);
    let r = ctl.run(&["audit", "--target", "root-admin"]).ok();
    assert!(!r.stdout.contains("user_created"), "an admin's own entries only: {}", r.stdout);

    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}

/// `pricing set` replaces the price list from flags or a file; `self` is a developer's own view,
/// by their access key only.
#[tokio::test]
async fn pricing_set_and_a_developers_own_view() {
    let api = AdminApi::start("cli_pricing_self").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let ctl = Ctl::new(&api);

    let set = ctl
        .run(&[
            "pricing",
            "set",
            "--price",
            "claude-sonnet-4-5=3/15/3.75/0.30",
            "--price",
            "claude-sonnet-4-5=bedrock@eu-central-1:3.3/16.5/4.125/0.33",
            "--json",
        ])
        .ok()
        .json();
    let version = set["version"].as_u64().unwrap();
    assert_eq!(set["models"].as_array().unwrap().len(), 2, "{set}");
    assert_eq!(set["models"][1]["region"], "eu-central-1", "{set}");
    let shown = ctl.run(&["pricing", "show", "--json"]).ok().json();
    assert_eq!(shown, set);
    let r = ctl.run(&["pricing"]).ok();
    assert!(r.stdout.contains("claude-sonnet-4-5") && r.stdout.contains("16.5"), "{}", r.stdout);
    // What `pricing --json` prints goes back in unchanged: nothing changes.
    let again = ctl.run_with(&["pricing", "set", "--file", "-", "--json"], &shown.to_string()).ok().json();
    assert_eq!(again["version"].as_u64(), Some(version), "{again}");
    let file = std::env::temp_dir().join(format!("ccpctl-prices-{}.json", ulid::Ulid::new()));
    std::fs::write(
        &file,
        json!([{"model": "claude-haiku-4-5", "input_per_mtok": "1", "output_per_mtok": "5",
        "cache_write_per_mtok": "1.25", "cache_read_per_mtok": "0.10"}])
        .to_string(),
    )
    .unwrap();
    let replaced = ctl.run(&["pricing", "set", "--file", file.to_str().unwrap(), "--json"]).ok().json();
    let _ = std::fs::remove_file(&file);
    assert_eq!(replaced["version"].as_u64(), Some(version + 1), "{replaced}");
    assert_eq!(replaced["models"][0]["model"], "claude-haiku-4-5");
    ctl.run(&["pricing", "set"]).fails(2);
    let r = ctl.run(&["pricing", "set", "--price", "claude-x"]).fails(2);
    assert!(r.stderr.contains("MODEL="), "{}", r.stderr);
    let r = ctl.run(&["pricing", "set", "--price", "claude-x=-1/1/1/1"]).fails(1);
    assert!(r.stderr.contains("(field: models[0].input_per_mtok)"), "{}", r.stderr);

    // `self`: the developer's key from stdin or Claude Code's environment; no admin credentials.
    let gil = user(&api, "Gil Hart", "gil@example.com").await;
    let (key_id, _, access_key) = key(&api, &gil, "laptop").await;
    let developer = Ctl::without_token(&api);
    let me = developer.run_with(&["self", "--json"], &format!("{access_key}\n")).ok().json();
    assert_eq!(me["user"]["name"], "Gil Hart", "{me}");
    assert_eq!(me["keys"][0]["key_id"], key_id.as_str());
    let base_url = format!("https://proxy.example.test/ak/{access_key}");
    let r = developer.run_with_env(&["self"], "", &[("ANTHROPIC_BASE_URL", &base_url)]).ok();
    assert!(r.stdout.starts_with(&format!("Gil Hart ({gil})")), "{}", r.stdout);
    assert!(r.stdout.contains("this month:") && r.stdout.contains(&key_id), "{}", r.stdout);
    assert!(!r.stdout.contains(&access_key) && !r.stderr.contains(&access_key), "the key is never printed");
    let wrong = format!("ak_{}", "A".repeat(43));
    let r = developer.run_with(&["self"], &format!("{wrong}\n")).fails(1);
    assert!(r.stderr.contains("not accepted") && !r.stderr.contains("ccpctl login"), "{}", r.stderr);

    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}
