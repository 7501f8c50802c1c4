//! Model catalogue events (subject `<prefix>.admin.catalogue`): which Claude models the proxy
//! knows, the names each answers to, its family and where it runs on Amazon Bedrock. The
//! shipped catalogue ([`crate::catalogue::shipped`]) is version 0; every change is one of these
//! events, applied in order on top of it (so a model a new release ships appears without a
//! command, and one an admin removed stays removed).

use serde::{Deserialize, Serialize};

/// A model family. Closed on purpose: the family decides which model a failover may fall back
/// to, so a typo must be refused rather than become a family of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFamily {
    /// The largest models.
    Opus,
    /// The middle tier.
    Sonnet,
    /// The small, fast tier.
    Haiku,
}

impl ModelFamily {
    /// Every family.
    pub const ALL: [Self; 3] = [Self::Opus, Self::Sonnet, Self::Haiku];

    /// The snake_case name: its serde name ([`super::label()`]).
    pub fn as_str(self) -> &'static str {
        super::label(&self)
    }
}

/// Where a model runs on Bedrock for one scope of regions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BedrockTarget {
    /// Which keys use it, by their region: an AWS region (`eu-central-1`), a cross-region
    /// inference-profile geography (`us`, `eu`, `apac`, `jp`, `au`, `ca`, `us-gov`), `global`,
    /// or `*` for any region. The most specific scope that covers the key's region wins.
    pub scope: String,
    /// The Bedrock model id or inference-profile id (or ARN) to call.
    pub model_id: String,
}

/// One model of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The Anthropic model id (`claude-opus-4-5`); dated names (`claude-opus-4-5-20251101`)
    /// match it too.
    pub id: String,
    /// Other names it answers to exactly (`claude-opus-4-0`, `claude-3-7-sonnet-latest`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its family.
    pub family: ModelFamily,
    /// Its Bedrock targets (none: found through the key's Bedrock model listing, if at all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bedrock: Vec<BedrockTarget>,
}

/// A model was added to the catalogue, or its entry replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCatalogued {
    /// The whole entry.
    pub entry: CatalogueEntry,
}

/// A model was removed from the catalogue (requests for it are still served by Anthropic; a
/// failover resolves it like any unknown model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRemoved {
    /// The removed entry's id.
    pub model: String,
}
