-- Organisation spend: what the organisation's AWS account pays for the traffic Bedrock answered
-- (failovers and bedrock_only users), per budget month in the budget time zone, last 3 months,
-- from the hour rollup. Set budget_tz to `budgets.time_zone` (exact for zones whose offset is a
-- whole number of hours: see docs/ANALYTICS.md for the others).
-- cost_usd is the priced part at list price: NULL (unknown, not $0) when every request with
-- tokens was of a model without a price: unpriced_request_count says how much is missing.
WITH 'UTC' AS budget_tz
SELECT
    toStartOfMonth(bucket, budget_tz) AS month,
    sum(requests) AS request_count,
    if(sum(cost_nanos) = 0 AND sum(unpriced_requests) > 0, NULL, sum(cost_nanos) / 1e9) AS cost_usd,
    sum(unpriced_requests) AS unpriced_request_count,
    sum(unpriced_tokens) AS unpriced_token_count,
    sum(estimated_requests) AS estimated_request_count
FROM {db}.usage_hour
WHERE provider = 'bedrock'
  AND bucket >= toDateTime(addMonths(toStartOfMonth(now(), budget_tz), -2), budget_tz)
GROUP BY month
ORDER BY month
