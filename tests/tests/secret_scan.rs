//! The secret scan against the real NATS server: a secret planted in a stream message or a KV
//! value is found and located by stream and sequence, a secret planted in a log file by file and
//! line, and the legitimate forms (key hash, display prefix, Bedrock key hint) are not flagged.
//! The binary fails the run on a finding and never prints the secret itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_nats::jetstream::{self, kv, stream};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper};
use ccp_schemas::secrets::SecretString;
use ccp_tests::secret_scan::{scan_nats, Detector, Kind};
use ccp_tests::{nats, unique_name};

const BEDROCK_KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1zZWNyZXQtc2Nhbi0wMDAx";

/// A scratch stream (legitimate message at seq 1, planted access key at seq 2) and a KV bucket
/// holding a planted Bedrock key; returns (prefix, stream, bucket, key).
async fn plant(js: &jetstream::Context) -> (String, String, String, AccessKey) {
    let prefix = unique_name("secretscan");
    let stream_name = format!("{}_SCRATCH", prefix.to_ascii_uppercase());
    js.create_stream(stream::Config {
        name: stream_name.clone(),
        subjects: vec![format!("{prefix}.scratch.>")],
        ..Default::default()
    })
    .await
    .unwrap();
    let key = AccessKey::generate().unwrap();
    let pepper = KeyPepper::new(&SecretString::new("p".repeat(32))).unwrap();
    let legit = serde_json::json!({
        "key_hash": key.hash(&pepper).to_hex(),
        "key_prefix": key.display_prefix().as_str(),
        "masked": key.display_prefix().masked(),
        "hint": "ABSK…0001",
    });
    for payload in [legit.to_string(), format!("{{\"oops\":\"{}\"}}", key.expose())] {
        js.publish(format!("{prefix}.scratch.x"), payload.into()).await.unwrap().await.unwrap();
    }
    let bucket = format!("{prefix}_scratch");
    let store = js.create_key_value(kv::Config { bucket: bucket.clone(), ..Default::default() }).await.unwrap();
    store.put("k1", format!("Bearer {BEDROCK_KEY}").into()).await.unwrap();
    (prefix, stream_name, bucket, key)
}

#[tokio::test]
async fn planted_secrets_are_found_in_streams_kv_and_logs_and_shown_redacted() {
    let js = jetstream::new(nats().await);
    let (prefix, stream_name, bucket, key) = plant(&js).await;

    let (findings, coverage) = scan_nats(&Detector::default(), &js, &prefix, 4).await.unwrap();
    assert_eq!(coverage.streams, 2, "{coverage:?}");
    assert_eq!(coverage.messages, 3, "{coverage:?}");
    let kinds: Vec<Kind> = findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds.len(), 2, "{findings:?}");
    assert!(kinds.contains(&Kind::AccessKey) && kinds.contains(&Kind::BedrockApiKey), "{findings:?}");
    let access = findings.iter().find(|f| f.kind == Kind::AccessKey).unwrap();
    assert!(access.location.starts_with(&format!("stream {stream_name} seq 2 ")), "{}", access.location);
    assert_eq!(access.redacted, format!("{}…", key.display_prefix().as_str()));
    let bedrock = findings.iter().find(|f| f.kind == Kind::BedrockApiKey).unwrap();
    assert!(bedrock.location.starts_with(&format!("stream KV_{bucket} seq 1 ")), "{}", bedrock.location);
    for f in &findings {
        let shown = f.to_string();
        assert!(!shown.contains(&key.expose()[9..]) && !shown.contains(&BEDROCK_KEY[4..]), "{shown}");
    }

    // The binary: a planted log line and the planted stream fail the run, shown redacted.
    let dir = std::env::temp_dir().join(unique_name("scanlogs"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("ccp-proxy.log");
    std::fs::write(&log, format!("INFO started\nWARN refused key {}\n", key.expose())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccp-secret-scan"))
        .args(["--no-default-logs", "--logs", dir.to_str().unwrap(), "--nats", &ccp_tests::nats_url()])
        .args(["--streams", &prefix])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}:2: AccessKey", log.display())), "{stderr}");
    assert!(stderr.contains(&format!("stream {stream_name} seq 2 ")), "{stderr}");
    assert!(stderr.contains("3 plaintext secrets found"), "{stderr}");
    assert!(!stderr.contains(&key.expose()[9..]) && !stderr.contains(&BEDROCK_KEY[4..]), "{stderr}");

    // Clean: nothing planted, exit 0.
    std::fs::write(&log, "INFO nothing to see\n").unwrap();
    js.delete_stream(&stream_name).await.unwrap();
    js.delete_key_value(&bucket).await.unwrap();
    let clean = std::process::Command::new(env!("CARGO_BIN_EXE_ccp-secret-scan"))
        .args(["--no-default-logs", "--logs", dir.to_str().unwrap(), "--nats", &ccp_tests::nats_url()])
        .args(["--streams", &prefix])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", String::from_utf8_lossy(&clean.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
