#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! ccpctl's surface, without a server: every operation of the admin API has a command (and the
//! table that says which is true both ways), shell completions, the commands README shows, and
//! where ccpctl looks for the admin API.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::ctl::{config_dir, run_in, Run};

#[path = "../src/bin/ccpctl/operations.rs"]
mod operations;

/// Runs ccpctl with only `env` of its own settings (no URL, token or session unless given), in a
/// fresh config directory, `stdin` piped in.
fn ctl(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let dir = config_dir();
    let run = run_in(&dir, args, env, stdin);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// The subcommands `ccpctl <path> --help` lists.
fn subcommands(path: &[&str]) -> BTreeSet<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let r = ctl(&args, &[], "");
    assert_eq!(r.code, 0, "ccpctl {args:?}: {}", r.stderr);
    let mut names = BTreeSet::new();
    let mut lines = r.stdout.lines().skip_while(|l| l.trim() != "Commands:").skip(1);
    for line in lines.by_ref() {
        if !line.starts_with("  ") {
            break;
        }
        if let Some(name) = line.split_whitespace().next() {
            names.insert(name.to_owned());
        }
    }
    names.remove("help");
    names
}

/// The subcommand path at the start of `words` (`keys list` of `keys list "Dana Scully"`), each
/// word checked to be a subcommand.
fn command_path<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let mut path: Vec<&str> = Vec::new();
    for word in words {
        if word.starts_with('-') || !subcommands(&path).contains(*word) {
            break;
        }
        path.push(word);
    }
    path
}

#[test]
fn every_api_operation_has_a_command_and_every_command_exists() {
    let document = ccp_admin_api::openapi::document();
    let mut offered = BTreeSet::new();
    for (path, item) in &document.paths.paths {
        for method in ccp_admin_api::openapi::operation_methods(item) {
            offered.insert((method.to_owned(), path.clone()));
        }
    }
    assert!(offered.len() > 30, "the document lists {} operations", offered.len());
    let table: BTreeSet<(String, String)> =
        operations::OPERATIONS.iter().map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(table.len(), operations::OPERATIONS.len(), "an operation is in the table twice");
    let missing: Vec<_> = offered.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "admin API operations without a ccpctl command (add one, and a row in admin-api/src/bin/ccpctl/operations.rs): {missing:?}"
    );
    let stale: Vec<_> = table.difference(&offered).collect();
    assert!(stale.is_empty(), "operations.rs names operations the API does not offer: {stale:?}");

    // Every command in the table exists, with the flag that selects the operation.
    for (method, path, command) in operations::OPERATIONS {
        let words: Vec<&str> = command.split_whitespace().collect();
        let (flags, subcommand): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with('-'));
        assert_eq!(command_path(&subcommand), subcommand, "{method} {path}: `ccpctl {command}` is not a command");
        let mut args = subcommand.clone();
        args.push("--help");
        let r = ctl(&args, &[], "");
        assert_eq!(r.code, 0, "ccpctl {args:?} (for {method} {path}): {}", r.stderr);
        for flag in flags {
            assert!(r.stdout.contains(flag), "`ccpctl {command}`: {flag} is not in its help:\n{}", r.stdout);
        }
    }

    // `ccpctl endpoints` prints the table.
    let r = ctl(&["endpoints", "--json"], &[], "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let printed: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(printed.as_array().unwrap().len(), operations::OPERATIONS.len());
    assert_eq!(printed[0]["command"], format!("ccpctl {}", operations::OPERATIONS[0].2));
    let r = ctl(&["endpoints"], &[], "");
    assert!(r.stdout.starts_with("METHOD") && r.stdout.contains("PUT     /v1/pricing"), "{}", r.stdout);
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [("bash", "complete -F _ccpctl"), ("zsh", "#compdef ccpctl"), ("fish", "complete -c ccpctl")]
    {
        let r = ctl(&["completions", shell], &[], "");
        assert_eq!(r.code, 0, "completions {shell}: {}", r.stderr);
        assert!(r.stdout.contains(marker), "completions {shell} lacks `{marker}`:\n{}", r.stdout);
        for sub in ["users", "keys", "onboard", "usage", "models", "pricing", "circuits", "completions"] {
            assert!(r.stdout.contains(sub), "completions {shell} does not mention {sub}");
        }
        assert!(r.stderr.is_empty(), "{}", r.stderr);
    }
    let r = ctl(&["completions", "tcsh"], &[], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bash") && r.stderr.contains("fish"), "{}", r.stderr);
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Splits a shell line into words and operators (`|`, `;`, `&&`, `<(`, `)`, `<`, `>`), with
/// quotes removed; stops at a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '|' | ';' | '&' | '<' | '>' | '(' | ')' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                let mut op = c.to_string();
                if let Some(&next) = chars.peek() {
                    if matches!((c, next), ('<', '(') | ('&', '&') | ('|', '|') | ('>', '>')) {
                        op.push(next);
                        chars.next();
                    }
                }
                words.push(op);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The ccpctl invocations of a shell line: (program, arguments), redirections left out.
fn invocations(line: &str) -> Vec<(String, Vec<String>)> {
    let is_operator = |w: &str| matches!(w, "|" | ";" | "&" | "&&" | "||" | "<(" | "(" | ")" | "<" | ">" | ">>");
    let mut found = Vec::new();
    let words = shell_words(line);
    let mut i = 0;
    let mut at_command = true;
    while i < words.len() {
        let w = words[i].as_str();
        if matches!(w, "<" | ">" | ">>") {
            i += 2; // the redirection and its file
            continue;
        }
        if is_operator(w) {
            at_command = !matches!(w, ")");
            i += 1;
            continue;
        }
        if at_command && (w == "ccpctl" || w.ends_with("/ccpctl")) {
            let mut args = Vec::new();
            i += 1;
            while i < words.len() && !is_operator(&words[i]) {
                args.push(words[i].clone());
                i += 1;
            }
            found.push((w.to_owned(), args));
            continue;
        }
        at_command = matches!(w, "source" | "." | "eval" | "exec" | "command");
        i += 1;
    }
    found
}

#[test]
fn shell_lines_are_read_as_a_shell_would() {
    let found = invocations(
        r#"printf '%s' "$K" | target/release/ccpctl onboard "Fox Mulder" --bedrock-key-stdin  # a comment"#,
    );
    assert_eq!(
        found,
        [(
            "target/release/ccpctl".to_owned(),
            vec!["onboard".into(), "Fox Mulder".into(), "--bedrock-key-stdin".into()]
        )]
    );
    let found = invocations("target/release/ccpctl login --username admin < .local/admin-password");
    assert_eq!(found[0].1, ["login", "--username", "admin"]);
    let found = invocations("source <(target/release/ccpctl completions bash)");
    assert_eq!(found[0].1, ["completions", "bash"]);
    assert!(invocations("echo ccpctl users list").is_empty(), "an argument, not a command");
}

/// Every `ccpctl` command README shows parses: in code blocks the whole line (run against an
/// address where nothing listens, it may fail to reach a server, never with a usage error), in
/// prose the subcommand. Code blocks call ccpctl where `scripts/run` builds it, so they can be
/// pasted from the repository root.
#[test]
fn readme_commands_parse() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let run_script = std::fs::read_to_string(root.join("scripts/run")).unwrap();
    assert!(
        run_script.contains("BIN_DIR=target/release") && run_script.contains("-p ccp-admin-api"),
        "scripts/run no longer builds ccpctl into target/release: README's paths need updating"
    );
    let nowhere = format!("http://127.0.0.1:{}", ccp_tests::free_port());

    let mut in_block = false;
    let mut blocks = 0;
    for (n, line) in readme.lines().enumerate() {
        let n = n + 1;
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        for (program, args) in invocations(line) {
            blocks += 1;
            assert!(
                program == "target/release/ccpctl" || program == "target/debug/ccpctl",
                "README.md:{n}: `{program}` is not where scripts/run builds ccpctl (target/release/ccpctl): {line}"
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let path = command_path(&args);
            assert!(!path.is_empty(), "README.md:{n}: `ccpctl {}` names no command", args.join(" "));
            let r = ctl(&args, &[("CCPCTL_URL", &nowhere)], "ABSKREADMEtestInput\n");
            assert_ne!(r.code, 2, "README.md:{n}: `ccpctl {}` does not parse:\n{}", args.join(" "), r.stderr);
            assert!(!r.stderr.contains("Usage:"), "README.md:{n}: {}", r.stderr);
        }
    }
    assert!(blocks >= 8, "found only {blocks} ccpctl commands in README's code blocks");

    let mut prose = 0;
    for (n, line) in readme.lines().enumerate() {
        for span in line.split('`').skip(1).step_by(2) {
            let Some(rest) = span.strip_prefix("ccpctl ") else { continue };
            prose += 1;
            let words = shell_words(rest);
            let args: Vec<&str> = words.iter().map(String::as_str).collect();
            let path = command_path(&args);
            assert!(!path.is_empty(), "README.md:{}: `{span}` names no ccpctl command", n + 1);
            let mut help = path.clone();
            help.push("--help");
            assert_eq!(ctl(&help, &[], "").code, 0, "README.md:{}: {span}", n + 1);
        }
    }
    assert!(prose >= 5, "found only {prose} `ccpctl …` spans in README");
}

#[test]
fn the_admin_url_comes_from_flag_env_session_then_scripts_run() {
    let help = ctl(&["--help"], &[], "");
    for needle in ["CCPCTL_URL", "saved session", "CCP__ADMIN__LISTEN", "scripts/run", "http://127.0.0.1:8081"] {
        assert!(help.stdout.contains(needle), "--help does not mention {needle}:\n{}", help.stdout);
    }

    // Nothing set: scripts/run's default address.
    let r = ctl(&["whoami"], &[], "");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not logged in to http://127.0.0.1:8081"), "{}", r.stderr);
    // scripts/run's setting; an unspecified address is reached on loopback.
    let port = ccp_tests::free_port();
    for (listen, url) in [
        (format!("127.0.0.1:{port}"), format!("http://127.0.0.1:{port}")),
        (format!("0.0.0.0:{port}"), format!("http://127.0.0.1:{port}")),
        (format!("[::]:{port}"), format!("http://[::1]:{port}")),
    ] {
        let r = ctl(&["whoami"], &[("CCP__ADMIN__LISTEN", &listen)], "");
        assert!(r.stderr.contains(&format!("not logged in to {url}\n")), "{listen}: {}", r.stderr);
        let r = ctl(&["login", "--username", "x"], &[("CCP__ADMIN__LISTEN", &listen)], "password\n");
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(r.stderr.contains(&format!("cannot reach the admin API at {url}")), "{}", r.stderr);
    }
    let r = ctl(&["whoami"], &[("CCP__ADMIN__LISTEN", "not an address")], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("CCP__ADMIN__LISTEN"), "{}", r.stderr);

    // A saved session's URL comes before scripts/run's; CCPCTL_URL and --url before both.
    let dir = config_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let session_url = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let session = serde_json::json!({
        "url": session_url, "token": "ccps_not_a_real_session", "username": "someone",
        "expires_at": "2999-01-01T00:00:00Z",
    });
    let file = dir.join("session.json");
    std::fs::write(&file, session.to_string()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let listen = format!("127.0.0.1:{port}");
    let r = run_in(&dir, &["whoami"], &[("CCP__ADMIN__LISTEN", &listen)], "");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("cannot reach the admin API at {session_url}")), "{}", r.stderr);
    let env_url = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let r = run_in(&dir, &["whoami"], &[("CCP__ADMIN__LISTEN", &listen), ("CCPCTL_URL", &env_url)], "");
    assert!(
        r.stderr.contains(&format!("not logged in to {env_url} (the saved session is for {session_url})")),
        "{}",
        r.stderr
    );
    let flag_url = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let r = run_in(&dir, &["--url", &flag_url, "whoami"], &[("CCPCTL_URL", &env_url)], "");
    assert!(r.stderr.contains(&format!("not logged in to {flag_url} ")), "{}", r.stderr);
    // A token from the environment is not the session's: it goes to scripts/run's address.
    let r = run_in(&dir, &["whoami"], &[("CCP__ADMIN__LISTEN", &listen), ("CCPCTL_TOKEN", "ccpt_x")], "");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("cannot reach the admin API at http://{listen}")), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A developer's own view needs their access key, never as an argument.
#[test]
fn self_takes_the_access_key_from_stdin_or_the_environment_only() {
    let nowhere = format!("http://127.0.0.1:{}", ccp_tests::free_port());
    let r = ctl(&["self"], &[("CCPCTL_URL", &nowhere)], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no access key"), "{}", r.stderr);
    let r = ctl(&["self"], &[("CCPCTL_URL", &nowhere)], "not-a-key\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("not-a-key"), "{}", r.stderr);
    // With a key (stdin, or Claude Code's environment) it goes to the server, without admin login.
    for (stdin, env) in [
        ("ak_stdin\n", vec![]),
        ("", vec![("CCP_ACCESS_KEY", "ak_env")]),
        ("", vec![("ANTHROPIC_CUSTOM_HEADERS", "x-ccp-access-key: ak_header")]),
        ("", vec![("ANTHROPIC_BASE_URL", "https://proxy.example.com/ak/ak_url")]),
    ] {
        let mut env = env;
        env.push(("CCPCTL_URL", &nowhere));
        let r = ctl(&["self"], &env, stdin);
        assert_eq!(r.code, 3, "{env:?}: {}", r.stderr);
        assert!(!r.stderr.contains("ak_"), "{}", r.stderr);
    }
    let r = ctl(&["self", "ak_somekey"], &[("CCPCTL_URL", &nowhere)], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains("ak_somekey"), "{}", r.stderr);
}
