-- Cost per team this budget month (set budget_tz to `budgets.time_zone`), from the raw requests:
-- each request counted in the team its developer was in when it was made (`requests.team_id`:
-- a developer who changed teams is counted in each, '' = no team: requests of refused keys have
-- no user and are left out), with the team's name from the `teams` dimension ('' for no team, a
-- deleted team keeps its name, `team_deleted` = 1). Organisation spend (Bedrock) and plan value at
-- list price (Anthropic) apart: NULL where nothing is priced but tokens were used.
-- ClickHouse 18.16 allows one JOIN per SELECT: the names are joined in the outer query.
SELECT
    team_id,
    name AS team_name,
    isNotNull(deleted_at) AS team_deleted,
    developers,
    request_count,
    if(bedrock_nanos = 0 AND bedrock_unpriced > 0, NULL, bedrock_nanos / 1e9) AS organisation_spend_usd,
    if(anthropic_nanos = 0 AND anthropic_unpriced > 0, NULL, anthropic_nanos / 1e9) AS plan_value_usd,
    bedrock_unpriced + anthropic_unpriced AS unpriced_requests
FROM
(
    WITH 'UTC' AS budget_tz
    SELECT
        team_id,
        uniqExact(user_id) AS developers,
        count() AS request_count,
        sumIf(cost_nanos, provider = 'bedrock') AS bedrock_nanos,
        sumIf(unpriced, provider = 'bedrock') AS bedrock_unpriced,
        sumIf(cost_nanos, provider = 'anthropic') AS anthropic_nanos,
        sumIf(unpriced, provider = 'anthropic') AS anthropic_unpriced
    FROM {db}.requests
    WHERE occurred_at >= toDateTime(toStartOfMonth(now(), budget_tz), budget_tz) AND user_id != ''
    GROUP BY team_id
) AS facts
ANY LEFT JOIN (SELECT team_id, name, deleted_at FROM {db}.teams FINAL) AS dim USING team_id
ORDER BY request_count DESC, team_id
