-- Teams in ClickHouse (issue 22).
--
-- `teams`: the current state of every team, projected from the admin stream by the projector
-- (`projector/src/analytics/teams.rs`), so a report joins team ids to names. One row per state
-- change: ReplacingMergeTree keeps the newest (highest `stream_seq`) per team when parts merge:
-- read it with `FINAL` (or `argMax(…, stream_seq)`). A deleted team keeps its row, with
-- `deleted_at` set (its past spend still has a name).
--
-- `requests.team_id`: the team of the request's user at the time of the request ('' when none, and
-- in the rows written before this migration). `users.team_id` is the user's team now: spend is
-- attributed by `requests.team_id`. `requests_by_user` carries it too.
--
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS (the runner takes "column already exists" on
-- an ADD COLUMN as done) and no ALTER of a view's query: `requests_by_user_mv` is replaced. The
-- projector runs migrations before it inserts, so no insert falls between the DROP and the
-- CREATE. The rows already copied keep team_id '' (as in `requests`): nothing to backfill.

CREATE TABLE IF NOT EXISTS {db}.teams
(
    team_id              String,
    name                 String,
    description          String,
    routing              String,
    monthly_budget_nanos Nullable(UInt64),
    created_at           DateTime('UTC'),
    updated_at           DateTime('UTC'),
    deleted_at           Nullable(DateTime('UTC')),
    stream_seq           UInt64
)
ENGINE = ReplacingMergeTree(stream_seq)
ORDER BY team_id;

ALTER TABLE {db}.requests
    ADD COLUMN team_id String DEFAULT '';

ALTER TABLE {db}.requests_by_user
    ADD COLUMN team_id String DEFAULT '';

DROP TABLE IF EXISTS {db}.requests_by_user_mv;

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
    ttfb_ms,
    team_id
FROM {db}.requests;
