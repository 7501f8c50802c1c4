//! Envelope encryption of Bedrock API keys.
//!
//! Each secret gets its own random AES-256-GCM data key; the data key is wrapped by a
//! [`MasterKey`] and stored beside the ciphertext in a [`SealedSecret`]. The access key id is
//! bound in as associated data, so a sealed secret copied onto another key does not open.
//! Plaintext ([`BedrockApiKey`]) lives only in memory at the moment of use.

use std::fmt;
use std::future::Future;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::{random_bytes, SecretString};

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// Why sealing or opening failed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The master key from configuration is not 32 bytes of base64.
    #[error("secrets.master_key must be 32 bytes encoded as base64 ({0})")]
    BadMasterKey(&'static str),
    /// The sealed secret names a master key this process does not have.
    #[error("the secret was sealed with master key `{0}`, which is not configured")]
    UnknownMasterKey(String),
    /// Authentication failed: wrong key, wrong associated data or tampered bytes.
    #[error("the sealed secret could not be opened (wrong master key or tampered data)")]
    Open,
    /// The system random source failed.
    #[error("the system random source failed")]
    Rng,
    /// The plaintext is not valid UTF-8 or is empty.
    #[error("the secret is empty or not valid text")]
    BadPlaintext,
    /// A remote key service (KMS) failed.
    #[error("the key service failed: {0}")]
    KeyService(String),
}

/// Something that wraps and unwraps 32-byte data keys: a local key or a remote KMS key.
pub trait MasterKey: Send + Sync {
    /// A stable identifier stored with every sealed secret (e.g. `local:2026-11`, a KMS key ARN).
    fn id(&self) -> &str;

    /// Encrypts a data key.
    fn wrap(&self, data_key: &[u8; KEY_LEN]) -> impl Future<Output = Result<Vec<u8>, CryptoError>> + Send;

    /// Decrypts a data key produced by [`MasterKey::wrap`].
    fn unwrap(&self, wrapped: &[u8]) -> impl Future<Output = Result<Zeroizing<[u8; KEY_LEN]>, CryptoError>> + Send;
}

/// A master key held in configuration (base64 of 32 random bytes).
pub struct LocalMasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl LocalMasterKey {
    /// Builds the key from its configured id and base64 value.
    pub fn new(id: impl Into<String>, key_b64: &SecretString) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(
            STANDARD.decode(key_b64.expose().trim()).map_err(|_| CryptoError::BadMasterKey("not base64"))?,
        );
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::BadMasterKey("wrong length"));
        }
        Ok(Self { id: id.into(), cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)) })
    }

    /// A fresh random master key as base64, for `ccp-admin gen-secrets` and tests.
    pub fn generate_b64() -> Result<SecretString, CryptoError> {
        let bytes = Zeroizing::new(random_bytes::<KEY_LEN>().map_err(|_| CryptoError::Rng)?);
        Ok(SecretString::new(STANDARD.encode(bytes.as_slice())))
    }
}

impl fmt::Debug for LocalMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey for LocalMasterKey {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, data_key: &[u8; KEY_LEN]) -> Result<Vec<u8>, CryptoError> {
        let nonce = random_bytes::<NONCE_LEN>().map_err(|_| CryptoError::Rng)?;
        let payload = Payload { msg: data_key, aad: self.id.as_bytes() };
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).map_err(|_| CryptoError::Open)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        if wrapped.len() <= NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let payload = Payload { msg: ct, aad: self.id.as_bytes() };
        let pt = Zeroizing::new(self.cipher.decrypt(Nonce::from_slice(nonce), payload).map_err(|_| CryptoError::Open)?);
        let key: [u8; KEY_LEN] = pt.as_slice().try_into().map_err(|_| CryptoError::Open)?;
        Ok(Zeroizing::new(key))
    }
}

/// A Bedrock API key in plaintext: only in memory, only while it is used. Not `Serialize`,
/// not `Display`; `Debug` shows the hint only.
pub struct BedrockApiKey(Zeroizing<String>);

impl BedrockApiKey {
    /// Wraps a key an admin submitted (trimmed). Refuses empty or multi-line input.
    pub fn new(value: &str) -> Result<Self, CryptoError> {
        let v = value.trim();
        if v.is_empty() || v.len() > 4096 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(CryptoError::BadPlaintext);
        }
        Ok(Self(Zeroizing::new(v.to_owned())))
    }

    /// The key itself, for the `Authorization: Bearer` header of the Bedrock call.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The non-secret hint stored and shown instead of the key.
    pub fn hint(&self) -> SecretHint {
        SecretHint::of(&self.0)
    }
}

impl fmt::Debug for BedrockApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BedrockApiKey").field(&self.hint()).finish()
    }
}

/// What a list shows of a sealed secret: its first 4 and, for long secrets, last 4 characters
/// (`ABSK…x9Qz`). Deserialization refuses anything longer than [`SecretHint::MAX_LEN`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHint(String);

impl SecretHint {
    /// Longest hint text accepted.
    pub const MAX_LEN: usize = 12;

    fn of(secret: &str) -> Self {
        let chars: Vec<char> = secret.chars().collect();
        let head: String = chars.iter().take(4).collect();
        if chars.len() >= 24 {
            let tail: String = chars[chars.len() - 4..].iter().collect();
            Self(format!("{head}…{tail}"))
        } else {
            Self(format!("{head}…"))
        }
    }

    /// The hint text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for SecretHint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretHint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        if s.chars().count() > Self::MAX_LEN {
            return Err(serde::de::Error::custom("a secret hint has at most 12 characters"));
        }
        Ok(Self(s))
    }
}

/// A secret sealed under a fresh data key, as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which master key wrapped the data key.
    pub master_key_id: String,
    /// The data key, wrapped by the master key.
    #[serde(with = "b64")]
    pub wrapped_key: Vec<u8>,
    /// AES-GCM nonce of the ciphertext.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// AES-256-GCM ciphertext with its tag.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl SealedSecret {
    /// Seals `secret` for the context `aad` (the access key id) under a new data key.
    pub async fn seal<M: MasterKey>(master: &M, secret: &BedrockApiKey, aad: &str) -> Result<Self, CryptoError> {
        let data_key = Zeroizing::new(random_bytes::<KEY_LEN>().map_err(|_| CryptoError::Rng)?);
        let nonce = random_bytes::<NONCE_LEN>().map_err(|_| CryptoError::Rng)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.as_slice()));
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.expose().as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Open)?;
        let wrapped_key = master.wrap(&data_key).await?;
        Ok(Self { master_key_id: master.id().to_owned(), wrapped_key, nonce: nonce.to_vec(), ciphertext })
    }

    /// Opens the secret sealed for `aad`.
    pub async fn open<M: MasterKey>(&self, master: &M, aad: &str) -> Result<BedrockApiKey, CryptoError> {
        if self.master_key_id != master.id() {
            return Err(CryptoError::UnknownMasterKey(self.master_key_id.clone()));
        }
        if self.nonce.len() != NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let data_key = master.unwrap(&self.wrapped_key).await?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.as_slice()));
        let plain = Zeroizing::new(
            cipher
                .decrypt(Nonce::from_slice(&self.nonce), Payload { msg: &self.ciphertext, aad: aad.as_bytes() })
                .map_err(|_| CryptoError::Open)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| CryptoError::BadPlaintext)?;
        BedrockApiKey::new(text)
    }
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn master(id: &str) -> LocalMasterKey {
        LocalMasterKey::new(id, &LocalMasterKey::generate_b64().unwrap()).unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn bad_master_keys_are_refused() {
        assert!(LocalMasterKey::new("k", &SecretString::new("not base64!")).is_err());
        assert!(LocalMasterKey::new("k", &SecretString::new(STANDARD.encode([0u8; 16]))).is_err());
    }

    #[test]
    fn tampering_wrong_context_and_wrong_master_are_detected() {
        let m = master("local:1");
        let secret = BedrockApiKey::new("ABSKexampleexampleexample1234").unwrap();
        let sealed = block_on(SealedSecret::seal(&m, &secret, "key_A")).unwrap();
        assert_eq!(block_on(sealed.open(&m, "key_B")).err(), Some(CryptoError::Open));
        let mut t = sealed.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(block_on(t.open(&m, "key_A")).err(), Some(CryptoError::Open));
        let other_same_id = master("local:1");
        assert_eq!(block_on(sealed.open(&other_same_id, "key_A")).err(), Some(CryptoError::Open));
        let other_id = master("local:2");
        assert!(matches!(block_on(sealed.open(&other_id, "key_A")), Err(CryptoError::UnknownMasterKey(_))));
    }

    #[test]
    fn hint_and_debug_never_reveal_the_middle() {
        let secret = BedrockApiKey::new("ABSKQmVkcm9ja0FQSUtleS1zZWNyZXQtdmFsdWU=").unwrap();
        assert_eq!(secret.hint().as_str(), "ABSK…dWU=");
        assert!(!format!("{secret:?}").contains("cm9ja"));
        assert!(BedrockApiKey::new("two\nlines").is_err());
        assert!(BedrockApiKey::new("   ").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn seal_then_open_round_trips(secret in "[!-~]{1,200}", aad in "[a-z_0-9]{1,40}") {
            let m = master("local:p");
            let key = BedrockApiKey::new(&secret).unwrap();
            let sealed = block_on(SealedSecret::seal(&m, &key, &aad)).unwrap();
            let json = serde_json::to_string(&sealed).unwrap();
            prop_assert!(!json.contains(&secret) || secret.len() < 8);
            let back: SealedSecret = serde_json::from_str(&json).unwrap();
            let opened = block_on(back.open(&m, &aad)).unwrap();
            prop_assert_eq!(opened.expose(), secret.as_str());
        }
    }
}

/// The master key the configuration names: local or (with the `kms` feature) AWS KMS.
#[derive(Debug)]
pub enum ConfiguredMasterKey {
    /// `secrets.master_key`.
    Local(Box<LocalMasterKey>),
    /// `secrets.kms_key_id`.
    #[cfg(feature = "kms")]
    Kms(super::kms::KmsMasterKey),
}

impl MasterKey for ConfiguredMasterKey {
    fn id(&self) -> &str {
        match self {
            Self::Local(k) => k.id(),
            #[cfg(feature = "kms")]
            Self::Kms(k) => k.id(),
        }
    }

    async fn wrap(&self, data_key: &[u8; KEY_LEN]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Self::Local(k) => k.wrap(data_key).await,
            #[cfg(feature = "kms")]
            Self::Kms(k) => k.wrap(data_key).await,
        }
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        match self {
            Self::Local(k) => k.unwrap(wrapped).await,
            #[cfg(feature = "kms")]
            Self::Kms(k) => k.unwrap(wrapped).await,
        }
    }
}
