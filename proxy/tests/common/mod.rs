//! A proxy in front of the fake Anthropic and the fake Bedrock on the real NATS, shared by the
//! failover, rate-limit and client tests.

#![allow(dead_code)] // each test binary uses its own part

use std::time::{Duration, Instant};

use ccp_proxy::Application;
use ccp_runtime::config::Settings;
use ccp_schemas::secrets::envelope::LocalMasterKey;
use ccp_tests::events::Log;
use ccp_tests::fake_anthropic::FakeAnthropic;
use ccp_tests::fake_bedrock::FakeBedrock;
use ccp_tests::{test_settings, wait_http_ok};

/// The Bedrock API key the fake Bedrock accepts.
pub const BEDROCK_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS10ZXN0LWtleS0wMDAx";

pub struct Env {
    pub log: Log,
    pub anthropic: FakeAnthropic,
    pub bedrock: FakeBedrock,
    pub master: LocalMasterKey,
    pub settings: Settings,
    pub url: String,
}

/// Settings of a one-worker proxy in front of these fakes, in a fresh namespace with its own
/// spool directory and a fresh master key (returned, to seal Bedrock keys with).
pub fn proxy_settings(
    label: &str,
    anthropic: &FakeAnthropic,
    bedrock: Option<&FakeBedrock>,
) -> (Settings, LocalMasterKey) {
    let mut settings = test_settings(label);
    settings.proxy.anthropic_base_url = anthropic.url();
    settings.proxy.bedrock_endpoint_url = bedrock.map(FakeBedrock::url);
    settings.proxy.spool_dir = std::env::temp_dir().join(format!("ccp-spool-{}", settings.nats.prefix));
    settings.proxy.workers = 1;
    let master_b64 = LocalMasterKey::generate_b64().unwrap();
    settings.secrets.master_key = master_b64.clone();
    let master = LocalMasterKey::new(settings.secrets.master_key_id.clone(), &master_b64).unwrap();
    (settings, master)
}

/// Starts a proxy with `settings` in this runtime; its base URL once it is ready.
pub async fn start(settings: Settings) -> String {
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    wait_http_ok(&format!("{url}/ready"), Duration::from_secs(20)).await.unwrap();
    url
}

/// Fresh fakes, a namespace and a master key; `tweak` adjusts the settings before the start.
pub async fn env(label: &str, tweak: impl FnOnce(&mut Settings)) -> Env {
    let anthropic = FakeAnthropic::start().unwrap();
    let bedrock = FakeBedrock::start(&[BEDROCK_KEY]).unwrap();
    let (mut settings, master) = proxy_settings(label, &anthropic, Some(&bedrock));
    tweak(&mut settings);
    let log = Log::new(&settings).await;
    let url = start(settings.clone()).await;
    Env { log, anthropic, bedrock, master, settings, url }
}

/// Waits until the proxy at `url` has applied the admin stream up to `seq`.
pub async fn wait_applied_at(url: &str, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ready: serde_json::Value = reqwest::get(format!("{url}/ready")).await.unwrap().json().await.unwrap();
        if ready["admin_stream_seq"].as_u64().unwrap_or(0) >= seq {
            return;
        }
        assert!(Instant::now() < deadline, "proxy did not apply seq {seq}: {ready}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
