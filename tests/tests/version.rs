//! Every binary answers `--version` with its name and the release version, exits 0, and starts
//! nothing (no NATS, no ClickHouse, no settings needed); those on the common start also name the
//! git commit they were built from.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use ccp_runtime::telemetry::{COMMIT, VERSION};
use ccp_tests::system::workspace_bin;

fn version_of(binary: PathBuf, flag: &str) -> String {
    let out = std::process::Command::new(&binary)
        .arg(flag)
        // Nothing a service would need: --version must not look at settings or servers.
        .env_clear()
        .env("CCP__NATS__URL", "nats://127.0.0.1:1")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {flag}: {:?}\n{stdout}{}",
        binary.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_binary_prints_its_name_version_and_commit() {
    let binaries = [
        ("ccp-proxy", workspace_bin("ccp-proxy", "ccp-proxy")),
        ("ccp-projector", workspace_bin("ccp-projector", "ccp-projector")),
        ("ccp-admin", workspace_bin("ccp-admin-api", "ccp-admin")),
        ("ccp-fake-anthropic", PathBuf::from(env!("CARGO_BIN_EXE_ccp-fake-anthropic"))),
        ("ccp-fake-bedrock", PathBuf::from(env!("CARGO_BIN_EXE_ccp-fake-bedrock"))),
        ("ccp-bench", workspace_bin("ccp-bench", "ccp-bench")),
        ("ccp-soak", workspace_bin("ccp-bench", "ccp-soak")),
        ("ccp-bench-statusline", workspace_bin("ccp-bench", "ccp-bench-statusline")),
    ];
    let expected = |name: &str| format!("{name} {VERSION} ({COMMIT})\n");
    for (name, binary) in binaries {
        for flag in ["--version", "-V"] {
            assert_eq!(version_of(binary.clone(), flag), expected(name), "{name} {flag}");
        }
    }
    assert_ne!(COMMIT, "", "the build embeds a commit or `unknown`");
}

#[test]
fn ccpctl_prints_its_name_and_version() {
    let line = version_of(workspace_bin("ccp-admin-api", "ccpctl"), "--version");
    assert!(line.starts_with(&format!("ccpctl {VERSION}")), "{line}");
}
