//! The projector's `/metrics`, through `prometheus-client` (as the proxy's): per projection the
//! rows projected, skipped and terminated, the last sequence and the lag; the alerts raised and
//! delivered; the stream followers' unapplied events; `ccp_projector_build_info` and the
//! `process_*` metrics. The counters live in the projections' and alerts' own atomics and are
//! read at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::alerts::AlertStats;
use crate::analytics::Stats;

/// Each projection's name and counters.
pub type AllStats = Arc<Vec<(&'static str, Arc<Stats>)>>;

/// Every metric of the projector.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The metrics of these projections and (when alerts are on) alerts.
    pub fn new(projections: AllStats, alerts: Option<Arc<AlertStats>>) -> Self {
        let mut registry = ccp_runtime::metrics::registry("ccp_projector");
        registry.sub_registry_with_prefix("ccp_projector").register_collector(Box::new(Read { projections, alerts }));
        Self { registry }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        ccp_runtime::metrics::render(&self.registry, |out| {
            ccp_runtime::follow::SKIPPED.render("ccp_projector", true, out);
        })
    }
}

/// Reads the atomics at each scrape.
#[derive(Debug)]
struct Read {
    projections: AllStats,
    alerts: Option<Arc<AlertStats>>,
}

type Field = fn(&Stats) -> &AtomicU64;

impl Collector for Read {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families: [(&str, &str, MetricType, Field); 5] = [
            ("events_projected", "Rows written to ClickHouse.", MetricType::Counter, |s| &s.projected),
            ("events_skipped", "Redelivered events already in ClickHouse.", MetricType::Counter, |s| &s.skipped),
            ("events_terminated", "Undecodable events terminated.", MetricType::Counter, |s| &s.terminated),
            ("last_sequence", "Last stream sequence written.", MetricType::Gauge, |s| &s.last_seq),
            ("lag_events", "Events in the stream not yet projected.", MetricType::Gauge, |s| &s.lag),
        ];
        for (name, help, kind, field) in families {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (projection, stats) in self.projections.iter() {
                let value = field(stats).load(Ordering::Relaxed);
                let labels = [("projection", *projection)];
                match kind {
                    MetricType::Counter => ConstCounter::new(value).encode(family.encode_family(&labels)?)?,
                    _ => ConstGauge::new(value).encode(family.encode_family(&labels)?)?,
                }
            }
        }
        if let Some(alerts) = &self.alerts {
            alerts.encode(&mut encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_projection_with_build_info_and_process_metrics() {
        let requests = Arc::new(Stats::default());
        requests.projected.store(7, Ordering::Relaxed);
        requests.last_seq.store(42, Ordering::Relaxed);
        let projections: AllStats = Arc::new(vec![("requests", requests), ("audit", Arc::default())]);
        let text = Metrics::new(projections, None).render();
        for line in [
            "# TYPE ccp_projector_events_projected counter\n",
            "ccp_projector_events_projected_total{projection=\"requests\"} 7\n",
            "ccp_projector_events_projected_total{projection=\"audit\"} 0\n",
            "# TYPE ccp_projector_last_sequence gauge\n",
            "ccp_projector_last_sequence{projection=\"requests\"} 42\n",
            "ccp_projector_lag_events{projection=\"audit\"} 0\n",
            "ccp_projector_events_not_applied_total{cause=\"malformed\"} ",
            "ccp_projector_build_info{version=\"",
            "\nprocess_resident_memory_bytes ",
            "\nprocess_cpu_seconds_total ",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Each family is described once.
        assert_eq!(text.matches("# TYPE ccp_projector_events_skipped counter").count(), 1, "{text}");
    }
}
