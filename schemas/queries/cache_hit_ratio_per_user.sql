-- Prompt-cache hit ratio per user over the last 7 days: cached input tokens read / all input
-- tokens (uncached + cache reads + cache writes).
SELECT
    user_id,
    sum(cache_read_tokens) AS cache_reads,
    sum(input_tokens) + sum(cache_read_tokens) + sum(cache_creation_tokens) AS all_input,
    if(all_input = 0, 0, cache_reads / all_input) AS cache_hit_ratio
FROM {db}.usage_day
WHERE bucket >= toStartOfDay(now()) - 7 * 86400
GROUP BY user_id
ORDER BY cache_hit_ratio DESC
