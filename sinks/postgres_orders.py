"""Orders of record in PostgreSQL: signals, orders, fills and positions (asyncpg).

Writes go to the primary, one transaction per batch: the records are COPYed (binary) into a per-connection
temporary staging table, then moved with one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (positions:
``DO UPDATE … WHERE`` only forward in time). That is a fixed handful of round trips per batch whatever its
size. Reads (for the API) go to the streaming replica (``replica_dsn``), which lags the primary slightly.

Idempotency: every record has a deterministic primary key (signal_id, fill_id, order_id), so writing a
batch twice, or re-processing after a crash, stores each record once. ``orders`` is range-partitioned by
``ts`` (monthly partitions created on demand), so its primary key must be (order_id, ts); the small
``order_ids`` table keeps order_id unique across partitions even if a re-processed order's ts differs.
Positions move only forward: a fill older than the stored position's ``updated_at`` changes nothing; an
equal time replaces (the same fill again, or the later of two fills in the same microsecond).

Schema: ``sinks/postgres/schema.sql`` (unqualified names; the adapter's ``schema`` is its search_path).
Staging tables are TEMP tables made once per pooled connection, so a transaction-pooling proxy
(pgbouncer ``pool_mode=transaction``) is not supported in front of the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from sinks.base import SinkBase, SinkError, input_error

__all__ = ["SCHEMA_FILE", "PostgresConfig", "PostgresOrders", "apply_schema"]

Record = Mapping[str, Any]
SCHEMA_FILE = Path(__file__).resolve().parent / "postgres" / "schema.sql"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_HINT = (
    "is PostgreSQL up (`stockpulse stack status`) and is the DSN right (STOCKPULSE_POSTGRES__DSN / "
    "__REPLICA_DSN)? Was the schema applied (PostgresOrders.open applies it)? Writes are idempotent: retry "
    "the same batch"
)
_SCHEMA_LOCK = 0x5350_4F52_4445_5253  # 'SPORDERS': advisory lock around DDL
_DAY_US = 86_400_000_000


def _ts(col: str) -> str:
    """SQL turning an integer-microseconds column into an exact timestamptz."""
    return f"(timestamptz 'epoch' + {col} * interval '1 microsecond')"


def _us(col: str) -> str:
    """SQL turning a timestamptz column back into integer microseconds (exact: extract gives numeric)."""
    return f"(extract(epoch FROM {col}) * 1000000)::bigint"


_STAGING = (
    """CREATE TEMP TABLE IF NOT EXISTS _in_signals (
        signal_id text, symbol text, timeframe text, start_us bigint, action text, score float8, price float8,
        model_version text, inference_path text, ingest_us bigint, close_us bigint, indicator_us bigint,
        inference_us bigint, publish_us bigint) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS _in_orders (
        order_id text, signal_id text, symbol text, side text, quantity float8, ref_price float8, status text,
        reason text, source text, ts_us bigint, ingest_us bigint, signal_us bigint) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS _in_fills (
        ord integer, fill_id text, order_id text, symbol text, side text, quantity float8, price float8,
        ts_us bigint, position float8, avg_price float8, realized_pnl float8) ON COMMIT DELETE ROWS""",
)

_SIGNAL_FIELDS = (
    "signal_id",
    "symbol",
    "timeframe",
    "start_us",
    "action",
    "score",
    "price",
    "model_version",
    "inference_path",
    "ingest_us",
    "close_us",
    "indicator_us",
    "inference_us",
    "publish_us",
)
_SIGNAL_DEFAULTS = {"ingest_us": 0, "close_us": 0, "indicator_us": 0, "inference_us": 0, "publish_us": 0}
_ORDER_FIELDS = (
    "order_id",
    "signal_id",
    "symbol",
    "side",
    "quantity",
    "ref_price",
    "status",
    "reason",
    "source",
    "ts_us",
    "ingest_us",
    "signal_us",
)
_ORDER_DEFAULTS = {"signal_id": "", "reason": "", "source": "signal", "ingest_us": 0, "signal_us": 0}
_FILL_FIELDS = (
    "fill_id",
    "order_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "ts_us",
    "position",
    "avg_price",
    "realized_pnl",
)

INSERT_SIGNALS = f"""
INSERT INTO signals (signal_id, symbol, timeframe, start, action, score, price, model_version, inference_path,
                     ingest_us, close_us, indicator_us, inference_us, publish_us)
SELECT signal_id, symbol, timeframe, {_ts("start_us")}, action, score, price, model_version, inference_path,
       ingest_us, close_us, indicator_us, inference_us, publish_us
FROM _in_signals
ON CONFLICT (signal_id) DO NOTHING
"""

INSERT_ORDERS = f"""
WITH new AS (
    INSERT INTO order_ids (order_id, ts)
    SELECT DISTINCT ON (order_id) order_id, {_ts("ts_us")} FROM _in_orders ORDER BY order_id
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id, ts
)
INSERT INTO orders (order_id, signal_id, symbol, side, quantity, ref_price, status, reason, source, ts,
                    ingest_us, signal_us)
SELECT DISTINCT ON (i.order_id) i.order_id, i.signal_id, i.symbol, i.side, i.quantity, i.ref_price, i.status,
       i.reason, i.source, new.ts, i.ingest_us, i.signal_us
FROM _in_orders i JOIN new USING (order_id)
ORDER BY i.order_id
"""

INSERT_FILLS = f"""
INSERT INTO fills (fill_id, order_id, symbol, side, quantity, price, ts, position, avg_price, realized_pnl)
SELECT fill_id, order_id, symbol, side, quantity, price, {_ts("ts_us")}, position, avg_price, realized_pnl
FROM _in_fills
ON CONFLICT (fill_id) DO NOTHING
"""

UPSERT_POSITIONS = f"""
INSERT INTO positions AS p
    (symbol, quantity, avg_price, realized_pnl, last_price, updated_at, fill_id, order_id)
SELECT DISTINCT ON (symbol)
    symbol, position, avg_price, realized_pnl, price, {_ts("ts_us")}, fill_id, order_id
FROM _in_fills
ORDER BY symbol, ts_us DESC, ord DESC
ON CONFLICT (symbol) DO UPDATE SET
    quantity = EXCLUDED.quantity, avg_price = EXCLUDED.avg_price, realized_pnl = EXCLUDED.realized_pnl,
    last_price = EXCLUDED.last_price, updated_at = EXCLUDED.updated_at, fill_id = EXCLUDED.fill_id,
    order_id = EXCLUDED.order_id
WHERE p.updated_at <= EXCLUDED.updated_at
"""

_SELECT_ORDERS = (
    "SELECT order_id, signal_id, symbol, side, quantity, ref_price, status, reason, source, "
    f"{_us('ts')} AS ts_us, ingest_us, signal_us FROM orders"
)
_SELECT_FILLS = (
    "SELECT fill_id, order_id, symbol, side, quantity, price, "
    f"{_us('ts')} AS ts_us, position, avg_price, realized_pnl FROM fills"
)
_SELECT_SIGNALS = (
    "SELECT signal_id, symbol, timeframe, "
    f"{_us('start')} AS start_us, action, score, price, model_version, inference_path, ingest_us, close_us, "
    "indicator_us, inference_us, publish_us FROM signals"
)
_SELECT_POSITIONS = (
    "SELECT symbol, quantity, avg_price, realized_pnl, last_price, "
    f"{_us('updated_at')} AS ts_us, fill_id, order_id FROM positions"
)


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """``dsn``: the primary (writes). ``replica_dsn``: where reads go (None: the primary). ``schema``: the
    PostgreSQL schema of the tables (search_path), e.g. one per test run."""

    dsn: str = "postgresql://stockpulse@127.0.0.1:15432/stockpulse"
    replica_dsn: str | None = "postgresql://stockpulse@127.0.0.1:15433/stockpulse"
    schema: str = "public"
    min_size: int = 1
    max_size: int = 4
    command_timeout_s: float = 30.0


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lower-case identifier; raises ``ValueError`` naming the fix."""
    if not _IDENT.match(name):
        raise ValueError(
            f"PostgreSQL schema name {name!r} is not a plain identifier: use lower-case letters, digits "
            "and _ (starting with a letter or _), at most 63 characters"
        )
    return name


def _month(ts_us: int) -> tuple[int, int]:
    d = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ts_us)
    return d.year, d.month


def partition_ddl(year: int, month: int) -> str:
    """``CREATE TABLE IF NOT EXISTS orders_yYYYYmMM PARTITION OF orders`` for one UTC month."""
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        f"CREATE TABLE IF NOT EXISTS orders_y{year:04d}m{month:02d} PARTITION OF orders "
        f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') TO ('{ny:04d}-{nm:02d}-01 00:00:00+00')"
    )


async def apply_schema(conn: asyncpg.Connection, schema: str = "public") -> None:
    """Create ``schema`` and the tables in it (idempotent; serialized by an advisory lock)."""
    check_schema_name(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}")
        await conn.execute(SCHEMA_FILE.read_text())


async def _init_connection(conn: asyncpg.Connection) -> None:
    for ddl in _STAGING:
        await conn.execute(ddl)


def _rows(
    records: Iterable[Record], fields: Sequence[str], defaults: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    out = []
    for r in records:
        out.append(tuple(r[f] if f in r or f not in defaults else defaults[f] for f in fields))
    return out


def _count(status: str) -> int:
    """Rows affected from a command status such as ``INSERT 0 12``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class PostgresOrders(SinkBase):
    """Batched, idempotent writes of signals, orders and fills (+ positions); reads from the replica."""

    store = "postgres"

    def __init__(self, config: PostgresConfig | None = None, *, apply: bool = True) -> None:
        self.config = config or PostgresConfig()
        check_schema_name(self.config.schema)
        self._apply = apply
        self._pool: asyncpg.Pool | None = None
        self._replica: asyncpg.Pool | None = None
        self._replica_lock = asyncio.Lock()
        self._partitions: set[tuple[int, int]] = set()

    # ---- lifecycle --------------------------------------------------------------------------------------

    def _pool_args(self) -> dict[str, Any]:
        return {
            "min_size": self.config.min_size,
            "max_size": self.config.max_size,
            "command_timeout": self.config.command_timeout_s,
            "server_settings": {"search_path": self.config.schema, "application_name": "stockpulse-sinks"},
        }

    async def open(self) -> PostgresOrders:
        """Connect to the primary, apply the schema (unless ``apply=False``) and make this and next month's
        order partitions."""
        if self._pool is not None:
            return self
        try:
            if self._apply:
                conn = await asyncpg.connect(self.config.dsn, timeout=self.config.command_timeout_s)
                try:
                    await apply_schema(conn, self.config.schema)
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(
                self.config.dsn, init=_init_connection, **self._pool_args()
            )
            now_us = int(time.time() * 1_000_000)
            await self.ensure_partitions([now_us, now_us + 31 * _DAY_US])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            await self.close()
            raise SinkError(self.store, "open (primary)", f"{type(exc).__name__}: {exc}", _HINT) from exc
        return self

    async def close(self) -> None:
        pools = [p for p in (self._pool, self._replica) if p is not None]
        self._pool, self._replica = None, None
        for pool in pools:
            await pool.close()

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresOrders.open() was not called (or close() was): open it first")
        return self._pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The primary's pool (search_path = the adapter's schema), for ad-hoc queries and tests."""
        return self._require()

    async def _reader(self) -> asyncpg.Pool:
        """The replica pool, connected on first use (a writer never needs it)."""
        if self.config.replica_dsn is None:
            return self._require()
        self._require()
        async with self._replica_lock:
            if self._replica is None:
                self._replica = await asyncpg.create_pool(self.config.replica_dsn, **self._pool_args())
        return self._replica

    async def _probe(self) -> str:
        version = await self._require().fetchval("SHOW server_version")
        detail = f"PostgreSQL {version}, schema {self.config.schema}"
        if self._replica is not None:
            lag = await self._replica.fetchval(
                "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
            )
            detail += f", replica replay lag {lag if lag is not None else float('nan'):.3f} s"
        return detail

    async def _guarded(self, operation: str, coro: Any) -> Any:
        try:
            return await coro
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise SinkError(self.store, operation, f"{type(exc).__name__}: {exc}", _HINT) from exc

    # ---- partitions -------------------------------------------------------------------------------------

    async def ensure_partitions(self, ts_us: Iterable[int]) -> None:
        """Create the monthly ``orders`` partitions for these timestamps (integer µs) where missing."""
        days = {t // _DAY_US for t in ts_us}
        months = {_month(d * _DAY_US) for d in days} - self._partitions
        if not months:
            return
        pool = self._require()
        for year, month in sorted(months):
            if not 1 <= year <= 9998:
                raise input_error(self.store, "Order", ValueError(f"ts_us in year {year} is out of range"))
            # another writer may create it at the same moment
            with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                await pool.execute(partition_ddl(year, month))
            self._partitions.add((year, month))

    # ---- writes -----------------------------------------------------------------------------------------

    async def _stage_and_insert(
        self, operation: str, staging: str, fields: Sequence[str], rows: list[tuple[Any, ...]], *sql: str
    ) -> list[int]:
        async def run() -> list[int]:
            async with self._require().acquire() as conn, conn.transaction():
                await conn.copy_records_to_table(staging, records=rows, columns=list(fields))
                return [_count(await conn.execute(q)) for q in sql]

        result: list[int] = await self._guarded(operation, run())
        return result

    async def write_signals(self, signals: Iterable[Record]) -> int:
        """Store ``Signal`` records (one transaction). Returns how many were new."""
        try:
            rows = _rows(signals, _SIGNAL_FIELDS, _SIGNAL_DEFAULTS)
        except (KeyError, TypeError) as exc:
            raise input_error(self.store, "Signal", exc) from exc
        if not rows:
            return 0
        (n,) = await self._stage_and_insert(
            "write_signals", "_in_signals", _SIGNAL_FIELDS, rows, INSERT_SIGNALS
        )
        return n

    async def write_orders(self, orders: Iterable[Record]) -> int:
        """Store ``Order`` records (one transaction; month partitions made first when new). Returns how many
        were new."""
        try:
            rows = _rows(orders, _ORDER_FIELDS, _ORDER_DEFAULTS)
            ts_index = _ORDER_FIELDS.index("ts_us")
            stamps = [int(r[ts_index]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, "Order", exc) from exc
        if not rows:
            return 0
        await self._guarded("create order partitions", self.ensure_partitions(stamps))
        try:
            (n,) = await self._stage_and_insert(
                "write_orders", "_in_orders", _ORDER_FIELDS, rows, INSERT_ORDERS
            )
        except SinkError:
            self._partitions.clear()  # a dropped partition: the retry re-creates what is missing
            raise
        return n

    async def write_fills(self, fills: Iterable[Record]) -> int:
        """Store ``Fill`` records and move each symbol's position forward to its newest fill, in one
        transaction. Returns how many fills were new."""
        try:
            rows = [(i, *row) for i, row in enumerate(_rows(fills, _FILL_FIELDS, {}))]
        except (KeyError, TypeError) as exc:
            raise input_error(self.store, "Fill", exc) from exc
        if not rows:
            return 0
        n, _ = await self._stage_and_insert(
            "write_fills", "_in_fills", ("ord", *_FILL_FIELDS), rows, INSERT_FILLS, UPSERT_POSITIONS
        )
        return n

    # ---- reads (replica) --------------------------------------------------------------------------------

    async def _fetch(self, operation: str, sql: str, *args: Any) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            pool = await self._reader()
            return [dict(r) for r in await pool.fetch(sql, *args)]

        result: list[dict[str, Any]] = await self._guarded(operation, run())
        return result

    async def orders(self, symbol: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` orders (of ``symbol``), newest first, as ``Order``-shaped dicts (replica)."""
        if symbol is None:
            return await self._fetch("orders", f"{_SELECT_ORDERS} ORDER BY ts DESC, order_id LIMIT $1", limit)
        return await self._fetch(
            "orders", f"{_SELECT_ORDERS} WHERE symbol = $1 ORDER BY ts DESC, order_id LIMIT $2", symbol, limit
        )

    async def fills(
        self, symbol: str | None = None, order_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` fills (of ``symbol`` and/or ``order_id``), newest first (replica)."""
        where: list[str] = []
        args: list[Any] = []
        if symbol is not None:
            args.append(symbol)
            where.append(f"symbol = ${len(args)}")
        if order_id is not None:
            args.append(order_id)
            where.append(f"order_id = ${len(args)}")
        args.append(limit)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        return await self._fetch(
            "fills", f"{_SELECT_FILLS}{cond} ORDER BY ts DESC, fill_id LIMIT ${len(args)}", *args
        )

    async def signals(self, symbol: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` signals (of ``symbol``), newest first (replica)."""
        if symbol is None:
            return await self._fetch(
                "signals", f"{_SELECT_SIGNALS} ORDER BY start DESC, signal_id LIMIT $1", limit
            )
        return await self._fetch(
            "signals",
            f"{_SELECT_SIGNALS} WHERE symbol = $1 ORDER BY start DESC, signal_id LIMIT $2",
            symbol,
            limit,
        )

    async def positions(self) -> list[dict[str, Any]]:
        """Every symbol's position after its newest fill, by symbol (replica); ``ts_us`` is that fill's."""
        return await self._fetch("positions", f"{_SELECT_POSITIONS} ORDER BY symbol")

    async def counts(self, symbols: Sequence[str] | None = None) -> dict[str, int]:
        """Rows per table on the primary (optionally only ``symbols``), for tests and chaos checks. Primary
        keys make rows == distinct ids."""
        tables = ("signals", "orders", "fills", "positions")
        where = "" if symbols is None else " WHERE symbol = ANY($1::text[])"
        sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}{where}" for t in tables)
        args: list[Any] = [] if symbols is None else [list(symbols)]
        rows = await self._guarded("counts", self._require().fetch(sql, *args))
        return {r["t"]: int(r["n"]) for r in rows}
