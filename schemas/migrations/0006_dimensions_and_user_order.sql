-- Dimensions and query shapes that scale (issue 22).
--
-- `users` and `keys`: the current state of every user and access key, projected from the admin
-- stream by the projector (`projector/src/analytics/users.rs`, `keys.rs`), so a report joins ids
-- to names, emails and teams in ClickHouse. One row per state change: ReplacingMergeTree keeps
-- the newest (highest `stream_seq`) per id when parts merge: read them with `FINAL` (or
-- `argMax(…, stream_seq)`). `users.team_id` is '' until the team events exist.
--
-- `requests_by_user`: the columns per-user and per-key questions need, ordered by user, key and
-- time (`requests` is ordered by time: a user's month would read every user's month). Filled by a
-- materialized view from the same inserts as `requests`, after copying the rows already there.
--
-- `key_last_used`: when each key was last used. Rows of one key collapse to the newest on merge,
-- read `max(last_used_at) … GROUP BY key_id`, exact before and after merges.
--
-- The copies run before their views exist (the projector migrates before it inserts), and each
-- is idempotent: `requests_by_user` copies only request ids it does not hold, and a second copy
-- into `key_last_used` only repeats maxima. On a cluster they run on the server the runner talks
-- to, like the projector's inserts: replication copies them to the other replicas.

CREATE TABLE IF NOT EXISTS {db}.users
(
    user_id              String,
    name                 String,
    email                String,
    description          String,
    team_id              String,
    status               String,
    routing              String,
    monthly_budget_nanos Nullable(UInt64),
    created_at           DateTime('UTC'),
    updated_at           DateTime('UTC'),
    deactivated_at       Nullable(DateTime('UTC')),
    stream_seq           UInt64
)
ENGINE = ReplacingMergeTree(stream_seq)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS {db}.keys
(
    key_id                String,
    user_id               String,
    name                  String,
    key_prefix            String,
    status                String,
    bedrock_region        String,
    bedrock_default_model String,
    bedrock_key           UInt8,
    bedrock_readiness     String,
    created_at            DateTime('UTC'),
    updated_at            DateTime('UTC'),
    revoked_at            Nullable(DateTime('UTC')),
    stream_seq            UInt64
)
ENGINE = ReplacingMergeTree(stream_seq)
ORDER BY key_id;

CREATE TABLE IF NOT EXISTS {db}.requests_by_user
(
    user_id               String,
    key_id                String,
    occurred_at           DateTime('UTC'),
    request_id            String,
    stream_seq            UInt64,
    session_id            String,
    provider              String,
    model                 String,
    fallback              UInt8,
    status                UInt16,
    error_class           String,
    input_tokens          UInt64,
    output_tokens         UInt64,
    cache_read_tokens     UInt64,
    cache_creation_tokens UInt64,
    cost_nanos            UInt64,
    unpriced              UInt8,
    unpriced_tokens       UInt64,
    usage_estimated       UInt8,
    latency_ms            UInt64,
    ttfb_ms               UInt64,
    cost_nanos_or_null    Nullable(UInt64) ALIAS if(unpriced = 1, NULL, cost_nanos)
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (user_id, key_id, occurred_at, request_id);

INSERT INTO {db}.requests_by_user
    (user_id, key_id, occurred_at, request_id, stream_seq, session_id, provider, model, fallback, status,
     error_class, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_nanos, unpriced,
     unpriced_tokens, usage_estimated, latency_ms, ttfb_ms)
SELECT
    user_id,
    key_id,
    occurred_at,
    request_id,
    stream_seq,
    session_id,
    provider,
    if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model)) AS model,
    fallback,
    status,
    error_class,
    input_tokens,
    output_tokens,
    cache_read_tokens,
    cache_creation_tokens,
    cost_nanos,
    unpriced,
    unpriced_tokens,
    usage_estimated,
    latency_ms,
    ttfb_ms
FROM {db}.requests
WHERE request_id NOT IN (SELECT request_id FROM {db}.requests_by_user);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.requests_by_user_mv TO {db}.requests_by_user AS
SELECT
    user_id,
    key_id,
    occurred_at,
    request_id,
    stream_seq,
    session_id,
    provider,
    if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model)) AS model,
    fallback,
    status,
    error_class,
    input_tokens,
    output_tokens,
    cache_read_tokens,
    cache_creation_tokens,
    cost_nanos,
    unpriced,
    unpriced_tokens,
    usage_estimated,
    latency_ms,
    ttfb_ms
FROM {db}.requests;

CREATE TABLE IF NOT EXISTS {db}.key_last_used
(
    key_id       String,
    user_id      String,
    last_used_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(last_used_at)
ORDER BY key_id;

INSERT INTO {db}.key_last_used (key_id, user_id, last_used_at)
SELECT key_id, any(user_id) AS user_id, max(occurred_at) AS last_used_at
FROM {db}.requests
WHERE key_id != ''
GROUP BY key_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.key_last_used_mv TO {db}.key_last_used AS
SELECT key_id, any(user_id) AS user_id, max(occurred_at) AS last_used_at
FROM {db}.requests
WHERE key_id != ''
GROUP BY key_id;
