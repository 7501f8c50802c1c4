//! Typed settings of every service, from defaults, then a TOML file, then `CCP__SECTION__KEY`
//! environment variables (e.g. `CCP__PROXY__LISTEN=0.0.0.0:8080`).
//!
//! One file configures the whole system; each service reads its own sections. Unknown keys —
//! in the file or in `CCP__…` variables — are refused with the key's name. Secrets are
//! [`SecretString`](ccp_schemas::secrets::SecretString)s: printing the settings shows `<redacted>`.
//!
//! This file is [`Settings`] and its loading and checks; the sections are in `common.rs` (log,
//! NATS, ClickHouse, secrets), `services.rs` (proxy, admin API, projector, Bedrock),
//! `policy.rs` (pricing, budgets, alerts) and `ops.rs` (the ops listener), and `explain.rs`
//! turns a loading error into one that names the key, where its value came from and what is
//! accepted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod common;
mod compat;
mod egress;
mod explain;
mod ops;
mod policy;
mod services;
mod sso;

pub use self::common::{
    ClickHouseCompression, ClickHouseSettings, LogFormat, LogSettings, MasterKeyProvider, NatsSettings, SecretsSettings,
};
pub use self::compat::CompatSettings;
pub use self::egress::{EgressSettings, ProxyUrl};
pub use self::ops::OpsSettings;
pub use self::policy::{
    AlertSettings, BudgetEnforcement, BudgetSettings, PricingSettings, WebhookFormat, WebhookSettings,
};
pub use self::services::{AdminSettings, BedrockSettings, ProjectorSettings, ProxySettings};
pub use self::sso::{SsoRoleMapping, SsoSettings};

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
    /// The ops listener of every service (`/health`, `/ready`, `/metrics` off the public port).
    pub ops: OpsSettings,
    /// Rolling-upgrade rehearsal.
    pub compat: CompatSettings,
    /// Outbound connections: HTTPS proxy, hosts that bypass it, extra CA bundle.
    pub egress: EgressSettings,
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
        settings.nats.validate().map_err(ConfigError::Invalid)?;
        if settings.budgets.tz().is_err() {
            let (source, _) = explain::source_of("budgets.time_zone", path, &env);
            return Err(ConfigError::Invalid(format!(
                "budgets.time_zone = `{}` (from {source}) is not an IANA time zone: e.g. `Europe/Berlin`, `America/New_York` or `UTC`",
                settings.budgets.time_zone.chars().take(64).collect::<String>()
            )));
        }
        settings.alerts.validate()?;
        crate::migrate::check_settings(&settings.clickhouse).map_err(ConfigError::Invalid)?;
        if let Some(problem) = settings.admin.sso.problems() {
            return Err(ConfigError::Invalid(problem));
        }
        let sso = &settings.admin.sso;
        for (key, url, example) in [
            ("admin.sso.issuer", &sso.issuer, "https://login.example.com/realms/acme"),
            ("admin.sso.redirect_url", &sso.redirect_url, "https://ccp-admin.example.com/v1/auth/sso/callback"),
        ] {
            if !url.is_empty() {
                explain::check_url(key, url, &["http", "https"], example, path, &env).map_err(ConfigError::Invalid)?;
            }
        }
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
