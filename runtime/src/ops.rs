//! The ops listener (`ops.listen`): `/health`, `/ready` and `/metrics` of a service on an address
//! of their own, for the cluster's probes and scrapers, apart from the traffic the service
//! serves. It has its own worker, so a probe is answered while the service's workers are busy,
//! and it serves until the process ends (also while the service drains at shutdown).

use std::net::{SocketAddr, TcpListener};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;

use crate::config::OpsSettings;
use crate::telemetry;

/// What a service answers on its ops listener.
pub struct Probes {
    /// The service's name in `/health` (`ccp-proxy`, …).
    pub service: &'static str,
    /// Whether the service is ready for traffic, and the JSON body of `/ready` (200 or 503).
    pub ready: Box<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>,
    /// The Prometheus text of `/metrics`.
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
}

impl Probes {
    /// The probes of `service`: `ready` for `/ready`, `metrics` for `/metrics`.
    pub fn new(
        service: &'static str,
        ready: impl Fn() -> (bool, serde_json::Value) + Send + Sync + 'static,
        metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        Self { service, ready: Box::new(ready), metrics: Box::new(metrics) }
    }
}

/// Binds `ops.listen` and serves `probes` there in the background; `None` when it is unset.
/// Returns the bound address (port 0 picks a free one).
pub fn serve(settings: &OpsSettings, probes: Probes) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = settings.listen else { return Ok(None) };
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on ops.listen {addr}"))?;
    let bound = listener.local_addr()?;
    let service = probes.service;
    let probes = web::Data::new(probes);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(probes.clone())
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "the ops listener stopped");
        }
    });
    tracing::info!(addr = %bound, service, "ops listener: /health, /ready, /metrics");
    Ok(Some(bound))
}

async fn health(probes: web::Data<Probes>) -> HttpResponse {
    HttpResponse::Ok().json(telemetry::health_body(probes.service, telemetry::VERSION))
}

async fn ready(probes: web::Data<Probes>) -> HttpResponse {
    match (probes.ready)() {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

async fn metrics(probes: web::Data<Probes>) -> HttpResponse {
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body((probes.metrics)())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: ops\r\nconnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
        (status, answer.split_once("\r\n\r\n").unwrap().1.to_owned())
    }

    #[actix_web::test]
    async fn serves_health_ready_and_metrics_only_when_configured() {
        let probes = || {
            let ready = Arc::new(AtomicBool::new(false));
            let flag = ready.clone();
            let probes = Probes {
                service: "ccp-test",
                ready: Box::new(move || (flag.load(Ordering::Relaxed), serde_json::json!({ "ready": true }))),
                metrics: Box::new(|| "ccp_test_up 1\n".to_owned()),
            };
            (ready, probes)
        };
        assert_eq!(serve(&OpsSettings::default(), probes().1).unwrap(), None);
        let (ready, probes) = probes();
        let settings = OpsSettings { listen: Some(([127, 0, 0, 1], 0).into()) };
        let addr = serve(&settings, probes).unwrap().unwrap();
        let (status, body) = get(addr, "/health").await;
        assert_eq!(status, 200);
        assert!(body.contains("\"service\":\"ccp-test\"") && body.contains("\"commit\""), "{body}");
        assert_eq!(get(addr, "/ready").await.0, 503);
        ready.store(true, Ordering::Relaxed);
        assert_eq!(get(addr, "/ready").await.0, 200);
        assert_eq!(get(addr, "/metrics").await, (200, "ccp_test_up 1\n".to_owned()));
        assert_eq!(get(addr, "/v1/messages").await.0, 404);
        // A second listener on the same address is refused with the setting's name.
        let err = serve(&OpsSettings { listen: Some(addr) }, probes_for_error()).unwrap_err();
        assert!(format!("{err:#}").contains("ops.listen"), "{err:#}");
    }

    fn probes_for_error() -> Probes {
        Probes {
            service: "ccp-test",
            ready: Box::new(|| (true, serde_json::Value::Null)),
            metrics: Box::new(String::new),
        }
    }
}
