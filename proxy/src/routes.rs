//! The service's own endpoints: `/health`, `/ready`, `/metrics` (on the proxy's port, or only on
//! the ops listener when `ops.listen` is set), and the Anthropic-shaped 404.

use actix_web::{web, HttpResponse};
use ccp_schemas::ids::RequestId;

use crate::error::ProxyError;
use crate::forward::Shared;

/// `GET /health`: the process is alive.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(ccp_runtime::telemetry::health_body("ccp-proxy", env!("CARGO_PKG_VERSION")))
}

/// Whether the proxy is ready (the access-key table and the month's spend are loaded), and the
/// body of `/ready`.
pub fn readiness(shared: &Shared) -> (bool, serde_json::Value) {
    let ready = shared.keys.is_ready() && shared.spend.is_ready();
    let body = serde_json::json!({
        "ready": ready,
        "budgets_loaded": shared.spend.is_ready(),
        "spend_tally_live": shared.spend.tally_status().0,
        "access_keys": shared.keys.key_count(),
        "admin_stream_seq": shared.keys.applied_seq(),
    });
    (ready, body)
}

/// `GET /ready`: see [`readiness`].
pub async fn ready(shared: web::Data<Shared>) -> HttpResponse {
    match readiness(&shared) {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// The Prometheus text of `/metrics`, with the gauges read from the tables now.
pub fn render_metrics(shared: &Shared) -> String {
    let m = &shared.recorder.metrics;
    m.keys_loaded.set(i64::try_from(shared.keys.key_count()).unwrap_or(i64::MAX));
    let (live, unstored) = shared.spend.tally_status();
    m.spend_tally_live.set(i64::from(live));
    m.spend_unstored.set(i64::try_from(unstored).unwrap_or(i64::MAX));
    m.render()
}

/// `GET /metrics` on the proxy's port (only while `ops.listen` is unset): see [`render_metrics`].
pub async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().content_type(ccp_runtime::metrics::CONTENT_TYPE).body(render_metrics(&shared))
}

/// Any other path.
pub async fn not_found() -> HttpResponse {
    ProxyError::not_found(
        "Unknown ClaudeCodeProxy path. Set ANTHROPIC_BASE_URL to https://<proxy>/ak/<your access key> \
         (Claude Code appends /v1/messages).",
    )
    .response(RequestId::new())
}
