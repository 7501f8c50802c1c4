//! Measuring targets in alternating rounds: the request each target is sent, and what a
//! block of requests cost every process involved (the process in the middle — the proxy or a
//! reference —, this client, the upstream thread, NATS, and other work on the machine).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use ccp_bench::cli::Progress;
use ccp_bench::load::{self, RequestSpec, Summary};
use ccp_bench::procfs::{self, CpuDelta, CpuSample};
use ccp_bench::upstream::{Responses, Upstream, PACE_HEADER};
use reqwest::header::HeaderMap;

use crate::reference;
use crate::report::TargetResult;
use crate::stack::Stack;
use crate::Options;

/// Who is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The upstream, directly.
    Direct,
    /// The proxy, with the plain key.
    Proxy,
    /// The proxy, with the key whose user has a budget and a Bedrock key.
    Checked,
    /// nginx in front of the upstream (reference).
    Nginx,
    /// The framework floor in front of the upstream (reference).
    Floor,
}

impl Target {
    /// The process in the middle, whose CPU is reported.
    pub fn middle(self) -> Option<Middle> {
        match self {
            Target::Direct => None,
            Target::Proxy | Target::Checked => Some(Middle::Proxy),
            Target::Nginx => Some(Middle::Nginx),
            Target::Floor => Some(Middle::Floor),
        }
    }
}

/// The process between the client and the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Middle {
    Proxy,
    Nginx,
    Floor,
}

/// One measured setting.
pub struct Phase {
    pub name: &'static str,
    pub stream: bool,
    pub concurrency: usize,
    pub count: usize,
    pub pace_ms: u64,
}

/// What `measure` prepared for every phase.
pub struct Bench<'a> {
    pub client: reqwest::Client,
    pub headers: HeaderMap,
    pub stream_body: Bytes,
    pub json_body: Bytes,
    /// What the proxy sends Bedrock for these bodies (the same for both: `stream` is dropped).
    pub bedrock_body: Bytes,
    /// Headers of a direct Bedrock call.
    pub bedrock_headers: HeaderMap,
    /// The Bedrock model the failover requests go to.
    pub bedrock_model_id: String,
    pub responses: Responses,
    pub upstream: &'a Upstream,
    pub stack: &'a Stack,
    /// The reference proxies, those running.
    pub references: &'a reference::References,
    pub opts: &'a Options,
    pub clk_tck: u64,
    pub progress: &'a Progress,
    /// The proxy's CPU use when idle, ns per second (timers, NATS keep-alive).
    pub proxy_idle_ns_per_s: f64,
}

/// What the measured rounds of one target add up to.
#[derive(Default)]
struct Accumulated {
    samples: Vec<load::Sample>,
    wall: Duration,
    proxy_sched_ns: u64,
    proxy_ticks_ns: u64,
    proxy_sys_ns: u64,
    client_ns: u64,
    upstream_ns: u64,
    nats_ns: Option<u64>,
    other_ns: u64,
    steal_ticks: u64,
}

/// CPU of everything involved, at one moment.
struct CpuSnapshot {
    /// The process in the middle (the proxy during direct runs).
    middle: CpuSample,
    own_total: u64,
    own: CpuSample,
    system: procfs::SystemCpu,
    own_upstream: u64,
    nats: Option<CpuSample>,
}

impl Bench<'_> {
    /// The process whose CPU a block through `middle` reports: the proxy's during direct runs.
    fn middle_pid(&self, middle: Option<Middle>) -> anyhow::Result<u32> {
        let reference = match middle {
            None | Some(Middle::Proxy) => return Ok(self.stack.proxy.pid()),
            Some(Middle::Nginx) => &self.references.nginx,
            Some(Middle::Floor) => &self.references.floor,
        };
        reference.as_ref().map(reference::Reference::pid).context("the reference is not running")
    }

    fn snapshot(&self, middle: Option<Middle>) -> anyhow::Result<CpuSnapshot> {
        let own = procfs::threads(std::process::id());
        Ok(CpuSnapshot {
            middle: CpuSample::read(self.middle_pid(middle)?)?,
            own_total: own.iter().map(|(_, ns)| ns).sum(),
            own: CpuSample::read(std::process::id())?,
            system: procfs::SystemCpu::read()?,
            own_upstream: own.iter().filter(|(name, _)| name == "bench-upstream").map(|(_, ns)| ns).sum(),
            nats: self.opts.nats_pid.and_then(|p| CpuSample::read(p).ok()),
        })
    }

    pub fn spec(&self, target: Target, phase: &Phase) -> anyhow::Result<Arc<RequestSpec>> {
        let url = match target {
            Target::Direct => format!("{}/v1/messages?beta=true", self.upstream.url()),
            Target::Proxy => format!("{}/ak/{}/v1/messages?beta=true", self.stack.proxy.url, self.stack.key),
            Target::Checked => format!("{}/ak/{}/v1/messages?beta=true", self.stack.proxy.url, self.stack.checked_key),
            Target::Nginx => match &self.references.nginx {
                Some(nginx) => format!("{}/v1/messages?beta=true", nginx.url),
                None => bail!("no nginx running"),
            },
            // The proxy's URL shape: the floor strips /ak/{key} as the proxy does.
            Target::Floor => match &self.references.floor {
                Some(floor) => format!("{}/ak/{}/v1/messages?beta=true", floor.url, self.stack.key),
                None => bail!("no framework floor running"),
            },
        };
        let mut extra = Vec::new();
        if phase.pace_ms > 0 {
            extra.push((PACE_HEADER, phase.pace_ms.to_string()));
        }
        let (body, expect) = if phase.stream {
            (self.stream_body.clone(), self.responses.sse_body_len)
        } else {
            (self.json_body.clone(), self.responses.json_body_len)
        };
        RequestSpec::new(&url, &self.headers, &extra, body, expect)
    }

    /// Runs `count` requests and adds what they cost to `acc`.
    async fn block(
        &self,
        spec: &Arc<RequestSpec>,
        middle: Option<Middle>,
        concurrency: usize,
        count: usize,
        acc: &mut Accumulated,
    ) -> anyhow::Result<()> {
        let before = self.snapshot(middle)?;
        let run = load::run(&self.client, spec, concurrency, count).await?;
        let after = self.snapshot(middle)?;
        let proxy = CpuDelta::between(before.middle, after.middle, self.clk_tck);
        let upstream_ns = after.own_upstream.saturating_sub(before.own_upstream);
        // NATS (Go) starts and ends threads: utime+stime counts the ended ones too.
        let nats_ns = match (before.nats, after.nats) {
            (Some(b), Some(a)) => Some(CpuDelta::between(b, a, self.clk_tck).ticks_ns),
            _ => None,
        };
        // Machine busy time not spent by this process, the proxy or NATS: other work competing
        // for the cores (a compile, a test run) skews the figures.
        let busy_ns = after.system.busy.saturating_sub(before.system.busy) * (1_000_000_000 / self.clk_tck.max(1));
        let ours_ns =
            CpuDelta::between(before.own, after.own, self.clk_tck).ticks_ns + proxy.ticks_ns + nats_ns.unwrap_or(0);
        acc.samples.extend(run.samples);
        acc.wall += run.wall;
        acc.proxy_sched_ns += proxy.sched_ns;
        acc.proxy_ticks_ns += proxy.ticks_ns;
        acc.proxy_sys_ns += proxy.sys_ns;
        acc.upstream_ns += upstream_ns;
        acc.client_ns += after.own_total.saturating_sub(before.own_total).saturating_sub(upstream_ns);
        acc.nats_ns = nats_ns.map(|n| acc.nats_ns.unwrap_or(0) + n);
        acc.other_ns += busy_ns.saturating_sub(ours_ns);
        acc.steal_ticks += after.system.steal.saturating_sub(before.system.steal);
        Ok(())
    }

    fn result(&self, acc: Accumulated, middle: Option<Middle>, warmup: usize) -> TargetResult {
        let proxied = middle.is_some();
        // nginx and the floor do nothing when idle; the proxy follows NATS and ticks timers.
        let idle_ns_per_s = if middle == Some(Middle::Proxy) { self.proxy_idle_ns_per_s } else { 0.0 };
        let n = acc.samples.len().max(1) as f64;
        let per_req_ms = |ns: u64| ns as f64 / n / 1e6;
        let wall = acc.wall.as_secs_f64().max(1e-9);
        TargetResult {
            latency: Summary::of(acc.samples.iter().map(|s| s.total_ns).collect()),
            ttfb: Summary::of(acc.samples.iter().map(|s| s.ttfb_ns).collect()),
            wall_s: wall,
            rps: n / wall,
            warmup,
            client_cpu_ms_per_req: per_req_ms(acc.client_ns),
            upstream_cpu_ms_per_req: per_req_ms(acc.upstream_ns),
            proxy_cpu_ms_per_req: proxied.then(|| per_req_ms(acc.proxy_sched_ns)),
            proxy_cpu_ticks_ms_per_req: proxied.then(|| per_req_ms(acc.proxy_ticks_ns)),
            proxy_cpu_net_ms_per_req: proxied
                .then(|| (acc.proxy_sched_ns as f64 - idle_ns_per_s * wall).max(0.0) / n / 1e6),
            proxy_sys_share: proxied.then(|| acc.proxy_sys_ns as f64 / (acc.proxy_ticks_ns as f64).max(1.0)),
            nats_cpu_ms_per_req: acc.nats_ns.map(per_req_ms),
            other_cpu_cores: acc.other_ns as f64 / 1e9 / wall,
            steal_cores: acc.steal_ticks as f64 / self.clk_tck.max(1) as f64 / wall,
        }
    }

    /// Warms every spec up, then measures them in alternating rounds, the order rotated each round
    /// (A B C, B C A, C A B, ...), so that drift, passing load elsewhere and position hit all
    /// alike. `middle[i]`: what spec i goes through (its CPU is reported).
    pub async fn rounds(
        &self,
        specs: &[Arc<RequestSpec>],
        middle: &[Option<Middle>],
        concurrency: usize,
        count: usize,
        warmup: usize,
    ) -> anyhow::Result<Vec<TargetResult>> {
        for spec in specs {
            load::run(&self.client, spec, concurrency, warmup).await?;
        }
        let rounds = self.opts.rounds.clamp(1, count);
        let mut accs: Vec<Accumulated> = specs.iter().map(|_| Accumulated::default()).collect();
        for round in 0..rounds {
            let n = count / rounds + usize::from(round < count % rounds);
            // Each round starts with the next target (A B C, B C A, C A B, ...): no target always
            // runs right after another one.
            for i in 0..specs.len() {
                let t = (round + i) % specs.len();
                self.block(&specs[t], middle[t], concurrency, n, &mut accs[t]).await?;
            }
        }
        Ok(accs.into_iter().zip(middle).map(|(acc, &m)| self.result(acc, m, warmup)).collect())
    }
}
