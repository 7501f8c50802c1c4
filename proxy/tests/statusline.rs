//! `GET /ccp/statusline` against the real NATS, a fake Anthropic and a fake Bedrock: the line
//! shows the Plan utilisation Anthropic reported in its `anthropic-ratelimit-unified-*` headers,
//! switches to "On Bedrock since … (…)" after a 429 failover (and on every replica while the
//! key's circuit is open), shows the month's spend against the budget, answers 304 to a
//! matching `If-None-Match`, never exceeds 80 columns, and refuses a bad key with one short line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

mod common;

use ccp_schemas::events::{BudgetSet, Event, FallbackReason, Provider, RequestCompleted};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::secrets::access_key::AccessKey;
use ccp_tests::fake_anthropic::{Scenario, ScenarioName, Usage};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use common::{env, start, wait_applied_at, Env, BEDROCK_KEY};

const BODY: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
const AMBER: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BLUE: &str = "\x1b[34m";

/// One answer of the status-line endpoint.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as the one line it must be: ends with a newline, no other line, at most 80
    /// columns once colours are taken out, nothing of an HTML or JSON error page.
    #[track_caller]
    fn line(&self) -> String {
        let line = self.body.strip_suffix('\n').unwrap_or_else(|| panic!("no final newline: {:?}", self.body));
        assert!(!line.contains('\n') && !line.contains('\r'), "more than one line: {:?}", self.body);
        let plain = strip_ansi(line);
        assert!(plain.chars().count() <= 80, "{} columns: {plain:?}", plain.chars().count());
        assert!(plain.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{plain:?}");
        assert!(!plain.starts_with('<') && !plain.starts_with('{'), "{plain:?}");
        assert_eq!(self.header("content-type"), Some("text/plain; charset=utf-8"));
        line.to_owned()
    }

    #[track_caller]
    fn json(&self) -> serde_json::Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn strip_ansi(s: &str) -> String {
    [AMBER, RED, BLUE, "\x1b[0m"].iter().fold(s.to_owned(), |acc, code| acc.replace(code, ""))
}

/// `GET /ccp/statusline{query}` with the key in `x-ccp-access-key` and `extra` headers.
async fn ask(url: &str, key: Option<&str>, query: &str, extra: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().get(format!("{url}/ccp/statusline{query}"));
    if let Some(key) = key {
        req = req.header("x-ccp-access-key", key);
    }
    for (n, v) in extra {
        req = req.header(*n, *v);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    Answer { status, headers, body: resp.text().await.unwrap() }
}

/// Asks until the line satisfies `ok` (events reach the watch asynchronously); the last line.
async fn until(url: &str, key: &str, query: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask(url, Some(key), query, &[]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let line = answer.line();
        if ok(&line) {
            return line;
        }
        assert!(Instant::now() < deadline, "the line never showed {what}: {line:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `HH:MM` today, else `Ddd HH:MM` (within a week), in `tz`: how the line writes a time.
fn local(at: DateTime<Utc>, tz: Tz) -> String {
    let (t, today) = (at.with_timezone(&tz), Utc::now().with_timezone(&tz));
    let hm = format!("{:02}:{:02}", t.hour(), t.minute());
    if t.date_naive() == today.date_naive() {
        hm
    } else {
        format!("{} {hm}", t.weekday())
    }
}

/// The `anthropic-ratelimit-unified-*` headers of a subscription at these shares.
fn plan(five_hour: &str, five_reset: i64, seven_day: &str, seven_reset: i64) -> Scenario {
    Scenario::new(ScenarioName::Auto)
        .with_header("anthropic-ratelimit-unified-status", "allowed")
        .with_header("anthropic-ratelimit-unified-reset", five_reset.to_string())
        .with_header("anthropic-ratelimit-unified-representative-claim", "five_hour")
        .with_header("anthropic-ratelimit-unified-5h-status", "allowed")
        .with_header("anthropic-ratelimit-unified-5h-reset", five_reset.to_string())
        .with_header("anthropic-ratelimit-unified-5h-utilization", five_hour)
        .with_header("anthropic-ratelimit-unified-7d-status", "allowed")
        .with_header("anthropic-ratelimit-unified-7d-reset", seven_reset.to_string())
        .with_header("anthropic-ratelimit-unified-7d-utilization", seven_day)
}

impl Env {
    /// A developer (with a Bedrock API key if asked), known to the proxy.
    async fn dev(&self, name: &str, bedrock: bool) -> (UserId, AccessKeyId, String) {
        let (user_id, key_id, key, mut last) = self.log.user_with_key_at(name).await;
        if bedrock {
            last = self.log.register_bedrock_key(user_id, key_id, &self.master, BEDROCK_KEY).await;
        }
        wait_applied_at(&self.url, last).await;
        (user_id, key_id, key.expose().to_owned())
    }

    /// One Messages request through the proxy at `url`, answered by `scenario`: its status and
    /// usage event.
    async fn call_at(&self, url: &str, key: &str, scenario: Scenario) -> (u16, RequestCompleted) {
        self.anthropic.enqueue(scenario);
        let resp = reqwest::Client::new()
            .post(format!("{url}/v1/messages?beta=true"))
            .header("x-ccp-access-key", key)
            .header("content-type", "application/json")
            .header("x-api-key", "sk-ant-test")
            .body(BODY)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let id = resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned();
        let _ = resp.bytes().await.unwrap();
        (status, self.log.wait_request(&id, Duration::from_secs(10)).await)
    }

    async fn call(&self, key: &str, scenario: Scenario) -> (u16, RequestCompleted) {
        self.call_at(&self.url, key, scenario).await
    }
}

#[actix_web::test]
async fn the_line_shows_the_plan_utilisation_anthropic_reported() {
    let e = env("sl_plan", |_| {}).await;
    let (_, _, key) = e.dev("dana", false).await;
    let berlin = chrono_tz::Europe::Berlin;

    let first = ask(&e.url, Some(&key), "", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.line(), "Plan limits: none seen yet");

    let now = Utc::now().timestamp();
    let (five_reset, seven_reset) = ((now / 3600 + 3) * 3600, (now / 3600 + 4 * 24) * 3600);
    let (status, ev) = e.call(&key, plan("0.42", five_reset, "0.31", seven_reset)).await;
    assert_eq!((status, ev.provider), (200, Provider::Anthropic));

    let answer = ask(&e.url, Some(&key), "?tz=Europe/Berlin", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap();
    let expected = format!(
        "Plan 5h 42% (resets {}) | 7d 31% (resets {})",
        local(at(five_reset), berlin),
        local(at(seven_reset), berlin)
    );
    assert_eq!(answer.line(), expected);
    assert_eq!(answer.header("cache-control"), Some("private, max-age=5"));
    let etag = answer.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    // The same times in another zone.
    let tokyo = ask(&e.url, Some(&key), "?tz=Asia%2FTokyo", &[]).await.line();
    assert!(
        tokyo.starts_with(&format!("Plan 5h 42% (resets {})", local(at(five_reset), chrono_tz::Asia::Tokyo))),
        "{tokyo}"
    );

    // Unchanged: 304 without a body.
    let again = ask(&e.url, Some(&key), "?tz=Europe/Berlin", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert!(again.body.is_empty(), "{:?}", again.body);

    // The JSON form, by query or by Accept: the same facts, its own ETag.
    let json = ask(&e.url, Some(&key), "?tz=Europe/Berlin&format=json", &[]).await;
    assert_eq!(json.status, 200);
    let j = json.json();
    assert_eq!(j["line"], expected.as_str());
    assert_eq!(j["state"], "ok");
    assert_eq!(j["plan"]["five_hour"]["percent"], 42);
    assert_eq!(j["plan"]["five_hour"]["utilization"], 0.42);
    assert_eq!(j["plan"]["five_hour"]["resets_at"], at(five_reset).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    assert_eq!(j["plan"]["seven_day"]["percent"], 31);
    assert_eq!(j["on_bedrock"], false);
    assert!(j["budget"].is_null(), "no budget: {j}");
    assert_ne!(json.header("etag"), Some(etag.as_str()));
    let by_accept = ask(&e.url, Some(&key), "?tz=Europe/Berlin", &[("accept", "application/json")]).await;
    assert_eq!(by_accept.json(), j);

    // Above 80 %: amber when colour is asked for, plain otherwise; the old ETag no longer matches.
    let (_, ev) = e.call(&key, plan("0.91", five_reset, "0.31", seven_reset)).await;
    assert_eq!(ev.provider, Provider::Anthropic);
    let changed = ask(&e.url, Some(&key), "?tz=Europe/Berlin", &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, 200);
    assert!(changed.line().starts_with("Plan 5h 91% "), "{}", changed.body);
    let coloured = ask(&e.url, Some(&key), "?tz=Europe/Berlin&color=1", &[]).await.line();
    assert!(coloured.starts_with(&format!("{AMBER}Plan 5h 91% (resets ")), "{coloured:?}");
    assert_eq!(strip_ansi(&coloured), changed.line());
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

#[actix_web::test]
async fn after_a_429_failover_the_line_says_bedrock_since_when_and_why() {
    let e = env("sl_failover", |_| {}).await;
    let (_, _, key) = e.dev("fox", true).await;
    let now = Utc::now().timestamp();
    let (five_reset, seven_reset) = ((now / 3600 + 2) * 3600, (now / 3600 + 5 * 24) * 3600);
    let (_, ev) = e.call(&key, plan("0.64", five_reset, "0.40", seven_reset)).await;
    assert_eq!(ev.provider, Provider::Anthropic);
    let line = until(&e.url, &key, "", "the Plan", |l| l.starts_with("Plan 5h 64%")).await;
    assert!(!line.contains("Bedrock"), "{line}");

    // The subscription is used up: Anthropic answers 429, Bedrock answers instead.
    let before = Utc::now();
    let (status, ev) = e.call(&key, Scenario::new(ScenarioName::UsageLimit)).await;
    let after = Utc::now();
    assert_eq!((status, ev.provider, ev.fallback_reason), (200, Provider::Bedrock, Some(FallbackReason::UsageLimit)));
    let line = until(&e.url, &key, "", "Bedrock", |l| l.contains("Bedrock")).await;
    let since = [local(before, chrono_tz::UTC), local(after, chrono_tz::UTC)];
    assert!(
        since.iter().any(|s| line.starts_with(&format!("On Bedrock since {s} (Plan limit) | Plan 5h 100% "))),
        "{line:?} (since one of {since:?})"
    );
    let coloured = ask(&e.url, Some(&key), "?color=1", &[]).await.line();
    assert!(coloured.starts_with(&format!("{BLUE}On Bedrock since ")), "{coloured:?}");
    assert!(coloured.contains(&format!("{RED}Plan 5h 100%")), "exhausted is red: {coloured:?}");
    let j = ask(&e.url, Some(&key), "?format=json", &[]).await.json();
    assert_eq!((j["on_bedrock"].as_bool(), j["state"].as_str()), (Some(true), Some("exhausted")));
    assert_eq!(j["bedrock"]["reason"], "usage_limit");
    assert_eq!(j["bedrock"]["reason_text"], "Plan limit");
    assert!(j["bedrock"]["circuit"].is_null(), "one failure does not open the circuit: {j}");
    assert_eq!(j["plan"]["five_hour"]["exhausted"], true);

    // Anthropic answers the next request (with its API limits only): no longer on Bedrock, and
    // the Plan's figures are still the last ones Anthropic reported.
    let (_, ev) = e.call(&key, Scenario::new(ScenarioName::Auto)).await;
    assert_eq!(ev.provider, Provider::Anthropic);
    assert!(ev.rate_limit.as_ref().is_some_and(|r| r.unified.is_none()), "{:?}", ev.rate_limit);
    let line = until(&e.url, &key, "", "Anthropic again", |l| !l.contains("Bedrock")).await;
    assert!(line.starts_with("Plan 5h 100% (resets "), "{line}");
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

#[actix_web::test]
async fn an_open_circuit_shows_on_a_replica_that_never_served_the_key() {
    let e = env("sl_circuit", |s| s.proxy.circuit_failure_threshold = 1).await;
    let (_, _, key) = e.dev("scully", true).await;
    let mut second = e.settings.clone();
    second.proxy.spool_dir = std::env::temp_dir().join(format!("ccp-spool-b-{}", second.nats.prefix));
    let other = start(second).await;
    // Replica B is asked first (its watch of the key starts), then A fails over.
    let line = ask(&other, Some(&key), "", &[]).await.line();
    assert!(!line.contains("Bedrock"), "{line}");
    let before = Utc::now();
    let (status, ev) = e.call(&key, Scenario::new(ScenarioName::RateLimit).with_retry_after("30")).await;
    assert_eq!((status, ev.fallback_reason), (200, Some(FallbackReason::RateLimited)));
    let line = until(&other, &key, "?format=text", "the open circuit", |l| l.contains("Bedrock")).await;
    let since = [local(before, chrono_tz::UTC), local(Utc::now(), chrono_tz::UTC)];
    assert!(since.iter().any(|s| line.starts_with(&format!("On Bedrock since {s} (rate limited)"))), "{line:?}");
    let j = until_json(&other, &key, |j| j["bedrock"]["circuit"] == "open").await;
    assert_eq!(j["bedrock"]["reason"], "rate_limited");

    // The circuit sends the next request straight to Bedrock: the line keeps its start and reason.
    let (_, ev) = e.call(&key, Scenario::new(ScenarioName::Auto)).await;
    assert_eq!((ev.provider, ev.fallback_reason), (Provider::Bedrock, Some(FallbackReason::CircuitOpen)));
    let again = ask(&e.url, Some(&key), "", &[]).await.line();
    assert_eq!(again, until(&other, &key, "", "the same", |l| l == again).await, "both replicas agree");
    assert!(again.starts_with(&line[..line.find(')').unwrap() + 1]), "{again:?} vs {line:?}");
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

async fn until_json(url: &str, key: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = ask(url, Some(key), "?format=json", &[]).await.json();
        if ok(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "never: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn the_month_spend_shows_against_the_budget() {
    let e = env("sl_budget", |_| {}).await;
    let (user_id, _, key) = e.dev("mulder", false).await;
    let seq =
        e.log.append(Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd: Some(Decimal::new(200, 0)) })).await;
    wait_applied_at(&e.url, seq).await;
    let line = ask(&e.url, Some(&key), "", &[]).await.line();
    assert_eq!(line, "Plan limits: none seen yet | $0.00 of $200 budget");

    let mut spent = Decimal::ZERO;
    for _ in 0..3 {
        let scenario = Scenario::new(ScenarioName::Auto).with_usage(Usage::new(400_000, 100_000, 0, 0));
        let (status, ev) = e.call(&key, scenario).await;
        assert_eq!(status, 200);
        spent += ev.cost_usd.expect("priced");
    }
    assert!(spent > Decimal::ONE, "{spent}");
    let expected = format!("${:.2} of $200 budget", spent.round_dp(2));
    let line = until(&e.url, &key, "", &expected, |l| l.ends_with(&expected)).await;
    assert!(line.starts_with("no Plan limits reported | "), "API limits only: {line}");
    let j = ask(&e.url, Some(&key), "?format=json", &[]).await.json();
    assert_eq!(j["budget"]["spent_usd"], spent.normalize().to_string());
    assert_eq!(j["budget"]["limit_usd"], "200");
    assert_eq!(j["budget"]["remaining_usd"], (Decimal::new(200, 0) - spent).normalize().to_string());
    assert!(j["budget"]["resets_on"].as_str().unwrap().ends_with("-01"), "{j}");

    // The budget used up: red, in words.
    let seq = e.log.append(Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd: Some(Decimal::ONE) })).await;
    wait_applied_at(&e.url, seq).await;
    let coloured = ask(&e.url, Some(&key), "?color=1", &[]).await.line();
    assert!(
        coloured.ends_with(&format!("{RED}budget used up: ${:.2} of $1\x1b[0m", spent.round_dp(2))),
        "{coloured:?}"
    );
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

#[actix_web::test]
async fn a_bad_key_gets_one_short_line() {
    let e = env("sl_refused", |_| {}).await;
    let (user_id, key_id, key) = e.dev("skinner", false).await;
    let refused = |answer: &Answer, words: &str| {
        assert_eq!(answer.status, 401, "{}", answer.body);
        let line = answer.line();
        assert!(line.starts_with("ClaudeCodeProxy: ") && line.contains(words), "{line:?}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert!(answer.header("etag").is_none());
    };
    refused(&ask(&e.url, None, "", &[]).await, "no access key");
    // The key is never read from the URL.
    refused(&ask(&e.url, None, &format!("?key={key}&access_key={key}"), &[]).await, "no access key");
    refused(&ask(&e.url, Some("ak_short"), "", &[]).await, "malformed access key");
    let stranger = AccessKey::generate().unwrap();
    refused(&ask(&e.url, Some(stranger.expose()), "", &[]).await, "unknown access key");
    // The JSON form of a refusal is JSON, with the same line.
    let j = ask(&e.url, Some(stranger.expose()), "?format=json", &[]).await;
    assert_eq!(j.status, 401);
    let j = j.json();
    assert_eq!(j["error"]["type"], "unknown_key");
    assert_eq!(j["line"], j["error"]["message"]);
    // Accepted as a bearer token too; an unknown time zone is one line as well.
    let bearer = format!("Bearer {key}");
    let ok = ask(&e.url, None, "", &[("authorization", bearer.as_str())]).await;
    assert_eq!((ok.status, ok.line().as_str()), (200, "Plan limits: none seen yet"));
    let bad_tz = ask(&e.url, Some(&key), "?tz=Mars%2FOlympus_Mons", &[]).await;
    assert_eq!(bad_tz.status, 400);
    assert!(bad_tz.line().contains("unknown time zone \"Mars/Olympus_Mons\""), "{}", bad_tz.body);

    let seq = e.log.revoke(user_id, key_id).await;
    wait_applied_at(&e.url, seq).await;
    refused(&ask(&e.url, Some(&key), "", &[]).await, "access key revoked");
    let (other_user, _, other_key) = e.dev("krycek", false).await;
    let seq = e.log.deactivate(other_user).await;
    wait_applied_at(&e.url, seq).await;
    refused(&ask(&e.url, Some(&other_key), "?color=1", &[]).await, "user deactivated");
    // Counted by outcome in /metrics.
    let metrics = reqwest::get(format!("{}/metrics", e.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ccp_proxy_statusline_requests_total{outcome=\"refused\"} 7"), "{metrics}");
    assert!(metrics.contains("ccp_proxy_statusline_requests_total{outcome=\"bad_request\"} 1"), "{metrics}");
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}

/// `scripts/ccp-statusline` run by `sh` (dash on Debian: POSIX) as Claude Code runs it — its
/// session JSON on stdin — with only `PATH`, a fresh `HOME` and `env`; its stdout, and how long
/// it took.
async fn script(env: &[(&str, String)]) -> (String, Duration) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ccp-statusline");
    let home = std::env::temp_dir().join(ccp_tests::unique_name("sl-home"));
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(&path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (n, v) in env {
        cmd.env(n, v);
    }
    // Off the runtime the proxy's background tasks run on.
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = cmd.spawn().unwrap();
        let session =
            r#"{"session_id":"6fe7ba0a","model":{"id":"claude-opus-5-5"},"workspace":{"current_dir":"/tmp"}}"#;
        child.stdin.take().unwrap().write_all(session.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&home);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "nothing on stderr: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), elapsed)
}

#[actix_web::test]
async fn the_shipped_script_prints_the_line_or_nothing() {
    let e = env("sl_script", |_| {}).await;
    let (user_id, key_id, key) = e.dev("byers", false).await;
    let now = Utc::now().timestamp();
    let (five_reset, seven_reset) = ((now / 3600 + 3) * 3600, (now / 3600 + 4 * 24) * 3600);
    e.call(&key, plan("0.86", five_reset, "0.31", seven_reset)).await;
    let expected = format!(
        "Plan 5h 86% (resets {}) | 7d 31% (resets {})",
        local(DateTime::from_timestamp(five_reset, 0).unwrap(), chrono_tz::America::Chicago),
        local(DateTime::from_timestamp(seven_reset, 0).unwrap(), chrono_tz::America::Chicago)
    );

    // The key where Claude Code has it: in ANTHROPIC_BASE_URL; colour by default.
    let (out, _) =
        script(&[("ANTHROPIC_BASE_URL", format!("{}/ak/{key}", e.url)), ("TZ", "America/Chicago".into())]).await;
    assert_eq!(strip_ansi(&out), format!("{expected}\n"));
    assert!(out.starts_with(AMBER), "86 % is amber: {out:?}");
    // In ANTHROPIC_CUSTOM_HEADERS, among others; NO_COLOR turns colour off.
    let headers = format!("x-other: 1\nX-CCP-Access-Key: {key}");
    let (out, _) = script(&[
        ("ANTHROPIC_BASE_URL", format!("{}/", e.url)),
        ("ANTHROPIC_CUSTOM_HEADERS", headers),
        ("CCP_STATUSLINE_TZ", "America/Chicago".into()),
        ("NO_COLOR", "1".into()),
    ])
    .await;
    assert_eq!(out, format!("{expected}\n"));
    // In a key file, the proxy named apart.
    let file = std::env::temp_dir().join(ccp_tests::unique_name("sl-key"));
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let (out, _) = script(&[
        ("CCP_PROXY_URL", e.url.clone()),
        ("CCP_ACCESS_KEY_FILE", file.display().to_string()),
        ("CCP_STATUSLINE_COLOR", "0".into()),
    ])
    .await;
    std::fs::remove_file(&file).unwrap();
    assert!(out.starts_with("Plan 5h 86% (resets ") && out.ends_with('\n') && out.lines().count() == 1, "{out:?}");

    // No key, a key for Anthropic itself, an unreachable proxy, one that never answers:
    // nothing, within the second.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for env in [
        vec![("CCP_PROXY_URL", e.url.clone())],
        vec![("ANTHROPIC_BASE_URL", "https://api.anthropic.com".into()), ("CCP_ACCESS_KEY", key.clone())],
        vec![("CCP_PROXY_URL", format!("http://{closed}")), ("CCP_ACCESS_KEY", key.clone())],
        vec![("CCP_PROXY_URL", format!("http://{}", silent.local_addr().unwrap())), ("CCP_ACCESS_KEY", key.clone())],
        vec![("CCP_PROXY_URL", format!("{}/elsewhere", e.url)), ("CCP_ACCESS_KEY", key.clone())],
    ] {
        let (out, took) = script(&env).await;
        // Named without the key (test output is scanned for secrets).
        let shown: Vec<String> = env
            .iter()
            .map(|(n, v)| if v.contains("ak_") { format!("{n}=<key>") } else { format!("{n}={v}") })
            .collect();
        assert_eq!(out, "", "{shown:?}");
        assert!(took < Duration::from_millis(1800), "{took:?} for {shown:?}");
    }

    // A revoked key: the line says so.
    let seq = e.log.revoke(user_id, key_id).await;
    wait_applied_at(&e.url, seq).await;
    let (out, _) = script(&[("CCP_PROXY_URL", e.url.clone()), ("CCP_ACCESS_KEY", key.clone())]).await;
    assert_eq!(out, "ClaudeCodeProxy: access key revoked - ask your platform team\n");
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}
