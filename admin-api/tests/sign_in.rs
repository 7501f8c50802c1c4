//! Sign-in throttling against the real NATS: an attacker spraying the admin's username from many
//! addresses (behind a trusted proxy, which names them in `X-Forwarded-For`) is slowed and each
//! of its clients refused, while the real admin from another client still logs in; the failures
//! are counted in a bounded number of records on the security stream, not appended one by one to
//! the admin stream, and they are metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use ccp_schemas::subjects::StreamKind;
use common::{AdminApi, ADMIN_PASSWORD, ADMIN_USER};
use serde_json::{json, Value};

const ATTACKERS: u32 = 30;
const GUESSES: usize = 7;

async fn admin_stream_length(api: &AdminApi) -> u64 {
    let stream = api.log.js.get_stream(api.log.ns.stream(StreamKind::Admin)).await.unwrap();
    stream.get_info().await.unwrap().state.last_sequence
}

async fn login(api: &AdminApi, client: &str, password: &str) -> u16 {
    api.http
        .post(format!("{}/v1/auth/login", api.url))
        .header("x-forwarded-for", client)
        .json(&json!({ "username": ADMIN_USER, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn metric(text: &str, labels: &str) -> f64 {
    let line = format!("ccp_admin_sign_in_attempts_total{{{labels}}} ");
    text.lines().find_map(|l| l.strip_prefix(line.as_str())).and_then(|v| v.parse().ok()).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attacker_from_many_addresses_slows_itself_but_never_locks_out_the_admin() {
    let api = AdminApi::start_with(
        "signin",
        &[("CCP__ADMIN__TRUSTED_PROXIES", "127.0.0.1,::1"), ("CCP__ADMIN__SIGN_IN_RECORD_SECS", "1")],
    )
    .await;
    let before = admin_stream_length(&api).await;
    let started = Instant::now();

    // Thirty clients guess at once, seven times each.
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|n| {
            let (http, url) = (api.http.clone(), api.url.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..GUESSES {
                    let status = http
                        .post(format!("{url}/v1/auth/login"))
                        .header("x-forwarded-for", format!("203.0.113.{}", n + 1))
                        .json(&json!({ "username": ADMIN_USER, "password": "not the password" }))
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16();
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    for attacker in attackers {
        let statuses = attacker.await.unwrap();
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429], "each guessing client is refused after five");
    }
    // The admin, from a client that has not failed, logs in: slowed, never locked out.
    assert_eq!(login(&api, "198.51.100.10", ADMIN_PASSWORD).await, 200);
    // A header from a peer that is not a trusted proxy would not have chosen the client: the
    // rule is tested in `context::client_address_tests`; here the peer is trusted.

    // The admin stream grew by the one successful login, not by a hundred and fifty failures.
    let grown = admin_stream_length(&api).await - before;
    assert_eq!(grown, 1, "the admin stream holds no event per failed attempt");

    // The failures are counted per name and window on the security stream, in a few records.
    let failures = ATTACKERS as u64 * 5;
    let refused = ATTACKERS as u64 * 2;
    let mut report = Value::Null;
    for _ in 0..100 {
        report = api.get("/v1/sign-in-failures?kind=admin_login").await.body;
        let sum = |field: &str| {
            report["records"].as_array().map_or(0, |r| {
                r.iter().filter(|r| r["name"] == ADMIN_USER).map(|r| r[field].as_u64().unwrap()).sum::<u64>()
            })
        };
        if sum("failures") == failures && sum("refused") == refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let records = report["records"].as_array().unwrap_or_else(|| panic!("{report}"));
    let admin: Vec<&Value> = records.iter().filter(|r| r["name"] == ADMIN_USER).collect();
    assert_eq!(admin.iter().map(|r| r["failures"].as_u64().unwrap()).sum::<u64>(), failures, "{report}");
    assert_eq!(admin.iter().map(|r| r["refused"].as_u64().unwrap()).sum::<u64>(), refused, "{report}");
    // One record per one-second window at most, whatever the number of attempts.
    let windows = started.elapsed().as_secs() + 2;
    assert!(admin.len() as u64 <= windows, "{} records in {windows} windows", admin.len());
    assert!(admin.iter().all(|r| r["sample_clients"].as_array().unwrap().len() <= 5));
    assert!(admin.iter().map(|r| r["clients"].as_u64().unwrap()).max().unwrap() >= 1);

    let metrics = api.http.get(format!("{}/metrics", api.url)).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, r#"kind="admin_login",outcome="failed""#), failures as f64, "{metrics}");
    assert_eq!(metric(&metrics, r#"kind="admin_login",outcome="refused""#), refused as f64, "{metrics}");
    assert!(metric(&metrics, r#"kind="admin_login",outcome="slowed""#) > 0.0, "{metrics}");

    // Bad input to the report is a specific 400.
    for (query, field) in [("from=yesterday", "from"), ("kind=ssh", "kind"), ("limit=0", "limit"), ("nope=1", "nope")] {
        let bad = api.get(&format!("/v1/sign-in-failures?{query}")).await;
        assert_eq!(bad.status, 400, "{query}: {}", bad.text);
        assert!(bad.text.contains(field), "{query}: {}", bad.text);
    }
    api.finish().await;
}
