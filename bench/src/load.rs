//! The load generator: one pooled keep-alive HTTP/1.1 client (the same for every target), a
//! fixed number of requests at a fixed concurrency, each response read to its end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

/// One kind of request to one target.
pub struct RequestSpec {
    /// Full URL.
    pub url: reqwest::Url,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Body bytes the response must have.
    pub expect_len: usize,
    /// Status the response must have.
    pub expect_status: u16,
    /// A header (name, value) the response must have.
    pub expect_header: Option<(&'static str, &'static str)>,
}

impl RequestSpec {
    /// A spec; `extra` headers are added to `headers`.
    pub fn new(
        url: &str,
        headers: &HeaderMap,
        extra: &[(&str, String)],
        body: Bytes,
        expect_len: usize,
    ) -> anyhow::Result<Arc<Self>> {
        Self::with_status(url, headers, extra, body, expect_len, 200)
    }

    /// A spec whose responses must have `status` (not 200).
    pub fn with_status(
        url: &str,
        headers: &HeaderMap,
        extra: &[(&str, String)],
        body: Bytes,
        expect_len: usize,
        expect_status: u16,
    ) -> anyhow::Result<Arc<Self>> {
        let mut headers = headers.clone();
        for (n, v) in extra {
            headers.insert(HeaderName::try_from(*n)?, HeaderValue::try_from(v.as_str())?);
        }
        Ok(Arc::new(Self {
            url: reqwest::Url::parse(url).with_context(|| format!("bad url {url}"))?,
            headers,
            body,
            expect_len,
            expect_status,
            expect_header: None,
        }))
    }
}

/// The shared client.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(Duration::from_secs(60))
        .build()
        .context("http client")
}

/// One request's timings, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Send start to the end of the response.
    pub total_ns: u64,
    /// Send start to the first body byte.
    pub ttfb_ns: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn once(client: &reqwest::Client, spec: &RequestSpec) -> anyhow::Result<Sample> {
    let t0 = Instant::now();
    let mut resp = client.post(spec.url.clone()).headers(spec.headers.clone()).body(spec.body.clone()).send().await?;
    let status = resp.status();
    if let Some((name, value)) = spec.expect_header {
        let got = resp.headers().get(name).map(HeaderValue::as_bytes);
        if got != Some(value.as_bytes()) {
            bail!("response header {name}: {:?}, expected {value:?}", got.map(String::from_utf8_lossy));
        }
    }
    let mut ttfb = None;
    let mut n = 0;
    while let Some(chunk) = resp.chunk().await? {
        if ttfb.is_none() && !chunk.is_empty() {
            ttfb = Some(t0.elapsed());
        }
        n += chunk.len();
    }
    let total = t0.elapsed();
    if status.as_u16() != spec.expect_status {
        bail!("status {status}, expected {}", spec.expect_status);
    }
    if n != spec.expect_len {
        bail!("response body has {n} bytes, expected {}", spec.expect_len);
    }
    Ok(Sample { total_ns: nanos(total), ttfb_ns: nanos(ttfb.unwrap_or(total)) })
}

/// What one run measured.
pub struct Run {
    /// Every request's timings.
    pub samples: Vec<Sample>,
    /// Wall time of the run.
    pub wall: Duration,
}

/// Sends `count` requests, `concurrency` at a time; fails on the first bad response.
pub async fn run(
    client: &reqwest::Client,
    spec: &Arc<RequestSpec>,
    concurrency: usize,
    count: usize,
) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (client, spec, next) = (client.clone(), spec.clone(), next.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(count / concurrency.max(1) + 1);
            while next.fetch_add(1, Ordering::Relaxed) < count {
                samples.push(once(&client, &spec).await?);
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        let part = joined.context("load task")?;
        match part {
            Ok(part) => samples.extend(part),
            Err(e) => {
                tasks.abort_all();
                return Err(e.context(format!("request to {}", spec.url)));
            }
        }
    }
    Ok(Run { samples, wall: started.elapsed() })
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `values` (nanoseconds).
    pub fn of(mut values: Vec<u64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let n = values.len();
        let ms = |ns: u64| ns as f64 / 1e6;
        let pct = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            ms(values[rank.clamp(1, n) - 1])
        };
        let sum: u128 = values.iter().map(|&v| u128::from(v)).sum();
        Self {
            n,
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            mean_ms: (sum as f64 / n as f64) / 1e6,
            max_ms: ms(values[n - 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s = Summary::of((1..=100).map(|v| v * 1_000_000).collect());
        assert_eq!(s.n, 100);
        assert!((s.p50_ms - 50.0).abs() < 1e-9);
        assert!((s.p99_ms - 99.0).abs() < 1e-9);
        assert!((s.max_ms - 100.0).abs() < 1e-9);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Summary::of(vec![]).n, 0);
    }
}
