-- Plan-limit pressure per user over the last 24 hours: the newest 5-hour and 7-day utilization
-- Anthropic reported for the user's keys, how many requests carried a `rejected` Plan status,
-- and how many of those Bedrock answered instead. Closest to the limit first.
SELECT
    user_id,
    argMax(plan_5h_utilization, rl_observed_at) AS five_hour_utilization,
    argMax(plan_7d_utilization, rl_observed_at) AS seven_day_utilization,
    argMax(plan_status, rl_observed_at) AS newest_plan_status,
    countIf(plan_status = 'rejected') AS requests_while_rejected,
    countIf(plan_status = 'rejected' AND provider = 'bedrock') AS answered_by_bedrock
FROM {db}.requests
WHERE occurred_at >= now() - INTERVAL 1 DAY AND rl_status != 0
GROUP BY user_id
ORDER BY five_hour_utilization DESC
