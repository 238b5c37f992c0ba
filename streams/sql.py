"""``stockpulse sql``: analysts' ClickHouse SQL while the pipeline runs.

Queries go over ClickHouse's HTTP interface at ``STOCKPULSE_CLICKHOUSE__URL``: locally that is the process
of ``stockpulse stack up`` that owns the embedded engine's data directory (chdb allows one process per
directory, so nobody else opens it), in production a ClickHouse server; the code is the same. Without
``--write`` only reading statements run (``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``, ``EXPLAIN``,
``EXISTS``), so an analyst cannot drop history by accident; in production, give analysts a read-only
ClickHouse user as well.

>>> split_statements("-- count\\nSELECT 1;\\n\\n/* two */ SELECT 'a;b' AS x;\\nSELECT 3")
['SELECT 1', "/* two */ SELECT 'a;b' AS x", 'SELECT 3']
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.clickhouse_schema import client_args
from streams.config import Settings
from streams.stores import clickhouse_config

Format = Literal["table", "csv", "tsv", "json"]
_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|--[^\n]*|/\*.*?\*/|;|[^'\";\-/]+|.", re.DOTALL)
_READONLY_HINT = (
    "statements that change data run only with --write; add --write if that is what you "
    "mean (e.g. `stockpulse sql --write 'OPTIMIZE TABLE ticks FINAL'`)"
)


_READS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "(SELECT"})


class SqlError(RuntimeError):
    """A query failed; the message names the query, ClickHouse's reason and what to check."""


@dataclass(frozen=True)
class Result:
    statement: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


def split_statements(text: str) -> list[str]:
    """The statements of a script, split on ``;`` outside quotes and comments; comment-only parts and
    leading ``--`` comment lines are dropped."""
    out: list[str] = []
    cur: list[str] = []
    for tok in _TOKEN.findall(text):
        if tok == ";":
            out.append("".join(cur))
            cur = []
        elif not tok.startswith("--"):
            cur.append(tok)
    out.append("".join(cur))
    return [s.strip() for s in out if s.strip() and not re.fullmatch(r"(\s|/\*.*?\*/)*", s, re.DOTALL)]


def check_read_only(statement: str) -> None:
    """Raise :class:`SqlError` for a statement that is not a read.

    >>> check_read_only("  /* q */ with x as (select 1) select * from x")
    >>> check_read_only("DROP TABLE ticks")
    Traceback (most recent call last):
    ...
    streams.sql.SqlError: 'DROP TABLE ticks' is not a read: ...
    """
    body = re.sub(r"\A(\s|/\*.*?\*/)*", "", statement, flags=re.DOTALL)
    word = body.split(None, 1)[0].upper() if body.split() else ""
    if word not in _READS:
        raise SqlError(f"{statement[:200]!r} is not a read: {_READONLY_HINT}")


def run(
    settings: Settings, statements: Sequence[str], database: str | None = None, write: bool = False
) -> list[Result]:
    """Run ``statements`` in order on one connection; stops at the first failure (:class:`SqlError`)."""
    config = clickhouse_config(settings)
    db = database or config.database
    try:
        client = clickhouse_connect.get_client(**client_args(config), database=db)
    except (ClickHouseError, OSError, ValueError) as exc:
        raise SqlError(
            f"cannot reach ClickHouse at {config.url} (database {db}): {exc}; is the stack up "
            "(`stockpulse stack status`) and STOCKPULSE_CLICKHOUSE__URL right?"
        ) from exc
    if not write:
        for statement in statements:
            check_read_only(statement)
    results = []
    try:
        for statement in statements:
            try:
                q = client.query(statement)
            except ClickHouseError as exc:
                text = str(exc)
                hint = "check the table and column names (`stockpulse sql 'SHOW TABLES'`)"
                raise SqlError(f"query failed: {statement[:200]!r}: {text.strip()[:600]}; {hint}") from exc
            results.append(Result(statement, tuple(q.column_names), [tuple(r) for r in q.result_rows]))
    finally:
        client.close()
    return results


def render(result: Result, fmt: Format) -> str:
    """The result as CSV, TSV or JSON lines (``table`` is drawn by the CLI with rich)."""
    if fmt == "json":
        return "\n".join(
            json.dumps(dict(zip(result.columns, r, strict=True)), default=str) for r in result.rows
        )
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows(result.rows)
    return buf.getvalue().rstrip("\n")
