//! Builds the HTTP server from settings and runs it until SIGTERM/SIGINT.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use ccp_schemas::config::Settings;

use crate::routes;

/// A bound, not yet running proxy.
pub struct Application {
    server: Server,
    port: u16,
}

impl Application {
    /// Binds `proxy.listen` (port 0 picks a free port) and prepares the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.proxy.listen)
            .with_context(|| format!("cannot listen on {}", settings.proxy.listen))?;
        let port = listener.local_addr()?.port();
        let workers = match settings.proxy.workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let server =
            HttpServer::new(move || App::new().route("/health", web::get().to(routes::health)))
                .workers(workers)
                .disable_signals()
                .shutdown_timeout(settings.proxy.shutdown_drain_secs)
                .listen(listener)?
                .run();
        tracing::info!(addr = %settings.proxy.listen, port, "proxy listening");
        Ok(Self { server, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT, then stops accepting and lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let stopper = actix_web::rt::spawn(async move {
            ccp_schemas::telemetry::shutdown_signal().await;
            handle.stop(true).await;
        });
        self.server.await?;
        stopper.abort();
        tracing::info!("proxy stopped");
        Ok(())
    }
}
