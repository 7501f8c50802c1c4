//! The README's configuration reference lists exactly the keys the code accepts, and the example
//! config file loads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

use ccp_runtime::config::Settings;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)).unwrap()
}

/// Every `section.key` of the settings, including optional keys (set here so they serialize).
fn code_keys() -> BTreeSet<String> {
    let mut s = Settings::default();
    s.proxy.bedrock_endpoint_url = Some(String::new());
    s.nats.user = Some(String::new());
    s.nats.nkey_seed_file = Some(Default::default());
    s.nats.creds_file = Some(Default::default());
    s.nats.ca_file = Some(Default::default());
    s.nats.client_cert_file = Some(Default::default());
    s.nats.client_key_file = Some(Default::default());
    s.clickhouse.ca_file = Some(Default::default());
    s.clickhouse.client_cert_file = Some(Default::default());
    s.clickhouse.client_key_file = Some(Default::default());
    s.clickhouse.cluster = Some(String::new());
    s.secrets.kms_key_id = Some(String::new());
    s.secrets.kms_endpoint_url = Some(String::new());
    s.ops.listen = Some(([0, 0, 0, 0], 9090).into());
    s.compat.emulate_contract = Some(1);
    s.egress.proxy_url = Some(Default::default());
    s.egress.no_proxy = Some(String::new());
    s.egress.ca_file = Some(Default::default());
    let value = toml::Value::try_from(&s).unwrap();
    let mut keys = BTreeSet::new();
    for (section, table) in value.as_table().unwrap() {
        leaf_keys(section, table, &mut keys);
    }
    keys
}

/// `prefix.key` of every value under `table`, descending into sections within sections
/// (`admin.sso.roles.admin`).
fn leaf_keys(prefix: &str, table: &toml::Value, keys: &mut BTreeSet<String>) {
    for (key, value) in table.as_table().unwrap() {
        let path = format!("{prefix}.{key}");
        // A map the user fills (e.g. `bedrock.family_fallback`) is empty by default: one key.
        if value.as_table().is_some_and(|t| !t.is_empty()) {
            leaf_keys(&path, value, keys);
        } else {
            keys.insert(path);
        }
    }
}

#[test]
fn readme_reference_table_matches_the_settings() {
    let readme = repo_file("README.md");
    let section = readme.split("## Configuration reference").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect();
    let code = code_keys();
    let missing: Vec<_> = code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&code).collect();
    assert!(missing.is_empty(), "README lacks {missing:?}");
    assert!(stale.is_empty(), "README documents keys that do not exist: {stale:?}");
}

#[test]
fn example_config_loads_and_covers_every_section() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ccp.example.toml");
    Settings::load_from(Some(&path), Vec::new()).unwrap();
    let text = repo_file("deploy/ccp.example.toml");
    for section in ["[log]", "[nats]", "[clickhouse]", "[secrets]", "[proxy]", "[admin]", "[projector]", "[ops]"] {
        assert!(text.contains(section), "example lacks {section}");
    }
}

/// Every environment variable `scripts/run` reads (`${CCP…:-…}`) is in README's operator table.
#[test]
fn every_variable_scripts_run_reads_is_in_the_operator_table() {
    let script = repo_file("scripts/run");
    let readme = repo_file("README.md");
    let table = readme.split("### Operator interface").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut read = BTreeSet::new();
    for part in script.split("${").skip(1) {
        let name: String =
            part.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        // The script's own variables are lower-level names (ADMIN_NOTE, …); its inputs are CCP_* and cargo's.
        let input = name.starts_with("CCP") || name == "CARGO_TARGET_DIR";
        if part[name.len()..].starts_with(":-") && input {
            read.insert(name);
        }
    }
    assert!(read.contains("CCP_FAKE_ANTHROPIC_LISTEN"), "{read:?}");
    let missing: Vec<_> = read.iter().filter(|name| !table.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "README's operator table lacks {missing:?}");
}
