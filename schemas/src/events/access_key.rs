//! Events of the access-key aggregate (subject `<prefix>.admin.access_key.<key_id>`), including
//! the key's Bedrock API key, which is one per access key.

use serde::{Deserialize, Serialize};

use crate::ids::{AccessKeyId, UserId};
use crate::secrets::access_key::{KeyHash, KeyPrefix};
use crate::secrets::envelope::{SealedSecret, SecretHint};

/// Where and how an access key calls Bedrock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BedrockSettings {
    /// AWS region, e.g. `us-east-1`; `None` uses the proxy's default region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Bedrock model id used when the requested model maps to nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
}

/// An access key was issued to a user. The key itself is not here: only its hash and prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKeyIssued {
    /// The new key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// A label such as "laptop".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HMAC-SHA256 of the key under the server pepper.
    pub key_hash: KeyHash,
    /// First characters of the key.
    pub key_prefix: KeyPrefix,
    /// Bedrock settings at issue time.
    #[serde(default)]
    pub bedrock: BedrockSettings,
}

/// An access key was revoked; it is refused from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKeyRevoked {
    /// The key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// Why, as the admin wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An access key's secret was replaced: the old secret stops working at once, the key id,
/// owner, Bedrock key and settings stay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessKeyRotated {
    /// The key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// Hash of the new secret.
    pub key_hash: KeyHash,
    /// Prefix of the new secret.
    pub key_prefix: KeyPrefix,
    /// Hash of the secret that stopped working.
    pub previous_key_hash: KeyHash,
}

/// An access key's Bedrock region or default model changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BedrockSettingsChanged {
    /// The key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// The new settings.
    pub bedrock: BedrockSettings,
}

/// A Bedrock API key was registered for an access key (sealed; never in plaintext).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BedrockApiKeyRegistered {
    /// The access key it belongs to.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// The Bedrock key, envelope-encrypted with the access key id as associated data.
    pub sealed: SealedSecret,
    /// What lists show.
    pub hint: SecretHint,
}

/// An access key's Bedrock API key was replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BedrockApiKeyRotated {
    /// The access key it belongs to.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// The new Bedrock key, sealed.
    pub sealed: SealedSecret,
    /// What lists show.
    pub hint: SecretHint,
}

/// An access key's Bedrock API key was removed; the key no longer fails over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BedrockApiKeyRemoved {
    /// The access key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
}

/// Whether an access key's Bedrock API key can take a failover, as a check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BedrockReadiness {
    /// Bedrock accepted the key for every model checked.
    Ready,
    /// Bedrock refused the key itself (invalid, expired, revoked).
    KeyRefused,
    /// The key works, but a model it would fail over to is not enabled for its account in its
    /// region (AccessDeniedException on that model).
    ModelNotEnabled,
    /// Bedrock throttled the check: the key's quota is exhausted for now.
    Throttled,
    /// Bedrock could not be reached, or answered unexpectedly.
    Unreachable,
}

impl BedrockReadiness {
    /// The snake_case label: its serde name ([`super::label()`]).
    pub fn as_str(self) -> &'static str {
        super::label(&self)
    }
}

/// What a check found for one Bedrock model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReadiness {
    /// The Bedrock model or inference-profile id checked (with CountTokens, which costs nothing).
    pub model_id: String,
    /// What it answered.
    pub readiness: BedrockReadiness,
}

/// Why a check ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckCause {
    /// Right after the Bedrock API key was registered or rotated.
    Registered,
    /// An admin asked for it.
    OnDemand,
    /// The periodic check (recorded when the readiness changed, or a day after the last).
    Periodic,
}

/// An access key's Bedrock API key was checked with calls that cost nothing (CountTokens on the
/// models it would fail over to, and the model listing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BedrockKeyChecked {
    /// The access key.
    pub key_id: AccessKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// The verdict: `ready` only when every model checked answered.
    pub readiness: BedrockReadiness,
    /// The AWS region checked.
    pub region: String,
    /// Each model checked.
    #[serde(default)]
    pub models: Vec<ModelReadiness>,
    /// Whether the key could read its Bedrock model listing (ListInferenceProfiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<BedrockReadiness>,
    /// Why it ran.
    pub cause: CheckCause,
}
