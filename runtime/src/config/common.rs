//! The sections every service reads: logging, the NATS event log, the ClickHouse store and the
//! server-side secrets.

use ccp_schemas::secrets::envelope::{ConfiguredMasterKey, CryptoError, LocalMasterKey};
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::{BadPrefix, Namespace};
use serde::{Deserialize, Serialize};

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
        Self { level: "info".into(), format: LogFormat::Auto }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// JSON when standard output is not a terminal (a container, a log collector), text on one.
    Auto,
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
    /// How long security records (counted failed sign-ins) are kept, in days.
    pub security_max_age_days: u64,
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
            security_max_age_days: 90,
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
