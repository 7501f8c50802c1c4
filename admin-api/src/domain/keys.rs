//! The access-key aggregate: issuing, revoking and rotating a key, and its Bedrock settings,
//! Bedrock API key and readiness checks.

use ccp_schemas::events::*;
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::secrets::access_key::{KeyHash, KeyPrefix};
use ccp_schemas::secrets::envelope::{SealedSecret, SecretHint};
use ccp_schemas::state::{AccessKeyState, KeyStatus, UserState};

use super::{Decision, Rejection};

/// Commands on an access key (and its Bedrock API key).
#[derive(Debug, Clone)]
pub enum KeyCommand {
    /// Issue a key to a user (the owner's state is checked: it must exist and be active).
    Issue {
        /// The admin's label for the key (`laptop`).
        name: Option<String>,
        /// Hash of the new secret.
        key_hash: KeyHash,
        /// Its prefix.
        key_prefix: KeyPrefix,
        /// Bedrock settings.
        bedrock: BedrockSettings,
    },
    /// Revoke for good.
    Revoke {
        /// Why, for the audit log.
        reason: Option<String>,
    },
    /// Replace the secret.
    Rotate {
        /// Hash of the new secret.
        key_hash: KeyHash,
        /// Its prefix.
        key_prefix: KeyPrefix,
    },
    /// Change region / default model.
    SetBedrockSettings(BedrockSettings),
    /// Register (or replace) the Bedrock API key.
    SetBedrockKey {
        /// Sealed key.
        sealed: SealedSecret,
        /// What lists show of the key (`ABSK…x9Q=`).
        hint: SecretHint,
    },
    /// Remove the Bedrock API key.
    RemoveBedrockKey,
    /// Record a readiness check of the Bedrock API key registration `checked` (its sealed
    /// nonce): refused when the key was replaced or removed meanwhile. A periodic check is
    /// recorded only when its verdict changed or the last record is a day old at `now`.
    RecordCheck {
        /// The check's event (its key and user ids are taken from the state).
        check: BedrockKeyChecked,
        /// The registration checked.
        checked: Vec<u8>,
        /// When it ran.
        now: chrono::DateTime<chrono::Utc>,
    },
}

/// How long an unchanged periodic verdict goes unrecorded.
pub const RECHECK_RECORD_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Decides an access-key command. `owner` is the state of the key's user (for issuing).
pub fn decide_key(
    state: Option<&AccessKeyState>,
    key_id: AccessKeyId,
    owner: Option<&UserState>,
    command: KeyCommand,
) -> Decision {
    let Some(key) = state else {
        return match command {
            KeyCommand::Issue { name, key_hash, key_prefix, bedrock } => {
                let owner = owner.ok_or_else(|| Rejection::NotFound("no such user".into()))?;
                if owner.status != UserStatus::Active {
                    return Err(Rejection::Conflict(format!(
                        "user {} is deactivated; reactivate them before issuing keys",
                        owner.user_id
                    )));
                }
                Ok(vec![Event::AccessKeyIssued(AccessKeyIssued {
                    key_id,
                    user_id: owner.user_id,
                    name,
                    key_hash,
                    key_prefix,
                    bedrock,
                })])
            }
            _ => Err(Rejection::NotFound(format!("no access key {key_id}"))),
        };
    };
    let user_id = key.user_id;
    if matches!(command, KeyCommand::Issue { .. }) {
        return Err(Rejection::Conflict(format!("access key {key_id} already exists")));
    }
    if key.status == KeyStatus::Revoked {
        return match command {
            KeyCommand::Revoke { .. } => Ok(vec![]),
            _ => Err(Rejection::Conflict(format!("access key {key_id} is revoked; issue a new key instead"))),
        };
    }
    Ok(match command {
        KeyCommand::Issue { .. } => vec![],
        KeyCommand::Revoke { reason } => vec![Event::AccessKeyRevoked(AccessKeyRevoked { key_id, user_id, reason })],
        KeyCommand::Rotate { key_hash, key_prefix } => vec![Event::AccessKeyRotated(AccessKeyRotated {
            key_id,
            user_id,
            key_hash,
            key_prefix,
            previous_key_hash: key.key_hash,
        })],
        KeyCommand::SetBedrockSettings(bedrock) if bedrock == key.bedrock => vec![],
        KeyCommand::SetBedrockSettings(bedrock) => {
            vec![Event::BedrockSettingsChanged(BedrockSettingsChanged { key_id, user_id, bedrock })]
        }
        KeyCommand::SetBedrockKey { sealed, hint } => match key.bedrock_key {
            None => vec![Event::BedrockApiKeyRegistered(BedrockApiKeyRegistered { key_id, user_id, sealed, hint })],
            Some(_) => vec![Event::BedrockApiKeyRotated(BedrockApiKeyRotated { key_id, user_id, sealed, hint })],
        },
        KeyCommand::RemoveBedrockKey => match key.bedrock_key {
            Some(_) => vec![Event::BedrockApiKeyRemoved(BedrockApiKeyRemoved { key_id, user_id })],
            None => vec![],
        },
        KeyCommand::RecordCheck { check, checked, now } => {
            let Some(current) = key.bedrock_key.as_ref() else {
                return Err(Rejection::Conflict(format!("access key {key_id} has no Bedrock API key")));
            };
            if current.sealed.nonce != checked {
                return Err(Rejection::Conflict(format!(
                    "the Bedrock API key of {key_id} was replaced during the check; check again"
                )));
            }
            let unchanged = current.readiness.as_ref().is_some_and(|r| {
                r.readiness == check.readiness
                    && r.models == check.models
                    && r.region == check.region
                    && now - r.checked_at < RECHECK_RECORD_AFTER
            });
            if check.cause == CheckCause::Periodic && unchanged {
                vec![]
            } else {
                vec![Event::BedrockKeyChecked(BedrockKeyChecked { key_id, user_id, ..check })]
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use ccp_schemas::secrets::envelope::{BedrockApiKey, LocalMasterKey};

    use super::*;
    use crate::domain::testing::*;

    /// Given the events of the key's owner and of the key (one history: each fold ignores the
    /// other aggregate's events), when `command`: the decision.
    fn key(given: Vec<Event>, when: KeyCommand) -> Decision {
        let owner = fold(UserState::apply, &given);
        decide_key(fold(AccessKeyState::apply, &given).as_ref(), KEY, owner.as_ref(), when)
    }

    // ---- fixtures ---------------------------------------------------------------------------

    /// The owner, created and active, and the key issued to them.
    fn active_key() -> Vec<Event> {
        let (hash, prefix) = secret();
        vec![created(), issued(hash, prefix)]
    }

    fn revoked() -> Event {
        Event::AccessKeyRevoked(AccessKeyRevoked { key_id: KEY, user_id: USER, reason: None })
    }

    fn eu_west() -> BedrockSettings {
        BedrockSettings { region: Some("eu-west-1".into()), default_model: Some("anthropic.claude-sonnet".into()) }
    }

    /// A Bedrock API key sealed for [`KEY`] under a throwaway local master key, and its hint.
    async fn sealed(plain: &str) -> (SealedSecret, SecretHint) {
        let master = LocalMasterKey::new("t", &LocalMasterKey::generate_b64().unwrap()).unwrap();
        let plain = BedrockApiKey::new(plain).unwrap();
        (SealedSecret::seal(&master, &plain, &KEY.to_string()).await.unwrap(), plain.hint())
    }

    fn bedrock_registered(sealed: SealedSecret, hint: SecretHint) -> Event {
        Event::BedrockApiKeyRegistered(BedrockApiKeyRegistered { key_id: KEY, user_id: USER, sealed, hint })
    }

    // ---- access keys ------------------------------------------------------------------------

    fn issue(key_hash: KeyHash, key_prefix: KeyPrefix) -> KeyCommand {
        KeyCommand::Issue { name: Some("laptop".into()), key_hash, key_prefix, bedrock: BedrockSettings::default() }
    }

    #[test]
    fn key_issue_to_a_missing_owner_is_not_found() {
        let (hash, prefix) = secret();
        then_not_found(key(vec![], issue(hash, prefix)));
    }

    #[test]
    fn key_issue_to_an_inactive_owner_conflicts() {
        let (hash, prefix) = secret();
        then_conflict(key(vec![created(), deactivated()], issue(hash, prefix)));
        let (hash, prefix) = secret();
        let inactive = Event::UserCreated(UserCreated { status: UserStatus::Inactive, ..dana() });
        then_conflict(key(vec![inactive], issue(hash, prefix)));
    }

    #[test]
    fn key_issue_records_the_key_under_its_owner() {
        let (hash, prefix) = secret();
        assert_eq!(key(vec![created()], issue(hash, prefix.clone())), Ok(vec![issued(hash, prefix.clone())]));
        let command = KeyCommand::Issue { name: None, key_hash: hash, key_prefix: prefix.clone(), bedrock: eu_west() };
        assert_eq!(
            key(vec![created(), deactivated(), reactivated()], command),
            Ok(vec![Event::AccessKeyIssued(AccessKeyIssued {
                key_id: KEY,
                user_id: USER,
                name: None,
                key_hash: hash,
                key_prefix: prefix,
                bedrock: eu_west(),
            })])
        );
    }

    #[test]
    fn key_issue_twice_conflicts_even_when_revoked() {
        let (hash, prefix) = secret();
        then_conflict(key(active_key(), issue(hash, prefix.clone())));
        let mut given = active_key();
        given.push(revoked());
        then_conflict(key(given, issue(hash, prefix)));
    }

    #[tokio::test]
    async fn every_key_command_on_a_missing_key_is_not_found() {
        let (hash, prefix) = secret();
        let (sealed, hint) = sealed("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl").await;
        for command in [
            KeyCommand::Revoke { reason: None },
            KeyCommand::Rotate { key_hash: hash, key_prefix: prefix },
            KeyCommand::SetBedrockSettings(eu_west()),
            KeyCommand::SetBedrockSettings(BedrockSettings::default()),
            KeyCommand::SetBedrockKey { sealed, hint },
            KeyCommand::RemoveBedrockKey,
        ] {
            // With or without the owner: the key itself is missing.
            then_not_found(key(vec![created()], command.clone()));
            then_not_found(key(vec![], command));
        }
    }

    #[test]
    fn key_revoke_records_the_reason_and_a_repeat_records_nothing() {
        assert_eq!(
            key(active_key(), KeyCommand::Revoke { reason: Some("laptop stolen".into()) }),
            Ok(vec![Event::AccessKeyRevoked(AccessKeyRevoked {
                key_id: KEY,
                user_id: USER,
                reason: Some("laptop stolen".into())
            })])
        );
        let mut given = active_key();
        given.push(revoked());
        then_nothing(key(given, KeyCommand::Revoke { reason: Some("again".into()) }));
    }

    #[test]
    fn key_revoke_works_while_the_owner_is_deactivated() {
        let mut given = active_key();
        given.push(deactivated());
        assert_eq!(key(given, KeyCommand::Revoke { reason: None }), Ok(vec![revoked()]));
    }

    #[test]
    fn key_rotate_carries_the_current_hash_as_the_previous_one() {
        let (first, first_prefix) = secret();
        let (second, second_prefix) = secret();
        let (third, third_prefix) = secret();
        let given = vec![created(), issued(first, first_prefix)];
        let rotated = Event::AccessKeyRotated(AccessKeyRotated {
            key_id: KEY,
            user_id: USER,
            key_hash: second,
            key_prefix: second_prefix.clone(),
            previous_key_hash: first,
        });
        assert_eq!(
            key(given.clone(), KeyCommand::Rotate { key_hash: second, key_prefix: second_prefix }),
            Ok(vec![rotated.clone()])
        );
        // A second rotation names the secret the first one put in place.
        let mut given = given;
        given.push(rotated);
        assert_eq!(
            key(given, KeyCommand::Rotate { key_hash: third, key_prefix: third_prefix.clone() }),
            Ok(vec![Event::AccessKeyRotated(AccessKeyRotated {
                key_id: KEY,
                user_id: USER,
                key_hash: third,
                key_prefix: third_prefix,
                previous_key_hash: second,
            })])
        );
    }

    #[tokio::test]
    async fn every_key_command_on_a_revoked_key_but_revoke_conflicts() {
        let mut given = active_key();
        given.push(revoked());
        let (hash, prefix) = secret();
        let (sealed, hint) = sealed("ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl").await;
        for command in [
            KeyCommand::Rotate { key_hash: hash, key_prefix: prefix },
            KeyCommand::SetBedrockSettings(eu_west()),
            // Even a change that would be a no-op on an active key.
            KeyCommand::SetBedrockSettings(BedrockSettings::default()),
            KeyCommand::SetBedrockKey { sealed, hint },
            KeyCommand::RemoveBedrockKey,
        ] {
            then_conflict(key(given.clone(), command));
        }
    }

    #[test]
    fn key_bedrock_settings_change_and_a_repeat_records_nothing() {
        let changed =
            Event::BedrockSettingsChanged(BedrockSettingsChanged { key_id: KEY, user_id: USER, bedrock: eu_west() });
        assert_eq!(key(active_key(), KeyCommand::SetBedrockSettings(eu_west())), Ok(vec![changed.clone()]));
        then_nothing(key(active_key(), KeyCommand::SetBedrockSettings(BedrockSettings::default())));
        let mut given = active_key();
        given.push(changed);
        then_nothing(key(given.clone(), KeyCommand::SetBedrockSettings(eu_west())));
        let region_only = BedrockSettings { default_model: None, ..eu_west() };
        assert_eq!(
            key(given, KeyCommand::SetBedrockSettings(region_only.clone())),
            Ok(vec![Event::BedrockSettingsChanged(BedrockSettingsChanged {
                key_id: KEY,
                user_id: USER,
                bedrock: region_only
            })])
        );
    }

    #[tokio::test]
    async fn key_bedrock_key_is_registered_first_and_rotated_after() {
        let (first, first_hint) = sealed("ABSKZmlyc3QtYmVkcm9jay1rZXktZXhhbXBsZQ==").await;
        let (second, second_hint) = sealed("ABSKc2Vjb25kLWJlZHJvY2sta2V5LWV4YW1wbGU=").await;
        assert_eq!(
            key(active_key(), KeyCommand::SetBedrockKey { sealed: first.clone(), hint: first_hint.clone() }),
            Ok(vec![bedrock_registered(first.clone(), first_hint.clone())])
        );
        let mut given = active_key();
        given.push(bedrock_registered(first, first_hint));
        assert_eq!(
            key(given, KeyCommand::SetBedrockKey { sealed: second.clone(), hint: second_hint.clone() }),
            Ok(vec![Event::BedrockApiKeyRotated(BedrockApiKeyRotated {
                key_id: KEY,
                user_id: USER,
                sealed: second,
                hint: second_hint
            })])
        );
    }

    #[tokio::test]
    async fn key_bedrock_key_registered_again_after_removal() {
        let (first, first_hint) = sealed("ABSKZmlyc3Q=").await;
        let (second, second_hint) = sealed("ABSKc2Vjb25k").await;
        let mut given = active_key();
        given.push(bedrock_registered(first, first_hint));
        given.push(Event::BedrockApiKeyRemoved(BedrockApiKeyRemoved { key_id: KEY, user_id: USER }));
        assert_eq!(
            key(given, KeyCommand::SetBedrockKey { sealed: second.clone(), hint: second_hint.clone() }),
            Ok(vec![bedrock_registered(second, second_hint)])
        );
    }

    #[tokio::test]
    async fn key_bedrock_key_removal_records_only_when_there_is_one() {
        let (sealed, hint) = sealed("ABSKZmlyc3QtYmVkcm9jay1rZXktZXhhbXBsZQ==").await;
        let removed = Event::BedrockApiKeyRemoved(BedrockApiKeyRemoved { key_id: KEY, user_id: USER });
        then_nothing(key(active_key(), KeyCommand::RemoveBedrockKey));
        let mut given = active_key();
        given.push(bedrock_registered(sealed, hint));
        assert_eq!(key(given.clone(), KeyCommand::RemoveBedrockKey), Ok(vec![removed.clone()]));
        given.push(removed);
        then_nothing(key(given, KeyCommand::RemoveBedrockKey));
    }

    #[test]
    fn key_bedrock_fixture_decodes_into_a_registration_the_fold_keeps() {
        let json = include_str!("../../../schemas/fixtures/events/v1/bedrock_api_key_registered.json");
        let payload = &serde_json::from_str::<serde_json::Value>(json).unwrap()["payload"];
        let sealed: SealedSecret = serde_json::from_value(payload["sealed"].clone()).unwrap();
        let hint: SecretHint = serde_json::from_value(payload["hint"].clone()).unwrap();
        let mut given = active_key();
        given.push(bedrock_registered(sealed.clone(), hint.clone()));
        let state = fold(AccessKeyState::apply, &given).unwrap();
        let kept = state.bedrock_key.unwrap();
        assert_eq!((kept.sealed, kept.hint, kept.updated_at), (sealed, hint, at(2)));
    }
}
