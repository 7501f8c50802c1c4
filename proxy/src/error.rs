//! Errors the proxy answers itself, in Anthropic's error format so Claude Code and the SDKs show
//! them properly: `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.

use actix_web::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use ccp_schemas::events::ErrorClass;
use ccp_schemas::ids::RequestId;

/// Header carrying the proxy's request id on every response.
pub const REQUEST_ID_HEADER: &str = "x-ccp-request-id";

/// Anthropic's error `type`s the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorType {
    /// 400.
    InvalidRequest,
    /// 401.
    Authentication,
    /// 404.
    NotFound,
    /// 413.
    RequestTooLarge,
    /// 429.
    RateLimit,
    /// 5xx.
    Api,
}

impl ApiErrorType {
    fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::NotFound => "not_found_error",
            Self::RequestTooLarge => "request_too_large",
            Self::RateLimit => "rate_limit_error",
            Self::Api => "api_error",
        }
    }
}

/// A response the proxy produces itself.
#[derive(Debug, Clone)]
pub struct ProxyError {
    /// HTTP status.
    pub status: StatusCode,
    /// Anthropic error type.
    pub kind: ApiErrorType,
    /// What the developer reads; never contains a key.
    pub message: String,
    /// Label for the usage event and metrics.
    pub class: ErrorClass,
    /// Tell clients not to retry (refused keys, budgets).
    pub no_retry: bool,
    /// `retry-after` seconds to send.
    pub retry_after: Option<String>,
}

impl ProxyError {
    /// Any error.
    pub fn new(status: StatusCode, kind: ApiErrorType, class: ErrorClass, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), class, no_retry: false, retry_after: None }
    }

    /// 401 for a key that is missing, malformed, unknown, revoked or whose user is inactive.
    pub fn unauthorized(class: ErrorClass, message: impl Into<String>) -> Self {
        Self { no_retry: true, ..Self::new(StatusCode::UNAUTHORIZED, ApiErrorType::Authentication, class, message) }
    }

    /// 400 for a request the proxy cannot accept.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ApiErrorType::InvalidRequest, ErrorClass::BadRequest, message)
    }

    /// 415 for a body that is not JSON.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, ApiErrorType::InvalidRequest, ErrorClass::BadRequest, message)
    }

    /// 404 for a path the proxy does not serve.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ApiErrorType::NotFound, ErrorClass::BadRequest, message)
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ApiErrorType::RequestTooLarge,
            ErrorClass::PayloadTooLarge,
            format!("Request body exceeds the proxy's limit of {limit} bytes."),
        )
    }

    /// 502/503/504 when the upstream could not be used.
    pub fn upstream(status: StatusCode, class: ErrorClass, message: impl Into<String>) -> Self {
        Self::new(status, ApiErrorType::Api, class, message)
    }

    /// 503 while the key table is still loading.
    pub fn not_ready() -> Self {
        Self {
            retry_after: Some("1".into()),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiErrorType::Api,
                ErrorClass::Internal,
                "The proxy is starting and has not loaded its access keys and budgets yet; retry in a moment.",
            )
        }
    }

    /// Sets `retry-after` (e.g. Anthropic's, kept on a 503 that explains it).
    #[must_use]
    pub fn retry_after(mut self, value: Option<String>) -> Self {
        self.retry_after = value;
        self
    }

    /// The response, with the request id in the body, in `x-ccp-request-id` and at the end of
    /// the message: clients such as Claude Code show only the message, and the id is what the
    /// developer gives the platform team to look the request up.
    pub fn response(&self, request_id: RequestId) -> HttpResponse {
        let message = format!("{} (request id {request_id})", self.message);
        let body = serde_json::json!({
            "type": "error",
            "error": { "type": self.kind.as_str(), "message": message },
            "request_id": request_id.to_string(),
        });
        let mut builder = HttpResponse::build(self.status);
        builder.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        builder.insert_header((REQUEST_ID_HEADER, request_id.to_string()));
        if self.no_retry {
            builder.insert_header(("x-should-retry", "false"));
        }
        if let Some(after) = self.retry_after.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            builder.insert_header((RETRY_AFTER, after));
        }
        builder.body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn errors_are_anthropic_shaped_with_the_request_id() {
        let id = RequestId::new();
        let resp = ProxyError::unauthorized(ErrorClass::UnknownAccessKey, "no such key").response(id);
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers().get("x-should-retry").unwrap(), "false");
        assert_eq!(resp.headers().get(REQUEST_ID_HEADER).unwrap().to_str().unwrap(), id.to_string());
        let bytes = resp.into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"]["type"], "authentication_error");
        assert_eq!(json["request_id"], id.to_string());
        assert_eq!(json["error"]["message"], format!("no such key (request id {id})"), "the id a developer can report");
    }
}
