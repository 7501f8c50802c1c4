#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The benchmark commands end to end with tiny counts (smoke tests of the commands, not
//! measurements). `ccp-bench` starts the proxy, nginx and the framework floor in front of its
//! upstream, runs every phase, and writes a report in which every target through the proxy and
//! both references answered and used CPU: keeps the README's `scripts/bench` working.
//! `ccp-bench-statusline` starts the proxy, the developer's line shows the Plan, Bedrock and the
//! budget, and every target answered and cost the proxy some CPU: keeps docs/statusline.md's
//! command working. `ccp-bench-streams` holds a few paced streams open directly and through the
//! proxy, and every one of them completes without a stall.

use std::path::Path;
use std::process::Command;

/// Runs a benchmark command against the debug proxy; its stdout and stderr, once it succeeded.
fn run_with_proxy(mut command: Command) -> (String, String) {
    let proxy = ccp_tests::system::workspace_bin("ccp-proxy", "ccp-proxy");
    let run = command.arg("--proxy-bin").arg(&proxy).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let name = Path::new(command.get_program()).file_name().unwrap().to_string_lossy();
    assert!(run.status.success(), "{name} failed:\n{stderr}\n{stdout}");
    (stdout.into_owned(), stderr.into_owned())
}

#[test]
fn the_benchmark_runs_every_phase_through_the_proxy_nginx_and_the_framework_floor() {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("nginx is not installed: scripts/install-clients.sh installs nginx-light (apt)");
    let out = std::env::temp_dir().join(format!("ccp-bench-smoke-{}.json", ulid::Ulid::new()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ccp-bench"));
    command
        .args(["--n1", "20", "--n32", "64", "--ttfb-n", "3", "--pace-ms", "5", "--failover-n", "5"])
        .args(["--warmup", "5", "--rounds", "2", "--rss-n", "32", "--nginx", nginx])
        .args(["--floor", env!("CARGO_BIN_EXE_ccp-bench-floor")])
        .arg("--out")
        .arg(&out);
    let (stdout, stderr) = run_with_proxy(command);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);

    let phases = report["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["stream c=1", "json c=1", "stream c=32", "json c=32", "paced stream c=1 (TTFB)"]);
    for p in phases {
        let name = p["name"].as_str().unwrap();
        assert!(p["nginx"].is_object(), "{name}: no nginx reference rows (did nginx start?):\n{stderr}");
        assert!(p["floor"].is_object(), "{name}: no framework floor rows (did it start?):\n{stderr}");
        let targets =
            ["direct", "proxy", "nginx", "floor"].into_iter().chain((p["pace_ms"] == 0).then_some("proxy_checked"));
        for target in targets {
            let t = &p[target];
            assert!(t["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{name} {target}: {t}");
            assert!(t["rps"].as_f64().unwrap() > 0.0, "{name} {target}: {t}");
            if target != "direct" {
                // The CPU of the process in the middle: the proxy's, or the reference's for its rows.
                assert!(t["proxy_cpu_ms_per_req"].as_f64().unwrap() > 0.0, "{name} {target}: {t}");
            }
        }
    }
    assert_eq!(report["failover"].as_array().unwrap().len(), 2);
    let checks = report["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["what"] == "proxy RSS idle after start"), "{checks:?}");
    // Issue 20's tail and CPU targets, against the references of the same rounds.
    for phase in ["stream c=1", "json c=1"] {
        for what in [
            format!("added p99 latency, {phase}"),
            format!("added p99 latency <= 3x nginx's, {phase}"),
            format!("proxy CPU per request / the floor's, {phase}"),
        ] {
            let check =
                checks.iter().find(|c| c["what"] == what.as_str()).unwrap_or_else(|| panic!("{what}: {checks:?}"));
            assert!(check["value"].as_f64().is_some_and(f64::is_finite), "{check}");
        }
    }
    assert!(
        !checks
            .iter()
            .any(|c| c["what"].as_str().unwrap().contains("paced") && c["what"].as_str().unwrap().contains("CPU")),
        "the paced stream's CPU is information, not a check"
    );
    assert!(stdout.contains("nginx as a plain reverse proxy, same rounds"), "{stdout}");
    assert!(stdout.contains("the framework floor, actix-web + awc set up as the proxy is"), "{stdout}");
    assert!(stdout.contains("  floor (ref)"), "{stdout}");
    assert!(stdout.contains("targets met"), "{stdout}");
}

#[test]
fn the_statusline_benchmark_measures_every_target_against_health() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ccp-bench-statusline"));
    command.args(["--n", "200", "--rounds", "1", "--warmup", "20", "--concurrency", "4"]);
    let (stdout, stderr) = run_with_proxy(command);
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

#[test]
fn the_open_streams_benchmark_holds_every_stream_to_its_end() {
    let out = std::env::temp_dir().join(format!("ccp-bench-streams-smoke-{}.json", ulid::Ulid::new()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_ccp-bench-streams"));
    command
        .args(["--streams", "20", "--secs", "2", "--ramp-secs", "0.5", "--nginx", "off"])
        .args(["--min-body", "100000", "--max-body", "300000", "--json"])
        .arg(&out);
    let (stdout, stderr) = run_with_proxy(command);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);

    for target in ["direct", "proxy"] {
        let t = &report[target];
        assert_eq!(t["complete"], 20, "{target}: {t}\n{stderr}");
        assert_eq!(t["failed"], 0, "{target}: {t}");
        assert_eq!(t["max_open"], 20, "{target}: all streams open at once: {t}");
        assert!(t["ttfb"]["p99_ms"].as_f64().unwrap() > 0.0, "{target}: {t}");
        assert!(t["events"].as_u64().unwrap() >= 20 * 40, "{target}: {t}");
    }
    let proxy = &report["proxy"];
    assert!(proxy["cpu_us_per_event"].as_f64().unwrap() > 0.0, "{proxy}");
    assert!(proxy["rss_peak_mib"].as_f64().unwrap() > 0.0, "{proxy}");
    assert!(report["nginx"].is_null());
    assert!(report["proxy_added_ttfb"]["p99_ms"].is_f64(), "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "no nginx, no TTFB check against it: {checks:?}");
    assert!(stdout.contains("targets met"), "{stdout}");
}
