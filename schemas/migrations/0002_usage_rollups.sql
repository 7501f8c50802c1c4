-- Usage rollups per user, key, model and provider, fed by materialized views in the same INSERT
-- as the raw rows (so they are exactly as complete as `requests`). SummingMergeTree merges rows
-- of one bucket lazily: always read them with sum(...) GROUP BY. Minute rows are partitioned
-- by day and expired by the projector dropping whole partitions (projector.minute_retention_days);
-- hour and day rows are kept for ever. Weeks and months are summed from days.

CREATE TABLE IF NOT EXISTS {db}.usage_minute
(
    bucket                DateTime('UTC'),
    user_id               String,
    key_id                String,
    model                 String,
    provider              String,
    requests              UInt64,
    errors                UInt64,
    fallbacks             UInt64,
    input_tokens          UInt64,
    output_tokens         UInt64,
    cache_read_tokens     UInt64,
    cache_creation_tokens UInt64,
    cost_nanos            UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(bucket)
ORDER BY (bucket, user_id, key_id, model, provider);

CREATE TABLE IF NOT EXISTS {db}.usage_hour
(
    bucket                DateTime('UTC'),
    user_id               String,
    key_id                String,
    model                 String,
    provider              String,
    requests              UInt64,
    errors                UInt64,
    fallbacks             UInt64,
    input_tokens          UInt64,
    output_tokens         UInt64,
    cache_read_tokens     UInt64,
    cache_creation_tokens UInt64,
    cost_nanos            UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, user_id, key_id, model, provider);

CREATE TABLE IF NOT EXISTS {db}.usage_day
(
    bucket                DateTime('UTC'),
    user_id               String,
    key_id                String,
    model                 String,
    provider              String,
    requests              UInt64,
    errors                UInt64,
    fallbacks             UInt64,
    input_tokens          UInt64,
    output_tokens         UInt64,
    cache_read_tokens     UInt64,
    cache_creation_tokens UInt64,
    cost_nanos            UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, user_id, key_id, model, provider);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_minute_mv TO {db}.usage_minute AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    user_id,
    key_id,
    if(response_model != '', response_model, requested_model) AS model,
    provider,
    count() AS requests,
    countIf(error_class != '') AS errors,
    sum(fallback) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_nanos) AS cost_nanos
FROM {db}.requests
GROUP BY bucket, user_id, key_id, model, provider;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_hour_mv TO {db}.usage_hour AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    user_id,
    key_id,
    if(response_model != '', response_model, requested_model) AS model,
    provider,
    count() AS requests,
    countIf(error_class != '') AS errors,
    sum(fallback) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_nanos) AS cost_nanos
FROM {db}.requests
GROUP BY bucket, user_id, key_id, model, provider;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_day_mv TO {db}.usage_day AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    user_id,
    key_id,
    if(response_model != '', response_model, requested_model) AS model,
    provider,
    count() AS requests,
    countIf(error_class != '') AS errors,
    sum(fallback) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_creation_tokens) AS cache_creation_tokens,
    sum(cost_nanos) AS cost_nanos
FROM {db}.requests
GROUP BY bucket, user_id, key_id, model, provider;
