//! The checks behind the `event_decode` and `access_key` fuzz targets (`fuzz/`), kept here so the
//! normal suite replays the committed corpus through exactly the same code on stable
//! (`tests::committed_corpus_passes_the_checks`). Each check panics (by `assert!`) when an
//! invariant breaks; for any input it must return normally otherwise.
//!
//! Not part of the crate's API: hidden from the docs and free to change.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::events::Envelope;
use crate::secrets::access_key::{
    AccessKey, KeyHash, KeyPepper, KeyPrefix, DISPLAY_PREFIX_LEN, KEY_BYTES, KEY_LEN, KEY_PREFIX,
};
use crate::secrets::SecretString;

/// `event_decode`: arbitrary bytes either fail to decode, or decode to an envelope that encodes
/// and decodes back to itself, byte for byte stable after the first encoding, within the
/// version this build reads.
pub fn check_event_decode(data: &[u8]) {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    assert!(envelope.schema_version <= envelope.event.schema_version(), "a newer schema version was accepted");
    let encoded = envelope.encode();
    assert!(encoded.is_ok(), "a decoded envelope does not encode: {:?}", encoded.as_ref().err());
    let Ok(encoded) = encoded else { return };
    let again = Envelope::decode(&encoded);
    assert!(again.is_ok(), "an encoded envelope does not decode: {:?}", again.as_ref().err());
    if let Ok(again) = again {
        assert_eq!(again, envelope, "the envelope changed in an encode/decode round trip");
        assert_eq!(again.encode().ok(), Some(encoded), "the encoding is not stable");
    }
}

/// `access_key`: arbitrary text is refused or accepted as exactly the canonical keys; a key built
/// from the input's first 32 bytes round-trips; hashes and prefixes never reveal the key.
pub fn check_access_key(data: &[u8]) {
    let pepper = KeyPepper::new(&SecretString::new("fuzz-pepper-fuzz-pepper-fuzz-pepper-0123"));
    assert!(pepper.is_ok(), "a 40-byte pepper was refused");
    let Ok(pepper) = pepper else { return };
    let text = String::from_utf8_lossy(data);

    // Parsing: accepted exactly when `ak_` + canonical base64url of 32 bytes.
    let canonical = text.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        URL_SAFE_NO_PAD.decode(rest).is_ok_and(|b| b.len() == KEY_BYTES && URL_SAFE_NO_PAD.encode(&b) == rest)
    });
    match AccessKey::parse(&text) {
        Ok(key) => {
            assert!(canonical, "a non-canonical key was accepted");
            check_parsed_key(&key, &pepper);
        }
        Err(e) => assert!(!canonical, "a canonical key was refused: {e}"),
    }

    // The display prefix of any candidate (refused keys are logged by it) is short and decodes.
    let prefix = KeyPrefix::of_candidate(&text);
    assert!(prefix.as_str().chars().count() <= DISPLAY_PREFIX_LEN);
    let json = serde_json::to_string(&prefix).unwrap_or_default();
    assert_eq!(serde_json::from_str::<KeyPrefix>(&json).ok(), Some(prefix), "a display prefix does not round-trip");

    // Key hashes: anything that parses is 64 hex characters and prints back the same.
    if let Ok(hash) = text.parse::<KeyHash>() {
        assert_eq!(hash.to_hex(), text.to_ascii_lowercase());
        assert_eq!(hash.to_hex().parse::<KeyHash>().ok(), Some(hash));
    }

    // A key generated from the input's first 32 bytes round-trips through the codec.
    let mut material = [0u8; KEY_BYTES];
    for (slot, byte) in material.iter_mut().zip(data) {
        *slot = *byte;
    }
    let generated = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(material));
    let key = AccessKey::parse(&generated);
    assert!(key.is_ok(), "a generated key was refused: {:?}", key.as_ref().err());
    if let Ok(key) = key {
        assert_eq!(key.expose(), generated);
        check_parsed_key(&key, &pepper);
    }
}

fn check_parsed_key(key: &AccessKey, pepper: &KeyPepper) {
    let full = key.expose();
    assert_eq!(full.len(), KEY_LEN);
    let secret_part = &full[DISPLAY_PREFIX_LEN..];
    let prefix = key.display_prefix();
    assert_eq!(prefix.as_str(), &full[..DISPLAY_PREFIX_LEN]);
    assert!(!format!("{key:?}").contains(secret_part), "Debug shows the key");
    let hash = key.hash(pepper);
    assert_eq!(hash, pepper.hash(full), "the hash is not deterministic");
    assert_eq!(hash.to_hex().parse::<KeyHash>().ok(), Some(hash));
    assert!(!hash.to_hex().contains(secret_part) && !format!("{hash:?}").contains(secret_part));
    // The prefix's own serde refuses the full key, so no event can carry it in that field.
    let as_json = serde_json::to_string(full).unwrap_or_default();
    assert!(serde_json::from_str::<KeyPrefix>(&as_json).is_err(), "a full key decoded as a prefix");
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// Every file of `fuzz/corpus/<target>` and `fuzz/artifacts/<target>` (if present).
    pub(crate) fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut out = Vec::new();
        for dir in [root.join("corpus").join(target), root.join("artifacts").join(target)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if entry.path().is_file() {
                    out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
                }
            }
        }
        out
    }

    #[test]
    fn committed_corpus_passes_the_checks() {
        let events = corpus("event_decode");
        assert!(events.len() >= 23, "the event_decode seed corpus is missing ({} files)", events.len());
        for (path, bytes) in &events {
            let outcome = std::panic::catch_unwind(|| check_event_decode(bytes));
            assert!(outcome.is_ok(), "event_decode fails on {}", path.display());
        }
        let keys = corpus("access_key");
        assert!(!keys.is_empty(), "the access_key seed corpus is missing");
        for (path, bytes) in &keys {
            let outcome = std::panic::catch_unwind(|| check_access_key(bytes));
            assert!(outcome.is_ok(), "access_key fails on {}", path.display());
        }
    }

    #[test]
    fn the_event_fixtures_decode_and_round_trip_through_the_check() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events/v1");
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(Envelope::decode(&bytes).is_ok(), "{}", entry.path().display());
            check_event_decode(&bytes);
        }
    }

    /// Regression (found by the `event_decode` target): without serde_json's `float_roundtrip`
    /// a float such as a Plan-limit `utilization` could change by one unit in the last place on
    /// every decode/encode, so an event did not decode to what was encoded.
    #[test]
    fn floats_in_events_round_trip_exactly() {
        for text in ["8.888887999999999e35", "888888800000000001455424905816426264.0", "0.1", "2.2250738585072014e-308"]
        {
            let value: f64 = serde_json::from_str(text).unwrap();
            let again: f64 = serde_json::from_str(&serde_json::to_string(&value).unwrap()).unwrap();
            assert_eq!(value.to_bits(), again.to_bits(), "{text}");
        }
        let found = corpus("event_decode")
            .into_iter()
            .find(|(path, _)| path.to_string_lossy().contains("float-round-trip"))
            .expect("the committed reproducer");
        assert!(Envelope::decode(&found.1).is_ok(), "the reproducer is a valid event");
        check_event_decode(&found.1);
    }

    #[test]
    fn the_key_check_accepts_generated_keys_and_refuses_near_misses() {
        let key = AccessKey::generate().unwrap();
        check_access_key(key.expose().as_bytes());
        // The last character carries 2 spare bits: a non-canonical twin must be refused.
        check_access_key(format!("{}B", &key.expose()[..KEY_LEN - 1]).as_bytes());
        check_access_key(b"ak_");
        check_access_key("ak_\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}".as_bytes());
        check_access_key(&[0xff; 80]);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_pass_the_checks(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            check_access_key(&bytes);
            check_event_decode(&bytes);
        }
    }
}
