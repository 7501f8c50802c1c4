//! What every service's `/metrics` shares: `<service>_build_info{version,commit} 1`, the standard
//! `process_*` metrics (read from `/proc/self` at each scrape), and the rendering of a
//! `prometheus-client` registry in the Prometheus text format.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::telemetry::{COMMIT, VERSION};

/// The `Content-Type` of every `/metrics` answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of `<service>_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// A registry holding `<prefix>_build_info{version,commit} 1` and the `process_*` metrics; a
/// service registers its own metrics under `registry.sub_registry_with_prefix(prefix)`.
pub fn registry(prefix: &str) -> Registry {
    let mut root = Registry::default();
    let build_info = Family::<BuildLabels, Gauge>::default();
    build_info.get_or_create(&BuildLabels { version: VERSION, commit: COMMIT }).set(1);
    root.sub_registry_with_prefix(prefix).register(
        "build_info",
        "1, labelled with the release version and the git commit of this build",
        build_info,
    );
    root.register_collector(Box::new(ProcessCollector));
    root
}

/// The text exposition of `registry`, then what `extra` appends (families written by hand, in
/// the same format), then `# EOF`.
pub fn render(registry: &Registry, extra: impl FnOnce(&mut String)) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode_registry(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    extra(&mut out);
    out.push_str("# EOF\n");
    out
}

/// `/proc` reports CPU times in USER_HZ ticks, 100 a second on every Linux architecture (the
/// kernel converts its own HZ to it for user space).
const USER_HZ: f64 = 100.0;

/// The standard process metrics of client libraries, from `/proc/self` at each scrape; on a
/// system without `/proc` (not Linux) they are left out.
#[derive(Debug)]
pub struct ProcessCollector;

/// What is read from `/proc` for one scrape.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Threads of the process.
    pub threads: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit of open file descriptors.
    pub max_fds: Option<u64>,
    /// Start of the process, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads this process's figures.
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let boot = std::fs::read_to_string("/proc/stat").ok();
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let mut stats = Self::parse(stat.as_deref(), status.as_deref(), boot.as_deref(), limits.as_deref());
        stats.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        stats
    }

    /// The figures in the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
    /// `/proc/self/limits`.
    pub fn parse(stat: Option<&str>, status: Option<&str>, boot: Option<&str>, limits: Option<&str>) -> Self {
        // The fields after `(comm)`, which may hold spaces: field 3 (state) is the first.
        let fields: Vec<&str> = stat
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let kb = |name: &str| {
            status?
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        let boot_time = boot.and_then(|b| b.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()));
        let max_fds = limits.and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line["Max open files".len()..].split_whitespace().next()?.parse::<u64>().ok()
        });
        Self {
            cpu_seconds: field(14).zip(field(15)).map(|(user, system)| (user + system) as f64 / USER_HZ),
            resident_bytes: kb("VmRSS").map(|k| k * 1024),
            virtual_bytes: kb("VmSize").map(|k| k * 1024),
            threads: kb("Threads"),
            open_fds: None,
            max_fds,
            start_time_seconds: boot_time.zip(field(22)).map(|(boot, ticks)| boot as f64 + ticks as f64 / USER_HZ),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        let gauges: [(&str, &str, Option<f64>); 6] = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", s.resident_bytes.map(|v| v as f64)),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", s.virtual_bytes.map(|v| v as f64)),
            ("process_open_fds", "Number of open file descriptors", s.open_fds.map(|v| v as f64)),
            ("process_max_fds", "Maximum number of open file descriptors", s.max_fds.map(|v| v as f64)),
            ("process_threads", "Number of OS threads in the process", s.threads.map(|v| v as f64)),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                m.encode(encoder.encode_descriptor(name, help, None, m.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc_texts() {
        let stat = "4242 (ccp proxy) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 7 0 12345 \
                    104857600 2560 18446744073709551615";
        let status = "Name:\tccp-proxy\nVmSize:\t  102400 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let s = ProcessStats::parse(Some(stat), Some(status), Some("cpu  1 2 3\nbtime 1700000000\n"), Some(limits));
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.resident_bytes, Some(10240 * 1024));
        assert_eq!(s.virtual_bytes, Some(102400 * 1024));
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.max_fds, Some(1024));
        assert!((s.start_time_seconds.unwrap() - 1_700_000_123.45).abs() < 1e-3, "{s:?}");
        assert_eq!(ProcessStats::parse(None, None, None, None), ProcessStats::default());
    }

    #[test]
    fn a_registry_renders_build_info_and_this_process() {
        let mut registry = registry("ccp_test");
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.sub_registry_with_prefix("ccp_test").register("things", "Things", counter.clone());
        counter.inc();
        let text = render(&registry, |out| out.push_str("# TYPE extra gauge\nextra 1\n"));
        let build = format!("ccp_test_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1\n");
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("ccp_test_things_total 1\n"), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_open_fds "), "{text}");
        assert!(text.ends_with("extra 1\n# EOF\n"), "{text}");
    }
}
