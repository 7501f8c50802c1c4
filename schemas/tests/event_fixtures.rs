//! Every event type has a committed v1 sample that still decodes and round-trips unchanged, and
//! no event built from real secrets contains them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use ccp_schemas::events::{AccessKeyIssued, BedrockApiKeyRegistered, BedrockSettings, Event, EVENT_TYPES};
use ccp_schemas::ids::{AccessKeyId, UserId};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper};
use ccp_schemas::secrets::envelope::{BedrockApiKey, LocalMasterKey, SealedSecret};
use ccp_schemas::secrets::SecretString;
use ccp_schemas::{Actor, Envelope};

fn fixtures() -> Vec<(String, serde_json::Value, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/events/v1");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        out.push((path.file_stem().unwrap().to_string_lossy().into_owned(), value, bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn there_is_exactly_one_sample_per_event_type() {
    let names: BTreeSet<String> = fixtures().into_iter().map(|f| f.0).collect();
    let types: BTreeSet<String> = EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(names, types);
}

#[test]
fn samples_decode_as_their_type_and_round_trip() {
    for (name, value, bytes) in fixtures() {
        let envelope = Envelope::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(envelope.event.event_type(), name);
        assert_eq!(envelope.schema_version, 1);
        let again: serde_json::Value = serde_json::from_slice(&envelope.encode().unwrap()).unwrap();
        assert_eq!(again, value, "{name} does not round-trip");
    }
}

#[test]
fn newer_schema_versions_and_garbage_are_refused() {
    let (_, mut value, _) = fixtures().into_iter().next().unwrap();
    value["schema_version"] = 2.into();
    let err = Envelope::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(err.to_string().contains("schema version 2"), "{err}");
    assert!(err.is_newer());
    // A newer version whose payload this build cannot even read is still newer, not malformed.
    let mut reshaped = value.clone();
    reshaped["payload"] = serde_json::json!({ "renamed": true });
    let err = Envelope::decode(&serde_json::to_vec(&reshaped).unwrap()).unwrap_err();
    assert!(err.is_newer() && err.to_string().contains("schema version 2"), "{err}");
    value["schema_version"] = 1.into();
    value["type"] = "user_exploded".into();
    let err = Envelope::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    assert!(err.is_newer() && err.to_string().contains("user_exploded"), "{err}");
    reshaped["schema_version"] = 1.into();
    assert!(!Envelope::decode(&serde_json::to_vec(&reshaped).unwrap()).unwrap_err().is_newer());
    assert!(!Envelope::decode(b"\xff\xfe not json").unwrap_err().is_newer());
    assert!(!Envelope::decode(b"{}").unwrap_err().is_newer());
}

#[test]
fn unknown_optional_fields_from_newer_writers_are_tolerated() {
    let (_, mut value, _) = fixtures().into_iter().find(|f| f.0 == "user_created").unwrap();
    value["payload"]["team"] = "added later".into();
    value["trace_id"] = "abc".into();
    assert!(Envelope::decode(&serde_json::to_vec(&value).unwrap()).is_ok());
}

#[tokio::test]
async fn events_built_from_real_secrets_never_contain_them() {
    let pepper = KeyPepper::new(&SecretString::new("x".repeat(40))).unwrap();
    let master = LocalMasterKey::new("local-1", &LocalMasterKey::generate_b64().unwrap()).unwrap();
    let access_key = AccessKey::generate().unwrap();
    let bedrock_key = BedrockApiKey::new("ABSKQmVkcm9ja0FQSUtleS1hYmNkZWZnaGlqa2xtbm9w").unwrap();
    let user_id = UserId::new();
    let key_id = AccessKeyId::new();
    let events = [
        Event::AccessKeyIssued(AccessKeyIssued {
            key_id,
            user_id,
            name: None,
            key_hash: access_key.hash(&pepper),
            key_prefix: access_key.display_prefix(),
            bedrock: BedrockSettings::default(),
        }),
        Event::BedrockApiKeyRegistered(BedrockApiKeyRegistered {
            key_id,
            user_id,
            sealed: SealedSecret::seal(&master, &bedrock_key, &key_id.to_string()).await.unwrap(),
            hint: bedrock_key.hint(),
        }),
    ];
    for event in events {
        let json = String::from_utf8(Envelope::new(event, Actor::Anonymous).encode().unwrap()).unwrap();
        assert!(!json.contains(&access_key.expose()[9..]), "access key leaked: {json}");
        assert!(!json.contains(&bedrock_key.expose()[4..20]), "bedrock key leaked: {json}");
    }
}

/// A cleared budget (`null` limit) survives the envelope, whose payload is flattened.
#[test]
fn a_cleared_budget_round_trips_through_the_envelope() {
    use ccp_schemas::events::BudgetSet;
    for limit in [None, Some(rust_decimal::Decimal::new(25050, 2))] {
        let event = Event::BudgetSet(BudgetSet { user_id: UserId::new(), monthly_limit_usd: limit });
        let bytes = Envelope::new(event.clone(), Actor::Anonymous).encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap().event, event);
    }
}

#[test]
fn the_envelope_decodes_whatever_the_field_order_and_names_what_is_wrong() {
    for (name, value, bytes) in fixtures() {
        let expected = Envelope::decode(&bytes).unwrap();
        // Payload first, then the rest (the writer puts `type` before `payload`).
        let obj = value.as_object().unwrap();
        let mut reordered = String::from("{");
        let mut fields: Vec<(&String, &serde_json::Value)> = obj.iter().collect();
        fields.sort_by_key(|(k, _)| if k.as_str() == "payload" { 0 } else { 1 });
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                reordered.push(',');
            }
            reordered.push_str(&format!("{}:{}", serde_json::to_string(k).unwrap(), v));
        }
        reordered.push('}');
        assert!(reordered.starts_with("{\"payload\""), "{reordered}");
        assert_eq!(Envelope::decode(reordered.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}")), expected);
        // Through a JSON value, not only from bytes.
        assert_eq!(serde_json::from_value::<Envelope>(value.clone()).unwrap(), expected, "{name}");
    }

    let (_, value, _) = fixtures().into_iter().find(|f| f.0 == "user_created").unwrap();
    for field in ["id", "schema_version", "occurred_at", "actor", "type", "payload"] {
        let mut v = value.clone();
        v.as_object_mut().unwrap().remove(field);
        let err = Envelope::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
        assert!(err.contains(&format!("missing field `{field}`")), "{field}: {err}");
    }
    let text = serde_json::to_string(&value).unwrap();
    let doubled = text.replacen('{', "{\"type\":\"user_created\",", 1);
    let err = Envelope::decode(doubled.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("duplicate field `type`"), "{err}");
    let mut wrong = value.clone();
    wrong["payload"]["user_id"] = 7.into();
    assert!(Envelope::decode(&serde_json::to_vec(&wrong).unwrap()).is_err());
    let mut mismatched = value;
    mismatched["type"] = "access_key_revoked".into();
    assert!(Envelope::decode(&serde_json::to_vec(&mismatched).unwrap()).is_err());
}
