//! Embeds the git commit the binaries are built from as `CCP_GIT_COMMIT` (for `--version`,
//! `/health` and the `build_info` metric): the `CCP_GIT_COMMIT` environment variable when set
//! (the Docker build passes it, having no `.git`), else `git rev-parse --short=12 HEAD`, else
//! `unknown` (no git, or not a checkout). A build never fails for want of git.

#![allow(clippy::print_stdout)] // cargo reads a build script's stdout

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=CCP_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let from_env = std::env::var("CCP_GIT_COMMIT").ok().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    let commit = from_env.or_else(|| {
        let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
        let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"])?;
        // Rebuilt when HEAD moves: HEAD itself (a checkout), the branch it names (a commit), and
        // packed-refs (where a branch's ref may live instead). Only files that exist: cargo reruns
        // a build script watching a missing file on every build (and recompiles every dependent).
        let watch = |p: PathBuf| {
            if p.is_file() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        };
        let absolute = |p: String| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                dir.join(p)
            }
        };
        if let Some(git_dir) = git(&dir, &["rev-parse", "--git-dir"]).map(absolute) {
            watch(git_dir.join("HEAD"));
        }
        if let Some(common) = git(&dir, &["rev-parse", "--git-common-dir"]).map(absolute) {
            watch(common.join("packed-refs"));
            if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]).map(|b| common.join(b)) {
                // A packed branch has no file until its next commit writes one into its folder.
                if branch.is_file() {
                    watch(branch);
                } else if let Some(folder) = branch.parent().filter(|f| f.is_dir()) {
                    println!("cargo:rerun-if-changed={}", folder.display());
                }
            }
        }
        Some(commit)
    });
    // Only what is safe in a label value and a version line.
    let commit: String = commit
        .unwrap_or_else(|| "unknown".into())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(40)
        .collect();
    let commit = if commit.is_empty() { "unknown".to_owned() } else { commit };
    println!("cargo:rustc-env=CCP_GIT_COMMIT={commit}");
}
