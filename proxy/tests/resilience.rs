//! The proxy as a process under faults: NATS goes away (requests keep being served, events are
//! spooled durably, survive a proxy restart and are replayed exactly once, in order), and
//! SIGTERM lets an in-flight stream finish before the process exits; live events go out in small
//! windows and still arrive once and in order; events NATS refuses part-way through a batch are
//! spooled from the first refused one and replayed once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::DiscardPolicy;
use ccp_runtime::config::Settings;
use ccp_schemas::subjects::StreamKind;
use ccp_tests::events::Log;
use ccp_tests::fake_anthropic::FakeAnthropic;
use ccp_tests::{free_port, service_env, test_settings, wait_http_ok, Service};
use futures_util::StreamExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_ccp-proxy");

/// A private NATS server (so it can be stopped without disturbing other tests).
struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start(port: u16, store: &Path) -> Self {
        let bin = std::env::var("CCP_TEST_NATS_SERVER")
            .expect("CCP_TEST_NATS_SERVER (exported by `eval \"$(scripts/stack.sh env)\"`; scripts/test sets it)");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "--store_dir"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, store: store.to_owned() }
    }

    fn stop(mut self) -> (u16, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.store.clone())
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy_env(settings: &Settings, upstream: &str, port: u16, spool: &Path) -> Vec<(String, String)> {
    let mut env = service_env(settings);
    env.push(("CCP__PROXY__ANTHROPIC_BASE_URL".into(), upstream.into()));
    env.push(("CCP__PROXY__LISTEN".into(), format!("127.0.0.1:{port}")));
    env.push(("CCP__PROXY__SPOOL_DIR".into(), spool.display().to_string()));
    env.push(("CCP__PROXY__WORKERS".into(), "1".into()));
    env
}

async fn post(url: &str, key: &str, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/ak/{key}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .body(body.to_owned());
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.send().await.unwrap()
}

async fn wait_accepted(url: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = post(url, key, r#"{"model":"m","max_tokens":1,"messages":[]}"#, &[]).await;
        let status = resp.status();
        // Read to its end: the request is over (and its event emitted) when this returns.
        let _ = resp.bytes().await;
        if status != 401 {
            break;
        }
        assert!(Instant::now() < deadline, "key not accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A proxy (one worker) on the shared NATS in front of a fake Anthropic, ready, with one user's
/// key it has applied.
struct Running {
    log: Log,
    user_id: ccp_schemas::ids::UserId,
    key: String,
    url: String,
    spool: PathBuf,
    proxy: Service,
    _fake: FakeAnthropic,
}

async fn running(label: &str, user: &str) -> Running {
    let settings = test_settings(label);
    let fake = FakeAnthropic::start().unwrap();
    let log = Log::new(&settings).await;
    let (user_id, _, key) = log.user_with_key(user).await;
    let key = key.expose().to_owned();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = std::env::temp_dir().join(format!("ccp-{label}-{}", ulid::Ulid::new()));
    let proxy = Service::spawn(Path::new(BIN), &[], &proxy_env(&settings, &fake.url(), port, &spool)).unwrap();
    wait_http_ok(&format!("{url}/ready"), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_text()));
    wait_accepted(&url, &key).await;
    Running { log, user_id, key, url, spool, proxy, _fake: fake }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn events_survive_a_nats_outage_and_a_restart_and_are_sent_once_in_order() {
    let tmp = std::env::temp_dir().join(format!("ccp-outage-{}", ulid::Ulid::new()));
    let nats = Nats::start(free_port(), &tmp.join("nats"));
    let mut settings = test_settings("outage");
    settings.nats.url = format!("nats://127.0.0.1:{}", nats.port);
    let fake = FakeAnthropic::start().unwrap();
    let log = Log::new(&settings).await;
    let (_, _, key) = log.user_with_key("olga").await;
    let key = key.expose().to_owned();
    let spool = tmp.join("spool");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = proxy_env(&settings, &fake.url(), port, &spool);
    let mut proxy = Service::spawn(Path::new(BIN), &[], &env).unwrap();
    wait_http_ok(&format!("{url}/ready"), Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_text()));
    wait_accepted(&url, &key).await;

    // NATS goes away: requests are still served, their events go to the spool.
    let (nats_port, store) = nats.stop();
    let mut ids = Vec::new();
    for i in 0..20 {
        let resp = post(
            &url,
            &key,
            &format!(r#"{{"model":"m","max_tokens":5,"stream":true,"messages":[{{"role":"user","content":"n{i}"}}]}}"#),
            &[],
        )
        .await;
        assert_eq!(resp.status(), 200, "request {i} during the outage");
        ids.push(resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned());
        resp.bytes().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
        if metric(&text, "ccp_proxy_spool_depth_events") >= 20.0 {
            break;
        }
        assert!(Instant::now() < deadline, "events were not spooled:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The proxy restarts while NATS is still down: the spool is on disk.
    let status = proxy.terminate(Duration::from_secs(20)).expect("proxy did not stop");
    assert!(status.success(), "{}", proxy.log_text());
    let logs = proxy.log_text();
    assert!(logs.contains("spool"), "the outage is logged:\n{logs}");
    assert!(!logs.contains(&key[3..]), "the access key appears in the proxy's log");
    drop(proxy);

    let _nats = Nats::start(nats_port, &store);
    let proxy = Service::spawn(Path::new(BIN), &[], &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let requests = loop {
        let got: Vec<String> = log.requests().await.into_iter().map(|r| r.request_id.to_string()).collect();
        if ids.iter().all(|id| got.contains(id)) {
            break got;
        }
        assert!(Instant::now() < deadline, "spooled events not replayed\n{}", proxy.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let replayed: Vec<&String> = requests.iter().filter(|r| ids.contains(r)).collect();
    assert_eq!(replayed.len(), ids.len(), "each spooled event exactly once");
    assert_eq!(replayed, ids.iter().collect::<Vec<_>>(), "replayed in order");
    std::fs::remove_dir_all(tmp).ok();
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish() {
    let Running { log, user_id, key, url, spool, mut proxy, _fake } = running("drain", "pia").await;

    let body = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"a b c d e f g h"}]}"#;
    let resp = post(&url, &key, body, &[("x-fake-pace-ms", "150")]).await;
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned();
    let mut stream = resp.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();

    let pid = proxy.child.id();
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        reqwest::Client::new().get(format!("{url}/health")).send().await.is_err(),
        "new connections are refused once stopping"
    );
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(text.contains("event: message_stop"), "stream was cut: {text}");
    let status = proxy.terminate(Duration::from_secs(20)).expect("proxy did not exit");
    assert!(status.success(), "{}", proxy.log_text());
    let event = log.wait_request(&rid, Duration::from_secs(5)).await;
    assert!(!event.incomplete, "the drained stream is complete");
    // The user has no budget, so the replica puts its cost into the shared tally with the
    // second's others — and, stopping, before it exits.
    assert!(event.cost_usd.is_some_and(|c| c > rust_decimal::Decimal::ZERO));
    let kv = log.js.get_key_value(format!("{}_spend", log.ns.prefix())).await.expect("the spend bucket exists");
    let mut stored = 0u64;
    let mut keys = kv.keys().await.unwrap();
    while let Some(k) = keys.next().await {
        let k = k.unwrap();
        if k.starts_with(&user_id.to_string()) {
            let value = kv.get(&k).await.unwrap().unwrap();
            stored += std::str::from_utf8(&value).unwrap().parse::<u64>().unwrap();
        }
    }
    assert_eq!(
        stored,
        event.cost_usd.map_or(0, ccp_schemas::pricing::to_nanos),
        "the drained request's cost is in the shared tally"
    );
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    std::fs::remove_dir_all(spool).ok();
}

/// Events published live go out in windows of a few per round trip: with eight clients sending
/// one request after another, batches span several windows, and every event still reaches the
/// stream exactly once, each client's in the order its requests were answered.
#[tokio::test]
async fn live_events_are_published_once_and_in_order_across_windows() {
    let Running { log, key, url, spool, proxy, _fake, .. } = running("windows", "wim").await;

    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..40 {
                    let body = format!(
                        r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"c{c} n{i}"}}]}}"#
                    );
                    let resp = post(&url, &key, &body, &[]).await;
                    assert_eq!(resp.status(), 200, "client {c}, request {i}");
                    ids.push(resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned());
                    resp.bytes().await.unwrap();
                }
                ids
            })
        })
        .collect();
    let mut sent = Vec::new();
    for client in clients {
        sent.push(client.await.unwrap());
    }
    let all: std::collections::HashSet<&String> = sent.iter().flatten().collect();
    assert_eq!(all.len(), 320);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored: Vec<String> = loop {
        let got: Vec<String> = log.requests().await.into_iter().map(|r| r.request_id.to_string()).collect();
        if all.iter().all(|id| got.contains(id)) {
            break got.into_iter().filter(|id| all.contains(id)).collect();
        }
        assert!(Instant::now() < deadline, "events missing from the stream\n{}", proxy.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.len(), 320, "each event exactly once");
    for ids in &sent {
        let order: Vec<&String> = stored.iter().filter(|id| ids.contains(id)).collect();
        assert_eq!(order, ids.iter().collect::<Vec<_>>(), "one client's events in the order they were answered");
    }
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    std::fs::remove_dir_all(spool).ok();
}

/// Messages in the request stream.
async fn stored(log: &Log) -> u64 {
    let mut stream = log.js.get_stream(log.ns.stream(StreamKind::Requests)).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Lets the request stream take `max` messages in all and refuse more (NATS's own "maximum
/// messages exceeded" acknowledgement), or any number.
async fn limit_requests(log: &Log, max: Option<u64>) {
    let mut stream = log.js.get_stream(log.ns.stream(StreamKind::Requests)).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_messages = max.map_or(-1, |m| i64::try_from(m).unwrap());
    config.discard = DiscardPolicy::New;
    log.js.update_stream(&config).await.unwrap();
}

/// Waits until the proxy's metric `name` is `want` (and the stream holds `stored` messages).
async fn wait_metric(url: &str, name: &str, want: f64, log: &Log, want_stored: u64, proxy: &Service) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
        let (got, in_stream) = (metric(&text, name), stored(log).await);
        if (got - want).abs() < f64::EPSILON && in_stream == want_stored {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {got} (want {want}), stream {in_stream} (want {want_stored})\n{}",
            proxy.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NATS refuses events part-way through a batch (here: the request stream is full): those it
/// acknowledged stay stored and the rest are spooled, in order. A replay that NATS again takes
/// only in part consumes the acknowledged part of the spool — sent again by a later retry, after
/// the stream's duplicate window, it would be stored twice. Once NATS takes everything, each
/// event is in the stream once, in the order the requests were answered, each published once.
#[tokio::test]
async fn events_refused_part_way_are_spooled_from_there_and_replayed_once() {
    let Running { log, key, url, spool, proxy, _fake, .. } = running("refused", "rea").await;
    // The readiness requests' events are in once a later request's is: the publisher keeps
    // their order.
    let resp = post(&url, &key, r#"{"model":"m","max_tokens":5,"messages":[]}"#, &[]).await;
    let barrier = resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned();
    resp.bytes().await.unwrap();
    log.wait_request(&barrier, Duration::from_secs(10)).await;
    let before = stored(&log).await;
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    let published_before = metric(&text, "ccp_proxy_events_published_total");
    assert!(published_before >= 0.0, "{text}");

    // Room for three more: eight requests answered one after another, their events in one or
    // a few live batches.
    limit_requests(&log, Some(before + 3)).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let body = format!(r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"n{i}"}}]}}"#);
        let resp = post(&url, &key, &body, &[]).await;
        assert_eq!(resp.status(), 200, "request {i}");
        ids.push(resp.headers()["x-ccp-request-id"].to_str().unwrap().to_owned());
        resp.bytes().await.unwrap();
    }
    wait_metric(&url, "ccp_proxy_spool_depth_events", 5.0, &log, before + 3, &proxy).await;

    // Room for two more: the replay stores two of the five and keeps three.
    limit_requests(&log, Some(before + 5)).await;
    wait_metric(&url, "ccp_proxy_spool_depth_events", 3.0, &log, before + 5, &proxy).await;
    // Retried twice more (every 500 ms), still refused from the same event on.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    wait_metric(&url, "ccp_proxy_spool_depth_events", 3.0, &log, before + 5, &proxy).await;

    limit_requests(&log, None).await;
    wait_metric(&url, "ccp_proxy_spool_depth_events", 0.0, &log, before + 8, &proxy).await;
    let in_stream: Vec<String> =
        log.requests().await.into_iter().map(|r| r.request_id.to_string()).filter(|id| ids.contains(id)).collect();
    assert_eq!(in_stream, ids, "each event once, in the order the requests were answered");
    wait_metric(&url, "ccp_proxy_events_published_total", published_before + 8.0, &log, before + 8, &proxy).await;
    ccp_tests::delete_namespace(&log.js, &log.ns).await;
    std::fs::remove_dir_all(spool).ok();
}
