//! Results: the table on stdout, the targets with PASS/MISS, and the JSON file.

use std::io::Write;

use serde::Serialize;

use crate::load::Summary;
use crate::Options;

/// Added p50 latency (proxy − direct) at concurrency 1, ms.
pub const ADDED_P50_MS: f64 = 0.1;
/// Added p50 time to first byte on a paced stream, ms.
pub const ADDED_TTFB_P50_MS: f64 = 0.3;
/// Proxy CPU time per request, ms.
pub const CPU_MS_PER_REQ: f64 = 0.1;
/// Proxy throughput over direct throughput at concurrency 32.
pub const THROUGHPUT_RATIO: f64 = 0.5;
/// Cores used by other processes above which the report warns.
pub const OTHER_LOAD_WARN: f64 = 0.15;
/// Proxy resident memory, MiB.
pub const RSS_MIB: f64 = 40.0;
/// Added p50 latency of the failover path beyond the two upstreams' own p50s, ms.
pub const FAILOVER_ADDED_P50_MS: f64 = 1.0;

/// One target's figures in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// Send to end of response.
    pub latency: Summary,
    /// Send to first body byte.
    pub ttfb: Summary,
    /// Wall time of the measured requests.
    pub wall_s: f64,
    /// Requests per second over the measured requests.
    pub rps: f64,
    /// Warmup requests sent (and discarded) before.
    pub warmup: usize,
    /// The load generator's CPU per request (this process minus the upstream thread).
    pub client_cpu_ms_per_req: f64,
    /// The upstream thread's CPU per request.
    pub upstream_cpu_ms_per_req: f64,
    /// The proxy's CPU per request (schedstat of its threads, ns precision).
    pub proxy_cpu_ms_per_req: Option<f64>,
    /// The same from utime+stime (clock-tick precision, includes ended threads).
    pub proxy_cpu_ticks_ms_per_req: Option<f64>,
    /// The proxy's CPU per request minus its idle background use over the same time.
    pub proxy_cpu_net_ms_per_req: Option<f64>,
    /// Share of the proxy's CPU time spent in the kernel (stime / (utime + stime)).
    pub proxy_sys_share: Option<f64>,
    /// The NATS server's CPU per request (when its pid was given).
    pub nats_cpu_ms_per_req: Option<f64>,
    /// Cores used by other processes meanwhile (machine busy time minus bench, proxy, NATS).
    pub other_cpu_cores: f64,
    /// Cores stolen by the hypervisor meanwhile.
    pub steal_cores: f64,
}

/// One phase: the same requests, direct then through the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// Label.
    pub name: String,
    /// SSE (`"stream":true`) or JSON.
    pub stream: bool,
    /// Requests in flight.
    pub concurrency: usize,
    /// Measured requests per target.
    pub count: usize,
    /// Milliseconds between SSE events (0: all at once).
    pub pace_ms: u64,
    /// Straight to the upstream.
    pub direct: TargetResult,
    /// Through the proxy.
    pub proxy: TargetResult,
    /// Through the proxy with a key whose user has a monthly budget and that has a Bedrock key
    /// (budget and breaker checks on every request); unpaced phases only.
    pub proxy_checked: Option<TargetResult>,
    /// Through nginx as a plain reverse proxy (reference, when installed); its CPU is in the
    /// `proxy_cpu_*` fields.
    pub nginx: Option<TargetResult>,
    /// Through `ccp-bench-floor`, actix-web + awc configured as the proxy is and doing nothing
    /// else (reference: the framework floor, when built); its CPU is in the `proxy_cpu_*` fields.
    pub floor: Option<TargetResult>,
}

/// A reference measured beside the proxy: its row label, what it is, and its result.
struct Reference<'a> {
    label: &'static str,
    what: &'static str,
    result: &'a TargetResult,
}

impl PhaseResult {
    /// The reference rows of this phase, those measured.
    fn references(&self) -> impl Iterator<Item = Reference<'_>> {
        [
            self.nginx.as_ref().map(|result| Reference {
                label: "nginx",
                what: "nginx as a plain reverse proxy",
                result,
            }),
            self.floor.as_ref().map(|result| Reference {
                label: "floor",
                what: "the framework floor, actix-web + awc set up as the proxy is, doing nothing else",
                result,
            }),
        ]
        .into_iter()
        .flatten()
    }
}

/// The failover path: Anthropic answers 429, the proxy replays the request on Bedrock.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverResult {
    /// Label.
    pub name: String,
    /// SSE (Bedrock event stream) or JSON.
    pub stream: bool,
    /// Measured requests per target (c=1).
    pub count: usize,
    /// The 429 asked of the fake Anthropic directly.
    pub direct_429: TargetResult,
    /// The Bedrock call asked of the fake Bedrock directly (the body the proxy sends).
    pub direct_bedrock: TargetResult,
    /// Through the proxy: Anthropic 429, then Bedrock, answered as Anthropic would.
    pub proxy: TargetResult,
    /// Body sent to Bedrock.
    pub bedrock_body_bytes: usize,
    /// Body of the proxy's answer.
    pub answer_body_bytes: usize,
}

impl FailoverResult {
    /// The two upstreams' own p50s, added.
    pub fn upstreams_p50(&self) -> f64 {
        self.direct_429.latency.p50_ms + self.direct_bedrock.latency.p50_ms
    }
    /// Proxy p50 minus the two upstreams' own p50s.
    pub fn added_p50(&self) -> f64 {
        self.proxy.latency.p50_ms - self.upstreams_p50()
    }
    /// Proxy p99 minus the sum of the two upstreams' p99s (info: a sum of p99s is not a p99).
    pub fn added_p99(&self) -> f64 {
        self.proxy.latency.p99_ms - (self.direct_429.latency.p99_ms + self.direct_bedrock.latency.p99_ms)
    }
}

/// How the proxy and the keys were set up for the budget/breaker and failover phases.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// `proxy.circuit_failure_threshold` (set so high that no circuit opens during the run).
    pub circuit_failure_threshold: u32,
    /// `budgets.enforce`.
    pub budgets_enforce: String,
    /// Monthly budget of the checked and failover users, USD.
    pub monthly_budget_usd: String,
    /// Bedrock model of the failover requests.
    pub bedrock_model_id: String,
    /// Body sent to Bedrock.
    pub bedrock_body_bytes: usize,
}

impl PhaseResult {
    fn added_p50(&self) -> f64 {
        self.proxy.latency.p50_ms - self.direct.latency.p50_ms
    }
    fn added_p99(&self) -> f64 {
        self.proxy.latency.p99_ms - self.direct.latency.p99_ms
    }
    fn rps_ratio(&self) -> f64 {
        self.proxy.rps / self.direct.rps.max(1e-9)
    }
    fn added_ttfb_p50(&self) -> f64 {
        self.proxy.ttfb.p50_ms - self.direct.ttfb.p50_ms
    }
    fn checked_added_p50(&self) -> Option<f64> {
        self.proxy_checked.as_ref().map(|c| c.latency.p50_ms - self.direct.latency.p50_ms)
    }
    fn checked_rps_ratio(&self) -> Option<f64> {
        self.proxy_checked.as_ref().map(|c| c.rps / self.direct.rps.max(1e-9))
    }
}

/// The proxy's memory.
#[derive(Debug, Clone, Serialize)]
pub struct RssResult {
    /// VmRSS once ready, before any load.
    pub idle_mib: f64,
    /// Largest VmRSS sampled (every 2 ms) while 32 paced streams ran.
    pub peak_streams_mib: f64,
    /// VmHWM right after those streams.
    pub hwm_after_streams_mib: f64,
    /// VmRSS after every phase.
    pub end_mib: f64,
    /// VmHWM after every phase.
    pub hwm_end_mib: f64,
    /// Paced streams sent for the peak.
    pub streams: usize,
    /// Their time to first byte.
    pub ttfb_under_32_streams: Summary,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When.
    pub generated_at: String,
    /// With which options.
    pub options: Options,
    /// CPUs available.
    pub cpus: usize,
    /// Load average before the phases.
    pub load_before: String,
    /// Load average after them.
    pub load_after: String,
    /// Request body size.
    pub body_bytes: usize,
    /// Where the body came from.
    pub body_source: String,
    /// Seconds the measurements took.
    pub duration_s: f64,
    /// Every phase.
    pub phases: Vec<PhaseResult>,
    /// The failover path.
    pub failover: Vec<FailoverResult>,
    /// Setup of the budget/breaker and failover phases.
    pub setup: Setup,
    /// The proxy's CPU use while idle (timers, NATS keep-alive), ms per second.
    pub proxy_idle_cpu_ms_per_s: f64,
    /// Memory.
    pub rss: RssResult,
}

/// One target from the issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// `<=` or `>=`.
    pub op: &'static str,
    /// The target.
    pub limit: f64,
    /// Unit of both.
    pub unit: &'static str,
    /// Met.
    pub pass: bool,
}

impl Check {
    fn at_most(what: String, value: f64, limit: f64, unit: &'static str) -> Self {
        Self { what, value, op: "<=", limit, unit, pass: value <= limit }
    }
    fn at_least(what: String, value: f64, limit: f64, unit: &'static str) -> Self {
        Self { what, value, op: ">=", limit, unit, pass: value >= limit }
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

impl Report {
    fn latency_phases(&self) -> impl Iterator<Item = &PhaseResult> {
        self.phases.iter().filter(|p| p.pace_ms == 0)
    }

    fn ttfb_phase(&self) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.pace_ms > 0)
    }

    /// Every measured target with its phase's name.
    fn all_targets(&self) -> impl Iterator<Item = (&String, &TargetResult)> {
        let phases = self.phases.iter().flat_map(|p| {
            [Some(&p.direct), Some(&p.proxy), p.proxy_checked.as_ref()]
                .into_iter()
                .flatten()
                .chain(p.references().map(|r| r.result))
                .map(|t| (&p.name, t))
        });
        let failover = self
            .failover
            .iter()
            .flat_map(|f| [&f.direct_429, &f.direct_bedrock, &f.proxy].into_iter().map(|t| (&f.name, t)));
        phases.chain(failover)
    }

    /// Every target of the issue with its verdict.
    pub fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        for p in self.latency_phases().filter(|p| p.concurrency == 1) {
            checks.push(Check::at_most(format!("added p50 latency, {}", p.name), p.added_p50(), ADDED_P50_MS, "ms"));
            if let Some(added) = p.checked_added_p50() {
                let what = format!("added p50 latency, {} +checks", p.name);
                checks.push(Check::at_most(what, added, ADDED_P50_MS, "ms"));
            }
        }
        for f in &self.failover {
            let what = format!("failover added p50 (beyond 429+Bedrock), {}", f.name.trim_start_matches("failover "));
            checks.push(Check::at_most(what, f.added_p50(), FAILOVER_ADDED_P50_MS, "ms"));
        }
        if let Some(p) = self.ttfb_phase() {
            checks.push(Check::at_most(
                format!("added TTFB p50, {}", p.name),
                p.added_ttfb_p50(),
                ADDED_TTFB_P50_MS,
                "ms",
            ));
        }
        // A paced stream is one request of 15 events 20 ms apart: each event wakes the proxy
        // from idle, so its CPU is reported (beside nginx's) but is not a per-request figure.
        for p in self.latency_phases() {
            if let Some(cpu) = p.proxy.proxy_cpu_ms_per_req {
                checks.push(Check::at_most(format!("proxy CPU per request, {}", p.name), cpu, CPU_MS_PER_REQ, "ms"));
            }
            if let Some(cpu) = p.proxy_checked.as_ref().and_then(|c| c.proxy_cpu_ms_per_req) {
                let what = format!("proxy CPU per request, {} +checks", p.name);
                checks.push(Check::at_most(what, cpu, CPU_MS_PER_REQ, "ms"));
            }
        }
        for p in self.latency_phases().filter(|p| p.concurrency > 1) {
            checks.push(Check::at_least(
                format!("throughput proxy/direct, {}", p.name),
                p.rps_ratio(),
                THROUGHPUT_RATIO,
                "x",
            ));
            if let Some(ratio) = p.checked_rps_ratio() {
                let what = format!("throughput proxy/direct, {} +checks", p.name);
                checks.push(Check::at_least(what, ratio, THROUGHPUT_RATIO, "x"));
            }
        }
        checks.push(Check::at_most("proxy RSS idle after start".into(), self.rss.idle_mib, RSS_MIB, "MiB"));
        checks.push(Check::at_most(
            "proxy RSS peak during 32 paced streams".into(),
            self.rss.peak_streams_mib.max(self.rss.hwm_after_streams_mib),
            RSS_MIB,
            "MiB",
        ));
        checks
    }

    /// The results as JSON (with the checks).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["checks"] = serde_json::to_value(self.checks()).unwrap_or_default();
        v
    }

    /// The table.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let o = &self.options;
        let line = "-".repeat(130);
        writeln!(out)?;
        writeln!(
            out,
            "ClaudeCodeProxy benchmark: proxy vs direct, same in-process upstream, same client ({})",
            self.generated_at
        )?;
        writeln!(
            out,
            "proxy: {}, workers={}, pinned={} (client+upstream on CPU 0, proxy and references on CPU 1 when pinned); CPUs: {}",
            o.proxy_bin.display(),
            o.workers,
            o.pin,
            self.cpus
        )?;
        writeln!(
            out,
            "client: reqwest HTTP/1.1 keep-alive pool, 1 thread; upstreams (fake Anthropic + fake Bedrock): raw tokio, 1 thread; body {} B ({}); warmup discarded; {} alternating rounds per phase, order rotated each round",
            self.body_bytes, self.body_source, o.rounds
        )?;
        writeln!(
            out,
            "load average before {} / after {}; measured in {:.1} s",
            self.load_before, self.load_after, self.duration_s
        )?;
        // Per phase, weighted by wall time: machine busy time is counted in clock ticks (10 ms),
        // so a target measured for a few milliseconds alone (a direct 429) says little.
        let mut by_phase: Vec<(&String, f64, f64, f64)> = Vec::new();
        for (name, t) in self.all_targets() {
            if by_phase.last().is_none_or(|(n, ..)| *n != name) {
                by_phase.push((name, 0.0, 0.0, 0.0));
            }
            if let Some(last) = by_phase.last_mut() {
                last.1 += t.other_cpu_cores * t.wall_s;
                last.2 += t.steal_cores * t.wall_s;
                last.3 += t.wall_s;
            }
        }
        let (other, phase) = by_phase
            .iter()
            .map(|(n, other, _, wall)| (other / wall.max(1e-9), *n))
            .fold((0.0, None), |acc, (v, n)| if v > acc.0 { (v, Some(n)) } else { acc });
        let steal = by_phase.iter().map(|(_, _, steal, wall)| steal / wall.max(1e-9)).fold(0.0, f64::max);
        writeln!(
            out,
            "other processes used up to {other:.2} cores during a measured phase{}; hypervisor steal up to {steal:.2} cores",
            phase.map(|n| format!(" ({n})")).unwrap_or_default()
        )?;
        if other > OTHER_LOAD_WARN || steal > OTHER_LOAD_WARN {
            writeln!(out, "WARNING: other work competed for the CPUs; figures are skewed. Re-run on a quiet machine.")?;
        }

        writeln!(out, "\nLATENCY (ms, send to last byte)\n{line}")?;
        writeln!(
            out,
            "{:<14}{:>6} | {:>8}{:>8} | {:>8}{:>8} | {:>9}{:>9}{:>7} | target: added p50 <= {:.3} ms",
            "phase", "n", "dir p50", "dir p99", "prx p50", "prx p99", "+p50", "+p99", "ratio", ADDED_P50_MS
        )?;
        for p in self.latency_phases() {
            let rows = [
                Some((p.name.clone(), &p.proxy, None)),
                p.proxy_checked.as_ref().map(|c| ("  +checks".into(), c, None)),
            ]
            .into_iter()
            .flatten()
            .chain(p.references().map(|r| (format!("  {} (ref)", r.label), r.result, Some(r.what))));
            for (name, proxy, reference) in rows {
                let added = proxy.latency.p50_ms - p.direct.latency.p50_ms;
                let target = if let Some(what) = reference {
                    format!("(reference: {what})")
                } else if p.concurrency == 1 {
                    verdict(added <= ADDED_P50_MS).to_owned()
                } else {
                    "(n/a: queueing at c=32, see throughput)".to_owned()
                };
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>8.3}{:>8.3} | {:>8.3}{:>8.3} | {:>+9.3}{:>+9.3}{:>6.2}x | {}",
                    name,
                    p.count,
                    p.direct.latency.p50_ms,
                    p.direct.latency.p99_ms,
                    proxy.latency.p50_ms,
                    proxy.latency.p99_ms,
                    added,
                    proxy.latency.p99_ms - p.direct.latency.p99_ms,
                    proxy.latency.p50_ms / p.direct.latency.p50_ms.max(1e-9),
                    target
                )?;
            }
        }
        if self.phases.iter().any(|p| p.proxy_checked.is_some()) {
            writeln!(
                out,
                "+checks: the same requests in the same rounds, through the proxy with a key whose user has a monthly budget\n\
                 \x20        (${}) and that has a Bedrock key. The breaker runs for every Messages request of every key, the plain\n\
                 \x20        rows included. budgets.enforce={}: {}.",
                self.setup.monthly_budget_usd,
                self.setup.budgets_enforce,
                if self.setup.budgets_enforce == "all" {
                    "the budget is checked on every request"
                } else {
                    "passthrough requests skip the budget check (it runs on the failover path only)"
                }
            )?;
        }

        writeln!(out, "\nTHROUGHPUT at c=32 (req/s)\n{line}")?;
        writeln!(
            out,
            "{:<14}{:>6} | {:>10}{:>10} | {:>7} | target: proxy/direct >= {:.2}x",
            "phase", "n", "direct", "proxy", "ratio", THROUGHPUT_RATIO
        )?;
        for p in self.latency_phases().filter(|p| p.concurrency > 1) {
            writeln!(
                out,
                "{:<14}{:>6} | {:>10.0}{:>10.0} | {:>6.2}x | {}",
                p.name,
                p.count,
                p.direct.rps,
                p.proxy.rps,
                p.rps_ratio(),
                verdict(p.rps_ratio() >= THROUGHPUT_RATIO)
            )?;
            if let (Some(c), Some(ratio)) = (&p.proxy_checked, p.checked_rps_ratio()) {
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>10.0}{:>10.0} | {:>6.2}x | {}",
                    "  +checks",
                    p.count,
                    p.direct.rps,
                    c.rps,
                    ratio,
                    verdict(ratio >= THROUGHPUT_RATIO)
                )?;
            }
            for r in p.references() {
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>10.0}{:>10.0} | {:>6.2}x | (reference: {})",
                    format!("  {} (ref)", r.label),
                    p.count,
                    p.direct.rps,
                    r.result.rps,
                    r.result.rps / p.direct.rps.max(1e-9),
                    r.what
                )?;
            }
        }

        if !self.failover.is_empty() {
            let s = &self.setup;
            writeln!(
                out,
                "\nFAILOVER: Anthropic 429 -> Bedrock, c=1 (ms, send to last byte)\n\
                 every request: Anthropic 429, then Bedrock (circuit_failure_threshold={}: no circuit opens, Anthropic is\n\
                 always asked first); key with a Bedrock key, user with a monthly budget of ${} (budgets.enforce={});\n\
                 Bedrock model {}, body to Bedrock {} B; the 429 and the Bedrock call also asked directly, same rounds\n{line}",
                s.circuit_failure_threshold, s.monthly_budget_usd, s.budgets_enforce, s.bedrock_model_id, s.bedrock_body_bytes
            )?;
            writeln!(
                out,
                "{:<14}{:>6} | {:>8}{:>8} | {:>8}{:>8} | {:>8} | {:>8}{:>8}{:>9} | {:>9}{:>9} | target: added p50 <= {:.3} ms",
                "phase",
                "n",
                "429 p50",
                "429 p99",
                "bdr p50",
                "bdr p99",
                "sum p50",
                "prx p50",
                "prx p99",
                "prx ttfb",
                "+p50",
                "+p99",
                FAILOVER_ADDED_P50_MS
            )?;
            for f in &self.failover {
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>8.3}{:>8.3} | {:>8.3}{:>8.3} | {:>8.3} | {:>8.3}{:>8.3}{:>9.3} | {:>+9.3}{:>+9.3} | {}",
                    f.name.trim_start_matches("failover "),
                    f.count,
                    f.direct_429.latency.p50_ms,
                    f.direct_429.latency.p99_ms,
                    f.direct_bedrock.latency.p50_ms,
                    f.direct_bedrock.latency.p99_ms,
                    f.upstreams_p50(),
                    f.proxy.latency.p50_ms,
                    f.proxy.latency.p99_ms,
                    f.proxy.ttfb.p50_ms,
                    f.added_p50(),
                    f.added_p99(),
                    verdict(f.added_p50() <= FAILOVER_ADDED_P50_MS)
                )?;
            }
            writeln!(
                out,
                "+p50 = prx p50 - (429 p50 + bdr p50); +p99 = prx p99 - (429 p99 + bdr p99) (info: a sum of p99s is not a p99);\n\
                 prx ttfb = p50 time to the answer's first body byte (the fakes answer at once: a gap to prx p50 is the proxy's)"
            )?;
        }

        if let Some(p) = self.ttfb_phase() {
            writeln!(
                out,
                "\nTIME TO FIRST BODY BYTE, paced stream ({} ms between SSE events, c=1) (ms)\n{line}",
                p.pace_ms
            )?;
            writeln!(
                out,
                "{:<14}{:>6} | {:>8}{:>8} | {:>8}{:>8} | {:>9}{:>9} | target: added TTFB p50 <= {:.3} ms",
                "", "n", "dir p50", "dir p99", "prx p50", "prx p99", "+p50", "+p99", ADDED_TTFB_P50_MS
            )?;
            let ttfb_row = |out: &mut dyn Write, name: &str, t: &TargetResult, verdict: &str| {
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>8.3}{:>8.3} | {:>8.3}{:>8.3} | {:>+9.3}{:>+9.3} | {}",
                    name,
                    p.count,
                    p.direct.ttfb.p50_ms,
                    p.direct.ttfb.p99_ms,
                    t.ttfb.p50_ms,
                    t.ttfb.p99_ms,
                    t.ttfb.p50_ms - p.direct.ttfb.p50_ms,
                    t.ttfb.p99_ms - p.direct.ttfb.p99_ms,
                    verdict
                )
            };
            ttfb_row(out, "ttfb", &p.proxy, verdict(p.added_ttfb_p50() <= ADDED_TTFB_P50_MS))?;
            for r in p.references() {
                ttfb_row(out, &format!("ttfb {}", r.label), r.result, &format!("(reference: {})", r.what))?;
            }
            writeln!(
                out,
                "{:<14}{:>6} | {:>8.3}{:>8.3} | {:>8.3}{:>8.3} | {:>+9.3}{:>+9.3} | (whole paced stream, info)",
                "total",
                p.count,
                p.direct.latency.p50_ms,
                p.direct.latency.p99_ms,
                p.proxy.latency.p50_ms,
                p.proxy.latency.p99_ms,
                p.added_p50(),
                p.added_p99()
            )?;
        }

        writeln!(
            out,
            "\nCPU TIME PER REQUEST (ms; measured requests only; proxy idle background {:.3} ms/s)\n{line}",
            self.proxy_idle_cpu_ms_per_s
        )?;
        writeln!(
            out,
            "{:<36} | {:>7}{:>7}{:>8}{:>5} | {:>7}{:>7}{:>7} | {:>7}{:>7} | target: proxy <= {:.3} ms",
            "phase", "proxy", "net", "(ticks)", "sys", "client", "upstr", "nats", "client", "upstr", CPU_MS_PER_REQ
        )?;
        writeln!(out, "{:<36} | {:>27} | {:>21} | {:>14} |", "", "proxy", "others, proxy run", "direct run")?;
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let cpu_row =
            |out: &mut dyn Write, name: &str, proxy: &TargetResult, direct: &[&TargetResult], verdict: &str| {
                writeln!(
                    out,
                    "{:<36} | {:>7.3}{:>7}{:>8}{:>4.0}% | {:>7.3}{:>7.3}{:>7} | {:>7.3}{:>7.3} | {}",
                    name,
                    proxy.proxy_cpu_ms_per_req.unwrap_or(f64::NAN),
                    opt(proxy.proxy_cpu_net_ms_per_req),
                    opt(proxy.proxy_cpu_ticks_ms_per_req),
                    proxy.proxy_sys_share.unwrap_or(0.0) * 100.0,
                    proxy.client_cpu_ms_per_req,
                    proxy.upstream_cpu_ms_per_req,
                    opt(proxy.nats_cpu_ms_per_req),
                    direct.iter().map(|d| d.client_cpu_ms_per_req).sum::<f64>(),
                    direct.iter().map(|d| d.upstream_cpu_ms_per_req).sum::<f64>(),
                    verdict
                )
            };
        for p in &self.phases {
            let cpu = p.proxy.proxy_cpu_ms_per_req.unwrap_or(f64::NAN);
            let verdict =
                if p.pace_ms > 0 { "(info: one wake-up per paced event)" } else { verdict(cpu <= CPU_MS_PER_REQ) };
            cpu_row(out, &p.name, &p.proxy, &[&p.direct], verdict)?;
            if let Some(c) = &p.proxy_checked {
                let cpu = c.proxy_cpu_ms_per_req.unwrap_or(f64::NAN);
                cpu_row(out, &format!("  {} +checks", p.name), c, &[&p.direct], self::verdict(cpu <= CPU_MS_PER_REQ))?;
            }
            for r in p.references() {
                cpu_row(
                    out,
                    &format!("  {} {} (ref)", p.name, r.label),
                    r.result,
                    &[&p.direct],
                    &format!("(reference: {}'s CPU in proxy)", r.label),
                )?;
            }
        }
        for f in &self.failover {
            cpu_row(out, &f.name, &f.proxy, &[&f.direct_429, &f.direct_bedrock], "(info; direct: 429 + Bedrock)")?;
        }

        writeln!(out, "\nPROXY MEMORY (MiB)\n{line}")?;
        let r = &self.rss;
        writeln!(
            out,
            "idle after start (VmRSS)                          {:>8.1}   target <= {:.0} MiB  {}",
            r.idle_mib,
            RSS_MIB,
            verdict(r.idle_mib <= RSS_MIB)
        )?;
        let peak = r.peak_streams_mib.max(r.hwm_after_streams_mib);
        writeln!(
            out,
            "peak during {} paced streams, 32 at a time        {:>8.1}   target <= {:.0} MiB  {}   (sampled VmRSS max {:.1}, VmHWM {:.1})",
            r.streams,
            peak,
            RSS_MIB,
            verdict(peak <= RSS_MIB),
            r.peak_streams_mib,
            r.hwm_after_streams_mib
        )?;
        writeln!(
            out,
            "after every phase: VmRSS {:.1}, VmHWM {:.1} (info; includes the c=32 throughput runs)",
            r.end_mib, r.hwm_end_mib
        )?;
        writeln!(
            out,
            "TTFB through the proxy with 32 paced streams in flight: p50 {:.3} ms, p99 {:.3} ms (info)",
            r.ttfb_under_32_streams.p50_ms, r.ttfb_under_32_streams.p99_ms
        )?;

        writeln!(out, "\nTARGETS\n{line}")?;
        let checks = self.checks();
        for c in &checks {
            writeln!(out, "{:<4}  {:<52} {:>10.3} {} {} {}", verdict(c.pass), c.what, c.value, c.unit, c.op, c.limit)?;
        }
        let missed = checks.iter().filter(|c| !c.pass).count();
        writeln!(
            out,
            "{} of {} targets met{}",
            checks.len() - missed,
            checks.len(),
            if missed > 0 { format!(", {missed} missed") } else { String::new() }
        )?;
        let mut labels: Vec<&str> = Vec::new();
        for r in self.phases.iter().flat_map(PhaseResult::references) {
            if !labels.contains(&r.label) {
                labels.push(r.label);
            }
        }
        for label in labels {
            let rows: Vec<(&PhaseResult, Reference<'_>)> = self
                .phases
                .iter()
                .flat_map(|p| p.references().filter(|r| r.label == label).map(move |r| (p, r)))
                .collect();
            if let Some((_, first)) = rows.first() {
                writeln!(out, "\n{}, same rounds (reference, not a target):", first.what)?;
            }
            for (p, r) in rows {
                let n = r.result;
                writeln!(
                    out,
                    "      {:<24} added p50 {:>+7.3} ms  added TTFB p50 {:>+7.3} ms  CPU {:>6.3} ms/req  throughput {:>5.2}x  | proxy: {:>+7.3} ms, {:>6.3} ms/req, {:>5.2}x",
                    p.name,
                    n.latency.p50_ms - p.direct.latency.p50_ms,
                    n.ttfb.p50_ms - p.direct.ttfb.p50_ms,
                    n.proxy_cpu_ms_per_req.unwrap_or(f64::NAN),
                    n.rps / p.direct.rps.max(1e-9),
                    p.added_p50(),
                    p.proxy.proxy_cpu_ms_per_req.unwrap_or(f64::NAN),
                    p.rps_ratio()
                )?;
            }
        }
        out.flush()
    }
}
