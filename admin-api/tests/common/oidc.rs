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

/// A browser-like HTTP client: cookies kept, redirects followed by hand.
pub struct Agent {
    http: reqwest::Client,
}

/// The answer of a request, with the body as text.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub text: String,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    pub fn new() -> Self {
        Self::from_address("127.0.0.1")
    }

    /// An agent whose connections come from `address` (any of 127.0.0.0/8): another client
    /// as far as sign-in throttling is concerned.
    pub fn from_address(address: &str) -> Self {
        let http = reqwest::Client::builder()
            .local_address(Some(address.parse().unwrap()))
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self { http }
    }

    pub async fn get(&self, url: &str) -> Page {
        Self::page(self.http.get(url).send().await.unwrap()).await
    }

    async fn page(r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        Page { status, location, text: r.text().await.unwrap_or_default() }
    }

    /// From `start` (a URL of the admin API) through the provider's login page as `login`, up to
    /// (not including) the admin API's callback: the callback URL.
    pub async fn through_provider(&self, start: &str, idp: &str, login: &str) -> String {
        let mut url = start.to_owned();
        for _ in 0..12 {
            if url.contains("/v1/auth/sso/callback") {
                return url;
            }
            let page = self.get(&url).await;
            if let Some(next) = page.location {
                url = if next.starts_with('/') { format!("{idp}{next}") } else { next };
                continue;
            }
            // The provider's login form: post it.
            let action = page
                .text
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no form at {url} ({}):\n{}", page.status, page.text));
            let action = if action.starts_with('/') { format!("{idp}{action}") } else { action.to_owned() };
            let form = [("prompt", "login"), ("login", login), ("password", "any password")];
            let r = Self::page(self.http.post(&action).form(&form).send().await.unwrap()).await;
            url = r.location.unwrap_or_else(|| panic!("login form answered {}: {}", r.status, r.text));
            if url.starts_with('/') {
                url = format!("{idp}{url}");
            }
        }
        panic!("the sign-in did not reach the callback");
    }

    /// The `ccp_session` cookie the admin API set, if any.
    pub async fn me(&self, api: &str) -> (u16, Value) {
        let r = self.http.get(format!("{api}/v1/auth/me")).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// An OpenID provider knowing `people` (login → groups) and a `ccp-admin` (`label`) signing in
/// through it (the provider's redirect URL needs the admin API's port before either starts).
pub async fn admin_with_sso(label: &str, people: Value) -> (Idp, super::AdminApi) {
    let port = ccp_tests::free_port();
    let redirect = format!("http://127.0.0.1:{port}/v1/auth/sso/callback");
    let idp = Idp::start(&redirect, people).await;
    let listen = format!("127.0.0.1:{port}");
    let mut env = sso_env(&idp.issuer, &redirect);
    env.push(("CCP__ADMIN__LISTEN", &listen));
    let api = super::AdminApi::start_with(label, &env).await;
    (idp, api)
}
