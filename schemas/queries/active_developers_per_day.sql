-- Active developers per day (a developer with at least one request that day) over the last 30
-- days (the first day partly), days in the budget time zone (set budget_tz to `budgets.time_zone`), from the hour rollup.
WITH 'UTC' AS budget_tz
SELECT
    toDate(toStartOfDay(bucket, budget_tz)) AS day,
    uniqExact(user_id) AS active_developers,
    sum(requests) AS request_count
FROM {db}.usage_hour
WHERE bucket >= now() - 30 * 86400 AND user_id != ''
GROUP BY day
ORDER BY day
