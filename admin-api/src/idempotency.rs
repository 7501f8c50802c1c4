//! `Idempotency-Key`: a command sent again with the same key (by the same admin) is not run
//! again; the first answer is replayed with `idempotent-replayed: true`. Records live 24 h in a
//! KV bucket. While the first request runs, a repeat gets 409; a repeat with a different
//! method, path or body gets 422. Secrets in answers (a new access key or API token, the Claude
//! Code settings that embed the key) are never stored: a replay shows them as `null`. A command
//! whose change the event log never confirmed may have been applied: its key then answers 409
//! (look, then use a new key) rather than running it again.

use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, HttpResponse};
use async_nats::jetstream::kv;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::auth::Identity;
use crate::error::{ApiError, ErrorKind};
use crate::json::MAX_BODY;

/// The header.
pub const HEADER: &str = "idempotency-key";
/// Fields of an answer that are never stored for replay.
const SECRET_FIELDS: &[&str] = &["access_key", "token", "claude_code"];

/// The idempotency records.
pub struct Idempotency {
    /// Keys the request fingerprints (bodies may hold passwords or Bedrock keys: a plain hash
    /// of them in the bucket could be guessed offline).
    pub pepper: ccp_schemas::secrets::access_key::KeyPepper,
    /// KV bucket, entries expire after 24 h.
    pub records: kv::Store,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// The first request is still running (since `started_at`, Unix seconds).
    Pending { fingerprint: String, started_at: i64 },
    /// Its answer, without secrets.
    Done { fingerprint: String, status: u16, body: String },
    /// It failed after sending a change the event log never confirmed: it may have been applied,
    /// so it is not run again under this key.
    Unknown { fingerprint: String },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Middleware for the authenticated scope (after [`crate::auth::require_auth`]).
pub async fn idempotent(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let unsafe_method = matches!(req.method().as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
    let Some(raw) = req.headers().get(HEADER).cloned().filter(|_| unsafe_method) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let key = match raw.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.chars().all(|c| c.is_ascii_graphic()) => k.to_owned(),
        _ => {
            let e = ApiError::invalid(HEADER, "must be 1–255 visible ASCII characters (a ULID or UUID is ideal)");
            return Ok(req.error_response(e));
        }
    };
    let (Some(store), Some(identity)) =
        (req.app_data::<web::Data<Idempotency>>().cloned(), req.extensions().get::<Identity>().cloned())
    else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };

    // The body is read here (and handed on unchanged) to fingerprint the request.
    let mut payload = req.take_payload();
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return Ok(req.error_response(ApiError::invalid("body", "reading the body failed")));
        };
        if bytes.len() + chunk.len() > MAX_BODY {
            let e = ApiError::new(ErrorKind::PayloadTooLarge, format!("the body is larger than {MAX_BODY} bytes"));
            return Ok(req.error_response(e));
        }
        bytes.extend_from_slice(&chunk);
    }
    let bytes = bytes.freeze();
    let fingerprint = {
        let mut data = format!("{} {}\n", req.method(), req.uri()).into_bytes();
        data.extend_from_slice(&bytes);
        store.pepper.hash_bytes(&data).to_hex()
    };
    let record_key = hex(&Sha256::digest(format!("{}\n{key}", identity.admin_id).as_bytes()));
    req.set_payload(actix_web::dev::Payload::from(bytes));

    match claim(&store, &record_key, &fingerprint).await {
        Ok(Claim::Run) => {}
        Ok(Claim::Replay { status, body }) => {
            let mut response = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
            response.insert_header((HeaderName::from_static("idempotent-replayed"), HeaderValue::from_static("true")));
            response.content_type("application/json");
            return Ok(req.into_response(response.body(body)));
        }
        Err(e) => return Ok(req.error_response(e)),
    }

    let response = next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let _ = store.records.purge(&record_key).await;
            return Err(e);
        }
    };
    let status = response.status();
    let unknown = response.response().extensions().get::<crate::error::OutcomeUnknown>().is_some();
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let body = body::to_bytes(body).await.unwrap_or_default();
    let keep = status.is_success() || (status.is_client_error() && !matches!(status.as_u16(), 409 | 429));
    if keep || unknown {
        let record = if unknown {
            Record::Unknown { fingerprint }
        } else {
            Record::Done { fingerprint, status: status.as_u16(), body: redact(&body) }
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            // An unknown outcome is kept harder: without it the pending record is taken over
            // after `ABANDONED_SECS` and the command could run twice (NATS was failing just now).
            let attempts = if unknown { 5 } else { 1 };
            for attempt in 1..=attempts {
                match store.records.put(&record_key, bytes.clone().into()).await {
                    Ok(_) => break,
                    Err(e) if attempt == attempts => {
                        tracing::warn!(error = %e, unknown, "storing an idempotency record failed");
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
                }
            }
        }
    } else {
        let _ = store.records.purge(&record_key).await;
    }
    Ok(ServiceResponse::new(request, head.set_body(BoxBody::new(body))))
}

/// What to do with a request carrying an idempotency key.
enum Claim {
    /// Run it (the key is now ours).
    Run,
    /// Answer what the first request answered.
    Replay { status: u16, body: String },
}

/// A pending record older than this was left by a crashed replica and may be taken over.
const ABANDONED_SECS: i64 = 120;

/// Claims the key (compare-and-set in the KV bucket), or finds the earlier answer.
async fn claim(store: &Idempotency, record_key: &str, fingerprint: &str) -> Result<Claim, ApiError> {
    let unavailable = |e: &dyn std::fmt::Display| ApiError::unavailable("the idempotency store", e);
    let pending = || {
        serde_json::to_vec(&Record::Pending {
            fingerprint: fingerprint.to_owned(),
            started_at: chrono::Utc::now().timestamp(),
        })
        .unwrap_or_default()
    };
    match store.records.create(record_key, pending().into()).await {
        Ok(_) => return Ok(Claim::Run),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
        Err(e) => return Err(unavailable(&e)),
    }
    let entry = store.records.entry(record_key).await.map_err(|e| unavailable(&e))?;
    let Some(entry) = entry else {
        return Err(ApiError::conflict("a request with this Idempotency-Key just finished; retry").field(HEADER));
    };
    let different = || {
        ApiError::unprocessable(HEADER, "this Idempotency-Key was already used for a different request; use a new key")
    };
    match serde_json::from_slice::<Record>(&entry.value) {
        Ok(Record::Done { fingerprint: f, status, body }) if f == fingerprint => Ok(Claim::Replay { status, body }),
        Ok(Record::Unknown { fingerprint: f }) if f == fingerprint => Err(ApiError::conflict(
            "the first request with this Idempotency-Key may have been applied (the event log did not confirm \
             it): read the resource, and send the command again with a new key if it is missing",
        )
        .field(HEADER)),
        Ok(Record::Done { .. } | Record::Unknown { .. }) => Err(different()),
        Ok(Record::Pending { fingerprint: f, .. }) if f != fingerprint => Err(different()),
        Ok(Record::Pending { started_at, .. }) if chrono::Utc::now().timestamp() - started_at > ABANDONED_SECS => {
            match store.records.update(record_key, pending().into(), entry.revision).await {
                Ok(_) => Ok(Claim::Run),
                Err(_) => Err(in_progress()),
            }
        }
        _ => Err(in_progress()),
    }
}

fn in_progress() -> ApiError {
    ApiError::conflict("a request with this Idempotency-Key is still being processed; retry shortly").field(HEADER)
}

/// The answer without its secrets.
fn redact(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut map)) => {
            for field in SECRET_FIELDS {
                if let Some(v) = map.get_mut(*field) {
                    *v = serde_json::Value::Null;
                }
            }
            serde_json::Value::Object(map).to_string()
        }
        Ok(other) => other.to_string(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_kept_for_replay() {
        let body = br#"{"key":{"key_id":"key_1"},"access_key":"ak_secret","claude_code":{"shell":"export ANTHROPIC_BASE_URL=x/ak_secret"}}"#;
        let kept = redact(body);
        assert!(!kept.contains("ak_secret"), "{kept}");
        assert!(kept.contains("key_1"));
        let token = redact(br#"{"token_id":"tok_1","token":"ccpt_secret"}"#);
        assert!(!token.contains("ccpt_secret"));
    }

    /// A command whose change the event log never confirmed is not run again under its key:
    /// the retry is told to look instead (the first attempt may have been applied).
    #[actix_web::test]
    async fn a_change_of_unknown_outcome_is_not_run_again_under_its_key() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        use actix_web::{middleware::from_fn, test, App};

        let js = async_nats::jetstream::new(ccp_tests::nats().await);
        let bucket = ccp_tests::unique_name("idem-unknown");
        let records =
            ccp_runtime::streams::own_bucket(&js, bucket.clone(), std::time::Duration::from_secs(60), "test", 1)
                .await
                .unwrap();
        let pepper =
            ccp_schemas::secrets::access_key::KeyPepper::new(&ccp_schemas::secrets::SecretString::new("p".repeat(40)))
                .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(Idempotency { pepper, records }))
                .route(
                    "/v1/users",
                    web::post().to(move || {
                        counted.fetch_add(1, Ordering::SeqCst);
                        async { Err::<HttpResponse, _>(ApiError::outcome_unknown("the event log")) }
                    }),
                )
                .wrap(from_fn(idempotent))
                .wrap(from_fn(|req: ServiceRequest, next: Next<BoxBody>| async move {
                    req.extensions_mut().insert(Identity {
                        admin_id: ccp_schemas::ids::AdminId::from_ulid(ulid::Ulid(7)),
                        username: "root".into(),
                        method: crate::auth::AuthMethod::Session,
                        role: ccp_schemas::events::AdminRole::Admin,
                        team_scope: None,
                        csrf_token: None,
                    });
                    next.call(req).await
                })),
        )
        .await;
        let send = || {
            test::TestRequest::post()
                .uri("/v1/users")
                .insert_header((HEADER, "01JDQ7UNKNOWNOUTCOME000000"))
                .set_payload(r#"{"name":"dana"}"#)
                .to_request()
        };
        let first = test::call_service(&app, send()).await;
        assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = test::read_body_json(first).await;
        assert!(body["error"]["message"].as_str().unwrap().contains("may have been applied"), "{body}");

        let retry = test::call_service(&app, send()).await;
        assert_eq!(retry.status(), StatusCode::CONFLICT);
        let body: serde_json::Value = test::read_body_json(retry).await;
        assert_eq!(body["error"]["field"], HEADER, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("new key"), "{body}");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the command ran again under the same key");
        js.delete_key_value(bucket).await.unwrap();
    }
}
