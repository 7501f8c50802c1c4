//! Each service's own section (proxy, admin API, projector) and how requests are replayed on
//! Amazon Bedrock.

use std::net::SocketAddr;
use std::path::PathBuf;

use ccp_schemas::secrets::SecretString;
use serde::{Deserialize, Serialize};

/// The proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Where Plan traffic goes.
    pub anthropic_base_url: String,
    /// Bedrock endpoint override (private endpoints, local fakes); unset uses AWS's.
    pub bedrock_endpoint_url: Option<String>,
    /// Region for keys that name none.
    pub bedrock_default_region: String,
    /// Seconds to wait for upstream response headers.
    pub header_timeout_secs: u64,
    /// Seconds to wait for a TCP/TLS connection to the upstream.
    pub connect_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Seconds in-flight requests may take to finish at shutdown.
    pub shutdown_drain_secs: u64,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Directory of the durable event spool used while NATS is unreachable.
    pub spool_dir: PathBuf,
    /// Largest size of the spool, in bytes; events beyond it are dropped (and counted).
    pub spool_max_bytes: u64,
    /// Anthropic failures (429/529/5xx/timeout) that open a key's circuit…
    pub circuit_failure_threshold: u32,
    /// …within this many seconds.
    pub circuit_window_secs: u64,
    /// Seconds Anthropic is skipped (straight to Bedrock) before one probe.
    pub circuit_open_secs: u64,
    /// Admin events after which the key table is saved again as a snapshot, which the next
    /// start loads instead of replaying the admin stream (0: never save or load one).
    pub key_table_snapshot_every: u64,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            anthropic_base_url: "https://api.anthropic.com".into(),
            bedrock_endpoint_url: None,
            bedrock_default_region: "us-east-1".into(),
            header_timeout_secs: 600,
            connect_timeout_secs: 10,
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_drain_secs: 60,
            workers: 0,
            spool_dir: PathBuf::from(".local/spool"),
            spool_max_bytes: 1 << 30,
            circuit_failure_threshold: 3,
            circuit_window_secs: 60,
            circuit_open_secs: 30 * 60,
            key_table_snapshot_every: 10_000,
        }
    }
}

/// The admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// The proxy URL developers use, for the ready-to-paste Claude Code settings.
    pub public_proxy_url: String,
    /// Username of the admin created at first start.
    pub initial_admin_username: String,
    /// Password of that admin (required unless `dev_default_admin`).
    pub initial_admin_password: SecretString,
    /// Create `admin`/`admin` when no admin exists. Development only; logs a warning.
    pub dev_default_admin: bool,
    /// Session lifetime, in seconds.
    pub session_ttl_secs: u64,
    /// Origins allowed by CORS (none by default). In the environment: comma-separated.
    #[serde(deserialize_with = "list_or_csv")]
    pub cors_origins: Vec<String>,
    /// Proxies (addresses or CIDR ranges, e.g. the TLS terminator) whose `Forwarded` /
    /// `X-Forwarded-For` name the client that sign-in throttling counts; from any other peer
    /// the peer is the client. None by default. In the environment: comma-separated.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// Failed sign-ins are summed per name over this many seconds and recorded once per window
    /// on the security stream (`nats.security_max_age_days`).
    pub sign_in_record_secs: u64,
    /// Single sign-on with an OpenID Connect provider (off unless `issuer` is set).
    pub sso: super::sso::SsoSettings,
    /// Admin events after which the admin API's view is saved again as a snapshot, which the
    /// next start loads instead of replaying the admin stream (0: never save or load one).
    pub view_snapshot_every: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            public_proxy_url: "http://127.0.0.1:8080".into(),
            initial_admin_username: "admin".into(),
            initial_admin_password: SecretString::default(),
            dev_default_admin: false,
            session_ttl_secs: 12 * 3600,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            sign_in_record_secs: 15 * 60,
            sso: super::sso::SsoSettings::default(),
            view_snapshot_every: 10_000,
        }
    }
}

/// A list from TOML, or a comma-separated string from the environment.
pub(super) fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(v) => v,
        ListOrCsv::Csv(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
    })
}

/// The projector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectorSettings {
    /// Listen address of `/health`, `/ready` and `/metrics`.
    pub listen: SocketAddr,
    /// Largest ClickHouse insert batch.
    pub batch_size: usize,
    /// A partial batch is flushed after this many milliseconds.
    pub flush_interval_ms: u64,
    /// Apply ClickHouse migrations at start.
    pub migrate_on_start: bool,
    /// Days of per-minute usage rollups kept (older day partitions are dropped hourly).
    pub minute_retention_days: u32,
    /// Admin events after which the state projection's fold and the alert rules' are saved
    /// again as snapshots (object store `<prefix>_snapshots_projector`, signed with a key
    /// derived from `secrets.access_key_pepper`; without it, no snapshots) that the next start
    /// of the same build loads instead of replaying the admin stream; 0: never.
    pub state_snapshot_every: u64,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            batch_size: 50_000,
            flush_interval_ms: 500,
            migrate_on_start: true,
            minute_retention_days: 14,
            state_snapshot_every: 10_000,
        }
    }
}

/// Failover to Amazon Bedrock: model mapping and the rules that adapt a Claude Code request to
/// what Bedrock's Anthropic Messages API accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BedrockSettings {
    /// Which model a failover uses, per family, when the requested model has no Bedrock target
    /// in the catalogue or the key's Bedrock model listing (a catalogue id, e.g. `opus =
    /// "claude-opus-4-5"`). A family not named here falls back to its newest catalogued model
    /// with a target for the key's region. Every such request is recorded as substituted.
    pub family_fallback: std::collections::BTreeMap<ccp_schemas::events::ModelFamily, String>,
    /// Seconds between refreshes of a key's Bedrock model listing (ListInferenceProfiles and
    /// ListFoundationModels with the key's Bedrock API key), used to resolve models the
    /// catalogue has no target for. 0 turns the listing off.
    pub listing_refresh_secs: u64,
    /// Seconds to wait for one listing call.
    pub listing_timeout_secs: u64,
    /// Seconds between the admin API's readiness checks of every registered Bedrock API key
    /// (CountTokens and the model listing: calls that cost nothing). 0 turns them off.
    pub readiness_check_secs: u64,
    /// Seconds one readiness call may take.
    pub readiness_timeout_secs: u64,
    /// `anthropic-beta` values passed on to Bedrock as `anthropic_beta`; others are dropped.
    pub allowed_betas: Vec<String>,
    /// Top-level request fields removed before the call (Bedrock rejects them).
    pub drop_fields: Vec<String>,
    /// Fields removed from every entry of `tools`.
    pub drop_tool_fields: Vec<String>,
    /// Seconds to wait for Bedrock's response headers.
    pub timeout_secs: u64,
}

impl Default for BedrockSettings {
    fn default() -> Self {
        Self {
            family_fallback: std::collections::BTreeMap::new(),
            listing_refresh_secs: 3600,
            listing_timeout_secs: 5,
            readiness_check_secs: 3600,
            readiness_timeout_secs: 5,
            allowed_betas: [
                "interleaved-thinking-2025-05-14",
                "context-1m-2025-08-07",
                "token-efficient-tools-2025-02-19",
                "fine-grained-tool-streaming-2025-05-14",
                "computer-use-2025-01-24",
            ]
            .map(String::from)
            .to_vec(),
            drop_fields: [
                "metadata",
                "context_management",
                "output_config",
                "service_tier",
                "container",
                "mcp_servers",
            ]
            .map(String::from)
            .to_vec(),
            drop_tool_fields: vec!["defer_loading".into()],
            timeout_secs: 600,
        }
    }
}
