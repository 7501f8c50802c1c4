//! The supply-chain policy (`deny.toml`, run by `scripts/deny`) can fail: cargo-deny with our
//! config refuses a throwaway crate whose dependency has a disallowed licence, comes from git, or
//! is a second version of a crate, and accepts the same crate without them (so the refusals are
//! the policy's, not a broken setup). Offline and in well under a second each: the throwaway
//! crates have only path and local-git dependencies, and their own CARGO_HOME.
//! Needs cargo-deny (`scripts/deny` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo_deny() -> PathBuf {
    let home_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(home_bin)
        .map(|dir| dir.join("cargo-deny"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| panic!("cargo-deny is not installed (run scripts/deny, which installs it)"))
}

/// A throwaway crate in its own directory: `deps` are lines of its `[dependencies]`, `crates`
/// the (directory, name, version, licence) of path crates beside it.
struct Throwaway {
    dir: PathBuf,
}

impl Throwaway {
    fn new(label: &str, deps: &[&str], crates: &[(&str, &str, &str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(ccp_tests::unique_name(label));
        for (sub, name, version, licence) in crates {
            write_crate(&dir.join(sub), name, version, licence, &[]);
        }
        write_crate(&dir, "throwaway", "0.1.0", "Apache-2.0", deps);
        Self { dir }
    }

    /// `cargo deny check <check>` with the repository's deny.toml: (passed, output).
    fn check(&self, check: &str) -> (bool, String) {
        let out = Command::new(cargo_deny())
            .arg("deny")
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .arg("--config")
            .arg(repo().join("deny.toml"))
            .args(["--color", "never", "check", "--allow", "unmatched-skip", check])
            // Its own cargo home: nothing from crates.io is needed, and the local git dependency
            // is fetched there, not into the developer's.
            .env("CARGO_HOME", self.dir.join(".cargo-home"))
            .env("CARGO_NET_OFFLINE", "false")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_crate(dir: &Path, name: &str, version: &str, licence: &str, deps: &[&str]) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\nlicense = \"{licence}\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\n{}\n",
        deps.join("\n")
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
}

fn assert_fails(t: &Throwaway, check: &str, expected: &str) {
    let (passed, out) = t.check(check);
    assert!(!passed, "cargo deny check {check} passed:\n{out}");
    assert!(out.contains(expected), "cargo deny check {check} failed, but not with {expected:?}:\n{out}");
    assert!(out.contains(&format!("{check} FAILED")), "{out}");
}

#[test]
fn a_clean_crate_passes_licences_bans_and_sources() {
    let t = Throwaway::new(
        "deny-clean",
        &[r#"fine = { path = "fine" }"#],
        &[("fine", "fine", "1.0.0", "MIT OR Apache-2.0")],
    );
    for check in ["licenses", "bans", "sources"] {
        let (passed, out) = t.check(check);
        assert!(passed, "cargo deny check {check} refused a clean crate:\n{out}");
    }
}

#[test]
fn a_licence_not_on_the_allow_list_fails() {
    let t = Throwaway::new(
        "deny-gpl",
        &[r#"copyleft = { path = "copyleft" }"#],
        &[("copyleft", "copyleft", "1.0.0", "GPL-3.0-only")],
    );
    assert_fails(&t, "licenses", "GPL-3.0-only");
}

#[test]
fn a_second_version_of_a_crate_fails() {
    let t = Throwaway::new(
        "deny-twin",
        &[r#"twin1 = { package = "twin", path = "twin1" }"#, r#"twin2 = { package = "twin", path = "twin2" }"#],
        &[("twin1", "twin", "1.0.0", "MIT"), ("twin2", "twin", "2.0.0", "MIT")],
    );
    assert_fails(&t, "bans", "duplicate entries for crate 'twin'");
}

#[test]
fn a_dependency_from_git_fails() {
    let t = Throwaway::new("deny-git", &[], &[]);
    let upstream = t.dir.join("upstream");
    write_crate(&upstream, "from-git", "1.0.0", "MIT", &[]);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&upstream)
            .args(["-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "--quiet"]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "a crate from git"]);
    let dep = format!("from-git = {{ git = \"file://{}\" }}", upstream.display());
    write_crate(&t.dir, "throwaway", "0.1.0", "Apache-2.0", &[&dep]);
    assert_fails(&t, "sources", "detected 'git' source not explicitly allowed");
}
