#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `ccp-bench-statusline` end to end with tiny counts (a smoke test of the command, not a
//! measurement): the proxy starts, the developer's line shows the Plan, Bedrock and the budget,
//! and every target answered and cost the proxy some CPU. Keeps docs/statusline.md's command
//! working.

use std::process::Command;

#[test]
fn the_statusline_benchmark_measures_every_target_against_health() {
    let proxy = ccp_tests::system::workspace_bin("ccp-proxy", "ccp-proxy");
    let run = Command::new(env!("CARGO_BIN_EXE_ccp-bench-statusline"))
        .args(["--n", "200", "--rounds", "1", "--warmup", "20", "--concurrency", "4"])
        .arg("--proxy-bin")
        .arg(&proxy)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "ccp-bench-statusline failed:\n{stderr}\n{stdout}");
    assert!(stderr.contains("Bedrock since") && stderr.contains("Plan 5h 100%"), "{stderr}");
    for target in
        ["GET /health (baseline)", "statusline text", "statusline JSON", "statusline 304", "statusline bad key"]
    {
        let row =
            stdout.lines().find(|l| l.starts_with(target)).unwrap_or_else(|| panic!("no row {target}:\n{stdout}"));
        let cpu: f64 = row[target.len()..].split_whitespace().next().unwrap().trim_end_matches("µs").parse().unwrap();
        assert!(cpu > 0.0, "{row}");
    }
    assert!(stdout.contains("µs of proxy CPU per call"), "{stdout}");
}
