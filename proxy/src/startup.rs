//! Builds the proxy from settings: the key table follower, the event publisher, the HTTP server;
//! runs it until SIGTERM/SIGINT, then drains in-flight streams and flushes events.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use ccp_runtime::config::Settings;
use ccp_runtime::egress::Egress;
use ccp_runtime::streams::{self, StreamPolicy};
use ccp_runtime::telemetry;
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::secrets::envelope::ConfiguredMasterKey;

use crate::bedrock::{BedrockClient, Rules};
use crate::breaker::{BreakerConfig, Breakers};
use crate::circuits::Circuits;
use crate::directory::{self, KeyTable};
use crate::forward::{self, Shared, Upstream};
use crate::listing::Listings;
use crate::metrics::Metrics;
use crate::publisher;
use crate::rate_limits::RateLimits;
use crate::routes;
use crate::spend::Spend;
use crate::spool::Spool;
use crate::usage::Recorder;
use ccp_schemas::pricing::PriceList;

/// A bound, not yet running proxy.
pub struct Application {
    server: Server,
    port: u16,
    publisher: tokio::task::JoinHandle<()>,
    stop_publisher: tokio::sync::oneshot::Sender<()>,
    follower: tokio::task::JoinHandle<()>,
    circuit_follower: tokio::task::JoinHandle<()>,
    /// Loading the month to date (from the shared tally, or rebuilding it), sharing costs and
    /// Plan-limit states.
    background: Vec<tokio::task::JoinHandle<()>>,
    spend: Arc<Spend>,
}

/// This replica's id: host name and a random suffix.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "proxy".into());
    let suffix = ulid::Ulid::new().to_string();
    format!("{host}-{}", &suffix[suffix.len() - 6..]).to_ascii_lowercase()
}

/// The master key that opens Bedrock API keys; without one, failover to Bedrock is off.
fn master_key(settings: &Settings, egress: &Egress) -> anyhow::Result<Option<ConfiguredMasterKey>> {
    let key = egress.master_key(settings.secrets.master_key()?)?;
    if key.is_none() {
        tracing::warn!("secrets.master_key is not set: Bedrock failover is disabled");
    }
    Ok(key)
}

impl Application {
    /// Prepares everything and binds `proxy.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // awc and the AWS SDK share rustls; pick its crypto provider once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = &settings.proxy;
        // Every outbound client (Anthropic, Bedrock, its listings, KMS) connects as this says.
        let egress = Arc::new(Egress::from_settings(&settings.egress)?);
        tracing::info!("{}", egress.describe());
        let pepper = KeyPepper::new(&settings.secrets.access_key_pepper).map_err(|e| {
            anyhow::anyhow!("{e} (set CCP__SECRETS__ACCESS_KEY_PEPPER; `ccp-admin gen-secrets` makes one)")
        })?;
        let ns = settings.nats.namespace()?;
        let anthropic_base = cfg.anthropic_base_url.trim_end_matches('/').to_owned();
        anthropic_base
            .parse::<actix_web::http::Uri>()
            .ok()
            .filter(|u| u.scheme().is_some() && u.host().is_some())
            .with_context(|| format!("proxy.anthropic_base_url `{anthropic_base}` is not an absolute URL"))?;

        let metrics = Arc::new(Metrics::default());
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)
            .with_context(|| format!("cannot open the event spool in {}", cfg.spool_dir.display()))?;
        if !spool.is_empty() {
            tracing::info!(events = spool.len(), "events waiting in the spool from an earlier run");
        }
        let client = telemetry::connect_nats(&settings.nats, "ccp-proxy").await?;
        // Announces the contract revision this replica reads, in the background (it runs while
        // the process lives; a stopped replica's announcement lapses after `compat::STALE`).
        drop(ccp_runtime::compat::Announcer::spawn(client.clone(), ns.clone(), "ccp-proxy", settings.nats.replicas));
        let (sink, publisher) = publisher::channel(client.clone(), ns.clone(), spool, metrics.clone());
        let (stop_publisher, stop_rx) = tokio::sync::oneshot::channel();
        let publisher = tokio::spawn(publisher.run(stop_rx));

        let keys = Arc::new(KeyTable::new(PriceList { version: 0, models: settings.pricing.models.clone() }));
        let spend = Arc::new(Spend::new(settings.budgets.tz()?));
        // The replica's id: its events' actor and its writer id in the shared spend tally.
        let replica: std::sync::Arc<str> = replica_id().into();
        // The shared tally is opened (then watched) in the background: a proxy starts (and
        // spools) without NATS.
        let tally_watch = {
            let (spend, js, ns) = (spend.clone(), async_nats::jetstream::new(client.clone()), ns.clone());
            let (replica, nats_replicas) = (replica.clone(), settings.nats.replicas);
            tokio::spawn(async move {
                loop {
                    match crate::spend::SharedTally::open_as(&js, &ns, &replica, nats_replicas).await {
                        Ok(tally) => {
                            let tally = Arc::new(tally);
                            spend.share(tally.clone());
                            let stored = tally.clone().keep_stored(Duration::from_secs(1));
                            tokio::join!(tally.watch(), stored);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "opening the shared spend tally failed; retrying"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        };
        let rate_limits = Arc::new(RateLimits::default());
        spend.follow_rate_limits(rate_limits.clone());
        let background = vec![
            tally_watch,
            tokio::spawn(spend.clone().start(client.clone(), ns.clone())),
            tokio::spawn(rate_limits.clone().share(
                async_nats::jetstream::new(client.clone()),
                ns.clone(),
                settings.nats.replicas,
            )),
        ];
        let policy = StreamPolicy::from(&settings.nats);
        let follower = {
            let (keys, client, ns) = (keys.clone(), client.clone(), ns.clone());
            let snapshots = ccp_runtime::snapshot::SnapshotPolicy {
                every: cfg.key_table_snapshot_every,
                pepper: Some(pepper.clone()),
                replicas: settings.nats.replicas,
            };
            tokio::spawn(async move {
                let js = async_nats::jetstream::new(client.clone());
                while let Err(e) = streams::ensure(&js, &ns, &policy).await {
                    tracing::warn!(error = %e, "cannot prepare the event streams yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                directory::follow(keys, client, ns, snapshots).await;
            })
        };

        let breakers = Arc::new(Breakers::new(BreakerConfig {
            threshold: cfg.circuit_failure_threshold.max(1),
            window: Duration::from_secs(cfg.circuit_window_secs),
            open_for: Duration::from_secs(cfg.circuit_open_secs),
        }));
        let circuits = Arc::new(Circuits::new(breakers, client.clone(), ns.clone(), replica.clone()));
        let circuit_follower = tokio::spawn(circuits.clone().follow(client.clone()));
        let statusline_board = web::Data::new(crate::statusline::board::Board::new(client.clone(), ns.clone()));
        let shared = web::Data::new(Shared {
            keys: keys.clone(),
            pepper,
            recorder: Recorder {
                sink,
                metrics,
                replica,
                keys: keys.clone(),
                spend: spend.clone(),
                rate_limits: rate_limits.clone(),
            },
            spend: spend.clone(),
            budget_enforcement: settings.budgets.enforce,
            reservations: Arc::default(),
            max_reservation_usd: settings.budgets.max_reservation_usd,
            circuits,
            anthropic_base,
            max_body_bytes: cfg.max_body_bytes,
            rules: Rules::from(&settings.bedrock),
            family_fallback: settings.bedrock.family_fallback.clone(),
            listings: Arc::new(Listings::new(
                Duration::from_secs(settings.bedrock.listing_refresh_secs),
                Duration::from_secs(settings.bedrock.listing_timeout_secs.max(1)),
                cfg.bedrock_endpoint_url.clone(),
            )),
            master: master_key(&settings, &egress)?.map(Arc::new),
            default_region: cfg.bedrock_default_region.clone(),
            egress: egress.clone(),
        });
        let listener = TcpListener::bind(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let port = listener.local_addr()?.port();
        let workers = match cfg.workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let (header_timeout, connect_timeout) =
            (Duration::from_secs(cfg.header_timeout_secs), Duration::from_secs(cfg.connect_timeout_secs));
        let bedrock_timeout = Duration::from_secs(settings.bedrock.timeout_secs);
        let bedrock = BedrockClient::new(
            cfg.bedrock_endpoint_url.as_deref(),
            &cfg.bedrock_default_region,
            connect_timeout,
            bedrock_timeout,
            &egress,
        )?;
        // With an ops listener, `/metrics` is served there only: the proxy's port is public.
        // `/health` and `/ready` stay on both (load balancers probe the port they send to).
        let public_metrics = settings.ops.listen.is_none();
        let ops = {
            let (ready, metrics) = (shared.clone(), shared.clone());
            let (ready, metrics) = (move || routes::readiness(&ready), move || routes::render_metrics(&metrics));
            ccp_runtime::ops::Probes::new("ccp-proxy", ready, metrics)
        };
        ccp_runtime::ops::serve(&settings.ops, ops)?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(statusline_board.clone())
                .app_data(web::Data::new(Upstream::new(header_timeout, connect_timeout, &egress, bedrock.clone())))
                .route("/health", web::get().to(routes::health))
                .route("/ready", web::get().to(routes::ready))
                .configure(|app| {
                    if public_metrics {
                        app.route("/metrics", web::get().to(routes::metrics));
                    }
                })
                .route(crate::statusline::PATH, web::get().to(crate::statusline::serve))
                .default_service(web::to(forward::dispatch))
        })
        .workers(workers)
        .disable_signals()
        // SSE events are small writes: without this, Nagle holds the last one until the client
        // ACKs (up to 40 ms with delayed ACKs), measured by `scripts/bench` on the failover path.
        .tcp_nodelay(true)
        .shutdown_timeout(cfg.shutdown_drain_secs)
        .listen(listener)?
        .run();
        tracing::info!(addr = %cfg.listen, port, workers, "proxy listening");
        Ok(Self { server, port, publisher, stop_publisher, follower, circuit_follower, background, spend })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT; then stops accepting, lets in-flight streams finish (up to
    /// `proxy.shutdown_drain_secs`) and publishes or spools every remaining event.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let stopper = tokio::spawn(async move {
            telemetry::shutdown_signal().await;
            tracing::info!("draining in-flight requests");
            handle.stop(true).await;
        });
        let served = self.server.await;
        stopper.abort();
        self.follower.abort();
        self.circuit_follower.abort();
        for task in &self.background {
            task.abort();
        }
        // Totals stay counted until acknowledged: the last ones are stored now.
        if !tokio::time::timeout(Duration::from_secs(3), self.spend.flush()).await.unwrap_or(false) {
            tracing::warn!("not every spend total was stored in the shared tally (in 3 s); replicas that start later read them from the request stream");
        }
        let _ = self.stop_publisher.send(());
        if tokio::time::timeout(Duration::from_secs(15), self.publisher).await.is_err() {
            tracing::warn!("event publisher did not finish in 15 s");
        }
        served?;
        tracing::info!("proxy stopped");
        Ok(())
    }
}
