//! The service's own endpoints: `/health`, `/ready`, `/metrics`, and the Anthropic-shaped 404.

use actix_web::{web, HttpResponse};
use ccp_schemas::ids::RequestId;

use crate::error::ProxyError;
use crate::forward::Shared;

/// `GET /health`: the process is alive.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(ccp_runtime::telemetry::health_body("ccp-proxy", env!("CARGO_PKG_VERSION")))
}

/// `GET /ready`: the access-key table is loaded.
pub async fn ready(shared: web::Data<Shared>) -> HttpResponse {
    let ready = shared.keys.is_ready() && shared.spend.is_ready();
    let body = serde_json::json!({
        "ready": ready,
        "budgets_loaded": shared.spend.is_ready(),
        "spend_tally_live": shared.spend.tally_status().0,
        "access_keys": shared.keys.key_count(),
        "admin_stream_seq": shared.keys.applied_seq(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    let m = &shared.recorder.metrics;
    m.keys_loaded.set(i64::try_from(shared.keys.key_count()).unwrap_or(i64::MAX));
    let (live, unstored) = shared.spend.tally_status();
    m.spend_tally_live.set(i64::from(live));
    m.spend_unstored.set(i64::try_from(unstored).unwrap_or(i64::MAX));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(shared.recorder.metrics.render())
}

/// Any other path.
pub async fn not_found() -> HttpResponse {
    ProxyError::not_found(
        "Unknown ClaudeCodeProxy path. Set ANTHROPIC_BASE_URL to https://<proxy>/ak/<your access key> \
         (Claude Code appends /v1/messages).",
    )
    .response(RequestId::new())
}
