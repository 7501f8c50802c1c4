//! Corporate egress, for real on loopback: the proxy binary reaches Anthropic and Bedrock (each a
//! fake behind a TLS front signed by a test CA) through a CONNECT proxy with credentials; without
//! the CA, through a proxy that refuses, or with wrong credentials, the developer and the log get
//! one clear line naming the host and the cause, never the proxy password; bad egress settings
//! stop the proxy at start. The AWS SDK client (KMS) and the reqwest client (webhooks) built by
//! `ccp_runtime::egress` go through the same proxy. And the plain local setup keeps working
//! when `HTTPS_PROXY` is set in the environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ccp_runtime::config::{EgressSettings, ProxyUrl};
use ccp_runtime::egress::Egress;
use ccp_schemas::secrets::envelope::{BedrockApiKey, MasterKey, SealedSecret};
use ccp_schemas::secrets::kms::{KmsMasterKey, KmsOptions};
use ccp_tests::connect_proxy::{ConnectProxy, ProxyMode, TlsFront};
use ccp_tests::fake_anthropic::ScenarioName;
use ccp_tests::fake_kms::FakeKms;
use ccp_tests::pki::TestCa;
use ccp_tests::system::{workspace_bin, Options, System, API_KEY};
use ccp_tests::{free_port, service_env, Service};
use serde_json::json;

const PROXY_PASSWORD: &str = "pr0xy-Pa55-egress";

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// Restarts replica 0 with Anthropic and Bedrock at `fronts` and these egress variables.
async fn restart_proxy(sys: &mut System, fronts: Option<(&TlsFront, &TlsFront)>, egress: &[(&str, String)]) {
    if let Some(mut old) = sys.proxies[0].service.take() {
        old.terminate(Duration::from_secs(20));
    }
    let plain = (sys.anthropic_url.clone(), sys.bedrock_url.clone());
    if let Some((a, b)) = fronts {
        sys.anthropic_url = a.url();
        sys.bedrock_url = b.url();
    }
    sys.env.retain(|(k, _)| !k.starts_with("CCP__EGRESS__") && !k.ends_with("_PROXY"));
    sys.env.extend(egress.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    sys.start_proxy(0).await;
    (sys.anthropic_url, sys.bedrock_url) = plain;
}

async fn ask(sys: &System, key: &str) -> (u16, String) {
    let resp = sys
        .http
        .post(format!("{}/ak/{key}/v1/messages", sys.proxy_url(0)))
        .header("content-type", "application/json")
        .header("x-api-key", API_KEY)
        .body(r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .expect("the proxy answers");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

fn proxy_log(sys: &System) -> String {
    sys.proxies[0].service.as_ref().map(Service::log_text).unwrap_or_default()
}

/// A key without a Bedrock key: Anthropic's failure is what the developer sees.
async fn plain_key(sys: &System) -> String {
    let user = sys.admin(reqwest::Method::POST, "/v1/users", Some(json!({ "name": "egress-plain" }))).await;
    let user_id = user["user_id"].as_str().unwrap();
    let issued = sys.admin(reqwest::Method::POST, &format!("/v1/users/{user_id}/keys"), Some(json!({}))).await;
    let key = issued["access_key"].as_str().unwrap().to_owned();
    sys.wait_key_status(0, &key, |s| s != 401, "the plain key").await;
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_goes_out_through_the_corporate_proxy_or_says_why_not() {
    let mut sys = System::start(Options::new("egress")).await;
    let (_, _, bedrock_key) = sys.developer("egress-bedrock").await;
    let key = plain_key(&sys).await;
    let ca = TestCa::new("egress");
    let cert = ca.server("upstream");
    let anthropic = TlsFront::start(&cert.cert, &cert.key, addr_of(&sys.anthropic_url)).await;
    let bedrock = TlsFront::start(&cert.cert, &cert.key, addr_of(&sys.bedrock_url)).await;
    let ca_file = ca.ca_file().display().to_string();

    // The plain local setup is untouched by a developer's HTTPS_PROXY (a proxy that refuses
    // everything): loopback and http:// destinations are reached directly.
    let refusing = ConnectProxy::start(ProxyMode::Refuse).await;
    restart_proxy(&mut sys, None, &[("HTTPS_PROXY", refusing.url()), ("NO_PROXY", "internal.example".into())]).await;
    let (status, body) = ask(&sys, &key).await;
    assert_eq!(status, 200, "{body}\n{}", proxy_log(&sys));
    assert_eq!(refusing.tunnels() + refusing.targets().len(), 0);

    // Through the proxy with credentials and the CA: Anthropic answers, and so does Bedrock when
    // Anthropic rate-limits (both through tunnels).
    let corporate =
        ConnectProxy::start(ProxyMode::Credentials { user: "ccp".into(), password: PROXY_PASSWORD.into() }).await;
    let egress = |proxy_url: String, ca: Option<&str>| {
        let mut env = vec![("CCP__EGRESS__PROXY_URL", proxy_url), ("CCP__EGRESS__PROXY_LOOPBACK", "true".to_owned())];
        if let Some(ca) = ca {
            env.push(("CCP__EGRESS__CA_FILE", ca.to_owned()));
        }
        env
    };
    restart_proxy(
        &mut sys,
        Some((&anthropic, &bedrock)),
        &egress(corporate.url_with("ccp", PROXY_PASSWORD), Some(&ca_file)),
    )
    .await;
    sys.reset_fakes().await;
    let (status, body) = ask(&sys, &key).await;
    assert_eq!(status, 200, "{body}\n{}", proxy_log(&sys));
    assert!(corporate.tunnels() > 0);
    assert!(corporate.targets().contains(&format!("localhost:{}", anthropic.port())), "{:?}", corporate.targets());
    assert_eq!(sys.anthropic_requests().await.len(), 1, "the fake Anthropic was reached");
    sys.enqueue_anthropic(json!([{ "name": ScenarioName::RateLimit.as_str() }])).await;
    let (status, body) = ask(&sys, &bedrock_key).await;
    assert_eq!(status, 200, "{body}\n{}", proxy_log(&sys));
    assert!(!sys.bedrock_requests().await.is_empty(), "failover reached the fake Bedrock");
    assert!(corporate.targets().contains(&format!("localhost:{}", bedrock.port())), "{:?}", corporate.targets());
    let log = proxy_log(&sys);
    assert!(
        log.contains(&format!(
            "outbound HTTPS: through egress proxy {} (from egress.proxy_url) with credentials",
            corporate.url()
        )),
        "{log}"
    );

    // Without the CA: the TLS handshake with the upstream fails; the developer and the log are
    // told which host and why.
    let open = ConnectProxy::start(ProxyMode::Open).await;
    restart_proxy(&mut sys, Some((&anthropic, &bedrock)), &egress(open.url(), None)).await;
    let (status, body) = ask(&sys, &key).await;
    let host = format!("localhost:{}", anthropic.port());
    assert!(status >= 500, "{status} {body}");
    assert!(body.contains(&host) && body.contains("UnknownIssuer") && body.contains("egress.ca_file"), "{body}");
    assert!(open.tunnels() > 0, "the attempt went through the proxy");
    let log = proxy_log(&sys);
    assert!(log.contains("Anthropic request failed") && log.contains(&format!("{host}: ")), "{log}");

    // A proxy that refuses CONNECT: named, with its answer.
    restart_proxy(&mut sys, Some((&anthropic, &bedrock)), &egress(refusing.url(), Some(&ca_file))).await;
    let (status, body) = ask(&sys, &key).await;
    assert!(status >= 500, "{status} {body}");
    let named = format!("egress proxy {} (from egress.proxy_url) could not open a tunnel to {host}", refusing.url());
    assert!(body.contains(&named) && body.contains("403 Forbidden"), "{body}");
    // Bedrock behind the same proxy fails too, and says why.
    let (status, body) = ask(&sys, &bedrock_key).await;
    assert!(status >= 500, "{status} {body}");
    let via = format!("(connecting to localhost:{} through egress proxy {}", bedrock.port(), refusing.url());
    assert!(body.contains("Bedrock could not be reached: ") && body.contains(&via), "{body}");
    let log = proxy_log(&sys);
    assert!(log.contains("Bedrock could not be reached: ") && log.contains(&via), "{log}");

    // Wrong credentials: 407 explained; the password is nowhere.
    restart_proxy(
        &mut sys,
        Some((&anthropic, &bedrock)),
        &egress(corporate.url_with("ccp", "not-the-password"), Some(&ca_file)),
    )
    .await;
    let (status, body) = ask(&sys, &key).await;
    assert!(status >= 500, "{status} {body}");
    assert!(body.contains("refused the credentials in egress.proxy_url"), "{body}");
    assert!(!body.contains("not-the-password"), "{body}");
    let log = proxy_log(&sys);
    assert!(!log.contains("not-the-password") && !log.contains(PROXY_PASSWORD), "{log}");
    sys.assert_logs_free_of(&[PROXY_PASSWORD, "not-the-password"]);

    // Unusable egress settings stop the proxy at start, with one line naming the setting.
    for (env, expected, secret) in [
        (
            vec![("CCP__EGRESS__CA_FILE", "/nonexistent/corp-ca.pem".to_owned())],
            "egress.ca_file: CA bundle /nonexistent/corp-ca.pem: cannot read it",
            None,
        ),
        (
            vec![("CCP__EGRESS__PROXY_URL", "https://ccp:tls-proxy-secret@proxy.example:3128".to_owned())],
            "only http:// proxies are supported",
            Some("tls-proxy-secret"),
        ),
    ] {
        let mut vars = service_env(&sys.settings);
        vars.push(("CCP__PROXY__LISTEN".into(), format!("127.0.0.1:{}", free_port())));
        vars.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let mut proxy = Service::spawn(&workspace_bin("ccp-proxy", "ccp-proxy"), &[], &vars).unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "still running: {}", proxy.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log = proxy.log_text();
        assert!(!status.success() && log.contains(expected), "{log}");
        if let Some(secret) = secret {
            assert!(!log.contains(secret), "{log}");
        }
    }
    sys.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_and_webhook_clients_go_through_the_proxy_with_the_extra_ca() {
    let ca = TestCa::new("egress-clients");
    let cert = ca.server("kms");
    let key_arn = "arn:aws:kms:us-east-1:111122223333:key/egress-test";
    let kms = FakeKms::start(key_arn).unwrap();
    let front = TlsFront::start(&cert.cert, &cert.key, addr_of(&kms.url())).await;
    let proxy =
        ConnectProxy::start(ProxyMode::Credentials { user: "ccp".into(), password: PROXY_PASSWORD.into() }).await;
    let settings = |ca_file: bool| EgressSettings {
        proxy_url: Some(ProxyUrl::new(proxy.url_with("ccp", PROXY_PASSWORD))),
        no_proxy: Some(String::new()),
        proxy_loopback: true,
        ca_file: ca_file.then(|| ca.ca_file()),
    };
    let egress = Egress::resolve(&settings(true), |_| None).unwrap();

    // KMS (the AWS SDK's client): seal and open a Bedrock key through the tunnel.
    let master = KmsMasterKey::new(KmsOptions {
        key_id: key_arn.into(),
        region: "us-east-1".into(),
        endpoint_url: Some(front.url()),
        access_key_id: "AKIAEXAMPLE".into(),
        secret_access_key: "secret-example".into(),
        session_token: None,
    });
    let master = master.with_http_client(egress.smithy_http_client().unwrap());
    let secret = BedrockApiKey::new("ABSKQmVkcm9ja0FQSUtleS1lZ3Jlc3MtMDAwMQ==").unwrap();
    let sealed = SealedSecret::seal(&master, &secret, "key_egress").await.unwrap();
    assert_eq!(sealed.open(&master, "key_egress").await.unwrap().expose(), secret.expose());
    assert_eq!(master.id(), key_arn);
    let through = proxy.tunnels();
    assert!(through > 0 && proxy.targets().iter().all(|t| *t == format!("localhost:{}", front.port())));

    // Webhooks (reqwest): an answer through the tunnel, and a clear failure without the CA.
    let http = egress.reqwest_builder().unwrap().build().unwrap();
    let answer = http.post(format!("{}/", front.url())).body("{}").send().await.unwrap();
    assert!(answer.status().as_u16() > 0);
    assert!(proxy.tunnels() > through);
    let without_ca = Egress::resolve(&settings(false), |_| None).unwrap();
    let err = without_ca.reqwest_builder().unwrap().build().unwrap().post(front.url()).send().await.unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("UnknownIssuer") || chain.contains("certificate"), "{chain}");
    assert!(!chain.contains(PROXY_PASSWORD), "{chain}");
    let master = KmsMasterKey::new(KmsOptions {
        key_id: key_arn.into(),
        region: "us-east-1".into(),
        endpoint_url: Some(front.url()),
        access_key_id: "AKIAEXAMPLE".into(),
        secret_access_key: "secret-example".into(),
        session_token: None,
    })
    .with_http_client(without_ca.smithy_http_client().unwrap());
    let err = SealedSecret::seal(&master, &secret, "key_egress").await.unwrap_err().to_string();
    assert!(err.contains("KMS") && !err.contains(PROXY_PASSWORD), "{err}");
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}
