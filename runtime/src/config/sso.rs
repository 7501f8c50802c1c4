//! `[admin.sso]`: single sign-on for admins with an OpenID Connect provider (authorization code
//! with PKCE), and which of the provider's claims grant which role.

use ccp_schemas::events::AdminRole;
use ccp_schemas::secrets::SecretString;
use serde::{Deserialize, Serialize};

use super::services::list_or_csv;

/// Single sign-on for the dashboard and `ccpctl login --sso`. Off while `issuer` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoSettings {
    /// The provider's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`);
    /// empty: single sign-on is off.
    pub issuer: String,
    /// This application's client id at the provider (ID tokens must name it as audience).
    pub client_id: String,
    /// The client secret (empty: a public client, PKCE alone).
    pub client_secret: SecretString,
    /// The callback URL registered at the provider: the admin API's public address followed by
    /// `/v1/auth/sso/callback`, e.g. `https://ccp-admin.example.com/v1/auth/sso/callback`.
    pub redirect_url: String,
    /// Scopes asked for (`openid` is always included). In the environment: comma-separated.
    #[serde(deserialize_with = "list_or_csv")]
    pub scopes: Vec<String>,
    /// The ID-token claim that becomes the admin's username (`email`, `preferred_username`, …).
    pub username_claim: String,
    /// The ID-token claim whose values (a string or a list of strings, e.g. group names) the
    /// role mapping matches.
    pub role_claim: String,
    /// Which claim values grant which role; the highest granted role wins, and a person granted
    /// none is refused (and their admin disabled).
    pub roles: SsoRoleMapping,
    /// Whether a first single sign-on may take over an existing admin (created with a password)
    /// of the same username. Only with a provider where people cannot choose that claim; with
    /// `username_claim = "email"` the token must also say `email_verified: true`.
    pub link_by_username: bool,
    /// Whether username + password login stays on (API tokens and `ccp-admin recover` work
    /// either way).
    pub password_login: bool,
    /// Tolerated clock difference with the provider when checking `exp`/`iat`, in seconds.
    pub clock_skew_secs: u64,
}

/// Claim values granting each role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoRoleMapping {
    /// Values granting `admin`.
    #[serde(deserialize_with = "list_or_csv")]
    pub admin: Vec<String>,
    /// Values granting `operator`.
    #[serde(deserialize_with = "list_or_csv")]
    pub operator: Vec<String>,
    /// Values granting `viewer`.
    #[serde(deserialize_with = "list_or_csv")]
    pub viewer: Vec<String>,
}

impl SsoRoleMapping {
    /// The highest role any of `values` grants.
    pub fn role_for<'a>(&self, values: impl IntoIterator<Item = &'a str> + Clone) -> Option<AdminRole> {
        let grants = |list: &[String]| values.clone().into_iter().any(|v| list.iter().any(|g| g == v));
        if grants(&self.admin) {
            Some(AdminRole::Admin)
        } else if grants(&self.operator) {
            Some(AdminRole::Operator)
        } else if grants(&self.viewer) {
            Some(AdminRole::Viewer)
        } else {
            None
        }
    }
}

impl Default for SsoSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: SecretString::default(),
            redirect_url: String::new(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            username_claim: "email".into(),
            role_claim: "groups".into(),
            roles: SsoRoleMapping::default(),
            link_by_username: false,
            password_login: true,
            clock_skew_secs: 60,
        }
    }
}

impl SsoSettings {
    /// Whether single sign-on is configured.
    pub fn enabled(&self) -> bool {
        !self.issuer.is_empty()
    }

    /// What is missing or contradictory, as one message naming the keys.
    pub fn problems(&self) -> Option<String> {
        if !self.enabled() {
            return (!self.password_login).then(|| {
                "admin.sso.password_login = false needs single sign-on (admin.sso.issuer): nobody could log in".into()
            });
        }
        let mut missing = Vec::new();
        if self.client_id.is_empty() {
            missing.push("admin.sso.client_id");
        }
        if self.redirect_url.is_empty() {
            missing.push("admin.sso.redirect_url");
        }
        if !missing.is_empty() {
            return Some(format!("single sign-on (admin.sso.issuer is set) also needs {}", missing.join(" and ")));
        }
        if self.roles.admin.is_empty() && self.roles.operator.is_empty() && self.roles.viewer.is_empty() {
            return Some(
                "admin.sso.roles grants no role: set admin.sso.roles.admin / operator / viewer to values of the \
                 `admin.sso.role_claim` claim (e.g. group names)"
                    .into(),
            );
        }
        for (key, url) in [("admin.sso.issuer", &self.issuer), ("admin.sso.redirect_url", &self.redirect_url)] {
            if !url.starts_with("https://") && !is_loopback(url) {
                return Some(format!(
                    "{key} = `{}` must be https:// (plain http only on this machine: 127.0.0.1, localhost)",
                    url.chars().take(200).collect::<String>()
                ));
            }
        }
        if !self.redirect_url.ends_with("/v1/auth/sso/callback") {
            return Some(format!(
                "admin.sso.redirect_url = `{}` must be the admin API's public address followed by /v1/auth/sso/callback",
                self.redirect_url.chars().take(200).collect::<String>()
            ));
        }
        None
    }
}

/// Whether `url` is plain HTTP to this machine.
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_granted_role_wins_and_no_match_grants_nothing() {
        let roles = SsoRoleMapping {
            admin: vec!["ccp-admins".into()],
            operator: vec!["platform".into()],
            viewer: vec!["finance".into(), "platform".into()],
        };
        assert_eq!(roles.role_for(["finance", "platform"]), Some(AdminRole::Operator));
        assert_eq!(roles.role_for(["finance"]), Some(AdminRole::Viewer));
        assert_eq!(roles.role_for(["ccp-admins", "finance"]), Some(AdminRole::Admin));
        assert_eq!(roles.role_for(["sales"]), None);
        assert_eq!(roles.role_for([]), None);
    }

    #[test]
    fn incomplete_settings_name_the_missing_keys() {
        let mut s = SsoSettings { issuer: "https://idp.example".into(), ..SsoSettings::default() };
        let p = s.problems().unwrap_or_default();
        assert!(p.contains("admin.sso.client_id") && p.contains("admin.sso.redirect_url"), "{p}");
        s.client_id = "ccp".into();
        s.redirect_url = "https://admin.example/v1/auth/sso/callback".into();
        assert!(s.problems().unwrap_or_default().contains("grants no role"));
        s.roles.viewer = vec!["everyone".into()];
        assert_eq!(s.problems(), None);
        s.issuer = "http://idp.example".into();
        assert!(s.problems().unwrap_or_default().contains("must be https://"));
        s.issuer = "http://127.0.0.1:5556/dex".into();
        assert_eq!(s.problems(), None);
        s.issuer = "http://127.0.0.1.evil.example/".into();
        assert!(s.problems().is_some());
        let off = SsoSettings { password_login: false, ..SsoSettings::default() };
        assert!(off.problems().unwrap_or_default().contains("nobody could log in"));
    }
}
