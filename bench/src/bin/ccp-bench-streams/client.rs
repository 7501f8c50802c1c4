//! The client side of a phase: every stream of the plan on a connection of its own, started on
//! the ramp and read to its end, timed with an `Instant` per chunk received (time to first
//! byte, the longest gap between two chunks, the events and bytes, whether it ended with
//! `message_stop`); meanwhile, the memory of the process in the middle sampled, and the CPU of
//! it and of the machine read before and after.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccp_bench::procfs::{self, CpuDelta, CpuSample, SystemCpu};
use ccp_bench::upstream::{DELTAS_HEADER, PACE_HEADER};
use reqwest::header::HeaderValue;

use crate::plan::{Plan, Stream};

/// How the last event of a complete answer ends.
const MESSAGE_STOP: &[u8] = b"data: {\"type\":\"message_stop\"}\n\n";

/// What one stream received.
#[derive(Debug, Clone, Default)]
pub struct StreamOutcome {
    /// Send start to the first body byte, ns.
    pub ttfb_ns: Option<u64>,
    /// Longest time between two consecutive chunks, ns.
    pub max_gap_ns: u64,
    /// SSE events received (blank-line ends).
    pub events: usize,
    /// Body bytes received.
    pub bytes: usize,
    /// Status 200, every event and byte, and `message_stop` last.
    pub complete: bool,
    /// Why not, when it failed.
    pub error: Option<String>,
}

/// One phase's raw figures.
pub struct PhaseRun {
    pub outcomes: Vec<StreamOutcome>,
    /// Most streams open at the same time.
    pub max_open: usize,
    /// Phase start to the end of the last stream.
    pub wall: Duration,
    /// CPU of the process in the middle over the phase (none for direct).
    pub middle_cpu: Option<CpuDelta>,
    /// VmRSS of the process in the middle: largest sampled, and 1 s after the last stream, KiB.
    pub rss_sampled_max_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// VmHWM (peak since the process started) after the phase, KiB.
    pub rss_peak_kib: Option<u64>,
    /// CPU of this process (client and fake upstream) over the phase, ns.
    pub own_cpu_ns: u64,
    /// Share of the machine busy over the phase (every CPU), and stolen by the hypervisor.
    pub machine_busy: f64,
    pub machine_steal: f64,
}

/// The client: one connection per stream (no idle connection is kept to be reused).
pub fn client(secs: u64) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(secs + 120))
        .build()
        .context("http client")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Sends one stream's request to `url` and reads the answer to its end.
async fn one(client: &reqwest::Client, url: &str, plan: &Plan, s: &Stream, open: &AtomicUsize) -> StreamOutcome {
    let mut out = StreamOutcome::default();
    let mut headers = plan.headers.clone();
    headers.insert(PACE_HEADER, HeaderValue::from(s.pace_ms));
    headers.insert(DELTAS_HEADER, HeaderValue::from(s.deltas));
    let t0 = Instant::now();
    let sent = client.post(url).headers(headers).body(plan.bodies[s.body].clone()).send().await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(format!("send: {e}"));
            return out;
        }
    };
    open.fetch_add(1, Ordering::Relaxed);
    let status = resp.status();
    let (mut last, mut prev_newline) = (t0, false);
    let mut tail: Vec<u8> = Vec::with_capacity(2 * MESSAGE_STOP.len());
    let result = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if !chunk.is_empty() => {
                let now = Instant::now();
                if out.ttfb_ns.is_none() {
                    out.ttfb_ns = Some(nanos(now - t0));
                } else {
                    out.max_gap_ns = out.max_gap_ns.max(nanos(now - last));
                }
                last = now;
                out.bytes += chunk.len();
                out.events += memchr::memmem::find_iter(&chunk, b"\n\n").count();
                if prev_newline && chunk[0] == b'\n' {
                    out.events += 1;
                }
                prev_newline = chunk.ends_with(b"\n");
                tail.extend_from_slice(&chunk[chunk.len().saturating_sub(MESSAGE_STOP.len())..]);
                tail.drain(..tail.len().saturating_sub(MESSAGE_STOP.len()));
            }
            Ok(Some(_)) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    open.fetch_sub(1, Ordering::Relaxed);
    out.error = match result {
        Err(e) => Some(format!("read after {} events: {e}", out.events)),
        Ok(()) if status != 200 => Some(format!("status {status}")),
        Ok(()) if out.events != s.expect_events || out.bytes != s.expect_bytes => Some(format!(
            "{} events and {} bytes, expected {} and {}",
            out.events, out.bytes, s.expect_events, s.expect_bytes
        )),
        Ok(()) if tail != MESSAGE_STOP => Some("did not end with message_stop".into()),
        Ok(()) => None,
    };
    out.complete = out.error.is_none();
    out
}

/// Runs every stream of `plan` against `url` (`…/v1/messages`), measuring process `middle`.
pub async fn phase(
    client: &reqwest::Client,
    url: &str,
    plan: &Arc<Plan>,
    middle: Option<u32>,
    clk_tck: u64,
) -> anyhow::Result<PhaseRun> {
    let open = Arc::new(AtomicUsize::new(0));
    let before = (middle.map(CpuSample::read).transpose()?, CpuSample::read(std::process::id())?, SystemCpu::read()?);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.streams.len() {
        let (client, url, plan, open) = (client.clone(), url.to_owned(), plan.clone(), open.clone());
        tasks.spawn(async move {
            let s = &plan.streams[i];
            tokio::time::sleep_until((started + s.start).into()).await;
            (i, one(&client, &url, &plan, s, &open).await)
        });
    }
    let mut outcomes = vec![StreamOutcome::default(); plan.streams.len()];
    let (mut max_open, mut rss_max) = (0, None::<u64>);
    let mut sample = tokio::time::interval(Duration::from_millis(250));
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => {
                    let (i, outcome) = joined.context("stream task")?;
                    outcomes[i] = outcome;
                }
                None => break,
            },
            _ = sample.tick() => {
                max_open = max_open.max(open.load(Ordering::Relaxed));
                if let Some(pid) = middle {
                    let (rss, _) = procfs::rss_kib(pid)?;
                    rss_max = Some(rss_max.unwrap_or(0).max(rss));
                }
            }
        }
    }
    let wall = started.elapsed();
    let after = (middle.map(CpuSample::read).transpose()?, CpuSample::read(std::process::id())?, SystemCpu::read()?);
    let middle_cpu = match (before.0, after.0) {
        (Some(b), Some(a)) => Some(CpuDelta::between(b, a, clk_tck)),
        _ => None,
    };
    let own_cpu_ns = CpuDelta::between(before.1, after.1, clk_tck).ticks_ns;
    let busy_ticks = after.2.busy.saturating_sub(before.2.busy) as f64;
    let steal_ticks = after.2.steal.saturating_sub(before.2.steal) as f64;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    let machine_ticks = wall.as_secs_f64() * clk_tck as f64 * cpus;
    let (mut rss_end_kib, mut rss_peak_kib) = (None, None);
    if let Some(pid) = middle {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, peak) = procfs::rss_kib(pid)?;
        (rss_end_kib, rss_peak_kib) = (Some(rss), Some(peak));
    }
    Ok(PhaseRun {
        outcomes,
        max_open,
        wall,
        middle_cpu,
        rss_sampled_max_kib: rss_max,
        rss_end_kib,
        rss_peak_kib,
        own_cpu_ns,
        machine_busy: busy_ticks / machine_ticks,
        machine_steal: steal_ticks / machine_ticks,
    })
}
