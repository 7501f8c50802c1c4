-- Plan-limit state on every request row: what Anthropic's rate-limit headers last said for the
-- key (the usage event's `rate_limit`, also on requests Bedrock answered). NULL / '' / 0 when
-- the event carried none. `rate_limit_json` keeps the whole state (every window and the classic
-- API limits, unknown headers too) for what the columns do not cover.
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner takes "column already
-- exists" on an ADD COLUMN as done, so this statement is idempotent like the others.
ALTER TABLE {db}.requests
    ADD COLUMN rl_observed_at         Nullable(DateTime('UTC')),
    ADD COLUMN rl_status              UInt16,
    ADD COLUMN rl_retry_after_secs    Nullable(UInt64),
    ADD COLUMN plan_status            String,
    ADD COLUMN plan_claim             String,
    ADD COLUMN plan_reset             Nullable(DateTime('UTC')),
    ADD COLUMN plan_5h_utilization    Nullable(Float64),
    ADD COLUMN plan_5h_reset          Nullable(DateTime('UTC')),
    ADD COLUMN plan_7d_utilization    Nullable(Float64),
    ADD COLUMN plan_7d_reset          Nullable(DateTime('UTC')),
    ADD COLUMN plan_overage_status    String,
    ADD COLUMN api_requests_remaining Nullable(UInt64),
    ADD COLUMN api_tokens_remaining   Nullable(UInt64),
    ADD COLUMN rate_limit_json        String;
