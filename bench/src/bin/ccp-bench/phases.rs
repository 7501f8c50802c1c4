//! The phases: the passthrough phases (direct, proxy, +checks and the references, one setting
//! each), the failover path, and the proxy's peak memory under paced streams.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ccp_bench::load::{self, RequestSpec, Summary};
use ccp_bench::procfs;
use ccp_bench::upstream::SCENARIO_HEADER;

use crate::report::{FailoverResult, PhaseResult, TargetResult};
use crate::rounds::{Bench, Middle, Phase, Target};

impl Bench<'_> {
    /// Direct, proxied, (unpaced phases) proxied with the budget/breaker key and (when running)
    /// through nginx and the framework floor, warmed up, then measured in alternating rounds.
    pub async fn phase(&self, phase: &Phase) -> anyhow::Result<PhaseResult> {
        let mut targets = vec![Target::Direct, Target::Proxy];
        if phase.pace_ms == 0 {
            targets.push(Target::Checked);
        }
        if self.references.nginx.is_some() {
            targets.push(Target::Nginx);
        }
        if self.references.floor.is_some() {
            targets.push(Target::Floor);
        }
        let specs = targets.iter().map(|&t| self.spec(t, phase)).collect::<anyhow::Result<Vec<_>>>()?;
        let middle: Vec<Option<Middle>> = targets.iter().map(|t| t.middle()).collect();
        let warmup = if phase.pace_ms > 0 { (phase.count / 20).max(5) } else { self.opts.warmup.max(phase.count / 10) };
        let results = self.rounds(&specs, &middle, phase.concurrency, phase.count, warmup).await?;
        let mut by_target: Vec<(Target, TargetResult)> = targets.into_iter().zip(results).collect();
        let mut take = |target: Target| by_target.iter().position(|(t, _)| *t == target).map(|i| by_target.remove(i).1);
        let (Some(direct), Some(proxy)) = (take(Target::Direct), take(Target::Proxy)) else {
            bail!("missing results");
        };
        let proxy_checked = take(Target::Checked);
        let nginx = take(Target::Nginx);
        let floor = take(Target::Floor);
        self.progress.say(format!(
            "{:<24} direct: p50 {:.3} ms  p99 {:.3} ms  ttfb p50 {:.3} ms  {:.0} req/s",
            phase.name, direct.latency.p50_ms, direct.latency.p99_ms, direct.ttfb.p50_ms, direct.rps
        ));
        let say = |label: &str, t: &TargetResult| {
            self.progress.say(format!(
                "{:<24} {label} p50 {:.3} ms  p99 {:.3} ms  ttfb p50 {:.3} ms  {:.0} req/s  cpu {:.3} ms/req",
                phase.name,
                t.latency.p50_ms,
                t.latency.p99_ms,
                t.ttfb.p50_ms,
                t.rps,
                t.proxy_cpu_ms_per_req.unwrap_or(0.0)
            ));
        };
        say("proxy: ", &proxy);
        if let Some(checked) = &proxy_checked {
            say("+checks:", checked);
        }
        if let Some(nginx) = &nginx {
            say("nginx: ", nginx);
        }
        if let Some(floor) = &floor {
            say("floor: ", floor);
        }
        Ok(PhaseResult {
            name: phase.name.to_owned(),
            stream: phase.stream,
            concurrency: phase.concurrency,
            count: phase.count,
            pace_ms: phase.pace_ms,
            direct,
            proxy,
            proxy_checked,
            nginx,
            floor,
        })
    }

    /// One proxied failover request, checked: Bedrock answered (after Anthropic's 429), as
    /// Anthropic would. Returns the answer's body length.
    async fn calibrate_failover(&self, spec: &RequestSpec, stream: bool) -> anyhow::Result<usize> {
        let resp =
            self.client.post(spec.url.clone()).headers(spec.headers.clone()).body(spec.body.clone()).send().await?;
        let status = resp.status();
        let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let (provider, reason) = (header("x-ccp-provider"), header("x-ccp-fallback-reason"));
        let text = resp.text().await?;
        if status != 200 || provider != "bedrock" || reason != "rate_limited" {
            bail!(
                "the failover request was not answered by Bedrock: status {status}, x-ccp-provider {provider:?}, \
                 x-ccp-fallback-reason {reason:?}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        let ok = if stream {
            text.starts_with("event: message_start\n")
                && text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
                && text.matches("event: content_block_delta").count() == 10
        } else {
            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v["type"] == "message")
        };
        if !ok || text.contains("amazon-bedrock-invocationMetrics") {
            bail!(
                "the failover answer is not what Anthropic would send: {}",
                text.chars().take(600).collect::<String>()
            );
        }
        Ok(text.len())
    }

    /// The failover path at c=1: Anthropic answers 429 and the proxy replays on Bedrock, against
    /// the same 429 asked directly and the same Bedrock call (the body the proxy sends) asked
    /// directly, in alternating rounds.
    pub async fn failover_phase(&self, name: &str, stream: bool) -> anyhow::Result<FailoverResult> {
        let count = self.opts.failover_n;
        let body = if stream { self.stream_body.clone() } else { self.json_body.clone() };
        let scenario = [(SCENARIO_HEADER, "rate_limit".to_owned())];
        let direct_429 = RequestSpec::with_status(
            &format!("{}/v1/messages?beta=true", self.upstream.url()),
            &self.headers,
            &scenario,
            body.clone(),
            self.responses.rate_limited_body_len,
            429,
        )?;
        let operation = if stream { "invoke-with-response-stream" } else { "invoke" };
        let bedrock = &self.responses.bedrock;
        let direct_bedrock = RequestSpec::new(
            &format!("{}/model/{}/{operation}", self.upstream.bedrock_url(), self.bedrock_model_id.replace(':', "%3A")),
            &self.bedrock_headers,
            &[],
            self.bedrock_body.clone(),
            if stream { bedrock.stream_body_len } else { bedrock.json_body_len },
        )?;
        let url = format!("{}/ak/{}/v1/messages?beta=true", self.stack.proxy.url, self.stack.failover_key);
        let probe = RequestSpec::new(&url, &self.headers, &scenario, body.clone(), 0)?;
        let answer_len = self.calibrate_failover(&probe, stream).await?;
        let mut via_proxy = RequestSpec::with_status(&url, &self.headers, &scenario, body, answer_len, 200)?;
        if let Some(spec) = Arc::get_mut(&mut via_proxy) {
            spec.expect_header = Some(("x-ccp-fallback-reason", "rate_limited"));
        }
        let warmup = self.opts.warmup.max(count / 10);
        let results = self
            .rounds(&[direct_429, direct_bedrock, via_proxy], &[None, None, Some(Middle::Proxy)], 1, count, warmup)
            .await?;
        let [direct_429, direct_bedrock, proxy]: [TargetResult; 3] =
            results.try_into().map_err(|_| anyhow::anyhow!("missing results"))?;
        let r = FailoverResult {
            name: name.to_owned(),
            stream,
            count,
            direct_429,
            direct_bedrock,
            proxy,
            bedrock_body_bytes: self.bedrock_body.len(),
            answer_body_bytes: answer_len,
        };
        self.progress.say(format!(
            "{name:<24} 429 p50 {:.3} ms + Bedrock p50 {:.3} ms = {:.3} ms; proxy p50 {:.3} ms p99 {:.3} ms: added {:+.3} ms, cpu {:.3} ms/req",
            r.direct_429.latency.p50_ms,
            r.direct_bedrock.latency.p50_ms,
            r.upstreams_p50(),
            r.proxy.latency.p50_ms,
            r.proxy.latency.p99_ms,
            r.added_p50(),
            r.proxy.proxy_cpu_ms_per_req.unwrap_or(0.0)
        ));
        Ok(r)
    }

    /// Peak RSS of the proxy while `rss_n` paced streams run through it, 32 at a time.
    pub async fn rss_under_streams(&self) -> anyhow::Result<(u64, Summary)> {
        let phase = Phase {
            name: "rss",
            stream: true,
            concurrency: 32,
            count: self.opts.rss_n.max(32),
            pace_ms: self.opts.pace_ms,
        };
        let spec = self.spec(Target::Proxy, &phase)?;
        let pid = self.stack.proxy.pid();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((rss, _)) = procfs::rss_kib(pid) {
                        peak = peak.max(rss);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                peak
            })
        };
        let run = load::run(&self.client, &spec, phase.concurrency, phase.count).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.await.context("rss sampler")?;
        let run = run?;
        Ok((peak, Summary::of(run.samples.iter().map(|s| s.ttfb_ns).collect())))
    }
}
