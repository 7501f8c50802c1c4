//! Access keys: `ak_` + base64url(32 CSPRNG bytes), stored only as a peppered HMAC-SHA256 hash
//! and shown only as a short display prefix.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{random_bytes, SecretString};

/// The literal start of every access key.
pub const KEY_PREFIX: &str = "ak_";
/// Bytes of entropy in a key.
pub const KEY_BYTES: usize = 32;
/// Characters of a full key: `ak_` + 43 base64url characters.
pub const KEY_LEN: usize = 3 + 43;
/// Characters of the display prefix: `ak_` + 6.
pub const DISPLAY_PREFIX_LEN: usize = 9;

/// Why a string is not an access key. Never contains the candidate itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessKeyError {
    /// It does not start with `ak_`.
    #[error("access keys start with `ak_`")]
    MissingPrefix,
    /// Wrong number of characters.
    #[error("access keys are {KEY_LEN} characters long")]
    WrongLength,
    /// Characters outside base64url, or a non-canonical encoding.
    #[error("access keys contain only base64url characters after `ak_`")]
    BadEncoding,
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Rng,
}

/// A plaintext access key. Exists only while a request is authenticated or in the one response
/// that issues it; no `Debug` value, no `Display`, no `Serialize`.
pub struct AccessKey(Zeroizing<String>);

impl AccessKey {
    /// A fresh key from 32 bytes of the OS CSPRNG.
    pub fn generate() -> Result<Self, AccessKeyError> {
        let bytes = Zeroizing::new(random_bytes::<KEY_BYTES>().map_err(|_| AccessKeyError::Rng)?);
        let mut s = String::with_capacity(KEY_LEN);
        s.push_str(KEY_PREFIX);
        URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut s);
        Ok(Self(Zeroizing::new(s)))
    }

    /// Parses a key as a client presents it, checking its shape only (not whether it exists).
    pub fn parse(candidate: &str) -> Result<Self, AccessKeyError> {
        let rest = candidate.strip_prefix(KEY_PREFIX).ok_or(AccessKeyError::MissingPrefix)?;
        if candidate.len() != KEY_LEN {
            return Err(AccessKeyError::WrongLength);
        }
        let mut decoded = Zeroizing::new([0u8; KEY_BYTES + 2]);
        match URL_SAFE_NO_PAD.decode_slice(rest, decoded.as_mut_slice()) {
            Ok(KEY_BYTES) => Ok(Self(Zeroizing::new(candidate.to_owned()))),
            _ => Err(AccessKeyError::BadEncoding),
        }
    }

    /// The full key, for the one response that issues it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The short, non-secret prefix shown in lists and logs.
    pub fn display_prefix(&self) -> KeyPrefix {
        KeyPrefix(self.0[..DISPLAY_PREFIX_LEN].to_owned())
    }

    /// The peppered hash under which the key is stored and looked up.
    pub fn hash(&self, pepper: &KeyPepper) -> KeyHash {
        pepper.hash(self.expose())
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AccessKey").field(&self.display_prefix()).finish()
    }
}

/// The server-side secret mixed into every access-key hash, so a leaked event log or KV bucket
/// cannot be brute-forced offline without it.
#[derive(Clone)]
pub struct KeyPepper(Hmac<Sha256>);

impl KeyPepper {
    /// Minimum length of a configured pepper.
    pub const MIN_LEN: usize = 32;

    /// Builds the pepper from configuration; refuses one shorter than [`Self::MIN_LEN`] bytes.
    pub fn new(secret: &SecretString) -> Result<Self, PepperTooShort> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < Self::MIN_LEN {
            return Err(PepperTooShort);
        }
        Hmac::<Sha256>::new_from_slice(bytes).map(Self).map_err(|_| PepperTooShort)
    }

    /// A fresh random pepper (48 CSPRNG bytes, base64url), for `ccp-admin gen-secrets`.
    pub fn generate() -> Result<SecretString, AccessKeyError> {
        let bytes = Zeroizing::new(random_bytes::<48>().map_err(|_| AccessKeyError::Rng)?);
        Ok(SecretString::new(URL_SAFE_NO_PAD.encode(bytes.as_slice())))
    }

    /// HMAC-SHA256(pepper, key). Also used for keys of unknown validity (lookups).
    pub fn hash(&self, key: &str) -> KeyHash {
        self.hash_bytes(key.as_bytes())
    }

    /// HMAC-SHA256(pepper, bytes): a keyed fingerprint of data that may contain secrets.
    pub fn hash_bytes(&self, bytes: &[u8]) -> KeyHash {
        let mut mac = self.0.clone();
        mac.update(bytes);
        KeyHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for KeyPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPepper(<redacted>)")
    }
}

/// The configured pepper is too short to be a secret.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("secrets.access_key_pepper must be at least {} bytes", KeyPepper::MIN_LEN)]
pub struct PepperTooShort;

/// HMAC-SHA256 of an access key: what events, KV entries and lookups carry. Hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Lower-case hex, as stored (also a valid NATS KV key).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time comparison.
    pub fn ct_eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..12])
    }
}

impl FromStr for KeyHash {
    type Err = InvalidKeyHash;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| InvalidKeyHash)?;
        Ok(Self(out))
    }
}

/// A key hash that is not 64 hex characters.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a key hash is 64 hexadecimal characters")]
pub struct InvalidKeyHash;

impl Serialize for KeyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The first characters of an access key (`ak_Xy3…`): enough to recognise, far too few to use.
/// Deserialization refuses anything longer, so an event cannot smuggle a full key in this field.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// The prefix of a string that *claims* to be a key (e.g. a refused one), without checking it.
    pub fn of_candidate(candidate: &str) -> Self {
        Self(candidate.chars().take(DISPLAY_PREFIX_LEN).collect())
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How lists show a key: the prefix and a mask.
    pub fn masked(&self) -> String {
        format!("{}…", self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for KeyPrefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        if s.chars().count() > DISPLAY_PREFIX_LEN {
            return Err(serde::de::Error::custom(format!("a key prefix has at most {DISPLAY_PREFIX_LEN} characters")));
        }
        Ok(Self(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pepper() -> KeyPepper {
        KeyPepper::new(&SecretString::new("p".repeat(32))).unwrap()
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = AccessKey::generate().unwrap();
        assert_eq!(key.expose().len(), KEY_LEN);
        assert!(key.expose().starts_with("ak_"));
        assert!(AccessKey::parse(key.expose()).is_ok());
        assert_eq!(key.display_prefix().as_str(), &key.expose()[..9]);
        assert_ne!(AccessKey::generate().unwrap().expose(), key.expose());
    }

    #[test]
    fn debug_shows_only_the_prefix() {
        let key = AccessKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.expose()[9..]));
    }

    #[test]
    fn short_pepper_is_refused() {
        assert!(KeyPepper::new(&SecretString::new("short")).is_err());
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        assert_eq!(AccessKey::parse("sk-ant-123").err(), Some(AccessKeyError::MissingPrefix));
        assert_eq!(AccessKey::parse("ak_abc").err(), Some(AccessKeyError::WrongLength));
        let bad = format!("ak_{}", "!".repeat(43));
        assert_eq!(AccessKey::parse(&bad).err(), Some(AccessKeyError::BadEncoding));
    }

    #[test]
    fn prefix_refuses_full_keys_on_decode() {
        let key = AccessKey::generate().unwrap();
        let json = serde_json::to_string(key.expose()).unwrap();
        assert!(serde_json::from_str::<KeyPrefix>(&json).is_err());
    }

    proptest! {
        #[test]
        fn hash_is_deterministic_and_hex_round_trips(bytes in proptest::array::uniform32(any::<u8>())) {
            let key = format!("ak_{}", URL_SAFE_NO_PAD.encode(bytes));
            let parsed = AccessKey::parse(&key).unwrap();
            let h = parsed.hash(&pepper());
            prop_assert_eq!(h, pepper().hash(&key));
            prop_assert_eq!(h.to_hex().parse::<KeyHash>().unwrap(), h);
            prop_assert!(!h.to_hex().contains(&key[3..]));
        }

        #[test]
        fn different_peppers_give_different_hashes(bytes in proptest::array::uniform32(any::<u8>())) {
            let key = format!("ak_{}", URL_SAFE_NO_PAD.encode(bytes));
            let other = KeyPepper::new(&SecretString::new("q".repeat(32))).unwrap();
            prop_assert_ne!(pepper().hash(&key), other.hash(&key));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = AccessKey::parse(&s);
        }

        #[test]
        fn parse_accepts_exactly_canonical_keys(s in "ak_[A-Za-z0-9_-]{43}") {
            let ok = AccessKey::parse(&s).is_ok();
            let canonical = URL_SAFE_NO_PAD.decode(&s[3..]).map(|b| URL_SAFE_NO_PAD.encode(b) == s[3..]).unwrap_or(false);
            prop_assert_eq!(ok, canonical);
        }
    }
}
