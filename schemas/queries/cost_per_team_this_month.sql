-- Cost per team this budget month (set budget_tz to `budgets.time_zone`), from the hour rollup:
-- each developer's usage counted in the team the `users` dimension gives them now ('' = no
-- team: requests of refused keys have no user and are left out). Organisation spend (Bedrock)
-- and plan value at list price (Anthropic) apart: NULL where nothing is priced but tokens were used.
SELECT
    team_id,
    uniqExact(user_id) AS developers,
    sum(request_count) AS request_count,
    if(sum(bedrock_nanos) = 0 AND sum(bedrock_unpriced) > 0, NULL, sum(bedrock_nanos) / 1e9) AS organisation_spend_usd,
    if(sum(anthropic_nanos) = 0 AND sum(anthropic_unpriced) > 0, NULL, sum(anthropic_nanos) / 1e9) AS plan_value_usd,
    sum(bedrock_unpriced) + sum(anthropic_unpriced) AS unpriced_requests
FROM
(
    WITH 'UTC' AS budget_tz
    SELECT
        user_id,
        sum(requests) AS request_count,
        sumIf(cost_nanos, provider = 'bedrock') AS bedrock_nanos,
        sumIf(unpriced_requests, provider = 'bedrock') AS bedrock_unpriced,
        sumIf(cost_nanos, provider = 'anthropic') AS anthropic_nanos,
        sumIf(unpriced_requests, provider = 'anthropic') AS anthropic_unpriced
    FROM {db}.usage_hour
    WHERE bucket >= toDateTime(toStartOfMonth(now(), budget_tz), budget_tz) AND user_id != ''
    GROUP BY user_id
) AS facts
ANY LEFT JOIN (SELECT user_id, team_id FROM {db}.users FINAL) AS dim USING user_id
GROUP BY team_id
ORDER BY request_count DESC, team_id
