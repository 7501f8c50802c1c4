-- Month report in the budget time zone: per developer and budget month (set budget_tz to
-- `budgets.time_zone`: these are the months budgets are counted in), last 3 months, from the hour
-- rollup, split by who pays (Bedrock: the organisation: Anthropic: the developer's plan, at list
-- price), with names from the `users` dimension.
SELECT
    month,
    user_id,
    name,
    request_count,
    if(bedrock_nanos = 0 AND bedrock_unpriced > 0, NULL, bedrock_nanos / 1e9) AS organisation_spend_usd,
    if(anthropic_nanos = 0 AND anthropic_unpriced > 0, NULL, anthropic_nanos / 1e9) AS plan_value_usd,
    bedrock_unpriced + anthropic_unpriced AS unpriced_requests,
    estimated_requests
FROM
(
    WITH 'UTC' AS budget_tz
    SELECT
        toStartOfMonth(bucket, budget_tz) AS month,
        user_id,
        sum(requests) AS request_count,
        sumIf(cost_nanos, provider = 'bedrock') AS bedrock_nanos,
        sumIf(unpriced_requests, provider = 'bedrock') AS bedrock_unpriced,
        sumIf(cost_nanos, provider = 'anthropic') AS anthropic_nanos,
        sumIf(unpriced_requests, provider = 'anthropic') AS anthropic_unpriced,
        sum(estimated_requests) AS estimated_requests
    FROM {db}.usage_hour
    WHERE bucket >= toDateTime(addMonths(toStartOfMonth(now(), budget_tz), -2), budget_tz)
    GROUP BY month, user_id
) AS facts
ANY LEFT JOIN (SELECT user_id, name FROM {db}.users FINAL) AS dim USING user_id
ORDER BY month, user_id
