//! A master key in AWS KMS: data keys are wrapped with `Encrypt` and unwrapped with `Decrypt`
//! under the configured key, with a fixed encryption context. The key material never leaves KMS.
//!
//! Credentials are the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//! `AWS_SESSION_TOKEN` environment variables (static or injected by the platform).

use std::fmt;
use std::time::Duration;

use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::envelope::{CryptoError, MasterKey};

/// The encryption context every data key is bound to.
const CONTEXT: (&str, &str) = ("purpose", "claudecodeproxy-bedrock-api-key");

/// A KMS key used as master key.
pub struct KmsMasterKey {
    key_id: String,
    client: aws_sdk_kms::Client,
}

impl fmt::Debug for KmsMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsMasterKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Where KMS is and how to authenticate.
#[derive(Clone)]
pub struct KmsOptions {
    /// Key id, alias or ARN.
    pub key_id: String,
    /// AWS region.
    pub region: String,
    /// Endpoint override (VPC endpoints, tests).
    pub endpoint_url: Option<String>,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl fmt::Debug for KmsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsOptions")
            .field("key_id", &self.key_id)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl KmsOptions {
    /// Options with credentials from the standard AWS environment variables.
    pub fn from_env(key_id: &str, region: &str, endpoint_url: Option<&str>) -> Result<Self, CryptoError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(access_key_id), Some(secret_access_key)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(CryptoError::KeyService(
                "the kms master key provider needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        Ok(Self {
            key_id: key_id.to_owned(),
            region: region.to_owned(),
            endpoint_url: endpoint_url.map(str::to_owned),
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

impl KmsMasterKey {
    /// A client for the key (no request is made yet).
    pub fn new(options: KmsOptions) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = Credentials::new(
            options.access_key_id,
            options.secret_access_key,
            options.session_token,
            None,
            "ccp-config",
        );
        let mut config = aws_sdk_kms::Config::builder()
            .behavior_version_latest()
            .region(Region::new(options.region))
            .credentials_provider(credentials)
            .http_client(http)
            .timeout_config(
                aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some(url) = options.endpoint_url {
            config = config.endpoint_url(url);
        }
        Self { key_id: options.key_id, client: aws_sdk_kms::Client::from_conf(config.build()) }
    }
}

impl KmsMasterKey {
    /// The same key reached through `http` (an egress proxy, an extra CA: built by
    /// `ccp_runtime::egress`, which this crate cannot depend on).
    pub fn with_http_client(self, http: aws_sdk_kms::config::SharedHttpClient) -> Self {
        let config = self.client.config().to_builder().http_client(http).build();
        Self { key_id: self.key_id, client: aws_sdk_kms::Client::from_conf(config) }
    }
}

fn service_error<E: ProvideErrorMetadata>(e: &E, what: &str) -> CryptoError {
    CryptoError::KeyService(format!(
        "KMS {what} failed: {}{}",
        e.code().unwrap_or("error"),
        e.message().map(|m| format!(" ({m})")).unwrap_or_default()
    ))
}

impl MasterKey for KmsMasterKey {
    fn id(&self) -> &str {
        &self.key_id
    }

    async fn wrap(&self, data_key: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(data_key.to_vec()))
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .map_err(|e| service_error(&e, "Encrypt"))?;
        out.ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| CryptoError::KeyService("KMS Encrypt returned no ciphertext".into()))
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .map_err(|e| service_error(&e, "Decrypt"))?;
        let plain = Zeroizing::new(out.plaintext().map(|b| b.as_ref().to_vec()).unwrap_or_default());
        let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Open)?;
        Ok(Zeroizing::new(key))
    }
}
