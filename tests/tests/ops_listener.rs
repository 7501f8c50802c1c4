//! The ops listener (`ops.listen`) of the proxy and the projector, run as their binaries:
//! `/health`, `/ready` and `/metrics` (with `build_info` and the process metrics) there; the
//! proxy's public port keeps `/health` and `/ready` for load balancers and no longer serves
//! `/metrics`. (The admin API's: `admin-api/tests/metrics.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ccp_runtime::telemetry::{COMMIT, VERSION};
use ccp_tests::system::workspace_bin;
use ccp_tests::{clickhouse, delete_namespace, free_port, namespace, nats, service_env, test_settings, Service};

const WAIT: Duration = Duration::from_secs(60);

/// GET `url`, waiting (up to [`WAIT`]) until it answers 200; panics with the service's log.
async fn ok(url: &str, service: &Service) -> String {
    ccp_tests::wait_http_ok(url, WAIT).await.unwrap_or_else(|e| panic!("{e}\n{}", service.log_text()))
}

async fn status(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// What every service's ops listener answers.
async fn check_ops(ops: &str, service: &Service, name: &str, prefix: &str) -> String {
    let health = ok(&format!("{ops}/health"), service).await;
    assert!(health.contains(&format!("\"service\":\"{name}\"")), "{health}");
    assert!(health.contains(&format!("\"commit\":\"{COMMIT}\"")), "{health}");
    ok(&format!("{ops}/ready"), service).await;
    let metrics = ok(&format!("{ops}/metrics"), service).await;
    for line in [
        format!("{prefix}_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1\n"),
        "\nprocess_cpu_seconds_total ".to_owned(),
        "\nprocess_resident_memory_bytes ".to_owned(),
        "\nprocess_open_fds ".to_owned(),
        "\nprocess_start_time_seconds ".to_owned(),
        format!("{prefix}_events_not_applied_total{{cause=\"malformed\"}} "),
    ] {
        assert!(metrics.contains(&line), "{line:?} missing from {name}'s\n{metrics}");
    }
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_projector_serve_probes_and_metrics_on_the_ops_listener() {
    let settings = test_settings("opslisten");
    let spool = std::env::temp_dir().join(format!("ccp-ops-spool-{}", ulid::Ulid::new()));

    let (projector_port, projector_ops) = (free_port(), free_port());
    let mut env = service_env(&settings);
    env.push(("CCP__PROJECTOR__LISTEN".into(), format!("127.0.0.1:{projector_port}")));
    env.push(("CCP__OPS__LISTEN".into(), format!("127.0.0.1:{projector_ops}")));
    let projector = Service::spawn(&workspace_bin("ccp-projector", "ccp-projector"), &["serve"], &env).unwrap();
    let ops = format!("http://127.0.0.1:{projector_ops}");
    let metrics = check_ops(&ops, &projector, "ccp-projector", "ccp_projector").await;
    for line in [
        "ccp_projector_events_projected_total{projection=\"requests\"} 0\n",
        "ccp_projector_last_sequence{projection=\"audit\"} ",
        "ccp_projector_alerts_raised_total{rule=\"circuit_open\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from\n{metrics}");
    }
    // Its own listener still serves the same (it is internal already).
    ok(&format!("http://127.0.0.1:{projector_port}/metrics"), &projector).await;

    let (proxy_port, proxy_ops) = (free_port(), free_port());
    let mut env = service_env(&settings);
    env.push(("CCP__PROXY__LISTEN".into(), format!("127.0.0.1:{proxy_port}")));
    env.push(("CCP__PROXY__SPOOL_DIR".into(), spool.display().to_string()));
    env.push(("CCP__PROXY__WORKERS".into(), "1".into()));
    env.push(("CCP__OPS__LISTEN".into(), format!("127.0.0.1:{proxy_ops}")));
    let proxy = Service::spawn(&workspace_bin("ccp-proxy", "ccp-proxy"), &[], &env).unwrap();
    let public = format!("http://127.0.0.1:{proxy_port}");
    let ops = format!("http://127.0.0.1:{proxy_ops}");
    let metrics = check_ops(&ops, &proxy, "ccp-proxy", "ccp_proxy").await;
    assert!(metrics.contains("\nccp_proxy_in_flight_requests 0\n"), "{metrics}");
    // The public port: probes for the load balancer, no metrics.
    ok(&format!("{public}/ready"), &proxy).await;
    ok(&format!("{public}/health"), &proxy).await;
    assert_eq!(status(&format!("{public}/metrics")).await, 404);
    // A refused request on the public port shows on the ops listener.
    assert_eq!(status(&format!("{public}/v1/messages")).await, 401);
    let metrics = ok(&format!("{ops}/metrics"), &proxy).await;
    assert!(metrics.contains("ccp_proxy_requests_total{provider=\"none\",status=\"401\""), "{metrics}");

    drop((proxy, projector));
    std::fs::remove_dir_all(&spool).ok();
    let ns = namespace(&settings);
    delete_namespace(&async_nats::jetstream::new(nats().await), &ns).await;
    clickhouse().query(&format!("DROP DATABASE IF EXISTS {}", settings.clickhouse.database)).execute().await.unwrap();
}
