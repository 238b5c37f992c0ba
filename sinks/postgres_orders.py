"""Orders of record in PostgreSQL: signals, orders, fills and positions, plus historical bars and the daily
performance view (asyncpg).

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
``historical_data`` (bars) is range-partitioned by ``start`` the same way, keyed by (symbol, timeframe,
start). ``daily_performance`` is a materialized view over fills, refreshed CONCURRENTLY (readers never
wait) by :meth:`PostgresOrders.refresh_daily_performance`.

Schema: ``sinks/postgres/schema.sql`` (unqualified names; the adapter's ``schema`` is its search_path);
statements: :mod:`sinks.postgres_sql`.
Staging tables are TEMP tables made once per pooled connection, so a transaction-pooling proxy
(pgbouncer ``pool_mode=transaction``) is not supported in front of the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from sinks.base import SinkBase, SinkError, input_error
from sinks.postgres_schema import SCHEMA_FILE, apply_schema, check_schema_name
from sinks.postgres_sql import (
    BAR_FIELDS,
    FILL_DEFAULTS,
    FILL_FIELDS,
    INSERT_BARS,
    INSERT_FILLS,
    INSERT_ORDERS,
    INSERT_SIGNALS,
    ORDER_DEFAULTS,
    ORDER_FIELDS,
    PARTITIONED,
    SELECT_BARS,
    SELECT_FILLS,
    SELECT_ORDERS,
    SELECT_PERFORMANCE,
    SELECT_POSITIONS,
    SELECT_SIGNALS,
    SIGNAL_DEFAULTS,
    SIGNAL_FIELDS,
    STAGING,
    UPSERT_POSITIONS,
    month_of,
    partition_ddl,
)

__all__ = ["SCHEMA_FILE", "PostgresConfig", "PostgresOrders", "apply_schema"]

Record = Mapping[str, Any]
_HINT = (
    "is PostgreSQL up (`stockpulse stack status`) and is the DSN right (STOCKPULSE_POSTGRES__DSN / "
    "__REPLICA_DSN)? Was the schema applied (PostgresOrders.open applies it)? Writes are idempotent: retry "
    "the same batch"
)
_DAY_US = 86_400_000_000
_REFRESH = "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_performance"


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


async def _init_connection(conn: asyncpg.Connection) -> None:
    for ddl in STAGING:
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
        self._partitions: set[tuple[str, int, int]] = set()

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
        partitions of ``orders`` and ``historical_data``."""
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
            for table in PARTITIONED:
                await self.ensure_partitions([now_us, now_us + 31 * _DAY_US], table)
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
        except asyncpg.InternalClientError as exc:
            # a pooled connection whose server went away mid-operation ("cannot switch to state", seen
            # when the primary was killed): drop the pool's connections, so the caller's retry opens new ones
            for pool in (self._pool, self._replica):
                if pool is not None:
                    await pool.expire_connections()
            raise SinkError(self.store, operation, f"{type(exc).__name__}: {exc}", _HINT) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise SinkError(self.store, operation, f"{type(exc).__name__}: {exc}", _HINT) from exc

    # ---- partitions -------------------------------------------------------------------------------------

    async def ensure_partitions(self, ts_us: Iterable[int], table: str = "orders") -> None:
        """Create the monthly partitions of ``table`` (``orders`` or ``historical_data``) for these
        timestamps (integer µs) where missing."""
        if table not in PARTITIONED:
            raise ValueError(f"{table!r} is not a partitioned table: use one of {sorted(PARTITIONED)}")
        days = {t // _DAY_US for t in ts_us}
        months = {(table, *month_of(d * _DAY_US)) for d in days} - self._partitions
        if not months:
            return
        pool = self._require()
        for _, year, month in sorted(months):
            if not 1 <= year <= 9998:
                kind = "Order" if table == "orders" else "Bar"
                raise input_error(self.store, kind, ValueError(f"a timestamp in year {year} is out of range"))
            # another writer may create it at the same moment
            with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                await pool.execute(partition_ddl(year, month, table))
            self._partitions.add((table, year, month))

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
            rows = _rows(signals, SIGNAL_FIELDS, SIGNAL_DEFAULTS)
        except (KeyError, TypeError) as exc:
            raise input_error(self.store, "Signal", exc) from exc
        if not rows:
            return 0
        (n,) = await self._stage_and_insert(
            "write_signals", "_in_signals", SIGNAL_FIELDS, rows, INSERT_SIGNALS
        )
        return n

    async def write_orders(self, orders: Iterable[Record]) -> int:
        """Store ``Order`` records (one transaction; month partitions made first when new). Returns how many
        were new."""
        try:
            rows = _rows(orders, ORDER_FIELDS, ORDER_DEFAULTS)
            ts_index = ORDER_FIELDS.index("ts_us")
            stamps = [int(r[ts_index]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, "Order", exc) from exc
        if not rows:
            return 0
        await self._guarded("create order partitions", self.ensure_partitions(stamps, "orders"))
        try:
            (n,) = await self._stage_and_insert(
                "write_orders", "_in_orders", ORDER_FIELDS, rows, INSERT_ORDERS
            )
        except SinkError:
            self._partitions.clear()  # a dropped partition: the retry re-creates what is missing
            raise
        return n

    async def write_fills(self, fills: Iterable[Record]) -> int:
        """Store ``Fill`` records and move each book's (symbol, timeframe) position forward to its newest
        fill, in one transaction. Returns how many fills were new."""
        try:
            rows = [(i, *row) for i, row in enumerate(_rows(fills, FILL_FIELDS, FILL_DEFAULTS))]
        except (KeyError, TypeError) as exc:
            raise input_error(self.store, "Fill", exc) from exc
        if not rows:
            return 0
        n, _ = await self._stage_and_insert(
            "write_fills", "_in_fills", ("ord", *FILL_FIELDS), rows, INSERT_FILLS, UPSERT_POSITIONS
        )
        return n

    async def write_bars(self, bars: Iterable[Record]) -> int:
        """Store closed ``Bar`` records in ``historical_data`` (one transaction; month partitions made first
        when new). Idempotent: one row per (symbol, timeframe, start). Returns how many were new."""
        try:
            rows = _rows(bars, BAR_FIELDS, {"ingest_us": 0, "close_us": 0})
            start_index = BAR_FIELDS.index("start_us")
            stamps = [int(r[start_index]) for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, "Bar", exc) from exc
        if not rows:
            return 0
        await self._guarded("create bar partitions", self.ensure_partitions(stamps, "historical_data"))
        try:
            (n,) = await self._stage_and_insert("write_bars", "_in_bars", BAR_FIELDS, rows, INSERT_BARS)
        except SinkError:
            self._partitions.clear()
            raise
        return n

    async def refresh_daily_performance(self) -> bool:
        """``REFRESH MATERIALIZED VIEW CONCURRENTLY daily_performance`` on the primary (readers of the view,
        on the primary or the replica, are not blocked). Returns False, doing nothing, when another
        connection is refreshing this schema's view at that moment (a per-schema advisory lock)."""

        async def run() -> bool:
            async with self._require().acquire() as conn, conn.transaction():
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock(hashtext('daily_performance:' || current_schema()))"
                )
                if not got:
                    return False
                await conn.execute(_REFRESH)
                return True

        refreshed: bool = await self._guarded("refresh daily_performance", run())
        return refreshed

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
            return await self._fetch("orders", f"{SELECT_ORDERS} ORDER BY ts DESC, order_id LIMIT $1", limit)
        return await self._fetch(
            "orders", f"{SELECT_ORDERS} WHERE symbol = $1 ORDER BY ts DESC, order_id LIMIT $2", symbol, limit
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
            "fills", f"{SELECT_FILLS}{cond} ORDER BY ts DESC, fill_id LIMIT ${len(args)}", *args
        )

    async def signals(self, symbol: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` signals (of ``symbol``), newest first (replica)."""
        if symbol is None:
            return await self._fetch(
                "signals", f"{SELECT_SIGNALS} ORDER BY start DESC, signal_id LIMIT $1", limit
            )
        return await self._fetch(
            "signals",
            f"{SELECT_SIGNALS} WHERE symbol = $1 ORDER BY start DESC, signal_id LIMIT $2",
            symbol,
            limit,
        )

    async def positions(self) -> list[dict[str, Any]]:
        """Every book's position after its newest fill, by symbol and timeframe (replica); ``ts_us`` is that
        fill's."""
        return await self._fetch("positions", f"{SELECT_POSITIONS} ORDER BY symbol, timeframe")

    async def bars(
        self,
        symbol: str,
        timeframe: str,
        start_us: int | None = None,
        end_us: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` bars of ``symbol``/``timeframe`` with ``start_us <= start < end_us`` (bounds
        optional), oldest first, as ``Bar``-shaped dicts (replica; an index range scan of the primary key
        (symbol, timeframe, start) on the partitions the bounds leave)."""
        if limit <= 0:
            return []
        where = ["symbol = $1", "timeframe = $2"]
        args: list[Any] = [symbol, timeframe]
        for bound, op in ((start_us, ">="), (end_us, "<")):
            if bound is not None:
                args.append(int(bound))
                where.append(
                    f"start {op} timestamptz 'epoch' + ${len(args)}::bigint * interval '1 microsecond'"
                )
        args.append(int(limit))
        sql = f"{SELECT_BARS} WHERE {' AND '.join(where)} ORDER BY start DESC LIMIT ${len(args)}"
        rows = await self._fetch("bars", sql, *args)
        rows.reverse()
        return rows

    async def daily_performance(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Rows of ``daily_performance`` (of ``symbol``) by symbol and day (replica; as of the last
        :meth:`refresh_daily_performance`). ``day`` is a ``datetime.date``."""
        if symbol is None:
            return await self._fetch("daily_performance", f"{SELECT_PERFORMANCE} ORDER BY symbol, day")
        return await self._fetch(
            "daily_performance", f"{SELECT_PERFORMANCE} WHERE symbol = $1 ORDER BY day", symbol
        )

    async def counts(self, symbols: Sequence[str] | None = None) -> dict[str, int]:
        """Rows per table on the primary (optionally only ``symbols``), for tests and chaos checks. Primary
        keys make rows == distinct ids."""
        tables = ("signals", "orders", "fills", "positions", "historical_data")
        where = "" if symbols is None else " WHERE symbol = ANY($1::text[])"
        sql = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}{where}" for t in tables)
        args: list[Any] = [] if symbols is None else [list(symbols)]
        rows = await self._guarded("counts", self._require().fetch(sql, *args))
        return {r["t"]: int(r["n"]) for r in rows}
