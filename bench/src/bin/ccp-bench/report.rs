//! Results: what was measured, the targets with PASS/MISS, and the JSON file; the table on
//! stdout is `table`.

mod table;

use serde::Serialize;

use ccp_bench::load::Summary;

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
/// Added p99 latency at concurrency 1, ms (issue 20).
pub const ADDED_P99_MS: f64 = 0.5;
/// Added p99 latency at concurrency 1 over nginx's added p99 in the same rounds (issue 20).
pub const ADDED_P99_NGINX_RATIO: f64 = 3.0;
/// Proxy CPU per request over the framework floor's in the same rounds (issue 20).
pub const CPU_FLOOR_RATIO: f64 = 1.3;

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

/// What a row of a phase went through.
#[derive(Debug, Clone, Copy)]
enum Through {
    /// The proxy, with the plain key.
    Proxy,
    /// The proxy, with the key whose user has a budget and a Bedrock key.
    Checked,
    /// A reference: its row label and what it is.
    Reference(&'static str, &'static str),
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

    /// Every row of this phase but the direct one, those measured: the proxy, +checks, the
    /// references.
    fn rows(&self) -> impl Iterator<Item = (Through, &TargetResult)> {
        [Some((Through::Proxy, &self.proxy)), self.proxy_checked.as_ref().map(|c| (Through::Checked, c))]
            .into_iter()
            .flatten()
            .chain(self.references().map(|r| (Through::Reference(r.label, r.what), r.result)))
    }

    /// `t`'s p50 latency minus the direct one.
    fn added_p50_of(&self, t: &TargetResult) -> f64 {
        t.latency.p50_ms - self.direct.latency.p50_ms
    }

    /// `t`'s p50 time to first byte minus the direct one.
    fn added_ttfb_p50_of(&self, t: &TargetResult) -> f64 {
        t.ttfb.p50_ms - self.direct.ttfb.p50_ms
    }

    /// `t`'s throughput over the direct one.
    fn rps_ratio_of(&self, t: &TargetResult) -> f64 {
        t.rps / self.direct.rps.max(1e-9)
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
        self.added_p50_of(&self.proxy)
    }
    fn added_p99(&self) -> f64 {
        self.proxy.latency.p99_ms - self.direct.latency.p99_ms
    }
    fn rps_ratio(&self) -> f64 {
        self.rps_ratio_of(&self.proxy)
    }
    fn added_ttfb_p50(&self) -> f64 {
        self.added_ttfb_p50_of(&self.proxy)
    }
    fn checked_added_p50(&self) -> Option<f64> {
        self.proxy_checked.as_ref().map(|c| self.added_p50_of(c))
    }
    fn checked_rps_ratio(&self) -> Option<f64> {
        self.proxy_checked.as_ref().map(|c| self.rps_ratio_of(c))
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
        // The tail and the CPU against the references measured in the same rounds: the
        // machine's own noise moves both sides alike.
        for p in self.latency_phases().filter(|p| p.concurrency == 1) {
            checks.push(Check::at_most(format!("added p99 latency, {}", p.name), p.added_p99(), ADDED_P99_MS, "ms"));
            if let Some(nginx) = &p.nginx {
                let limit = ADDED_P99_NGINX_RATIO * (nginx.latency.p99_ms - p.direct.latency.p99_ms);
                let what = format!("added p99 latency <= 3x nginx's, {}", p.name);
                checks.push(Check::at_most(what, p.added_p99(), limit, "ms"));
            }
            if let (Some(cpu), Some(floor)) =
                (p.proxy.proxy_cpu_ms_per_req, p.floor.as_ref().and_then(|f| f.proxy_cpu_ms_per_req))
            {
                let what = format!("proxy CPU per request / the floor's, {}", p.name);
                checks.push(Check::at_most(what, cpu / floor.max(1e-9), CPU_FLOOR_RATIO, "x"));
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
}
