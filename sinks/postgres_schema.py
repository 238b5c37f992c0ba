"""The PostgreSQL schema (``sinks/postgres/schema.sql``): applied idempotently, serialized across
services by an advisory lock, into one PostgreSQL schema (the adapter's search_path)."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

__all__ = ["SCHEMA_FILE", "apply_schema", "check_schema_name"]

SCHEMA_FILE = Path(__file__).resolve().parent / "postgres" / "schema.sql"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCHEMA_LOCK = 0x5350_4F52_4445_5253  # 'SPORDERS': advisory lock around DDL


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lower-case identifier; raises ``ValueError`` naming the fix."""
    if not _IDENT.match(name):
        raise ValueError(
            f"PostgreSQL schema name {name!r} is not a plain identifier: use lower-case letters, digits "
            "and _ (starting with a letter or _), at most 63 characters"
        )
    return name


async def apply_schema(conn: asyncpg.Connection, schema: str = "public") -> None:
    """Create ``schema`` and the tables in it (idempotent; serialized by an advisory lock)."""
    check_schema_name(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        await conn.execute(SCHEMA_FILE.read_text())
