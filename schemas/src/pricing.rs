//! Cost of a request under a price list: exact decimals, USD, rounded to nano-dollars.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::events::{ModelPrice, PricingSet, Provider, TokenUsage};

/// A price list and its version (0: the one from configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PriceList {
    /// Recorded with every cost computed from it.
    pub version: u32,
    /// The entries.
    pub models: Vec<ModelPrice>,
}

impl From<&PricingSet> for PriceList {
    fn from(e: &PricingSet) -> Self {
        Self { version: e.version, models: e.models.clone() }
    }
}

/// Digits after the point kept in costs (nano-dollars, as ClickHouse stores them).
pub const COST_SCALE: u32 = 9;

impl PriceList {
    /// The most specific entry for a model answered by `provider` in `region`. An entry prices
    /// the model it names exactly, or that name followed by a `-YYYYMMDD` date
    /// ([`crate::catalogue::name_matches`]) — never a newer model that merely starts with its
    /// name; then a provider-specific entry beats a general one, and a region-specific one
    /// beats both.
    pub fn price_for(&self, model: &str, provider: Provider, region: Option<&str>) -> Option<&ModelPrice> {
        self.models
            .iter()
            .filter(|p| crate::catalogue::name_matches(model, &p.model))
            .filter(|p| p.provider.is_none_or(|pp| pp == provider))
            .filter(|p| p.region.as_deref().is_none_or(|r| Some(r) == region))
            .max_by_key(|p| (p.model.len(), p.provider.is_some(), p.region.is_some()))
    }

    /// The cost of `usage`, or `None` when no entry prices the model.
    pub fn cost(&self, model: &str, provider: Provider, region: Option<&str>, usage: &TokenUsage) -> Option<Decimal> {
        let p = self.price_for(model, provider, region)?;
        let tokens = |n: u64| Decimal::from(n);
        let total = tokens(usage.input_tokens) * p.input_per_mtok
            + tokens(usage.output_tokens) * p.output_per_mtok
            + tokens(usage.cache_creation_input_tokens) * p.cache_write_per_mtok
            + tokens(usage.cache_read_input_tokens) * p.cache_read_per_mtok;
        Some(
            (total / Decimal::from(1_000_000))
                .round_dp_with_strategy(COST_SCALE, RoundingStrategy::MidpointAwayFromZero),
        )
    }
}

/// The list prices shipped with this build (pricing version 0, `pricing.models`' default): USD
/// per million tokens on Anthropic's public price list. A `pricing_set` event replaces them.
pub fn shipped_prices() -> Vec<ModelPrice> {
    let price = |model: &str, input: i64, output: i64, write: i64, read: i64| ModelPrice {
        model: model.into(),
        provider: None,
        region: None,
        // Hundredths of a dollar per million tokens.
        input_per_mtok: Decimal::new(input, 2),
        output_per_mtok: Decimal::new(output, 2),
        cache_write_per_mtok: Decimal::new(write, 2),
        cache_read_per_mtok: Decimal::new(read, 2),
    };
    vec![
        price("claude-opus-4-5", 500, 2500, 625, 50),
        price("claude-opus-4-1", 1500, 7500, 1875, 150),
        price("claude-opus-4", 1500, 7500, 1875, 150),
        price("claude-sonnet-4-5", 300, 1500, 375, 30),
        price("claude-sonnet-4", 300, 1500, 375, 30),
        price("claude-3-7-sonnet", 300, 1500, 375, 30),
        price("claude-haiku-4-5", 100, 500, 125, 10),
        price("claude-3-5-haiku", 80, 400, 100, 8),
    ]
}

/// A cost in whole nano-dollars (what ClickHouse stores). Costs are non-negative.
pub fn to_nanos(cost: Decimal) -> u64 {
    (cost * Decimal::from(1_000_000_000u64)).trunc().try_into().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list() -> PriceList {
        let mut models = shipped_prices();
        models.push(ModelPrice {
            model: "claude-sonnet-4-5".into(),
            provider: Some(Provider::Bedrock),
            region: Some("eu-central-1".into()),
            input_per_mtok: Decimal::new(330, 2),
            output_per_mtok: Decimal::new(1650, 2),
            cache_write_per_mtok: Decimal::new(4125, 3),
            cache_read_per_mtok: Decimal::new(33, 2),
        });
        PriceList { version: 0, models }
    }

    fn usage(i: u64, o: u64, r: u64, w: u64) -> TokenUsage {
        TokenUsage { input_tokens: i, output_tokens: o, cache_read_input_tokens: r, cache_creation_input_tokens: w }
    }

    #[test]
    fn costs_are_exact() {
        let l = list();
        // 1000 in × $3 + 2000 out × $15 + 100k read × $0.30 + 10k write × $3.75, per million.
        let c = l.cost("claude-sonnet-4-5-20250929", Provider::Anthropic, None, &usage(1000, 2000, 100_000, 10_000));
        assert_eq!(c, Some("0.1005".parse().unwrap()));
        assert_eq!(to_nanos(c.unwrap()), 100_500_000);
        assert_eq!(
            l.cost("claude-haiku-4-5", Provider::Anthropic, None, &usage(1, 0, 0, 0)),
            Some("0.000001".parse().unwrap())
        );
        assert_eq!(l.cost("gpt-4", Provider::Anthropic, None, &usage(1, 1, 1, 1)), None);
    }

    #[test]
    fn the_most_specific_price_wins() {
        let l = list();
        let p = l.price_for("claude-opus-4-5-20251101", Provider::Anthropic, None).unwrap();
        assert_eq!(p.model, "claude-opus-4-5");
        let p = l.price_for("claude-opus-4-1-20250805", Provider::Anthropic, None).unwrap();
        assert_eq!(p.model, "claude-opus-4-1");
        // Never the price of an older model whose name is a prefix.
        assert!(l.price_for("claude-opus-4-8", Provider::Anthropic, None).is_none());
        assert!(l.price_for("claude-sonnet-4-6", Provider::Anthropic, None).is_none());
        let eu = l.price_for("claude-sonnet-4-5", Provider::Bedrock, Some("eu-central-1")).unwrap();
        assert_eq!(eu.region.as_deref(), Some("eu-central-1"));
        let us = l.price_for("claude-sonnet-4-5", Provider::Bedrock, Some("us-east-1")).unwrap();
        assert!(us.region.is_none());
        assert!(l
            .price_for("claude-sonnet-4-5", Provider::Anthropic, Some("eu-central-1"))
            .unwrap()
            .provider
            .is_none());
    }

    proptest! {
        #[test]
        fn cost_is_additive_and_never_negative(a in 0u64..10_000_000, b in 0u64..10_000_000) {
            let l = list();
            let ca = l.cost("claude-sonnet-4", Provider::Anthropic, None, &usage(a, 0, 0, 0)).unwrap();
            let cb = l.cost("claude-sonnet-4", Provider::Anthropic, None, &usage(b, 0, 0, 0)).unwrap();
            let cab = l.cost("claude-sonnet-4", Provider::Anthropic, None, &usage(a + b, 0, 0, 0)).unwrap();
            prop_assert_eq!(ca + cb, cab);
            prop_assert!(cab >= Decimal::ZERO);
        }
    }
}

/// Serde for `Option<Decimal>` as a decimal string or `null` that also works inside flattened
/// and tagged enums (where `rust_decimal::serde::str_option` refuses `null`).
pub mod decimal_str_option {
    use std::str::FromStr as _;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `"12.5"` or `null`.
    pub fn serialize<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    /// A decimal string (or a JSON number), or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Text(t)) => Decimal::from_str(t.trim()).map(Some).map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{}` is not a decimal number",
                    t.chars().take(40).collect::<String>()
                ))
            }),
            Some(Raw::Number(n)) => Decimal::from_str(&n.to_string())
                .map(Some)
                .map_err(|_| serde::de::Error::custom("not a decimal number")),
        }
    }
}
