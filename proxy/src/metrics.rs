//! Prometheus metrics of the proxy (`GET /metrics`, on the ops listener when `ops.listen` is
//! set). Labels come from small fixed sets (provider, status, error kind) — never a key, user or
//! model name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `anthropic`, `bedrock` or `none`.
    pub provider: &'static str,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Error class, or `none`.
    pub error_kind: &'static str,
}

/// Labels of latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// `anthropic`, `bedrock` or `none`.
    pub provider: &'static str,
}

/// Labels of an outcome count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// A small fixed set per metric.
    pub outcome: &'static str,
}

type HistogramFamily = Family<ProviderLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~10 min.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// Every metric of the proxy.
pub struct Metrics {
    /// `ccp_proxy_build_info`, `process_*`, and every metric below (prefixed `ccp_proxy_`).
    registry: Registry,
    /// Finished requests.
    pub requests: Family<RequestLabels, Counter>,
    /// Request received → response finished.
    pub latency: HistogramFamily,
    /// Request received → first response byte.
    pub ttfb: HistogramFamily,
    /// Requests being served.
    pub in_flight: Gauge,
    /// Events waiting in the spool.
    pub spool_depth: Gauge,
    /// Events acknowledged by JetStream.
    pub events_published: Counter,
    /// Events written to the spool.
    pub events_spooled: Counter,
    /// Events lost (spool full or unencodable).
    pub events_dropped: Counter,
    /// Access keys in the table.
    pub keys_loaded: Gauge,
    /// This replica's spend totals JetStream has not acknowledged yet.
    pub spend_unstored: Gauge,
    /// 1 while the shared spend tally's watch is caught up.
    pub spend_tally_live: Gauge,
    /// Bedrock model listings read, by outcome (`ok`, `timeout`, `unreachable`, `refused`,
    /// `garbage`).
    pub bedrock_listings: Family<OutcomeLabels, Counter>,
    /// Failovers by how their Bedrock model was found (`catalogue`, `listing`,
    /// `family_fallback`, `key_default`, `not_mapped`).
    pub bedrock_resolutions: Family<OutcomeLabels, Counter>,
    /// Requests that consumed tokens of a model without a price (cost unknown).
    pub unpriced_requests: Counter,
    /// Requests whose output tokens were estimated (stream ended before the final count).
    pub estimated_usage: Counter,
    /// Answers whose usage could not be read (tokens unknown).
    pub unreadable_usage: Counter,
    /// Status-line answers (`GET /ccp/statusline`) by outcome (`ok`, `not_modified`,
    /// `refused`, `bad_request`, `not_ready`).
    pub statusline_requests: Family<OutcomeLabels, Counter>,
    /// Keys whose events are watched for their status line.
    pub statusline_watched_keys: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = ccp_runtime::metrics::registry("ccp_proxy");
        let registry = root.sub_registry_with_prefix("ccp_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let ttfb: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::default();
        let spool_depth = Gauge::default();
        let events_published = Counter::default();
        let events_spooled = Counter::default();
        let events_dropped = Counter::default();
        let keys_loaded = Gauge::default();
        let spend_unstored = Gauge::default();
        let spend_tally_live = Gauge::default();
        let bedrock_listings = Family::<OutcomeLabels, Counter>::default();
        let bedrock_resolutions = Family::<OutcomeLabels, Counter>::default();
        let unpriced_requests = Counter::default();
        let estimated_usage = Counter::default();
        let unreadable_usage = Counter::default();
        let statusline_requests = Family::<OutcomeLabels, Counter>::default();
        let statusline_watched_keys = Gauge::default();
        registry.register(
            "statusline_requests",
            "Status-line answers (GET /ccp/statusline) by outcome",
            statusline_requests.clone(),
        );
        registry.register(
            "statusline_watched_keys",
            "Access keys whose events this replica watches for their status line (asked for in the last 15 minutes)",
            statusline_watched_keys.clone(),
        );
        registry.register(
            "bedrock_listings",
            "Bedrock model listings read for failover resolution, by outcome",
            bedrock_listings.clone(),
        );
        registry.register(
            "bedrock_resolutions",
            "Failovers by how the Bedrock model was found (family_fallback and key_default substitute another model)",
            bedrock_resolutions.clone(),
        );
        registry.register(
            "unpriced_requests",
            "Requests that consumed tokens of a model without a price: their cost is unknown, not zero",
            unpriced_requests.clone(),
        );
        registry.register(
            "estimated_usage_requests",
            "Requests whose output tokens were estimated from the relayed content (stream ended before the final count)",
            estimated_usage.clone(),
        );
        registry.register(
            "unreadable_usage_requests",
            "Answers whose token usage could not be read (an encoding or framing the tap cannot decode)",
            unreadable_usage.clone(),
        );
        registry.register("requests", "Requests by provider, status and error kind", requests.clone());
        registry.register("request_duration_seconds", "Request received to response finished", latency.clone());
        registry.register("ttfb_seconds", "Request received to first response byte", ttfb.clone());
        registry.register("in_flight_requests", "Requests being served", in_flight.clone());
        registry.register("spool_depth_events", "Events waiting in the durable spool", spool_depth.clone());
        registry.register("events_published", "Events acknowledged by JetStream", events_published.clone());
        registry.register("events_spooled", "Events written to the spool", events_spooled.clone());
        registry.register("events_dropped", "Events lost (spool full or unencodable)", events_dropped.clone());
        registry.register("access_keys_loaded", "Access keys in the in-memory table", keys_loaded.clone());
        registry.register(
            "spend_totals_unstored",
            "This replica's month-to-date spend totals not yet acknowledged by JetStream (other replicas' budget checks miss them meanwhile)",
            spend_unstored.clone(),
        );
        registry.register(
            "spend_tally_live",
            "1 while the shared spend tally's watch is caught up (0: budgets see only this replica's costs since it started)",
            spend_tally_live.clone(),
        );
        Self {
            registry: root,
            requests,
            latency,
            ttfb,
            in_flight,
            spool_depth,
            events_published,
            events_spooled,
            events_dropped,
            keys_loaded,
            spend_unstored,
            spend_tally_live,
            bedrock_listings,
            bedrock_resolutions,
            unpriced_requests,
            estimated_usage,
            unreadable_usage,
            statusline_requests,
            statusline_watched_keys,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        ccp_runtime::metrics::render(&self.registry, |out| {
            ccp_runtime::follow::SKIPPED.render("ccp_proxy", true, out);
        })
    }
}
