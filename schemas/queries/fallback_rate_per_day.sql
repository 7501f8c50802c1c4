-- Share of requests answered by Bedrock per day, last 30 days.
SELECT
    toDate(bucket) AS day,
    sum(requests) AS request_count,
    sum(fallbacks) AS fallback_count,
    if(request_count = 0, 0, fallback_count / request_count) AS fallback_rate
FROM {db}.usage_day
WHERE bucket >= toStartOfDay(now()) - 30 * 86400
GROUP BY day
ORDER BY day
