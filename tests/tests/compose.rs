//! `docker-compose.yml` (no Docker engine runs here, so it is checked by parsing): pinned
//! official images, JetStream on with a persistent volume, the three services built from the
//! one Dockerfile (which also ships `ccpctl`), healthchecks everywhere (`/ready` for the
//! services), and only settings keys that exist.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use ccp_runtime::config::Settings;
use serde_yaml::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn compose() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap()).unwrap()
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"].get(name).unwrap_or_else(|| panic!("service {name} missing"))
}

#[test]
fn images_are_pinned_official_images() {
    let c = compose();
    for (name, prefix) in [("nats", "nats:"), ("clickhouse", "clickhouse/clickhouse-server:")] {
        let image = service(&c, name)["image"].as_str().unwrap();
        assert!(image.starts_with(prefix), "{name}: {image}");
        let tag = image.rsplit(':').next().unwrap();
        assert!(tag.chars().next().unwrap().is_ascii_digit(), "{name} is not pinned to a version: {image}");
        assert!(!image.contains("latest"));
    }
    let nats_tag = service(&c, "nats")["image"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    let mut parts = nats_tag.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(major > 2 || (major == 2 && minor >= 10), "NATS must be >= 2.10, got {nats_tag}");
}

#[test]
fn nats_runs_jetstream_on_a_volume() {
    let c = compose();
    let nats = service(&c, "nats");
    let command: Vec<&str> = nats["command"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(command.contains(&"-js"), "{command:?}");
    let volumes: Vec<&str> = nats["volumes"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(volumes.iter().any(|v| v.starts_with("nats-data:")));
    assert!(c["volumes"].get("nats-data").is_some() && c["volumes"].get("clickhouse-data").is_some());
}

#[test]
fn the_three_services_build_from_the_one_dockerfile_with_healthchecks() {
    let c = compose();
    for name in ["nats", "clickhouse", "projector", "admin", "proxy"] {
        let test = &service(&c, name)["healthcheck"]["test"];
        assert!(test.is_sequence() || test.is_string(), "{name} has no healthcheck");
    }
    for (name, binary) in [("projector", "ccp-projector"), ("admin", "ccp-admin"), ("proxy", "ccp-proxy")] {
        let s = service(&c, name);
        let build = &s["build"];
        let context = build.as_str().or_else(|| build["context"].as_str()).unwrap();
        assert_eq!(context, ".", "{name}");
        if let Some(dockerfile) = build["dockerfile"].as_str() {
            assert_eq!(dockerfile, "Dockerfile");
        }
        let command: Vec<&str> = match &s["command"] {
            Value::Sequence(v) => v.iter().filter_map(Value::as_str).collect(),
            Value::String(v) => v.split_whitespace().collect(),
            _ => Vec::new(),
        };
        assert_eq!(command.first().copied(), Some(binary), "{name}");
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.matches("FROM ").count() >= 2, "not a multi-stage build");
    for binary in ["ccp-proxy", "ccp-projector", "ccp-admin", "ccpctl"] {
        assert!(dockerfile.contains(&format!("/out/{binary}")), "Dockerfile does not ship {binary}");
    }
    assert!(dockerfile.contains("ARG CCP_GIT_COMMIT"), "the image's --version names no commit");
}

/// A service is healthy when it is ready for traffic (the proxy's key table and month of spend
/// loaded, the admin API's read model loaded), not merely alive.
#[test]
fn the_services_healthchecks_probe_ready() {
    let c = compose();
    for name in ["projector", "admin", "proxy"] {
        let test = &service(&c, name)["healthcheck"]["test"];
        let words: Vec<&str> = match test {
            Value::Sequence(v) => v.iter().filter_map(Value::as_str).collect(),
            Value::String(v) => v.split_whitespace().collect(),
            _ => Vec::new(),
        };
        assert!(words.iter().any(|w| w.starts_with("http://127.0.0.1:") && w.ends_with("/ready")), "{name}: {words:?}");
    }
}

#[test]
fn every_ccp_setting_in_the_compose_file_exists() {
    let c = compose();
    let mut env = Vec::new();
    for (_, s) in c["services"].as_mapping().unwrap() {
        if let Some(map) = s["environment"].as_mapping() {
            for (k, _) in map {
                let k = k.as_str().unwrap();
                if k.starts_with("CCP__") {
                    env.push((k.to_owned(), String::new()));
                }
            }
        }
    }
    assert!(env.len() > 5, "expected the services' CCP__ settings, found {env:?}");
    // Values are placeholders; only the key names are checked (a wrong type would also fail,
    // so give each a value that parses for any type it may have).
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, _)| {
            let v = if k.ends_with("LISTEN") {
                "0.0.0.0:1".into()
            } else if k == "CCP__NATS__URL" {
                "nats://nats:4222".into()
            } else if k.ends_with("_URL") {
                "http://host:1".into()
            } else if k.ends_with("FORMAT") {
                "json".into()
            } else {
                "1".into()
            };
            (k, v)
        })
        .collect();
    if let Err(e) = Settings::load_from(None, env) {
        panic!("docker-compose.yml sets an unknown or mistyped setting: {e}");
    }
}
