//! The `users`, `teams` and `keys` dimensions, `requests_by_user` and `key_last_used`
//! (migrations 0006 and 0007), `requests.team_id`, projected by the real projector from real events into the real ClickHouse, a restart that
//! resumes the dimensions from their own rows, and the example queries of issue 22 answering from
//! that data (on this ClickHouse 18.16; `scripts/check_clickhouse_lts.py` runs them on a current
//! one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use ccp_runtime::config::Settings;
use ccp_schemas::events::{
    Event, Provider, RequestCompleted, RoutingStrategy, TeamBudgetSet, TeamCreated, TeamDeleted, TeamRoutingSet,
    TeamUpdated, TokenUsage, UserTeamSet, UserUpdated,
};
use ccp_schemas::ids::TeamId;
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, wait_requests, wait_rollups, Log};
use ccp_tests::{clickhouse, clickhouse_url, delete_namespace, service_env, test_settings, Service};
use chrono::{DateTime, Datelike as _, Duration as Days, TimeZone as _, Utc};
use rust_decimal::Decimal;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-projector");

fn projector(settings: &Settings) -> Service {
    let mut env = service_env(settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), "127.0.0.1:0".into()));
    Service::spawn(Path::new(BIN), &["serve"], &env).unwrap()
}

/// Rows of `sql` (`{db}` replaced) as JSON objects.
async fn rows(db: &str, sql: &str) -> Vec<serde_json::Value> {
    let body = reqwest::Client::new()
        .post(clickhouse_url())
        .body(format!("{}\nFORMAT JSONEachRow", sql.replace("{db}", db)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// An example query of `schemas/queries/`, its budget time zone set to `tz`.
async fn example(db: &str, name: &str, tz: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/../schemas/queries/{name}.sql", env!("CARGO_MANIFEST_DIR"));
    let sql = std::fs::read_to_string(&path).unwrap();
    let sql = sql.replace("WITH 'UTC' AS budget_tz", &format!("WITH '{tz}' AS budget_tz"));
    rows(db, &sql).await
}

/// Polls `sql` until `done` holds for its rows (10 s at most).
async fn eventually(
    db: &str,
    sql: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
    log: impl Fn() -> String,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = rows(db, sql).await;
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{sql}: {got:?}\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
}

fn request(envelope_at: DateTime<Utc>, event: RequestCompleted) -> Envelope {
    let mut envelope = Envelope::new(Event::RequestCompleted(event), Actor::Proxy { replica: "t".into() });
    envelope.occurred_at = envelope_at;
    envelope
}

#[tokio::test]
async fn dimensions_user_ordered_rows_and_the_issue_22_queries() {
    let settings = test_settings("dimensions");
    let db = settings.clickhouse.database.clone();
    let log = Log::new(&settings).await;
    let (ann, ann_key, ann_secret) = log.user_with_key("ann").await;
    let (bob, bob_key, _) = log.user_with_key("bob").await;
    let (team, gone) = (TeamId::new(), TeamId::new());
    log.append(Event::TeamCreated(TeamCreated { team_id: team, name: "platform".into(), description: None })).await;
    log.append(Event::TeamUpdated(TeamUpdated {
        team_id: team,
        name: Some("Platform Eng".into()),
        description: Some("infra".into()),
    }))
    .await;
    log.append(Event::TeamBudgetSet(TeamBudgetSet { team_id: team, monthly_limit_usd: Some(Decimal::new(500, 0)) }))
        .await;
    log.append(Event::TeamRoutingSet(TeamRoutingSet { team_id: team, strategy: Some(RoutingStrategy::PlanOnly) }))
        .await;
    log.append(Event::TeamCreated(TeamCreated { team_id: gone, name: "gone".into(), description: None })).await;
    log.append(Event::TeamDeleted(TeamDeleted { team_id: gone })).await;
    log.append(Event::UserUpdated(UserUpdated {
        user_id: ann,
        name: Some("Ann Example".into()),
        description: None,
        email: Some("ann@example.com".into()),
    }))
    .await;
    log.append(Event::UserTeamSet(UserTeamSet { user_id: ann, team_id: Some(team) })).await;
    log.revoke(bob, bob_key).await;

    // The first request of ann is 30 minutes into this month in Berlin: still last month in UTC.
    let now = Utc::now();
    let berlin = chrono_tz::Europe::Berlin;
    let local = now.with_timezone(&berlin);
    let month_start = berlin.with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0).earliest().unwrap();
    let early = month_start.with_timezone(&Utc) + Days::minutes(30);
    let recent = now - Days::minutes(5);
    // ann: $1 via Anthropic (early), $2 via Bedrock, one unpriced Bedrock request, one estimated.
    // bob: $0.50 via Anthropic.
    let usage =
        TokenUsage { input_tokens: 100, output_tokens: 10, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
    let usd = |nanos: i64| Some(Decimal::new(nanos, 9));
    let bedrock = |cost, unpriced| RequestCompleted {
        provider: Provider::Bedrock,
        fallback: true,
        cost_usd: cost,
        unpriced,
        latency_ms: 900,
        usage,
        session_id: Some("s-ann".into()),
        team_id: Some(team),
        ..completed(ann, ann_key)
    };
    let envelopes = [
        request(
            early,
            RequestCompleted {
                cost_usd: usd(1_000_000_000),
                latency_ms: 100,
                usage,
                session_id: Some("s-early".into()),
                team_id: Some(team),
                ..completed(ann, ann_key)
            },
        ),
        request(recent, bedrock(usd(2_000_000_000), false)),
        request(recent, bedrock(None, true)),
        request(
            recent,
            RequestCompleted {
                usage_estimated: true,
                cost_usd: usd(0),
                latency_ms: 100,
                usage,
                session_id: Some("s-ann".into()),
                team_id: Some(team),
                ..completed(ann, ann_key)
            },
        ),
        request(
            recent,
            RequestCompleted {
                cost_usd: usd(500_000_000),
                latency_ms: 100,
                usage,
                session_id: Some("s-bob".into()),
                ..completed(bob, bob_key)
            },
        ),
    ];
    for envelope in &envelopes {
        log.publish(envelope).await;
    }
    let n = envelopes.len() as u64;
    let mut service = projector(&settings);
    assert_eq!(wait_requests(&db, n, Duration::from_secs(30)).await, n, "{}", service.log_text());
    wait_rollups(&db, n).await;
    let text = || String::new();

    // Dimensions: the newest row per id, with names, team, status and times; no secret.
    let users = eventually(
        &db,
        "SELECT user_id, name, email, team_id, status, deactivated_at FROM {db}.users FINAL ORDER BY name",
        |r| r.len() == 2 && r[0]["team_id"] != "",
        text,
    )
    .await;
    assert_eq!(users[0]["user_id"], ann.to_string());
    assert_eq!((users[0]["name"].as_str(), users[0]["email"].as_str()), (Some("Ann Example"), Some("ann@example.com")));
    assert_eq!(users[0]["team_id"], team.to_string());
    assert_eq!((users[1]["name"].as_str(), users[1]["team_id"].as_str()), (Some("bob"), Some("")));
    assert!(users[1]["deactivated_at"].is_null());
    let keys = eventually(
        &db,
        "SELECT * FROM {db}.keys FINAL ORDER BY created_at, key_id",
        |r| r.len() == 2 && r.iter().any(|k| k["status"] == "revoked"),
        text,
    )
    .await;
    let bob_row = keys.iter().find(|k| k["key_id"] == bob_key.to_string()).unwrap();
    assert_eq!(bob_row["user_id"], bob.to_string());
    assert!(!bob_row["revoked_at"].is_null());
    let ann_row = keys.iter().find(|k| k["key_id"] == ann_key.to_string()).unwrap();
    assert_eq!((ann_row["status"].as_str(), ann_row["revoked_at"].is_null()), (Some("active"), true));
    assert!(!format!("{keys:?}").contains(&ann_secret.hash(&log.pepper).to_hex()), "no key hash in keys");

    // Teams: renamed, budget and routing set; a deleted team keeps its row, dated.
    let teams = eventually(
        &db,
        "SELECT team_id, name, description, routing, monthly_budget_nanos, deleted_at FROM {db}.teams FINAL \
         ORDER BY name",
        |r| r.len() == 2 && r.iter().all(|t| t["name"] != "platform") && !r[1]["deleted_at"].is_null(),
        text,
    )
    .await;
    assert_eq!(teams[0]["team_id"], team.to_string());
    assert_eq!(
        (teams[0]["name"].as_str(), teams[0]["description"].as_str(), teams[0]["routing"].as_str()),
        (Some("Platform Eng"), Some("infra"), Some("plan_only"))
    );
    assert_eq!(num(&teams[0]["monthly_budget_nanos"]) as u64, 500_000_000_000);
    assert!(teams[0]["deleted_at"].is_null());
    assert_eq!(
        (teams[1]["team_id"].as_str(), teams[1]["name"].as_str()),
        (Some(gone.to_string().as_str()), Some("gone"))
    );

    // The team at request time, in requests and in requests_by_user: ann's 4 requests, not bob's.
    for table in ["requests", "requests_by_user"] {
        let by_team =
            rows(&db, &format!("SELECT team_id, count() AS n FROM {{db}}.{table} GROUP BY team_id ORDER BY team_id"))
                .await;
        assert_eq!(by_team.len(), 2, "{table}: {by_team:?}");
        assert_eq!((by_team[0]["team_id"].as_str(), num(&by_team[0]["n"]) as u64), (Some(""), 1), "{table}");
        assert_eq!(
            (by_team[1]["team_id"].as_str(), num(&by_team[1]["n"]) as u64),
            (Some(team.to_string().as_str()), 4),
            "{table}"
        );
    }

    // requests_by_user holds every request, with the same sums; key_last_used the newest time.
    let copy =
        rows(&db, "SELECT count() AS n, sum(cost_nanos) AS c, sum(unpriced) AS u FROM {db}.requests_by_user").await;
    let raw = rows(&db, "SELECT count() AS n, sum(cost_nanos) AS c, sum(unpriced) AS u FROM {db}.requests").await;
    assert_eq!(copy, raw);
    assert_eq!(num(&copy[0]["n"]) as u64, n);
    let last = rows(
        &db,
        "SELECT key_id, toUInt32(max(last_used_at)) AS t FROM {db}.key_last_used GROUP BY key_id ORDER BY key_id",
    )
    .await;
    assert_eq!(last.len(), 2);
    for row in &last {
        assert_eq!(num(&row["t"]) as i64, recent.timestamp(), "{row}");
    }

    // A restart resumes the dimensions from their rows: a later change keeps what came before.
    assert!(service.terminate(Duration::from_secs(15)).is_some());
    log.append(Event::UserUpdated(UserUpdated {
        user_id: ann,
        name: Some("Ann B".into()),
        description: None,
        email: None,
    }))
    .await;
    let service = projector(&settings);
    let log_text = || service.log_text();
    let after = eventually(
        &db,
        &format!("SELECT name, email, team_id FROM {{db}}.users FINAL WHERE user_id = '{ann}'"),
        |r| r.len() == 1 && r[0]["name"] == "Ann B",
        log_text,
    )
    .await;
    assert_eq!(
        (after[0]["email"].as_str(), after[0]["team_id"].as_str()),
        (Some("ann@example.com"), Some(team.to_string().as_str()))
    );

    // Organisation spend (Bedrock) this month: $2 priced, one unpriced request beside it.
    let spend = example(&db, "organisation_spend_bedrock_by_month", "UTC").await;
    let this_month = spend.last().unwrap();
    assert!((num(&this_month["cost_usd"]) - 2.0).abs() < 1e-9, "{spend:?}");
    assert_eq!(num(&this_month["unpriced_request_count"]) as u64, 1);

    // Plan value (Anthropic) per developer, with names: the budget month decides ann's early $1.
    let plan_utc = example(&db, "plan_value_anthropic_by_user_this_month", "UTC").await;
    let plan_berlin = example(&db, "plan_value_anthropic_by_user_this_month", "Europe/Berlin").await;
    let value = |rows: &[serde_json::Value], name: &str| {
        rows.iter().find(|r| r["name"] == name).map(|r| num(&r["list_value_usd"])).unwrap_or(f64::NAN)
    };
    assert!((value(&plan_berlin, "Ann B") - 1.0).abs() < 1e-9, "{plan_berlin:?}");
    assert!((value(&plan_berlin, "bob") - 0.5).abs() < 1e-9, "{plan_berlin:?}");
    if early.month() != recent.month() || early.year() != recent.year() {
        // In UTC the early request belongs to last month: only the estimated one ($0) is left.
        assert!(value(&plan_utc, "Ann B").abs() < 1e-9, "{plan_utc:?}");
    } else {
        assert!((value(&plan_utc, "Ann B") - 1.0).abs() < 1e-9, "{plan_utc:?}");
    }

    // Month report per developer in the budget time zone: both payers apart.
    let report = example(&db, "cost_per_user_budget_month", "Europe/Berlin").await;
    let ann_month: Vec<_> = report.iter().filter(|r| r["user_id"] == ann.to_string()).collect();
    assert_eq!(ann_month.len(), 1, "{report:?}");
    assert!((num(&ann_month[0]["organisation_spend_usd"]) - 2.0).abs() < 1e-9, "{report:?}");
    assert!((num(&ann_month[0]["plan_value_usd"]) - 1.0).abs() < 1e-9, "{report:?}");
    assert_eq!(num(&ann_month[0]["unpriced_requests"]) as u64, 1);
    assert_eq!(num(&ann_month[0]["estimated_requests"]) as u64, 1);

    // Cost per team (the team at request time), with its name: ann's team, and bob without one.
    let teams = example(&db, "cost_per_team_this_month", "Europe/Berlin").await;
    let ann_team = teams.iter().find(|r| r["team_id"] == team.to_string()).unwrap();
    assert_eq!((ann_team["team_name"].as_str(), num(&ann_team["team_deleted"]) as u64), (Some("Platform Eng"), 0));
    assert!((num(&ann_team["organisation_spend_usd"]) - 2.0).abs() < 1e-9, "{teams:?}");
    assert!((num(&ann_team["plan_value_usd"]) - 1.0).abs() < 1e-9, "{teams:?}");
    let no_team = teams.iter().find(|r| r["team_id"] == "").unwrap();
    assert_eq!((num(&no_team["developers"]) as u64, num(&no_team["plan_value_usd"])), (1, 0.5));

    // Cost per session (last 7 days), with names: ann's recent session has three requests.
    let sessions = example(&db, "cost_per_session", "UTC").await;
    let s = sessions.iter().find(|r| r["session_id"] == "s-ann").unwrap();
    assert_eq!((s["name"].as_str(), num(&s["request_count"]) as u64), (Some("Ann B"), 3));
    assert!((num(&s["cost_usd"]) - 2.0).abs() < 1e-9, "{s}");
    assert_eq!(num(&s["unpriced_requests"]) as u64, 1);

    // Share, fallback share and latency by provider.
    let providers = example(&db, "fallback_share_and_latency_by_provider", "UTC").await;
    let b = providers.iter().find(|r| r["provider"] == "bedrock").unwrap();
    let share = 2.0 / if early > now - Days::days(7) { 5.0 } else { 4.0 };
    assert!((num(&b["share"]) - share).abs() < 1e-9 && (num(&b["fallback_share"]) - 1.0).abs() < 1e-9, "{b}");
    assert!((num(&b["p95_latency_ms"]) - 900.0).abs() < 1e-9, "{b}");
    let a = providers.iter().find(|r| r["provider"] == "anthropic").unwrap();
    assert_eq!(num(&a["fallback_share"]), 0.0);

    // Active developers per day: both today (in UTC days).
    let active = example(&db, "active_developers_per_day", "UTC").await;
    let today = active.iter().find(|r| r["day"] == recent.format("%Y-%m-%d").to_string()).unwrap();
    assert_eq!(num(&today["active_developers"]) as u64, 2, "{active:?}");

    // Nothing priced but tokens used: NULL, never $0.
    log.publish(&request(
        recent,
        RequestCompleted {
            cost_usd: None,
            unpriced: true,
            usage,
            session_id: Some("s-unpriced".into()),
            ..completed(bob, bob_key)
        },
    ))
    .await;
    assert_eq!(wait_requests(&db, n + 1, Duration::from_secs(30)).await, n + 1);
    wait_rollups(&db, n + 1).await;
    let sessions = example(&db, "cost_per_session", "UTC").await;
    let unpriced = sessions.iter().find(|r| r["session_id"] == "s-unpriced").unwrap();
    assert!(unpriced["cost_usd"].is_null(), "{unpriced}");

    drop(service);
    delete_namespace(&log.js, &log.ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}

/// Migration 0008 on a database that already holds requests: the team rollups are filled from
/// them (running the migration again, as after an interruption before it was recorded, redoes it
/// and counts nothing twice), then fed by every insert; their sums per team equal the raw rows'.
#[tokio::test]
async fn team_rollups_are_filled_from_requests_then_by_inserts_and_a_rerun_counts_nothing_twice() {
    use ccp_schemas::migrations::{Migration, MIGRATIONS};
    let settings = test_settings("teamrollups");
    let db = settings.clickhouse.database.clone();
    let ch = clickhouse();
    ch.query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute().await.unwrap();
    ccp_runtime::migrate::create_ledger(&ch, &db).await.unwrap();
    let (before, team_rollups): (Vec<&Migration>, Vec<&Migration>) = MIGRATIONS.iter().partition(|m| m.version < 8);
    assert_eq!(team_rollups.iter().map(|m| m.name).collect::<Vec<_>>(), ["team_rollups"]);
    for m in before {
        for stmt in m.statements(&db) {
            ch.query(&stmt).execute().await.unwrap_or_else(|e| panic!("{}: {e}", m.name));
        }
        ccp_runtime::migrate::record_applied(&ch, &db, m).await.unwrap();
    }
    let (red, blue) = (TeamId::new().to_string(), TeamId::new().to_string());
    let insert = |rows: Vec<(&str, &str, i64, u64)>| {
        let values: Vec<String> = rows
            .iter()
            .map(|(team, user, at, cost)| {
                format!(
                    "('{}', toDateTime({at}, 'UTC'), '{user}', 'key_x', '{team}', 'bedrock', 'claude-sonnet-4-5', {cost}, 7)",
                    ccp_schemas::ids::RequestId::new()
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO {db}.requests (request_id, occurred_at, user_id, key_id, team_id, provider, requested_model, \
             cost_nanos, input_tokens) VALUES {}",
            values.join(", ")
        );
        let ch = ch.clone();
        async move { ch.query(&sql).execute().await.unwrap() }
    };
    let t0 = Utc::now().timestamp() - 10 * 86_400;
    // A user who moved from red to blue within one hour keeps each part where it was incurred.
    insert(vec![(&red, "usr_a", t0, 100), (&blue, "usr_a", t0 + 60, 20), ("", "usr_b", t0 + 120, 3)]).await;
    let applied = ccp_runtime::migrate::migrate(&settings.clickhouse).await.unwrap();
    assert_eq!(applied, [8]);
    let sums = |table: &str| {
        let sql = format!(
            "SELECT team_id, toUInt64(sum(cost_nanos)) AS cost, toUInt64(sum(input_tokens)) AS input \
             FROM {{db}}.{table} GROUP BY team_id ORDER BY team_id"
        );
        let db = db.clone();
        async move { rows(&db, &sql).await }
    };
    let raw = sums("requests").await;
    assert_eq!(raw.len(), 3, "{raw:?}");
    for table in ["usage_team_hour", "usage_team_day"] {
        assert_eq!(sums(table).await, raw, "{table} after the backfill");
    }
    // The whole migration again (an interrupted run redone): nothing is counted twice.
    for stmt in team_rollups[0].statements(&db) {
        ch.query(&stmt).execute().await.unwrap();
    }
    for table in ["usage_team_hour", "usage_team_day"] {
        assert_eq!(sums(table).await, raw, "{table} after the migration ran again");
    }
    // Later inserts reach the rollups through their views.
    insert(vec![(&blue, "usr_a", t0 + 3_600, 5_000), (&red, "usr_c", t0 + 86_400, 7)]).await;
    let raw = sums("requests").await;
    assert_eq!(num(&raw[1]["cost"]) as u64 + num(&raw[2]["cost"]) as u64, 100 + 20 + 5_000 + 7);
    for table in ["usage_team_hour", "usage_team_day"] {
        assert_eq!(sums(table).await, raw, "{table} fed by inserts");
    }
    ch.query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
}
