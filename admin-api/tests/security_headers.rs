#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Security headers on a real `ccp-admin`: the dashboard's pages carry their strict CSP and
//! anti-framing headers; every API answer — the one that shows a new access key above all, the
//! login that returns a session token, and errors — is `no-store`, `nosniff` and unframeable.

mod common;

use common::{AdminApi, ADMIN_PASSWORD, ADMIN_USER};
use reqwest::Method;
use serde_json::json;

/// The headers every answer must carry, whatever it is.
fn assert_hardened(what: &str, a: &common::Answer) {
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "{what}: {:?}", a.headers);
    assert_eq!(a.header("x-frame-options"), Some("DENY"), "{what}: {:?}", a.headers);
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{what}: {:?}", a.headers);
    let csp = a.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp:?}");
}

#[tokio::test]
async fn dashboard_pages_and_api_answers_carry_the_security_headers() {
    let api = AdminApi::start("secheaders").await;

    // The dashboard: a page CSP that allows only its own script and style, revalidated caching.
    for path in ["/", "/dashboard/app.js", "/dashboard/app.css"] {
        let page = api.send(Method::GET, path, None, None).await;
        assert_eq!(page.status, 200, "{path}");
        assert_hardened(path, &page);
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(page.header("cache-control"), Some("no-cache"), "{path}");
    }

    // The answer that shows an access key once must never be stored by a cache.
    let user = api.create_user("Dana Scully").await;
    let issued = api.post(&format!("/v1/users/{user}/keys"), json!({})).await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    assert!(issued.body["access_key"].as_str().unwrap().starts_with("ak_"));
    assert_hardened("key issuance", &issued);
    assert_eq!(issued.header("cache-control"), Some("no-store"));
    assert_eq!(issued.header("content-security-policy"), Some("default-src 'none'; frame-ancestors 'none'"));
    let key_id = issued.body["key"]["key_id"].as_str().unwrap();
    let rotated = api.send(Method::POST, &format!("/v1/keys/{key_id}/rotate"), Some(&api.token), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert!(rotated.body["access_key"].as_str().unwrap().starts_with("ak_"), "{}", rotated.text);
    assert_eq!(rotated.header("cache-control"), Some("no-store"), "key rotation");

    // The login answer carries a session token.
    let login = api
        .send(Method::POST, "/v1/auth/login", None, Some(json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD})))
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert_hardened("login", &login);
    assert_eq!(login.header("cache-control"), Some("no-store"), "login");

    // Errors (refused by the auth layer, unknown routes, wrong methods) too.
    for (method, path, status) in
        [(Method::GET, "/v1/users", 401), (Method::GET, "/nope", 404), (Method::DELETE, "/dashboard/app.js", 405)]
    {
        let a = api.send(method, path, None, None).await;
        assert_eq!(a.status, status, "{path}: {}", a.text);
        assert_hardened(path, &a);
        assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
    }
    let health = api.send(Method::GET, "/health", None, None).await;
    assert_hardened("/health", &health);

    api.finish().await;
}
