-- Cost per user this month (UTC), from the day rollup, most expensive first.
SELECT
    user_id,
    sum(requests) AS request_count,
    sum(cost_nanos) / 1e9 AS cost_usd
FROM {db}.usage_day
WHERE bucket >= toStartOfMonth(now())
GROUP BY user_id
ORDER BY cost_usd DESC
