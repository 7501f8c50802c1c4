//! The HTTP side: one request helper that adds the bearer token and an `Idempotency-Key` on
//! every unsafe method, retries transport failures with the same key (so a retry cannot apply a
//! command twice), and turns the API's error body into a [`CliError`].

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// How a run ends badly; [`CliError::exit_code`] is the process's exit status.
#[derive(Debug)]
pub enum CliError {
    /// A mistake on the command line (exit 2).
    Usage(String),
    /// The API answered with an error (exit 1).
    Api(ApiFailure),
    /// Credentials are missing or unusable before anything is sent (exit 1).
    NotLoggedIn(String),
    /// A name given for a user or key fits none, or several (exit 1).
    Lookup(String),
    /// The server could not be reached (exit 3).
    Unreachable { url: String, detail: String },
    /// Anything else: a local file, stdin, an unexpected answer (exit 1).
    Other(anyhow::Error),
}

/// An error answer of the API: `{"error":{"type","message","field"},"request_id"}`.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.type`, when the body had one.
    pub kind: Option<String>,
    /// `error.message`, or a description of the non-JSON answer.
    pub message: String,
    /// `error.field`.
    pub field: Option<String>,
    /// `request_id` (or the `x-request-id` header).
    pub request_id: Option<String>,
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Api(_) | Self::NotLoggedIn(_) | Self::Lookup(_) | Self::Other(_) => 1,
            Self::Unreachable { .. } => 3,
        }
    }

    /// A second line telling what to do next, where there is an obvious one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::Api(f) if f.status == StatusCode::UNAUTHORIZED => {
                Some("log in again with `ccpctl login`, or set CCPCTL_TOKEN to a valid API token")
            }
            Self::NotLoggedIn(_) => Some("run `ccpctl login`, or set CCPCTL_TOKEN to an API token"),
            Self::Api(f) if f.status == StatusCode::NOT_FOUND && f.message.starts_with("no route") => {
                Some("this server does not offer that endpoint (an older ccp-admin?)")
            }
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::NotLoggedIn(m) | Self::Lookup(m) => f.write_str(m),
            Self::Api(a) => {
                f.write_str(&a.message)?;
                if let Some(field) = &a.field {
                    write!(f, " (field: {field})")?;
                }
                if let Some(id) = &a.request_id {
                    write!(f, " [request {id}]")?;
                }
                Ok(())
            }
            Self::Unreachable { url, detail } => write!(f, "cannot reach the admin API at {url}: {detail}"),
            Self::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Other(e.into())
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

/// Results of commands.
pub type CliResult<T> = Result<T, CliError>;

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    /// The JSON body (`Null` for an empty body, e.g. 204).
    pub body: Value,
    /// The `ETag` (aggregate version), to send back as `If-Match`.
    pub etag: Option<String>,
}

impl Answer {
    /// The body as an API type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> CliResult<T> {
        serde_json::from_value(self.body.clone()).map_err(|e| {
            CliError::Other(anyhow::anyhow!(
                "the server's answer has an unexpected shape ({e}); is ccpctl older than it?"
            ))
        })
    }
}

/// Attempts per request (transport failures only: connection refused, reset, timeout).
const ATTEMPTS: u32 = 3;

/// The credential a request carries.
#[derive(Clone, Copy)]
enum Credential<'a> {
    /// The admin's token (refused before sending when there is none); none for login.
    Admin,
    /// A developer's access key, in `x-ccp-access-key` (`GET /v1/self`).
    AccessKey(&'a str),
}

/// The admin API at one URL, with or without credentials.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// Why there is no token, for the message when a command needs one.
    no_token_reason: String,
}

/// Checks and normalises a `--url`: http(s), no query or fragment, no trailing slash.
pub fn normalize_url(raw: &str) -> CliResult<String> {
    let url = Url::parse(raw.trim())
        .map_err(|e| CliError::Usage(format!("--url `{raw}` is not a URL ({e}); e.g. http://127.0.0.1:8081")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CliError::Usage(format!("--url `{raw}` must be an http:// or https:// URL")));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(CliError::Usage(format!("--url `{raw}` must not have credentials, a query or a fragment")));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl Client {
    /// A client for `base` (already normalised); `token` is the bearer credential, if any.
    pub fn new(base: &str, token: Option<String>, no_token_reason: String) -> CliResult<Self> {
        let base = Url::parse(base).map_err(|e| CliError::Usage(format!("--url `{base}`: {e}")))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("ccpctl/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Other(anyhow::anyhow!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, base, token, no_token_reason })
    }

    /// The base URL as given (normalised).
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of a path given as segments (each percent-encoded, so an id cannot change the path).
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> CliResult<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| CliError::Usage(format!("--url {} cannot have paths", self.base())))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// GET without a query.
    pub async fn get(&self, segments: &[&str]) -> CliResult<Answer> {
        self.send(Method::GET, segments, &[], None, None, Credential::Admin).await
    }

    /// GET with query parameters.
    pub async fn get_query(&self, segments: &[&str], query: &[(&str, String)]) -> CliResult<Answer> {
        self.send(Method::GET, segments, query, None, None, Credential::Admin).await
    }

    /// POST with an optional JSON body.
    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> CliResult<Answer> {
        self.send(Method::POST, segments, &[], body, None, Credential::Admin).await
    }

    /// PUT a JSON body, optionally only if the resource is still at version `if_match`.
    pub async fn put(&self, segments: &[&str], body: &Value, if_match: Option<&str>) -> CliResult<Answer> {
        self.send(Method::PUT, segments, &[], Some(body), if_match, Credential::Admin).await
    }

    /// PATCH a JSON body.
    pub async fn patch(&self, segments: &[&str], body: &Value) -> CliResult<Answer> {
        self.send(Method::PATCH, segments, &[], Some(body), None, Credential::Admin).await
    }

    /// DELETE.
    pub async fn delete(&self, segments: &[&str]) -> CliResult<Answer> {
        self.send(Method::DELETE, segments, &[], None, None, Credential::Admin).await
    }

    /// GET with a developer's access key instead of the admin's credentials.
    pub async fn get_as_developer(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        access_key: &str,
    ) -> CliResult<Answer> {
        self.send(Method::GET, segments, query, None, None, Credential::AccessKey(access_key)).await
    }

    /// Sends one request (retrying transport failures) and returns its successful answer.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        if_match: Option<&str>,
        credential: Credential<'_>,
    ) -> CliResult<Answer> {
        let url = self.url(segments, query)?;
        let (token, access_key) = match (credential, &self.token) {
            (Credential::AccessKey(k), _) => (None, Some(k)),
            (Credential::Admin, _)
                if segments == ["v1", "auth", "login"] || segments == ["v1", "auth", "sso", "token"] =>
            {
                (None, None)
            }
            (Credential::Admin, Some(t)) => (Some(t.as_str()), None),
            (Credential::Admin, None) => return Err(CliError::NotLoggedIn(self.no_token_reason.clone())),
        };
        // One key per request, reused by its retries: the server runs the command at most once.
        let idempotency_key = (method != Method::GET).then(|| ulid::Ulid::new().to_string());
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url.clone()).header("accept", "application/json");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(k) = access_key {
                req = req.header(ccp_admin_api::routes::self_service::ACCESS_KEY_HEADER, k);
            }
            if let Some(k) = &idempotency_key {
                req = req.header("idempotency-key", k);
            }
            if let Some(v) = if_match {
                req = req.header("if-match", v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) => break r,
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tokio::time::sleep(Duration::from_millis(250 * 3u64.pow(attempt - 1))).await;
                }
                Err(e) => return Err(self.transport_error(&e)),
            }
        };
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let etag = header("etag");
        let replayed = header("idempotent-replayed").is_some_and(|v| v == "true");
        let header_request_id = header("x-request-id");
        let text = response.text().await.map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).map_err(|e| {
                    CliError::Other(anyhow::anyhow!("{} answered {status} with a body that is not JSON ({e})", url))
                })?
            };
            if replayed {
                // Only a retry of this very request can be replayed; its secrets are `null` then.
                crate::output::note("note: the server answered with the replay of this request's first attempt");
            }
            return Ok(Answer { body, etag });
        }
        Err(CliError::Api(failure(status, &text, header_request_id)))
    }

    fn transport_error(&self, e: &reqwest::Error) -> CliError {
        let detail = if e.is_connect() {
            "connection failed (is ccp-admin running there?)".to_owned()
        } else if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            // The innermost cause says most (e.g. "connection reset by peer").
            let mut source: &dyn std::error::Error = e;
            while let Some(next) = source.source() {
                source = next;
            }
            source.to_string()
        };
        CliError::Unreachable { url: self.base().to_owned(), detail }
    }
}

/// The error of a non-success answer, from the API's error body when there is one.
fn failure(status: StatusCode, text: &str, header_request_id: Option<String>) -> ApiFailure {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = &body["error"];
    let text_of = |v: &Value| v.as_str().map(str::to_owned);
    let message = text_of(&error["message"]).unwrap_or_else(|| {
        let snippet: String = text.trim().chars().take(200).collect();
        if snippet.is_empty() {
            format!("the server answered {status}")
        } else {
            format!("the server answered {status}: {snippet}")
        }
    });
    ApiFailure {
        status,
        kind: text_of(&error["type"]),
        message,
        field: text_of(&error["field"]),
        request_id: text_of(&body["request_id"]).or(header_request_id),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_render_message_field_and_request() {
        let body = r#"{"error":{"type":"unprocessable","message":"must be 1–64 characters","field":"name"},"request_id":"req_1"}"#;
        let e = CliError::Api(failure(StatusCode::UNPROCESSABLE_ENTITY, body, None));
        assert_eq!(e.to_string(), "must be 1–64 characters (field: name) [request req_1]");
        assert_eq!(e.exit_code(), 1);
        let e = CliError::Api(failure(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>", Some("req_2".into())));
        assert_eq!(e.to_string(), "the server answered 502 Bad Gateway: <html>bad gateway</html> [request req_2]");
    }

    #[test]
    fn urls_are_checked_and_ids_cannot_escape_the_path() {
        assert_eq!(normalize_url("http://127.0.0.1:8081/").unwrap(), "http://127.0.0.1:8081");
        assert_eq!(normalize_url("https://ops.example.com/admin/").unwrap(), "https://ops.example.com/admin");
        assert!(matches!(normalize_url("ftp://x"), Err(CliError::Usage(_))));
        assert!(matches!(normalize_url("localhost:8081"), Err(CliError::Usage(_))));
        let c = Client::new("https://ops.example.com/admin", None, String::new()).unwrap();
        let url = c.url(&["v1", "users", "../keys?x=1"], &[("search", "a b".into())]).unwrap();
        assert_eq!(url.as_str(), "https://ops.example.com/admin/v1/users/..%2Fkeys%3Fx=1?search=a+b");
    }
}
