//! The request pipeline: authenticate, read the body (bounded), ask the routing policy
//! ([`crate::route`]) where the request goes, and do it — Anthropic over pooled keep-alive
//! connections, its answer relayed unchanged ([`crate::relay`]); Bedrock when the policy says so
//! or Anthropic fails before answering ([`crate::failover`]).

use std::sync::Arc;
use std::time::Duration;

use actix_tls::connect::{ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection};
use actix_web::http::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::body::SizedStream;
use awc::error::SendRequestError;
use awc::http::Uri;
use bytes::{Bytes, BytesMut};
use ccp_runtime::config::BudgetEnforcement;
use ccp_runtime::egress::{authority, explain_connect_failure, Egress};
use ccp_schemas::events::{Endpoint, ErrorClass, FallbackReason, ModelFamily, Provider, RoutingStrategy, TripReason};
use ccp_schemas::secrets::access_key::{AccessKey, KeyPepper, KeyPrefix};
use ccp_schemas::secrets::envelope::ConfiguredMasterKey;
use ccp_schemas::state::Refusal;
use futures_util::StreamExt as _;
use rust_decimal::Decimal;

use crate::bedrock::{BedrockClient, Rules};
use crate::breaker::{Outcome, Route};
use crate::circuits::Circuits;
use crate::directory::KeyTable;
use crate::error::ProxyError;
use crate::failover::{failover, no_fallback, refuse};
use crate::listing::Listings;
use crate::relay::{relay, upstream_request};
use crate::route::{self, Decision, Facts, OnFailure};
use crate::spend::{Month, Spend};
use crate::tap::{Coding, Framing, Observed, UsageTap};
use crate::usage::{Recorder, RequestRecord};

/// Header that carries the access key when the base URL has none.
pub const ACCESS_KEY_HEADER: &str = "x-ccp-access-key";

/// Shared by every worker.
pub struct Shared {
    /// Users and keys.
    pub keys: std::sync::Arc<KeyTable>,
    /// Access-key hashing.
    pub pepper: KeyPepper,
    /// Events and metrics.
    pub recorder: Recorder,
    /// Upstream base URL without a trailing slash.
    pub anthropic_base: String,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Bedrock body rules.
    pub rules: Rules,
    /// The model a failover falls back to, per family (`bedrock.family_fallback`).
    pub family_fallback: std::collections::BTreeMap<ModelFamily, String>,
    /// The keys' Bedrock model listings.
    pub listings: std::sync::Arc<Listings>,
    /// Opens sealed Bedrock keys (`None`: no master key configured, no failover).
    pub master: Option<std::sync::Arc<ConfiguredMasterKey>>,
    /// Region for keys that name none.
    pub default_region: String,
    /// How outbound connections leave (for explaining a failed one).
    pub egress: Arc<Egress>,
    /// Per-key circuit breakers, shared with the fleet.
    pub circuits: std::sync::Arc<Circuits>,
    /// Month-to-date spend per user (all replicas).
    pub spend: std::sync::Arc<Spend>,
    /// Which requests an exhausted budget stops.
    pub budget_enforcement: BudgetEnforcement,
    /// Budget reserved by this replica's requests in flight.
    pub reservations: std::sync::Arc<crate::reserve::Reservations>,
    /// Most one request reserves (`budgets.max_reservation_usd`).
    pub max_reservation_usd: Decimal,
}

/// Whose monthly budget refuses a request: the user's own, or their team's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whose {
    /// The user's own budget.
    User,
    /// The budget of the user's team.
    Team,
}

/// The budgets a request is checked against — the user's, then their team's (the stricter one
/// refuses first) — each as (whose, the key its spend and reservations are counted under, limit).
/// No allocation: this runs on every request.
fn budgets(record: &RequestRecord) -> impl Iterator<Item = (Whose, ccp_schemas::ids::UserId, Decimal)> + '_ {
    let key = record.key.as_ref();
    let user = key.and_then(|k| Some((Whose::User, k.user_id, k.monthly_limit_usd?)));
    let team = key
        .and_then(|k| k.team.as_ref())
        .and_then(|t| Some((Whose::Team, crate::spend::team::team_key(t.team_id), t.monthly_limit_usd?)));
    user.into_iter().chain(team)
}

/// 429 when the user's or their team's monthly budget is spent (by every replica's finished
/// requests) or reserved by requests in flight here.
pub(crate) fn budget_refusal(shared: &Shared, record: &RequestRecord) -> Option<ProxyError> {
    let (whose, spent, in_flight, limit, now) = budget_used(shared, record)?;
    Some(budget_error(shared, record, whose, spent, in_flight, Decimal::ZERO, limit, now))
}

/// The first budget (user's, then team's) whose spend and what *other* requests in flight here
/// reserved (this request's own reservation is not against itself) reach its limit.
#[allow(clippy::type_complexity)]
fn budget_used(
    shared: &Shared,
    record: &RequestRecord,
) -> Option<(Whose, Decimal, Decimal, Decimal, chrono::DateTime<chrono::Utc>)> {
    let now = chrono::Utc::now();
    budgets(record).into_iter().find_map(|(whose, counted_as, limit)| {
        let spent = shared.spend.spent_everywhere(counted_as, now);
        let own = match whose {
            Whose::User => record.reservation.as_ref(),
            Whose::Team => record.team_reservation.as_ref(),
        }
        .map_or(Decimal::ZERO, crate::reserve::Reservation::amount);
        let in_flight = shared.reservations.held(counted_as) - own;
        (spent + in_flight >= limit).then_some((whose, spent, in_flight, limit, now))
    })
}

/// The budget's 429, naming whose budget it is, what is spent, what is in flight and when the
/// budget resets.
#[allow(clippy::too_many_arguments)]
fn budget_error(
    shared: &Shared,
    record: &RequestRecord,
    whose: Whose,
    spent: Decimal,
    in_flight: Decimal,
    amount: Decimal,
    limit: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> ProxyError {
    let tz = shared.spend.tz();
    let resets = Month::of(now, tz).next().first_day();
    let team = record.key.as_ref().and_then(|k| k.team.as_ref()).map_or("", |t| t.name.as_str());
    let (owner, requests) = match whose {
        Whose::User => ("Your monthly ClaudeCodeProxy budget".to_owned(), "your requests"),
        Whose::Team => (format!("The monthly ClaudeCodeProxy budget of your team `{team}`"), "your team's requests"),
    };
    let (what, retry) = if spent >= limit {
        ("is used up".to_owned(), "Ask your platform team to raise it.")
    } else if in_flight > Decimal::ZERO {
        (
            format!(
                "cannot take this request: ${} is reserved by {requests} still running",
                in_flight.round_dp(4).normalize()
            ),
            "Try again when they finish, or ask your platform team to raise it.",
        )
    } else {
        (
            format!(
                "has ${} left, less than this request may cost (${}, from its max_tokens)",
                (limit - spent).round_dp(4).normalize(),
                amount.round_dp(4).normalize()
            ),
            "Lower max_tokens, or ask your platform team to raise the budget.",
        )
    };
    let mut err = ProxyError::new(
        StatusCode::TOO_MANY_REQUESTS,
        crate::error::ApiErrorType::RateLimit,
        ErrorClass::BudgetExhausted,
        format!(
            "{owner} {what}: ${} spent of ${}. It resets on {resets} ({tz}). {retry}",
            spent.round_dp(2),
            limit.round_dp(2)
        ),
    );
    err.no_retry = spent >= limit;
    err
}

/// Reserves of the user's budget and of their team's (those that are set) what this request
/// may cost as `priced_as` on `provider`, for as long as the request runs; refused, naming the
/// budget, when the month's spend, the requests in flight and this one would pass either.
pub(crate) fn reserve(
    shared: &Shared,
    record: &mut RequestRecord,
    priced_as: Option<&str>,
    body_bytes: usize,
    max_tokens: Option<u64>,
) -> Result<(), ProxyError> {
    if budgets(record).next().is_none() {
        return Ok(());
    }
    let prices = shared.keys.prices();
    let price = priced_as.and_then(|m| prices.price_for(m, record.provider, record.region.as_deref()));
    let amount = price
        .map_or(Decimal::ZERO, |p| crate::reserve::estimate(body_bytes, max_tokens, p, shared.max_reservation_usd));
    let now = chrono::Utc::now();
    let (mut user, mut team) = (None, None);
    for (whose, counted_as, limit) in budgets(record) {
        let spent = shared.spend.spent_everywhere(counted_as, now);
        match shared.reservations.admit(counted_as, amount, spent, limit) {
            Ok(reservation) if whose == Whose::User => user = Some(reservation),
            Ok(reservation) => team = Some(reservation),
            // Dropping `user` releases what was reserved of the user's budget.
            Err(refused) => {
                return Err(budget_error(shared, record, whose, spent, refused.in_flight, amount, limit, now))
            }
        }
    }
    record.reservation = user;
    record.team_reservation = team;
    Ok(())
}

/// One per worker thread (`awc::Client` is not `Send`).
pub struct Upstream {
    pub(crate) client: awc::Client,
    pub(crate) bedrock: BedrockClient,
}

impl Upstream {
    /// The outbound client ([`outbound_client`]: Anthropic and the Bedrock listings) and a
    /// Bedrock client.
    pub fn new(
        header_timeout: Duration,
        connect_timeout: Duration,
        egress: &Arc<Egress>,
        bedrock: BedrockClient,
    ) -> Self {
        Self { client: outbound_client(header_timeout, connect_timeout, egress), bedrock }
    }
}

/// A pooled keep-alive client for Anthropic with LLM-sized timeouts, no default headers of its
/// own and no redirects (one per worker thread: `awc::Client` is not `Send`), connecting
/// directly and trusting the public roots.
pub fn anthropic_client(header_timeout: Duration, connect_timeout: Duration) -> awc::Client {
    let connector = awc::Connector::new().timeout(connect_timeout).limit(0).conn_keep_alive(Duration::from_secs(60));
    finish_client(connector, header_timeout)
}

/// [`anthropic_client`] connecting as `egress` says: its CAs, and HTTPS through its proxy
/// for the hosts it does not bypass, with `TCP_NODELAY` ([`EgressConnector`]; the TLS
/// configuration is made here, once).
pub fn outbound_client(header_timeout: Duration, connect_timeout: Duration, egress: &Arc<Egress>) -> awc::Client {
    let connector = awc::Connector::new()
        .rustls_0_23(egress.tls_config(&[b"h2", b"http/1.1"]))
        .timeout(connect_timeout)
        .limit(0)
        .conn_keep_alive(Duration::from_secs(60));
    let tcp = EgressConnector { egress: egress.clone(), direct: actix_tls::connect::ConnectorService::default() };
    finish_client(connector.connector(tcp), header_timeout)
}

fn finish_client<S, Io>(connector: awc::Connector<S>, header_timeout: Duration) -> awc::Client
where
    Io: actix_rt::net::ActixStream + std::fmt::Debug + 'static,
    S: actix_service::Service<ConnectInfo<Uri>, Response = TcpConnection<Uri, Io>, Error = TcpConnectError>
        + Clone
        + 'static,
{
    awc::Client::builder()
        .connector(connector)
        .timeout(header_timeout)
        .no_default_headers()
        .disable_redirects()
        .finish()
}

/// awc's TCP step: an HTTPS destination an egress proxy does not bypass gets a CONNECT tunnel
/// (awc then does TLS with the destination inside it); anything else connects directly as awc
/// would. Every connection gets `TCP_NODELAY`: a request body goes out in slices ([`in_slices`]),
/// and with Nagle's algorithm the last small one waited for the peer's delayed ACK — 40 ms on a
/// 48 KB Claude Code body (measured by `scripts/bench`). Runs once per new connection, not per
/// request.
#[derive(Clone)]
struct EgressConnector {
    egress: Arc<Egress>,
    direct: actix_tls::connect::ConnectorService,
}

impl actix_service::Service<ConnectInfo<Uri>> for EgressConnector {
    type Response = TcpConnection<Uri, actix_rt::net::TcpStream>;
    type Error = TcpConnectError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let https = req.request().scheme_str() == Some("https");
        let Some(proxy) = self.egress.proxy_for(req.hostname(), req.port()).filter(|_| https).cloned() else {
            let direct = self.direct.call(req);
            return Box::pin(async move {
                let connection = direct.await?;
                connection.io_ref().set_nodelay(true).map_err(TcpConnectError::Io)?;
                Ok(connection)
            });
        };
        Box::pin(async move {
            let stream = proxy.connect(req.hostname(), req.port()).await.map_err(TcpConnectError::Io)?;
            stream.set_nodelay(true).map_err(TcpConnectError::Io)?;
            Ok(TcpConnection::new(req.request().clone(), stream))
        })
    }
}

/// Where the key came from.
#[derive(Debug, Clone, Copy)]
enum KeySource {
    Path,
    Header,
}

/// Where a proxied path puts the access key, and the part after `/v1/`.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxiedPath<'a> {
    /// `/ak/{access_key}/v1/{tail}`.
    KeyInPath {
        /// The access key as presented.
        key: &'a str,
        /// After `/v1/`.
        tail: &'a str,
    },
    /// `/v1/{tail}`, the key in `x-ccp-access-key`.
    KeyInHeader {
        /// After `/v1/`.
        tail: &'a str,
    },
}

/// Splits a request path (as received, not percent-decoded: forwarded byte for byte) into the
/// proxied shapes; `None` for anything else. Done by hand rather than by the router's pattern
/// matching, which ran a regular expression per request.
pub fn proxied_path(path: &str) -> Option<ProxiedPath<'_>> {
    if let Some(tail) = path.strip_prefix("/v1/") {
        return Some(ProxiedPath::KeyInHeader { tail });
    }
    let (key, rest) = path.strip_prefix("/ak/")?.split_once('/')?;
    let tail = rest.strip_prefix("v1/")?;
    (!key.is_empty()).then_some(ProxiedPath::KeyInPath { key, tail })
}

/// Every path but the proxy's own (`/health`, `/ready`, `/metrics`): the proxied ones, else
/// the 404 that explains the base URL.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    upstream: web::Data<Upstream>,
) -> HttpResponse {
    // Borrowed from the request: nothing of the path or key is copied.
    let (key, tail, source) = match proxied_path(req.path()) {
        Some(ProxiedPath::KeyInPath { key, tail }) => (Some(key), tail, KeySource::Path),
        Some(ProxiedPath::KeyInHeader { tail }) => {
            let key = req.headers().get(ACCESS_KEY_HEADER).and_then(|v| v.to_str().ok());
            (key, tail, KeySource::Header)
        }
        None => return crate::routes::not_found().await,
    };
    proxy(&req, payload, key, tail, source, &shared, &upstream).await
}

/// The proxy's own error answer, and the request's usage event for it.
pub(crate) fn answer_error(err: ProxyError, record: RequestRecord) -> HttpResponse {
    let resp = err.response(record.request_id);
    record.finish(err.status.as_u16(), Some(err.class), false, Observed::default());
    resp
}

fn endpoint_of(tail: &str) -> Endpoint {
    match tail {
        "messages" => Endpoint::Messages,
        "messages/count_tokens" => Endpoint::CountTokens,
        _ => Endpoint::Other,
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    req: &HttpRequest,
    payload: web::Payload,
    key: Option<&str>,
    tail: &str,
    source: KeySource,
    shared: &Shared,
    upstream: &Upstream,
) -> HttpResponse {
    let headers = req.headers();
    let mut record = RequestRecord::start(
        endpoint_of(tail),
        header_str(headers, "x-claude-code-session-id"),
        header_str(headers, "user-agent"),
        &shared.recorder,
    );
    match prepare(req, payload, key, source, shared, &mut record).await {
        Ok(body) => send(req, tail, body, shared, upstream, record).await,
        Err(err) => answer_error(err, record),
    }
}

/// Authenticates and reads the body; everything that can be refused before Anthropic is asked.
async fn prepare(
    req: &HttpRequest,
    mut payload: web::Payload,
    key: Option<&str>,
    source: KeySource,
    shared: &Shared,
    record: &mut RequestRecord,
) -> Result<Bytes, ProxyError> {
    if !shared.keys.is_ready() || !shared.spend.is_ready() {
        return Err(ProxyError::not_ready());
    }
    let presented = key.ok_or_else(|| {
        ProxyError::unauthorized(
            ErrorClass::MalformedAccessKey,
            format!(
                "No ClaudeCodeProxy access key. Set ANTHROPIC_BASE_URL to the proxy URL ending in /ak/<your access key>, \
                 or send the key in the {ACCESS_KEY_HEADER} header. Ask your platform team for a key."
            ),
        )
    })?;
    record.key_prefix = Some(KeyPrefix::of_candidate(presented));
    let key = AccessKey::parse(presented).map_err(|e| {
        let place = match source {
            KeySource::Path => "in ANTHROPIC_BASE_URL",
            KeySource::Header => "in the x-ccp-access-key header",
        };
        ProxyError::unauthorized(
            ErrorClass::MalformedAccessKey,
            format!(
                "The ClaudeCodeProxy access key {place} is malformed ({e}). Ask your platform team for a valid key."
            ),
        )
    })?;
    let hash = key.hash(&shared.pepper);
    drop(key);
    let auth = shared.keys.authenticate(&hash).map_err(|refusal| {
        let (class, why) = match refusal {
            Refusal::Unknown => (ErrorClass::UnknownAccessKey, "is not known"),
            Refusal::Revoked => (ErrorClass::RevokedAccessKey, "has been revoked"),
            Refusal::InactiveUser => (ErrorClass::InactiveUser, "belongs to a deactivated user"),
        };
        ProxyError::unauthorized(
            class,
            format!("This ClaudeCodeProxy access key {why}. Ask your platform team for a new access key."),
        )
    })?;
    record.key_prefix = Some(auth.key_prefix.clone());
    record.key = Some(auth);

    let limit = shared.max_body_bytes;
    let declared = header_str(req.headers(), CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::too_large(limit));
    }
    // Sized once from Content-Length: no regrowth copies of a 50 KB body.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ProxyError::bad_request(format!("The request body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ProxyError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    if req.method() == Method::POST && record.endpoint != Endpoint::Other {
        crate::body::inspect_json(req, &body, record)?;
    }
    Ok(body)
}

/// Why Anthropic could not answer, kept for the failover or for the 503 that explains it.
#[derive(Debug, Clone)]
pub(crate) struct PlanFailure {
    pub(crate) reason: FallbackReason,
    /// e.g. "429 rate_limit_error", "a connection error".
    pub(crate) what: String,
    pub(crate) retry_after: Option<String>,
}

impl PlanFailure {
    /// The cause of a `bedrock_only` request's failover.
    pub(crate) fn routing() -> Self {
        Self::skipped(FallbackReason::Routing)
    }

    /// Anthropic was not asked: the request went to Bedrock for `reason` at once.
    fn skipped(reason: FallbackReason) -> Self {
        let what = match reason {
            FallbackReason::CircuitOpen => "repeated failures (circuit open)",
            _ => "routing",
        };
        Self { reason, what: what.into(), retry_after: None }
    }
}

/// Reads a failed Anthropic answer (small, bounded) to name its error type.
async fn plan_failure(response: &mut awc::ClientResponse, status: StatusCode) -> PlanFailure {
    let headers = response.headers();
    let retry_after = header_str(headers, "retry-after").map(str::to_owned);
    let unified_rejected = header_str(headers, "anthropic-ratelimit-unified-status") == Some("rejected");
    let coding = Coding::from_header(header_str(headers, CONTENT_ENCODING.as_str()));
    // The error body is small; a stalled one must not hold the failover.
    let raw = tokio::time::timeout(Duration::from_secs(5), response.body().limit(64 * 1024))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let body = crate::tap::decode(coding, &raw);
    let observed = {
        let mut tap = UsageTap::new(Framing::Json, Coding::Identity);
        tap.feed(&body);
        tap.finish()
    };
    let usage_limit = unified_rejected || body.windows(11).any(|w| w.eq_ignore_ascii_case(b"usage limit"));
    let reason = match status.as_u16() {
        429 if usage_limit => FallbackReason::UsageLimit,
        429 => FallbackReason::RateLimited,
        529 => FallbackReason::Overloaded,
        _ => FallbackReason::ServerError,
    };
    let what = match observed.error_type {
        Some(t) => format!("{} {t}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    PlanFailure { reason, what, retry_after }
}

fn trip_reason(reason: FallbackReason) -> TripReason {
    match reason {
        FallbackReason::RateLimited => TripReason::RateLimited,
        FallbackReason::Overloaded => TripReason::Overloaded,
        FallbackReason::UsageLimit => TripReason::UsageLimit,
        FallbackReason::ConnectError => TripReason::ConnectError,
        FallbackReason::Timeout => TripReason::Timeout,
        FallbackReason::ServerError | FallbackReason::CircuitOpen | FallbackReason::Routing => TripReason::ServerError,
    }
}

/// Anthropic answers that trigger a failover: 429, 529 and other 5xx.
fn fails_over(status: StatusCode) -> bool {
    status.as_u16() == 429 || status.is_server_error()
}

/// Largest piece of a large request body handed to awc at once.
const BODY_SLICE: usize = 16 * 1024;
/// Bodies up to this size are handed to awc whole.
const WHOLE_BODY_MAX: usize = 64 * 1024;

/// `body` as slices of at most [`BODY_SLICE`] bytes (views of it, not copies), with its length
/// (sent as `Content-Length`); a body of at most [`WHOLE_BODY_MAX`] as one piece. awc copies what
/// it is given into the request's write buffer, which keeps its capacity while the answer streams
/// back: a 2 MB body given whole kept 2 MB for as long as its stream was open (measured with
/// `ccp-bench-streams`: 200 open streams of 2 MB bodies, 460 MiB RSS). But awc writes to the
/// socket whenever the buffer passes 8 KiB, so each slice is a write of its own — and at low load
/// a write is a wake-up of the other side too: a 48 KB body in 16 KiB slices cost the proxy
/// 15–20 µs more CPU a request at concurrency 1 than in one piece (`ccp-bench`,
/// docs/benchmarks.md). Up to 64 KiB the memory is the lesser cost.
fn in_slices(body: Bytes) -> SizedStream<impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>>> {
    let len = body.len();
    let slice = if len <= WHOLE_BODY_MAX { len.max(1) } else { BODY_SLICE };
    let slices = (0..len).step_by(slice).map(move |at| Ok(body.slice(at..len.min(at + slice))));
    SizedStream::new(len as u64, futures_util::stream::iter(slices))
}

/// The facts the routing policy decides on, as they are now.
fn facts(shared: &Shared, record: &RequestRecord, post: bool, breaker: Route) -> Facts {
    let key = record.key.as_ref();
    Facts {
        endpoint: record.endpoint,
        post,
        routing: key.map_or(RoutingStrategy::PlanFirst, |k| k.routing),
        bedrock_ready: key.is_some_and(|k| k.has_bedrock_key) && shared.master.is_some(),
        breaker,
        budget_spent: budget_used(shared, record).is_some(),
        enforcement: shared.budget_enforcement,
    }
}

async fn send(
    req: &HttpRequest,
    tail: &str,
    body: Bytes,
    shared: &Shared,
    upstream: &Upstream,
    mut record: RequestRecord,
) -> HttpResponse {
    let post = req.method() == Method::POST;
    let routing = record.key.as_ref().map_or(RoutingStrategy::PlanFirst, |k| k.routing);
    // The breaker is asked (and told the outcome) only for requests that could fail over, and
    // only once the request is not refused or sent to Bedrock anyway: asking it may hand out the
    // half-open probe, which must then be answered by Anthropic.
    let breaker_key =
        record.key.as_ref().map(|k| k.key_id).filter(|_| route::uses_breaker(record.endpoint, post, routing));
    let mut on_failure = match route::route(&facts(shared, &record, post, Route::Plan)) {
        Decision::Plan { on_failure } => on_failure,
        Decision::Bedrock(reason) => {
            return failover(req, body, PlanFailure::skipped(reason), shared, upstream, record).await;
        }
        Decision::Refuse(refusal) => return refuse(shared, refusal, None, record),
    };
    // With `budgets.enforce = "all"` a budgeted user's Anthropic requests are admitted against
    // their budget too, reserved while they run.
    if shared.budget_enforcement == BudgetEnforcement::All && record.endpoint == Endpoint::Messages {
        let priced_as = route::plan_priced_as(&shared.keys.catalogue(), record.requested_model.as_deref());
        let admitted = {
            record.provider = Provider::Anthropic;
            let admitted =
                reserve(shared, &mut record, priced_as.as_deref(), body.len(), crate::body::max_tokens(&body));
            if admitted.is_err() {
                // Refused before anything was sent: nobody answered.
                record.provider = Provider::None;
            }
            admitted
        };
        if let Err(err) = admitted {
            return answer_error(err, record);
        }
    }
    let breaker = breaker_key.map_or(Route::Plan, |k| shared.circuits.route(k));
    if breaker == Route::Skip {
        match route::route(&facts(shared, &record, post, breaker)) {
            Decision::Plan { on_failure: again } => on_failure = again,
            Decision::Bedrock(reason) => {
                return failover(req, body, PlanFailure::skipped(reason), shared, upstream, record).await;
            }
            Decision::Refuse(refusal) => return refuse(shared, refusal, None, record),
        }
    }
    let outcome = |failure: Option<TripReason>| {
        if let Some(k) = breaker_key {
            shared.circuits.record(k, breaker, failure.map_or(Outcome::Success, Outcome::Failure));
        }
    };
    // Anthropic failed before answering: Bedrock, a 503 that explains, as the policy says.
    let kept = &body;
    let after_failure = |cause: PlanFailure, record: RequestRecord| async move {
        match on_failure {
            OnFailure::Bedrock => match route::after_plan_failure(&facts(shared, &record, post, breaker), cause.reason)
            {
                Decision::Bedrock(_) => failover(req, kept.clone(), cause, shared, upstream, record).await,
                Decision::Refuse(refusal) => refuse(shared, refusal, Some(&cause), record),
                Decision::Plan { .. } => no_fallback(&cause, record),
            },
            OnFailure::Explain | OnFailure::Relay => no_fallback(&cause, record),
        }
    };

    let out = upstream_request(&upstream.client, &shared.anthropic_base, tail, req);
    record.provider = Provider::Anthropic;
    let sent = out.send_body(in_slices(body.clone())).await;
    if let (Ok(response), Some(k)) = (&sent, record.key.as_ref().map(|k| k.key_id)) {
        shared.recorder.rate_limits.observe(k, response.status().as_u16(), response.headers());
    }
    match sent {
        Ok(mut response) if on_failure != OnFailure::Relay && fails_over(response.status()) => {
            let status = response.status();
            let cause = plan_failure(&mut response, status).await;
            outcome(Some(trip_reason(cause.reason)));
            tracing::info!(request_id = %record.request_id, status = status.as_u16(), reason = crate::failover::fallback_label(cause.reason), "Anthropic failed before answering");
            after_failure(cause, record).await
        }
        Ok(response) => {
            outcome(None);
            let on_failure = breaker_key.map(|k| {
                let circuits = shared.circuits.clone();
                Box::new(move || circuits.record(k, Route::Plan, Outcome::Failure(TripReason::ServerError)))
                    as Box<dyn FnOnce()>
            });
            relay(response, record, on_failure)
        }
        Err(e) => {
            let (reason, status, class, what) = match e {
                SendRequestError::Timeout => (
                    FallbackReason::Timeout,
                    StatusCode::GATEWAY_TIMEOUT,
                    ErrorClass::UpstreamTimeout,
                    "no answer in time".to_owned(),
                ),
                other => (
                    FallbackReason::ConnectError,
                    StatusCode::BAD_GATEWAY,
                    ErrorClass::UpstreamConnectError,
                    format!(
                        "a connection error ({})",
                        explain_connect_failure(
                            authority(&shared.anthropic_base),
                            &other.to_string(),
                            shared.egress.ca_file()
                        )
                    ),
                ),
            };
            tracing::warn!(request_id = %record.request_id, error_class = ?class, error = %what, "Anthropic request failed");
            let cause = PlanFailure { reason, what, retry_after: None };
            outcome(Some(trip_reason(reason)));
            if on_failure == OnFailure::Relay {
                let err = ProxyError::upstream(status, class, format!("Anthropic could not be used: {}.", cause.what));
                return answer_error(err, record);
            }
            after_failure(cause, record).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{in_slices, proxied_path, ProxiedPath, BODY_SLICE, WHOLE_BODY_MAX};
    use awc::body::MessageBody as _;
    use futures_util::StreamExt as _;

    /// The pieces awc is handed for a body of `len` bytes, and the size it is told.
    async fn pieces(len: usize) -> (Vec<usize>, awc::body::BodySize) {
        let body = bytes::Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let sized = in_slices(body.clone());
        let size = sized.size();
        let mut stream = Box::pin(futures_util::stream::unfold(sized, |mut s| async move {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut s).poll_next(cx)).await;
            next.map(|chunk| (chunk, s))
        }));
        let (mut lens, mut joined) = (Vec::new(), Vec::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("a slice");
            lens.push(chunk.len());
            joined.extend_from_slice(&chunk);
        }
        assert_eq!(joined, body.as_ref(), "the slices put together are the body");
        (lens, size)
    }

    #[actix_web::test]
    async fn small_bodies_go_whole_and_large_ones_in_slices() {
        assert_eq!(pieces(0).await, (vec![], awc::body::BodySize::Sized(0)));
        assert_eq!(pieces(48_581).await, (vec![48_581], awc::body::BodySize::Sized(48_581)));
        assert_eq!(pieces(WHOLE_BODY_MAX).await.0, vec![WHOLE_BODY_MAX]);
        let large = WHOLE_BODY_MAX + 1;
        let (lens, size) = pieces(large).await;
        assert_eq!(size, awc::body::BodySize::Sized(large as u64));
        assert_eq!(lens, vec![BODY_SLICE, BODY_SLICE, BODY_SLICE, BODY_SLICE, 1]);
    }

    #[test]
    fn proxied_paths_are_split_and_others_refused() {
        assert_eq!(
            proxied_path("/ak/ak_abc/v1/messages"),
            Some(ProxiedPath::KeyInPath { key: "ak_abc", tail: "messages" })
        );
        assert_eq!(
            proxied_path("/ak/ak_abc/v1/messages/count_tokens"),
            Some(ProxiedPath::KeyInPath { key: "ak_abc", tail: "messages/count_tokens" })
        );
        assert_eq!(proxied_path("/ak/k/v1/"), Some(ProxiedPath::KeyInPath { key: "k", tail: "" }));
        assert_eq!(proxied_path("/v1/models"), Some(ProxiedPath::KeyInHeader { tail: "models" }));
        // Not decoded: forwarded as received.
        assert_eq!(proxied_path("/v1/a%2Fb"), Some(ProxiedPath::KeyInHeader { tail: "a%2Fb" }));
        for other in [
            "/",
            "/ak",
            "/ak/",
            "/ak//v1/messages",
            "/ak/k",
            "/ak/k/",
            "/ak/k/v2/messages",
            "/ak/k/x/v1/m",
            "/v1",
            "/v2/messages",
            "/health/x",
        ] {
            assert_eq!(proxied_path(other), None, "{other}");
        }
    }
}
