-- Plan value at list price: the traffic Anthropic answered, paid by each developer's own plan or
-- API key, valued at the price list (what it would have cost on the API) — not money the
-- organisation paid. Per developer, this budget month (set budget_tz to `budgets.time_zone`),
-- from the hour rollup, with names from the `users` dimension.
SELECT
    user_id,
    name,
    email,
    request_count,
    if(cost_nanos = 0 AND unpriced_requests > 0, NULL, cost_nanos / 1e9) AS list_value_usd,
    unpriced_requests,
    estimated_requests
FROM
(
    WITH 'UTC' AS budget_tz
    SELECT
        user_id,
        sum(requests) AS request_count,
        sum(cost_nanos) AS cost_nanos,
        sum(unpriced_requests) AS unpriced_requests,
        sum(estimated_requests) AS estimated_requests
    FROM {db}.usage_hour
    WHERE provider = 'anthropic'
      AND bucket >= toDateTime(toStartOfMonth(now(), budget_tz), budget_tz)
    GROUP BY user_id
) AS facts
ANY LEFT JOIN (SELECT user_id, name, email FROM {db}.users FINAL) AS dim USING user_id
ORDER BY request_count DESC, user_id
