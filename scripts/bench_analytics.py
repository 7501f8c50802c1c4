#!/usr/bin/env python3
"""Measures the admin API's ClickHouse queries and the example queries at N rows in `requests`,
before and after migration 0006 (dimensions, `requests_by_user`, `key_last_used`).

Not a test (no timed assertions anywhere): a measurement, recorded in docs/benchmarks.md.

1. A scratch database (default `ccp_bench_analytics`, dropped at the end unless `--keep`) with
   migrations 0001-0005 applied as the Rust runner splits them.
2. N synthetic requests generated in ClickHouse (`INSERT … SELECT … FROM numbers(N)`): 500
   developers with 2 keys each, spread evenly over the last 90 days, 10 % answered by Bedrock, 3
   models, 0.5 % unpriced, 2 % estimated, a Claude Code session per developer and 4 hours. The
   rollups fill through their materialized views as the projector's inserts would; then every
   table is merged (`OPTIMIZE … FINAL`: the steady state).
3. "before": each query as the admin API sends it without 0006 (the SQL of
   `admin-api/src/usage/` before this change), `--runs` times, p50/p95 of the HTTP round trip,
   and the rows ClickHouse read (`FORMAT JSON` statistics).
4. Migration 0006 applied (its backfill timed), the `users`/`keys` dimensions filled, merged.
5. "after": the same questions as the admin API now asks them, and every example query of
   `schemas/queries/`.

Usage: python3 scripts/bench_analytics.py [--url http://127.0.0.1:8123] [--rows 10000000]
Uses the Python standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_clickhouse_lts import split_statements  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
USERS = 500
DAYS = 90


class ClickHouse:
    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/"

    def run(self, sql: str) -> str:
        req = urllib.request.Request(self.url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=3600) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{err.read().decode()[:800]}\n--- query ---\n{sql[:2000]}") from err

    def timed(self, sql: str) -> tuple[float, int]:
        """Wall time of the round trip (ms) and the rows ClickHouse read."""
        started = time.perf_counter()
        body = self.run(sql + "\nFORMAT JSON")
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, int(json.loads(body).get("statistics", {}).get("rows_read", 0))


def migrate(ch: ClickHouse, db: str, versions: range) -> None:
    for path in sorted((ROOT / "schemas" / "migrations").glob("*.sql")):
        if int(path.name[:4]) in versions:
            for stmt in split_statements(path.read_text(encoding="utf-8"), db):
                ch.run(stmt)


def generate(ch: ClickHouse, db: str, rows: int) -> None:
    span = DAYS * 86400
    ch.run(f"""
INSERT INTO {db}.requests (event_id, stream_seq, request_id, occurred_at, occurred_at_ms, user_id, key_id,
    key_prefix, endpoint, provider, requested_model, response_model, bedrock_model_id, region, fallback,
    fallback_reason, status, error_class, stream, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens, cost_nanos, pricing_version, latency_ms, ttfb_ms, session_id, client_version,
    replica, unpriced, unpriced_tokens, usage_estimated, priced_model)
SELECT
    concat('01JBENCHEVT', toString(number)) AS event_id,
    number + 1 AS stream_seq,
    concat('req_01JBENCH', toString(number)) AS request_id,
    t AS occurred_at,
    toUInt64(toUInt32(t)) * 1000 AS occurred_at_ms,
    concat('usr_01JBENCHUSER', toString(10000 + u)) AS user_id,
    concat('key_01JBENCHKEY', toString(20000 + u * 2 + intHash32(number + 1) % 2)) AS key_id,
    'ak_bench' AS key_prefix,
    'messages' AS endpoint,
    if(on_bedrock, 'bedrock', 'anthropic') AS provider,
    arrayElement(['claude-opus-5-5', 'claude-sonnet-4-5', 'claude-haiku-4-5'], 1 + intHash32(number * 3) % 3) AS requested_model,
    requested_model AS response_model,
    if(on_bedrock, concat('eu.anthropic.', requested_model), '') AS bedrock_model_id,
    if(on_bedrock, 'eu-west-1', '') AS region,
    toUInt8(on_bedrock) AS fallback,
    if(on_bedrock, 'rate_limited', '') AS fallback_reason,
    if(number % 100 = 42, 429, 200) AS status,
    if(number % 100 = 42, 'upstream_rate_limited', '') AS error_class,
    1 AS stream,
    1000 + intHash32(number * 11) % 20000 AS input_tokens,
    50 + intHash32(number * 13) % 2000 AS output_tokens,
    intHash32(number * 17) % 100000 AS cache_read_tokens,
    intHash32(number * 19) % 5000 AS cache_creation_tokens,
    if(is_unpriced, 0, input_tokens * 3000 + output_tokens * 15000 + cache_read_tokens * 300
        + cache_creation_tokens * 3750) AS cost_nanos,
    0 AS pricing_version,
    500 + intHash32(number * 23) % 60000 AS latency_ms,
    200 + intHash32(number * 29) % 3000 AS ttfb_ms,
    concat('ses_', toString(u), '_', toString(intDiv(toUInt32(t), 14400))) AS session_id,
    'claude-cli/2.1.332' AS client_version,
    'bench' AS replica,
    toUInt8(is_unpriced) AS unpriced,
    if(is_unpriced, input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens, 0) AS unpriced_tokens,
    toUInt8(number % 50 = 1) AS usage_estimated,
    requested_model AS priced_model
FROM
(
    SELECT
        number,
        toDateTime(toUInt32(now()) - {span} + intDiv(number * {span}, {rows})) AS t,
        intHash32(number) % {USERS} AS u,
        intHash32(number * 7) % 10 = 0 AS on_bedrock,
        number % 200 = 3 AS is_unpriced
    FROM numbers({rows})
)
""")


def fill_dimensions(ch: ClickHouse, db: str) -> None:
    ch.run(f"""
INSERT INTO {db}.users (user_id, name, email, description, team_id, status, routing, monthly_budget_nanos,
    created_at, updated_at, deactivated_at, stream_seq)
SELECT concat('usr_01JBENCHUSER', toString(10000 + number)), concat('dev', toString(number)),
    concat('dev', toString(number), '@example.com'), '', concat('team_', toString(number % 20)), 'active',
    'plan_first', NULL, now() - 100 * 86400, now() - 100 * 86400, NULL, number + 1
FROM numbers({USERS})""")
    ch.run(f"""
INSERT INTO {db}.keys (key_id, user_id, name, key_prefix, status, bedrock_region, bedrock_default_model,
    bedrock_key, bedrock_readiness, created_at, updated_at, revoked_at, stream_seq)
SELECT concat('key_01JBENCHKEY', toString(20000 + number)), concat('usr_01JBENCHUSER', toString(10000 + intDiv(number, 2))),
    'laptop', 'ak_bench', 'active', 'eu-west-1', '', 1, 'ready', now() - 100 * 86400, now() - 100 * 86400, NULL,
    {USERS} + number + 1
FROM numbers({USERS * 2})""")


def optimize(ch: ClickHouse, db: str) -> None:
    tables = ch.run(
        f"SELECT name FROM system.tables WHERE database = '{db}' AND engine LIKE '%MergeTree' FORMAT TSV"
    ).split()
    for table in tables:
        ch.run(f"OPTIMIZE TABLE {db}.{table} FINAL")


# ------------------------------------------------------------------------------------------
# The admin API's queries (admin-api/src/usage/), as SQL text with the values it binds.
# ------------------------------------------------------------------------------------------

RAW_MODEL = "if(priced_model != '', priced_model, if(response_model != '', response_model, requested_model))"
RAW_MEASURES = (
    "count() AS n_requests, countIf(error_class != '') AS n_errors, sum(fallback) AS n_fallbacks, "
    "sum(input_tokens) AS n_input, sum(output_tokens) AS n_output, sum(cache_read_tokens) AS n_cache_read, "
    "sum(cache_creation_tokens) AS n_cache_creation, sum(cost_nanos) AS n_cost, sum(unpriced) AS n_unpriced, "
    "sum(unpriced_tokens) AS n_unpriced_tokens, sum(usage_estimated) AS n_estimated"
)
ROLLUP_MEASURES = (
    "sum(requests) AS n_requests, sum(errors) AS n_errors, sum(fallbacks) AS n_fallbacks, "
    "sum(input_tokens) AS n_input, sum(output_tokens) AS n_output, sum(cache_read_tokens) AS n_cache_read, "
    "sum(cache_creation_tokens) AS n_cache_creation, sum(cost_nanos) AS n_cost, "
    "sum(unpriced_requests) AS n_unpriced, sum(unpriced_tokens) AS n_unpriced_tokens, "
    "sum(estimated_requests) AS n_estimated"
)
SOURCES = {
    "usage_day": ("bucket", "model", ROLLUP_MEASURES),
    "usage_hour": ("bucket", "model", ROLLUP_MEASURES),
    "requests": ("occurred_at", RAW_MODEL, RAW_MEASURES),
    "requests_by_user": ("occurred_at", "model", RAW_MEASURES),
}


def usage_sql(db, table, bucket, tz, start, end, group=(), user=None, key=None):
    """`read_usage` (admin-api/src/usage/sql.rs) with its arguments bound."""
    time_col, model, measures = SOURCES[table]
    b = {
        "hour": f"toStartOfHour({time_col}, '{tz}')",
        "day": f"toStartOfDay({time_col}, '{tz}')",
        "month": f"toDateTime(toStartOfMonth({time_col}, '{tz}'), '{tz}')",
    }[bucket]
    select = [f"toUInt32({b}) AS b"]
    groups = ["b"]
    for dim, column, alias in (("user", "user_id", "g_user"), ("key", "key_id", "g_key"),
                               ("model", model, "g_model"), ("provider", "provider", "g_provider")):
        if dim in group:
            select.append(f"{column} AS {alias}")
            groups.append(alias)
        else:
            select.append(f"'' AS {alias}")
    where = [f"{time_col} >= toDateTime({start})", f"{time_col} < toDateTime({end})"]
    if user:
        where.append(f"user_id = '{user}'")
    if key:
        where.append(f"key_id = '{key}'")
    if key and not user and table == "requests_by_user":
        where.append(f"user_id IN (SELECT user_id FROM {db}.key_last_used WHERE key_id = '{key}')")
    g = ", ".join(groups)
    return (f"SELECT {', '.join(select)}, {measures} FROM {db}.{table} WHERE {' AND '.join(where)} "
            f"GROUP BY {g} ORDER BY {g}")


def last_used_sql(db, table, keys):
    array = "[" + ", ".join(f"'{k}'" for k in keys) + "]"
    if table == "requests":
        return f"SELECT key_id, max(occurred_at) AS last_at FROM {db}.requests WHERE has({array}, key_id) GROUP BY key_id"
    return f"SELECT key_id, max(last_used_at) AS last_at FROM {db}.key_last_used WHERE has({array}, key_id) GROUP BY key_id"


def recent_sql(db, user, since, after):
    if not after:
        return (f"SELECT * FROM {db}.requests WHERE (occurred_at, request_id) IN "
                f"(SELECT occurred_at, request_id FROM {db}.requests WHERE occurred_at >= toDateTime({since}) "
                f"AND user_id = '{user}' ORDER BY occurred_at DESC, request_id DESC LIMIT 20) "
                f"AND user_id = '{user}' ORDER BY occurred_at DESC, request_id DESC LIMIT 20")
    return (f"SELECT * FROM {db}.requests WHERE (occurred_at, request_id) IN "
            f"(SELECT occurred_at, request_id FROM {db}.requests_by_user WHERE user_id = '{user}' "
            f"AND occurred_at >= toDateTime({since}) ORDER BY occurred_at DESC, request_id DESC LIMIT 20) "
            f"AND occurred_at >= toDateTime({since}) AND user_id = '{user}' "
            f"ORDER BY occurred_at DESC, request_id DESC LIMIT 20")


def request_by_id_sql(db, request_id, minted, after):
    """A request id that is not there: the near window, then the wide one (after) or everything."""
    near = (f"SELECT * FROM {db}.requests PREWHERE request_id = '{request_id}' WHERE occurred_at >= "
            f"toDateTime({minted - 86400}) AND occurred_at < toDateTime({minted + 7 * 86400}) "
            "ORDER BY occurred_at DESC LIMIT 1")
    if after:
        wide = (f"SELECT * FROM {db}.requests PREWHERE request_id = '{request_id}' WHERE occurred_at >= "
                f"toDateTime({minted - 35 * 86400}) AND occurred_at < toDateTime({minted + 35 * 86400}) "
                "ORDER BY occurred_at DESC LIMIT 1")
    else:
        wide = f"SELECT * FROM {db}.requests PREWHERE request_id = '{request_id}' ORDER BY occurred_at DESC LIMIT 1"
    return [near, wide]


def scenarios(ch: ClickHouse, db: str, after: bool):
    now = int(ch.run("SELECT toUInt32(now())").strip())
    month_utc = int(ch.run("SELECT toUInt32(toDateTime(toStartOfMonth(now(), 'UTC'), 'UTC'))").strip())
    month_berlin = int(ch.run("SELECT toUInt32(toDateTime(toStartOfMonth(now(), 'Europe/Berlin'), 'Europe/Berlin'))").strip())
    next_utc = int(ch.run("SELECT toUInt32(toDateTime(addMonths(toStartOfMonth(now(), 'UTC'), 1), 'UTC'))").strip())
    next_berlin = int(ch.run("SELECT toUInt32(toDateTime(addMonths(toStartOfMonth(now(), 'Europe/Berlin'), 1), 'Europe/Berlin'))").strip())
    today_utc = now - now % 86400
    user, key = "usr_01JBENCHUSER10042", "key_01JBENCHKEY20084"
    all_keys = [f"key_01JBENCHKEY{20000 + i}" for i in range(USERS * 2)]
    one = "requests_by_user" if after else None
    # Kolkata days: 18:30 UTC boundaries, so no rollup fits beyond the minute retention.
    kolkata_end = today_utc + 86400 - 19800
    out = [
        ("usage: user, this month by day (UTC)",
         usage_sql(db, one or "usage_day", "day", "UTC", month_utc, next_utc, user=user)),
        ("usage: user budget, month (Europe/Berlin)",
         usage_sql(db, one or "usage_hour", "month", "Europe/Berlin", month_berlin, next_berlin, user=user)),
        ("usage: user, last 30 days by day (Asia/Kolkata)",
         usage_sql(db, one or "requests", "day", "Asia/Kolkata", kolkata_end - 30 * 86400, kolkata_end, user=user)),
        ("usage: key, this month by day (UTC)",
         usage_sql(db, one or "usage_day", "day", "UTC", month_utc, next_utc, key=key)),
        ("usage: self-service, user this month by model,provider (UTC)",
         usage_sql(db, one or "usage_day", "month", "UTC", month_utc, next_utc, group=("model", "provider"), user=user)),
        ("usage: all users, this month by provider (overview)",
         usage_sql(db, "usage_day", "month", "UTC", month_utc, next_utc, group=("provider",))),
        ("usage: all users, this month by user (overview)",
         usage_sql(db, "usage_day", "month", "UTC", month_utc, next_utc, group=("user",))),
        ("usage: last 24 h by hour and provider (overview)",
         usage_sql(db, "usage_hour", "hour", "UTC", now - now % 3600 - 23 * 3600, now - now % 3600 + 3600, group=("provider",))),
        ("keys page: last used of 1000 keys",
         last_used_sql(db, "key_last_used" if after else "requests", all_keys)),
        ("user page: last used of the user's 2 keys",
         last_used_sql(db, "key_last_used" if after else "requests", all_keys[84:86])),
        ("self-service: latest 20 requests (31 days)", recent_sql(db, user, now - 31 * 86400, after)),
    ]
    for i, sql in enumerate(request_by_id_sql(db, "req_01JBENCHNOTTHERE", now - 86400, after)):
        out.append((f"request by id, not found: {'near window' if i == 0 else 'second look'}", sql))
    return out


def example_queries(db: str, names: list[str] | None):
    for path in sorted((ROOT / "schemas" / "queries").glob("*.sql")):
        if names is None or path.stem in names:
            yield f"example: {path.stem}", path.read_text(encoding="utf-8").replace("{db}", db)


def measure(ch: ClickHouse, runs: int, items) -> list[dict]:
    results = []
    for name, sql in items:
        sqls = sql if isinstance(sql, list) else [sql]
        warm = sum(ch.timed(s)[0] for s in sqls)  # warm-up
        # A query slower than 2 s is run 5 times: its p95 is then the slowest of 5.
        times, read = [], 0
        for _ in range(runs if warm < 2000 else min(runs, 5)):
            total, read = 0.0, 0
            for s in sqls:
                ms, rows = ch.timed(s)
                total += ms
                read += rows
            times.append(total)
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        results.append({"query": name, "p50_ms": statistics.median(times), "p95_ms": p95, "rows_read": read,
                        "runs": len(times)})
        print(f"  {name:<62} p50 {statistics.median(times):8.1f} ms  p95 {p95:8.1f} ms  rows read {read:>11,}"
              f"  ({len(times)} runs)", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("CCP_TEST_CLICKHOUSE_URL", "http://127.0.0.1:8123"))
    parser.add_argument("--db", default="ccp_bench_analytics")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    ch, db = ClickHouse(args.url), args.db
    version = ch.run("SELECT version()").strip()
    print(f"ClickHouse {version} at {args.url}, database {db}, {args.rows:,} requests, {args.runs} runs per query")
    ch.run(f"DROP DATABASE IF EXISTS {db}")
    ch.run(f"CREATE DATABASE {db}")
    report = {"clickhouse": version, "rows": args.rows, "runs": args.runs}
    try:
        migrate(ch, db, range(1, 6))
        started = time.perf_counter()
        generate(ch, db, args.rows)
        report["generate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        optimize(ch, db)
        report["optimize_s"] = time.perf_counter() - started
        counts = {t: int(ch.run(f"SELECT count() FROM {db}.{t}").strip()) for t in ("requests", "usage_hour", "usage_day")}
        print(f"generated in {report['generate_s']:.0f} s, merged in {report['optimize_s']:.0f} s: {counts}")
        report["rows_before"] = counts
        print("before (migrations 0001-0005, the admin API's queries before this change):")
        report["before"] = measure(ch, args.runs, list(scenarios(ch, db, after=False))
                                   + list(example_queries(db, ["cost_per_user_this_month", "cache_hit_ratio_per_user",
                                                               "fallback_rate_per_day", "top_sessions_by_cost",
                                                               "plan_limit_pressure_per_user"])))
        started = time.perf_counter()
        migrate(ch, db, range(6, 7))
        report["migration_0006_s"] = time.perf_counter() - started
        fill_dimensions(ch, db)
        optimize(ch, db)
        print(f"migration 0006 (backfill of requests_by_user and key_last_used) took {report['migration_0006_s']:.0f} s")
        print("after (migration 0006, the admin API's queries now):")
        report["after"] = measure(ch, args.runs, list(scenarios(ch, db, after=True)) + list(example_queries(db, None)))
        parts = ch.run(
            f"SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = '{db}' AND active "
            "GROUP BY table ORDER BY table FORMAT TSV"
        )
        report["bytes_on_disk"] = {line.split("\t")[0]: int(line.split("\t")[1]) for line in parts.splitlines() if line}
        print("bytes on disk:", report["bytes_on_disk"])
    finally:
        if not args.keep:
            ch.run(f"DROP DATABASE IF EXISTS {db}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
