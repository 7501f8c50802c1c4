-- Usage rollups by team (issue 22): `usage_team_hour` and `usage_team_day`, the measures of
-- `usage_hour`/`usage_day` per team *at request time* (`requests.team_id`), user, key, model and
-- provider. The usage API reads them for `group_by=team` and `team_id=…` (a team's month, a
-- team's budget, the finance statement), and analysts read them for cost per team without scanning
-- `requests`. The team is part of the sort key (first, so one team's rows are together): a
-- developer who moves team within an hour keeps that hour's spend split where it was incurred
-- (a column outside a SummingMergeTree's key would take either team's value on merge).
-- No minute table: a question off the hour grid reads the raw `requests`.
--
-- The migration is redone whole when it runs again (an earlier run interrupted before it was
-- recorded): the views and tables are dropped, then created and filled from `requests`, then the
-- views that feed them from later inserts are created. The copy runs before its view exists, so
-- no insert may fall between them: the projector runs migrations before it inserts (run
-- `ccp-projector migrate` by hand only with the projector stopped). Rows written before
-- migration 0007 have team_id '' (no team), as in `requests`.

DROP TABLE IF EXISTS {db}.usage_team_hour_mv;

DROP TABLE IF EXISTS {db}.usage_team_day_mv;

DROP TABLE IF EXISTS {db}.usage_team_hour;

DROP TABLE IF EXISTS {db}.usage_team_day;

CREATE TABLE IF NOT EXISTS {db}.usage_team_hour
(
    bucket                DateTime('UTC'),
    team_id               String,
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
    cost_nanos            UInt64,
    unpriced_requests     UInt64,
    unpriced_tokens       UInt64,
    estimated_requests    UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (team_id, bucket, user_id, key_id, model, provider);

CREATE TABLE IF NOT EXISTS {db}.usage_team_day
(
    bucket                DateTime('UTC'),
    team_id               String,
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
    cost_nanos            UInt64,
    unpriced_requests     UInt64,
    unpriced_tokens       UInt64,
    estimated_requests    UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (team_id, bucket, user_id, key_id, model, provider);

INSERT INTO {db}.usage_team_hour
    (bucket, team_id, user_id, key_id, model, provider, requests, errors, fallbacks, input_tokens,
     output_tokens, cache_read_tokens, cache_creation_tokens, cost_nanos, unpriced_requests,
     unpriced_tokens, estimated_requests)
SELECT
    toStartOfHour(occurred_at) AS bucket,
    team_id,
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
GROUP BY bucket, team_id, user_id, key_id, model, provider;

INSERT INTO {db}.usage_team_day
    (bucket, team_id, user_id, key_id, model, provider, requests, errors, fallbacks, input_tokens,
     output_tokens, cache_read_tokens, cache_creation_tokens, cost_nanos, unpriced_requests,
     unpriced_tokens, estimated_requests)
SELECT
    toStartOfDay(occurred_at) AS bucket,
    team_id,
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
GROUP BY bucket, team_id, user_id, key_id, model, provider;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_team_hour_mv TO {db}.usage_team_hour AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    team_id,
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
GROUP BY bucket, team_id, user_id, key_id, model, provider;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_team_day_mv TO {db}.usage_team_day AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    team_id,
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
GROUP BY bucket, team_id, user_id, key_id, model, provider;
