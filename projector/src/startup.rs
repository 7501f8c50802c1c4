//! Builds the projector from settings and runs it until SIGTERM/SIGINT.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use ccp_runtime::config::Settings;
use ccp_runtime::migrate;
use ccp_runtime::streams::{self, StreamPolicy};

use crate::analytics::{Audit, Circuits, Keys, Projection, Requests, Stats, TableSpec, Teams, Users};
use ccp_runtime::telemetry;

/// Readiness shared with the HTTP handlers.
#[derive(Clone, Default)]
struct Readiness(Arc<AtomicBool>);

/// A prepared projector.
pub struct Application {
    server: Server,
    port: u16,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    state_projection: tokio::task::JoinHandle<()>,
    alerts: Option<crate::alerts::Alerts>,
    announcer: ccp_runtime::compat::Announcer,
}

impl Application {
    /// Applies migrations (if configured), ensures streams and binds `projector.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let ready = Readiness::default();
        if settings.projector.migrate_on_start {
            ccp_runtime::migrate::migrate(&settings.clickhouse).await?;
        }
        let ns = settings.nats.namespace()?;
        let client = telemetry::connect_nats(&settings.nats, "ccp-projector").await?;
        let announcer =
            ccp_runtime::compat::Announcer::spawn(client.clone(), ns.clone(), "ccp-projector", settings.nats.replicas);
        let js = async_nats::jetstream::new(client);
        streams::ensure(&js, &ns, &StreamPolicy::from(&settings.nats)).await?;
        let clickhouse = migrate::server_client(&settings.clickhouse)?.with_database(&settings.clickhouse.database);
        let stop = Arc::new(AtomicBool::new(false));
        let batch = settings.projector.batch_size;
        let flush = Duration::from_millis(settings.projector.flush_interval_ms.max(10));
        let mut stats = Vec::new();
        let mut workers = Vec::new();
        for (name, s, w) in [
            spawn::<Requests>(&js, &ns, &clickhouse, batch, flush, &stop).await?,
            spawn::<Audit>(&js, &ns, &clickhouse, batch, flush, &stop).await?,
            spawn::<Circuits>(&js, &ns, &clickhouse, batch, flush, &stop).await?,
            spawn::<Users>(&js, &ns, &clickhouse, batch, flush, &stop).await?,
            spawn::<Teams>(&js, &ns, &clickhouse, batch, flush, &stop).await?,
            spawn::<Keys>(&js, &ns, &clickhouse, batch, flush, &stop).await?,
        ] {
            stats.push((name, s));
            workers.push(w);
        }
        let stats: crate::metrics::AllStats = Arc::new(stats);
        let snapshots = crate::state::snapshot_policy(&settings);
        if snapshots.pepper.is_none() && snapshots.every > 0 {
            tracing::info!(
                "no secrets.access_key_pepper to sign its snapshots with: the state projection replays the admin stream at each start"
            );
        }
        let state_projection = tokio::spawn(crate::state::run(js.client(), ns.clone(), snapshots));
        let alerts = if settings.alerts.enabled {
            Some(crate::alerts::Alerts::start(js.client(), ns.clone(), &settings, Some(clickhouse.clone())).await?)
        } else {
            None
        };
        let metrics = Arc::new(crate::metrics::Metrics::new(stats, alerts.as_ref().map(|a| a.stats.clone())));
        workers.push({
            let (clickhouse, stop, days) = (clickhouse.clone(), stop.clone(), settings.projector.minute_retention_days);
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    if let Err(e) = crate::analytics::expire_minute_partitions(&clickhouse, days).await {
                        tracing::warn!(error = %e, "expiring minute rollups failed");
                    }
                    for _ in 0..3600 {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            })
        });
        ready.0.store(true, Ordering::Release);
        let ops = {
            let (ready, metrics) = (ready.clone(), metrics.clone());
            let ready = move || (ready.0.load(Ordering::Acquire), ready_body(&ready));
            ccp_runtime::ops::Probes::new("ccp-projector", ready, move || metrics.render())
        };
        ccp_runtime::ops::serve(&settings.ops, ops)?;
        let listener = TcpListener::bind(settings.projector.listen)
            .with_context(|| format!("cannot listen on {}", settings.projector.listen))?;
        let port = listener.local_addr()?.port();
        let state = ready.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::Data::new(metrics.clone()))
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready_handler))
                .route("/metrics", web::get().to(metrics_handler))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        tracing::info!(addr = %settings.projector.listen, port, "projector listening");
        Ok(Self { server, port, stop, workers, state_projection, alerts, announcer })
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
        self.state_projection.abort();
        drop(self.alerts);
        for worker in self.workers {
            if tokio::time::timeout(Duration::from_secs(10), worker).await.is_err() {
                tracing::warn!("a projection did not finish its batch in 10 s");
            }
        }
        self.announcer.withdraw().await;
        tracing::info!("projector stopped");
        Ok(())
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(telemetry::health_body("ccp-projector", env!("CARGO_PKG_VERSION")))
}

/// `GET /metrics`: see [`crate::metrics`].
async fn metrics_handler(metrics: web::Data<Arc<crate::metrics::Metrics>>) -> HttpResponse {
    HttpResponse::Ok().content_type(ccp_runtime::metrics::CONTENT_TYPE).body(metrics.render())
}

/// Opens a projection and runs it until `stop`.
async fn spawn<T: TableSpec>(
    js: &async_nats::jetstream::Context,
    ns: &ccp_schemas::Namespace,
    clickhouse: &clickhouse::Client,
    batch: usize,
    flush: Duration,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(&'static str, Arc<Stats>, tokio::task::JoinHandle<()>)> {
    let mut projection = Projection::<T>::open(js, ns, clickhouse.clone(), batch, flush).await?;
    let stats = projection.stats.clone();
    let stop = stop.clone();
    let worker = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        while !stop.load(Ordering::Acquire) {
            match projection.process_next_batch().await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(table = T::TABLE, error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "projection batch failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    Ok((T::NAME, stats, worker))
}

fn ready_body(state: &Readiness) -> serde_json::Value {
    let status = if state.0.load(Ordering::Acquire) { "ready" } else { "starting" };
    serde_json::json!({ "status": status })
}

async fn ready_handler(state: web::Data<Readiness>) -> HttpResponse {
    if state.0.load(Ordering::Acquire) {
        HttpResponse::Ok().json(ready_body(&state))
    } else {
        HttpResponse::ServiceUnavailable().json(ready_body(&state))
    }
}
