//! Results: each target's figures from its phase, the TTFB the proxy and nginx add to the
//! direct one, the targets with PASS/MISS; the table on stdout and the JSON file.

use std::io::Write;

use ccp_bench::load::Summary;
use serde::Serialize;

use crate::client::PhaseRun;

/// Proxy resident memory with every stream open, MiB (issue 20).
pub const RSS_MIB: f64 = 300.0;
/// The proxy's added TTFB p99 may be at most this many times nginx's.
pub const TTFB_VS_NGINX: f64 = 2.0;

/// One target's phase, added up.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// `direct`, `proxy` or `nginx`.
    pub name: &'static str,
    pub streams: usize,
    /// Most streams open at once (sampled every 250 ms).
    pub max_open: usize,
    /// Received every event and ended with `message_stop`.
    pub complete: usize,
    /// Did not (error, short, wrong status).
    pub failed: usize,
    /// Had a gap between two chunks longer than the stall threshold.
    pub stalled: usize,
    /// SSE events and body bytes received, over every stream.
    pub events: u64,
    pub bytes: u64,
    /// Phase start to the end of the last stream, s.
    pub wall_s: f64,
    /// Client send to first body byte.
    pub ttfb: Summary,
    /// Each stream's longest gap between two chunks.
    pub max_gap: Summary,
    /// CPU of the process in the middle over the phase, s; per SSE event received, µs.
    pub cpu_s: Option<f64>,
    pub cpu_us_per_event: Option<f64>,
    /// Its share of the CPU in the kernel.
    pub cpu_sys_share: Option<f64>,
    /// Its VmHWM after the phase (peak since it started), VmRSS largest sampled and 1 s after
    /// the last stream, MiB.
    pub rss_peak_mib: Option<f64>,
    pub rss_sampled_max_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// CPU of the benchmark process (client and fake upstream), % of one core.
    pub client_cpu_pct: f64,
    /// The whole machine busy, and stolen by the hypervisor, % of every core.
    pub machine_busy_pct: f64,
    pub machine_steal_pct: f64,
    /// Up to five distinct reasons streams failed.
    pub errors: Vec<String>,
}

impl TargetResult {
    /// Adds up `run`, a stall being a gap longer than `stall_ms`.
    pub fn new(name: &'static str, run: &PhaseRun, stall_ms: u64) -> Self {
        let outcomes = &run.outcomes;
        let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
        let events: u64 = outcomes.iter().map(|o| o.events as u64).sum();
        let cpu_ns = run.middle_cpu.map(|c| c.sched_ns);
        let mut errors: Vec<String> = Vec::new();
        for e in outcomes.iter().filter_map(|o| o.error.as_ref()) {
            if errors.len() < 5 && !errors.contains(e) {
                errors.push(e.clone());
            }
        }
        Self {
            name,
            streams: outcomes.len(),
            max_open: run.max_open,
            complete: outcomes.iter().filter(|o| o.complete).count(),
            failed: outcomes.iter().filter(|o| !o.complete).count(),
            stalled: outcomes.iter().filter(|o| o.max_gap_ns > stall_ms * 1_000_000).count(),
            events,
            bytes: outcomes.iter().map(|o| o.bytes as u64).sum(),
            wall_s: run.wall.as_secs_f64(),
            ttfb: Summary::of(outcomes.iter().filter_map(|o| o.ttfb_ns).collect()),
            max_gap: Summary::of(outcomes.iter().filter(|o| o.ttfb_ns.is_some()).map(|o| o.max_gap_ns).collect()),
            cpu_s: cpu_ns.map(|ns| ns as f64 / 1e9),
            cpu_us_per_event: cpu_ns.filter(|_| events > 0).map(|ns| ns as f64 / 1e3 / events as f64),
            cpu_sys_share: run.middle_cpu.filter(|c| c.ticks_ns > 0).map(|c| c.sys_ns as f64 / c.ticks_ns as f64),
            rss_peak_mib: mib(run.rss_peak_kib),
            rss_sampled_max_mib: mib(run.rss_sampled_max_kib),
            rss_end_mib: mib(run.rss_end_kib),
            client_cpu_pct: run.own_cpu_ns as f64 / 1e9 / run.wall.as_secs_f64().max(1e-9) * 100.0,
            machine_busy_pct: run.machine_busy * 100.0,
            machine_steal_pct: run.machine_steal * 100.0,
            errors,
        }
    }
}

/// Time to first byte a target adds to the direct one, ms (percentile minus percentile).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Added {
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Added {
    fn of(target: &TargetResult, direct: &TargetResult) -> Self {
        Self { p50_ms: target.ttfb.p50_ms - direct.ttfb.p50_ms, p99_ms: target.ttfb.p99_ms - direct.ttfb.p99_ms }
    }
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub streams: usize,
    pub secs: u64,
    pub ramp_s: f64,
    pub body_bytes_min: usize,
    pub body_bytes_max: usize,
    pub body_source: &'static str,
    pub pace_ms_min: u64,
    pub pace_ms_max: u64,
    pub stall_ms: u64,
    pub proxy_workers: usize,
    /// Soft open-file limits: this process, the proxy, nginx.
    pub nofile: Vec<(String, u64)>,
    pub cpus: usize,
    pub loadavg_before: String,
    pub loadavg_after: String,
}

/// One target from the issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub value: f64,
    pub limit: f64,
    pub unit: &'static str,
    pub pass: bool,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub direct: TargetResult,
    pub proxy: TargetResult,
    pub nginx: Option<TargetResult>,
    pub proxy_added_ttfb: Added,
    pub nginx_added_ttfb: Option<Added>,
    pub checks: Vec<Check>,
}

impl Report {
    /// The report of the phases measured.
    pub fn new(setup: Setup, direct: TargetResult, proxy: TargetResult, nginx: Option<TargetResult>) -> Self {
        let proxy_added_ttfb = Added::of(&proxy, &direct);
        let nginx_added_ttfb = nginx.as_ref().map(|n| Added::of(n, &direct));
        let mut checks = vec![
            Check {
                what: format!("proxy peak RSS, {} streams open", setup.streams),
                value: proxy.rss_peak_mib.unwrap_or(f64::NAN),
                limit: RSS_MIB,
                unit: "MiB",
                pass: proxy.rss_peak_mib.is_some_and(|r| r <= RSS_MIB),
            },
            Check {
                what: format!("proxy streams stalled (gap > {} ms) or failed", setup.stall_ms),
                value: (proxy.stalled.max(proxy.failed)) as f64,
                limit: 0.0,
                unit: "streams",
                pass: proxy.stalled == 0 && proxy.failed == 0,
            },
        ];
        if let Some(n) = nginx_added_ttfb {
            let limit = TTFB_VS_NGINX * n.p99_ms;
            checks.push(Check {
                what: format!("proxy added TTFB p99 vs {TTFB_VS_NGINX}× nginx's"),
                value: proxy_added_ttfb.p99_ms,
                limit,
                unit: "ms",
                pass: proxy_added_ttfb.p99_ms <= limit,
            });
        }
        Self { setup, direct, proxy, nginx, proxy_added_ttfb, nginx_added_ttfb, checks }
    }

    /// The table.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let s = &self.setup;
        writeln!(
            out,
            "ccp-bench-streams: {} streams open at once for {} s each (started over {:.1} s), request bodies \
             {:.0}-{:.0} KB ({}), an SSE event every {}-{} ms; proxy workers {}; {} CPUs, load {} before, {} after",
            s.streams,
            s.secs,
            s.ramp_s,
            s.body_bytes_min as f64 / 1e3,
            s.body_bytes_max as f64 / 1e3,
            s.body_source,
            s.pace_ms_min,
            s.pace_ms_max,
            s.proxy_workers,
            s.cpus,
            s.loadavg_before,
            s.loadavg_after
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<12} {:>5} {:>5} {:>7} {:>6} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8} {:>8} {:>7} {:>7}",
            "target",
            "open",
            "done",
            "stalled",
            "failed",
            "TTFB p50",
            "TTFB p99",
            "gap p99",
            "gap max",
            "events",
            "CPU s",
            "µs/event",
            "peak MiB",
            "end MiB",
            "client",
            "machine"
        )?;
        let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"));
        for t in [Some(&self.direct), Some(&self.proxy), self.nginx.as_ref()].into_iter().flatten() {
            let name = if t.name == "nginx" { "nginx (ref)" } else { t.name };
            writeln!(
                out,
                "{:<12} {:>5} {:>5} {:>7} {:>6} {:>7.1}ms {:>7.1}ms {:>6.0}ms {:>6.0}ms {:>9} {:>7} {:>8} {:>8} {:>8} {:>6.0}% {:>6.0}%",
                name,
                t.max_open,
                t.complete,
                t.stalled,
                t.failed,
                t.ttfb.p50_ms,
                t.ttfb.p99_ms,
                t.max_gap.p99_ms,
                t.max_gap.max_ms,
                t.events,
                opt(t.cpu_s, 2),
                opt(t.cpu_us_per_event, 2),
                opt(t.rss_peak_mib, 0),
                opt(t.rss_end_mib, 0),
                t.client_cpu_pct,
                t.machine_busy_pct
            )?;
            for e in &t.errors {
                writeln!(out, "    failed: {e}")?;
            }
        }
        writeln!(out)?;
        write!(
            out,
            "added TTFB vs direct: proxy p50 {:+.1} ms, p99 {:+.1} ms",
            self.proxy_added_ttfb.p50_ms, self.proxy_added_ttfb.p99_ms
        )?;
        if let Some(n) = self.nginx_added_ttfb {
            write!(out, "; nginx p50 {:+.1} ms, p99 {:+.1} ms", n.p50_ms, n.p99_ms)?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "(open: most streams open at once; gap: each stream's longest time between two chunks; CPU: of the \
             process in the middle over its phase; client: the benchmark process, client and fake upstream, % of \
             one core; machine: every core busy, %)"
        )?;
        writeln!(out)?;
        for c in &self.checks {
            let verdict = if c.pass { "PASS" } else { "MISS" };
            writeln!(out, "{verdict}  {}: {:.1} {} (target <= {:.1})", c.what, c.value, c.unit, c.limit)?;
        }
        let met = self.checks.iter().filter(|c| c.pass).count();
        writeln!(out, "{met}/{} targets met", self.checks.len())
    }
}
