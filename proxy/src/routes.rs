//! HTTP handlers.

use actix_web::HttpResponse;

/// `GET /health`: the process is alive.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(ccp_schemas::telemetry::health_body(
        "ccp-proxy",
        env!("CARGO_PKG_VERSION"),
    ))
}
