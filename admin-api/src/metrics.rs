//! The admin API's own metrics, through `prometheus-client`: requests by method, route pattern
//! (`/v1/users/{id}`, never a path with ids in it) and status; commands answered 409 Conflict
//! (a concurrent writer, a stale `If-Match`, or a state the command conflicts with) by route;
//! `ccp_admin_build_info` and the `process_*` metrics. `startup.rs` adds the sign-in attempts and
//! the stream followers' unapplied events.

use std::sync::LazyLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of an answered request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, `OPTIONS` or `other`.
    method: &'static str,
    /// The route pattern that matched, or `unmatched`.
    route: String,
    /// The HTTP status answered.
    status: u16,
}

/// Labels of a command conflict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    /// The route pattern of the command.
    route: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    conflicts: Family<RouteLabels, Counter>,
}

/// The process's counters (one admin API per process; the middleware has no app data to reach).
static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut root = ccp_runtime::metrics::registry("ccp_admin");
    let registry = root.sub_registry_with_prefix("ccp_admin");
    let requests = Family::<RequestLabels, Counter>::default();
    let conflicts = Family::<RouteLabels, Counter>::default();
    registry.register("requests", "Requests answered, by method, route pattern and status", requests.clone());
    registry.register(
        "command_conflicts",
        "Commands answered 409 Conflict (a concurrent writer, a stale If-Match, or a conflicting state), by route pattern",
        conflicts.clone(),
    );
    Metrics { registry: root, requests, conflicts }
});

fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method.as_str()).unwrap_or("other")
}

/// Counts one answered request.
fn count(method: &Method, route: Option<String>, status: u16) {
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let command = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if status == 409 && command {
        METRICS.conflicts.get_or_create(&RouteLabels { route: route.clone() }).inc();
    }
    METRICS.requests.get_or_create(&RequestLabels { method: method_label(method), route, status }).inc();
}

/// Middleware counting every answer (wrap it outermost, so it sees the status sent).
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let route = req.match_pattern();
    let answer = next.call(req).await;
    let status = match &answer {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    count(&method, route, status);
    answer
}

/// The text of `/metrics`: these counters, then what `extra` appends, then `# EOF`.
pub fn render(extra: impl FnOnce(&mut String)) -> String {
    ccp_runtime::metrics::render(&METRICS.registry, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_pattern_and_status_and_command_conflicts_by_route() {
        count(&Method::POST, Some("/v1/test-only/{id}/rotate".into()), 409);
        count(&Method::GET, Some("/v1/test-only/{id}".into()), 409);
        count(&Method::from_bytes(b"BREW").unwrap(), None, 404);
        let text = render(|out| out.push_str("# extra\n"));
        for line in [
            "ccp_admin_requests_total{method=\"POST\",route=\"/v1/test-only/{id}/rotate\",status=\"409\"} 1\n",
            "ccp_admin_requests_total{method=\"GET\",route=\"/v1/test-only/{id}\",status=\"409\"} 1\n",
            "ccp_admin_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 1\n",
            "ccp_admin_command_conflicts_total{route=\"/v1/test-only/{id}/rotate\"} 1\n",
            "ccp_admin_build_info{version=\"",
            "\nprocess_cpu_seconds_total ",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        // A read answered 409 is not a command conflict.
        assert!(!text.contains("command_conflicts_total{route=\"/v1/test-only/{id}\"}"), "{text}");
        assert!(text.ends_with("# extra\n# EOF\n"), "{text}");
    }
}
