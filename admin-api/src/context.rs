//! Per-request context: a request id (`x-request-id` on every response and in every error body
//! and event), the client address, and the authenticated admin, as one extractor for handlers.

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use ccp_schemas::ids::RequestId;
use ccp_schemas::Actor;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::CommandMeta;

tokio::task_local! {
    /// The current request's id, for error bodies built without the request at hand.
    pub static REQUEST_ID: String;
}

/// The request id of the request being handled, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Clone)]
struct RequestIdExt(String);

/// Middleware: assigns the request id and sets `x-request-id` on the response.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::new().to_string();
    req.extensions_mut().insert(RequestIdExt(id.clone()));
    let mut response = REQUEST_ID.scope(id.clone(), next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// What a handler knows about its request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The request id.
    pub request_id: String,
    /// The client address (the peer; `X-Forwarded-For` is not trusted).
    pub source: Option<IpAddr>,
    /// The admin, on authenticated routes.
    pub identity: Option<Identity>,
    /// `If-Match`: the aggregate version (an earlier answer's `ETag`) the command expects.
    pub if_match: Option<u64>,
}

impl Ctx {
    /// The authenticated admin (routes behind [`crate::auth::require_auth`] always have one).
    pub fn admin(&self) -> Result<&Identity, ApiError> {
        self.identity.as_ref().ok_or_else(|| ApiError::unauthenticated("authentication required"))
    }

    /// Event metadata for a command run by this request.
    pub fn meta(&self) -> CommandMeta {
        let actor = match &self.identity {
            Some(i) => Actor::Admin { admin_id: i.admin_id, username: i.username.clone() },
            None => Actor::Anonymous,
        };
        CommandMeta { actor, request_id: self.request_id.clone(), source: self.source, if_match: self.if_match }
    }
}

impl FromRequest for Ctx {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let if_match = match req.headers().get("if-match") {
            None => None,
            Some(v) => match v
                .to_str()
                .ok()
                .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(version) => Some(version),
                None => return ready(Err(ApiError::invalid("if-match", "must be an ETag of this API, e.g. \"42\""))),
            },
        };
        let extensions = req.extensions();
        let request_id = extensions.get::<RequestIdExt>().map_or_else(|| RequestId::new().to_string(), |r| r.0.clone());
        ready(Ok(Self {
            request_id,
            source: req.peer_addr().map(|a| a.ip()),
            identity: extensions.get::<Identity>().cloned(),
            if_match,
        }))
    }
}
