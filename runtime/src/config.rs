//! Typed settings of every service, from defaults, then a TOML file, then `CCP__SECTION__KEY`
//! environment variables (e.g. `CCP__PROXY__LISTEN=0.0.0.0:8080`).
//!
//! One file configures the whole system; each service reads its own sections. Unknown keys —
//! in the file or in `CCP__…` variables — are refused with the key's name. Secrets are
//! [`SecretString`]s: printing the settings shows `<redacted>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod explain;

use ccp_schemas::secrets::envelope::{ConfiguredMasterKey, CryptoError, LocalMasterKey};
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::{BadPrefix, Namespace};

/// Every setting of the system.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Log level and line format.
    pub log: LogSettings,
    /// The NATS JetStream event log.
    pub nats: NatsSettings,
    /// The ClickHouse analytics store.
    pub clickhouse: ClickHouseSettings,
    /// Server-side secrets.
    pub secrets: SecretsSettings,
    /// The proxy service.
    pub proxy: ProxySettings,
    /// The admin API service.
    pub admin: AdminSettings,
    /// The projector service.
    pub projector: ProjectorSettings,
    /// How requests are replayed on Amazon Bedrock.
    pub bedrock: BedrockSettings,
    /// Prices, until the first `pricing_set` event replaces them.
    pub pricing: PricingSettings,
    /// Monthly budgets.
    pub budgets: BudgetSettings,
    /// Alerts for admins (evaluated by the projector, delivered to webhooks).
    pub alerts: AlertSettings,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Filter in `RUST_LOG` syntax, e.g. `info,ccp_proxy=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the event log lives and how its streams are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// Prefix of every subject, stream, bucket and consumer name (a-z, 0-9, _).
    pub prefix: String,
    /// Replicas of every stream and bucket (1 for one server, 3 for a cluster).
    pub replicas: usize,
    /// How long usage and circuit events are kept, in days (admin events are kept for ever).
    pub request_max_age_days: u64,
    /// Window in which a repeated event id is dropped as a duplicate, in seconds (covers spool
    /// replays after NATS outages of up to this long).
    pub duplicate_window_secs: u64,
    /// Optional auth token.
    pub token: SecretString,
    /// Optional username (with `password`).
    pub user: Option<String>,
    /// Optional password.
    pub password: SecretString,
    /// Seconds to wait for the first connection at start.
    pub connect_timeout_secs: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: Namespace::DEFAULT_PREFIX.into(),
            replicas: 1,
            request_max_age_days: 35,
            duplicate_window_secs: 3600,
            token: SecretString::default(),
            user: None,
            password: SecretString::default(),
            connect_timeout_secs: 10,
        }
    }
}

impl NatsSettings {
    /// The validated namespace.
    pub fn namespace(&self) -> Result<Namespace, BadPrefix> {
        Namespace::new(&self.prefix)
    }
}

/// The analytics database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// HTTP URL of the server.
    pub url: String,
    /// Database holding the project's tables (created by the migrations).
    pub database: String,
    /// The ClickHouse user the services connect as.
    pub user: String,
    /// That user's password (secret).
    pub password: SecretString,
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "ccp".into(),
            user: "default".into(),
            password: SecretString::default(),
        }
    }
}

/// Server-side secrets. Generate them with `ccp-admin gen-secrets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSettings {
    /// HMAC pepper of access-key hashes (≥ 32 bytes). Changing it invalidates every key.
    pub access_key_pepper: SecretString,
    /// Which master key wraps Bedrock-key data keys: `local` or `kms`.
    pub master_key_provider: MasterKeyProvider,
    /// Id stored with each sealed secret (`local` provider).
    pub master_key_id: String,
    /// Base64 of 32 random bytes (`local` provider).
    pub master_key: SecretString,
    /// KMS key id or ARN (`kms` provider). Credentials: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    pub kms_key_id: Option<String>,
    /// AWS region of the KMS key.
    pub kms_region: String,
    /// KMS endpoint override (VPC endpoints, tests).
    pub kms_endpoint_url: Option<String>,
}

impl Default for SecretsSettings {
    fn default() -> Self {
        Self {
            access_key_pepper: SecretString::default(),
            master_key_provider: MasterKeyProvider::Local,
            master_key_id: "local-1".into(),
            master_key: SecretString::default(),
            kms_key_id: None,
            kms_region: "us-east-1".into(),
            kms_endpoint_url: None,
        }
    }
}

impl SecretsSettings {
    /// The master key of `secrets`, or `None` when none is configured (Bedrock failover off).
    pub fn master_key(&self) -> Result<Option<ConfiguredMasterKey>, CryptoError> {
        let secrets = self;
        match secrets.master_key_provider {
            MasterKeyProvider::Local if secrets.master_key.is_empty() => Ok(None),
            MasterKeyProvider::Local => Ok(Some(ConfiguredMasterKey::Local(Box::new(LocalMasterKey::new(
                secrets.master_key_id.clone(),
                &secrets.master_key,
            )?)))),
            #[cfg(feature = "kms")]
            MasterKeyProvider::Kms => {
                let key_id = secrets.kms_key_id.as_deref().ok_or_else(|| {
                    CryptoError::KeyService("secrets.kms_key_id is required with the kms provider".into())
                })?;
                let options = ccp_schemas::secrets::kms::KmsOptions::from_env(
                    key_id,
                    &secrets.kms_region,
                    secrets.kms_endpoint_url.as_deref(),
                )?;
                Ok(Some(ConfiguredMasterKey::Kms(ccp_schemas::secrets::kms::KmsMasterKey::new(options))))
            }
            #[cfg(not(feature = "kms"))]
            MasterKeyProvider::Kms => {
                Err(CryptoError::KeyService("this build has no KMS support (feature `kms` of ccp-runtime)".into()))
            }
        }
    }
}

/// Where the Bedrock-key master key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MasterKeyProvider {
    /// `secrets.master_key` from configuration.
    Local,
    /// AWS KMS key `secrets.kms_key_id`.
    Kms,
}

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
        }
    }
}

/// A list from TOML, or a comma-separated string from the environment.
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
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
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            batch_size: 50_000,
            flush_interval_ms: 500,
            migrate_on_start: true,
            minute_retention_days: 14,
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

/// The price list from configuration (pricing version 0). A `pricing_set` event (admin API)
/// replaces it with a numbered version; costs already recorded are never recomputed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingSettings {
    /// Prices per model (and optionally provider and region), USD per million tokens.
    pub models: Vec<ccp_schemas::events::ModelPrice>,
}

impl Default for PricingSettings {
    fn default() -> Self {
        Self { models: ccp_schemas::pricing::shipped_prices() }
    }
}

/// When budgets apply and what a month is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// IANA time zone whose calendar months budgets count (e.g. `Europe/Berlin`).
    pub time_zone: String,
    /// `bedrock`: an exhausted budget stops Bedrock requests only; `all`: every request.
    pub enforce: BudgetEnforcement,
    /// Most USD one request in flight reserves of a budget (its estimate: the body as input and
    /// `max_tokens` as output at the model's prices). Larger: fewer parallel requests near a
    /// budget's end, a smaller overshoot.
    #[serde(with = "rust_decimal::serde::str")]
    pub max_reservation_usd: rust_decimal::Decimal,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            enforce: BudgetEnforcement::Bedrock,
            max_reservation_usd: rust_decimal::Decimal::new(2, 0),
        }
    }
}

impl BudgetSettings {
    /// The configured time zone.
    pub fn tz(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.time_zone.parse().map_err(|_| {
            ConfigError::Invalid(format!("budgets.time_zone `{}` is not an IANA time zone", self.time_zone))
        })
    }
}

/// Which requests an exhausted budget stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetEnforcement {
    /// Requests that would go to Bedrock (the Plan is the developer's own).
    Bedrock,
    /// Every request.
    All,
}

/// Alerts for admins: rules evaluated by the projector on the event stream, each alert an
/// `alert_raised` event delivered to every webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Evaluate the rules (and deliver to the webhooks).
    pub enabled: bool,
    /// Percentages of a user's monthly budget that raise an alert (each once per user, month
    /// and limit).
    pub budget_thresholds_percent: Vec<u32>,
    /// Alert when a key's circuit opens (once until it closes).
    pub circuit_open: bool,
    /// Alert when this many keys have an open circuit at once (0: off); re-armed below it.
    pub open_circuits_threshold: usize,
    /// Alert when Bedrock refuses a key's Bedrock API key (once until it works again or is
    /// replaced).
    pub bedrock_auth_failure: bool,
    /// Anomaly window length in minutes (windows are aligned to the epoch).
    pub anomaly_window_mins: u32,
    /// Days of preceding windows whose average is a user's baseline.
    pub anomaly_baseline_days: u32,
    /// A window above this many times the baseline is an anomaly (0: anomaly rules off).
    pub anomaly_factor: u32,
    /// …and only when the window's spend is at least this many USD.
    #[serde(with = "rust_decimal::serde::str")]
    pub anomaly_min_spend_usd: rust_decimal::Decimal,
    /// …or (request rate) at least this many requests.
    pub anomaly_min_requests: u64,
    /// Incidents whose triggering event is older than this many minutes (seen when catching up
    /// after a first start or an outage) update the rules' state but raise no alert.
    pub max_alert_age_mins: u32,
    /// Seconds to wait for a webhook's answer.
    pub delivery_timeout_secs: u64,
    /// Attempts per alert and webhook before giving up (logged and counted).
    pub retry_max_attempts: u32,
    /// First retry delay in milliseconds (doubled per attempt, with jitter).
    pub retry_backoff_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub retry_backoff_max_ms: u64,
    /// Where alerts go.
    pub webhooks: Vec<WebhookSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            budget_thresholds_percent: vec![80, 100],
            circuit_open: true,
            open_circuits_threshold: 3,
            bedrock_auth_failure: true,
            anomaly_window_mins: 60,
            anomaly_baseline_days: 7,
            anomaly_factor: 5,
            anomaly_min_spend_usd: rust_decimal::Decimal::new(20, 0),
            anomaly_min_requests: 500,
            max_alert_age_mins: 60,
            delivery_timeout_secs: 5,
            retry_max_attempts: 8,
            retry_backoff_base_ms: 500,
            retry_backoff_max_ms: 60_000,
            webhooks: Vec::new(),
        }
    }
}

impl AlertSettings {
    /// Refuses webhooks the projector cannot deliver to (the URL is never in the message).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for hook in &self.webhooks {
            let ok_name = (1..=32).contains(&hook.name.len())
                && hook.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok_name {
                return Err(ConfigError::Invalid(format!(
                    "alerts.webhooks: name `{}` must be 1–32 characters of a-z, 0-9 and _",
                    hook.name.chars().take(40).collect::<String>()
                )));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(ConfigError::Invalid(format!("alerts.webhooks: name `{}` is used twice", hook.name)));
            }
            let url = hook.url.expose();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!(
                    "alerts.webhooks `{}`: url must start with https:// or http://",
                    hook.name
                )));
            }
        }
        if self.enabled && self.anomaly_factor > 0 && (self.anomaly_window_mins == 0 || self.anomaly_baseline_days == 0)
        {
            return Err(ConfigError::Invalid(
                "alerts.anomaly_window_mins and alerts.anomaly_baseline_days must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// One alert webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// A name for logs, metrics and its delivery consumer (a-z, 0-9, _).
    pub name: String,
    /// Where alerts are POSTed. A secret (Slack's URLs are credentials): never logged.
    pub url: SecretString,
    /// The body: `json` (the alert) or `slack` (`{"text": …}`).
    #[serde(default)]
    pub format: WebhookFormat,
    /// When set, each body is signed: `x-ccp-signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: SecretString,
}

/// A webhook's body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The alert as JSON: `{"id", "time", "rule", "incident", "severity", …}`.
    #[default]
    Json,
    /// A Slack-compatible incoming-webhook message.
    Slack,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed, a key is unknown, or a value has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is invalid for the service that starts.
    #[error("configuration: {0}")]
    Invalid(String),
}

/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_PATH_ENV: &str = "CCP_CONFIG";

impl Settings {
    /// Loads defaults, then `path` (if any), then `CCP__…` variables from `env`.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml).required(true));
        }
        let env: config::Map<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("CCP__")).collect();
        builder = builder.add_source(
            config::Environment::with_prefix("CCP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(env.clone())),
        );
        let settings: Self = builder.build().and_then(config::Config::try_deserialize).map_err(|e| {
            match explain::explain(&e, path, &env) {
                Some(message) => ConfigError::Invalid(message),
                None => ConfigError::Load(e),
            }
        })?;
        settings.nats.namespace().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if settings.budgets.tz().is_err() {
            let (source, _) = explain::source_of("budgets.time_zone", path, &env);
            return Err(ConfigError::Invalid(format!(
                "budgets.time_zone = `{}` (from {source}) is not an IANA time zone: e.g. `Europe/Berlin`, `America/New_York` or `UTC`",
                settings.budgets.time_zone.chars().take(64).collect::<String>()
            )));
        }
        settings.alerts.validate()?;
        let http = ["http", "https"];
        let urls: [(&str, Option<&str>, &[&str], &str); 6] = [
            ("nats.url", Some(&settings.nats.url), &["nats", "tls", "ws", "wss"], "nats://127.0.0.1:4222"),
            ("clickhouse.url", Some(&settings.clickhouse.url), &http, "http://127.0.0.1:8123"),
            ("proxy.anthropic_base_url", Some(&settings.proxy.anthropic_base_url), &http, "https://api.anthropic.com"),
            (
                "proxy.bedrock_endpoint_url",
                settings.proxy.bedrock_endpoint_url.as_deref(),
                &http,
                "https://bedrock-runtime.us-east-1.amazonaws.com",
            ),
            ("admin.public_proxy_url", Some(&settings.admin.public_proxy_url), &http, "https://proxy.example.com"),
            (
                "secrets.kms_endpoint_url",
                settings.secrets.kms_endpoint_url.as_deref(),
                &http,
                "https://kms.us-east-1.amazonaws.com",
            ),
        ];
        if !ccp_schemas::catalogue::is_aws_region(&settings.proxy.bedrock_default_region) {
            let (source, _) = explain::source_of("proxy.bedrock_default_region", path, &env);
            return Err(ConfigError::Invalid(format!(
                "proxy.bedrock_default_region = `{}` (from {source}) is not an AWS region: e.g. `us-east-1`",
                settings.proxy.bedrock_default_region.chars().take(64).collect::<String>()
            )));
        }
        for (key, url, schemes, example) in urls {
            if let Some(url) = url {
                explain::check_url(key, url, schemes, example, path, &env).map_err(ConfigError::Invalid)?;
            }
        }
        Ok(settings)
    }

    /// Loads from the process: `--config PATH` (or `CCP_CONFIG`) and the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os(CONFIG_PATH_ENV).map(PathBuf::from);
        Self::load_from(path.or(from_env.as_deref()), std::env::vars())
    }

    /// The effective settings as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not render settings: {e}\n"))
    }

    /// Refuses settings a service that hashes access keys cannot run with.
    pub fn require_pepper(&self) -> Result<(), ConfigError> {
        ccp_schemas::secrets::access_key::KeyPepper::new(&self.secrets.access_key_pepper).map(|_| ()).map_err(|e| {
            ConfigError::Invalid(format!(
                "{e} (set CCP__SECRETS__ACCESS_KEY_PEPPER; `ccp-admin gen-secrets` makes one)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_sane() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.nats.request_max_age_days, 35);
        assert_eq!(s.proxy.header_timeout_secs, 600);
        assert_eq!(s.proxy.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(s.proxy.anthropic_base_url, "https://api.anthropic.com");
    }

    #[test]
    fn file_then_environment_override_in_order() {
        let dir = std::env::temp_dir().join(format!("ccp-cfg-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ccp.toml");
        std::fs::write(&path, "[nats]\nreplicas = 3\nprefix = \"fromfile\"\n[proxy]\nlisten = \"0.0.0.0:9000\"\n")
            .unwrap();
        let s = Settings::load_from(
            Some(&path),
            env(&[
                ("CCP__NATS__PREFIX", "fromenv"),
                ("CCP__ADMIN__CORS_ORIGINS", "https://a.example,https://b.example"),
                ("CCP__SECRETS__ACCESS_KEY_PEPPER", "12345678901234567890123456789012"),
                ("CCP_UNRELATED", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.nats.replicas, 3);
        assert_eq!(s.nats.prefix, "fromenv");
        assert_eq!(s.proxy.listen.port(), 9000);
        assert_eq!(s.admin.cors_origins.len(), 2);
        // A numeric-looking secret stays a string.
        assert_eq!(s.secrets.access_key_pepper.expose(), "12345678901234567890123456789012");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = Settings::load_from(None, env(&[("CCP__PROXY__LISTN", "x")])).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
        let err = Settings::load_from(None, env(&[("CCP__NOPE__X", "1")])).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn wrong_types_and_bad_prefixes_are_refused() {
        let err = Settings::load_from(None, env(&[("CCP__NATS__REPLICAS", "three")])).unwrap_err().to_string();
        assert!(err.contains("replicas"), "{err}");
        assert!(Settings::load_from(None, env(&[("CCP__NATS__PREFIX", "Bad.Prefix")])).is_err());
    }

    #[test]
    fn alert_defaults_and_webhooks_from_a_file() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.alerts.budget_thresholds_percent, vec![80, 100]);
        assert_eq!(s.alerts.open_circuits_threshold, 3);
        let dir = std::env::temp_dir().join(format!("ccp-cfg-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ccp.toml");
        std::fs::write(
            &path,
            "[[alerts.webhooks]]\nname = \"ops\"\nurl = \"https://hooks.example/T0/B0/s3cr3tpath\"\n\
             format = \"slack\"\nsecret = \"whsec-value\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(s.alerts.webhooks[0].format, WebhookFormat::Slack);
        let shown = format!("{}{:?}", s.to_redacted_toml(), s);
        assert!(!shown.contains("s3cr3tpath") && !shown.contains("whsec-value"), "{shown}");
        std::fs::write(&path, "[[alerts.webhooks]]\nname = \"ops\"\nurl = \"ftp://x/s3cr3tpath\"\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("https://") && !err.contains("s3cr3tpath"), "{err}");
        std::fs::write(&path, "[[alerts.webhooks]]\nname = \"ops\"\nurl = \"http://x\"\nretries = 3\n").unwrap();
        let err = Settings::load_from(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("retries"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn printed_settings_never_show_secrets() {
        let s = Settings::load_from(
            None,
            env(&[
                ("CCP__SECRETS__MASTER_KEY", "c2VjcmV0LW1hc3Rlci1rZXktdmFsdWUtMzItYnl0ZXM="),
                ("CCP__ADMIN__INITIAL_ADMIN_PASSWORD", "hunter2hunter2"),
            ]),
        )
        .unwrap();
        let shown = format!("{}{:?}", s.to_redacted_toml(), s);
        assert!(!shown.contains("c2VjcmV0"));
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("<redacted>"));
    }
}
