//! The admin aggregate: an admin account and its API tokens, folded from the account's own
//! events ([`AdminState::apply`]) and decided on.

use ccp_schemas::events::*;
use ccp_schemas::ids::{AdminId, ApiTokenId, TeamId};
use ccp_schemas::secrets::access_key::{KeyHash, KeyPrefix};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Decision, Rejection};

/// An API token as the admin's events describe it. Serialized only into the admin view's
/// snapshot (with its peppered hash, as the events carry it); answers show [`ApiToken`]s.
///
/// [`ApiToken`]: crate::api::ApiToken
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenState {
    /// The token.
    pub token_id: ApiTokenId,
    /// The admin's label for the token (`ci`).
    pub name: String,
    /// The token's first characters, shown in lists.
    pub prefix: KeyPrefix,
    /// The token's peppered hash.
    pub hash: KeyHash,
    /// The most it may do (`None`: whatever its admin may do).
    pub role: Option<AdminRole>,
    /// Whether revoked.
    pub revoked: bool,
    /// When issued.
    pub created_at: DateTime<Utc>,
}

/// An admin account as its events describe it (serialized only into the admin view's snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminState {
    /// The admin.
    pub admin_id: AdminId,
    /// Login name.
    pub username: String,
    /// Password hash.
    pub password_hash: PasswordHash,
    /// What the admin may do.
    pub role: AdminRole,
    /// Disabled: no password, session or API token of theirs works.
    pub disabled: bool,
    /// Sessions opened before this no longer work ("sign out everywhere").
    pub sessions_valid_after: Option<DateTime<Utc>>,
    /// API tokens, in issue order.
    pub tokens: Vec<TokenState>,
    /// The person at the OpenID provider this admin is (`issuer`, `subject`), once single
    /// sign-on has signed them in.
    pub sso: Option<(String, String)>,
    /// The team this admin is scoped to ("team lead": a `viewer` who sees only that team's
    /// figures, enforced by [`crate::scope`]); `None`: unscoped.
    pub team_id: Option<TeamId>,
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
                    role: e.role,
                    disabled: false,
                    sessions_valid_after: None,
                    tokens: Vec::new(),
                    sso: None,
                    team_id: None,
                    created_at: at,
                });
            }
            (Event::ApiTokenIssued(e), Some(s)) => s.tokens.push(TokenState {
                token_id: e.token_id,
                name: e.name.clone(),
                prefix: e.token_prefix.clone(),
                hash: e.token_hash,
                role: e.role,
                revoked: false,
                created_at: at,
            }),
            (Event::AdminRoleSet(e), Some(s)) => s.role = e.role,
            (Event::AdminPasswordChanged(e), Some(s)) => s.password_hash = e.password_hash.clone(),
            (Event::AdminDisabled(_), Some(s)) => s.disabled = true,
            (Event::AdminEnabled(_), Some(s)) => s.disabled = false,
            (Event::AdminSsoLinked(e), Some(s)) => s.sso = Some((e.issuer.clone(), e.subject.clone())),
            (Event::AdminTeamScopeSet(e), Some(s)) => s.team_id = e.team_id,
            (Event::AdminSessionsRevoked(e), Some(s)) => {
                s.sessions_valid_after = Some(s.sessions_valid_after.map_or(e.before, |t| t.max(e.before)));
            }
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
        /// Its role.
        role: AdminRole,
    },
    /// Create the account of a person signing in through the OpenID provider, linked to them
    /// (both events, or neither).
    CreateLinked {
        /// Login name.
        username: String,
        /// argon2id hash of a password nobody knows.
        password_hash: PasswordHash,
        /// Its role.
        role: AdminRole,
        /// The provider's issuer.
        issuer: String,
        /// The person's `sub` there.
        subject: String,
    },
    /// Change the role. Refused for a team lead (scoped admin) unless the role stays `viewer`:
    /// their scope is cleared first, so a role change never silently widens or keeps a scope.
    SetRole(AdminRole),
    /// Scope the admin to one team (a team lead) or unscope them (`None`). Only a `viewer` is
    /// scoped; the team's existence is checked by the caller against the read model.
    SetTeamScope(Option<TeamId>),
    /// Set a new password; every session opened before `now` ends.
    ChangePassword {
        /// argon2id hash of the new password.
        password_hash: PasswordHash,
        /// The time of the change.
        now: DateTime<Utc>,
    },
    /// Disable the account; every session opened before `now` ends.
    Disable {
        /// Why (for the audit log).
        reason: Option<String>,
        /// The time of the change.
        now: DateTime<Utc>,
    },
    /// Enable a disabled account.
    Enable,
    /// End every session opened before this instant.
    RevokeSessions(DateTime<Utc>),
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
        /// The most it may do (checked against the issuer's role by the handler).
        role: Option<AdminRole>,
    },
    /// Revoke an API token.
    RevokeToken(ApiTokenId),
    /// Bind the admin to a person at the OpenID provider.
    LinkSso {
        /// The provider's issuer.
        issuer: String,
        /// The person's `sub` there.
        subject: String,
    },
}

/// Decides an admin-account command.
pub fn decide_admin(state: Option<&AdminState>, admin_id: AdminId, command: AdminCommand) -> Decision {
    let Some(admin) = state else {
        return match command {
            AdminCommand::Create { username, password_hash, role } => {
                Ok(vec![Event::AdminCreated(AdminCreated { admin_id, username, password_hash, role })])
            }
            AdminCommand::CreateLinked { username, password_hash, role, issuer, subject } => Ok(vec![
                Event::AdminCreated(AdminCreated { admin_id, username, password_hash, role }),
                Event::AdminSsoLinked(AdminSsoLinked { admin_id, issuer, subject }),
            ]),
            _ => Err(Rejection::NotFound(format!("no admin {admin_id}"))),
        };
    };
    Ok(match command {
        AdminCommand::Create { .. } | AdminCommand::CreateLinked { .. } => {
            return Err(Rejection::Conflict(format!("admin {admin_id} already exists")))
        }
        AdminCommand::ChangePassword { password_hash, now } => vec![
            Event::AdminPasswordChanged(AdminPasswordChanged { admin_id, password_hash }),
            Event::AdminSessionsRevoked(AdminSessionsRevoked { admin_id, before: now }),
        ],
        AdminCommand::Disable { .. } if admin.disabled => vec![],
        AdminCommand::Disable { reason, now } => vec![
            Event::AdminDisabled(AdminDisabled { admin_id, reason }),
            Event::AdminSessionsRevoked(AdminSessionsRevoked { admin_id, before: now }),
        ],
        AdminCommand::Enable if !admin.disabled => vec![],
        AdminCommand::Enable => vec![Event::AdminEnabled(AdminEnabled { admin_id })],
        AdminCommand::RevokeSessions(before) => {
            vec![Event::AdminSessionsRevoked(AdminSessionsRevoked { admin_id, before })]
        }
        AdminCommand::SetRole(role) if role == admin.role => vec![],
        AdminCommand::SetRole(role) if admin.team_id.is_some() => {
            return Err(Rejection::Conflict(format!(
                "admin `{}` is a team lead (scoped to a team) and only a `viewer` is: clear the team scope \
                 first (PUT /v1/admins/{admin_id}/team-scope with team_id null), then give the `{}` role",
                admin.username,
                role.as_str()
            )))
        }
        AdminCommand::SetRole(role) => vec![Event::AdminRoleSet(AdminRoleSet { admin_id, role })],
        AdminCommand::SetTeamScope(team_id) if team_id == admin.team_id => vec![],
        AdminCommand::SetTeamScope(Some(_)) if admin.role != AdminRole::Viewer => {
            return Err(Rejection::Conflict(format!(
                "admin `{}` has the `{}` role; only a `viewer` can be scoped to a team (a team lead): \
                 give them the `viewer` role first",
                admin.username,
                admin.role.as_str()
            )))
        }
        AdminCommand::SetTeamScope(team_id) => vec![Event::AdminTeamScopeSet(AdminTeamScopeSet { admin_id, team_id })],
        AdminCommand::IssueToken { token_id, name, token_hash, token_prefix, role } => {
            if admin.tokens.iter().any(|t| t.token_id == token_id) {
                return Err(Rejection::Conflict(format!("API token {token_id} already exists")));
            }
            vec![Event::ApiTokenIssued(ApiTokenIssued { admin_id, token_id, name, token_hash, token_prefix, role })]
        }
        AdminCommand::LinkSso { issuer, subject } => match &admin.sso {
            Some((i, s)) if *i == issuer && *s == subject => vec![],
            Some(_) => {
                return Err(Rejection::Conflict(format!(
                    "admin {admin_id} is already bound to another person at the identity provider"
                )))
            }
            None => vec![Event::AdminSsoLinked(AdminSsoLinked { admin_id, issuer, subject })],
        },
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
    use ulid::Ulid;

    use super::*;
    use crate::domain::testing::*;

    /// Given the admin's events, when `command`: the decision.
    fn admin(given: Vec<Event>, when: AdminCommand) -> Decision {
        decide_admin(fold(AdminState::apply, &given).as_ref(), ADMIN, when)
    }

    // ---- fixtures ---------------------------------------------------------------------------

    fn password_hash() -> PasswordHash {
        PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA".into())
            .unwrap()
    }

    fn admin_created() -> Event {
        Event::AdminCreated(AdminCreated {
            admin_id: ADMIN,
            username: "alice".into(),
            password_hash: password_hash(),
            role: AdminRole::Admin,
        })
    }

    fn issue_token(token_id: ApiTokenId) -> (AdminCommand, Event) {
        let (token_hash, token_prefix) = secret();
        let command = AdminCommand::IssueToken {
            token_id,
            name: "ci".into(),
            token_hash,
            token_prefix: token_prefix.clone(),
            role: None,
        };
        let event = Event::ApiTokenIssued(ApiTokenIssued {
            admin_id: ADMIN,
            token_id,
            name: "ci".into(),
            token_hash,
            token_prefix,
            role: None,
        });
        (command, event)
    }

    // ---- admin accounts ---------------------------------------------------------------------

    #[test]
    fn admin_create_records_the_account() {
        assert_eq!(
            admin(
                vec![],
                AdminCommand::Create {
                    username: "alice".into(),
                    password_hash: password_hash(),
                    role: AdminRole::Admin
                }
            ),
            Ok(vec![admin_created()])
        );
    }

    #[test]
    fn disabling_ends_sessions_once_and_enabling_undoes_only_the_disabling() {
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let disable = || AdminCommand::Disable { reason: Some("left".into()), now };
        let disabled = admin(vec![admin_created()], disable()).unwrap();
        assert_eq!(
            disabled,
            vec![
                Event::AdminDisabled(AdminDisabled { admin_id: ADMIN, reason: Some("left".into()) }),
                Event::AdminSessionsRevoked(AdminSessionsRevoked { admin_id: ADMIN, before: now }),
            ]
        );
        let mut given = vec![admin_created()];
        given.extend(disabled);
        assert_eq!(admin(given.clone(), disable()), Ok(vec![]), "disabling twice changes nothing");
        let state = fold(AdminState::apply, &given).unwrap();
        assert!(state.disabled && state.sessions_valid_after == Some(now));
        assert_eq!(
            admin(given.clone(), AdminCommand::Enable),
            Ok(vec![Event::AdminEnabled(AdminEnabled { admin_id: ADMIN })])
        );
        given.push(Event::AdminEnabled(AdminEnabled { admin_id: ADMIN }));
        let state = fold(AdminState::apply, &given).unwrap();
        assert!(!state.disabled && state.sessions_valid_after == Some(now), "old sessions stay ended");
        assert_eq!(admin(given, AdminCommand::Enable), Ok(vec![]));
    }

    #[test]
    fn a_new_password_ends_every_earlier_session() {
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let events =
            admin(vec![admin_created()], AdminCommand::ChangePassword { password_hash: password_hash(), now }).unwrap();
        assert!(
            matches!(&events[..], [Event::AdminPasswordChanged(_), Event::AdminSessionsRevoked(r)] if r.before == now)
        );
        let earlier: DateTime<Utc> = "2026-12-07T09:00:00Z".parse().unwrap();
        let mut given = vec![admin_created()];
        given.extend(events);
        given.push(Event::AdminSessionsRevoked(AdminSessionsRevoked { admin_id: ADMIN, before: earlier }));
        assert_eq!(fold(AdminState::apply, &given).unwrap().sessions_valid_after, Some(now), "never moves back");
    }

    fn viewer_created() -> Event {
        Event::AdminCreated(AdminCreated {
            admin_id: ADMIN,
            username: "tl".into(),
            password_hash: password_hash(),
            role: AdminRole::Viewer,
        })
    }

    fn scoped(team_id: Option<TeamId>) -> Event {
        Event::AdminTeamScopeSet(AdminTeamScopeSet { admin_id: ADMIN, team_id })
    }

    #[test]
    fn only_a_viewer_is_scoped_to_a_team_and_scoping_changes_only_when_different() {
        assert_eq!(admin(vec![viewer_created()], AdminCommand::SetTeamScope(Some(TEAM))), Ok(vec![scoped(Some(TEAM))]));
        let state = fold(AdminState::apply, &[viewer_created(), scoped(Some(TEAM))]).unwrap();
        assert_eq!(state.team_id, Some(TEAM));
        then_nothing(admin(vec![viewer_created(), scoped(Some(TEAM))], AdminCommand::SetTeamScope(Some(TEAM))));
        then_nothing(admin(vec![viewer_created()], AdminCommand::SetTeamScope(None)));
        assert_eq!(
            admin(vec![viewer_created(), scoped(Some(TEAM))], AdminCommand::SetTeamScope(None)),
            Ok(vec![scoped(None)])
        );
        let unscoped = fold(AdminState::apply, &[viewer_created(), scoped(Some(TEAM)), scoped(None)]).unwrap();
        assert_eq!(unscoped.team_id, None);
        let refused = admin(vec![admin_created()], AdminCommand::SetTeamScope(Some(TEAM)));
        assert!(matches!(&refused, Err(Rejection::Conflict(m)) if m.contains("only a `viewer`")), "{refused:?}");
        then_not_found(admin(vec![], AdminCommand::SetTeamScope(Some(TEAM))));
    }

    #[test]
    fn a_team_leads_role_is_not_raised_until_unscoped() {
        let given = vec![viewer_created(), scoped(Some(TEAM))];
        let refused = admin(given.clone(), AdminCommand::SetRole(AdminRole::Operator));
        assert!(matches!(&refused, Err(Rejection::Conflict(m)) if m.contains("team-scope")), "{refused:?}");
        then_nothing(admin(given.clone(), AdminCommand::SetRole(AdminRole::Viewer)));
        let mut unscoped = given;
        unscoped.push(scoped(None));
        assert_eq!(
            admin(unscoped, AdminCommand::SetRole(AdminRole::Operator)),
            Ok(vec![Event::AdminRoleSet(AdminRoleSet { admin_id: ADMIN, role: AdminRole::Operator })])
        );
    }

    #[test]
    fn admin_create_twice_conflicts() {
        then_conflict(admin(
            vec![admin_created()],
            AdminCommand::Create { username: "alice".into(), password_hash: password_hash(), role: AdminRole::Admin },
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
}
