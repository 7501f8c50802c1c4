//! `ccp-projector rebuild`: rebuilds the ClickHouse analytics from sequence 1 into a fresh
//! database, with progress output, then swaps the tables in and re-creates the rollup views.
//! Run it with the projector stopped (the projector re-binds at the new tables' progress when it
//! starts again).

use std::io::Write as _;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ccp_runtime::config::Settings;
use ccp_runtime::migrate;
use ccp_schemas::migrations::MIGRATIONS;
use ccp_schemas::Namespace;

use crate::analytics::{Audit, Circuits, Keys, Projection, Requests, TableSpec, Teams, Users};

/// Tables moved in the swap (everything the migrations create but their own bookkeeping).
const DATA_TABLES: &[&str] = &[
    "requests",
    "audit_log",
    "circuit_transitions",
    "projection_offsets",
    "usage_minute",
    "usage_hour",
    "usage_day",
    "usage_team_hour",
    "usage_team_day",
    "users",
    "teams",
    "keys",
    "requests_by_user",
    "key_last_used",
];

/// The materialized views over `requests` (re-created after the swap).
const VIEWS: &[&str] = &[
    "usage_minute_mv",
    "usage_hour_mv",
    "usage_day_mv",
    "usage_team_hour_mv",
    "usage_team_day_mv",
    "requests_by_user_mv",
    "key_last_used_mv",
];

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn replay<T: TableSpec>(
    js: &jetstream::Context,
    ns: &Namespace,
    clickhouse: &clickhouse::Client,
    batch: usize,
) -> anyhow::Result<u64> {
    let total = js.get_stream(ns.stream(T::STREAM)).await?.info().await?.state.last_sequence;
    let mut projection =
        Projection::<T>::open_as(js, ns, clickhouse.clone(), batch, Duration::from_millis(500), "rebuild").await?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut done = 0u64;
    loop {
        let outcome = projection.process_next_batch().await?;
        done += outcome.received as u64;
        let finished = outcome.received == 0 && done >= total;
        if finished || last_report.elapsed() >= Duration::from_secs(1) {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let eta = total.saturating_sub(done) as f64 / rate.max(1.0);
            say(&format!("rebuild {}: {done}/{total} events, {rate:.0} events/s, ETA {eta:.0} s", T::TABLE));
            last_report = Instant::now();
        }
        if finished || (outcome.received == 0 && total == 0) {
            break;
        }
    }
    projection.remove_consumer(js, ns).await?;
    Ok(done)
}

/// Rebuilds every analytics table and swaps the result in.
pub async fn rebuild(settings: &Settings, js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<()> {
    let db = settings.clickhouse.database.clone();
    let fresh = format!("{db}__rebuild");
    let old = format!("{db}__old");
    let server = migrate::server_client(&settings.clickhouse)?;
    for d in [&fresh, &old] {
        server.query(&format!("DROP DATABASE IF EXISTS {d}")).execute().await?;
    }
    let mut target = settings.clickhouse.clone();
    target.database = fresh.clone();
    migrate::migrate(&target).await?;
    say(&format!("rebuild: fresh tables in {fresh}"));
    let client = server.clone().with_database(&fresh);
    let batch = settings.projector.batch_size;
    let requests = replay::<Requests>(js, ns, &client, batch).await?;
    let audit = replay::<Audit>(js, ns, &client, batch).await?;
    let circuits = replay::<Circuits>(js, ns, &client, batch).await?;
    replay::<Users>(js, ns, &client, batch).await?;
    replay::<Teams>(js, ns, &client, batch).await?;
    replay::<Keys>(js, ns, &client, batch).await?;

    // Swap: views first (they name their source and target), then every data table at once.
    // A later migration may replace a view: the last definition of each one is the current one.
    let mut views: Vec<(String, String)> = Vec::new();
    for stmt in MIGRATIONS.iter().flat_map(|m| m.statements(&db)) {
        if !stmt.trim_start().to_ascii_uppercase().starts_with("CREATE MATERIALIZED VIEW") {
            continue;
        }
        let name = VIEWS.iter().copied().find(|n| stmt.contains(&format!(".{n} "))).unwrap_or_default().to_owned();
        views.retain(|(n, _)| *n != name);
        views.push((name, stmt));
    }
    let views: Vec<String> = views.into_iter().map(|(_, stmt)| stmt).collect();
    for d in [&db, &fresh] {
        for name in VIEWS {
            server.query(&format!("DROP TABLE IF EXISTS {d}.{name}")).execute().await?;
        }
    }
    server.query(&format!("CREATE DATABASE IF NOT EXISTS {old}")).execute().await?;
    let renames: Vec<String> = DATA_TABLES
        .iter()
        .flat_map(|t| [format!("{db}.{t} TO {old}.{t}"), format!("{fresh}.{t} TO {db}.{t}")])
        .collect();
    server.query(&format!("RENAME TABLE {}", renames.join(", "))).execute().await?;
    for view in &views {
        server.query(view).execute().await?;
    }
    for d in [&fresh, &old] {
        server.query(&format!("DROP DATABASE IF EXISTS {d}")).execute().await?;
    }
    say(&format!(
        "rebuild: done — {requests} request, {audit} admin and {circuits} circuit events; tables swapped into {db}"
    ));
    Ok(())
}
