-- Rollups that show what the cost columns cannot: requests of a model without a price (their
-- cost is unknown, not 0), their tokens, and requests whose output was estimated. The model of a
-- rollup row is now what the request was priced as (the catalogue entry that routed it) when
-- known, else the model the provider reported, else the one requested.
-- The views are replaced (an ALTER of a view's query is not possible on 18.16): the projector
-- runs migrations before it inserts, so no insert falls between the DROP and the CREATE.

ALTER TABLE {db}.usage_minute
    ADD COLUMN unpriced_requests  UInt64,
    ADD COLUMN unpriced_tokens    UInt64,
    ADD COLUMN estimated_requests UInt64;

ALTER TABLE {db}.usage_hour
    ADD COLUMN unpriced_requests  UInt64,
    ADD COLUMN unpriced_tokens    UInt64,
    ADD COLUMN estimated_requests UInt64;

ALTER TABLE {db}.usage_day
    ADD COLUMN unpriced_requests  UInt64,
    ADD COLUMN unpriced_tokens    UInt64,
    ADD COLUMN estimated_requests UInt64;

DROP TABLE IF EXISTS {db}.usage_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_minute_mv TO {db}.usage_minute AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    user_id,
    key_id,
    if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model)) AS model,
    provider,
    count() AS requests,
    countIf(error_class != '') AS errors,
    sum(fallback) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_nanos) AS cost_nanos,
    sum(unpriced) AS unpriced_requests,
    sum(unpriced_tokens) AS unpriced_tokens,
    sum(usage_estimated) AS estimated_requests
FROM {db}.requests
GROUP BY bucket, user_id, key_id, model, provider;

DROP TABLE IF EXISTS {db}.usage_hour_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_hour_mv TO {db}.usage_hour AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    user_id,
    key_id,
    if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model)) AS model,
    provider,
    count() AS requests,
    countIf(error_class != '') AS errors,
    sum(fallback) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_nanos) AS cost_nanos,
    sum(unpriced) AS unpriced_requests,
    sum(unpriced_tokens) AS unpriced_tokens,
    sum(usage_estimated) AS estimated_requests
FROM {db}.requests
GROUP BY bucket, user_id, key_id, model, provider;

DROP TABLE IF EXISTS {db}.usage_day_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_day_mv TO {db}.usage_day AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    user_id,
    key_id,
    if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model)) AS model,
    provider,
    count() AS requests,
    countIf(error_class != '') AS errors,
    sum(fallback) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_nanos) AS cost_nanos,
    sum(unpriced) AS unpriced_requests,
    sum(unpriced_tokens) AS unpriced_tokens,
    sum(usage_estimated) AS estimated_requests
FROM {db}.requests
GROUP BY bucket, user_id, key_id, model, provider;
