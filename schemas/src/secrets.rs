//! The one implementation of every secret the system handles.
//!
//! - [`access_key`]: developer access keys (`ak_…`), their peppered HMAC hash and display prefix.
//! - [`envelope`]: Bedrock API keys sealed with AES-256-GCM under a data key wrapped by a master
//!   key ([`envelope::MasterKey`]: a local key from config, or AWS KMS).
//! - [`SecretString`]: configuration secrets that never print.
//!
//! Events can only hold the *output* types here ([`access_key::KeyHash`],
//! [`access_key::KeyPrefix`], [`envelope::SealedSecret`], [`envelope::SecretPrefix`]); the
//! plaintext types implement neither `Serialize` nor `Display`.

pub mod access_key;
pub mod envelope;
#[cfg(feature = "kms")]
pub mod kms;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// A secret from configuration (a pepper, a master key, a password). `Debug`, `Display` and
/// `Serialize` print `"<redacted>"`; the value is read only through [`SecretString::expose`].
#[derive(Clone, Default)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself. Call only where it is used, never to log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.is_empty() { "" } else { "<redacted>" })
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// A fresh bearer token: `prefix` + base64url of 32 CSPRNG bytes (admin sessions, API tokens).
pub fn random_token(prefix: &str) -> Result<SecretString, getrandom::Error> {
    use base64::Engine as _;
    let bytes = zeroize::Zeroizing::new(random_bytes::<32>()?);
    let mut token = String::with_capacity(prefix.len() + 43);
    token.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut token);
    Ok(SecretString::new(token))
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_string_never_prints() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
