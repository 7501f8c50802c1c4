//! The `keys` dimension: each access key's current state (owner, label, display prefix, status,
//! Bedrock settings and whether its Bedrock API key is registered and ready, issued and revoked
//! times), one row per change, from the access-key events of the admin stream. No hash and no
//! sealed secret reach it.
//!
//! The fields follow [`ccp_schemas::state::AccessKeyState::apply`], the one fold of key events
//! (a unit test holds them together); `revoked_at` is folded here.

use std::collections::HashMap;

use ccp_runtime::tables::KeyRow;
use ccp_schemas::events::Event;
use ccp_schemas::state::KeyStatus;
use ccp_schemas::subjects::StreamKind;
use ccp_schemas::Envelope;

use super::{label, TableSpec};

/// `keys`: the newest row per key is its state (ReplacingMergeTree on `stream_seq`).
pub struct Keys;

impl TableSpec for Keys {
    type Row = KeyRow;
    const NAME: &'static str = "keys";
    const TABLE: &'static str = "keys";
    const STREAM: StreamKind = StreamKind::Admin;
    /// Each key's newest row.
    type State = HashMap<String, KeyRow>;

    fn row(state: &mut Self::State, seq: u64, envelope: &Envelope) -> Option<KeyRow> {
        let at = envelope.occurred_at;
        let row = match &envelope.event {
            Event::AccessKeyIssued(e) => KeyRow {
                key_id: e.key_id.to_string(),
                user_id: e.user_id.to_string(),
                name: e.name.clone().unwrap_or_default(),
                key_prefix: e.key_prefix.as_str().to_owned(),
                status: label(&KeyStatus::Active),
                bedrock_region: e.bedrock.region.clone().unwrap_or_default(),
                bedrock_default_model: e.bedrock.default_model.clone().unwrap_or_default(),
                bedrock_key: 0,
                bedrock_readiness: String::new(),
                created_at: at,
                updated_at: at,
                revoked_at: None,
                stream_seq: seq,
            },
            event => {
                let mut row = state.get(&event.key_id()?.to_string())?.clone();
                match event {
                    Event::AccessKeyRevoked(_) => {
                        row.status = label(&KeyStatus::Revoked);
                        row.revoked_at = Some(at);
                    }
                    Event::AccessKeyRotated(e) => row.key_prefix = e.key_prefix.as_str().to_owned(),
                    Event::BedrockSettingsChanged(e) => {
                        row.bedrock_region = e.bedrock.region.clone().unwrap_or_default();
                        row.bedrock_default_model = e.bedrock.default_model.clone().unwrap_or_default();
                    }
                    Event::BedrockApiKeyRegistered(_) | Event::BedrockApiKeyRotated(_) => {
                        row.bedrock_key = 1;
                        row.bedrock_readiness = String::new();
                    }
                    Event::BedrockApiKeyRemoved(_) => {
                        row.bedrock_key = 0;
                        row.bedrock_readiness = String::new();
                    }
                    // A check changes what the key's readiness is, not the key (as the fold).
                    Event::BedrockKeyChecked(e) if row.bedrock_key == 1 => {
                        row.bedrock_readiness = label(&e.readiness);
                        row.stream_seq = seq;
                        state.insert(row.key_id.clone(), row.clone());
                        return Some(row);
                    }
                    _ => return None,
                }
                row.updated_at = at;
                row.stream_seq = seq;
                row
            }
        };
        state.insert(row.key_id.clone(), row.clone());
        Some(row)
    }

    fn seq(row: &KeyRow) -> u64 {
        row.stream_seq
    }

    async fn load(clickhouse: &clickhouse::Client) -> anyhow::Result<Self::State> {
        let rows: Vec<KeyRow> = clickhouse.query("SELECT ?fields FROM keys FINAL").fetch_all().await?;
        Ok(rows.into_iter().map(|r| (r.key_id.clone(), r)).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ccp_schemas::events::{
        AccessKeyIssued, AccessKeyRevoked, AccessKeyRotated, BedrockKeyChecked, BedrockReadiness, BedrockSettings,
        BedrockSettingsChanged, CheckCause,
    };
    use ccp_schemas::ids::{AccessKeyId, UserId};
    use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper};
    use ccp_schemas::secrets::SecretString;
    use ccp_schemas::state::AccessKeyState;
    use ccp_schemas::Actor;
    use chrono::{DateTime, Duration, Utc};

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    /// The fixture `bedrock_api_key_registered` event, for this key.
    fn registered(key_id: AccessKeyId, user_id: UserId) -> Event {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/events/v1/bedrock_api_key_registered.json");
        match Envelope::decode(&std::fs::read(path).unwrap()).unwrap().event {
            Event::BedrockApiKeyRegistered(mut e) => {
                (e.key_id, e.user_id) = (key_id, user_id);
                Event::BedrockApiKeyRegistered(e)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_keys_row_is_its_state_as_the_one_fold_sees_it_without_secrets() {
        let pepper = KeyPepper::new(&SecretString::new("p".repeat(32))).unwrap();
        let (first, second) = (AccessKey::generate().unwrap(), AccessKey::generate().unwrap());
        let (key_id, user_id) = (AccessKeyId::new(), UserId::new());
        let bedrock = BedrockSettings { region: Some("eu-west-1".into()), default_model: None };
        let check = Event::BedrockKeyChecked(BedrockKeyChecked {
            key_id,
            user_id,
            readiness: BedrockReadiness::ModelNotEnabled,
            region: "eu-west-1".into(),
            models: Vec::new(),
            listing: None,
            cause: CheckCause::Registered,
        });
        let events = [
            Event::AccessKeyIssued(AccessKeyIssued {
                key_id,
                user_id,
                name: Some("laptop".into()),
                key_hash: first.hash(&pepper),
                key_prefix: first.display_prefix(),
                bedrock: BedrockSettings::default(),
            }),
            // Checked before any Bedrock key: nothing to record.
            check.clone(),
            Event::BedrockSettingsChanged(BedrockSettingsChanged { key_id, user_id, bedrock }),
            registered(key_id, user_id),
            check,
            Event::AccessKeyRotated(AccessKeyRotated {
                key_id,
                user_id,
                key_hash: second.hash(&pepper),
                key_prefix: second.display_prefix(),
                previous_key_hash: first.hash(&pepper),
            }),
            Event::AccessKeyRevoked(AccessKeyRevoked { key_id, user_id, reason: None }),
        ];
        let mut dimension = HashMap::new();
        let mut fold: Option<AccessKeyState> = None;
        let mut rows = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let minutes = i64::try_from(i).unwrap();
            let mut env = Envelope::new(event.clone(), Actor::System { component: "test".into() });
            env.occurred_at = at(minutes);
            rows.extend(Keys::row(&mut dimension, 100 + u64::try_from(i).unwrap(), &env));
            AccessKeyState::apply(&mut fold, event, at(minutes));
        }
        assert_eq!(rows.len(), events.len() - 1, "the early check made no row");
        let (row, state) = (rows.pop().unwrap(), fold.unwrap());
        assert_eq!((row.key_id.clone(), row.user_id.clone()), (state.key_id.to_string(), state.user_id.to_string()));
        assert_eq!(row.name, "laptop");
        assert_eq!(row.key_prefix, state.key_prefix.as_str());
        assert_eq!(row.status, label(&state.status));
        assert_eq!(row.bedrock_region, "eu-west-1");
        assert_eq!(row.bedrock_key, u8::from(state.bedrock_key.is_some()));
        let readiness = state.bedrock_key.and_then(|k| k.readiness).map(|r| label(&r.readiness));
        assert_eq!(Some(row.bedrock_readiness.clone()), readiness);
        assert_eq!((row.created_at, row.updated_at), (state.created_at, state.updated_at));
        assert_eq!(row.revoked_at, Some(at(6)));
        assert_eq!(row.stream_seq, 106);
        let text = format!("{row:?}");
        assert!(!text.contains(&first.hash(&pepper).to_hex()) && !text.contains(&second.hash(&pepper).to_hex()));
    }
}
