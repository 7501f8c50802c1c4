-- Per provider over the last 7 days: share of the Messages requests, how many of them were
-- failovers (Bedrock answering instead of Anthropic), and p50/p95 latency to the last byte and
-- to the first byte. `quantiles` is approximate (reservoir sampling), as in every ClickHouse.
SELECT
    provider,
    count() AS request_count,
    count() / (SELECT count() FROM {db}.requests WHERE occurred_at >= now() - 7 * 86400 AND endpoint = 'messages') AS share,
    sum(fallback) / count() AS fallback_share,
    quantile(0.5)(latency_ms) AS p50_latency_ms,
    quantile(0.95)(latency_ms) AS p95_latency_ms,
    quantile(0.95)(ttfb_ms) AS p95_ttfb_ms
FROM {db}.requests
WHERE occurred_at >= now() - 7 * 86400 AND endpoint = 'messages'
GROUP BY provider
ORDER BY provider
