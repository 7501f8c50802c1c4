#!/usr/bin/env python3
"""Runs the ClickHouse migrations (and the representative queries) on a current ClickHouse.

The migrations in `schemas/migrations/NNNN_name.sql` are applied by the Rust runner
(`schemas/src/migrations.rs`) to the ClickHouse 18.16 server installable on the development
machines. This script shows that the same DDL also works on a current release, using chDB
(ClickHouse in-process, `pip install -r scripts/requirements-ci.txt`), without any server:

1. `CREATE DATABASE IF NOT EXISTS ccp_lts_check`, then every migration's statements, split
   exactly like the Rust runner, in file order; then all of them once more (idempotency).
2. One row inserted into every table the migrations created, with a value of each column's
   type, then `SELECT count()` on it: the columns accept data.
3. Every `.sql` file under `schemas/queries/` (if that directory exists), split the same way,
   `{db}` substituted. Named parameters in ClickHouse's `{name:Type}` syntax take their sample
   values from a leading comment line `-- params: name=value, other=value`.
4. The `ON CLUSTER` variant (`clickhouse.cluster`): `schemas/fixtures/clickhouse/on_cluster.sql`,
   the statements the Rust runner renders for a cluster (a unit test keeps the file current).
   A cluster with replicated tables needs ZooKeeper and `remote_servers`, which an in-process
   ClickHouse has not, so each statement is parsed and formatted (`formatQuery`), not run: it
   must parse, keep its `ON CLUSTER`, and a table must keep its `Replicated*` engine. A backfill
   (`INSERT INTO t (…) SELECT …`, data rather than DDL) has no `ON CLUSTER` form: it must parse.
5. The dictionaries of `schemas/dictionaries/*.sql` (DDL dictionaries over the `users`, `teams`
   and `keys` dimensions: ClickHouse 18.16 has none, so they are checked here only), created in
   the check's database after one user, one team and one key were inserted, then read with `dictGet`: the name must
   come back.

Prints one line per migration file, table and query file, then
`clickhouse LTS check: N statements OK on ClickHouse <version>`. On any failure it prints the
statement and ClickHouse's error and exits 1.

Uses the Python standard library and chdb only.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import tempfile
import time
from pathlib import Path

DB = "ccp_lts_check"

# Engines whose "tables" take no rows of their own (or are not tables at all).
NO_ROW_ENGINES = {"View", "MaterializedView", "LiveView", "WindowView", "Dictionary"}
# Engines that accept an insert but keep no row to count.
NO_COUNT_ENGINES = {"Null"}

PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}")
PARAMS_LINE = re.compile(r"^\s*--\s*params\s*:(.*)$", re.IGNORECASE)


class CheckFailed(Exception):
    """A statement failed; carries what to print."""

    def __init__(self, what: str, sql: str, error: str):
        super().__init__(what)
        self.what = what
        self.sql = sql
        self.error = error


# --------------------------------------------------------------------------------------------
# Statement splitting: the same as `Migration::statements` in schemas/src/migrations.rs.
# --------------------------------------------------------------------------------------------


def rust_lines(text: str) -> list[str]:
    """`str::lines()`: split on '\\n', strip one trailing '\\r', no final empty line."""
    if text == "":
        return []
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def split_statements(sql: str, db: str) -> list[str]:
    """Split on ';', drop lines starting with '--' (after leading whitespace), join with
    '\\n', substitute `{db}`, drop statements that are only whitespace."""
    out = []
    for chunk in sql.split(";"):
        kept = [line for line in rust_lines(chunk) if not line.lstrip().startswith("--")]
        stmt = "\n".join(kept).replace("{db}", db)
        if stmt.strip():
            out.append(stmt)
    return out


# --------------------------------------------------------------------------------------------
# chDB
# --------------------------------------------------------------------------------------------


class Runner:
    """A chDB session in a temporary directory, counting the statements it ran."""

    def __init__(self, path: str):
        try:
            from chdb import session as chdb_session  # noqa: PLC0415
        except ImportError as err:
            print(
                f"clickhouse LTS check: chdb is not installed ({err}); "
                "run `pip install -r scripts/requirements-ci.txt`",
                file=sys.stderr,
            )
            sys.exit(1)
        self.session = chdb_session.Session(path)
        try:
            sig = inspect.signature(self.session.query)
            self.supports_params = "params" in sig.parameters
        except (TypeError, ValueError):
            self.supports_params = False
        self.count = 0

    def run(self, what: str, sql: str, params: dict[str, str] | None = None) -> str:
        try:
            if params:
                result = self.session.query(sql, "TabSeparated", params=params)
            else:
                result = self.session.query(sql, "TabSeparated")
        except Exception as err:  # chdb raises its own ChdbError / RuntimeError / ValueError
            raise CheckFailed(what, sql, f"{type(err).__name__}: {err}") from err
        # Older chdb versions return a result object with an error instead of raising.
        get_error = getattr(result, "error_message", None)
        if callable(get_error):
            message = get_error()
            if message:
                raise CheckFailed(what, sql, str(message))
        self.count += 1
        return "" if result is None else str(result)

    def close(self) -> None:
        close = getattr(self.session, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


# --------------------------------------------------------------------------------------------
# Sample values for column types and query parameters
# --------------------------------------------------------------------------------------------


def split_type_args(args: str) -> list[str]:
    """Split the arguments of a type like `Map(String, Array(UInt8))` at top-level commas."""
    out, depth, quote, cur = [], 0, None, []
    for ch in args:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def unwrap(type_name: str, wrapper: str) -> str | None:
    prefix = wrapper + "("
    if type_name.startswith(prefix) and type_name.endswith(")"):
        return type_name[len(prefix) : -1].strip()
    return None


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sample_expr(type_name: str) -> str:
    """An SQL expression giving a value of `type_name` (as `system.columns` spells it)."""
    t = type_name.strip()
    if unwrap(t, "Nullable") is not None:
        return f"CAST(NULL AS {t})"
    inner = unwrap(t, "LowCardinality")
    if inner is not None:
        return f"CAST({sample_expr(inner)} AS {t})"
    base = t.split("(", 1)[0]
    if base in ("String", "FixedString"):
        expr = "''"
    elif re.fullmatch(r"U?Int(8|16|32|64|128|256)|Float(32|64)|BFloat16|Decimal\d*", base):
        expr = "1"  # not 0: SummingMergeTree drops rows whose sums are all zero
    elif base == "Bool":
        expr = "false"
    elif base == "DateTime":
        expr = "now()"
    elif base == "DateTime64":
        expr = "now64(3)"
    elif base in ("Date", "Date32"):
        expr = "today()"
    elif base == "UUID":
        expr = "generateUUIDv4()"
    elif base == "Array":
        expr = "[]"
    elif base == "Map":
        expr = "map()"
    else:
        # Enums, tuples, IPs, JSON, ...: the type's own default value.
        return f"defaultValueOfTypeName({sql_string(t)})"
    return f"CAST({expr} AS {t})"


def parse_params(sql: str) -> dict[str, str]:
    """`name=value` pairs from a `-- params:` line among the file's leading comment lines."""
    params: dict[str, str] = {}
    for line in rust_lines(sql):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = PARAMS_LINE.match(stripped)
        if not match:
            continue
        for pair in match.group(1).split(","):
            pair = pair.strip()
            if not pair:
                continue
            if "=" not in pair:
                raise ValueError(f"`-- params:` entry `{pair}` is not name=value")
            name, value = (p.strip() for p in pair.split("=", 1))
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            params[name] = value
    return params


def literal_for(value: str, type_name: str) -> str:
    """The textual replacement of a `{name:Type}` placeholder: quoted unless numeric-like."""
    t = type_name.strip()
    while True:
        inner = unwrap(t, "Nullable") or unwrap(t, "LowCardinality")
        if inner is None:
            break
        t = inner
    base = t.split("(", 1)[0]
    if base == "Identifier":
        return value
    if re.fullmatch(
        r"U?Int(8|16|32|64|128|256)|Float(32|64)|BFloat16|Decimal\d*|Bool|Array|Tuple|Map", base
    ):
        return value
    return sql_string(value)


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def check_migrations(runner: Runner, migrations: list[Path]) -> list[str]:
    runner.run("create database", f"CREATE DATABASE IF NOT EXISTS {DB}")
    print(f"database {DB}: created")
    all_statements: list[tuple[str, str]] = []
    for path in migrations:
        statements = split_statements(path.read_text(encoding="utf-8"), DB)
        if not statements:
            raise CheckFailed(f"migration {path.name}", "", "no statements in the file")
        for i, stmt in enumerate(statements, 1):
            what = f"migration {path.name}, statement {i}"
            runner.run(what, stmt)
            all_statements.append((what, stmt))
        print(f"migration {path.name}: {len(statements)} statement(s) OK")
    for what, stmt in all_statements:
        try:
            runner.run(f"{what} (second run)", stmt)
        except CheckFailed as err:
            # ADD COLUMN has no IF NOT EXISTS on 18.16; the Rust runner takes "already exists"
            # on it as done (migrations.rs, `adds_columns`/`column_exists`), and so does this.
            upper = stmt.lstrip().upper()
            adds = upper.startswith("ALTER TABLE") and "ADD COLUMN" in upper
            if not (adds and "already exists" in err.error):
                raise
            print(f"{what} (second run): columns already exist, as the runner accepts")
    print(f"migrations again (idempotency): {len(all_statements)} statements OK")
    return [name for name in runner.run("list tables", tables_sql()).splitlines() if name]


def tables_sql() -> str:
    return (
        f"SELECT name FROM system.tables WHERE database = {sql_string(DB)} "
        f"AND engine NOT IN ({', '.join(sql_string(e) for e in sorted(NO_ROW_ENGINES))}) "
        "ORDER BY name"
    )


def check_rows(runner: Runner, tables: list[str]) -> None:
    for table in tables:
        engine = runner.run(
            f"engine of {table}",
            f"SELECT engine FROM system.tables WHERE database = {sql_string(DB)} "
            f"AND name = {sql_string(table)}",
        ).strip()
        cols_tsv = runner.run(
            f"columns of {table}",
            "SELECT name, type FROM system.columns "
            f"WHERE database = {sql_string(DB)} AND table = {sql_string(table)} "
            "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position",
        )
        columns = []
        for line in cols_tsv.splitlines():
            if not line:
                continue
            name, type_name = line.split("\t", 1)
            # TabSeparated escapes backslashes and quotes; undo the common cases.
            type_name = type_name.replace("\\'", "'").replace("\\\\", "\\")
            columns.append((name, type_name))
        if not columns:
            raise CheckFailed(f"table {table}", "", "no insertable columns")
        target = f"{DB}.`{table}`"
        before = int(runner.run(f"count {table}", f"SELECT count() FROM {target}").strip())
        col_list = ", ".join(f"`{name}`" for name, _ in columns)
        values = ",\n    ".join(f"{sample_expr(t)} AS `{name}`" for name, t in columns)
        runner.run(
            f"insert into {table}",
            f"INSERT INTO {target} ({col_list})\nSELECT\n    {values}",
        )
        after = int(runner.run(f"count {table}", f"SELECT count() FROM {target}").strip())
        if engine in NO_COUNT_ENGINES:
            print(f"table {table} ({engine}): {len(columns)} column(s) accept a row (not counted)")
            continue
        if after - before != 1:
            raise CheckFailed(
                f"count {table}",
                f"SELECT count() FROM {target}",
                f"expected {before + 1} row(s) after one insert, found {after}",
            )
        print(f"table {table} ({engine}): {len(columns)} column(s) accept a row, count() = {after}")


def check_queries(runner: Runner, queries_dir: Path, root: Path) -> None:
    files = sorted(p for p in queries_dir.rglob("*.sql") if p.is_file())
    if not files:
        print(f"queries: none in {queries_dir.relative_to(root)}")
        return
    for path in files:
        rel = path.relative_to(root)
        sql = path.read_text(encoding="utf-8")
        try:
            params = parse_params(sql)
        except ValueError as err:
            raise CheckFailed(f"query file {rel}", "", str(err)) from err
        statements = split_statements(sql, DB)
        if not statements:
            raise CheckFailed(f"query file {rel}", "", "no statements in the file")
        for i, stmt in enumerate(statements, 1):
            what = f"query {rel}, statement {i}"
            used = {m.group(1): m.group(2) for m in PLACEHOLDER.finditer(stmt)}
            missing = sorted(set(used) - set(params))
            if missing:
                raise CheckFailed(
                    what,
                    stmt,
                    "no sample value for parameter(s) "
                    + ", ".join(f"{{{n}:{used[n]}}}" for n in missing)
                    + "; add them to a leading `-- params: name=value, ...` comment line",
                )
            if not used:
                runner.run(what, stmt)
            elif runner.supports_params:
                runner.run(what, stmt, {n: params[n] for n in used})
            else:
                text = PLACEHOLDER.sub(
                    lambda m: literal_for(params[m.group(1)], m.group(2)), stmt
                )
                runner.run(what, text)
        note = f" (parameters: {', '.join(sorted(params))})" if params else ""
        print(f"query {rel}: {len(statements)} statement(s) OK{note}")


def is_backfill(stmt: str) -> bool:
    """`backfills` in schemas/src/migrations.rs: `INSERT INTO … SELECT …`, not `VALUES`."""
    upper = stmt.lstrip().upper()
    return upper.startswith("INSERT INTO") and "SELECT" in upper and "VALUES" not in upper


def check_dictionaries(runner: Runner, directory: Path, root: Path) -> None:
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise CheckFailed(f"dictionaries {directory.relative_to(root)}", "", "no .sql files")
    runner.run(
        "dictionary sample user",
        f"INSERT INTO {DB}.users (user_id, name, email, team_id, status, stream_seq) "
        "VALUES ('usr_dict', 'old name', 'a@example.com', 'team_x', 'active', 1), "
        "('usr_dict', 'Dict User', 'a@example.com', 'team_x', 'active', 2)",
    )
    runner.run(
        "dictionary sample key",
        f"INSERT INTO {DB}.keys (key_id, user_id, name, status, stream_seq) "
        "VALUES ('key_dict', 'usr_dict', 'laptop', 'active', 1)",
    )
    runner.run(
        "dictionary sample team",
        f"INSERT INTO {DB}.teams (team_id, name, stream_seq) "
        "VALUES ('team_x', 'old team', 1), ('team_x', 'Dict Team', 2)",
    )
    for path in files:
        rel = path.relative_to(root)
        statements = split_statements(path.read_text(encoding="utf-8"), DB)
        for i, stmt in enumerate(statements, 1):
            runner.run(f"dictionary {rel}, statement {i}", stmt)
        print(f"dictionaries {rel}: {len(statements)} statement(s) OK")
    got = runner.run(
        "dictGet",
        f"SELECT dictGet('{DB}.users_dict', 'name', tuple('usr_dict')), "
        f"dictGet('{DB}.users_dict', 'team_id', tuple('usr_dict')), "
        f"dictGet('{DB}.keys_dict', 'user_id', tuple('key_dict')), "
        f"dictGet('{DB}.teams_dict', 'name', tuple('team_x'))",
    ).strip()
    if got != "Dict User\tteam_x\tusr_dict\tDict Team":
        raise CheckFailed("dictGet", "", f"expected the newest user row and the key's user, got {got!r}")
    print("dictionaries: dictGet answers the newest row of users, teams and keys")


def check_cluster_ddl(runner: Runner, path: Path, root: Path) -> None:
    rel = path.relative_to(root)
    # The check must be able to fail: a statement the parser refuses has to raise.
    try:
        runner.run("formatQuery self-check", "SELECT formatQuery('CREATE TABLE t ON CLUSTER c (a UInt8) ENGINE = ReplicatedMergeTree(,)')")
    except CheckFailed:
        pass
    else:
        raise CheckFailed("cluster DDL", "", "formatQuery accepted a malformed statement; the check would prove nothing")
    statements = split_statements(path.read_text(encoding="utf-8"), DB)
    if not statements:
        raise CheckFailed(f"cluster DDL {rel}", "", "no statements in the file")
    for i, stmt in enumerate(statements, 1):
        what = f"cluster DDL {rel}, statement {i}"
        formatted = runner.run(what, f"SELECT formatQuery({sql_string(stmt)})")
        if is_backfill(stmt):
            continue
        if "ON CLUSTER" not in formatted:
            raise CheckFailed(what, stmt, f"the formatted statement lost its ON CLUSTER:\n{formatted}")
        if stmt.lstrip().upper().startswith("CREATE TABLE") and "ENGINE = Replicated" not in formatted:
            raise CheckFailed(what, stmt, f"the formatted table has no Replicated* engine:\n{formatted}")
    print(f"cluster DDL {rel}: {len(statements)} statement(s) parse with ON CLUSTER and Replicated* engines (formatQuery)")


def main() -> int:
    default_root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--root", type=Path, default=default_root, help="repository root (default: %(default)s)"
    )
    args = parser.parse_args()
    root: Path = args.root.resolve()
    migrations = sorted((root / "schemas" / "migrations").glob("*.sql"))
    if not migrations:
        print(f"clickhouse LTS check: no migrations in {root / 'schemas' / 'migrations'}",
              file=sys.stderr)
        return 1

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccp-lts-check-") as tmp:
        runner = Runner(tmp)
        try:
            version = runner.run("version", "SELECT version()").strip()
            print(f"ClickHouse {version} (chDB, session in {tmp})")
            tables = check_migrations(runner, migrations)
            check_rows(runner, tables)
            queries_dir = root / "schemas" / "queries"
            if queries_dir.is_dir():
                check_queries(runner, queries_dir, root)
            cluster_ddl = root / "schemas" / "fixtures" / "clickhouse" / "on_cluster.sql"
            if not cluster_ddl.is_file():
                raise CheckFailed("cluster DDL", "", f"{cluster_ddl} is missing (cargo test -p ccp-schemas writes it)")
            check_cluster_ddl(runner, cluster_ddl, root)
            dictionaries = root / "schemas" / "dictionaries"
            if dictionaries.is_dir():
                check_dictionaries(runner, dictionaries, root)
        except CheckFailed as failure:
            print(f"clickhouse LTS check FAILED: {failure.what}", file=sys.stderr)
            if failure.sql:
                print("--- statement ---", file=sys.stderr)
                print(failure.sql.strip(), file=sys.stderr)
            print("--- error ---", file=sys.stderr)
            print(failure.error.strip(), file=sys.stderr)
            return 1
        finally:
            runner.close()
    print(f"elapsed: {time.monotonic() - started:.1f}s")
    print(f"clickhouse LTS check: {runner.count} statements OK on ClickHouse {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
