#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Schemathesis (property-based API testing from the OpenAPI document) against a real
//! `ccp-admin`: generated valid and invalid requests for every operation; no server error, and
//! every answer conforms to the document (status codes, content types, headers, schemas); valid
//! requests are accepted and invalid ones rejected. Schemathesis is installed into the clients'
//! venv by `scripts/install-clients.sh` (or set `CCP_TEST_SCHEMATHESIS`); missing, the test fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::AdminApi;

fn schemathesis_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CCP_TEST_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/clients/py/bin/schemathesis");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-clients.sh (or set CCP_TEST_SCHEMATHESIS)",
        path.display()
    );
    path
}

#[tokio::test]
async fn generated_requests_get_no_server_error_and_conforming_answers() {
    let api = AdminApi::start("schemathesis").await;
    ccp_runtime::migrate::migrate(&api.settings.clickhouse).await.unwrap();
    // Some data, so that list and lookup operations have something to answer.
    let user = api.create_user("Schema Tester").await;
    // A developer's access key, for `/v1/self` (authenticated by it, not by the admin token).
    let (_, access_key) = api.issue_key(&user).await;

    // Every operation with every check. Three operations have rules JSON Schema cannot state,
    // so generated requests can be schema-valid yet rightly refused; they run without the
    // "valid data is accepted" check (all other checks stay): a price list must not price one
    // model twice for the same provider and region ("unique by these fields"); usage and audit
    // ranges need `from` < `to`, at most 400 days apart, and a time zone the server knows (also
    // `self_usage`'s); a catalogue entry's aliases must not name another model and its Bedrock
    // targets one per scope, of a Claude model (`put_model`).
    const RELATIONAL: [&str; 5] = ["set_pricing", "usage", "audit", "self_usage", "put_model"];
    // Logging out and signing out everywhere would end the session the run uses.
    let mut all = vec!["--exclude-path", "/v1/auth/logout", "--exclude-path", "/v1/auth/sign-out-everywhere"];
    let mut relational = vec!["--exclude-checks", "positive_data_acceptance"];
    for id in RELATIONAL {
        all.extend(["--exclude-operation-id", id]);
        relational.extend(["--include-operation-id", id]);
    }
    let runs: [(&[&str], &str); 2] = [(&all, "all"), (&relational, "relational")];
    for (filters, label) in runs {
        let bin = schemathesis_bin();
        let url = api.url.clone();
        let token = api.token.clone();
        let access_key = access_key.clone();
        let filters: Vec<String> = filters.iter().map(|s| (*s).to_owned()).collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(&bin)
                .args(["run", &format!("{url}/openapi.json")])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args(["--header", &format!("x-ccp-access-key: {access_key}")])
                .args(["--checks", "all"])
                .args(["--phases", "examples,coverage,fuzzing"])
                .args(["--max-examples", "25", "--workers", "1", "--seed", "20261125"])
                .args(&filters)
                .env("NO_COLOR", "1")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "schemathesis ({label}) found problems:\n{stdout}\n{stderr}\n--- service log ---\n{}",
            api.service.log_text()
        );
        assert!(stdout.contains("Tested:"), "schemathesis ({label}) did not run:\n{stdout}\n{stderr}");
    }
    assert!(!api.service.log_text().contains("panicked"));
    let db = api.settings.clickhouse.database.clone();
    ccp_tests::clickhouse().query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await.unwrap();
    api.finish().await;
}
