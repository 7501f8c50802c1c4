#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `ccpctl` against a real `ccp-admin` on the test stack (real NATS): each test runs the CLI
//! binary as a user would, with its own config directory, feeding secrets on stdin only.

mod common;

use common::ctl::Ctl;
use common::{AdminApi, ADMIN_PASSWORD, ADMIN_USER, PUBLIC_PROXY_URL};
use serde_json::Value;

/// Records in the server's idempotency bucket (`None`: the server keeps none).
async fn idempotency_records(api: &AdminApi) -> Option<usize> {
    use futures_util::StreamExt as _;
    let bucket = api.log.js.get_key_value(format!("{}_idempotency", api.log.ns.prefix())).await.ok()?;
    let keys = bucket.keys().await.ok()?;
    Some(keys.filter_map(|k| async move { k.ok() }).count().await)
}

fn unique(name: &str) -> String {
    format!("{name} {}", &ulid::Ulid::new().to_string()[20..])
}

#[tokio::test]
async fn login_saves_a_private_session_that_later_commands_use() {
    let api = AdminApi::start("cli_login").await;
    let ctl = Ctl::without_token(&api);

    let r = ctl.run(&["whoami"]).fails(1);
    assert!(r.stderr.contains("not logged in") && r.stderr.contains("ccpctl login"), "{}", r.stderr);

    let r = ctl.run_with(&["login", "--username", ADMIN_USER], "not the password\n").fails(1);
    assert!(r.stderr.contains("wrong username or password"), "{}", r.stderr);
    assert!(!ctl.session_file().exists());

    let r = ctl.run_with(&["login", "--username", ADMIN_USER], &format!("{ADMIN_PASSWORD}\n")).ok();
    assert!(r.stdout.contains(&format!("logged in to {} as {ADMIN_USER}", api.url)), "{}", r.stdout);
    assert!(!r.stdout.contains("ccps_") && !r.stderr.contains("ccps_"), "the session token is never printed");

    let text = std::fs::read_to_string(ctl.session_file()).unwrap();
    assert!(!text.contains(ADMIN_PASSWORD), "the password is never saved");
    let saved: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["url"], api.url.as_str());
    assert!(saved["token"].as_str().unwrap().starts_with("ccps_"));
    assert!(saved["expires_at"].is_string());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(ctl.session_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "session file mode {mode:o}");
    }

    let me = ctl.run(&["whoami", "--json"]).ok().json();
    assert_eq!(me["username"], ADMIN_USER);
    assert_eq!((me["method"].as_str(), me["role"].as_str()), (Some("session"), Some("admin")));
    let r = ctl.run(&["whoami"]).ok();
    assert!(r.stdout.contains(&format!("{ADMIN_USER} (adm_")) && r.stdout.contains("session"), "{}", r.stdout);
    assert!(r.stdout.contains(", admin) at "), "the role is shown: {}", r.stdout);

    let name = unique("Session User");
    ctl.run(&["users", "create", &name]).ok();
    let r = ctl.run(&["users", "list"]).ok();
    assert!(r.stdout.starts_with("USER_ID"), "{}", r.stdout);
    assert!(r.stdout.contains(&name), "{}", r.stdout);

    // The saved session is only ever sent to the server it came from.
    let other = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let r = ctl.run(&["--url", &other, "users", "list"]).fails(1);
    assert!(r.stderr.contains(&format!("not logged in to {other}")), "{}", r.stderr);

    let token = saved["token"].as_str().unwrap().to_owned();
    let r = ctl.run(&["logout"]).ok();
    assert!(r.stdout.contains("logged out"), "{}", r.stdout);
    assert!(!ctl.session_file().exists());
    let a = api.send(reqwest::Method::GET, "/v1/auth/me", Some(&token), None).await;
    assert_eq!(a.status, 401, "logout ends the session on the server: {}", a.text);
    ctl.run(&["whoami"]).fails(1);
    api.finish().await;
}

#[tokio::test]
async fn onboard_prints_a_working_key() {
    let api = AdminApi::start("cli_onboard").await;
    let ctl = Ctl::new(&api);
    let name = unique("Dana");

    let args = [
        "onboard",
        &name,
        "--email",
        "dana@example.com",
        "--budget",
        "250",
        "--key-name",
        "laptop",
        "--region",
        "eu-central-1",
        "--json",
    ];
    let r = ctl.run(&args).ok();
    let out = r.json();
    let keys: Vec<&str> = out.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 6, "{out}");
    assert!(out["failover"].is_null(), "no Bedrock API key, nothing checked: {out}");
    assert!(r.stderr.contains("no Bedrock API key: requests Anthropic refuses are not failed over"), "{}", r.stderr);
    assert_eq!(
        out["statusline_settings"],
        serde_json::json!({"statusLine": {"type": "command", "command": "~/.claude/ccp-statusline", "refreshInterval": 5}}),
        "the Claude Code status-line fragment"
    );
    let (user_id, key_id) = (out["user_id"].as_str().unwrap(), out["key_id"].as_str().unwrap());
    let access_key = out["access_key"].as_str().unwrap();
    let base_url = out["base_url"].as_str().unwrap();
    assert!(access_key.starts_with("ak_"), "{access_key}");
    assert!(base_url.ends_with(access_key), "{base_url}");
    assert_eq!(base_url, format!("{PUBLIC_PROXY_URL}/ak/{access_key}"));
    assert!(r.stderr.contains("creating user") && r.stderr.contains(&format!("issued key {key_id}")), "{}", r.stderr);

    let key = api.get(&format!("/v1/keys/{key_id}")).await;
    assert_eq!(key.status, 200, "{}", key.text);
    assert_eq!(key.body["status"], "active");
    assert_eq!(key.body["user_id"], user_id);
    assert_eq!(key.body["name"], "laptop");
    assert_eq!(key.body["bedrock_region"], "eu-central-1");
    assert!(access_key.starts_with(key.body["prefix"].as_str().unwrap()), "the key shown is the key stored");
    let user = api.get(&format!("/v1/users/{user_id}")).await;
    assert_eq!(user.body["monthly_limit_usd"], "250");
    assert_eq!(user.body["email"], "dana@example.com");
    assert_eq!(user.body["status"], "active");

    // Without --json, stdout is the line for the developer's shell profile, then the status-line
    // settings as comments: still a shell snippet to append to a profile or eval.
    let r = ctl.run(&["onboard", &unique("Erin")]).ok();
    let mut lines = r.stdout.lines();
    let line = lines.next().unwrap();
    let prefix = format!("export ANTHROPIC_BASE_URL={PUBLIC_PROXY_URL}/ak/ak_");
    assert!(line.starts_with(&prefix), "{line}");
    let comments: Vec<&str> = lines.collect();
    assert!(comments.iter().all(|l| l.starts_with("# ")), "{}", r.stdout);
    let fragment: Value = serde_json::from_str(comments.last().unwrap().strip_prefix("# ").unwrap()).unwrap();
    assert_eq!(fragment["statusLine"]["type"], "command");
    assert_eq!(fragment["statusLine"]["command"], "~/.claude/ccp-statusline");
    assert!(r.stdout.contains("scripts/ccp-statusline"), "{}", r.stdout);
    assert!(r.stderr.contains("shown only this once"), "{}", r.stderr);

    // A name taken: nothing is issued, the server's message is shown.
    let r = ctl.run(&["onboard", &name, "--json"]).fails(1);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("already exists") && r.stderr.contains("(field: name)"), "{}", r.stderr);
    api.finish().await;
}

#[tokio::test]
async fn bedrock_keys_come_from_stdin_and_are_never_echoed() {
    let api = AdminApi::start("cli_bedrock").await;
    let ctl = Ctl::new(&api);
    let secret = format!("ABSK{}SeCrEtMiDdLe{}x9Q=", ulid::Ulid::new(), ulid::Ulid::new());
    let name = unique("Fay");

    let args = ["onboard", name.as_str(), "--bedrock-key-stdin", "--region", "us-west-2", "--json"];
    let r = ctl.run_with(&args, &format!("{secret}\n")).ok();
    assert!(!r.stdout.contains(&secret) && !r.stderr.contains(&secret), "{r:?}");
    assert!(!r.args.iter().any(|a| a.contains(&secret)));
    assert!(!r.stdout.contains("SeCrEtMiDdLe") && !r.stderr.contains("SeCrEtMiDdLe"));
    assert!(r.stderr.contains("registered Bedrock API key ABSK…"), "{}", r.stderr);
    let key_id = r.json()["key_id"].as_str().unwrap().to_owned();
    let key = api.get(&format!("/v1/keys/{key_id}")).await;
    let hint = key.body["bedrock_key"]["hint"].as_str().unwrap();
    assert!(hint.starts_with("ABSK") && hint.ends_with("x9Q="), "{hint}");

    // The key's own commands show the hint, never the key.
    for args in [vec!["keys", "get", &key_id], vec!["keys", "get", &key_id, "--json"]] {
        let r = ctl.run(&args).ok();
        assert!(r.stdout.contains(hint) && !r.stdout.contains(&secret), "{}", r.stdout);
    }

    // Replace it with `bedrock-key set`, then remove it.
    let replacement = format!("ABSK{}Zz9=", ulid::Ulid::new());
    let r = ctl.run_with(&["bedrock-key", "set", &key_id], &format!("{replacement}\n")).ok();
    assert!(!r.stdout.contains(&replacement) && !r.stderr.contains(&replacement), "{r:?}");
    assert!(r.stdout.contains("registered Bedrock API key ABSK…Zz9="), "{}", r.stdout);
    let removed = ctl.run(&["bedrock-key", "remove", &key_id, "--json"]).ok().json();
    assert!(removed["bedrock_key"].is_null(), "{removed}");

    // Blank input is refused before anything is created.
    let r = ctl.run_with(&["bedrock-key", "set", &key_id], "").fails(2);
    assert!(r.stderr.contains("stdin is empty"), "{}", r.stderr);
    let late = unique("Gus");
    ctl.run_with(&["onboard", &late, "--bedrock-key-stdin"], "   \n").fails(2);
    let users = ctl.run(&["users", "list", "--search", &late, "--json"]).ok().json();
    assert_eq!(users["total"], 0, "{users}");

    // A secret is never an argument.
    let r = ctl.run(&["bedrock-key", "set", &key_id, &secret]).fails(2);
    assert!(!r.stderr.contains(&secret), "{}", r.stderr);
    ctl.run(&["bedrock-key", "set", &key_id, "--api-key", "x"]).fails(2);
    ctl.run(&["bedrock-key", "set", &key_id, "--key", "x"]).fails(2);
    api.finish().await;
}

#[tokio::test]
async fn users_commands_with_json_and_human_output() {
    let api = AdminApi::start("cli_users").await;
    let ctl = Ctl::new(&api);
    let name = unique("Frank");

    let args = [
        "users",
        "create",
        &name,
        "--email",
        "frank@example.com",
        "--description",
        "platform team",
        "--budget",
        "99.50",
        "--routing",
        "bedrock_only",
        "--json",
    ];
    let user = ctl.run(&args).ok().json();
    let id = user["user_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("usr_"));
    assert_eq!(user["monthly_limit_usd"], "99.5");
    assert_eq!(user["routing"], "bedrock_only");
    let other = unique("Grace");
    let r = ctl.run(&["users", "create", &other]).ok();
    assert!(r.stdout.starts_with(&format!("created user {other} (usr_")), "{}", r.stdout);

    let page = ctl.run(&["users", "list", "--search", &name, "--json"]).ok().json();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["user_id"], id.as_str());
    let r = ctl.run(&["users", "list", "--limit", "1"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("USER_ID") && lines[0].contains("BUDGET"), "{}", r.stdout);
    assert_eq!(lines.len(), 3, "header, one row, paging line: {}", r.stdout);
    assert!(lines[2].contains("--offset 1 for more"), "{}", r.stdout);
    let r = ctl.run(&["users", "list", "--search", &name]).ok();
    assert!(r.stdout.contains(&id) && r.stdout.contains("$99.50") && r.stdout.contains("bedrock_only"), "{}", r.stdout);

    let r = ctl.run(&["users", "get", &id]).ok();
    assert!(r.stdout.contains("name:") && r.stdout.contains("frank@example.com"), "{}", r.stdout);
    assert!(r.stdout.contains("no access keys"), "{}", r.stdout);
    let detail = ctl.run(&["users", "get", &id, "--json"]).ok().json();
    assert_eq!(detail["description"], "platform team");
    assert_eq!(detail["keys"], serde_json::json!([]));

    let updated = ctl.run(&["users", "update", &id, "--email", "frank@corp.example", "--json"]).ok().json();
    assert_eq!(updated["email"], "frank@corp.example");
    assert_eq!(updated["name"], name.as_str());
    ctl.run(&["users", "update", &id]).fails(2);

    let user = ctl.run(&["users", "deactivate", &id, "--reason", "left the company", "--json"]).ok().json();
    assert_eq!(user["status"], "inactive");
    let inactive = ctl.run(&["users", "list", "--status", "inactive", "--json"]).ok().json();
    assert_eq!(inactive["total"], 1, "{inactive}");
    let r = ctl.run(&["users", "reactivate", &id]).ok();
    assert!(r.stdout.starts_with("reactivated user"), "{}", r.stdout);
    assert_eq!(api.get(&format!("/v1/users/{id}")).await.body["status"], "active");

    let user = ctl.run(&["users", "budget", &id, "unlimited", "--json"]).ok().json();
    assert!(user["monthly_limit_usd"].is_null(), "{user}");
    let r = ctl.run(&["users", "budget", &id, "500"]).ok();
    assert!(r.stdout.contains("$500.00 per month"), "{}", r.stdout);
    ctl.run(&["users", "budget", &id, "lots"]).fails(2);
    let r = ctl.run(&["users", "budget", &id, "2000000"]).fails(1);
    assert!(r.stderr.contains("(field: monthly_limit_usd)"), "{}", r.stderr);

    let user = ctl.run(&["users", "routing", &id, "plan_only", "--json"]).ok().json();
    assert_eq!(user["routing"], "plan_only");
    let r = ctl.run(&["users", "routing", &id, "plan_first"]).ok();
    assert!(r.stdout.contains("plan_first"), "{}", r.stdout);
    ctl.run(&["users", "routing", &id, "sometimes"]).fails(2);

    let r = ctl.run(&["users", "create", &name]).fails(1);
    assert!(r.stderr.contains("already exists") && r.stderr.contains("(field: name) [request req_"), "{}", r.stderr);
    api.finish().await;
}

#[tokio::test]
async fn keys_issue_rotate_and_revoke() {
    let api = AdminApi::start("cli_keys").await;
    let ctl = Ctl::new(&api);
    let user_id = api.create_user(&unique("Hana")).await;

    let args = ["keys", "issue", &user_id, "--name", "laptop", "--region", "us-west-2", "--default-model", "m-1"];
    let r = ctl.run(&args).ok();
    assert!(r.stderr.contains("will not be shown again"), "{}", r.stderr);
    let access_key = r.stdout.lines().find_map(|l| l.strip_prefix("access key: ")).unwrap().to_owned();
    assert!(access_key.starts_with("ak_"));
    assert!(
        r.stdout.contains(&format!("export ANTHROPIC_BASE_URL={PUBLIC_PROXY_URL}/ak/{access_key}")),
        "{}",
        r.stdout
    );

    let keys = ctl.run(&["keys", "list", &user_id, "--json"]).ok().json();
    let key_id = keys[0]["key_id"].as_str().unwrap().to_owned();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let r = ctl.run(&["keys", "list", &user_id]).ok();
    assert!(r.stdout.starts_with("KEY_ID") && r.stdout.contains(keys[0]["masked"].as_str().unwrap()), "{}", r.stdout);
    assert!(!r.stdout.contains(&access_key));

    // Changing one Bedrock setting keeps the other.
    let key = ctl.run(&["keys", "bedrock", &key_id, "--default-model", "m-2", "--json"]).ok().json();
    assert_eq!(key["bedrock_region"], "us-west-2");
    assert_eq!(key["bedrock_default_model"], "m-2");
    let r = ctl.run(&["keys", "bedrock", &key_id, "--region", ""]).ok();
    assert!(r.stdout.contains("(the proxy's default)") && r.stdout.contains("m-2"), "{}", r.stdout);
    ctl.run(&["keys", "bedrock", &key_id]).fails(2);

    let rotated = ctl.run(&["keys", "rotate", &key_id, "--json"]).ok().json();
    assert_eq!(rotated["key"]["key_id"], key_id.as_str());
    let new_key = rotated["access_key"].as_str().unwrap();
    assert!(new_key.starts_with("ak_") && new_key != access_key);
    assert!(rotated["claude_code"]["shell"].as_str().unwrap().ends_with(new_key));

    let before = idempotency_records(&api).await;
    let r = ctl.run(&["keys", "revoke", &key_id, "--reason", "laptop lost"]).ok();
    if let Some(before) = before {
        assert_eq!(idempotency_records(&api).await, Some(before + 1), "ccpctl sends an Idempotency-Key");
    }
    assert!(r.stdout.starts_with(&format!("revoked key {key_id}")), "{}", r.stdout);
    assert_eq!(api.get(&format!("/v1/keys/{key_id}")).await.body["status"], "revoked");
    let r = ctl.run(&["keys", "get", &key_id]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("status:") && l.ends_with("revoked")), "{}", r.stdout);
    ctl.run(&["keys", "rotate", &key_id]).fails(1);
    api.finish().await;
}

#[tokio::test]
async fn api_tokens_and_admins() {
    let api = AdminApi::start("cli_tokens").await;
    let ctl = Ctl::new(&api);

    let issued = ctl.run(&["tokens", "issue", "ci", "--json"]).ok().json();
    let token = issued["token"].as_str().unwrap().to_owned();
    let token_id = issued["token_id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ccpt_"));
    let r = ctl.run(&["tokens", "issue", "deploy"]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("token: ccpt_")), "{}", r.stdout);
    assert!(r.stderr.contains("only time the token is shown"), "{}", r.stderr);

    let automation = Ctl::without_token(&api).with_token(&token);
    let me = automation.run(&["whoami", "--json"]).ok().json();
    assert_eq!(me["method"], "api_token");
    assert_eq!(me["username"], ADMIN_USER);
    let r = automation.run(&["tokens", "list"]).ok();
    assert!(r.stdout.starts_with("TOKEN_ID") && r.stdout.contains("ci") && r.stdout.contains("deploy"), "{}", r.stdout);
    assert!(!r.stdout.contains(&token));

    let password = "a long enough admin password";
    let admin = ctl.run_with(&["admins", "create", "ops-bot", "--json"], &format!("{password}\n")).ok().json();
    assert_eq!(admin["username"], "ops-bot");
    let r = ctl.run(&["admins", "list"]).ok();
    assert!(r.stdout.contains("ops-bot") && r.stdout.contains(ADMIN_USER), "{}", r.stdout);
    let r = ctl.run_with(&["admins", "create", "short-pw"], "short\n").fails(1);
    assert!(r.stderr.contains("(field: password)"), "{}", r.stderr);
    ctl.run(&["admins", "create", "x", "--password", password]).fails(2);
    let bot = Ctl::without_token(&api);
    bot.run_with(&["login", "--username", "ops-bot"], &format!("{password}\n")).ok();
    assert_eq!(bot.run(&["whoami", "--json"]).ok().json()["username"], "ops-bot");

    let r = ctl.run(&["tokens", "revoke", &token_id]).ok();
    assert!(r.stdout.contains(&format!("revoked API token ci ({token_id})")), "{}", r.stdout);
    let r = automation.run(&["whoami"]).fails(1);
    assert!(r.stderr.contains("hint: log in again"), "{}", r.stderr);
    api.finish().await;
}

#[tokio::test]
async fn errors_name_the_problem_and_exit_accordingly() {
    let api = AdminApi::start("cli_errors").await;
    let ctl = Ctl::new(&api);

    let missing = format!("usr_{}", ulid::Ulid::new());
    let r = ctl.run(&["users", "get", &missing]).fails(1);
    assert!(r.stderr.contains(&format!("no user {missing}")) && r.stderr.contains("[request req_"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    // Not an id: looked for as a name or e-mail (admin-api/tests/cli_names.rs has more).
    let r = ctl.run(&["users", "get", "not-an-id", "--json"]).fails(1);
    assert!(r.stderr.contains("no user has the name or e-mail \"not-an-id\""), "{}", r.stderr);
    let r = ctl.run(&["users", "get", "usr_notaulid", "--json"]).fails(1);
    assert!(r.stderr.contains("usr_"), "{}", r.stderr);
    let r = ctl.run(&["keys", "issue", &missing]).fails(1);
    assert!(r.stderr.contains(&format!("no user {missing}")), "{}", r.stderr);

    let down = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let r = ctl.run(&["--url", &down, "users", "list"]).fails(3);
    assert!(r.stderr.contains(&format!("cannot reach the admin API at {down}")), "{}", r.stderr);
    let mut offline = Ctl::without_token(&api);
    offline.url.clone_from(&down);
    let r = offline.run_with(&["login", "--username", ADMIN_USER], "whatever\n").fails(3);
    assert!(r.stderr.contains(&down), "{}", r.stderr);
    ctl.run(&["--url", "localhost:8081", "users", "list"]).fails(2);

    // Secrets cannot be arguments: there is no such flag anywhere.
    for args in [
        vec!["login", "--username", ADMIN_USER, "--password", ADMIN_PASSWORD],
        vec!["--token", "ccps_x", "whoami"],
        vec!["onboard", "Ivy", "--bedrock-key", "ABSKxyz"],
        vec!["login", ADMIN_PASSWORD],
    ] {
        let r = ctl.run(&args).fails(2);
        assert!(!r.stderr.contains(ADMIN_PASSWORD), "{}", r.stderr);
    }
    ctl.run(&["frobnicate"]).fails(2);
    let r = ctl.run_with(&["login"], "").fails(2);
    assert!(r.stderr.contains("--username is required"), "{}", r.stderr);
    api.finish().await;
}

/// The report commands call their endpoints; where the server has none yet, its 404 is shown.
#[tokio::test]
async fn reports_call_their_endpoints_or_show_the_404() {
    let api = AdminApi::start("cli_reports").await;
    // The reports read the projector's tables; an empty, migrated database answers them.
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    let ctl = Ctl::new(&api);
    let user_id = api.create_user(&unique("Jo")).await;
    let (key_id, _) = api.issue_key(&user_id).await;
    let spec = api.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    let offered = |method: &str, path: &str| spec.body["paths"].get(path).and_then(|p| p.get(method)).is_some();

    let request_id = format!("req_{}", ulid::Ulid::new());
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["usage", "--preset", "today", "--group-by", "user,model"], "/v1/usage", "GET /v1/usage"),
        (vec!["budget", &user_id], "/v1/users/{user_id}/budget", "GET /v1/users/"),
        (vec!["audit", "--limit", "5"], "/v1/audit", "GET /v1/audit"),
        (vec!["circuit", &key_id], "/v1/keys/{key_id}/circuit", "GET /v1/keys/"),
        (vec!["circuit", &key_id, "--reset"], "/v1/keys/{key_id}/circuit/reset", "POST /v1/keys/"),
        (vec!["pricing"], "/v1/pricing", "GET /v1/pricing"),
    ];
    for (args, path, route) in cases {
        let method = route.split(' ').next().unwrap().to_lowercase();
        if offered(&method, path) {
            ctl.run(&args).ok();
            let mut json = args.clone();
            json.push("--json");
            ctl.run(&json).ok().json();
        } else {
            let r = ctl.run(&args).fails(1);
            assert!(r.stderr.contains(&format!("no route {route}")), "{}", r.stderr);
            assert!(r.stderr.contains("does not offer that endpoint"), "{}", r.stderr);
        }
    }
    // An unknown request id is a 404 either way; the message says which.
    let r = ctl.run(&["request", &request_id]).fails(1);
    if offered("get", "/v1/requests/{request_id}") {
        assert!(!r.stderr.contains("no route") && r.stderr.contains(&request_id), "{}", r.stderr);
    } else {
        assert!(r.stderr.contains("no route GET /v1/requests/"), "{}", r.stderr);
    }
    if offered("get", "/v1/usage") {
        let r = ctl.run(&["usage", "--preset", "last_7d", "--bucket", "day", "--group-by", "user", "--tz", "UTC"]).ok();
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert!(lines[0].starts_with("usage ") && lines[0].contains("by user"), "{}", r.stdout);
        assert!(lines[1].starts_with("BUCKET") && lines[1].contains("USER_ID") && lines[1].contains("COST_USD"));
        assert!(lines.last().unwrap().starts_with("total"), "{}", r.stdout);
        let report = ctl.run(&["usage", "--json", "--user", &user_id]).ok().json();
        assert!(report["rows"].is_array() && report["totals"].is_object(), "{report}");
        let r = ctl.run(&["usage", "--preset", "someday"]).fails(1);
        assert!(r.stderr.contains("(field: preset)") || r.stderr.contains("preset"), "{}", r.stderr);
        ctl.run(&["usage", "--preset", "today", "--from", "2026-01-01T00:00:00Z"]).fails(2);
    }
    if offered("get", "/v1/users/{user_id}/budget") {
        ctl.run(&["users", "budget", &user_id, "40"]).ok();
        let budget = ctl.run(&["budget", &user_id, "--json"]).ok().json();
        assert_eq!(budget["limit_usd"], "40", "{budget}");
        let r = ctl.run(&["budget", &user_id]).ok();
        assert!(r.stdout.lines().any(|l| l.starts_with("limit_usd:") && l.ends_with("40")), "{}", r.stdout);
    }
    if offered("get", "/v1/statements") {
        // A team's budget this month, usage by team, and the finance statement.
        let team = unique("Ops");
        ctl.run(&["teams", "create", &team, "--budget", "25"]).ok();
        ctl.run(&["users", "team", &user_id, &team]).ok();
        let r = ctl.run(&["teams", "budget", &team]).ok();
        assert!(r.stdout.lines().any(|l| l.starts_with("budget:") && l.contains("$25.00")), "{}", r.stdout);
        assert!(r.stdout.lines().any(|l| l.starts_with("spent:") && l.contains("$0")), "{}", r.stdout);
        let b = ctl.run(&["teams", "budget", &team, "--json"]).ok().json();
        assert_eq!((b["limit_usd"].as_str(), b["spent_usd"].as_str()), (Some("25"), Some("0")), "{b}");
        let u = ctl.run(&["usage", "--json", "--group-by", "team", "--team", &team]).ok().json();
        assert_eq!(u["group_by"], serde_json::json!(["team"]), "{u}");
        let s = ctl.run(&["statement", "--json", "--month", "2026-01", "--team", &team]).ok().json();
        assert_eq!((s["month"].as_str(), s["lines"].as_array().map(Vec::len)), (Some("2026-01"), Some(0)), "{s}");
        let r = ctl.run(&["statement", "--month", "2026-01"]).ok();
        assert!(r.stdout.starts_with("statement 2026-01 (UTC)"), "{}", r.stdout);
        assert!(r.stdout.lines().any(|l| l.starts_with("total")), "{}", r.stdout);
        assert!(r.stdout.contains("ORG_SPEND: Bedrock"), "{}", r.stdout);
        let r = ctl.run(&["statement", "--csv", "--month", "2026-01"]).ok();
        assert!(r.stdout.starts_with("month,time_zone,team_id,team_name,"), "{}", r.stdout);
        let r = ctl.run(&["statement", "--month", "2026-13"]).fails(1);
        assert!(r.stderr.contains("(field: month)"), "{}", r.stderr);
        ctl.run(&["statement", "--csv", "--json"]).fails(2);
        let r = ctl.run(&["statement", "--team", "no-such-team"]).fails(1);
        assert!(r.stderr.contains("no-such-team"), "{}", r.stderr);
    }
    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}

/// `ccpctl models`: the catalogue as a table with unpriced models marked, a model set with its
/// Bedrock target and price in one command, removed again; bad specs are usage errors.
#[tokio::test]
async fn models_are_listed_set_and_removed() {
    let api = AdminApi::start("cli_models").await;
    let ctl = Ctl::new(&api);
    let r = ctl.run(&["models", "list"]).ok();
    let line = r.stdout.lines().find(|l| l.starts_with("claude-opus-5-5 ")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(line.contains("opus") && line.trim_end().ends_with("unpriced"), "{line}");
    assert!(r.stdout.contains("unpriced (their requests have no cost"), "{}", r.stdout);

    let r = ctl
        .run(&[
            "models",
            "set",
            "claude-opus-5-5",
            "--family",
            "opus",
            "--bedrock",
            "global=global.anthropic.claude-opus-5-5-v1:0",
            "--price",
            "5/25/6.25/0.50",
            "--price",
            "bedrock@eu-central-1:5.5/27.5/6.875/0.55",
        ])
        .ok();
    assert!(r.stdout.contains("global=global.anthropic.claude-opus-5-5-v1:0"), "{}", r.stdout);
    assert!(r.stdout.contains("$5/$25") && r.stdout.contains("bedrock@eu-central-1: $5.5/$27.5"), "{}", r.stdout);
    let model = ctl.run(&["models", "get", "claude-opus-5-5", "--json"]).ok().json();
    assert_eq!(model["priced"], true, "{model}");
    assert_eq!(model["prices"].as_array().unwrap().len(), 2, "{model}");

    let r = ctl.run(&["models", "set", "claude-x-1", "--family", "opus", "--bedrock", "nonsense"]).fails(2);
    assert!(r.stderr.contains("SCOPE=MODEL_ID"), "{}", r.stderr);
    let r = ctl.run(&["models", "set", "claude-x-1", "--family", "opus", "--price", "5/25"]).fails(2);
    assert!(r.stderr.contains("INPUT/OUTPUT/CACHE_WRITE/CACHE_READ"), "{}", r.stderr);
    let r = ctl.run(&["models", "set", "claude-x-1", "--family", "opus", "--alias", "claude-opus-4-0"]).fails(1);
    assert!(r.stderr.contains("claude-opus-4") && r.stderr.contains("aliases[0]"), "{}", r.stderr);

    ctl.run(&["models", "remove", "claude-opus-5-5"]).ok();
    let r = ctl.run(&["models", "get", "claude-opus-5-5"]).fails(1);
    assert!(r.stderr.contains("not in the catalogue"), "{}", r.stderr);
    api.finish().await;
}

/// `ccpctl keys check` and onboarding with a Bedrock API key say whether failover is ready, and
/// what stops it: checked against a fake Bedrock with calls that cost nothing.
#[tokio::test]
async fn onboarding_and_keys_check_say_whether_failover_is_ready() {
    use ccp_tests::fake_bedrock::FakeBedrock;
    const BEDROCK_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1jbGktdGVzdC0wMDAx";
    let fake = FakeBedrock::start(&[BEDROCK_KEY]).unwrap();
    let url = fake.url();
    let api = AdminApi::start_with("cli_readiness", &[("CCP__PROXY__BEDROCK_ENDPOINT_URL", url.as_str())]).await;
    let ctl = Ctl::new(&api);
    let r = ctl.run_with(&["onboard", &unique("Fox"), "--bedrock-key-stdin", "--json"], BEDROCK_KEY).ok();
    let out = r.json();
    assert_eq!(out["failover"]["readiness"], "ready", "{out}");
    assert!(r.stderr.contains("failover ready (us-east-1"), "{}", r.stderr);
    let key_id = out["key_id"].as_str().unwrap().to_owned();

    fake.set_disabled_models(&["claude-haiku-4-5-20251001"]);
    let r = ctl.run(&["keys", "check", &key_id]).ok();
    let mut lines = r.stdout.lines();
    assert!(lines.next().unwrap().contains("failover NOT ready: model not enabled"), "{}", r.stdout);
    assert_eq!(
        lines.next().unwrap().trim(),
        "global.anthropic.claude-haiku-4-5-20251001-v1:0: model not enabled",
        "{}",
        r.stdout
    );
    let json = ctl.run(&["keys", "check", &key_id, "--json"]).ok().json();
    assert_eq!(json["bedrock_key"]["readiness"]["readiness"], "model_not_enabled", "{json}");

    // A key without a Bedrock API key: a clear refusal.
    let (plain, _) = api.issue_key(out["user_id"].as_str().unwrap()).await;
    let r = ctl.run(&["keys", "check", &plain]).fails(1);
    assert!(r.stderr.contains("has no Bedrock API key to check"), "{}", r.stderr);
    api.finish().await;
}

#[tokio::test]
async fn teams_are_managed_by_name_and_a_team_with_members_is_not_deleted() {
    let api = AdminApi::start("cli_teams").await;
    let ctl = Ctl::new(&api);
    let r = ctl.run(&["teams", "list"]).ok();
    assert!(r.stdout.contains("no teams"), "{}", r.stdout);
    let team = ctl
        .run(&["teams", "create", "data platform", "--budget", "2000", "--routing", "bedrock_only", "--json"])
        .ok()
        .json();
    let team_id = team["team_id"].as_str().unwrap().to_owned();
    assert_eq!(team["monthly_limit_usd"], "2000");
    let r = ctl.run(&["teams", "create", "Data Platform"]).fails(1);
    assert!(r.stderr.contains("already exists") && r.stderr.contains("(field: name)"), "{}", r.stderr);

    let user_id = api.create_user("dana").await;
    let r = ctl.run(&["users", "team", "dana", "data platform"]).ok();
    assert!(r.stdout.contains("is in team data platform now"), "{}", r.stdout);
    let r = ctl.run(&["users", "get", "dana"]).ok();
    assert!(r.stdout.contains("bedrock_only (team default; own: plan_first)"), "{}", r.stdout);
    let listed = ctl.run(&["users", "list", "--team", "data platform", "--json"]).ok().json();
    assert_eq!(listed["items"][0]["user_id"], user_id.as_str(), "{listed}");
    let r = ctl.run(&["teams", "get", &team_id]).ok();
    assert!(
        r.stdout.contains("members:") && r.stdout.contains("dana") && r.stdout.contains("$2000.00"),
        "{}",
        r.stdout
    );

    let r = ctl.run(&["teams", "delete", "data platform"]).fails(1);
    assert!(r.stderr.contains("1 member"), "{}", r.stderr);
    let r = ctl.run(&["teams", "budget", "data platform", "unlimited"]).ok();
    assert!(r.stdout.contains("unlimited"), "{}", r.stdout);
    let r = ctl.run(&["teams", "routing", "data platform", "none"]).ok();
    assert!(r.stdout.ends_with("none\n"), "{}", r.stdout);
    ctl.run(&["teams", "routing", "data platform", "sometimes"]).fails(2);
    let r = ctl.run(&["users", "team", "dana", "nope"]).fails(1);
    assert!(r.stderr.contains("no team is named \"nope\""), "{}", r.stderr);
    ctl.run(&["users", "team", "dana", "none"]).ok();
    let renamed = ctl.run(&["teams", "update", "data platform", "--name", "data", "--json"]).ok().json();
    assert_eq!(renamed["name"], "data");
    let r = ctl.run(&["teams", "delete", "data"]).ok();
    assert!(r.stdout.contains(&format!("deleted team {team_id}")), "{}", r.stdout);
    assert_eq!(api.get("/v1/teams").await.body, serde_json::json!([]));
    api.finish().await;
}
