//! Builds the admin API from settings and runs it until SIGTERM/SIGINT.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use ccp_schemas::config::Settings;
use ccp_schemas::streams::{self, StreamPolicy};
use ccp_schemas::telemetry;

/// A bound, not yet running admin API.
pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Connects to NATS, ensures the streams and binds `admin.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let ns = settings.nats.namespace()?;
        let client = telemetry::connect_nats(&settings.nats, "ccp-admin").await?;
        let js = async_nats::jetstream::new(client);
        streams::ensure(&js, &ns, &StreamPolicy::from(&settings.nats)).await?;

        let listener = TcpListener::bind(settings.admin.listen)
            .with_context(|| format!("cannot listen on {}", settings.admin.listen))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || App::new().route("/health", web::get().to(health)))
            .workers(2)
            .disable_signals()
            .listen(listener)?
            .run();
        tracing::info!(addr = %settings.admin.listen, port, "admin API listening");
        Ok(Self { server, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let stopper = actix_web::rt::spawn(async move {
            telemetry::shutdown_signal().await;
            handle.stop(true).await;
        });
        self.server.await?;
        stopper.abort();
        tracing::info!("admin API stopped");
        Ok(())
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(telemetry::health_body("ccp-admin", env!("CARGO_PKG_VERSION")))
}
