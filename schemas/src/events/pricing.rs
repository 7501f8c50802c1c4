//! Pricing events (subject `<prefix>.admin.pricing`): the price list that costs are computed with.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::request::Provider;

/// The price of one model, in USD per million tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Anthropic model name or prefix (`claude-sonnet-4-5` also prices `claude-sonnet-4-5-20250929`).
    pub model: String,
    /// Only for this provider; `None` for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Only in this AWS region (Bedrock regional prices); `None` for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Uncached input tokens.
    #[serde(with = "rust_decimal::serde::str")]
    pub input_per_mtok: Decimal,
    /// Output tokens.
    #[serde(with = "rust_decimal::serde::str")]
    pub output_per_mtok: Decimal,
    /// Tokens written to the prompt cache.
    #[serde(with = "rust_decimal::serde::str")]
    pub cache_write_per_mtok: Decimal,
    /// Tokens read from the prompt cache.
    #[serde(with = "rust_decimal::serde::str")]
    pub cache_read_per_mtok: Decimal,
}

/// A new price list took effect. Costs already recorded are never recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingSet {
    /// Increases by one with every price list; usage events name the version they used.
    pub version: u32,
    /// The whole list (replaces the previous one).
    pub models: Vec<ModelPrice>,
}
