//! Builds the projector from settings and runs it until SIGTERM/SIGINT.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use ccp_schemas::config::Settings;
use ccp_schemas::migrations;
use ccp_schemas::streams::{self, StreamPolicy};

use crate::analytics::{RequestsProjection, Stats};
use ccp_schemas::telemetry;

/// Readiness shared with the HTTP handlers.
#[derive(Clone, Default)]
struct Readiness(Arc<AtomicBool>);

/// A prepared projector.
pub struct Application {
    server: Server,
    port: u16,
    stop: Arc<AtomicBool>,
    worker: tokio::task::JoinHandle<()>,
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
        let clickhouse = migrations::server_client(&settings.clickhouse).with_database(&settings.clickhouse.database);
        let mut requests = RequestsProjection::open(
            &js,
            &ns,
            clickhouse,
            settings.projector.batch_size,
            Duration::from_millis(settings.projector.flush_interval_ms.max(10)),
        )
        .await?;
        let stats = requests.stats.clone();
        ready.0.store(true, Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(100);
                while !stop.load(Ordering::Acquire) {
                    match requests.process_next_batch().await {
                        Ok(_) => backoff = Duration::from_millis(100),
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "requests projection batch failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            })
        };

        let listener = TcpListener::bind(settings.projector.listen)
            .with_context(|| format!("cannot listen on {}", settings.projector.listen))?;
        let port = listener.local_addr()?.port();
        let state = ready.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::Data::new(stats.clone()))
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready_handler))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        tracing::info!(addr = %settings.projector.listen, port, "projector listening");
        Ok(Self { server, port, stop, worker })
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
        self.stop.store(true, Ordering::Release);
        if tokio::time::timeout(Duration::from_secs(10), self.worker).await.is_err() {
            tracing::warn!("the projection did not finish its batch in 10 s");
        }
        tracing::info!("projector stopped");
        Ok(())
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(telemetry::health_body("ccp-projector", env!("CARGO_PKG_VERSION")))
}

async fn metrics(stats: web::Data<Arc<Stats>>) -> HttpResponse {
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let body = format!(
        "# HELP ccp_projector_events_projected_total Rows written to ClickHouse.\n\
         # TYPE ccp_projector_events_projected_total counter\n\
         ccp_projector_events_projected_total{{projection=\"requests\"}} {}\n\
         # HELP ccp_projector_events_skipped_total Redelivered events already in ClickHouse.\n\
         # TYPE ccp_projector_events_skipped_total counter\n\
         ccp_projector_events_skipped_total{{projection=\"requests\"}} {}\n\
         # HELP ccp_projector_events_terminated_total Undecodable events terminated.\n\
         # TYPE ccp_projector_events_terminated_total counter\n\
         ccp_projector_events_terminated_total{{projection=\"requests\"}} {}\n\
         # HELP ccp_projector_last_sequence Last stream sequence written.\n\
         # TYPE ccp_projector_last_sequence gauge\n\
         ccp_projector_last_sequence{{projection=\"requests\"}} {}\n\
         # HELP ccp_projector_lag_events Events in the stream not yet projected.\n\
         # TYPE ccp_projector_lag_events gauge\n\
         ccp_projector_lag_events{{projection=\"requests\"}} {}\n",
        g(&stats.projected),
        g(&stats.skipped),
        g(&stats.terminated),
        g(&stats.last_seq),
        g(&stats.lag),
    );
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}

async fn ready_handler(state: web::Data<Readiness>) -> HttpResponse {
    if state.0.load(Ordering::Acquire) {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "starting" }))
    }
}
