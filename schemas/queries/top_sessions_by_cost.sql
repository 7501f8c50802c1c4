-- The Claude Code sessions that cost most in the last 7 days (raw rows: sessions are not rolled up).
SELECT
    session_id,
    any(user_id) AS user_id,
    count() AS request_count,
    sum(cost_nanos) / 1e9 AS cost_usd,
    min(occurred_at) AS started,
    max(occurred_at) AS last_request
FROM {db}.requests
WHERE occurred_at >= now() - 7 * 86400 AND session_id != ''
GROUP BY session_id
ORDER BY cost_usd DESC
LIMIT 20
