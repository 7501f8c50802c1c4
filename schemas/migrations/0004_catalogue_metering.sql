-- Honest metering (model catalogue release): how each request was priced and whether its counts
-- are exact.
--   unpriced           1: tokens were consumed of a model without a price: cost_nanos is 0 and
--                      means "unknown" — use cost_nanos_or_null, which is NULL for these rows.
--   unpriced_tokens    the tokens of an unpriced request (all four kinds), 0 otherwise.
--   usage_estimated    1: the stream ended before the provider's final count (client gone, stream
--                      cut): output_tokens is an estimate from the relayed content.
--   priced_model       what the request was priced as: the catalogue entry that routed it (never
--                      the model name the provider echoes).
--   bedrock_resolution how a failover found its Bedrock model: catalogue, listing,
--                      family_fallback or key_default ('' when Anthropic answered).
--   model_substituted  1: a failover called another model than the one requested.
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the runner takes "column already exists" on
-- an ADD COLUMN as done.
ALTER TABLE {db}.requests
    ADD COLUMN unpriced           UInt8,
    ADD COLUMN unpriced_tokens    UInt64,
    ADD COLUMN usage_estimated    UInt8,
    ADD COLUMN priced_model       String,
    ADD COLUMN bedrock_resolution String,
    ADD COLUMN model_substituted  UInt8,
    ADD COLUMN cost_nanos_or_null Nullable(UInt64) ALIAS if(unpriced = 1, NULL, cost_nanos);
