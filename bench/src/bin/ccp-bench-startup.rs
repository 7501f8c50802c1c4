//! `ccp-bench-startup`: how long a proxy replica takes from its start to `/ready`, and its
//! memory then, with N usage events of this month in the request stream. A benchmark, not a
//! test (issue 20: ready in ≤ 2 s and ≤ 40 MB RSS whatever the month's volume).
//!
//! It fills a namespace of its own on the local NATS with `--events` usage events of this month
//! (`--users` users, each with one key, spread over `--replicas` replica ids as actors),
//! published pipelined in windows of 2,000; and, as those replicas would have, their running
//! totals in the shared spend tally (one key per user and replica). Then each `--proxy` binary
//! (default: the release build) is started `--runs` times in turn on it, and measured: start →
//! `/ready` answering 200, RSS and peak RSS once ready and one second later, and the keys in the
//! spend bucket. The namespace is deleted at the end (`--keep` keeps it and prints its prefix;
//! `--reuse PREFIX` measures a kept one without filling).
//!
//! `--admin-events N` first writes N admin events (each user created with a key, then routing
//! changes, deactivations and reactivations in turn), which every proxy and admin API folds at
//! start; `--admin-api PATH` (repeatable) measures that binary's start to `/ready` as well, and
//! `--projector PATH` (repeatable) the projector's start until its state projection has written
//! every user and key (its log says "state projection caught up"). With `--events 0` the
//! projector has no usage to insert; its ClickHouse database is dropped at the end.

#![allow(clippy::print_stdout)] // a command-line report

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccp_bench::{procfs, proxy_process};
use ccp_schemas::events::{Event, RequestCompleted, TokenUsage};
use ccp_schemas::ids::{AccessKeyId, RequestId, UserId};
use ccp_schemas::subjects::Aggregate;
use ccp_schemas::{Actor, Envelope};
use ccp_tests::events::{completed, Log};

/// The command line.
struct Options {
    events: u64,
    users: usize,
    replicas: usize,
    runs: usize,
    proxies: Vec<PathBuf>,
    keep: bool,
    reuse: Option<String>,
    admin_events: u64,
    admin_apis: Vec<PathBuf>,
    projectors: Vec<PathBuf>,
}

fn options() -> Result<Options, String> {
    let target = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let mut o = Options {
        events: 100_000,
        users: 1000,
        replicas: 20,
        runs: 3,
        proxies: Vec::new(),
        keep: false,
        reuse: None,
        admin_events: 0,
        admin_apis: Vec::new(),
        projectors: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} takes a value"));
        let number = |name: &str, v: String| v.parse::<u64>().ok().filter(|n| *n > 0).ok_or(format!("{name}: {v:?}"));
        match a.as_str() {
            "--events" => o.events = value("--events")?.parse().map_err(|_| "--events takes a number".to_owned())?,
            "--users" => o.users = number("--users", value("--users")?)? as usize,
            "--replicas" => o.replicas = number("--replicas", value("--replicas")?)? as usize,
            "--runs" => o.runs = number("--runs", value("--runs")?)? as usize,
            "--proxy" => o.proxies.push(PathBuf::from(value("--proxy")?)),
            "--keep" => o.keep = true,
            "--reuse" => o.reuse = Some(value("--reuse")?),
            "--admin-events" => {
                o.admin_events =
                    value("--admin-events")?.parse().map_err(|_| "--admin-events takes a number".to_owned())?;
            }
            "--admin-api" => o.admin_apis.push(PathBuf::from(value("--admin-api")?)),
            "--projector" => o.projectors.push(PathBuf::from(value("--projector")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.proxies.is_empty() {
        o.proxies.push(target.join("release/ccp-proxy"));
    }
    Ok(o)
}

/// One usage event of `user`'s key, written by replica `replica`, costing 1–100 µ$.
fn event(user: UserId, key: AccessKeyId, replica: &str, i: u64) -> (u64, Envelope) {
    let nanos = 1_000 + (i % 100) * 1_000;
    let e = RequestCompleted {
        request_id: RequestId::new(),
        response_model: Some("claude-sonnet-4-5-20250929".into()),
        usage: TokenUsage {
            input_tokens: i % 5000,
            output_tokens: i % 700,
            cache_read_input_tokens: 20_000,
            cache_creation_input_tokens: 0,
        },
        cost_usd: Some(rust_decimal::Decimal::new(nanos as i64, 9)),
        latency_ms: 1200,
        ttfb_ms: Some(300),
        session_id: Some("bench-session".into()),
        client_version: Some("claude-cli/2.1.332".into()),
        ..completed(user, key)
    };
    (nanos, Envelope::new(Event::RequestCompleted(e), Actor::Proxy { replica: replica.to_owned() }))
}

/// Writes `n` admin events: every user created with one key first, then routing changes,
/// deactivations and reactivations over the users in turn. How long it took.
async fn fill_admin(log: &Log, users: usize, n: u64) -> anyhow::Result<Duration> {
    use ccp_schemas::events::{
        AccessKeyIssued, BedrockSettings, RoutingStrategy, RoutingStrategySet, UserCreated, UserDeactivated,
        UserReactivated, UserStatus,
    };
    let ids: Vec<(UserId, AccessKeyId)> = (0..users.max(1)).map(|_| (UserId::new(), AccessKeyId::new())).collect();
    let actor = Actor::System { component: "bench".into() };
    let started = Instant::now();
    let mut acks = Vec::with_capacity(2000);
    for i in 0..n {
        let at = i as usize;
        let event = if at < 2 * ids.len() {
            let (user_id, key_id) = ids[at / 2];
            if at.is_multiple_of(2) {
                Event::UserCreated(UserCreated {
                    user_id,
                    name: format!("bench-user-{}", at / 2),
                    description: None,
                    email: Some(format!("user{}@example.com", at / 2)),
                    status: UserStatus::Active,
                })
            } else {
                let key = ccp_schemas::secrets::access_key::AccessKey::generate()?;
                Event::AccessKeyIssued(AccessKeyIssued {
                    key_id,
                    user_id,
                    name: None,
                    key_hash: key.hash(&log.pepper),
                    key_prefix: key.display_prefix(),
                    bedrock: BedrockSettings::default(),
                })
            }
        } else {
            let later = at - 2 * ids.len();
            let user_id = ids[later % ids.len()].0;
            match (later / ids.len()) % 3 {
                0 => Event::RoutingStrategySet(RoutingStrategySet { user_id, strategy: RoutingStrategy::PlanFirst }),
                1 => Event::UserDeactivated(UserDeactivated { user_id, reason: Some("bench".into()) }),
                _ => Event::UserReactivated(UserReactivated { user_id }),
            }
        };
        let envelope = Envelope::new(event, actor.clone());
        acks.push(log.js.publish(envelope.subject(&log.ns), envelope.encode()?.into()).await?);
        if acks.len() == 2000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    Ok(started.elapsed())
}

/// Starts `bin` with `env` and waits until `http://{listen}/ready` answers 200: the process and
/// the time that took (from the spawn).
async fn start_until_ready(
    bin: &std::path::Path,
    env: &[(String, String)],
    listen: &str,
) -> anyhow::Result<(ccp_tests::Service, Duration)> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let started = Instant::now();
    let mut service = proxy_process::spawn(bin, &[], env, false).with_context(|| format!("start {}", bin.display()))?;
    loop {
        if let Ok(r) = http.get(format!("http://{listen}/ready")).send().await {
            if r.status() == 200 {
                return Ok((service, started.elapsed()));
            }
        }
        if started.elapsed() > Duration::from_secs(900) {
            let tail = proxy_process::tail(&service.log_text(), 20);
            let _ = service.terminate(Duration::from_secs(5));
            anyhow::bail!("not ready in 900 s:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// After a start that replayed the admin stream, waits (up to 15 s) until the service has saved
/// its snapshot, so the next start measures loading it.
async fn await_snapshot(service: &ccp_tests::Service) {
    await_snapshots(service, &[""]).await;
}

/// [`await_snapshot`] for a service with several snapshots, named by the `what` of their log
/// lines ("state projection snapshot saved"): waits until each is loaded, saved or failed.
async fn await_snapshots(service: &ccp_tests::Service, whats: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let log = service.log_text();
        let done = |what: &str| {
            [format!("{what}snapshot loaded"), format!("{what}snapshot saved"), format!("cannot save the {what}")]
                .iter()
                .any(|line| log.contains(line.as_str()))
        };
        if whats.iter().all(|what| done(what)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the lines of `service`'s log that contain one of `needles`.
fn print_log_lines(service: &ccp_tests::Service, needles: &[&str]) {
    for line in service.log_text().lines().filter(|l| needles.iter().any(|n| l.contains(n))) {
        println!("    log: {}", line.chars().take(300).collect::<String>());
    }
}

/// One start of the admin API `bin`: (seconds to ready, RSS MiB once ready, peak MiB).
async fn measure_admin(bin: &std::path::Path, settings: &ccp_runtime::config::Settings) -> anyhow::Result<[f64; 3]> {
    let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
    let mut env = ccp_tests::service_env(settings);
    env.extend([
        ("CCP__ADMIN__LISTEN".into(), listen.clone()),
        ("CCP__ADMIN__INITIAL_ADMIN_USERNAME".into(), "bench-admin".into()),
        ("CCP__ADMIN__INITIAL_ADMIN_PASSWORD".into(), "bench admin password, long enough".into()),
        ("CCP__ADMIN__PUBLIC_PROXY_URL".into(), "https://proxy.example.test".into()),
        ("CCP__SECRETS__MASTER_KEY".into(), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into()),
        ("CCP__SECRETS__MASTER_KEY_ID".into(), "bench".into()),
        ("RUST_LOG".into(), "info".into()),
    ]);
    let (mut service, ready) = start_until_ready(bin, &env, &listen).await?;
    let pid = service.child.id();
    let (rss, peak) = procfs::rss_kib(pid)?;
    await_snapshot(&service).await;
    print_log_lines(&service, &["admin state loaded", "admin view snapshot", "admin API listening"]);
    let _ = service.terminate(Duration::from_secs(10));
    let _ = std::fs::remove_file(&service.log);
    Ok([ready.as_secs_f64(), rss as f64 / 1024.0, peak as f64 / 1024.0])
}

/// One start of the projector `bin`: (seconds until its state projection has caught up and
/// written every user and key, RSS MiB then, peak MiB).
async fn measure_projector(
    bin: &std::path::Path,
    settings: &ccp_runtime::config::Settings,
) -> anyhow::Result<[f64; 3]> {
    let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
    let mut env = ccp_tests::service_env(settings);
    env.extend([("CCP__PROJECTOR__LISTEN".into(), listen), ("RUST_LOG".into(), "info".into())]);
    let started = Instant::now();
    let mut service =
        proxy_process::spawn(bin, &[], &env, false).with_context(|| format!("start {}", bin.display()))?;
    while !service.log_text().contains("state projection caught up") {
        if started.elapsed() > Duration::from_secs(900) || !matches!(service.child.try_wait(), Ok(None)) {
            let tail = proxy_process::tail(&service.log_text(), 20);
            let _ = service.terminate(Duration::from_secs(5));
            anyhow::bail!("the state projection did not catch up:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let caught_up = started.elapsed();
    let (rss, peak) = procfs::rss_kib(service.child.id())?;
    await_snapshots(&service, &["state projection ", "alert rules "]).await;
    print_log_lines(&service, &["state projection", "alert rules"]);
    let _ = service.terminate(Duration::from_secs(10));
    let _ = std::fs::remove_file(&service.log);
    Ok([caught_up.as_secs_f64(), rss as f64 / 1024.0, peak as f64 / 1024.0])
}

/// Publishes the events and stores the replicas' totals; how long publishing took.
async fn fill(log: &Log, o: &Options, month: ccp_schemas::calendar::Month) -> anyhow::Result<Duration> {
    let users: Vec<(UserId, AccessKeyId)> = (0..o.users).map(|_| (UserId::new(), AccessKeyId::new())).collect();
    let subjects: Vec<String> = users.iter().map(|(_, k)| log.ns.subject(&Aggregate::Request(Some(*k)))).collect();
    let replicas: Vec<String> = (0..o.replicas).map(|r| format!("bench-{r}-{:06x}", r * 7919)).collect();
    let mut totals = vec![0u64; o.users * o.replicas];
    let started = Instant::now();
    let mut acks = Vec::with_capacity(2000);
    for i in 0..o.events {
        let (u, r) = ((i as usize) % o.users, (i as usize / o.users) % o.replicas);
        let (nanos, e) = event(users[u].0, users[u].1, &replicas[r], i);
        totals[u * o.replicas + r] += nanos;
        acks.push(log.js.publish(subjects[u].clone(), e.encode()?.into()).await?);
        if acks.len() == 2000 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
        if i > 0 && i % 1_000_000 == 0 {
            println!("  {i} events published ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    for a in acks {
        a.await?;
    }
    let published = started.elapsed();
    // What those replicas stored in the shared tally, as the proxy names the keys.
    let kv = ccp_runtime::streams::own_bucket(
        &log.js,
        format!("{}_spend", log.ns.prefix()),
        Duration::from_secs(62 * 86_400),
        "ClaudeCodeProxy month-to-date spend per user and replica (nanodollars)",
        1,
    )
    .await?;
    let mut puts = Vec::with_capacity(2000);
    for (u, (user, _)) in users.iter().enumerate() {
        for (r, replica) in replicas.iter().enumerate() {
            let total = totals[u * o.replicas + r];
            if total > 0 {
                let subject = format!("$KV.{}_spend.{user}.{month}.{replica}", log.ns.prefix());
                puts.push(log.js.publish(subject, total.to_string().into()).await?);
                if puts.len() == 2000 {
                    for p in puts.drain(..) {
                        p.await?;
                    }
                }
            }
        }
    }
    for p in puts {
        p.await?;
    }
    drop(kv);
    Ok(published)
}

/// One start of `bin`: (seconds to ready, RSS MiB once ready, RSS MiB a second later, peak MiB).
async fn measure(bin: &std::path::Path, settings: &ccp_runtime::config::Settings) -> anyhow::Result<[f64; 4]> {
    let listen = format!("127.0.0.1:{}", ccp_tests::free_port());
    let spool = std::env::temp_dir().join(format!("ccp-bench-startup-spool-{}", ulid::Ulid::new()));
    let mut env = ccp_tests::service_env(settings);
    env.extend([
        ("CCP__PROXY__ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into()),
        ("CCP__PROXY__LISTEN".into(), listen.clone()),
        ("CCP__PROXY__SPOOL_DIR".into(), spool.display().to_string()),
        ("CCP__PROXY__WORKERS".into(), "2".into()),
        ("RUST_LOG".into(), "info".into()),
    ]);
    let (mut service, ready) = start_until_ready(bin, &env, &listen).await?;
    let pid = service.child.id();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (rss_ready, _) = procfs::rss_kib(pid)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_later, peak) = procfs::rss_kib(pid)?;
    await_snapshot(&service).await;
    print_log_lines(&service, &["spend tally", "month to date", "key table snapshot", "access keys loaded"]);
    let _ = service.terminate(Duration::from_secs(10));
    let _ = std::fs::remove_file(&service.log);
    let _ = std::fs::remove_dir_all(&spool);
    Ok([ready.as_secs_f64(), mib(rss_ready), mib(rss_later), mib(peak)])
}

/// How many keys the spend bucket holds.
async fn bucket_keys(log: &Log) -> u64 {
    match log.js.get_key_value(format!("{}_spend", log.ns.prefix())).await {
        Ok(kv) => kv.status().await.map_or(0, |s| s.values()),
        Err(_) => 0,
    }
}

async fn run(o: Options) -> anyhow::Result<()> {
    proxy_process::check_nats().await?;
    let mut settings = ccp_tests::test_settings("benchstartup");
    settings.nats.prefix = match &o.reuse {
        Some(prefix) => prefix.clone(),
        None => {
            let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
            format!("bst_{}", &ulid[ulid.len() - 12..])
        }
    };
    let log = Log::new(&settings).await;
    if o.reuse.is_none() && o.admin_events > 0 {
        println!("filling {}: {} admin events, {} users...", settings.nats.prefix, o.admin_events, o.users);
        let took = fill_admin(&log, o.users, o.admin_events).await?;
        println!("  published in {:.1} s", took.as_secs_f64());
    }
    if o.reuse.is_none() {
        println!(
            "filling {}: {} usage events of this month, {} users, {} replicas...",
            settings.nats.prefix, o.events, o.users, o.replicas
        );
        let tz = settings.budgets.tz()?;
        let took = fill(&log, &o, ccp_schemas::calendar::Month::of(chrono::Utc::now(), tz)).await?;
        println!("  published in {:.1} s ({:.0} events/s)", took.as_secs_f64(), o.events as f64 / took.as_secs_f64());
    }
    let stream = log.js.get_stream(log.ns.stream(ccp_schemas::subjects::StreamKind::Requests)).await;
    let (messages, bytes) = match stream {
        Ok(mut s) => s.info().await.map_or((0, 0), |i| (i.state.messages, i.state.bytes)),
        Err(_) => (0, 0),
    };
    println!("request stream: {messages} events, {:.0} MiB", bytes as f64 / 1024.0 / 1024.0);
    let mut result = Ok(());
    'all: for bin in &o.proxies {
        for run in 1..=o.runs {
            let keys = bucket_keys(&log).await;
            match measure(bin, &settings).await {
                Ok([ready, rss, later, peak]) => println!(
                    "{} run {run}/{}: ready in {ready:.2} s; RSS {rss:.1} MiB when ready, {later:.1} MiB 1 s later, \
                     peak {peak:.1} MiB (spend bucket: {keys} keys at start)",
                    bin.display(),
                    o.runs
                ),
                Err(e) => {
                    result = Err(e);
                    break 'all;
                }
            }
        }
    }
    let admin_stream = match log.js.get_stream(log.ns.stream(ccp_schemas::subjects::StreamKind::Admin)).await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    };
    'admin: for bin in o.admin_apis.iter().filter(|_| result.is_ok()) {
        for run in 1..=o.runs {
            match measure_admin(bin, &settings).await {
                Ok([ready, rss, peak]) => println!(
                    "{} run {run}/{}: ready in {ready:.2} s; RSS {rss:.1} MiB when ready, peak {peak:.1} MiB \
                     (admin stream: {admin_stream} events)",
                    bin.display(),
                    o.runs
                ),
                Err(e) => {
                    result = Err(e);
                    break 'admin;
                }
            }
        }
    }
    'projector: for bin in o.projectors.iter().filter(|_| result.is_ok()) {
        for run in 1..=o.runs {
            match measure_projector(bin, &settings).await {
                Ok([caught_up, rss, peak]) => println!(
                    "{} run {run}/{}: state projection caught up in {caught_up:.2} s; RSS {rss:.1} MiB then, peak \
                     {peak:.1} MiB (admin stream: {admin_stream} events)",
                    bin.display(),
                    o.runs
                ),
                Err(e) => {
                    result = Err(e);
                    break 'projector;
                }
            }
        }
    }
    if !o.projectors.is_empty() && !o.keep {
        let db = &settings.clickhouse.database;
        ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await?;
    }
    if o.keep {
        println!("kept: --reuse {}", settings.nats.prefix);
    } else {
        ccp_tests::delete_namespace(&log.js, &log.ns).await;
    }
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ccp-bench-startup: {e}");
            eprintln!(
                "usage: ccp-bench-startup [--events N] [--users N] [--replicas N] [--runs N] [--proxy PATH]... \
                 [--admin-events N] [--admin-api PATH]... [--projector PATH]... [--keep | --reuse PREFIX]"
            );
            return ExitCode::from(2);
        }
    };
    match run(o).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccp-bench-startup: {e:#}");
            ExitCode::FAILURE
        }
    }
}
