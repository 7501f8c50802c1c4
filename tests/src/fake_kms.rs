//! A fake AWS KMS speaking the AWS JSON 1.1 protocol (`X-Amz-Target: TrentService.Encrypt` /
//! `TrentService.Decrypt`), for the KMS master-key provider. It "encrypts" with AES-256-GCM
//! under its own random key and checks the key id and encryption context like KMS does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct KmsCall {
    /// `Encrypt` or `Decrypt`.
    pub operation: String,
    /// `KeyId` of the request.
    pub key_id: Option<String>,
    /// `EncryptionContext` of the request.
    pub context: BTreeMap<String, String>,
    /// Whether the request was signed (SigV4 `Authorization` header present).
    pub signed: bool,
}

struct State {
    key_id: String,
    cipher: Aes256Gcm,
    calls: Mutex<Vec<KmsCall>>,
}

/// A running fake KMS holding one key.
pub struct FakeKms {
    addr: SocketAddr,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .insert_header(("x-amzn-ErrorType", kind))
        .content_type("application/x-amz-json-1.1")
        .body(serde_json::json!({"__type": kind, "message": message}).to_string())
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<Arc<State>>) -> HttpResponse {
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(400, "SerializationException", "not JSON");
    };
    let context: BTreeMap<String, String> = json["EncryptionContext"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    let key_id = json["KeyId"].as_str().map(str::to_owned);
    let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
    state.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(KmsCall {
        operation: operation.clone(),
        key_id: key_id.clone(),
        context: context.clone(),
        signed: req.headers().get("authorization").is_some_and(|v| v.as_bytes().starts_with(b"AWS4-HMAC-SHA256")),
    });
    if key_id.as_deref() != Some(state.key_id.as_str()) {
        return error(400, "NotFoundException", "Key does not exist");
    }
    let aad = serde_json::to_vec(&context).unwrap_or_default();
    match operation.as_str() {
        "Encrypt" => {
            let Some(plain) = json["Plaintext"].as_str().and_then(|p| STANDARD.decode(p).ok()) else {
                return error(400, "ValidationException", "Plaintext missing");
            };
            let nonce: [u8; 12] = rand_nonce();
            let Ok(ct) = state.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad }) else {
                return error(500, "KMSInternalException", "encrypt");
            };
            let blob = [nonce.as_slice(), ct.as_slice()].concat();
            HttpResponse::Ok()
                .content_type("application/x-amz-json-1.1")
                .body(serde_json::json!({"CiphertextBlob": STANDARD.encode(blob), "KeyId": state.key_id}).to_string())
        }
        "Decrypt" => {
            let Some(blob) = json["CiphertextBlob"].as_str().and_then(|p| STANDARD.decode(p).ok()) else {
                return error(400, "ValidationException", "CiphertextBlob missing");
            };
            if blob.len() < 12 {
                return error(400, "InvalidCiphertextException", "short");
            }
            let (nonce, ct) = blob.split_at(12);
            match state.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }) {
                Ok(plain) => HttpResponse::Ok()
                    .content_type("application/x-amz-json-1.1")
                    .body(serde_json::json!({"Plaintext": STANDARD.encode(plain), "KeyId": state.key_id}).to_string()),
                Err(_) => error(400, "InvalidCiphertextException", "The ciphertext or context is invalid"),
            }
        }
        _ => error(400, "UnknownOperationException", "unknown operation"),
    }
}

fn rand_nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    let _ = getrandom::fill(&mut n);
    n
}

impl FakeKms {
    /// Starts the fake on 127.0.0.1:0 with one key named `key_id`.
    pub fn start(key_id: &str) -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(std::io::Error::other)?;
        let state = Arc::new(State { key_id: key_id.to_owned(), cipher, calls: Mutex::new(Vec::new()) });
        let (tx, rx) = std::sync::mpsc::channel();
        let data = state.clone();
        std::thread::spawn(move || {
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new().app_data(web::Data::new(data.clone())).default_service(web::to(handle))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0));
                match server {
                    Ok(server) => {
                        let addr = server.addrs()[0];
                        let server = server.run();
                        let _ = tx.send(Ok((addr, server.handle())));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        let (addr, handle) = rx.recv().map_err(std::io::Error::other)??;
        Ok(Self { addr, state, handle })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<KmsCall> {
        self.state.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl Drop for FakeKms {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}
