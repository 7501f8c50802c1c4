//! The OpenID provider of the single sign-on tests: `tests/node/oidc_provider.mjs` (the
//! certified `oidc-provider` package, installed by scripts/install-clients.sh) as a child
//! process, with its test-only controls, and the settings pointing `ccp-admin` at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const CLIENT_ID: &str = "ccp-dashboard";
pub const CLIENT_SECRET: &str = "client-secret-for-the-sso-test-0123456789";

/// The OpenID provider process; killed when dropped.
pub struct Idp {
    child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

impl Idp {
    pub async fn start(redirect_uri: &str, people: Value) -> Self {
        let modules = std::env::var_os("CCP_TEST_OIDC_MODULES")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".local/clients/oidc/node_modules"));
        assert!(
            modules.join("oidc-provider").is_dir(),
            "oidc-provider is missing from {} (run scripts/install-clients.sh)",
            modules.display()
        );
        let port = ccp_tests::free_port();
        let child = Command::new("node")
            .arg(repo().join("tests/node/oidc_provider.mjs"))
            .env("OIDC_MODULES", &modules)
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_CLIENT_ID", CLIENT_ID)
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URI", redirect_uri)
            .env("OIDC_PEOPLE", people.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let issuer = format!("http://127.0.0.1:{port}");
        ccp_tests::wait_http_ok(&format!("{issuer}/.well-known/openid-configuration"), Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("oidc-provider did not start: {e}"));
        Self { child, issuer, http: reqwest::Client::new() }
    }

    async fn control(&self, path: &str, body: Value) {
        let r = self.http.post(format!("{}{path}", self.issuer)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }

    pub async fn people(&self, people: Value) {
        self.control("/_test/people", people).await;
    }

    pub async fn tamper(&self, mode: &str) {
        self.control("/_test/tamper", json!({ "mode": mode })).await;
    }
}

/// `ccp-admin`'s single sign-on settings for `issuer` (people in `ccp-admins` are admins, in
/// `platform` operators, in `finance` viewers).
pub fn sso_env<'a>(issuer: &'a str, redirect: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CCP__ADMIN__SSO__ISSUER", issuer),
        ("CCP__ADMIN__SSO__CLIENT_ID", CLIENT_ID),
        ("CCP__ADMIN__SSO__CLIENT_SECRET", CLIENT_SECRET),
        ("CCP__ADMIN__SSO__REDIRECT_URL", redirect),
        ("CCP__ADMIN__SSO__SCOPES", "openid,email,groups"),
        ("CCP__ADMIN__SSO__ROLES__ADMIN", "ccp-admins"),
        ("CCP__ADMIN__SSO__ROLES__OPERATOR", "platform"),
        ("CCP__ADMIN__SSO__ROLES__VIEWER", "finance"),
        ("CCP__ADMIN__SIGN_IN_RECORD_SECS", "1"),
    ]
}
