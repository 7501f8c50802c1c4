//! The product's user stories, end to end, with everything running as users run it: the proxy,
//! the projector and the admin API as separate processes on the real NATS and ClickHouse, the
//! fake Anthropic and Bedrock as processes, the platform engineer on `ccpctl`, and the real
//! Claude Code 2.1.332 wherever a developer is.
//!
//! - onboarding: `ccpctl login` + `ccpctl onboard` print the developer's `ANTHROPIC_BASE_URL`;
//!   Claude Code with it answers within a minute of the platform engineer starting;
//! - daily use with failover: Anthropic rate-limits every request, Bedrock answers and Claude
//!   Code notices nothing; the request is recorded as a fallback;
//! - budget exhaustion: Claude Code shows the proxy's message; raising the budget lets it work;
//! - troubleshooting: the request id in the error Claude Code showed, looked up with
//!   `ccpctl request`, is the refused request;
//! - key rotation without disruption: a stream in flight on the old key finishes, the old key
//!   is refused within a second, Claude Code works with the new one;
//! - deactivation: the developer's key is refused within a second and Claude Code says why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ccp_tests::fake_anthropic::{self, ScenarioName};
use ccp_tests::fake_bedrock;
use ccp_tests::system::{
    claude_bin, finish_stream, stream_request, Options, System, ADMIN_PASSWORD, ADMIN_USER, BEDROCK_DEFAULT_MODEL,
    BEDROCK_KEY,
};
use serde_json::{json, Value};

/// The `req_…` id in text Claude Code showed (the proxy's error body carries it).
fn request_id_in(text: &str) -> Option<String> {
    let start = text.find("req_")? + 4;
    let ulid: String = text[start..].chars().take_while(char::is_ascii_alphanumeric).collect();
    (ulid.len() == 26).then(|| format!("req_{ulid}"))
}

/// `ccpctl request <id> --json`, waiting (bounded) for the projector to have written the row.
async fn lookup(sys: &System, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = sys.ctl(&["request", request_id, "--json"], "");
        if run.code == 0 {
            return run.json();
        }
        assert!(Instant::now() < deadline, "ccpctl request {request_id}: {run:?}\n{}", sys.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ids of ClickHouse rows of requests answered by `provider`, once there are at least `n`.
async fn rows_by(sys: &System, provider: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids: Vec<String> = sys
            .clickhouse_requests()
            .await
            .into_iter()
            .filter(|r| r.provider == provider && r.status == 200)
            .map(|r| r.request_id)
            .collect();
        if ids.len() >= n {
            return ids;
        }
        assert!(Instant::now() < deadline, "{n} {provider} rows expected, have {ids:?}\n{}", sys.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_then_daily_use_with_invisible_failover() {
    claude_bin(); // fails now if Claude Code is missing
    let sys = System::start(Options::new("jonboard")).await;
    let started = Instant::now();

    // The platform engineer logs in (password on stdin) and onboards Dana with a Bedrock key.
    let login = sys.ctl_as(None, &["login", "--username", ADMIN_USER], &format!("{ADMIN_PASSWORD}\n")).ok();
    assert!(login.stdout.contains("logged in"), "{login:?}");
    let onboard = sys
        .ctl_as(
            None,
            &[
                "onboard",
                "Dana Scully",
                "--email",
                "dana@example.com",
                "--budget",
                "200",
                "--region",
                "us-east-1",
                "--default-model",
                BEDROCK_DEFAULT_MODEL,
                "--bedrock-key-stdin",
            ],
            BEDROCK_KEY,
        )
        .ok();
    assert!(!format!("{}{}", onboard.stdout, onboard.stderr).contains(BEDROCK_KEY), "the Bedrock key was echoed");
    let line = onboard.stdout.lines().find(|l| l.starts_with("export ANTHROPIC_BASE_URL=")).unwrap_or_else(|| {
        panic!("onboard printed no setup line: {onboard:?}");
    });
    let base_url = line.trim_start_matches("export ANTHROPIC_BASE_URL=").to_owned();
    assert!(base_url.starts_with(&format!("{}/ak/ak_", sys.proxy_url(0))), "{base_url}");
    let key = base_url.rsplit('/').next().unwrap().to_owned();
    sys.wait_key_status(0, &key, |s| s != 401, "the onboarded key").await;
    sys.reset_fakes().await;

    // Dana pastes the line; Claude Code answers.
    let run = sys.claude(&base_url, "say hi", &[]).await;
    assert!(run.status.success(), "{}", run.dump());
    let result = run.result();
    assert_eq!(result["is_error"], false, "{}", run.dump());
    assert!(result["result"].as_str().is_some_and(|r| r.contains(fake_anthropic::DEFAULT_TEXT)), "{}", run.dump());
    let onboarding = started.elapsed();
    eprintln!("onboarding → first answer in Claude Code: {onboarding:?}");
    assert!(onboarding < Duration::from_secs(60), "the promise is a working Claude Code within a minute");
    let answered = sys.anthropic_requests().await;
    assert!(!answered.is_empty() && answered.iter().all(|r| r.status == 200), "{answered:#?}");
    let plan_rows = rows_by(&sys, "anthropic", answered.len()).await;

    // Daily use: Anthropic rate-limits every request; Bedrock answers; Claude Code notices nothing.
    sys.reset_fakes().await;
    let limits: Vec<Value> = (0..10).map(|_| json!({ "name": ScenarioName::RateLimit.as_str() })).collect();
    sys.enqueue_anthropic(Value::Array(limits)).await;
    let run = sys.claude(&base_url, "say hi", &[]).await;
    assert!(run.status.success(), "{}", run.dump());
    let result = run.result();
    assert_eq!(result["is_error"], false, "{}", run.dump());
    assert!(result["result"].as_str().is_some_and(|r| r.contains(fake_bedrock::DEFAULT_TEXT)), "{}", run.dump());
    assert!(result["api_error_status"].is_null(), "{}", run.dump());
    let stderr = run.stderr.to_lowercase();
    assert!(!["rate", "429", "bedrock", "retry"].iter().any(|w| stderr.contains(w)), "{}", run.dump());
    let anthropic = sys.anthropic_requests().await;
    let bedrock = sys.bedrock_requests().await;
    assert!(anthropic.iter().all(|r| r.status == 429), "{anthropic:#?}");
    assert_eq!(bedrock.len(), anthropic.len(), "one Bedrock answer per refused request");
    assert!(bedrock.iter().all(|b| b.status == 200 && b.key_was(BEDROCK_KEY)));

    // The platform engineer sees it as a fallback, by request id.
    let fallbacks = rows_by(&sys, "bedrock", bedrock.len()).await;
    let detail = lookup(&sys, &fallbacks[0]).await;
    assert_eq!(detail["provider"], "bedrock", "{detail}");
    assert_eq!(detail["fallback"], true, "{detail}");
    assert_eq!(detail["fallback_reason"], "rate_limited", "{detail}");
    assert_eq!(detail["status"], 200, "{detail}");
    assert_eq!(detail["region"], "us-east-1", "{detail}");
    assert!(detail["client_version"].as_str().is_some_and(|v| v.starts_with("claude-cli/2.1.332")), "{detail}");
    let plan = lookup(&sys, &plan_rows[0]).await;
    assert_eq!((plan["provider"].as_str(), plan["fallback"].as_bool()), (Some("anthropic"), Some(false)), "{plan}");
    assert_eq!(plan["user_id"], detail["user_id"], "both are Dana's");
    sys.assert_logs_free_of(&[&key, &key[3..], BEDROCK_KEY, ADMIN_PASSWORD]);
    sys.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_exhaustion_troubleshooting_rotation_and_deactivation() {
    claude_bin(); // fails now if Claude Code is missing
    let mut options = Options::new("jbudget");
    options.env.push(("CCP__BUDGETS__ENFORCE".into(), "all".into()));
    let sys = System::start(options).await;

    let onboard = sys.ctl(&["onboard", "Fox Mulder", "--budget", "1", "--json"], "").ok().json();
    let (user_id, key_id) = (onboard["user_id"].as_str().unwrap(), onboard["key_id"].as_str().unwrap());
    let base_url = onboard["base_url"].as_str().unwrap().to_owned();
    let key = onboard["access_key"].as_str().unwrap().to_owned();
    sys.wait_key_status(0, &key, |s| s != 401, "the onboarded key").await;

    // A big day: Claude Sonnet answers with 400k input tokens ($1.20 of a $1 budget).
    let expensive = [("ANTHROPIC_CUSTOM_HEADERS", "x-fake-usage: 400000,10,0,0")];
    let run = sys
        .spawn_claude(
            &base_url,
            &["-p", "say hi", "--model", "claude-sonnet-4-5", "--output-format", "json"],
            &expensive,
        )
        .wait(ccp_tests::system::CLAUDE_TIMEOUT)
        .await;
    assert!(run.status.success(), "{}", run.dump());
    assert_eq!(run.result()["is_error"], false, "{}", run.dump());

    // The next request is refused with the proxy's message, which Claude Code shows.
    let run = sys.claude(&base_url, "say hi again", &[]).await;
    assert!(!run.status.success(), "{}", run.dump());
    assert!(run.elapsed < Duration::from_secs(30), "Claude Code must not retry a spent budget: {}", run.dump());
    let result = run.result();
    assert_eq!(result["is_error"], true, "{}", run.dump());
    let shown = result["result"].as_str().unwrap_or_default().to_owned();
    assert!(
        shown.contains("budget is used up") && shown.contains("platform team"),
        "the proxy's message should reach the developer: {}",
        run.dump()
    );

    // Troubleshooting: the developer reports the error; its request id leads to the record.
    let request_id = request_id_in(&format!("{}\n{}", run.stdout, run.stderr))
        .unwrap_or_else(|| panic!("Claude Code showed no request id: {}", run.dump()));
    let detail = lookup(&sys, &request_id).await;
    assert_eq!(detail["request_id"], request_id.as_str());
    assert_eq!(detail["status"], 429, "{detail}");
    assert_eq!(detail["error_class"], "budget_exhausted", "{detail}");
    assert_eq!(detail["user_id"], user_id, "{detail}");
    assert_eq!(detail["key_id"], key_id, "{detail}");
    // The admin API's figure comes from ClickHouse's rollups, which follow the projection.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let budget = sys.ctl(&["budget", user_id, "--json"], "").ok().json();
        if budget["exhausted"] == true {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the spent budget never showed as exhausted: {budget}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The platform team raises the budget: Claude Code works again.
    sys.ctl(&["users", "budget", user_id, "100"], "").ok();
    sys.wait_key_status(0, &key, |s| s == 200, "a raised budget").await;
    let run = sys.claude(&base_url, "say hi", &[]).await;
    assert!(run.status.success(), "{}", run.dump());

    // Rotation without disruption: a stream in flight on the old key finishes.
    let http = reqwest::Client::new();
    let (_, resp) = stream_request(&http, &base_url, 1, 300).await.unwrap();
    let in_flight = tokio::spawn(finish_stream(resp));
    let rotated = sys.ctl(&["keys", "rotate", key_id, "--json"], "").ok().json();
    let rotated_at = Instant::now();
    let new_key = rotated["access_key"].as_str().unwrap().to_owned();
    let new_base = rotated["claude_code"]["base_url"].as_str().unwrap().to_owned();
    sys.wait_key_status(0, &key, |s| s == 401, "the rotated-away key").await;
    let took = rotated_at.elapsed();
    assert!(!in_flight.is_finished(), "the stream should still be in flight when the old key stops working");
    assert!(took < Duration::from_secs(1), "the old key was refused only after {took:?}");
    let streamed = in_flight.await.unwrap();
    assert!(streamed.is_ok(), "the in-flight stream on the old key was cut: {streamed:?}");
    assert!(new_base.ends_with(&new_key), "{rotated}");
    let run = sys.claude(&new_base, "say hi", &[]).await;
    assert!(run.status.success(), "Claude Code with the new key: {}", run.dump());

    // Deactivation: refused within a second, and Claude Code says why.
    sys.ctl(&["users", "deactivate", user_id, "--reason", "left the company"], "").ok();
    let deactivated_at = Instant::now();
    sys.wait_key_status(0, &new_key, |s| s == 401, "a deactivated user's key").await;
    let took = deactivated_at.elapsed();
    assert!(took < Duration::from_secs(1), "the key was refused only after {took:?}");
    let run = sys.claude(&new_base, "say hi", &[]).await;
    assert!(!run.status.success(), "{}", run.dump());
    let shown = run.result()["result"].as_str().unwrap_or_default().to_owned();
    assert!(shown.contains("API Error: 401") && shown.contains("platform team"), "{}", run.dump());
    sys.assert_logs_free_of(&[&key, &key[3..], &new_key, &new_key[3..], ccp_tests::system::ADMIN_PASSWORD]);
    sys.finish().await;
}

/// README's "see a failover" command, run as written against the whole system: the demo
/// developer's key is ready, three rate-limited requests are answered by Bedrock, the circuit
/// opens, and the last request is found in the usage analytics.
#[tokio::test]
async fn the_failover_demo_script_shows_bedrock_answering() {
    let sys = System::start(Options::new("demo")).await;
    let strip = |url: &str| url.trim_start_matches("http://").to_owned();
    let out = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-failover"))
        .env("CCP__PROXY__LISTEN", strip(sys.proxy_url(0)))
        .env("CCPCTL_URL", &sys.admin_url)
        .env("CCPCTL_TOKEN", &sys.token)
        .env("CCP_FAKE_ANTHROPIC_LISTEN", strip(&sys.anthropic_url))
        .env("CCPCTL", ccp_tests::system::workspace_bin("ccp-admin-api", "ccpctl"))
        .env("CCP_DEMO_BEDROCK_KEY", BEDROCK_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}\n{}", sys.logs());
    assert!(stdout.contains("failover ready"), "{stdout}");
    assert_eq!(stdout.matches("HTTP 200 from bedrock (reason: rate_limited)").count(), 3, "{stdout}");
    assert!(stdout.contains(fake_bedrock::DEFAULT_TEXT), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("state:") && l.contains("open")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("provider:") && l.contains("bedrock")), "{stdout}");
    assert!(stdout.contains("/#/requests/req_"), "{stdout}");
    sys.finish().await;
}
