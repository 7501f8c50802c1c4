//! Builds the projector from settings and runs it until SIGTERM/SIGINT.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use ccp_schemas::config::Settings;
use ccp_schemas::streams::{self, StreamPolicy};
use ccp_schemas::telemetry;

/// Readiness shared with the HTTP handlers.
#[derive(Clone, Default)]
struct Readiness(Arc<AtomicBool>);

/// A prepared projector.
pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Applies migrations (if configured), ensures streams and binds `projector.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let ready = Readiness::default();
        if settings.projector.migrate_on_start {
            ccp_schemas::migrations::migrate(&settings.clickhouse).await?;
        }
        let ns = settings.nats.namespace()?;
        let client = telemetry::connect_nats(&settings.nats, "ccp-projector").await?;
        let js = async_nats::jetstream::new(client);
        streams::ensure(&js, &ns, &StreamPolicy::from(&settings.nats)).await?;
        ready.0.store(true, Ordering::Release);

        let listener = TcpListener::bind(settings.projector.listen)
            .with_context(|| format!("cannot listen on {}", settings.projector.listen))?;
        let port = listener.local_addr()?.port();
        let state = ready.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready_handler))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        tracing::info!(addr = %settings.projector.listen, port, "projector listening");
        Ok(Self { server, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM/SIGINT.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let stopper = actix_web::rt::spawn(async move {
            telemetry::shutdown_signal().await;
            handle.stop(true).await;
        });
        self.server.await?;
        stopper.abort();
        tracing::info!("projector stopped");
        Ok(())
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(telemetry::health_body("ccp-projector", env!("CARGO_PKG_VERSION")))
}

async fn ready_handler(state: web::Data<Readiness>) -> HttpResponse {
    if state.0.load(Ordering::Acquire) {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "starting" }))
    }
}
