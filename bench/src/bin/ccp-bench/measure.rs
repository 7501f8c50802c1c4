//! What a run measures, in order: the requests prepared (the Claude Code body, streamed and not,
//! and what the proxy sends Bedrock for it), the proxy idle, its peak memory under paced
//! streams, then every phase, the failover path after the c=32 ones; the report of it all.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ccp_bench::cli::Progress;
use ccp_bench::fixture::{self, in_order};
use ccp_bench::load;
use ccp_bench::procfs::{self, CpuSample};
use ccp_bench::upstream::{Responses, Upstream};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::reference;
use crate::report::{Report, RssResult, Setup};
use crate::rounds::{Bench, Phase};
use crate::stack::Stack;
use crate::Options;
use crate::{BEDROCK_KEY, BUDGET_USD, CIRCUIT_FAILURE_THRESHOLD, DEFAULT_BEDROCK_MODEL};

pub async fn measure(
    opts: &Options,
    stack: &Stack,
    references: &reference::References,
    upstream: &Upstream,
    progress: &Progress,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let load_before = procfs::loadavg();
    let proxy_pid = stack.proxy.pid();
    progress.say(format!(
        "proxy pid {proxy_pid} at {} (workers={}, pinned={}), key accepted",
        stack.proxy.url, opts.workers, opts.pin
    ));
    let fixture::Request { headers, mut body, order, source: body_source } = fixture::read_or_synthesize(&opts.fixture);
    body["stream"] = serde_json::Value::Bool(true);
    let stream_body = Bytes::from(in_order(&body, &order)?);
    body["stream"] = serde_json::Value::Bool(false);
    let json_body = Bytes::from(in_order(&body, &order)?);
    progress.say(format!("request body: {} bytes ({body_source}), {} headers", stream_body.len(), headers.len()));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss_kib, _) = procfs::rss_kib(proxy_pid)?;
    let idle_window = Duration::from_secs(2);
    let before = CpuSample::read(proxy_pid)?;
    tokio::time::sleep(idle_window).await;
    let after = CpuSample::read(proxy_pid)?;
    let proxy_idle_ns_per_s = after.sched_ns.saturating_sub(before.sched_ns) as f64 / idle_window.as_secs_f64();
    progress.say(format!(
        "proxy idle: RSS {:.1} MiB, CPU {:.3} ms/s",
        idle_rss_kib as f64 / 1024.0,
        proxy_idle_ns_per_s / 1e6
    ));

    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let bedrock_body = Bytes::from(bedrock_body(&body, beta)?);
    let bedrock_model_id = bedrock_model_for(body["model"].as_str());
    let mut bedrock_headers = HeaderMap::new();
    for (n, v) in [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("authorization", &*format!("Bearer {BEDROCK_KEY}")),
    ] {
        bedrock_headers.insert(HeaderName::from_static(n), HeaderValue::try_from(v)?);
    }
    progress.say(format!(
        "failover: Bedrock model {bedrock_model_id}, Bedrock body {} bytes; circuit_failure_threshold {CIRCUIT_FAILURE_THRESHOLD} \
         (the breaker never opens), budgets.enforce={}, monthly budget ${BUDGET_USD}",
        bedrock_body.len(),
        opts.budget_enforce
    ));

    let bench = Bench {
        client: load::client()?,
        headers,
        stream_body,
        json_body,
        bedrock_body,
        bedrock_headers,
        bedrock_model_id,
        responses: Responses::new(),
        upstream,
        stack,
        references,
        opts,
        clk_tck: procfs::clk_tck(),
        progress,
        proxy_idle_ns_per_s,
    };

    progress.say(format!("peak RSS: {} paced streams through the proxy, 32 at a time", opts.rss_n.max(32)));
    let (peak_rss_kib, rss_ttfb) = bench.rss_under_streams().await?;
    let (_, hwm_after_streams) = procfs::rss_kib(proxy_pid)?;
    progress.say(format!(
        "proxy RSS peak during 32 paced streams: {:.1} MiB (VmHWM {:.1} MiB)",
        peak_rss_kib as f64 / 1024.0,
        hwm_after_streams as f64 / 1024.0
    ));

    let phases = [
        Phase { name: "stream c=1", stream: true, concurrency: 1, count: opts.n1, pace_ms: 0 },
        Phase { name: "json c=1", stream: false, concurrency: 1, count: opts.n1, pace_ms: 0 },
        Phase { name: "stream c=32", stream: true, concurrency: 32, count: opts.n32, pace_ms: 0 },
        Phase { name: "json c=32", stream: false, concurrency: 32, count: opts.n32, pace_ms: 0 },
        Phase {
            name: "paced stream c=1 (TTFB)",
            stream: true,
            concurrency: 1,
            count: opts.ttfb_n,
            pace_ms: opts.pace_ms,
        },
    ];
    let mut results = Vec::new();
    let mut failover = Vec::new();
    for phase in &phases {
        progress.say(format!(
            "{}: {} requests per target{}",
            phase.name,
            phase.count,
            if phase.pace_ms > 0 {
                format!(
                    ", events {} ms apart (~{:.0} s per target)",
                    phase.pace_ms,
                    phase.count as f64 * (phase.pace_ms * 15) as f64 / 1000.0
                )
            } else {
                String::new()
            }
        ));
        results.push(bench.phase(phase).await?);
        if phase.name == "json c=32" {
            for (name, stream) in [("failover stream c=1", true), ("failover json c=1", false)] {
                progress.say(format!(
                    "{name}: {} requests per target (direct 429, direct Bedrock, proxy: 429 then Bedrock)",
                    opts.failover_n
                ));
                failover.push(bench.failover_phase(name, stream).await?);
            }
        }
    }
    let (end_rss_kib, end_hwm_kib) = procfs::rss_kib(proxy_pid)?;
    Ok(Report {
        generated_at: chrono::Utc::now().to_rfc3339(),
        options: opts.clone(),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        load_before,
        load_after: procfs::loadavg(),
        body_bytes: bench.stream_body.len(),
        body_source: body_source.to_owned(),
        duration_s: started.elapsed().as_secs_f64(),
        phases: results,
        failover,
        setup: Setup {
            circuit_failure_threshold: CIRCUIT_FAILURE_THRESHOLD,
            budgets_enforce: opts.budget_enforce.clone(),
            monthly_budget_usd: BUDGET_USD.to_owned(),
            bedrock_model_id: bench.bedrock_model_id.clone(),
            bedrock_body_bytes: bench.bedrock_body.len(),
        },
        proxy_idle_cpu_ms_per_s: proxy_idle_ns_per_s / 1e6,
        rss: RssResult {
            idle_mib: idle_rss_kib as f64 / 1024.0,
            peak_streams_mib: peak_rss_kib as f64 / 1024.0,
            hwm_after_streams_mib: hwm_after_streams as f64 / 1024.0,
            end_mib: end_rss_kib as f64 / 1024.0,
            hwm_end_mib: end_hwm_kib as f64 / 1024.0,
            streams: opts.rss_n.max(32),
            ttfb_under_32_streams: rss_ttfb,
        },
    })
}

/// The Bedrock model id the proxy picks for `model` with the default configuration and the
/// benchmark key (region us-east-1, default model [`DEFAULT_BEDROCK_MODEL`]).
fn bedrock_model_for(model: Option<&str>) -> String {
    let settings = ccp_runtime::config::BedrockSettings::default();
    ccp_proxy::bedrock_model_for(&settings, model, "us-east-1", Some(DEFAULT_BEDROCK_MODEL))
        .unwrap_or_else(|| DEFAULT_BEDROCK_MODEL.to_owned())
}

/// The body the proxy sends Bedrock for `body` with the default configuration.
fn bedrock_body(body: &serde_json::Value, beta_header: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let settings = ccp_runtime::config::BedrockSettings::default();
    ccp_proxy::bedrock_body(&settings, &serde_json::to_vec(body)?, beta_header).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_model_follows_the_mapping_then_the_default() {
        assert_eq!(
            bedrock_model_for(Some("claude-sonnet-4-5-20250929")),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(bedrock_model_for(Some("claude-opus-4-1-20250805")), "us.anthropic.claude-opus-4-1-20250805-v1:0");
        // Claude Code 2.1.332's default: the newest catalogued opus with a Bedrock target.
        assert_eq!(bedrock_model_for(Some("claude-opus-5-5")), "global.anthropic.claude-opus-4-5-20251101-v1:0");
        assert_eq!(bedrock_model_for(Some("mystery")), DEFAULT_BEDROCK_MODEL);
        assert_eq!(bedrock_model_for(None), DEFAULT_BEDROCK_MODEL);
    }

    #[test]
    fn bedrock_body_is_adapted_like_the_proxy_does() {
        let body = serde_json::json!({
            "model": "m", "stream": true, "max_tokens": 8, "metadata": {"user_id": "u"},
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "t", "defer_loading": true, "input_schema": {}}],
        });
        let out: serde_json::Value = serde_json::from_slice(
            &bedrock_body(&body, Some("claude-code-20250219, interleaved-thinking-2025-05-14")).unwrap(),
        )
        .unwrap();
        assert_eq!(out["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(out["anthropic_beta"], serde_json::json!(["interleaved-thinking-2025-05-14"]));
        for gone in ["model", "stream", "metadata"] {
            assert!(out.get(gone).is_none(), "{gone}");
        }
        assert!(out["tools"][0].get("defer_loading").is_none());
        assert_eq!(out["messages"], body["messages"]);
    }
}
