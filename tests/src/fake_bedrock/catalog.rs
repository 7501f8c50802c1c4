//! The control plane's listings: what `ListFoundationModels` and `ListInferenceProfiles`
//! answer, their query filters and pagination.
//!
//! The shapes are botocore's service model `bedrock/2023-04-20/service-2.json`
//! (`FoundationModelSummary`, `InferenceProfileSummary`, `FoundationModelLifecycle`,
//! `InferenceProfileModel`); timestamps are ISO 8601 strings (`"timestampFormat":
//! "iso8601"`). The default content follows what the real service lists in `us-east-1`: a
//! foundation model per Claude model (newer ones only through inference profiles:
//! `inferenceTypesSupported: ["INFERENCE_PROFILE"]`) and a `SYSTEM_DEFINED` profile per
//! geography, named `<Geography> Anthropic <model name>`, whose `models` are the foundation
//! models of the regions it routes to (a `global.` profile also lists the region-less ARN
//! `arn:aws:bedrock:::foundation-model/…`, as the real service does).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Region of the ARNs of the default catalog.
pub const CATALOG_REGION: &str = "us-east-1";

/// Account id of the inference-profile ARNs of the default catalog.
pub const CATALOG_ACCOUNT_ID: &str = "123456789012";

/// The Claude models of the default catalog: (foundation model id, model name, profile
/// geographies).
pub const DEFAULT_CLAUDE_MODELS: &[(&str, &str, &[&str])] = &[
    ("anthropic.claude-opus-5-5-v1:0", "Claude Opus 5.5", &["global", "us"]),
    ("anthropic.claude-opus-4-8-v1:0", "Claude Opus 4.8", &["global", "us"]),
    ("anthropic.claude-opus-4-5-20251101-v1:0", "Claude Opus 4.5", &["global", "us"]),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", "Claude Sonnet 4.5", &["global", "us", "eu"]),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", "Claude Haiku 4.5", &["global", "us"]),
    ("anthropic.claude-opus-4-1-20250805-v1:0", "Claude Opus 4.1", &["us"]),
    ("anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 Haiku", &["us"]),
];

/// What the listings list, before filters and pagination. As JSON (`POST /_fake/catalog`,
/// `GET /_fake/catalog`) its members are the response members of the two operations:
/// `{"modelSummaries": [FoundationModelSummary…], "inferenceProfileSummaries":
/// [InferenceProfileSummary…]}` (either may be left out: empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BedrockCatalog {
    /// What `ListFoundationModels` lists.
    #[serde(default)]
    pub model_summaries: Vec<FoundationModelSummary>,
    /// What `ListInferenceProfiles` lists.
    #[serde(default)]
    pub inference_profile_summaries: Vec<InferenceProfileSummary>,
}

/// AWS `FoundationModelSummary` (`modelArn` and `modelId` required).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundationModelSummary {
    /// `arn:aws:bedrock:<region>::foundation-model/<modelId>`.
    pub model_arn: String,
    /// `anthropic.claude-sonnet-4-5-20250929-v1:0`.
    pub model_id: String,
    /// `Claude Sonnet 4.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// `Anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// `TEXT`, `IMAGE`, `EMBEDDING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_modalities: Option<Vec<String>>,
    /// `TEXT`, `IMAGE`, `EMBEDDING`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<String>>,
    /// Whether `InvokeModelWithResponseStream` works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_streaming_supported: Option<bool>,
    /// `FINE_TUNING`, `CONTINUED_PRE_TRAINING`, `DISTILLATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customizations_supported: Option<Vec<String>>,
    /// `ON_DEMAND`, `PROVISIONED` (and, on the wire though not in the model's enum,
    /// `INFERENCE_PROFILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_types_supported: Option<Vec<String>>,
    /// `{"status": "ACTIVE" | "LEGACY", …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_lifecycle: Option<FoundationModelLifecycle>,
}

/// AWS `FoundationModelLifecycle`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundationModelLifecycle {
    /// `ACTIVE` or `LEGACY`.
    pub status: String,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_of_life_time: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life_time: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_time: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_extended_access_time: Option<String>,
}

/// AWS `InferenceProfileSummary` (all but `description`, `createdAt`, `updatedAt`
/// required).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceProfileSummary {
    /// `Global Anthropic Claude Sonnet 4.5`.
    pub inference_profile_name: String,
    /// `Routes requests to …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// `arn:aws:bedrock:<region>:<account>:inference-profile/<id>`.
    pub inference_profile_arn: String,
    /// The foundation models it routes to (1 to 5).
    pub models: Vec<InferenceProfileModel>,
    /// `global.anthropic.claude-sonnet-4-5-20250929-v1:0` (what `InvokeModel` takes).
    pub inference_profile_id: String,
    /// `ACTIVE`.
    pub status: String,
    /// `SYSTEM_DEFINED` or `APPLICATION`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// AWS `InferenceProfileModel`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceProfileModel {
    /// A foundation model ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_arn: Option<String>,
}

impl Default for BedrockCatalog {
    /// The default catalog: [`DEFAULT_CLAUDE_MODELS`] (Claude 3 Haiku also `ON_DEMAND`).
    fn default() -> Self {
        let mut catalog = Self::empty();
        for (id, name, geographies) in DEFAULT_CLAUDE_MODELS {
            catalog = catalog.with_claude(id, name, geographies);
        }
        for m in &mut catalog.model_summaries {
            if m.model_id == "anthropic.claude-3-haiku-20240307-v1:0" {
                m.inference_types_supported = Some(vec!["ON_DEMAND".to_owned()]);
            }
        }
        catalog
    }
}

impl BedrockCatalog {
    /// Nothing listed.
    pub fn empty() -> Self {
        Self { model_summaries: Vec::new(), inference_profile_summaries: Vec::new() }
    }

    /// With a Claude foundation model `model_id` (`anthropic.claude-opus-5-5-v1:0`) called
    /// `model_name` (`Claude Opus 5.5`), served through inference profiles only, and a
    /// `SYSTEM_DEFINED` profile `<geography>.<model_id>` per geography (`global`, `us`, `eu`,
    /// `apac`, `jp`, `au`, `ca`, `us-gov`). Timestamps: the date inside the id
    /// (`…-20250929-…` → `2025-09-29T00:00:00Z`), else `2026-01-15T00:00:00Z`.
    pub fn with_claude(mut self, model_id: &str, model_name: &str, geographies: &[&str]) -> Self {
        let created = release_time(model_id);
        self.model_summaries.push(FoundationModelSummary {
            model_arn: foundation_model_arn(CATALOG_REGION, model_id),
            model_id: model_id.to_owned(),
            model_name: Some(model_name.to_owned()),
            provider_name: Some("Anthropic".to_owned()),
            input_modalities: Some(vec!["TEXT".to_owned(), "IMAGE".to_owned()]),
            output_modalities: Some(vec!["TEXT".to_owned()]),
            response_streaming_supported: Some(true),
            customizations_supported: Some(Vec::new()),
            inference_types_supported: Some(vec!["INFERENCE_PROFILE".to_owned()]),
            model_lifecycle: Some(FoundationModelLifecycle {
                status: "ACTIVE".to_owned(),
                start_of_life_time: Some(created.clone()),
                end_of_life_time: None,
                legacy_time: None,
                public_extended_access_time: None,
            }),
        });
        for geography in geographies {
            let (label, regions) = geography_routing(geography);
            let id = format!("{geography}.{model_id}");
            let mut models: Vec<InferenceProfileModel> = Vec::new();
            if *geography == "global" {
                models.push(InferenceProfileModel { model_arn: Some(foundation_model_arn("", model_id)) });
            }
            models.extend(
                regions.iter().map(|r| InferenceProfileModel { model_arn: Some(foundation_model_arn(r, model_id)) }),
            );
            let description = if *geography == "global" {
                format!("Routes requests to Anthropic {model_name} globally across all supported AWS Regions.")
            } else {
                format!("Routes requests to Anthropic {model_name} in {}.", region_list(regions))
            };
            self.inference_profile_summaries.push(InferenceProfileSummary {
                inference_profile_name: format!("{label} Anthropic {model_name}"),
                description: Some(description),
                created_at: Some(created.clone()),
                updated_at: Some(created.clone()),
                inference_profile_arn: format!(
                    "arn:aws:bedrock:{CATALOG_REGION}:{CATALOG_ACCOUNT_ID}:inference-profile/{id}"
                ),
                models,
                inference_profile_id: id,
                status: "ACTIVE".to_owned(),
                kind: "SYSTEM_DEFINED".to_owned(),
            });
        }
        self
    }

    /// The `modelId`s listed.
    pub fn model_ids(&self) -> Vec<&str> {
        self.model_summaries.iter().map(|m| m.model_id.as_str()).collect()
    }

    /// The `inferenceProfileId`s listed.
    pub fn profile_ids(&self) -> Vec<&str> {
        self.inference_profile_summaries.iter().map(|p| p.inference_profile_id.as_str()).collect()
    }
}

fn foundation_model_arn(region: &str, model_id: &str) -> String {
    format!("arn:aws:bedrock:{region}::foundation-model/{model_id}")
}

/// The name prefix and destination regions of a geography's profiles.
fn geography_routing(geography: &str) -> (String, &'static [&'static str]) {
    match geography {
        "global" => ("Global".to_owned(), &["us-east-1", "us-east-2", "us-west-2"]),
        "us" => ("US".to_owned(), &["us-east-1", "us-east-2", "us-west-2"]),
        "eu" => ("EU".to_owned(), &["eu-central-1", "eu-west-1", "eu-west-3"]),
        "apac" => ("APAC".to_owned(), &["ap-northeast-1", "ap-southeast-1", "ap-southeast-2"]),
        "jp" => ("JP".to_owned(), &["ap-northeast-1", "ap-northeast-3"]),
        "au" => ("AU".to_owned(), &["ap-southeast-2", "ap-southeast-4"]),
        "ca" => ("CA".to_owned(), &["ca-central-1", "ca-west-1"]),
        "us-gov" => ("US-GOV".to_owned(), &["us-gov-west-1", "us-gov-east-1"]),
        other => (other.to_ascii_uppercase(), &["us-east-1"]),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn region_list(regions: &[&str]) -> String {
    match regions {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// `2025-09-29T00:00:00Z` for an id with `-20250929-`, else a fixed time.
fn release_time(model_id: &str) -> String {
    model_id
        .split(['-', ':'])
        .find(|part| part.len() == 8 && part.starts_with("20") && part.chars().all(|c| c.is_ascii_digit()))
        .map(|d| format!("{}-{}-{}T00:00:00Z", &d[..4], &d[4..6], &d[6..]))
        .unwrap_or_else(|| "2026-01-15T00:00:00Z".to_owned())
}

/// An error answer of a listing: (status, `x-amzn-ErrorType` name, message).
pub(crate) type ListingError = (u16, &'static str, String);

/// The query parameters, percent-decoded (`+` is a space), in order.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                super::respond::percent_decode(&s).unwrap_or(s)
            };
            (decode(name), decode(value))
        })
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Coral's message for a constraint violation of one input member.
fn violation(value: &str, member: &str, constraint: &str) -> ListingError {
    (
        400,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ),
    )
}

/// A query value that must be one of `allowed` (`member` is the input member's name).
fn enum_param<'a>(
    query: &'a [(String, String)],
    name: &str,
    member: &str,
    allowed: &[&str],
) -> Result<Option<&'a str>, ListingError> {
    match param(query, name) {
        Some(v) if !allowed.contains(&v) => {
            Err(violation(v, member, &format!("Member must satisfy enum value set: [{}]", allowed.join(", "))))
        }
        other => Ok(other),
    }
}

/// The page token for the item at `offset` (URL-safe base64, so it needs no escaping).
fn page_token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("fake-bedrock-page:{offset}"))
}

/// The offset inside a page token.
fn token_offset(token: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    String::from_utf8(raw).ok()?.strip_prefix("fake-bedrock-page:")?.parse().ok()
}

/// `GET /inference-profiles?maxResults=&nextToken=&type=`.
pub(crate) fn list_inference_profiles(
    catalog: &BedrockCatalog,
    query: &[(String, String)],
) -> Result<Value, ListingError> {
    let kind = enum_param(query, "type", "typeEquals", &["SYSTEM_DEFINED", "APPLICATION"])?;
    let max_results = match param(query, "maxResults") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 1 => {
                return Err(violation(v, "maxResults", "Member must have value greater than or equal to 1"))
            }
            Ok(n) if n > 1000 => {
                return Err(violation(v, "maxResults", "Member must have value less than or equal to 1000"))
            }
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return Err(violation(v, "maxResults", "Member must be an integer")),
        },
    };
    let matching: Vec<&InferenceProfileSummary> =
        catalog.inference_profile_summaries.iter().filter(|p| kind.is_none_or(|k| p.kind == k)).collect();
    let start = match param(query, "nextToken") {
        None => 0,
        Some(token) => match token_offset(token) {
            Some(offset) if offset <= matching.len() => offset,
            _ => return Err((400, "ValidationException", "The provided pagination token is invalid.".to_owned())),
        },
    };
    let end = max_results.map_or(matching.len(), |m| start.saturating_add(m).min(matching.len()));
    let mut out = json!({ "inferenceProfileSummaries": matching.get(start..end).unwrap_or_default() });
    if end < matching.len() {
        out["nextToken"] = json!(page_token(end));
    }
    Ok(out)
}

/// `GET /foundation-models?byProvider=&byCustomizationType=&byOutputModality=&byInferenceType=`
/// (not paginated).
pub(crate) fn list_foundation_models(
    catalog: &BedrockCatalog,
    query: &[(String, String)],
) -> Result<Value, ListingError> {
    let provider = param(query, "byProvider");
    if let Some(p) = provider {
        let valid =
            (1..=63).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ' '));
        if !valid {
            return Err(violation(
                p,
                "byProvider",
                "Member must satisfy regular expression pattern: [A-Za-z0-9- ]{1,63}",
            ));
        }
    }
    let customization = enum_param(
        query,
        "byCustomizationType",
        "byCustomizationType",
        &["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"],
    )?;
    let modality = enum_param(query, "byOutputModality", "byOutputModality", &["TEXT", "IMAGE", "EMBEDDING"])?;
    let inference = enum_param(query, "byInferenceType", "byInferenceType", &["ON_DEMAND", "PROVISIONED"])?;
    let has = |list: &Option<Vec<String>>, wanted: Option<&str>| {
        wanted.is_none_or(|w| list.as_ref().is_some_and(|l| l.iter().any(|x| x == w)))
    };
    let models: Vec<&FoundationModelSummary> = catalog
        .model_summaries
        .iter()
        .filter(|m| provider.is_none_or(|p| m.provider_name.as_ref().is_some_and(|n| n.eq_ignore_ascii_case(p))))
        .filter(|m| has(&m.customizations_supported, customization))
        .filter(|m| has(&m.output_modalities, modality))
        .filter(|m| has(&m.inference_types_supported, inference))
        .collect();
    Ok(json!({ "modelSummaries": models }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        parse_query(s)
    }

    #[test]
    fn default_catalog() {
        let c = BedrockCatalog::default();
        assert!(c.model_ids().contains(&"anthropic.claude-opus-5-5-v1:0"));
        assert!(c.profile_ids().contains(&"global.anthropic.claude-opus-5-5-v1:0"));
        assert!(c.profile_ids().contains(&"us.anthropic.claude-opus-5-5-v1:0"));
        assert!(c.profile_ids().contains(&"global.anthropic.claude-opus-4-8-v1:0"));
        let sonnet = c
            .inference_profile_summaries
            .iter()
            .find(|p| p.inference_profile_id.starts_with("us.anthropic.claude-sonnet-4-5"))
            .unwrap();
        assert_eq!(sonnet.inference_profile_name, "US Anthropic Claude Sonnet 4.5");
        assert_eq!(
            sonnet.description.as_deref(),
            Some("Routes requests to Anthropic Claude Sonnet 4.5 in us-east-1, us-east-2 and us-west-2.")
        );
        assert_eq!(sonnet.created_at.as_deref(), Some("2025-09-29T00:00:00Z"));
        assert!(c.inference_profile_summaries.iter().all(|p| (1..=5).contains(&p.models.len())));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(serde_json::from_value::<BedrockCatalog>(v).unwrap(), c);
    }

    #[test]
    fn pagination_walks_every_profile_once() {
        let c = BedrockCatalog::default();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = match &token {
                Some(t) => format!("maxResults=4&nextToken={t}"),
                None => "maxResults=4".to_owned(),
            };
            let page = list_inference_profiles(&c, &q(&query)).unwrap();
            let items = page["inferenceProfileSummaries"].as_array().unwrap();
            assert!(items.len() <= 4);
            seen.extend(items.iter().map(|p| p["inferenceProfileId"].as_str().unwrap().to_owned()));
            match page.get("nextToken").and_then(Value::as_str) {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, c.profile_ids());
        assert_eq!(list_inference_profiles(&c, &q("nextToken=bogus")).unwrap_err().0, 400);
        assert_eq!(list_inference_profiles(&c, &q("maxResults=0")).unwrap_err().0, 400);
        assert!(list_inference_profiles(&c, &q("type=NOPE")).unwrap_err().2.contains("[SYSTEM_DEFINED, APPLICATION]"));
        let apps = list_inference_profiles(&c, &q("type=APPLICATION")).unwrap();
        assert_eq!(apps["inferenceProfileSummaries"], json!([]));
    }

    #[test]
    fn foundation_model_filters() {
        let c = BedrockCatalog::default();
        let all = list_foundation_models(&c, &[]).unwrap();
        assert_eq!(all["modelSummaries"].as_array().unwrap().len(), c.model_summaries.len());
        let on_demand = list_foundation_models(&c, &q("byInferenceType=ON_DEMAND")).unwrap();
        assert_eq!(on_demand["modelSummaries"][0]["modelId"], "anthropic.claude-3-haiku-20240307-v1:0");
        assert_eq!(on_demand["modelSummaries"].as_array().unwrap().len(), 1);
        let amazon = list_foundation_models(&c, &q("byProvider=amazon")).unwrap();
        assert_eq!(amazon["modelSummaries"], json!([]));
        let anthropic = list_foundation_models(&c, &q("byProvider=anthropic")).unwrap();
        assert_eq!(anthropic, all);
        assert_eq!(list_foundation_models(&c, &q("byOutputModality=AUDIO")).unwrap_err().0, 400);
    }
}
