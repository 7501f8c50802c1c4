//! The sections every service reads: logging, the NATS event log, the ClickHouse store and the
//! server-side secrets.

use ccp_schemas::secrets::envelope::{ConfiguredMasterKey, CryptoError, LocalMasterKey};
use ccp_schemas::secrets::SecretString;
use ccp_schemas::subjects::{BadPrefix, Namespace};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// User NKey seed (`SU…`, secret): the server lists the user's public key.
    pub nkey_seed: SecretString,
    /// A file holding the user NKey seed (instead of `nkey_seed`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT and NKey seed) for a server in operator (JWT) mode.
    pub creds_file: Option<PathBuf>,
    /// PEM CA bundle that signed the server's certificate. Setting it (or a client certificate)
    /// requires TLS; without it, `tls://` URLs trust the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for servers that verify clients (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
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
            nkey_seed: SecretString::default(),
            nkey_seed_file: None,
            creds_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            connect_timeout_secs: 10,
        }
    }
}

impl NatsSettings {
    /// The validated namespace.
    pub fn namespace(&self) -> Result<Namespace, BadPrefix> {
        Namespace::new(&self.prefix)
    }

    /// Refuses combinations that cannot work: half a client identity, two ways of proving who
    /// the client is, a seed that is not a user seed. The files themselves are read at start.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => {
                return Err("nats.client_cert_file is set without nats.client_key_file: mutual TLS needs both".into())
            }
            (None, Some(_)) => {
                return Err("nats.client_key_file is set without nats.client_cert_file: mutual TLS needs both".into())
            }
            _ => {}
        }
        let set: Vec<&str> = [
            ("nats.token", !self.token.is_empty()),
            ("nats.user", self.user.is_some()),
            ("nats.nkey_seed", !self.nkey_seed.is_empty()),
            ("nats.nkey_seed_file", self.nkey_seed_file.is_some()),
            ("nats.creds_file", self.creds_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, on)| on.then_some(key))
        .collect();
        // Token together with user/password is left as it always was; the NKey and JWT ways
        // are each the whole proof.
        let exclusive = ["nats.nkey_seed", "nats.nkey_seed_file", "nats.creds_file"];
        if set.len() > 1 && set.iter().any(|k| exclusive.contains(k)) {
            return Err(format!("{} are all set: choose one way to authenticate to NATS", set.join(" and ")));
        }
        if !self.nkey_seed.is_empty() {
            Self::check_user_seed(self.nkey_seed.expose()).map_err(|why| format!("nats.nkey_seed {why}"))?;
        }
        Ok(())
    }

    /// Whether `seed` is a user NKey seed; the reason if not (never the seed itself).
    pub fn check_user_seed(seed: &str) -> Result<(), String> {
        match nkeys::KeyPair::from_seed(seed.trim()) {
            Ok(pair) if matches!(pair.key_pair_type(), nkeys::KeyPairType::User) => Ok(()),
            Ok(_) => Err("is an NKey seed, but not a user's (a user seed starts with `SU`)".into()),
            // nkeys' reasons name lengths and prefixes, never the input.
            Err(e) => Err(format!("is not an NKey seed ({e})")),
        }
    }

    /// The credential in use, for messages that tell which setting to check.
    pub fn auth_setting(&self) -> &'static str {
        if self.creds_file.is_some() {
            "nats.creds_file"
        } else if self.nkey_seed_file.is_some() {
            "nats.nkey_seed_file"
        } else if !self.nkey_seed.is_empty() {
            "nats.nkey_seed"
        } else if self.user.is_some() {
            "nats.user and nats.password"
        } else if !self.token.is_empty() {
            "nats.token"
        } else {
            "the credentials: none are set (nats.creds_file, nats.nkey_seed, nats.token or nats.user)"
        }
    }
}

/// The analytics database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// URL of the server's HTTP interface: `http://host:8123`, or `https://host:8443` (ClickHouse
    /// Cloud, or a server with `https_port`).
    pub url: String,
    /// Database holding the project's tables (created by the migrations).
    pub database: String,
    /// The ClickHouse user the services connect as.
    pub user: String,
    /// That user's password (secret).
    pub password: SecretString,
    /// PEM CA bundle that signed the server's certificate (`https://` only). When set, only it
    /// is trusted; when unset, the public web roots are (enough for ClickHouse Cloud).
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (chain) for a server that verifies clients (`https://` only).
    pub client_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<std::path::PathBuf>,
    /// `lz4` (ClickHouse's block compression of inserted data, and of results where the server
    /// offers it) or `none`.
    pub compression: ClickHouseCompression,
    /// Name of the ClickHouse cluster (`remote_servers`) to create the tables on: the migrations
    /// then run `ON CLUSTER` with `Replicated*MergeTree` engines. Unset: one server.
    pub cluster: Option<String>,
    /// ZooKeeper path of each replicated table, `{db}` and `{table}` replaced; `{shard}` and
    /// `{replica}` are the servers' macros. Only with `cluster`.
    pub replication_path: String,
}

/// How data travels between the services and ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClickHouseCompression {
    /// LZ4 (the default).
    Lz4,
    /// Uncompressed.
    None,
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "ccp".into(),
            user: "default".into(),
            password: SecretString::default(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            compression: ClickHouseCompression::Lz4,
            cluster: None,
            replication_path: ccp_schemas::migrations::DEFAULT_REPLICATION_PATH.into(),
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
