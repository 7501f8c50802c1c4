//! Builds the admin API from settings and runs it until SIGTERM/SIGINT.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use async_nats::jetstream;
use ccp_runtime::config::Settings;
use ccp_runtime::streams::{self, StreamPolicy};
use ccp_runtime::telemetry;
use ccp_schemas::events::{AdminRole, Event, SignInKind};
use ccp_schemas::secrets::access_key::KeyPepper;
use ccp_schemas::secrets::SecretString;
use ccp_schemas::{Actor, Namespace};

use crate::auth::{require_auth, Auth};
use crate::context::request_id;
use crate::context::ClientAddress;
use crate::error::{ApiError, ErrorKind};
use crate::routes::{self, admins, AppState};
use crate::store::{CommandMeta, EventStore};
use crate::throttle::Throttle;
use crate::view::View;

/// A bound, not yet running admin API.
pub struct Application {
    server: Server,
    port: u16,
    sign_ins: SignIns,
    announcer: ccp_runtime::compat::Announcer,
}

/// The sign-in throttles, and where their records of failures go.
#[derive(Clone)]
struct SignIns {
    login: Arc<Throttle>,
    self_service: Arc<Throttle>,
    sso: Arc<Throttle>,
    store: EventStore,
}

impl SignIns {
    /// Records the failures counted since the last time, one event per name (bounded).
    async fn record(&self) {
        let meta = CommandMeta {
            actor: Actor::System { component: "ccp-admin".into() },
            request_id: ccp_schemas::ids::RequestId::new().to_string(),
            source: None,
            if_match: None,
        };
        for throttle in [&self.login, &self.self_service, &self.sso] {
            let records = throttle.take_records();
            let (names, failures) = (records.len(), records.iter().map(|r| r.failures).sum::<u64>());
            for record in records {
                if let Err(e) = self.store.record(Event::SignInFailuresCounted(record), &meta).await {
                    tracing::warn!(error = %e.message, names, failures, "failed sign-ins not recorded");
                    break;
                }
            }
        }
    }

    /// `/metrics` lines of both throttles.
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let name = "ccp_admin_sign_in_attempts_total";
        let _ = writeln!(
            out,
            "# HELP {name} Sign-in attempts that did not succeed: failed (wrong credential), refused (the client \
             was throttled), slowed (the name had failed often).\n# TYPE {name} counter"
        );
        for (kind, t) in [("admin_login", &self.login), ("self_service", &self.self_service), ("sso", &self.sso)] {
            for (outcome, n) in
                [("failed", &t.stats.failed), ("refused", &t.stats.refused), ("slowed", &t.stats.slowed)]
            {
                let _ = writeln!(
                    out,
                    "{name}{{kind=\"{kind}\",outcome=\"{outcome}\"}} {}",
                    n.load(std::sync::atomic::Ordering::Relaxed)
                );
            }
        }
    }
}

/// Single sign-on's relying party and its store of started sign-ins, when `admin.sso` is set.
async fn sso_state(
    settings: &Settings,
    egress: &ccp_runtime::egress::Egress,
    js: &jetstream::Context,
    ns: &ccp_schemas::Namespace,
    sign_ins: &SignIns,
) -> anyhow::Result<routes::sso::SsoState> {
    let throttle = Arc::clone(&sign_ins.sso);
    if !settings.admin.sso.enabled() {
        return Ok(routes::sso::SsoState { oidc: None, pending: None, throttle });
    }
    let oidc = crate::sso::Oidc::new(settings.admin.sso.clone(), egress)?;
    let max_age = Duration::from_secs(u64::try_from(routes::sso::SIGN_IN_SECS).unwrap_or(600));
    let pending = streams::own_bucket(
        js,
        format!("{}_admin_sso", ns.prefix()),
        max_age,
        "ClaudeCodeProxy single sign-ons under way",
        settings.nats.replicas,
    )
    .await?;
    tracing::info!(issuer = %settings.admin.sso.issuer, password_login = settings.admin.sso.password_login,
        "single sign-on on");
    Ok(routes::sso::SsoState { oidc: Some(oidc), pending: Some(pending), throttle })
}

impl Application {
    /// Connects to NATS, ensures the streams, loads the admin state and binds `admin.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let ns = settings.nats.namespace()?;
        let client = telemetry::connect_nats(&settings.nats, "ccp-admin").await?;
        let js = jetstream::new(client.clone());
        streams::ensure(&js, &ns, &StreamPolicy::from(&settings.nats)).await?;
        let ttl = Duration::from_secs(settings.admin.session_ttl_secs.max(60));
        let sessions = streams::own_bucket(
            &js,
            format!("{}_admin_sessions", ns.prefix()),
            ttl,
            "ClaudeCodeProxy admin sessions",
            settings.nats.replicas,
        )
        .await?;

        let pepper = KeyPepper::new(&settings.secrets.access_key_pepper)
            .map_err(|_| anyhow::anyhow!("secrets.access_key_pepper must be at least 32 bytes"))?;
        // Outbound clients (Bedrock checks, KMS) connect as this says.
        let egress = ccp_runtime::egress::Egress::from_settings(&settings.egress)?;
        tracing::info!("{}", egress.describe());
        let master = egress.master_key(settings.secrets.master_key()?)?;
        if master.is_none() {
            tracing::warn!("no master key configured: Bedrock API keys cannot be registered");
        }
        let view = View::new();
        let snapshots = ccp_runtime::snapshot::SnapshotPolicy {
            every: settings.admin.view_snapshot_every,
            pepper: Some(pepper.clone()),
            replicas: settings.nats.replicas,
        };
        view.start(client.clone(), ns.clone(), snapshots).await?;
        let checker = crate::readiness::Checker::new(
            settings.proxy.bedrock_endpoint_url.as_deref(),
            &settings.proxy.bedrock_default_region,
            std::time::Duration::from_secs(settings.bedrock.readiness_timeout_secs.max(1)),
            &egress,
        )?;
        let client_address = web::Data::new(ClientAddress::new(&settings.admin.trusted_proxies)?);
        let sign_ins = SignIns {
            login: Arc::new(Throttle::new(SignInKind::AdminLogin)),
            self_service: Arc::new(Throttle::new(SignInKind::SelfService)),
            sso: Arc::new(Throttle::new(SignInKind::Sso)),
            store: EventStore::new(client.clone(), ns.clone()),
        };
        let every = Duration::from_secs(settings.admin.sign_in_record_secs.max(1));
        let recorder = sign_ins.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                recorder.record().await;
            }
        });
        // Which releases run beside this one: events they cannot read are held back.
        let announcer =
            ccp_runtime::compat::Announcer::start(client.clone(), &ns, "ccp-admin", settings.nats.replicas).await?;
        let state = web::Data::new(AppState {
            store: EventStore::new(client.clone(), ns.clone()).with_readers(Arc::clone(&announcer.readers)),
            view: Arc::clone(&view),
            pepper: pepper.clone(),
            master,
            checker: Arc::new(checker),
            public_proxy_url: settings.admin.public_proxy_url.clone(),
            // Analytics queries answer within 30 s or fail (a full scan must not hold requests).
            clickhouse: ccp_runtime::migrate::server_client(&settings.clickhouse)?
                .with_database(&settings.clickhouse.database)
                .with_setting("max_execution_time", "30"),
            settings: settings.clone(),
        });
        bootstrap_admin(&state, &settings, &ns).await?;
        if settings.bedrock.readiness_check_secs > 0 && state.master.is_some() {
            let interval = Duration::from_secs(settings.bedrock.readiness_check_secs);
            tokio::spawn(routes::keys::check_periodically(state.clone(), interval));
        }
        let idempotency = web::Data::new(crate::idempotency::Idempotency {
            pepper: pepper.clone(),
            records: streams::own_bucket(
                &js,
                format!("{}_idempotency", ns.prefix()),
                Duration::from_secs(24 * 3600),
                "ClaudeCodeProxy admin API idempotency records",
                settings.nats.replicas,
            )
            .await?,
        });
        let auth = web::Data::new(Auth {
            sessions,
            pepper: pepper.clone(),
            ttl,
            throttle: Arc::clone(&sign_ins.login),
            view,
            verifications: tokio::sync::Semaphore::new(crate::auth::CONCURRENT_VERIFICATIONS),
        });
        let sso = web::Data::new(sso_state(&settings, &egress, &js, &ns, &sign_ins).await?);
        let cors = web::Data::new(Cors { origins: settings.admin.cors_origins.clone() });
        let self_service = web::Data::new(routes::self_service::SelfService {
            js: js.clone(),
            ns: ns.clone(),
            throttle: Arc::clone(&sign_ins.self_service),
        });
        let metrics = web::Data::new(sign_ins.clone());
        // The ops listener (`ops.listen`): /health, /ready and /metrics for probes and scrapers;
        // when it is set, /metrics is served there only.
        let public_metrics = settings.ops.listen.is_none();
        let ops = {
            let (view, sign_ins) = (Arc::clone(&state.view), sign_ins.clone());
            let ready = move || readiness(&view);
            ccp_runtime::ops::Probes::new("ccp-admin", ready, move || render_metrics(&sign_ins))
        };
        ccp_runtime::ops::serve(&settings.ops, ops)?;

        let listener = TcpListener::bind(settings.admin.listen)
            .with_context(|| format!("cannot listen on {}", settings.admin.listen))?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(client_address.clone())
                .app_data(metrics.clone())
                .app_data(auth.clone())
                .app_data(cors.clone())
                .app_data(idempotency.clone())
                .app_data(self_service.clone())
                .app_data(sso.clone())
                .app_data(
                    web::PathConfig::default().error_handler(|e, _| ApiError::invalid("path", e.to_string()).into()),
                )
                .wrap(from_fn(cors_headers))
                .wrap(from_fn(request_id))
                .wrap(from_fn(security_headers))
                .wrap(from_fn(crate::metrics::count_requests))
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready))
                .configure(|app| {
                    if public_metrics {
                        app.route("/metrics", web::get().to(metrics_handler));
                    }
                })
                .route("/openapi.json", web::get().to(openapi))
                .configure(crate::dashboard::configure)
                .service(
                    web::scope("/v1")
                        .configure(admins::configure_login)
                        .configure(routes::sso::configure)
                        .configure(routes::self_service::configure)
                        .service(
                            web::scope("")
                                .wrap(from_fn(crate::idempotency::idempotent))
                                .wrap(from_fn(require_auth))
                                .configure(routes::configure),
                        ),
                )
                .default_service(web::to(not_found))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        tracing::info!(addr = %settings.admin.listen, port, "admin API listening");
        Ok(Self { server, port, sign_ins, announcer })
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
        // What was counted since the last record is recorded before the process ends.
        self.sign_ins.record().await;
        self.announcer.withdraw().await;
        tracing::info!("admin API stopped");
        Ok(())
    }
}

/// Creates the first admin when none exists: from `admin.initial_admin_password`, or
/// `admin`/`admin` when `admin.dev_default_admin` is on (with a loud warning).
async fn bootstrap_admin(state: &AppState, settings: &Settings, ns: &Namespace) -> anyhow::Result<()> {
    if !state.view.read().admins.is_empty() {
        return Ok(());
    }
    let configured = &settings.admin.initial_admin_password;
    let (username, password) = if !configured.is_empty() {
        crate::auth::check_password("admin.initial_admin_password", configured.expose())
            .map_err(|e| anyhow::anyhow!("admin.initial_admin_password: {}", e.message))?;
        (settings.admin.initial_admin_username.clone(), configured.clone())
    } else if settings.admin.dev_default_admin {
        tracing::warn!(
            "DEVELOPMENT DEFAULT ADMIN: creating admin/admin because admin.dev_default_admin is on. Never do this in production"
        );
        ("admin".to_owned(), SecretString::new("admin"))
    } else {
        tracing::warn!(
            "no admin account exists: set admin.initial_admin_password (CCP__ADMIN__INITIAL_ADMIN_PASSWORD) to create one"
        );
        return Ok(());
    };
    // The initial admin's id is derived from the deployment and username, so replicas starting
    // together append to the same subject and the concurrency check lets exactly one win.
    let admin_id = admins::admin_id_for(ns, &username);
    let meta = CommandMeta {
        actor: Actor::System { component: "ccp-admin".into() },
        request_id: ccp_schemas::ids::RequestId::new().to_string(),
        source: None,
        if_match: None,
    };
    match admins::create_admin_account(state, &meta, admin_id, username.clone(), password, AdminRole::Admin).await {
        Ok(_) => tracing::info!(username, "initial admin created"),
        Err(e) if e.kind == ErrorKind::Conflict => tracing::info!(username, "initial admin already created"),
        Err(e) => anyhow::bail!("creating the initial admin failed: {}", e.message),
    }
    Ok(())
}

/// Allowed CORS origins.
struct Cors {
    origins: Vec<String>,
}

/// CORS only for the configured origins; preflights answered before authentication.
async fn cors_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = origin
        .filter(|o| req.app_data::<web::Data<Cors>>().is_some_and(|c| c.origins.iter().any(|allowed| allowed == o)));
    let preflight =
        req.method() == actix_web::http::Method::OPTIONS && req.headers().contains_key("access-control-request-method");
    let mut response = if preflight {
        let mut r = HttpResponse::NoContent();
        if allowed.is_some() {
            r.insert_header(("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE"));
            r.insert_header((
                "access-control-allow-headers",
                "authorization, content-type, idempotency-key, x-csrf-token, x-ccp-access-key",
            ));
            r.insert_header(("access-control-max-age", "600"));
        }
        req.into_response(r.finish())
    } else {
        next.call(req).await?.map_into_boxed_body()
    };
    if let Some(origin) = allowed {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin) {
            headers.insert(HeaderName::from_static("access-control-allow-origin"), v);
        }
        headers.insert(HeaderName::from_static("access-control-allow-credentials"), HeaderValue::from_static("true"));
        headers.insert(HeaderName::from_static("vary"), HeaderValue::from_static("origin"));
        headers.insert(
            HeaderName::from_static("access-control-expose-headers"),
            HeaderValue::from_static("x-request-id, idempotent-replayed, retry-after"),
        );
    }
    Ok(response)
}

/// What every answer carries unless its handler set its own (the dashboard sets a page CSP and
/// `no-cache`): no MIME sniffing, no framing, no referrer, a CSP that lets an API answer run
/// nothing, and `no-store`, since answers carry secrets shown once (access keys, tokens) and
/// personal data that no browser or proxy cache may keep.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (actix_web::http::header::X_FRAME_OPTIONS, "DENY"),
    (actix_web::http::header::REFERRER_POLICY, "no-referrer"),
    (actix_web::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
    (actix_web::http::header::CACHE_CONTROL, "no-store"),
];

/// Adds [`SECURITY_HEADERS`] to every answer, error answers included (the inner layers and the
/// handlers turn their errors into answers; none escapes as `Err`).
async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    Ok(response)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(telemetry::health_body("ccp-admin", env!("CARGO_PKG_VERSION")))
}

/// The Prometheus text of `/metrics`: requests by route and status, command conflicts
/// (`crate::metrics`), sign-in attempts and the stream followers' unapplied events.
fn render_metrics(sign_ins: &SignIns) -> String {
    crate::metrics::render(|out| {
        sign_ins.render(out);
        ccp_runtime::follow::SKIPPED.render("ccp_admin", false, out);
    })
}

/// `GET /metrics` on the API's port (only while `ops.listen` is unset): see [`render_metrics`].
async fn metrics_handler(sign_ins: web::Data<SignIns>) -> HttpResponse {
    HttpResponse::Ok().content_type(ccp_runtime::metrics::CONTENT_TYPE).body(render_metrics(&sign_ins))
}

/// Ready once the read model is loaded (it is before the listener binds) and following the log;
/// not once it has halted on an event of a newer version (with the reason).
fn readiness(view: &View) -> (bool, serde_json::Value) {
    match view.halted() {
        None => (true, serde_json::json!({ "ready": true, "applied_sequence": view.applied() })),
        Some(why) => (false, serde_json::json!({ "ready": false, "reason": why })),
    }
}

/// `GET /ready`: see [`readiness`].
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match readiness(&state.view) {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::document())
}

/// Unknown paths are 404; known paths with a method they do not have are 405 with `Allow`.
async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    use actix_web::ResponseError as _;
    if let Some(methods) = crate::openapi::allowed_methods(req.path()) {
        let error = ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("{} is not allowed on {}; allowed: {}", req.method(), req.path(), methods.join(", ")),
        );
        let mut response = error.error_response();
        if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
            response.headers_mut().insert(HeaderName::from_static("allow"), v);
        }
        return response;
    }
    ApiError::new(ErrorKind::NotFound, format!("no route {} {}", req.method(), req.path())).error_response()
}
