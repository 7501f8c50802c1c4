//! Failover readiness: is an access key's Bedrock API key able to take a failover now? Checked
//! with calls that cost nothing — `CountTokens` (aws-sdk-bedrockruntime) on each Bedrock model
//! the key would fail over to, and `ListInferenceProfiles` (the model listing a failover reads
//! for models the catalogue has no target for) — when the key is registered or rotated, when
//! an admin asks (`POST /v1/keys/{id}/bedrock-key/check`), and periodically. Each check that is
//! recorded is a `bedrock_key_checked` event on the key (audited; the projector raises
//! `bedrock_key_not_ready` when a key turns not ready). The Bedrock API key is opened for the
//! check and dropped with it.

use std::time::Duration;

use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{Region, Token};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{CountTokensInput, InvokeModelTokensRequest};
use ccp_schemas::catalogue::{self, Catalogue};
use ccp_schemas::events::{BedrockReadiness, BedrockSettings, ModelReadiness};
use ccp_schemas::secrets::envelope::BedrockApiKey;

/// Most models one check asks about.
const MAX_MODELS: usize = 16;
/// The smallest Messages body Bedrock accepts, for CountTokens.
const PROBE_BODY: &str =
    r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[{"role":"user","content":"ping"}]}"#;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The verdict.
    pub readiness: BedrockReadiness,
    /// Each model checked.
    pub models: Vec<ModelReadiness>,
    /// Whether the listing could be read.
    pub listing: BedrockReadiness,
}

/// The Bedrock models a failover of a key in `region` may call: its default model, then each
/// catalogued model's target for the region (the listing covers the others).
pub fn models_to_check(catalogue: &Catalogue, settings: &BedrockSettings, region: &str) -> Vec<String> {
    let mut out: Vec<String> = settings.default_model.iter().cloned().collect();
    for entry in catalogue.entries() {
        if let Some(t) = catalogue::target_for(&entry.bedrock, region) {
            if !out.contains(&t.model_id) {
                out.push(t.model_id.clone());
            }
        }
    }
    out.truncate(MAX_MODELS);
    out
}

/// The verdict of several answers: the key refused beats everything (nothing works), then
/// unreachable and throttled (nothing is known), then a model not enabled; else ready.
pub fn verdict(answers: impl IntoIterator<Item = BedrockReadiness>) -> BedrockReadiness {
    let rank = |r: BedrockReadiness| match r {
        BedrockReadiness::KeyRefused => 4,
        BedrockReadiness::Unreachable => 3,
        BedrockReadiness::Throttled => 2,
        BedrockReadiness::ModelNotEnabled => 1,
        BedrockReadiness::Ready => 0,
    };
    answers.into_iter().max_by_key(|r| rank(*r)).unwrap_or(BedrockReadiness::Ready)
}

/// The foundation-model id a target routes to: `us.anthropic.claude-x-v1:0` →
/// `anthropic.claude-x-v1:0` (a profile's geography prefix dropped); ARNs and plain ids as given.
pub fn foundation_id(target: &str) -> &str {
    if target.starts_with("arn:") {
        return target;
    }
    match target.split_once('.') {
        Some((prefix, rest)) if rest.starts_with("anthropic.") && !prefix.contains(':') => rest,
        _ => target,
    }
}

/// What an AWS error code says about readiness.
pub fn classify(status: Option<u16>, code: Option<&str>) -> BedrockReadiness {
    match code.unwrap_or_default() {
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "IncompleteSignature"
        | "MissingAuthenticationTokenException" => BedrockReadiness::KeyRefused,
        // The key works; the account may not use this model (not enabled, or the policy
        // does not allow it).
        "AccessDeniedException" | "ResourceNotFoundException" | "ValidationException" => {
            BedrockReadiness::ModelNotEnabled
        }
        "ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException" => {
            BedrockReadiness::Throttled
        }
        _ => match status {
            Some(401) => BedrockReadiness::KeyRefused,
            Some(403) => BedrockReadiness::ModelNotEnabled,
            Some(429) => BedrockReadiness::Throttled,
            _ => BedrockReadiness::Unreachable,
        },
    }
}

/// Runs checks; one per admin API process.
pub struct Checker {
    runtime: aws_sdk_bedrockruntime::Client,
    http: reqwest::Client,
    endpoint: Option<String>,
}

impl Checker {
    /// Against `endpoint` (a private endpoint or a local fake), else AWS's regional endpoints,
    /// connecting as `egress` says.
    pub fn new(
        endpoint: Option<&str>,
        default_region: &str,
        timeout: Duration,
        egress: &ccp_runtime::egress::Egress,
    ) -> anyhow::Result<Self> {
        let timeouts = TimeoutConfig::builder().operation_timeout(timeout).build();
        Ok(Self {
            runtime: ccp_runtime::bedrock::client(endpoint, default_region, timeouts, egress)?,
            http: egress.reqwest_builder()?.timeout(timeout).redirect(reqwest::redirect::Policy::none()).build()?,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
        })
    }

    /// Checks `api_key` in `region` on `models`.
    pub async fn check(&self, api_key: &BedrockApiKey, region: &str, models: &[String]) -> Report {
        let listing = self.listing(api_key, region).await;
        let mut checked = Vec::with_capacity(models.len());
        for model_id in models {
            let readiness = self.count_tokens(api_key, region, model_id).await;
            checked.push(ModelReadiness { model_id: model_id.clone(), readiness });
            if readiness == BedrockReadiness::KeyRefused {
                break; // every other call would be refused too
            }
        }
        let readiness = verdict(checked.iter().map(|m| m.readiness).chain(
            // A refused key shows on the listing too, even with no model to check.
            (listing == BedrockReadiness::KeyRefused || checked.is_empty()).then_some(listing),
        ));
        Report { readiness, models: checked, listing }
    }

    async fn count_tokens(&self, api_key: &BedrockApiKey, region: &str, target: &str) -> BedrockReadiness {
        // CountTokens takes a foundation-model id: a cross-region profile (`us.anthropic.…`) is
        // checked as the model it routes to.
        let model_id = foundation_id(target);
        let input = match InvokeModelTokensRequest::builder().body(Blob::new(PROBE_BODY)).build() {
            Ok(i) => i,
            Err(_) => return BedrockReadiness::Unreachable,
        };
        let overrides = aws_sdk_bedrockruntime::Config::builder()
            .bearer_token(Token::new(api_key.expose().to_owned(), None))
            .region(Region::new(region.to_owned()));
        let sent = self
            .runtime
            .count_tokens()
            .model_id(model_id)
            .input(CountTokensInput::InvokeModel(input))
            .customize()
            .config_override(overrides)
            .send()
            .await;
        match sent {
            Ok(_) => BedrockReadiness::Ready,
            // A model CountTokens does not support answers ValidationException: the key was
            // accepted, the model is not known to be refused, so it does not count against it.
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("ValidationException") => {
                tracing::info!(model_id, "CountTokens does not check this model; its readiness is not known");
                BedrockReadiness::Ready
            }
            Err(SdkError::ServiceError(e)) => classify(Some(e.raw().status().as_u16()), e.err().code()),
            Err(e) => {
                tracing::info!(model_id, error = %aws_sdk_bedrockruntime::error::DisplayErrorContext(&e), "Bedrock readiness check could not reach Bedrock");
                BedrockReadiness::Unreachable
            }
        }
    }

    async fn listing(&self, api_key: &BedrockApiKey, region: &str) -> BedrockReadiness {
        let base = match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://bedrock.{region}.amazonaws.com"),
        };
        let sent = self
            .http
            .get(format!("{base}/inference-profiles?maxResults=1&type=SYSTEM_DEFINED"))
            .bearer_auth(api_key.expose())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
                Ok(v) if v.get("inferenceProfileSummaries").is_some_and(serde_json::Value::is_array) => {
                    BedrockReadiness::Ready
                }
                _ => BedrockReadiness::Unreachable,
            },
            Ok(r) => {
                let code = r
                    .headers()
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(':').next().unwrap_or(v).to_owned());
                classify(Some(r.status().as_u16()), code.as_deref())
            }
            Err(_) => BedrockReadiness::Unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_answer_decides() {
        use BedrockReadiness::*;
        assert_eq!(verdict([Ready, Ready]), Ready);
        assert_eq!(verdict([Ready, ModelNotEnabled]), ModelNotEnabled);
        assert_eq!(verdict([ModelNotEnabled, Throttled]), Throttled);
        assert_eq!(verdict([Throttled, KeyRefused, Unreachable]), KeyRefused);
        assert_eq!(verdict([]), Ready);
    }

    #[test]
    fn profiles_are_counted_as_their_foundation_model() {
        assert_eq!(
            foundation_id("us.anthropic.claude-opus-4-1-20250805-v1:0"),
            "anthropic.claude-opus-4-1-20250805-v1:0"
        );
        assert_eq!(foundation_id("global.anthropic.claude-opus-5-5-v1:0"), "anthropic.claude-opus-5-5-v1:0");
        assert_eq!(foundation_id("anthropic.claude-3-haiku-20240307-v1:0"), "anthropic.claude-3-haiku-20240307-v1:0");
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        assert_eq!(foundation_id(arn), arn);
    }

    #[test]
    fn aws_errors_are_classified() {
        use BedrockReadiness::*;
        assert_eq!(classify(Some(403), Some("UnrecognizedClientException")), KeyRefused);
        assert_eq!(classify(Some(403), Some("AccessDeniedException")), ModelNotEnabled);
        assert_eq!(classify(Some(429), Some("ThrottlingException")), Throttled);
        assert_eq!(classify(Some(503), Some("ServiceUnavailableException")), Unreachable);
        assert_eq!(classify(Some(403), None), ModelNotEnabled);
    }

    #[test]
    fn a_keys_models_are_its_default_then_the_catalogues_targets_for_its_region() {
        let settings = BedrockSettings { region: None, default_model: Some("us.anthropic.claude-x-v1:0".into()) };
        let models = models_to_check(&Catalogue::shipped(), &settings, "eu-west-1");
        assert_eq!(models[0], "us.anthropic.claude-x-v1:0");
        assert!(models.contains(&"global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_owned()));
        // `us.` targets do not cover an EU key.
        assert!(!models.iter().any(|m| m.starts_with("us.anthropic.claude-opus-4-1")));
    }
}
