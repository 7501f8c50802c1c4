//! The table on stdout: how it was measured, then one section per figure (latency, throughput,
//! failover, time to first byte, CPU, memory), the targets, and the references' summary.

use std::io::{Result, Write};

use super::{
    verdict, PhaseResult, Reference, Report, TargetResult, Through, ADDED_P50_MS, ADDED_TTFB_P50_MS, CPU_MS_PER_REQ,
    FAILOVER_ADDED_P50_MS, OTHER_LOAD_WARN, RSS_MIB, THROUGHPUT_RATIO,
};

impl Report {
    /// The table.
    pub fn print(&self, out: &mut impl Write) -> Result<()> {
        let line = "-".repeat(130);
        self.print_setup(out)?;
        self.print_latency(out, &line)?;
        self.print_throughput(out, &line)?;
        self.print_failover(out, &line)?;
        self.print_ttfb(out, &line)?;
        self.print_cpu(out, &line)?;
        self.print_memory(out, &line)?;
        self.print_targets(out, &line)?;
        self.print_references(out)?;
        out.flush()
    }

    /// What ran where, and how busy the machine was otherwise.
    fn print_setup(&self, out: &mut dyn Write) -> Result<()> {
        let o = &self.options;
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
        Ok(())
    }

    fn print_latency(&self, out: &mut dyn Write, line: &str) -> Result<()> {
        writeln!(out, "\nLATENCY (ms, send to last byte)\n{line}")?;
        writeln!(
            out,
            "{:<14}{:>6} | {:>8}{:>8} | {:>8}{:>8} | {:>9}{:>9}{:>7} | target: added p50 <= {:.3} ms",
            "phase", "n", "dir p50", "dir p99", "prx p50", "prx p99", "+p50", "+p99", "ratio", ADDED_P50_MS
        )?;
        for p in self.latency_phases() {
            for (through, t) in p.rows() {
                let added = p.added_p50_of(t);
                let target = through.target(|| match p.concurrency {
                    1 => verdict(added <= ADDED_P50_MS),
                    _ => "(n/a: queueing at c=32, see throughput)",
                });
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>8.3}{:>8.3} | {:>8.3}{:>8.3} | {:>+9.3}{:>+9.3}{:>6.2}x | {}",
                    row_name(p, through),
                    p.count,
                    p.direct.latency.p50_ms,
                    p.direct.latency.p99_ms,
                    t.latency.p50_ms,
                    t.latency.p99_ms,
                    added,
                    t.latency.p99_ms - p.direct.latency.p99_ms,
                    t.latency.p50_ms / p.direct.latency.p50_ms.max(1e-9),
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
        Ok(())
    }

    fn print_throughput(&self, out: &mut dyn Write, line: &str) -> Result<()> {
        writeln!(out, "\nTHROUGHPUT at c=32 (req/s)\n{line}")?;
        writeln!(
            out,
            "{:<14}{:>6} | {:>10}{:>10} | {:>7} | target: proxy/direct >= {:.2}x",
            "phase", "n", "direct", "proxy", "ratio", THROUGHPUT_RATIO
        )?;
        for p in self.latency_phases().filter(|p| p.concurrency > 1) {
            for (through, t) in p.rows() {
                let ratio = p.rps_ratio_of(t);
                let target = through.target(|| verdict(ratio >= THROUGHPUT_RATIO));
                writeln!(
                    out,
                    "{:<14}{:>6} | {:>10.0}{:>10.0} | {:>6.2}x | {}",
                    row_name(p, through),
                    p.count,
                    p.direct.rps,
                    t.rps,
                    ratio,
                    target
                )?;
            }
        }
        Ok(())
    }

    fn print_failover(&self, out: &mut dyn Write, line: &str) -> Result<()> {
        if self.failover.is_empty() {
            return Ok(());
        }
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
        )
    }

    fn print_ttfb(&self, out: &mut dyn Write, line: &str) -> Result<()> {
        let Some(p) = self.ttfb_phase() else {
            return Ok(());
        };
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
                p.added_ttfb_p50_of(t),
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
        )
    }

    fn print_cpu(&self, out: &mut dyn Write, line: &str) -> Result<()> {
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
            for (through, t) in p.rows() {
                let cpu_verdict = verdict(t.proxy_cpu_ms_per_req.unwrap_or(f64::NAN) <= CPU_MS_PER_REQ);
                let (name, target) = match through {
                    Through::Proxy if p.pace_ms > 0 => {
                        (p.name.clone(), "(info: one wake-up per paced event)".to_owned())
                    }
                    Through::Proxy => (p.name.clone(), cpu_verdict.to_owned()),
                    Through::Checked => (format!("  {} +checks", p.name), cpu_verdict.to_owned()),
                    Through::Reference(label, _) => {
                        (format!("  {} {label} (ref)", p.name), format!("(reference: {label}'s CPU in proxy)"))
                    }
                };
                cpu_row(out, &name, t, &[&p.direct], &target)?;
            }
        }
        for f in &self.failover {
            cpu_row(out, &f.name, &f.proxy, &[&f.direct_429, &f.direct_bedrock], "(info; direct: 429 + Bedrock)")?;
        }
        Ok(())
    }

    fn print_memory(&self, out: &mut dyn Write, line: &str) -> Result<()> {
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
        )
    }

    fn print_targets(&self, out: &mut dyn Write, line: &str) -> Result<()> {
        writeln!(out, "\nTARGETS\n{line}")?;
        let checks = self.checks();
        for c in &checks {
            // Limits derived from a reference (3× nginx's) have more digits than they mean.
            let limit = format!("{:.3}", c.limit);
            let limit = limit.trim_end_matches('0').trim_end_matches('.');
            writeln!(out, "{:<4}  {:<52} {:>10.3} {} {} {limit}", verdict(c.pass), c.what, c.value, c.unit, c.op)?;
        }
        let missed = checks.iter().filter(|c| !c.pass).count();
        writeln!(
            out,
            "{} of {} targets met{}",
            checks.len() - missed,
            checks.len(),
            if missed > 0 { format!(", {missed} missed") } else { String::new() }
        )
    }

    /// Each reference against the proxy, phase by phase (information, not targets).
    fn print_references(&self, out: &mut dyn Write) -> Result<()> {
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
                    p.added_p50_of(n),
                    p.added_ttfb_p50_of(n),
                    n.proxy_cpu_ms_per_req.unwrap_or(f64::NAN),
                    p.rps_ratio_of(n),
                    p.added_p50(),
                    p.proxy.proxy_cpu_ms_per_req.unwrap_or(f64::NAN),
                    p.rps_ratio()
                )?;
            }
        }
        Ok(())
    }
}

impl Through {
    /// The last column of a row: for a reference, what it is; else `proxy()`, the verdict.
    fn target(self, proxy: impl FnOnce() -> &'static str) -> String {
        match self {
            Through::Reference(_, what) => format!("(reference: {what})"),
            Through::Proxy | Through::Checked => proxy().to_owned(),
        }
    }
}

/// The first column of a latency or throughput row.
fn row_name(p: &PhaseResult, through: Through) -> String {
    match through {
        Through::Proxy => p.name.clone(),
        Through::Checked => "  +checks".to_owned(),
        Through::Reference(label, _) => format!("  {label} (ref)"),
    }
}
