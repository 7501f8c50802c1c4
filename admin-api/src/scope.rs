//! Team leads: what an admin scoped to one team may call, enforced in one place ([`check`],
//! called by [`crate::auth::require_auth`] right after [`crate::roles::check`]).
//!
//! A team lead is a `viewer` scoped to one team (`admin_team_scope_set`; only a viewer can be
//! scoped, and a scoped admin's role is not raised until they are unscoped). Their sessions and
//! API tokens may call only what is listed in [`check`]: their own account (logout, `me`,
//! password, sign out everywhere, API tokens), their team and its budget, their team's current
//! members and their budgets, and usage and statements filtered to their team
//! (`team_id=<their team>` in the query: a request without it, or naming another team, is
//! refused naming `team_id`, never silently rewritten). Everything else is refused with 403,
//! the list of teams too (a team lead's dashboard opens their team's page directly, from the
//! `team_id` of `GET /v1/auth/me`). The rule is a pure function of the request and the read
//! model's answer to "is this user a member of the team", so it is tested without a server.

use ccp_schemas::ids::{TeamId, UserId};

use crate::error::{ApiError, ErrorKind};

/// The team lead a request is from.
pub struct Lead<'a> {
    /// Their team.
    pub team_id: TeamId,
    /// Its name (for messages; the id when the team is gone).
    pub team_name: &'a str,
    /// Whether a user is a current member of the team.
    pub is_member: &'a dyn Fn(UserId) -> bool,
}

/// The operations a team lead may call whatever their arguments: their own account.
const OWN_ACCOUNT: &[(&str, &str)] = &[
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/auth/me"),
    ("PUT", "/v1/auth/password"),
    ("POST", "/v1/auth/sign-out-everywhere"),
    ("GET", "/v1/api-tokens"),
    ("POST", "/v1/api-tokens"),
    ("POST", "/v1/api-tokens/{token_id}/revoke"),
];

/// Whether `lead` may call `method` on `path` (as the router matches it, percent-decoded, with
/// its `pattern`; `None`: no route matched — refused too, a 403 instead of a 404 costs a team lead
/// nothing) with the raw `query` string.
pub fn check(method: &str, pattern: Option<&str>, path: &str, query: &str, lead: &Lead<'_>) -> Result<(), ApiError> {
    let Some(pattern) = pattern else {
        return Err(refused(lead, &format!("{method} {path} is not for team leads")));
    };
    // HEAD is answered like GET.
    let method = if method == "HEAD" { "GET" } else { method };
    if OWN_ACCOUNT.contains(&(method, pattern)) {
        return Ok(());
    }
    match (method, pattern) {
        ("GET", "/v1/teams/{team_id}" | "/v1/teams/{team_id}/budget") => {
            let asked = param(pattern, path, "team_id");
            if asked.and_then(|t| t.parse::<TeamId>().ok()) == Some(lead.team_id) {
                return Ok(());
            }
            Err(refused(lead, "another team is not yours to see").field("team_id"))
        }
        ("GET", "/v1/usage" | "/v1/statements") => {
            let teams: Vec<String> = form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "team_id")
                .map(|(_, v)| v.into())
                .collect();
            match teams.as_slice() {
                [one] if one.parse::<TeamId>().ok() == Some(lead.team_id) => Ok(()),
                [] => Err(refused(lead, &format!("add `team_id={}` to the query", lead.team_id)).field("team_id")),
                _ => Err(refused(lead, &format!("`team_id` must be `{}`", lead.team_id)).field("team_id")),
            }
        }
        ("GET", "/v1/users/{user_id}" | "/v1/users/{user_id}/budget") => {
            let asked = param(pattern, path, "user_id").and_then(|u| u.parse::<UserId>().ok());
            if asked.is_some_and(|u| (lead.is_member)(u)) {
                return Ok(());
            }
            Err(refused(lead, "that user is not a member of it").field("user_id"))
        }
        _ => Err(refused(lead, &format!("{method} {pattern} is not for team leads"))),
    }
}

/// 403: "a team lead of `<team>` sees only that team's usage; <why>".
fn refused(lead: &Lead<'_>, why: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!("a team lead of `{}` sees only that team's usage: {why}", lead.team_name),
    )
}

/// The segment of `path` at the place of `{name}` in `pattern`.
fn param<'p>(pattern: &str, path: &'p str, name: &str) -> Option<&'p str> {
    let wanted = format!("{{{name}}}");
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    if pattern.len() != path.len() {
        return None;
    }
    pattern.iter().zip(path).find(|(p, _)| **p == wanted).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ulid::Ulid;

    use super::*;

    const TEAM: TeamId = TeamId::from_ulid(Ulid(5));
    const OTHER: TeamId = TeamId::from_ulid(Ulid(6));
    const MEMBER: UserId = UserId::from_ulid(Ulid(7));
    const STRANGER: UserId = UserId::from_ulid(Ulid(8));

    fn lead_check(method: &str, pattern: &str, path: &str, query: &str) -> Result<(), ApiError> {
        let is_member = |u: UserId| u == MEMBER;
        check(method, Some(pattern), path, query, &Lead { team_id: TEAM, team_name: "Data", is_member: &is_member })
    }

    fn allowed(method: &str, pattern: &str, path: &str, query: &str) {
        assert!(lead_check(method, pattern, path, query).is_ok(), "{method} {path}?{query} should be allowed");
    }

    /// Refused with 403 naming `field` (if any) and saying whose lead this is.
    fn refused_naming(method: &str, pattern: &str, path: &str, query: &str, field: Option<&str>) {
        let e = lead_check(method, pattern, path, query).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden, "{method} {path}?{query}");
        assert_eq!(e.field.as_deref(), field, "{method} {path}?{query}: {}", e.message);
        assert!(e.message.contains("a team lead of `Data` sees only that team's usage"), "{}", e.message);
    }

    #[test]
    fn a_team_lead_manages_their_own_account() {
        for (method, pattern) in OWN_ACCOUNT {
            allowed(method, pattern, pattern, "");
        }
        allowed("POST", "/v1/api-tokens/{token_id}/revoke", "/v1/api-tokens/tok_01JDQ70000000000000000000A/revoke", "");
    }

    #[test]
    fn a_team_lead_sees_their_team_and_its_budget_only() {
        for pattern in ["/v1/teams/{team_id}", "/v1/teams/{team_id}/budget"] {
            allowed("GET", pattern, &pattern.replace("{team_id}", &TEAM.to_string()), "");
            allowed("HEAD", pattern, &pattern.replace("{team_id}", &TEAM.to_string()), "");
            refused_naming("GET", pattern, &pattern.replace("{team_id}", &OTHER.to_string()), "", Some("team_id"));
            refused_naming("GET", pattern, &pattern.replace("{team_id}", "team_nonsense"), "", Some("team_id"));
        }
        let mine = format!("/v1/teams/{TEAM}");
        refused_naming("PATCH", "/v1/teams/{team_id}", &mine, "", None);
        refused_naming("PUT", "/v1/teams/{team_id}/budget", &format!("{mine}/budget"), "", None);
        refused_naming("DELETE", "/v1/teams/{team_id}", &mine, "", None);
        refused_naming("GET", "/v1/teams", "/v1/teams", "", None);
    }

    #[test]
    fn usage_and_statements_only_with_their_team_in_the_query() {
        for route in ["/v1/usage", "/v1/statements"] {
            allowed("GET", route, route, &format!("team_id={TEAM}"));
            allowed("GET", route, route, &format!("from=2026-12-01&group_by=user,model&team_id={TEAM}"));
            allowed("GET", route, route, &format!("month=2026-11&team_id={TEAM}&format=csv"));
            refused_naming("GET", route, route, "", Some("team_id"));
            refused_naming("GET", route, route, "group_by=user", Some("team_id"));
            refused_naming("GET", route, route, &format!("team_id={OTHER}"), Some("team_id"));
            refused_naming("GET", route, route, &format!("team_id={TEAM}&team_id={OTHER}"), Some("team_id"));
            refused_naming("GET", route, route, "team_id=", Some("team_id"));
            refused_naming("GET", route, route, "team_id=team_bad", Some("team_id"));
        }
        let e = lead_check("GET", "/v1/usage", "/v1/usage", "").unwrap_err();
        assert!(e.message.contains(&format!("team_id={TEAM}")), "the refusal says what to add: {}", e.message);
    }

    #[test]
    fn a_team_lead_sees_only_current_members() {
        for pattern in ["/v1/users/{user_id}", "/v1/users/{user_id}/budget"] {
            allowed("GET", pattern, &pattern.replace("{user_id}", &MEMBER.to_string()), "");
            refused_naming("GET", pattern, &pattern.replace("{user_id}", &STRANGER.to_string()), "", Some("user_id"));
            refused_naming("GET", pattern, &pattern.replace("{user_id}", "usr_bad"), "", Some("user_id"));
        }
        refused_naming("GET", "/v1/users/{user_id}/keys", &format!("/v1/users/{MEMBER}/keys"), "", None);
        refused_naming("PATCH", "/v1/users/{user_id}", &format!("/v1/users/{MEMBER}"), "", None);
        refused_naming("GET", "/v1/users", "/v1/users", &format!("team={TEAM}"), None);
    }

    #[test]
    fn everything_else_is_refused() {
        for (method, path) in crate::roles::REQUIRED.iter().map(|(m, p, _)| (*m, *p)) {
            let allowed_somehow = OWN_ACCOUNT.contains(&(method, path))
                || (method == "GET"
                    && [
                        "/v1/teams/{team_id}",
                        "/v1/teams/{team_id}/budget",
                        "/v1/usage",
                        "/v1/statements",
                        "/v1/users/{user_id}",
                        "/v1/users/{user_id}/budget",
                    ]
                    .contains(&path));
            if !allowed_somehow {
                refused_naming(method, path, path, "", None);
            }
        }
        assert!(lead_check("GET", "/v1/audit", "/v1/audit", &format!("team_id={TEAM}")).is_err());
        let is_member = |_: UserId| true;
        let lead = Lead { team_id: TEAM, team_name: "Data", is_member: &is_member };
        assert!(check("GET", None, "/v1/nowhere", "", &lead).is_err(), "no route: refused all the same");
    }
}
