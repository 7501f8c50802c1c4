//! `GET /v1/sign-in-failures`: the counted failed sign-ins ([`crate::throttle`]) from the
//! security stream, newest window last — who was guessed at, how often, from how many clients.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use ccp_runtime::follow::{Decoded, Follower, Next, Start};
use ccp_schemas::events::{Event, SignInKind};
use ccp_schemas::subjects::StreamKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::query::Query;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sign-in-failures", web::get().to(sign_in_failures));
}

/// Query of `GET /v1/sign-in-failures`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SignInFailuresQuery {
    /// Windows ending at or after this time, RFC 3339 (default: 24 hours ago).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// `admin_login`, `self_service` or `sso` (default: all).
    #[param(pattern = "^(admin_login|self_service|sso)$")]
    pub kind: Option<String>,
    /// Most records answered, newest kept (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Failed sign-ins of one name in one window, as one replica counted them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignInFailures {
    /// `admin_login`, `self_service` or `sso`.
    pub kind: String,
    /// The username or access-key prefix tried; `*`: the names beyond the per-window cap.
    pub name: String,
    /// Wrong credentials.
    pub failures: u64,
    /// Attempts refused before the credential was checked (the client was throttled).
    pub refused: u64,
    /// Distinct client addresses.
    pub clients: u64,
    /// Up to five of them.
    pub sample_clients: Vec<String>,
    /// Failures by cause (single sign-on: `wrong_state`, `wrong_audience`, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// Start of the window.
    pub window_start: DateTime<Utc>,
    /// End of the window.
    pub window_end: DateTime<Utc>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignInFailuresReport {
    /// Oldest first.
    pub records: Vec<SignInFailures>,
    /// Whether older matching records were left out by `limit`.
    pub truncated: bool,
}

const MAX_LIMIT: u32 = 1000;

/// Counted failed sign-ins (admin logins, self-service access keys, single sign-on refusals by
/// cause), per name and window.
#[utoipa::path(get, path = "/v1/sign-in-failures", tag = "auth", params(SignInFailuresQuery),
    responses((status = 200, body = SignInFailuresReport), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sign_in_failures(
    state: web::Data<AppState>,
    query: Query<SignInFailuresQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.0;
    let from = match &q.from {
        None => Utc::now() - chrono::Duration::hours(24),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| ApiError::invalid("from", "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))?
            .with_timezone(&Utc),
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some("admin_login") => Some(SignInKind::AdminLogin),
        Some("self_service") => Some(SignInKind::SelfService),
        Some("sso") => Some(SignInKind::Sso),
        Some(_) => return Err(ApiError::invalid("kind", "must be `admin_login`, `self_service` or `sso`")),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let ns = state.store.namespace();
    // A record is written when its window ends: read from one window earlier than `from`.
    let lookback = chrono::Duration::seconds(i64::try_from(state.settings.admin.sign_in_record_secs).unwrap_or(0));
    let mut follower = Follower::new("sign-in failures", state.store.client().clone(), ns, StreamKind::Security)
        .start(Start::Since(from - lookback));
    let mut records = Vec::new();
    let read = async {
        loop {
            let Next::Message(delivery) = follower.next().await else { break };
            if let Decoded::Apply(envelope) = follower.decode(&delivery) {
                if let Event::SignInFailuresCounted(r) = envelope.event {
                    if r.window_end >= from && kind.is_none_or(|k| k == r.kind) {
                        records.push(SignInFailures {
                            kind: ccp_schemas::events::label(&r.kind).to_owned(),
                            name: r.name,
                            failures: r.failures,
                            refused: r.refused,
                            clients: r.clients,
                            sample_clients: r.sample_clients.iter().map(ToString::to_string).collect(),
                            reasons: r.reasons,
                            window_start: r.window_start,
                            window_end: r.window_end,
                        });
                    }
                }
            }
            if delivery.caught_up {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| ApiError::unavailable("the security stream", &"not read within 10 s"))?;
    let truncated = records.len() > limit as usize;
    let records = records.split_off(records.len().saturating_sub(limit as usize));
    Ok(HttpResponse::Ok().json(SignInFailuresReport { records, truncated }))
}
