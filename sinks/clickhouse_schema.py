"""The ClickHouse schema (``sinks/clickhouse/schema.sql``) and connection arguments, for the history adapter
and for anything else that talks to the same database over HTTP (``streams.sql``, tests, benchmarks).

``apply_schema`` is idempotent (every statement is ``IF NOT EXISTS``), keeps the tick TTL in line with the
configuration, and refuses a database whose tables still have an older layout (they would silently keep
it: ``CREATE TABLE IF NOT EXISTS`` never changes an existing table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

__all__ = [
    "DAY_PARTITIONED",
    "SCHEMA_FILE",
    "ClickHouseConfig",
    "apply_schema",
    "check_identifier",
    "client_args",
    "create_database",
    "schema_statements",
]

SCHEMA_FILE = Path(__file__).resolve().parent / "clickhouse" / "schema.sql"
_TTL_DAYS = re.compile(r"TTL inserted_at \+ (?:toIntervalDay\((\d+)\)|INTERVAL (\d+) DAY)")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# History table -> (partition key, sorting key) as system.tables reports them.
DAY_PARTITIONED: dict[str, tuple[str, str]] = {
    "ticks": ("toYYYYMMDD(ts)", "symbol, ts, seq"),
    "bars": ("toYYYYMMDD(start)", "symbol, timeframe, start"),
    "indicators": ("toYYYYMMDD(start)", "symbol, timeframe, start"),
    "signals": ("toYYYYMMDD(start)", "symbol, start, timeframe, model_version"),
}


@dataclass(frozen=True, slots=True)
class ClickHouseConfig:
    """``url`` is ``http(s)://host[:port]`` of the ClickHouse HTTP interface. ``ticks_ttl_days``: ticks are
    deleted this many days after they were inserted (0 keeps them forever); applied by :func:`apply_schema`,
    also to an existing table."""

    url: str = "http://127.0.0.1:18123"
    database: str = "stockpulse"
    username: str = "default"
    password: str | None = None
    ticks_ttl_days: int = 90
    connect_timeout_s: float = 5.0
    send_receive_timeout_s: float = 60.0
    compress: bool = True
    threads: int = 2


def check_identifier(name: str, what: str = "database") -> str:
    """``name`` if it is a plain identifier (letters, digits, ``_``); raises ``ValueError`` naming the fix."""
    if not _IDENT.match(name):
        raise ValueError(
            f"ClickHouse {what} name {name!r} is not a plain identifier: use letters, digits and _ "
            "(starting with a letter or _), at most 64 characters"
        )
    return name


def schema_statements(ticks_ttl_days: int = 90) -> list[str]:
    """The statements of ``schema.sql`` with the tick TTL filled in, comments removed."""
    if ticks_ttl_days < 0:
        raise ValueError(f"ticks_ttl_days={ticks_ttl_days}: use 0 (keep forever) or a number of days")
    ttl = f"TTL inserted_at + INTERVAL {int(ticks_ttl_days)} DAY" if ticks_ttl_days else ""
    text = Template(SCHEMA_FILE.read_text()).substitute(ticks_ttl=ttl)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _check_layout(client: Client) -> None:
    """Raise ``RuntimeError`` when a history table exists with another partition or sorting key."""
    rows = client.query(
        "SELECT name, partition_key, sorting_key FROM system.tables "
        "WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": list(DAY_PARTITIONED)},
    ).result_rows
    for name, partition_key, sorting_key in rows:
        want = DAY_PARTITIONED[name]
        if (partition_key.replace(" ", ""), sorting_key.replace(" ", "")) != tuple(
            w.replace(" ", "") for w in want
        ):
            database = client.database or "the configured database"
            raise RuntimeError(
                f"table {database}.{name} has an older layout (PARTITION BY {partition_key} ORDER BY "
                f"({sorting_key})); the schema now uses PARTITION BY {want[0]} ORDER BY ({want[1]}). "
                "Nothing migrates it in place: drop the database "
                f"(`stockpulse sql --write 'DROP DATABASE {database}'`) or point "
                "STOCKPULSE_CLICKHOUSE__DATABASE at a new one, then restart"
            )


def apply_schema(client: Client, ticks_ttl_days: int = 90) -> None:
    """Create the tables and views in the client's database (idempotent), and bring the tick TTL of an
    existing ``ticks`` table to ``ticks_ttl_days``. The database itself must exist (see
    :func:`create_database`). Raises ``RuntimeError`` for tables of an older layout."""
    _check_layout(client)
    for statement in schema_statements(ticks_ttl_days):
        client.command(statement)
    engine = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'ticks'"
    ).result_rows[0][0]
    found = _TTL_DAYS.search(engine)
    days = int(found.group(1) or found.group(2)) if found else 0
    if days != ticks_ttl_days:
        if ticks_ttl_days:
            client.command(f"ALTER TABLE ticks MODIFY TTL inserted_at + INTERVAL {int(ticks_ttl_days)} DAY")
        else:
            client.command("ALTER TABLE ticks REMOVE TTL")


def client_args(config: ClickHouseConfig) -> dict[str, Any]:
    """Keyword arguments of ``clickhouse_connect.get_client`` for ``config`` (no database, no session).
    Raises ``ValueError`` naming the fix for a URL that is not ``http(s)://host[:port]``."""
    url = urlsplit(config.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(
            f"ClickHouse url {config.url!r} is not http(s)://host[:port]: give the HTTP interface's URL, "
            "e.g. http://127.0.0.1:8123"
        )
    return {
        "host": url.hostname,
        "port": url.port or (8443 if url.scheme == "https" else 8123),
        "interface": url.scheme,
        "username": config.username,
        "password": config.password or "",
        "connect_timeout": config.connect_timeout_s,
        "send_receive_timeout": config.send_receive_timeout_s,
        "compress": config.compress,
        "autogenerate_session_id": False,  # no sessions: the client is shared by the pool's threads
    }


def create_database(config: ClickHouseConfig) -> None:
    """``CREATE DATABASE IF NOT EXISTS`` the configured database (a client bound to a missing database
    cannot connect, so this uses a client on the server's default database)."""
    db = check_identifier(config.database)
    boot = clickhouse_connect.get_client(**client_args(config))
    try:
        boot.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    finally:
        boot.close()
