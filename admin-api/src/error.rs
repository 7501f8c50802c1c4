//! The admin API's one error shape:
//! `{"error":{"type":"invalid_request","message":"…","field":"name"},"request_id":"req_…"}`.
//! Client mistakes are 4xx naming the field and the problem; only our own failures are 5xx,
//! and those never carry internal details (they are logged with the request id instead).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// What went wrong, as the `error.type` of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed JSON, unknown field, wrong type, bad id, bad query parameter (400).
    InvalidRequest,
    /// Missing, expired or wrong credentials (401).
    Unauthenticated,
    /// Authenticated but not allowed, e.g. a missing CSRF token (403).
    Forbidden,
    /// No such resource (404).
    NotFound,
    /// The path exists, the method does not (405).
    MethodNotAllowed,
    /// The resource changed concurrently, or the command conflicts with its state (409).
    Conflict,
    /// Well-formed but semantically invalid, e.g. an out-of-range value (422).
    Unprocessable,
    /// Wrong `Content-Type` (415).
    UnsupportedMediaType,
    /// Body too large (413).
    PayloadTooLarge,
    /// Too many attempts (429).
    RateLimited,
    /// A dependency (NATS, ClickHouse) is unavailable (503).
    Unavailable,
    /// Our bug (500).
    Internal,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ApiError {
    /// Its type.
    pub kind: ErrorKind,
    /// What a person reads.
    pub message: String,
    /// The offending field or parameter (`keys[0].name`), if one.
    pub field: Option<String>,
    /// Seconds until a retry may succeed (429).
    pub retry_after: Option<u64>,
    /// A change was sent but not confirmed: it may have been applied ([`OutcomeUnknown`]).
    pub outcome_unknown: bool,
}

/// Marks an error answer whose change may have been applied after all, so that a retry with the
/// same `Idempotency-Key` is not run again (see [`crate::idempotency`]).
#[derive(Debug, Clone, Copy)]
pub struct OutcomeUnknown;

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// The request id (`x-request-id`), to find the request in logs and the audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The `error` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The error type.
    #[serde(rename = "type")]
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
    /// The field or parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error of a kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), field: None, retry_after: None, outcome_unknown: false }
    }

    /// Names the field at fault.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 about a field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).field(field)
    }

    /// 422 about a field.
    pub fn unprocessable(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, message).field(field)
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, what)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }

    /// 503 for a dependency, logged with its cause; the client sees no internals.
    pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(dependency = what, error = %cause, "dependency failed");
        Self::new(ErrorKind::Unavailable, format!("{what} is unavailable; try again shortly"))
    }

    /// 503 for a change `what` did not confirm in time: it may or may not have been applied.
    pub fn outcome_unknown(what: &str) -> Self {
        tracing::error!(dependency = what, "a change was sent but never confirmed");
        let mut e = Self::new(
            ErrorKind::Unavailable,
            format!(
                "{what} did not confirm the change in time; it may have been applied: read the resource \
                 before sending the command again"
            ),
        );
        e.outcome_unknown = true;
        e
    }

    /// 500, logged with its cause; the client sees no internals.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorKind::Internal, "internal error; the request id is in the server log")
    }

    /// The body, for `request_id`.
    pub fn body(&self, request_id: Option<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail { kind: self.kind, message: self.message.clone(), field: self.field.clone() },
            request_id,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            response.insert_header(("retry-after", secs.to_string()));
        }
        if self.kind == ErrorKind::Unauthenticated {
            response.insert_header(("www-authenticate", "Bearer"));
        }
        if self.outcome_unknown {
            response.extensions_mut().insert(OutcomeUnknown);
        }
        response.json(self.body(crate::context::current_request_id()))
    }
}

/// Results of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
