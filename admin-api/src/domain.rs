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
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Email.
        email: Option<String>,
        /// Status.
        status: UserStatus,
        /// Monthly budget.
        monthly_limit_usd: Option<Decimal>,
        /// Routing.
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
        /// Why.
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
        /// Label.
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
        /// Why.
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
        /// Hint.
        hint: SecretHint,
    },
    /// Remove the Bedrock API key.
    RemoveBedrockKey,
}

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
    })
}

/// An API token as the admin's events describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenState {
    /// The token.
    pub token_id: ApiTokenId,
    /// Label.
    pub name: String,
    /// Prefix.
    pub prefix: KeyPrefix,
    /// Hash.
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
        /// Label.
        name: String,
        /// Hash.
        token_hash: KeyHash,
        /// Prefix.
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
