//! The Bedrock models a key's account can call in its region, read from Bedrock itself
//! (`ListInferenceProfiles` and `ListFoundationModels`, with the key's Bedrock API key as bearer
//! token), so a failover can find a model the catalogue has no target for. Cached per key and
//! region; a stale listing is used while a fresh one is fetched in the background; a listing
//! that cannot be read (refused, garbage, too slow) counts as empty for a minute, with a
//! warning and a metric, and resolution falls back to the family and the key's default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ccp_schemas::catalogue::claude_name_in_bedrock_id;
use ccp_schemas::ids::AccessKeyId;
use ccp_schemas::secrets::envelope::BedrockApiKey;
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::route::Listed;

/// How long a listing that could not be read is not asked for again.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);
/// Most pages read of one listing (1 000 entries a page).
const MAX_PAGES: usize = 10;
/// Largest listing page read.
const MAX_PAGE_BYTES: usize = 4 << 20;

/// Why a listing could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request failed.
    #[error("the request failed: {0}")]
    Transport(String),
    /// Bedrock answered an error (e.g. 403 AccessDeniedException).
    #[error("Bedrock answered {status} {kind}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// `x-amzn-ErrorType`, cut at `:`.
        kind: String,
    },
    /// The answer is not the listing's JSON.
    #[error("the answer is not a listing: {0}")]
    Garbage(String),
}

impl ListingError {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "unreachable",
            Self::Refused { .. } => "refused",
            Self::Garbage(_) => "garbage",
        }
    }
}

#[derive(Debug)]
struct Cached {
    /// The registration the listing was read with (a rotated Bedrock key may be of another
    /// account: its listing is read again).
    registration: Vec<u8>,
    fetched: Instant,
    /// `None`: the last fetch failed.
    models: Option<Arc<Vec<Listed>>>,
    /// A refresh was handed out then (`None`: none is running). One that did not store anything
    /// within [`Listings::refresh_deadline`] (its request was dropped, the key could not be
    /// opened) is taken as abandoned.
    refreshing: Option<Instant>,
}

/// The cache of listings per key and region.
#[derive(Debug)]
pub struct Listings {
    cache: Mutex<HashMap<(AccessKeyId, String), Cached>>,
    /// Refresh interval (zero: listings are not used).
    pub refresh: Duration,
    /// Timeout of one listing call.
    pub timeout: Duration,
    /// The control-plane base URL (`None`: AWS's regional endpoint).
    pub endpoint: Option<String>,
}

/// What the cache holds for a key and region.
#[derive(Debug, Clone)]
pub enum Cache {
    /// Fresh enough.
    Fresh(Option<Arc<Vec<Listed>>>),
    /// Old: usable, a refresh is due (and this caller should start it).
    Stale(Option<Arc<Vec<Listed>>>),
    /// Nothing yet, or a failed fetch that may be retried: fetch now.
    Missing,
}

impl Listings {
    /// An empty cache.
    pub fn new(refresh: Duration, timeout: Duration, endpoint: Option<String>) -> Self {
        Self { cache: Mutex::new(HashMap::new()), refresh, timeout, endpoint }
    }

    /// Whether listings are used at all.
    pub fn enabled(&self) -> bool {
        !self.refresh.is_zero()
    }

    /// What is cached for `key` in `region` under its Bedrock key `registration` (any bytes
    /// unique to one registration: the sealed key's nonce); a `Stale` answer marks a refresh as
    /// started.
    pub fn cached(&self, key: AccessKeyId, region: &str, registration: &[u8]) -> Cache {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = cache.get_mut(&(key, region.to_owned())) else { return Cache::Missing };
        if entry.registration != registration {
            return Cache::Missing;
        }
        let age = entry.fetched.elapsed();
        let deadline = self.refresh_deadline();
        let refreshing = entry.refreshing.is_some_and(|since| since.elapsed() < deadline);
        match &entry.models {
            None if age >= RETRY_FAILED_AFTER && !refreshing => {
                entry.refreshing = Some(Instant::now());
                Cache::Missing
            }
            None => Cache::Fresh(None),
            Some(models) if age >= self.refresh && !refreshing => {
                entry.refreshing = Some(Instant::now());
                Cache::Stale(Some(models.clone()))
            }
            Some(models) => Cache::Fresh(Some(models.clone())),
        }
    }

    /// How long a handed-out refresh may take before another caller may start one: every page
    /// of both listings at the timeout, and opening the key.
    fn refresh_deadline(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }

    /// Stores a fetch's outcome.
    pub fn store(
        &self,
        key: AccessKeyId,
        region: &str,
        registration: &[u8],
        outcome: &Result<Vec<Listed>, ListingError>,
    ) {
        let models = outcome.as_ref().ok().map(|m| Arc::new(m.clone()));
        let entry = Cached { registration: registration.to_vec(), fetched: Instant::now(), models, refreshing: None };
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert((key, region.to_owned()), entry);
    }

    /// The base URL of the control plane in `region`.
    fn base(&self, region: &str) -> String {
        match &self.endpoint {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://bedrock.{region}.amazonaws.com"),
        }
    }

    /// Reads the listing for `region` with `api_key`, counting the outcome in `metrics`.
    pub async fn fetch(
        &self,
        client: &awc::Client,
        api_key: &BedrockApiKey,
        region: &str,
        metrics: &Metrics,
    ) -> Result<Vec<Listed>, ListingError> {
        let base = self.base(region);
        let outcome = match tokio::time::timeout(self.timeout, fetch_all(client, &base, api_key, region)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ListingError::Timeout(self.timeout)),
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => {
                tracing::warn!(region, error = %e, "the key's Bedrock model listing could not be read; failover resolution falls back to the model family and the key's default model");
                e.label()
            }
        };
        metrics.bedrock_listings.get_or_create(&crate::metrics::OutcomeLabels { outcome: label }).inc();
        outcome
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfilesPage {
    inference_profile_summaries: Vec<ProfileSummary>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSummary {
    inference_profile_id: String,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelsPage {
    model_summaries: Vec<ModelSummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelSummary {
    model_id: String,
    #[serde(default)]
    inference_types_supported: Vec<String>,
    model_lifecycle: Option<Lifecycle>,
}

#[derive(Deserialize)]
struct Lifecycle {
    status: Option<String>,
}

async fn get(client: &awc::Client, url: &str, api_key: &BedrockApiKey) -> Result<bytes::Bytes, ListingError> {
    let mut response = client
        .get(url)
        .insert_header(("authorization", format!("Bearer {}", api_key.expose())))
        .insert_header(("accept", "application/json"))
        .send()
        .await
        .map_err(|e| ListingError::Transport(e.to_string()))?;
    let status = response.status();
    let body = response.body().limit(MAX_PAGE_BYTES).await.map_err(|e| ListingError::Transport(e.to_string()))?;
    if !status.is_success() {
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).chars().take(64).collect())
            .unwrap_or_default();
        return Err(ListingError::Refused { status: status.as_u16(), kind });
    }
    Ok(body)
}

/// Both listings, every page (at most [`MAX_PAGES`] each): the active system-defined inference
/// profiles and the active foundation models callable on demand, of Anthropic's Claude models.
async fn fetch_all(
    client: &awc::Client,
    base: &str,
    api_key: &BedrockApiKey,
    region: &str,
) -> Result<Vec<Listed>, ListingError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = format!("{base}/inference-profiles?maxResults=1000&type=SYSTEM_DEFINED");
        if let Some(t) = &token {
            url.push_str("&nextToken=");
            url.push_str(&percent_encode(t));
        }
        let body = get(client, &url, api_key).await?;
        let page: ProfilesPage = serde_json::from_slice(&body).map_err(|e| ListingError::Garbage(e.to_string()))?;
        out.extend(page.inference_profile_summaries.into_iter().filter_map(profile));
        token = page.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let body = get(client, &format!("{base}/foundation-models"), api_key).await?;
    let page: ModelsPage = serde_json::from_slice(&body).map_err(|e| ListingError::Garbage(e.to_string()))?;
    out.extend(page.model_summaries.into_iter().filter_map(|m| foundation_model(m, region)));
    Ok(out)
}

fn profile(p: ProfileSummary) -> Option<Listed> {
    if p.status.as_deref().is_some_and(|s| s != "ACTIVE") {
        return None;
    }
    let claude_name = claude_name_in_bedrock_id(&p.inference_profile_id)?.to_owned();
    let (scope, _) = p.inference_profile_id.split_once(".anthropic.")?;
    Some(Listed { claude_name, scope: scope.to_owned(), model_id: p.inference_profile_id })
}

fn foundation_model(m: ModelSummary, region: &str) -> Option<Listed> {
    let active = m.model_lifecycle.and_then(|l| l.status).is_none_or(|s| s == "ACTIVE");
    if !active || !m.inference_types_supported.iter().any(|t| t == "ON_DEMAND") {
        return None;
    }
    let claude_name = claude_name_in_bedrock_id(&m.model_id)?.to_owned();
    Some(Listed { claude_name, scope: region.to_owned(), model_id: m.model_id })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_and_on_demand_models_are_listed_with_their_scope() {
        let p =
            |id: &str, status: &str| ProfileSummary { inference_profile_id: id.into(), status: Some(status.into()) };
        let l = profile(p("eu.anthropic.claude-opus-5-5-v1:0", "ACTIVE")).unwrap();
        assert_eq!((l.claude_name.as_str(), l.scope.as_str()), ("claude-opus-5-5", "eu"));
        assert!(profile(p("us.anthropic.claude-opus-5-5-v1:0", "LEGACY")).is_none());
        assert!(profile(p("us.amazon.nova-pro-v1:0", "ACTIVE")).is_none());
        let m = |types: &[&str]| ModelSummary {
            model_id: "anthropic.claude-haiku-4-5-20251001-v1:0".into(),
            inference_types_supported: types.iter().map(|t| (*t).to_owned()).collect(),
            model_lifecycle: None,
        };
        let l = foundation_model(m(&["ON_DEMAND"]), "eu-central-1").unwrap();
        assert_eq!((l.claude_name.as_str(), l.scope.as_str()), ("claude-haiku-4-5-20251001", "eu-central-1"));
        assert!(foundation_model(m(&["INFERENCE_PROFILE"]), "eu-central-1").is_none());
    }

    #[test]
    fn tokens_are_percent_encoded() {
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }

    #[test]
    fn the_cache_hands_out_one_refresh_at_a_time() {
        let l = Listings::new(Duration::from_secs(0), Duration::from_secs(1), None);
        let key = AccessKeyId::new();
        assert!(matches!(l.cached(key, "us-east-1", b"r1"), Cache::Missing));
        l.store(key, "us-east-1", b"r1", &Ok(vec![]));
        // Refresh interval zero: at once stale, and only the first caller refreshes.
        assert!(matches!(l.cached(key, "us-east-1", b"r1"), Cache::Stale(Some(_))));
        assert!(matches!(l.cached(key, "us-east-1", b"r1"), Cache::Fresh(Some(_))));
        l.store(key, "us-east-1", b"r1", &Err(ListingError::Garbage("x".into())));
        assert!(matches!(l.cached(key, "us-east-1", b"r1"), Cache::Fresh(None)), "a failure is not retried at once");
        // A refresh handed out but never stored (its request was dropped) is abandoned after the
        // deadline: another caller gets it.
        let quick = Listings::new(Duration::from_secs(0), Duration::from_millis(1), None);
        quick.store(key, "eu-west-1", b"r1", &Ok(vec![]));
        assert!(matches!(quick.cached(key, "eu-west-1", b"r1"), Cache::Stale(_)));
        assert!(matches!(quick.cached(key, "eu-west-1", b"r1"), Cache::Fresh(_)));
        if let Some(e) = quick.cache.lock().unwrap().get_mut(&(key, "eu-west-1".to_owned())) {
            e.refreshing = Some(Instant::now() - quick.refresh_deadline());
        }
        assert!(
            matches!(quick.cached(key, "eu-west-1", b"r1"), Cache::Stale(_)),
            "the abandoned refresh is handed out again"
        );
        // Another Bedrock key registered for the access key: read again.
        assert!(matches!(l.cached(key, "us-east-1", b"r2"), Cache::Missing));
        assert!(matches!(l.cached(key, "eu-west-1", b"r1"), Cache::Missing));
    }
}
