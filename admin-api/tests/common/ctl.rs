//! `ccpctl` run as a user would: the binary as a child process, with its own config directory,
//! none of its settings taken from the test's environment, secrets fed on stdin only.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::AdminApi;

pub const CTL: &str = env!("CARGO_BIN_EXE_ccpctl");

/// A finished ccpctl run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "ccpctl {:?} failed\nstderr: {}\nstdout: {}", self.args, self.stderr, self.stdout);
        self
    }

    #[track_caller]
    pub fn fails(self, code: i32) -> Self {
        assert_eq!(self.code, code, "ccpctl {:?}\nstderr: {}\nstdout: {}", self.args, self.stderr, self.stdout);
        assert!(self.stderr.lines().any(|l| l.starts_with("error: ")), "{}", self.stderr);
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", self.stdout))
    }
}

/// A fresh config directory path (not created).
pub fn config_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ccpctl-test-{}", ulid::Ulid::new()))
}

/// Runs ccpctl with config directory `dir` and only `env` of its own settings (no URL, token,
/// session or access key unless given), `stdin` piped in (never a terminal).
pub fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(CTL);
    cmd.args(args)
        .env("CCPCTL_CONFIG_DIR", dir)
        .env_remove("CCPCTL_URL")
        .env_remove("CCPCTL_TOKEN")
        .env_remove("CCP__ADMIN__LISTEN")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CCP_ACCESS_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("ANTHROPIC_CUSTOM_HEADERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // ccpctl may exit before reading (e.g. a usage error): a broken pipe is fine.
    let _ = pipe.write_all(stdin.as_bytes());
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// How ccpctl is run against an admin API: at `url`, with `token` as `CCPCTL_TOKEN` (or none),
/// its session file in `dir` (removed on drop).
pub struct Ctl {
    pub url: String,
    pub dir: PathBuf,
    pub token: Option<String>,
}

impl Ctl {
    /// Authenticated as the initial admin through `CCPCTL_TOKEN`.
    pub fn new(api: &AdminApi) -> Self {
        Self::without_token(api).with_token(&api.token)
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// No `CCPCTL_TOKEN`: only what `login` saves.
    pub fn without_token(api: &AdminApi) -> Self {
        Self { url: api.url.clone(), dir: config_dir(), token: None }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, "")
    }

    /// Runs with `stdin` piped in.
    pub fn run_with(&self, args: &[&str], stdin: &str) -> Run {
        self.run_with_env(args, stdin, &[])
    }

    /// Runs with `stdin` piped in and `env` set besides the URL and token.
    pub fn run_with_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
        let mut all = vec![("CCPCTL_URL", self.url.as_str())];
        if let Some(t) = &self.token {
            all.push(("CCPCTL_TOKEN", t));
        }
        all.extend_from_slice(env);
        run_in(&self.dir, args, &all, stdin)
    }

    pub fn session_file(&self) -> PathBuf {
        self.dir.join("session.json")
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
