//! The status line in the real Claude Code 2.1.332, run interactively in tmux against a proxy in
//! front of the fake Anthropic and the fake Bedrock (real NATS): Claude Code is set up as a
//! developer sets it up — `ANTHROPIC_BASE_URL` with the access key, the settings fragment that
//! `ccpctl onboard` prints, `scripts/ccp-statusline` copied to `~/.claude/` — and the test reads
//! the screen with `tmux capture-pane`: the line shows the Plan utilisation the fake Anthropic
//! reported, then "On Bedrock since …" once Anthropic answers 429 (usage limit) and the proxy
//! fails over.
//!
//! Needs `tmux` (apt-get install tmux) and Claude Code from `scripts/install-clients.sh` (or
//! `CCP_TEST_CLAUDE_BIN`); a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ccp_schemas::events::{FallbackReason, Provider};
use ccp_tests::fake_anthropic::{Scenario, ScenarioName};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use chrono_tz::Tz;

use common::{env, wait_applied_at, BEDROCK_KEY};

const CLAUDE_CODE_VERSION: &str = "2.1.332";
const API_KEY: &str = "sk-ant-test";
/// What `ccpctl onboard` prints for `~/.claude/settings.json` (admin-api/tests/cli.rs checks it
/// prints exactly this).
const SETTINGS_FRAGMENT: &str =
    r#"{"statusLine": {"type": "command", "command": "~/.claude/ccp-statusline", "refreshInterval": 5}}"#;
/// Scenarios queued per phase: more than the requests Claude Code sends for two prompts.
const QUEUED: usize = 40;
const SCREEN_TIMEOUT: Duration = Duration::from_secs(90);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn claude_bin() -> PathBuf {
    let bin = std::env::var_os("CCP_TEST_CLAUDE_BIN")
        .filter(|v| !v.is_empty())
        .map_or_else(|| repo_root().join(".local/clients/bin/claude"), PathBuf::from);
    let out = Command::new(&bin).arg("--version").stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("Claude Code at {}: {e} (set CCP_TEST_CLAUDE_BIN or run scripts/install-clients.sh)", bin.display())
    });
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with(CLAUDE_CODE_VERSION), "{} is Claude Code {version:?}", bin.display());
    bin
}

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("tmux: {e} (apt-get install -y tmux)"))
    }

    /// Runs `command` (argv) in a new 120×40 session in `dir`.
    fn start(dir: &Path, command: &[String]) -> Self {
        let tmux = Self { socket: ccp_tests::unique_name("ccp-sl") };
        let mut args = vec!["-f", "/dev/null", "new-session", "-d", "-s", "main", "-x", "120", "-y", "40", "-c"];
        let dir = dir.display().to_string();
        args.push(&dir);
        args.extend(command.iter().map(String::as_str));
        let out = tmux.cmd(&args);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        tmux
    }

    /// The screen; with `escapes`, with its colours as escape sequences.
    fn screen(&self, escapes: bool) -> String {
        let args: &[&str] =
            if escapes { &["capture-pane", "-p", "-e", "-t", "main"] } else { &["capture-pane", "-p", "-t", "main"] };
        String::from_utf8_lossy(&self.cmd(args).stdout).into_owned()
    }

    fn type_line(&self, text: &str) {
        assert!(self.cmd(&["send-keys", "-t", "main", "-l", text]).status.success());
        // Enter apart from the text, as a person types it.
        std::thread::sleep(Duration::from_millis(300));
        assert!(self.cmd(&["send-keys", "-t", "main", "Enter"]).status.success());
    }

    /// Waits until the screen has a line for which `ok` holds; that line.
    async fn line_where(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen(false);
            if let Some(line) = screen.lines().find(|l| ok(l)) {
                return line.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "the screen never showed {what}:\n{screen}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- last screen\n{}", self.screen(false));
        }
        let _ = self.cmd(&["kill-server"]);
    }
}

/// `HH:MM` today, else `Ddd HH:MM`, in `tz`: how the line writes a time.
fn local(at: DateTime<Utc>, tz: Tz) -> String {
    let (t, today) = (at.with_timezone(&tz), Utc::now().with_timezone(&tz));
    let hm = format!("{:02}:{:02}", t.hour(), t.minute());
    if t.date_naive() == today.date_naive() {
        hm
    } else {
        format!("{} {hm}", t.weekday())
    }
}

#[actix_web::test]
async fn claude_code_shows_the_plan_then_bedrock_in_its_status_line() {
    let claude = claude_bin();
    let e = env("sl_claude", |_| {}).await;
    let (user_id, key_id, key) = e.log.user_with_key("dana").await;
    let seq = e.log.register_bedrock_key(user_id, key_id, &e.master, BEDROCK_KEY).await;
    wait_applied_at(&e.url, seq).await;

    // The developer's machine: Claude Code set up (onboarding done, this directory trusted, the
    // Anthropic key approved), the settings fragment, the script where the fragment runs it.
    let root = std::env::temp_dir().join(ccp_tests::unique_name("sl-claude"));
    let (home, work) = (root.join("home"), root.join("work"));
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let state = serde_json::json!({
        "hasCompletedOnboarding": true,
        "lastOnboardingVersion": CLAUDE_CODE_VERSION,
        "theme": "dark",
        "customApiKeyResponses": {"approved": [API_KEY], "rejected": []},
        "projects": {work.display().to_string(): {"hasTrustDialogAccepted": true, "hasCompletedProjectOnboarding": true}},
    });
    std::fs::write(home.join(".claude.json"), state.to_string()).unwrap();
    std::fs::write(home.join(".claude/settings.json"), SETTINGS_FRAGMENT).unwrap();
    let script = home.join(".claude/ccp-statusline");
    std::fs::copy(repo_root().join("scripts/ccp-statusline"), &script).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // Phase 1: the subscription at 42 % of its 5 hours.
    let now = Utc::now().timestamp();
    let (five_reset, seven_reset) = ((now / 3600 + 3) * 3600, (now / 3600 + 4 * 24) * 3600);
    let plan = Scenario::new(ScenarioName::Auto)
        .with_header("anthropic-ratelimit-unified-status", "allowed")
        .with_header("anthropic-ratelimit-unified-5h-status", "allowed")
        .with_header("anthropic-ratelimit-unified-5h-reset", five_reset.to_string())
        .with_header("anthropic-ratelimit-unified-5h-utilization", "0.42")
        .with_header("anthropic-ratelimit-unified-7d-status", "allowed")
        .with_header("anthropic-ratelimit-unified-7d-reset", seven_reset.to_string())
        .with_header("anthropic-ratelimit-unified-7d-utilization", "0.18");
    for _ in 0..QUEUED {
        e.anthropic.enqueue(plan.clone());
    }
    let berlin = chrono_tz::Europe::Berlin;
    let command: Vec<String> = vec![
        "env".into(),
        "-i".into(),
        format!("PATH={}", std::env::var("PATH").unwrap_or_default()),
        format!("HOME={}", home.display()),
        "TERM=xterm-256color".into(),
        format!("ANTHROPIC_BASE_URL={}/ak/{}", e.url, key.expose()),
        format!("ANTHROPIC_API_KEY={API_KEY}"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".into(),
        "CCP_STATUSLINE_TZ=Europe/Berlin".into(),
        claude.display().to_string(),
    ];
    let tmux = Tmux::start(&work, &command);

    // Before any request, the line is already there.
    tmux.line_where("the status line at start", |l| l.contains("Plan limits: none seen yet")).await;
    tmux.type_line("say hi");
    tmux.line_where("the fake Anthropic's answer", |l| l.contains("Hello from fake_anthropic.")).await;
    let expected = format!(
        "Plan 5h 42% (resets {}) | 7d 18% (resets {})",
        local(DateTime::from_timestamp(five_reset, 0).unwrap(), berlin),
        local(DateTime::from_timestamp(seven_reset, 0).unwrap(), berlin)
    );
    let line = tmux.line_where("the Plan's utilisation", |l| l.contains("Plan 5h 42%")).await;
    assert_eq!(line, expected);
    let screen = tmux.screen(false);
    eprintln!("--- the screen on the Plan\n{screen}");
    assert!(!screen.contains("Bedrock"));

    // Phase 2: the subscription is used up — Anthropic answers 429, Bedrock answers instead.
    e.anthropic.clear();
    for _ in 0..QUEUED {
        e.anthropic.enqueue(Scenario::new(ScenarioName::UsageLimit));
    }
    let before = Utc::now();
    tmux.type_line("say hi again");
    tmux.line_where("the fake Bedrock's answer", |l| l.contains("Hello from fake_bedrock.")).await;
    let line = tmux.line_where("the Bedrock state", |l| l.contains("On Bedrock since")).await;
    let since = [local(before, berlin), local(Utc::now(), berlin)];
    assert!(
        since.iter().any(|s| line.starts_with(&format!("On Bedrock since {s} (Plan limit) | Plan 5h 100% "))),
        "{line:?} (since one of {since:?})"
    );
    eprintln!("--- the screen on Bedrock\n{}", tmux.screen(false));
    // In colour: blue for Bedrock, red for the exhausted window.
    let coloured = tmux.screen(true);
    let status = coloured.lines().find(|l| l.contains("On Bedrock since")).unwrap();
    assert!(status.contains("\x1b[34m") && status.contains("\x1b[31m"), "{status:?}");
    // What the screen says is what happened.
    let events = e.log.requests().await;
    assert!(
        events.iter().any(|r| r.provider == Provider::Bedrock && r.fallback_reason == Some(FallbackReason::UsageLimit)),
        "{events:?}"
    );
    drop(tmux);
    let _ = std::fs::remove_dir_all(&root);
    ccp_tests::delete_namespace(&e.log.js, &e.log.ns).await;
}
