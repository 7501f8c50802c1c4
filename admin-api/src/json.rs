//! Request bodies: `application/json` only, at most [`MAX_BODY`] bytes, decoded with the path of
//! the offending field in the error (`{"error":{"field":"monthly_limit_usd",…}}`). Request types
//! use `#[serde(deny_unknown_fields)]`, so a misspelt field is named rather than ignored.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorKind};

/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json_body(req, payload, false);
        Box::pin(async move { decode(&body.await?.unwrap_or_default()).map(Json) })
    }
}

/// A JSON request body that may be left out entirely (no body: `None`).
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json_body(req, payload, true);
        Box::pin(async move {
            match body.await? {
                None => Ok(Self(None)),
                Some(bytes) if bytes.trim_ascii() == b"null" => Ok(Self(None)),
                Some(bytes) => decode(&bytes).map(|v| Self(Some(v))),
            }
        })
    }
}

/// Reads a JSON body; `None` when `optional` and there is no body at all.
fn read_json_body(
    req: &HttpRequest,
    payload: &mut Payload,
    optional: bool,
) -> impl Future<Output = Result<Option<web::BytesMut>, ApiError>> {
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let declared =
        req.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    async move {
        if optional && (declared == Some(0) || (declared.is_none() && content_type.is_empty())) {
            return Ok(None);
        }
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/json" {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Err(too_large());
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid("body", format!("reading the body failed: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

fn too_large() -> ApiError {
    ApiError::new(ErrorKind::PayloadTooLarge, format!("the body is larger than {MAX_BODY} bytes"))
}

/// Decodes JSON, naming the field at fault.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("body", "the body is empty; send a JSON object"));
    }
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::invalid("body", "the body must be a JSON object (`{…}`)"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = describe(&inner);
        let field = if path == "." || path.is_empty() { "body".to_owned() } else { path };
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::invalid("body", format!("the body is not valid JSON: {message}"))
            }
            _ => ApiError::invalid(&field, message),
        }
    })
}

/// serde_json's message without its `at line 1 column 7` suffix.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn err(json: &str) -> ApiError {
        match decode::<Body>(json.as_bytes()) {
            Ok(b) => panic!("decoded {b:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let e = err(r#"{"name":"a","inner":{"count":"x"}}"#);
        assert_eq!(e.field.as_deref(), Some("inner.count"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = err(r#"{"name":"a","nmae":1}"#);
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("unknown field `nmae`"), "{}", e.message);
        let e = err(r#"{"inner":null}"#);
        assert!(e.message.contains("missing field `name`"), "{}", e.message);
        let e = err(r#"{"name":"a""#);
        assert_eq!(e.field.as_deref(), Some("body"));
        assert!(e.message.starts_with("the body is not valid JSON"), "{}", e.message);
        let e = err("");
        assert_eq!(e.field.as_deref(), Some("body"));
    }
}
