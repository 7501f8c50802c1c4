//! The decisions: pure functions from an aggregate's current state (folded from its own events)
//! and a command to the events that record it, or the reason it is refused. No I/O here; the
//! [`crate::store`] loads the state, calls `decide` and appends with a concurrency check.
//!
//! A command that would change nothing decides no events (deactivating an inactive user,
//! revoking a revoked key): repeating a command is harmless.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use ccp_schemas::events::*;
use ccp_schemas::ids::{AccessKeyId, AdminId, ApiTokenId, UserId};
use ccp_schemas::secrets::access_key::{KeyHash, KeyPrefix};
use ccp_schemas::secrets::envelope::{SealedSecret, SecretHint};
use ccp_schemas::state::{AccessKeyState, KeyStatus, UserState};

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The aggregate does not exist.
    NotFound(String),
    /// The command contradicts the aggregate's state.
    Conflict(String),
}

/// A decision: the events to append.
pub type Decision = Result<Vec<Event>, Rejection>;

/// Commands on a user.
#[derive(Debug, Clone)]
pub enum UserCommand {
    /// Create the user (with an optional budget and routing strategy).
    Create {
        /// The new id.
        user_id: UserId,
        /// Display name (unique among users).
        name: String,
        /// Free text about the user.
        description: Option<String>,
        /// Contact address.
        email: Option<String>,
        /// Active (keys work) or inactive.
        status: UserStatus,
        /// Monthly budget.
        monthly_limit_usd: Option<Decimal>,
        /// Routing strategy; `None` keeps the default (`plan_first`).
        routing: Option<RoutingStrategy>,
    },
    /// Change descriptive fields (`Some("")` clears description/email).
    Update {
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New email.
        email: Option<String>,
    },
    /// Stop every key of the user.
    Deactivate {
        /// Why, for the audit log.
        reason: Option<String>,
    },
    /// Let the user's keys work again.
    Reactivate,
    /// Set or clear the monthly budget.
    SetBudget(Option<Decimal>),
    /// Set the routing strategy.
    SetRouting(RoutingStrategy),
}

/// Decides a user command.
pub fn decide_user(state: Option<&UserState>, user_id: UserId, command: UserCommand) -> Decision {
    let Some(user) = state else {
        return match command {
            UserCommand::Create { user_id, name, description, email, status, monthly_limit_usd, routing } => {
                let mut events = vec![Event::UserCreated(UserCreated { user_id, name, description, email, status })];
                if monthly_limit_usd.is_some() {
                    events.push(Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd }));
                }
                if let Some(strategy) = routing.filter(|r| *r != RoutingStrategy::default()) {
                    events.push(Event::RoutingStrategySet(RoutingStrategySet { user_id, strategy }));
                }
                Ok(events)
            }
            _ => Err(Rejection::NotFound(format!("no user {user_id}"))),
        };
    };
    Ok(match command {
        UserCommand::Create { .. } => return Err(Rejection::Conflict(format!("user {user_id} already exists"))),
        UserCommand::Update { name, description, email } => {
            let name = name.filter(|n| *n != user.name);
            let description = description
                .filter(|d| Some(d) != user.description.as_ref() && !(d.is_empty() && user.description.is_none()));
            let email = email.filter(|m| Some(m) != user.email.as_ref() && !(m.is_empty() && user.email.is_none()));
            if name.is_none() && description.is_none() && email.is_none() {
                vec![]
            } else {
                vec![Event::UserUpdated(UserUpdated { user_id, name, description, email })]
            }
        }
        UserCommand::Deactivate { reason } => match user.status {
            UserStatus::Active => vec![Event::UserDeactivated(UserDeactivated { user_id, reason })],
            UserStatus::Inactive => vec![],
        },
        UserCommand::Reactivate => match user.status {
            UserStatus::Inactive => vec![Event::UserReactivated(UserReactivated { user_id })],
            UserStatus::Active => vec![],
        },
        UserCommand::SetBudget(limit) if limit == user.monthly_limit_usd => vec![],
        UserCommand::SetBudget(monthly_limit_usd) => vec![Event::BudgetSet(BudgetSet { user_id, monthly_limit_usd })],
        UserCommand::SetRouting(strategy) if strategy == user.routing => vec![],
        UserCommand::SetRouting(strategy) => vec![Event::RoutingStrategySet(RoutingStrategySet { user_id, strategy })],
    })
}

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

/// An API token as the admin's events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenState {
    /// The token.
    pub token_id: ApiTokenId,
    /// The admin's label for the token (`ci`).
    pub name: String,
    /// The token's first characters, shown in lists.
    pub prefix: KeyPrefix,
    /// The token's peppered hash (never serialized).
    #[serde(skip)]
    pub hash: KeyHash,
    /// Whether revoked.
    pub revoked: bool,
    /// When issued.
    pub created_at: DateTime<Utc>,
}

/// An admin account as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminState {
    /// The admin.
    pub admin_id: AdminId,
    /// Login name.
    pub username: String,
    /// Password hash.
    pub password_hash: PasswordHash,
    /// API tokens, in issue order.
    pub tokens: Vec<TokenState>,
    /// When created.
    pub created_at: DateTime<Utc>,
}

impl AdminState {
    /// Applies one event (`None` before `admin_created`).
    pub fn apply(state: &mut Option<Self>, event: &Event, at: DateTime<Utc>) {
        match (event, state.as_mut()) {
            (Event::AdminCreated(e), None) => {
                *state = Some(Self {
                    admin_id: e.admin_id,
                    username: e.username.clone(),
                    password_hash: e.password_hash.clone(),
                    tokens: Vec::new(),
                    created_at: at,
                });
            }
            (Event::ApiTokenIssued(e), Some(s)) => s.tokens.push(TokenState {
                token_id: e.token_id,
                name: e.name.clone(),
                prefix: e.token_prefix.clone(),
                hash: e.token_hash,
                revoked: false,
                created_at: at,
            }),
            (Event::ApiTokenRevoked(e), Some(s)) => {
                if let Some(t) = s.tokens.iter_mut().find(|t| t.token_id == e.token_id) {
                    t.revoked = true;
                }
            }
            _ => {}
        }
    }
}

/// Commands on an admin account.
#[derive(Debug, Clone)]
pub enum AdminCommand {
    /// Create the account.
    Create {
        /// Login name.
        username: String,
        /// argon2id hash.
        password_hash: PasswordHash,
    },
    /// Issue an API token.
    IssueToken {
        /// The token id.
        token_id: ApiTokenId,
        /// The admin's label for the token (`ci`).
        name: String,
        /// The token's peppered hash.
        token_hash: KeyHash,
        /// The token's first characters, shown in lists.
        token_prefix: KeyPrefix,
    },
    /// Revoke an API token.
    RevokeToken(ApiTokenId),
}

/// Decides an admin-account command.
pub fn decide_admin(state: Option<&AdminState>, admin_id: AdminId, command: AdminCommand) -> Decision {
    let Some(admin) = state else {
        return match command {
            AdminCommand::Create { username, password_hash } => {
                Ok(vec![Event::AdminCreated(AdminCreated { admin_id, username, password_hash })])
            }
            _ => Err(Rejection::NotFound(format!("no admin {admin_id}"))),
        };
    };
    Ok(match command {
        AdminCommand::Create { .. } => return Err(Rejection::Conflict(format!("admin {admin_id} already exists"))),
        AdminCommand::IssueToken { token_id, name, token_hash, token_prefix } => {
            if admin.tokens.iter().any(|t| t.token_id == token_id) {
                return Err(Rejection::Conflict(format!("API token {token_id} already exists")));
            }
            vec![Event::ApiTokenIssued(ApiTokenIssued { admin_id, token_id, name, token_hash, token_prefix })]
        }
        AdminCommand::RevokeToken(token_id) => match admin.tokens.iter().find(|t| t.token_id == token_id) {
            None => return Err(Rejection::NotFound(format!("no API token {token_id}"))),
            Some(t) if t.revoked => vec![],
            Some(_) => vec![Event::ApiTokenRevoked(ApiTokenRevoked { admin_id, token_id })],
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! Given/when/then tests of every decision: the given events are folded with the aggregate's
    //! own `apply` (at fixed, increasing times), the command is decided, and the exact events (or
    //! the exact rejection) are asserted.

    use super::*;
    use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper};
    use ccp_schemas::secrets::envelope::{BedrockApiKey, LocalMasterKey};
    use ccp_schemas::secrets::SecretString;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use ulid::Ulid;

    const USER: UserId = UserId::from_ulid(Ulid(1));
    const KEY: AccessKeyId = AccessKeyId::from_ulid(Ulid(2));
    const ADMIN: AdminId = AdminId::from_ulid(Ulid(3));
    const TOKEN: ApiTokenId = ApiTokenId::from_ulid(Ulid(4));

    // ---- the framework ----------------------------------------------------------------------

    fn at(i: usize) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600, 0).unwrap() + chrono::Duration::minutes(i64::try_from(i).unwrap())
    }

    /// Folds `given` with `apply`, the i-th event at `at(i)`.
    fn fold<S>(apply: fn(&mut Option<S>, &Event, DateTime<Utc>), given: &[Event]) -> Option<S> {
        let mut state = None;
        for (i, event) in given.iter().enumerate() {
            apply(&mut state, event, at(i));
        }
        state
    }

    /// Given the user's events, when `command`: the decision.
    fn user(given: Vec<Event>, when: UserCommand) -> Decision {
        decide_user(fold(UserState::apply, &given).as_ref(), USER, when)
    }

    /// Given the events of the key's owner and of the key (one history: each fold ignores the
    /// other aggregate's events), when `command`: the decision.
    fn key(given: Vec<Event>, when: KeyCommand) -> Decision {
        let owner = fold(UserState::apply, &given);
        decide_key(fold(AccessKeyState::apply, &given).as_ref(), KEY, owner.as_ref(), when)
    }

    /// Given the admin's events, when `command`: the decision.
    fn admin(given: Vec<Event>, when: AdminCommand) -> Decision {
        decide_admin(fold(AdminState::apply, &given).as_ref(), ADMIN, when)
    }

    #[track_caller]
    fn then_not_found(decision: Decision) {
        assert!(matches!(decision, Err(Rejection::NotFound(_))), "expected NotFound, got {decision:?}");
    }

    #[track_caller]
    fn then_conflict(decision: Decision) {
        assert!(matches!(decision, Err(Rejection::Conflict(_))), "expected Conflict, got {decision:?}");
    }

    #[track_caller]
    fn then_nothing(decision: Decision) {
        assert_eq!(decision, Ok(vec![]));
    }

    // ---- fixtures ---------------------------------------------------------------------------

    fn usd(cents: i64) -> Decimal {
        Decimal::new(cents, 2)
    }

    fn dana() -> UserCreated {
        UserCreated {
            user_id: USER,
            name: "dana".into(),
            description: Some("platform team".into()),
            email: Some("dana@example.com".into()),
            status: UserStatus::Active,
        }
    }

    fn created() -> Event {
        Event::UserCreated(dana())
    }

    fn created_bare() -> Event {
        Event::UserCreated(UserCreated { description: None, email: None, ..dana() })
    }

    fn create(monthly_limit_usd: Option<Decimal>, routing: Option<RoutingStrategy>) -> UserCommand {
        let d = dana();
        UserCommand::Create {
            user_id: d.user_id,
            name: d.name,
            description: d.description,
            email: d.email,
            status: d.status,
            monthly_limit_usd,
            routing,
        }
    }

    fn deactivated() -> Event {
        Event::UserDeactivated(UserDeactivated { user_id: USER, reason: None })
    }

    fn reactivated() -> Event {
        Event::UserReactivated(UserReactivated { user_id: USER })
    }

    fn budget(monthly_limit_usd: Option<Decimal>) -> Event {
        Event::BudgetSet(BudgetSet { user_id: USER, monthly_limit_usd })
    }

    fn routing(strategy: RoutingStrategy) -> Event {
        Event::RoutingStrategySet(RoutingStrategySet { user_id: USER, strategy })
    }

    fn updated(name: Option<&str>, description: Option<&str>, email: Option<&str>) -> Event {
        Event::UserUpdated(UserUpdated {
            user_id: USER,
            name: name.map(Into::into),
            description: description.map(Into::into),
            email: email.map(Into::into),
        })
    }

    fn update(name: Option<&str>, description: Option<&str>, email: Option<&str>) -> UserCommand {
        UserCommand::Update {
            name: name.map(Into::into),
            description: description.map(Into::into),
            email: email.map(Into::into),
        }
    }

    fn pepper() -> KeyPepper {
        KeyPepper::new(&SecretString::new("p".repeat(32))).unwrap()
    }

    /// A fresh secret's hash and prefix.
    fn secret() -> (KeyHash, KeyPrefix) {
        let key = AccessKey::generate().unwrap();
        (key.hash(&pepper()), key.display_prefix())
    }

    fn issued(key_hash: KeyHash, key_prefix: KeyPrefix) -> Event {
        Event::AccessKeyIssued(AccessKeyIssued {
            key_id: KEY,
            user_id: USER,
            name: Some("laptop".into()),
            key_hash,
            key_prefix,
            bedrock: BedrockSettings::default(),
        })
    }

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

    fn password_hash() -> PasswordHash {
        PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA".into())
            .unwrap()
    }

    fn admin_created() -> Event {
        Event::AdminCreated(AdminCreated { admin_id: ADMIN, username: "alice".into(), password_hash: password_hash() })
    }

    fn issue_token(token_id: ApiTokenId) -> (AdminCommand, Event) {
        let (token_hash, token_prefix) = secret();
        let command =
            AdminCommand::IssueToken { token_id, name: "ci".into(), token_hash, token_prefix: token_prefix.clone() };
        let event = Event::ApiTokenIssued(ApiTokenIssued {
            admin_id: ADMIN,
            token_id,
            name: "ci".into(),
            token_hash,
            token_prefix,
        });
        (command, event)
    }

    // ---- users ------------------------------------------------------------------------------

    #[test]
    fn user_create_without_budget_or_routing_records_only_the_creation() {
        assert_eq!(user(vec![], create(None, None)), Ok(vec![created()]));
    }

    #[test]
    fn user_create_with_budget_and_routing_records_them_after_the_creation() {
        assert_eq!(
            user(vec![], create(Some(usd(12_550)), Some(RoutingStrategy::BedrockOnly))),
            Ok(vec![created(), budget(Some(usd(12_550))), routing(RoutingStrategy::BedrockOnly)])
        );
    }

    #[test]
    fn user_create_with_the_default_routing_adds_no_routing_event() {
        assert_eq!(user(vec![], create(None, Some(RoutingStrategy::PlanFirst))), Ok(vec![created()]));
        assert_eq!(
            user(vec![], create(Some(usd(100)), Some(RoutingStrategy::default()))),
            Ok(vec![created(), budget(Some(usd(100)))])
        );
    }

    #[test]
    fn user_create_inactive_records_the_status() {
        let command = UserCommand::Create {
            user_id: USER,
            name: "dana".into(),
            description: None,
            email: None,
            status: UserStatus::Inactive,
            monthly_limit_usd: None,
            routing: None,
        };
        assert_eq!(
            user(vec![], command),
            Ok(vec![Event::UserCreated(UserCreated {
                description: None,
                email: None,
                status: UserStatus::Inactive,
                ..dana()
            })])
        );
    }

    #[test]
    fn user_create_twice_conflicts() {
        then_conflict(user(vec![created()], create(None, None)));
        then_conflict(user(vec![created(), deactivated()], create(Some(usd(1)), None)));
    }

    #[test]
    fn every_user_command_on_a_missing_user_is_not_found() {
        for command in [
            update(Some("erin"), None, None),
            update(None, None, None),
            UserCommand::Deactivate { reason: Some("left".into()) },
            UserCommand::Reactivate,
            UserCommand::SetBudget(Some(usd(100))),
            UserCommand::SetBudget(None),
            UserCommand::SetRouting(RoutingStrategy::PlanOnly),
            UserCommand::SetRouting(RoutingStrategy::PlanFirst),
        ] {
            then_not_found(user(vec![], command));
        }
    }

    #[test]
    fn user_events_of_another_aggregate_do_not_create_the_user() {
        let (hash, prefix) = secret();
        then_not_found(user(vec![issued(hash, prefix)], UserCommand::Reactivate));
    }

    #[test]
    fn user_update_records_only_the_changed_fields() {
        assert_eq!(
            user(vec![created()], update(Some("erin"), Some("platform team"), Some("erin@example.com"))),
            Ok(vec![updated(Some("erin"), None, Some("erin@example.com"))])
        );
        assert_eq!(
            user(vec![created()], update(Some("dana"), Some("data team"), None)),
            Ok(vec![updated(None, Some("data team"), None)])
        );
        assert_eq!(
            user(vec![created_bare()], update(None, Some("new"), Some("d@example.com"))),
            Ok(vec![updated(None, Some("new"), Some("d@example.com"))])
        );
    }

    #[test]
    fn user_update_that_changes_nothing_records_nothing() {
        then_nothing(user(vec![created()], update(None, None, None)));
        then_nothing(user(vec![created()], update(Some("dana"), Some("platform team"), Some("dana@example.com"))));
        then_nothing(user(
            vec![created(), updated(Some("erin"), None, None)],
            update(Some("erin"), None, Some("dana@example.com")),
        ));
    }

    #[test]
    fn user_update_with_an_empty_string_clears_description_and_email_only_when_set() {
        assert_eq!(
            user(vec![created()], update(None, Some(""), Some(""))),
            Ok(vec![updated(None, Some(""), Some(""))])
        );
        then_nothing(user(vec![created_bare()], update(None, Some(""), Some(""))));
        assert_eq!(
            user(vec![created_bare()], update(Some("erin"), Some(""), Some(""))),
            Ok(vec![updated(Some("erin"), None, None)])
        );
        // Once cleared, clearing again is a no-op.
        then_nothing(user(vec![created(), updated(None, Some(""), Some(""))], update(None, Some(""), Some(""))));
    }

    #[test]
    fn user_update_clearing_folds_to_unset_fields() {
        let state = fold(UserState::apply, &[created(), updated(None, Some(""), None)]).unwrap();
        assert_eq!(state.description, None);
        assert_eq!(state.email.as_deref(), Some("dana@example.com"));
        assert_eq!(state.updated_at, at(1));
        assert_eq!(state.created_at, at(0));
    }

    #[test]
    fn user_deactivate_records_the_reason_and_a_repeat_records_nothing() {
        assert_eq!(
            user(vec![created()], UserCommand::Deactivate { reason: Some("left the company".into()) }),
            Ok(vec![Event::UserDeactivated(UserDeactivated {
                user_id: USER,
                reason: Some("left the company".into())
            })])
        );
        then_nothing(user(vec![created(), deactivated()], UserCommand::Deactivate { reason: Some("again".into()) }));
    }

    #[test]
    fn user_created_inactive_needs_no_deactivation() {
        let inactive = Event::UserCreated(UserCreated { status: UserStatus::Inactive, ..dana() });
        then_nothing(user(vec![inactive.clone()], UserCommand::Deactivate { reason: None }));
        assert_eq!(user(vec![inactive], UserCommand::Reactivate), Ok(vec![reactivated()]));
    }

    #[test]
    fn user_reactivate_records_the_event_and_a_repeat_records_nothing() {
        assert_eq!(user(vec![created(), deactivated()], UserCommand::Reactivate), Ok(vec![reactivated()]));
        then_nothing(user(vec![created(), deactivated(), reactivated()], UserCommand::Reactivate));
        then_nothing(user(vec![created()], UserCommand::Reactivate));
    }

    #[test]
    fn user_deactivate_after_reactivation_records_again() {
        assert_eq!(
            user(vec![created(), deactivated(), reactivated()], UserCommand::Deactivate { reason: None }),
            Ok(vec![deactivated()])
        );
    }

    #[test]
    fn user_budget_is_set_changed_and_cleared() {
        assert_eq!(user(vec![created()], UserCommand::SetBudget(Some(usd(5_000)))), Ok(vec![budget(Some(usd(5_000)))]));
        assert_eq!(
            user(vec![created(), budget(Some(usd(5_000)))], UserCommand::SetBudget(Some(usd(7_500)))),
            Ok(vec![budget(Some(usd(7_500)))])
        );
        assert_eq!(
            user(vec![created(), budget(Some(usd(5_000)))], UserCommand::SetBudget(None)),
            Ok(vec![budget(None)])
        );
    }

    #[test]
    fn user_budget_that_changes_nothing_records_nothing() {
        then_nothing(user(vec![created()], UserCommand::SetBudget(None)));
        then_nothing(user(vec![created(), budget(Some(usd(5_000)))], UserCommand::SetBudget(Some(usd(5_000)))));
        // The same amount at another scale is the same budget.
        then_nothing(user(
            vec![created(), budget(Some(Decimal::new(50, 0)))],
            UserCommand::SetBudget(Some(Decimal::new(50_000, 3))),
        ));
        then_nothing(user(vec![created(), budget(Some(usd(5_000))), budget(None)], UserCommand::SetBudget(None)));
    }

    #[test]
    fn user_routing_is_set_and_a_repeat_records_nothing() {
        assert_eq!(
            user(vec![created()], UserCommand::SetRouting(RoutingStrategy::PlanOnly)),
            Ok(vec![routing(RoutingStrategy::PlanOnly)])
        );
        then_nothing(user(vec![created()], UserCommand::SetRouting(RoutingStrategy::PlanFirst)));
        then_nothing(user(
            vec![created(), routing(RoutingStrategy::BedrockOnly)],
            UserCommand::SetRouting(RoutingStrategy::BedrockOnly),
        ));
        assert_eq!(
            user(
                vec![created(), routing(RoutingStrategy::BedrockOnly)],
                UserCommand::SetRouting(RoutingStrategy::PlanFirst)
            ),
            Ok(vec![routing(RoutingStrategy::PlanFirst)])
        );
    }

    #[test]
    fn user_commands_other_than_reactivate_still_apply_to_an_inactive_user() {
        let given = vec![created(), deactivated()];
        assert_eq!(user(given.clone(), UserCommand::SetBudget(Some(usd(1)))), Ok(vec![budget(Some(usd(1)))]));
        assert_eq!(
            user(given.clone(), UserCommand::SetRouting(RoutingStrategy::PlanOnly)),
            Ok(vec![routing(RoutingStrategy::PlanOnly)])
        );
        assert_eq!(user(given, update(Some("erin"), None, None)), Ok(vec![updated(Some("erin"), None, None)]));
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
        let json = include_str!("../../schemas/fixtures/events/v1/bedrock_api_key_registered.json");
        let payload = &serde_json::from_str::<serde_json::Value>(json).unwrap()["payload"];
        let sealed: SealedSecret = serde_json::from_value(payload["sealed"].clone()).unwrap();
        let hint: SecretHint = serde_json::from_value(payload["hint"].clone()).unwrap();
        let mut given = active_key();
        given.push(bedrock_registered(sealed.clone(), hint.clone()));
        let state = fold(AccessKeyState::apply, &given).unwrap();
        let kept = state.bedrock_key.unwrap();
        assert_eq!((kept.sealed, kept.hint, kept.updated_at), (sealed, hint, at(2)));
    }

    // ---- admin accounts ---------------------------------------------------------------------

    #[test]
    fn admin_create_records_the_account() {
        assert_eq!(
            admin(vec![], AdminCommand::Create { username: "alice".into(), password_hash: password_hash() }),
            Ok(vec![admin_created()])
        );
    }

    #[test]
    fn admin_create_twice_conflicts() {
        then_conflict(admin(
            vec![admin_created()],
            AdminCommand::Create { username: "alice".into(), password_hash: password_hash() },
        ));
    }

    #[test]
    fn every_admin_command_on_a_missing_admin_is_not_found() {
        let (issue, _) = issue_token(TOKEN);
        then_not_found(admin(vec![], issue));
        then_not_found(admin(vec![], AdminCommand::RevokeToken(TOKEN)));
    }

    #[test]
    fn admin_issue_token_records_it() {
        let (issue, issued) = issue_token(TOKEN);
        assert_eq!(admin(vec![admin_created()], issue), Ok(vec![issued]));
        let (_, first_issued) = issue_token(TOKEN);
        let (second, second_issued) = issue_token(ApiTokenId::from_ulid(Ulid(5)));
        assert_eq!(admin(vec![admin_created(), first_issued], second), Ok(vec![second_issued]));
    }

    #[test]
    fn admin_issue_token_with_a_taken_id_conflicts_even_when_revoked() {
        let (_, issued) = issue_token(TOKEN);
        let (again, _) = issue_token(TOKEN);
        then_conflict(admin(vec![admin_created(), issued.clone()], again.clone()));
        let revoked = Event::ApiTokenRevoked(ApiTokenRevoked { admin_id: ADMIN, token_id: TOKEN });
        then_conflict(admin(vec![admin_created(), issued, revoked], again));
    }

    #[test]
    fn admin_revoke_token_records_it_and_a_repeat_records_nothing() {
        let (_, issued) = issue_token(TOKEN);
        let revoked = Event::ApiTokenRevoked(ApiTokenRevoked { admin_id: ADMIN, token_id: TOKEN });
        assert_eq!(
            admin(vec![admin_created(), issued.clone()], AdminCommand::RevokeToken(TOKEN)),
            Ok(vec![revoked.clone()])
        );
        then_nothing(admin(vec![admin_created(), issued, revoked], AdminCommand::RevokeToken(TOKEN)));
    }

    #[test]
    fn admin_revoke_of_an_unknown_token_is_not_found() {
        then_not_found(admin(vec![admin_created()], AdminCommand::RevokeToken(TOKEN)));
        let (_, other) = issue_token(ApiTokenId::from_ulid(Ulid(5)));
        then_not_found(admin(vec![admin_created(), other], AdminCommand::RevokeToken(TOKEN)));
    }

    #[test]
    fn admin_revoking_one_token_leaves_the_others() {
        let (_, first) = issue_token(TOKEN);
        let other_id = ApiTokenId::from_ulid(Ulid(5));
        let (_, second) = issue_token(other_id);
        let revoked = Event::ApiTokenRevoked(ApiTokenRevoked { admin_id: ADMIN, token_id: TOKEN });
        let given = vec![admin_created(), first, second, revoked];
        let state = fold(AdminState::apply, &given).unwrap();
        assert_eq!(
            state.tokens.iter().map(|t| (t.token_id, t.revoked, t.created_at)).collect::<Vec<_>>(),
            vec![(TOKEN, true, at(1)), (other_id, false, at(2))]
        );
        assert_eq!(
            admin(given, AdminCommand::RevokeToken(other_id)),
            Ok(vec![Event::ApiTokenRevoked(ApiTokenRevoked { admin_id: ADMIN, token_id: other_id })])
        );
    }

    // ---- properties of user command sequences -----------------------------------------------

    /// What the commands so far say the user is (timestamps aside).
    #[derive(Debug, Clone, PartialEq)]
    struct Model {
        name: String,
        description: Option<String>,
        email: Option<String>,
        status: UserStatus,
        monthly_limit_usd: Option<Decimal>,
        routing: RoutingStrategy,
    }

    impl Model {
        fn of(state: &UserState) -> Self {
            Self {
                name: state.name.clone(),
                description: state.description.clone(),
                email: state.email.clone(),
                status: state.status,
                monthly_limit_usd: state.monthly_limit_usd,
                routing: state.routing,
            }
        }

        /// The model after `command`, computed without the decision code.
        fn after(model: Option<&Self>, command: &UserCommand) -> Option<Self> {
            let cleared = |v: &String| (!v.is_empty()).then(|| v.clone());
            match (model, command) {
                (None, UserCommand::Create { name, description, email, status, monthly_limit_usd, routing, .. }) => {
                    Some(Self {
                        name: name.clone(),
                        description: description.clone(),
                        email: email.clone(),
                        status: *status,
                        monthly_limit_usd: *monthly_limit_usd,
                        routing: routing.unwrap_or_default(),
                    })
                }
                (None, _) => None,
                (Some(m), command) => {
                    let mut m = m.clone();
                    match command {
                        UserCommand::Create { .. } => {}
                        UserCommand::Update { name, description, email } => {
                            if let Some(n) = name {
                                m.name.clone_from(n);
                            }
                            if let Some(d) = description {
                                m.description = cleared(d);
                            }
                            if let Some(e) = email {
                                m.email = cleared(e);
                            }
                        }
                        UserCommand::Deactivate { .. } => m.status = UserStatus::Inactive,
                        UserCommand::Reactivate => m.status = UserStatus::Active,
                        UserCommand::SetBudget(limit) => m.monthly_limit_usd = *limit,
                        UserCommand::SetRouting(strategy) => m.routing = *strategy,
                    }
                    Some(m)
                }
            }
        }
    }

    fn small_text(values: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::sample::select(values).prop_map(String::from))
    }

    fn any_status() -> impl Strategy<Value = UserStatus> {
        prop_oneof![Just(UserStatus::Active), Just(UserStatus::Inactive)]
    }

    fn any_routing() -> impl Strategy<Value = RoutingStrategy> {
        prop_oneof![
            Just(RoutingStrategy::PlanFirst),
            Just(RoutingStrategy::BedrockOnly),
            Just(RoutingStrategy::PlanOnly)
        ]
    }

    /// Few distinct values, so that repeats and no-ops are common; 50 and 50.000 are one budget.
    fn any_budget() -> impl Strategy<Value = Option<Decimal>> {
        proptest::option::of(proptest::sample::select(vec![
            Decimal::new(50, 0),
            Decimal::new(50_000, 3),
            Decimal::new(12_550, 2),
            Decimal::ZERO,
        ]))
    }

    fn any_user_command() -> impl Strategy<Value = UserCommand> {
        prop_oneof![
            1 => (small_text(&["dana", "erin"]), small_text(&["", "x"]), small_text(&["", "a@example.com"]), any_status(),
                  any_budget(), proptest::option::of(any_routing()))
                .prop_map(|(name, description, email, status, monthly_limit_usd, routing)| UserCommand::Create {
                    user_id: USER,
                    name: name.unwrap_or_else(|| "dana".into()),
                    description: description.filter(|d| !d.is_empty()),
                    email: email.filter(|e| !e.is_empty()),
                    status,
                    monthly_limit_usd,
                    routing,
                }),
            3 => (small_text(&["dana", "erin"]), small_text(&["", "x", "y"]), small_text(&["", "a@example.com"]))
                .prop_map(|(name, description, email)| UserCommand::Update { name, description, email }),
            3 => small_text(&["left", "on leave"]).prop_map(|reason| UserCommand::Deactivate { reason }),
            3 => Just(UserCommand::Reactivate),
            3 => any_budget().prop_map(UserCommand::SetBudget),
            3 => any_routing().prop_map(UserCommand::SetRouting),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Folding the decided events of any command sequence gives the state the commands
        /// describe; a command decides events exactly when it changes that state; and deciding
        /// a (non-create) command again right after it decides nothing.
        #[test]
        fn user_decisions_fold_to_the_state_the_commands_describe(
            commands in proptest::collection::vec(any_user_command(), 1..40),
        ) {
            let mut log: Vec<Event> = Vec::new();
            let mut model: Option<Model> = None;
            for command in commands {
                let state = fold(UserState::apply, &log);
                let decision = decide_user(state.as_ref(), USER, command.clone());
                let expected = Model::after(model.as_ref(), &command);
                match (&model, &command, decision) {
                    (None, UserCommand::Create { .. }, Ok(events)) => {
                        prop_assert!(matches!(events.first(), Some(Event::UserCreated(_))));
                        log.extend(events);
                    }
                    (None, _, decision) => {
                        prop_assert!(matches!(decision, Err(Rejection::NotFound(_))), "{decision:?}");
                    }
                    (Some(_), UserCommand::Create { .. }, decision) => {
                        prop_assert!(matches!(decision, Err(Rejection::Conflict(_))), "{decision:?}");
                    }
                    (Some(before), _, Ok(events)) => {
                        prop_assert_eq!(events.is_empty(), Some(before) == expected.as_ref(), "{:?}", events);
                        prop_assert!(events.len() <= 1);
                        log.extend(events);
                        let state = fold(UserState::apply, &log);
                        let again = decide_user(state.as_ref(), USER, command.clone());
                        prop_assert_eq!(again, Ok(vec![]), "repeating {:?}", command);
                    }
                    (Some(_), _, Err(rejection)) => {
                        return Err(TestCaseError::fail(format!("{command:?} refused: {rejection:?}")));
                    }
                }
                model = expected;
                let state = fold(UserState::apply, &log);
                prop_assert_eq!(state.as_ref().map(Model::of), model.clone());
                if let Some(state) = state {
                    prop_assert_eq!(state.user_id, USER);
                    // Every event of the user is stamped once, in order.
                    prop_assert_eq!(state.updated_at, at(log.len() - 1));
                }
            }
        }
    }
}
