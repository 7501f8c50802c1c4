-- Raw facts: one row per usage event, audit event and circuit transition, plus the projector's
-- progress. `{db}` is replaced by the configured database. Types stay within what ClickHouse
-- 18.16 (the server installable on the development machines) and current LTS releases accept.

CREATE TABLE IF NOT EXISTS {db}.requests
(
    event_id              String,
    stream_seq            UInt64,
    request_id            String,
    occurred_at           DateTime('UTC'),
    occurred_at_ms        UInt64,
    user_id               String,
    key_id                String,
    key_prefix            String,
    endpoint              String,
    provider              String,
    requested_model       String,
    response_model        String,
    bedrock_model_id      String,
    region                String,
    fallback              UInt8,
    fallback_reason       String,
    status                UInt16,
    error_class           String,
    stream                UInt8,
    incomplete            UInt8,
    stop_reason           String,
    input_tokens          UInt64,
    output_tokens         UInt64,
    cache_read_tokens     UInt64,
    cache_creation_tokens UInt64,
    cost_nanos            UInt64,
    pricing_version       UInt32,
    latency_ms            UInt64,
    ttfb_ms               UInt64,
    session_id            String,
    client_version        String,
    replica               String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, request_id);

CREATE TABLE IF NOT EXISTS {db}.audit_log
(
    event_id       String,
    stream_seq     UInt64,
    occurred_at    DateTime('UTC'),
    event_type     String,
    actor_kind     String,
    actor_id       String,
    actor_name     String,
    target_kind    String,
    target_id      String,
    user_id        String,
    key_id         String,
    source         String,
    correlation_id String,
    details        String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.circuit_transitions
(
    event_id    String,
    stream_seq  UInt64,
    occurred_at DateTime('UTC'),
    key_id      String,
    state       String,
    reason      String,
    failures    UInt32,
    retry_at    DateTime('UTC'),
    replica     String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (occurred_at, key_id);

CREATE TABLE IF NOT EXISTS {db}.projection_offsets
(
    projection_name String,
    stream     String,
    last_seq   UInt64,
    updated_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(last_seq)
ORDER BY (projection_name, stream);
