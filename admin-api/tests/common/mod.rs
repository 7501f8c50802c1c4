//! A running `ccp-admin` process on the test stack (its own NATS prefix and ClickHouse
//! database), logged in as the initial admin, with small HTTP helpers.

#![allow(dead_code)]

pub mod ctl;
pub mod oidc;

use std::path::Path;
use std::time::Duration;

use ccp_runtime::config::Settings;
use ccp_tests::events::Log;
use ccp_tests::{free_port, service_env, test_settings, wait_http_ok, Service};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ccp-admin");
pub const ADMIN_USER: &str = "root-admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// base64 of 32 bytes, the master key sealing Bedrock API keys in tests.
pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const PUBLIC_PROXY_URL: &str = "https://proxy.example.test";

/// A `ccp-admin` under test.
pub struct AdminApi {
    pub settings: Settings,
    pub service: Service,
    pub url: String,
    /// A session token of the initial admin.
    pub token: String,
    pub http: reqwest::Client,
    pub log: Log,
    pub env: Vec<(String, String)>,
}

/// An HTTP answer: status, headers and JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.type` of an error body.
    pub fn error_type(&self) -> &str {
        self.body["error"]["type"].as_str().unwrap_or("")
    }
}

pub fn admin_env(settings: &Settings, port: u16) -> Vec<(String, String)> {
    let mut env = service_env(settings);
    env.extend([
        ("CCP__ADMIN__LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        ("CCP__ADMIN__INITIAL_ADMIN_USERNAME".to_owned(), ADMIN_USER.to_owned()),
        ("CCP__ADMIN__INITIAL_ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
        ("CCP__ADMIN__PUBLIC_PROXY_URL".to_owned(), PUBLIC_PROXY_URL.to_owned()),
        ("CCP__SECRETS__MASTER_KEY".to_owned(), MASTER_KEY.to_owned()),
        ("CCP__SECRETS__MASTER_KEY_ID".to_owned(), "local-test".to_owned()),
    ]);
    env
}

impl AdminApi {
    /// Starts `ccp-admin` with `extra` environment and logs in.
    pub async fn start_with(label: &str, extra: &[(&str, &str)]) -> Self {
        let settings = test_settings(label);
        // A test that must know the port before the start (e.g. for a redirect URL) sets it.
        let port = extra
            .iter()
            .find(|(k, _)| *k == "CCP__ADMIN__LISTEN")
            .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(free_port);
        let mut env = admin_env(&settings, port);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let service = Service::spawn(Path::new(BIN), &[], &env).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        if let Err(e) = wait_http_ok(&format!("{url}/health"), Duration::from_secs(30)).await {
            panic!("ccp-admin did not start: {e}\n{}", service.log_text());
        }
        let log = Log::new(&settings).await;
        let http = reqwest::Client::new();
        let mut api = Self { settings, service, url, token: String::new(), http, log, env };
        api.token = api.login(ADMIN_USER, ADMIN_PASSWORD).await;
        api
    }

    /// This API's environment for another `ccp-admin` on the same log, listening on `port`, with
    /// `extra` settings.
    pub fn replica_env(&self, port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "CCP__ADMIN__LISTEN" && !extra.iter().any(|(x, _)| x == k));
        env.push(("CCP__ADMIN__LISTEN".into(), format!("127.0.0.1:{port}")));
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    /// Starts `ccp-admin` and logs in.
    pub async fn start(label: &str) -> Self {
        Self::start_with(label, &[]).await
    }

    /// A session token for a username and password (panics on failure).
    pub async fn login(&self, username: &str, password: &str) -> String {
        let a = self
            .send(
                reqwest::Method::POST,
                "/v1/auth/login",
                None,
                Some(serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(a.status, 200, "login failed: {}\n{}", a.text, self.service.log_text());
        a.body["token"].as_str().unwrap().to_owned()
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::answer(req.send().await.unwrap()).await
    }

    /// Turns a response into an [`Answer`].
    pub async fn answer(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, body, text }
    }

    /// GET as the initial admin.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, Some(&self.token), None).await
    }

    /// POST JSON as the initial admin.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(&self.token), Some(body)).await
    }

    /// PUT JSON as the initial admin.
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(&self.token), Some(body)).await
    }

    /// PATCH JSON as the initial admin.
    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::PATCH, path, Some(&self.token), Some(body)).await
    }

    /// DELETE as the initial admin.
    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, Some(&self.token), None).await
    }

    /// Creates a user; returns its id.
    pub async fn create_user(&self, name: &str) -> String {
        let a = self.post("/v1/users", serde_json::json!({ "name": name })).await;
        assert_eq!(a.status, 201, "{}", a.text);
        a.body["user_id"].as_str().unwrap().to_owned()
    }

    /// Issues a key; returns (key id, access key).
    pub async fn issue_key(&self, user_id: &str) -> (String, String) {
        let a = self.post(&format!("/v1/users/{user_id}/keys"), serde_json::json!({})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        (a.body["key"]["key_id"].as_str().unwrap().to_owned(), a.body["access_key"].as_str().unwrap().to_owned())
    }
}

impl AdminApi {
    /// Removes the test's streams and buckets (call at the end of a test).
    pub async fn finish(self) {
        let prefix = self.log.ns.prefix().to_owned();
        ccp_tests::delete_namespace(&self.log.js, &self.log.ns).await;
        let _ = self.log.js.delete_key_value(format!("{prefix}_admin_sessions")).await;
        let _ = self.log.js.delete_key_value(format!("{prefix}_idempotency")).await;
        let _ = self.log.js.delete_key_value(format!("{prefix}_admin_sso")).await;
    }
}

/// Starts a `ccp-admin` with `env` (see [`AdminApi::replica_env`]); its process and URL once it
/// answers `/health`.
pub async fn spawn_admin(env: &[(String, String)]) -> (Service, String) {
    let listen = env.iter().rev().find(|(k, _)| k == "CCP__ADMIN__LISTEN").map(|(_, v)| v.clone()).unwrap();
    let service = Service::spawn(Path::new(BIN), &[], env).unwrap();
    let url = format!("http://{listen}");
    if let Err(e) = wait_http_ok(&format!("{url}/health"), Duration::from_secs(30)).await {
        panic!("ccp-admin did not start: {e}\n{}", service.log_text());
    }
    (service, url)
}
