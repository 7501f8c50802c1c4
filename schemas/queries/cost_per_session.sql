-- Cost per Claude Code session in the last 7 days, with the developer's name (raw rows: sessions
-- are not rolled up). cost_usd is NULL when nothing in the session was priced but tokens were
-- used: unpriced and estimated requests are counted beside it.
SELECT
    session_id,
    user_id,
    name,
    request_count,
    if(cost_nanos = 0 AND unpriced_requests > 0, NULL, cost_nanos / 1e9) AS cost_usd,
    fallbacks,
    unpriced_requests,
    estimated_requests,
    started,
    last_request
FROM
(
    SELECT
        session_id,
        any(user_id) AS user_id,
        count() AS request_count,
        sum(cost_nanos) AS cost_nanos,
        sum(fallback) AS fallbacks,
        sum(unpriced) AS unpriced_requests,
        sum(usage_estimated) AS estimated_requests,
        min(occurred_at) AS started,
        max(occurred_at) AS last_request
    FROM {db}.requests
    WHERE occurred_at >= now() - 7 * 86400 AND session_id != ''
    GROUP BY session_id
) AS facts
ANY LEFT JOIN (SELECT user_id, name FROM {db}.users FINAL) AS dim USING user_id
ORDER BY request_count DESC, session_id
LIMIT 100
