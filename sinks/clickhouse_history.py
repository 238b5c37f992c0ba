"""History in ClickHouse: ticks, bars, indicator snapshots and signals, inserted as columnar batches, and
the reads of the API and analysts (bars, OHLCV rollups from ticks, daily signal statistics).

Talks ClickHouse's HTTP interface with ``clickhouse-connect`` (a real server in production; locally the
stack's process that owns the embedded engine), so nothing here is chdb-specific. The client is
synchronous: every call runs on a small private thread pool (2 threads) and is awaited.

Tables (``sinks/clickhouse/schema.sql``, applied by :func:`sinks.clickhouse_schema.apply_schema`): ``ticks``,
``bars``, ``indicators``, ``signals`` (ReplacingMergeTree, partitioned by UTC day, sorted by symbol then
time); OHLCV rollups from ticks ``ohlcv_1m`` / ``ohlcv_1h`` / ``ohlcv_1d`` and daily signal statistics
``signal_stats_1d`` (views over AggregatingMergeTree states fed by materialized views); the hourly rollup
of 1m bars ``bars_1h``.

Idempotency: deterministic records + ReplacingMergeTree keyed by the natural key (one row per key after
merges; reads use FINAL), insert-block deduplication for exact retries (also in the materialized views),
duplicate-proof signal statistics and 1m-bar rollup, and :meth:`ClickHouseHistory.rebuild_rollups` for
tick rollups after a crash re-delivered ticks in other batches. Every write is one INSERT per table per
batch (Native format, no per-insert DESCRIBE: column types are read once per table). Reads use server-side
``{name:Type}`` parameters only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal, NamedTuple, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import SinkBase, SinkError, input_error
from sinks.clickhouse_columns import (
    BAR_COLUMNS,
    KEYS,
    SIGNAL_COLUMNS,
    SNAPSHOT_COLUMNS,
    TICK_COLUMNS,
    as_list,
    select_list,
)
from sinks.clickhouse_schema import (
    SCHEMA_FILE,
    ClickHouseConfig,
    apply_schema,
    check_identifier,
    client_args,
    create_database,
)

__all__ = ["SCHEMA_FILE", "ClickHouseConfig", "ClickHouseHistory", "TableCount", "apply_schema"]

T = TypeVar("T")
Record = Mapping[str, Any]
Rollup = Literal["1m", "1h", "1d"]
_ROLLUP_TABLES = ("ohlcv_1m_state", "ohlcv_1h_state", "ohlcv_1d_state")

_HINT = (
    "is ClickHouse up at the configured URL (`stockpulse stack status`; STOCKPULSE_CLICKHOUSE__URL), are the "
    "credentials right, and was the schema applied (ClickHouseHistory.open applies it)? Writes are "
    "idempotent: retry the same batch"
)


class TableCount(NamedTuple):
    """Rows stored (before merges collapse re-inserted records) and distinct natural keys."""

    rows: int
    distinct: int


class ClickHouseHistory(SinkBase):
    """Columnar batch inserts and parameterized reads of the history tables."""

    store = "clickhouse"

    def __init__(self, config: ClickHouseConfig | None = None, *, apply: bool = True) -> None:
        self.config = config or ClickHouseConfig()
        check_identifier(self.config.database)
        client_args(self.config)  # validate the URL early
        self._apply = apply
        self._client: Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._types: dict[str, list[str]] = {}

    # ---- lifecycle --------------------------------------------------------------------------------------

    async def open(self) -> ClickHouseHistory:
        """Connect, create the database and apply the schema (unless ``apply=False``)."""
        if self._client is not None:
            return self
        self._pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="clickhouse")

        def connect() -> Client:
            if self._apply:
                create_database(self.config)
            client = clickhouse_connect.get_client(**client_args(self.config), database=self.config.database)
            if self._apply:
                apply_schema(client, self.config.ticks_ttl_days)
            return client

        try:
            self._client = await self._in_thread(connect)
        except Exception as exc:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise SinkError(
                self.store,
                f"open {self.config.url}/{self.config.database}",
                f"{type(exc).__name__}: {exc}",
                _HINT,
            ) from exc
        return self

    async def close(self) -> None:
        client, pool = self._client, self._pool
        self._client, self._pool = None, None
        if client is not None and pool is not None:
            await asyncio.get_running_loop().run_in_executor(pool, client.close)
        if pool is not None:
            pool.shutdown(wait=True)

    async def _probe(self) -> str:
        version = await self._call("health", lambda c: c.command("SELECT version()"))
        return f"ClickHouse {version}, database {self.config.database}"

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        if self._pool is None:
            raise RuntimeError("ClickHouseHistory.open() was not called (or close() was): open it first")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    @property
    def client(self) -> Client:
        """The underlying synchronous client (for analysts' ad-hoc queries and tests)."""
        if self._client is None:
            raise RuntimeError("ClickHouseHistory.open() was not called (or close() was): open it first")
        return self._client

    async def _call(self, operation: str, fn: Callable[[Client], T]) -> T:
        client = self.client
        try:
            return await self._in_thread(partial(fn, client))
        except (ClickHouseError, OSError) as exc:
            raise SinkError(self.store, operation, f"{type(exc).__name__}: {exc}", _HINT) from exc

    # ---- writes -----------------------------------------------------------------------------------------

    def _insert(self, client: Client, table: str, names: Sequence[str], columns: list[list[Any]]) -> None:
        types = self._types.get(table)
        if types is None:
            ctx = client.create_insert_context(table, list(names))
            types = self._types[table] = [t.name for t in ctx.column_types]
        client.insert(table, columns, column_names=list(names), column_type_names=types, column_oriented=True)

    async def _write(
        self, table: str, kind: str, records: Iterable[Record], spec: Sequence[tuple[str, str]]
    ) -> int:
        rows = records if isinstance(records, list | tuple) else list(records)
        if not rows:
            return 0
        try:
            columns = [[r[field] for r in rows] for _, field in spec]
        except (KeyError, TypeError) as exc:
            raise input_error(self.store, kind, exc) from exc
        names = [col for col, _ in spec]
        await self._call(f"insert into {table}", lambda c: self._insert(c, table, names, columns))
        return len(rows)

    async def write_bars(self, bars: Iterable[Record]) -> int:
        """Insert ``Bar`` records (one INSERT). Returns the number of bars."""
        return await self._write("bars", "Bar", bars, BAR_COLUMNS)

    async def write_snapshots(self, snapshots: Iterable[Record]) -> int:
        """Insert ``IndicatorSnapshot`` records (one INSERT)."""
        return await self._write("indicators", "IndicatorSnapshot", snapshots, SNAPSHOT_COLUMNS)

    async def write_signals(self, signals: Iterable[Record]) -> int:
        """Insert ``Signal`` records (one INSERT)."""
        return await self._write("signals", "Signal", signals, SIGNAL_COLUMNS)

    async def write_ticks(self, batches: Iterable[Record]) -> int:
        """Insert the ticks of ``TickBatch`` records (columnar: their arrays are concatenated into one
        INSERT). Returns the number of ticks."""
        symbol: list[str] = []
        ts: list[int] = []
        price: list[float] = []
        size: list[float] = []
        seq: list[int] = []
        try:
            for b in batches:
                names = b["symbols"]
                idx = b["symbol_index"]
                n = len(idx)
                if not (len(b["ts_us"]) == len(b["price"]) == len(b["size"]) == len(b["seq"]) == n):
                    raise ValueError(f"TickBatch {b.get('batch_id')!r} has columns of different lengths")
                symbol += [names[i] for i in as_list(idx)]
                ts += as_list(b["ts_us"])
                price += as_list(b["price"])
                size += as_list(b["size"])
                seq += as_list(b["seq"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise input_error(self.store, "TickBatch", exc) from exc
        if not symbol:
            return 0
        columns: list[list[Any]] = [symbol, ts, price, size, seq]
        await self._call("insert into ticks", lambda c: self._insert(c, "ticks", TICK_COLUMNS, columns))
        return len(symbol)

    # ---- reads ------------------------------------------------------------------------------------------

    async def _query(self, operation: str, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        def run(c: Client) -> list[dict[str, Any]]:
            result = c.query(sql, parameters=params)
            names = result.column_names
            return [dict(zip(names, row, strict=True)) for row in result.result_rows]

        return await self._call(operation, run)

    @staticmethod
    def _range(
        start_us: int | None, end_us: int | None, params: dict[str, Any], column: str = "start"
    ) -> str:
        where = ""
        if start_us is not None:
            where += f" AND {column} >= fromUnixTimestamp64Micro({{start_us:Int64}}, 'UTC')"
            params["start_us"] = int(start_us)
        if end_us is not None:
            where += f" AND {column} < fromUnixTimestamp64Micro({{end_us:Int64}}, 'UTC')"
            params["end_us"] = int(end_us)
        return where

    async def bars(
        self,
        symbol: str,
        timeframe: str,
        start_us: int | None = None,
        end_us: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` bars with ``start_us <= start < end_us`` (bounds optional), oldest first,
        as ``Bar``-shaped dicts. One copy per bar (FINAL)."""
        if limit <= 0:
            return []
        params: dict[str, Any] = {"symbol": symbol, "timeframe": timeframe, "limit": int(limit)}
        sql = (
            f"SELECT {select_list(BAR_COLUMNS)} FROM bars FINAL "
            "WHERE symbol = {symbol:String} AND timeframe = {timeframe:String}"
            f"{self._range(start_us, end_us, params)} ORDER BY start DESC LIMIT {{limit:UInt32}}"
        )
        rows = await self._query("bars", sql, params)
        rows.reverse()
        return rows

    async def bars_1h(
        self, symbol: str, start_us: int | None = None, end_us: int | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Hourly bars rolled up from 1m bars (view ``bars_1h``), newest ``limit``, oldest first; ``bars`` is
        the number of 1m bars in the hour."""
        if limit <= 0:
            return []
        params: dict[str, Any] = {"symbol": symbol, "limit": int(limit)}
        sql = (
            "SELECT symbol, '1h' AS timeframe, "
            "toUnixTimestamp64Micro(toDateTime64(start, 6, 'UTC')) AS start_us, "
            "open, high, low, close, volume, vwap, trades, bars FROM bars_1h "
            "WHERE symbol = {symbol:String}"
            f"{self._range(start_us, end_us, params)} ORDER BY start DESC LIMIT {{limit:UInt32}}"
        )
        rows = await self._query("bars_1h", sql, params)
        rows.reverse()
        return rows

    async def latest_signals(self, symbol: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` signals of ``symbol``, newest first (``Signal``-shaped dicts)."""
        params: dict[str, Any] = {"symbol": symbol, "limit": int(limit)}
        sql = (
            f"SELECT {select_list(SIGNAL_COLUMNS)} FROM signals FINAL WHERE symbol = {{symbol:String}} "
            "ORDER BY start DESC, model_version LIMIT {limit:UInt32}"
        )
        rows = await self._query("signals", sql, params)
        for r in rows:
            r["action"], r["inference_path"] = str(r["action"]), str(r["inference_path"])
        return rows

    async def counts(self, symbols: Sequence[str] | None = None) -> dict[str, TableCount]:
        """Per table: rows stored and distinct natural keys (``uniqExact``), optionally only for
        ``symbols``. After any number of re-inserts ``distinct`` is the number of records ever written;
        ``rows`` may be higher until merges collapse the copies."""
        params: dict[str, Any] = {}
        where = ""
        if symbols is not None:
            where, params["symbols"] = " WHERE symbol IN {symbols:Array(String)}", list(symbols)
        sql = " UNION ALL ".join(
            f"SELECT '{table}' AS t, count() AS n, {key} AS d FROM {table}{where}"
            for table, key in KEYS.items()
        )
        rows = await self._query("counts", sql, params)
        return {r["t"]: TableCount(int(r["n"]), int(r["d"])) for r in rows}

    async def tick_count(self, symbol: str) -> int:
        """Ticks of ``symbol`` after de-duplication (FINAL)."""
        rows = await self._query(
            "tick_count",
            "SELECT count() AS n FROM ticks FINAL WHERE symbol = {symbol:String}",
            {"symbol": symbol},
        )
        return int(rows[0]["n"])

    async def symbols(self, timeframe: str | None = None) -> list[str]:
        """Every symbol with bars (of ``timeframe``), sorted."""
        params: dict[str, Any] = {}
        where = ""
        if timeframe is not None:
            where, params["timeframe"] = " WHERE timeframe = {timeframe:String}", timeframe
        sql = f"SELECT DISTINCT symbol FROM bars{where} ORDER BY symbol"
        rows = await self._query("symbols", sql, params)
        return [str(r["symbol"]) for r in rows]

    async def recent_bars(
        self, symbols: Sequence[str], timeframe: str, limit: int = 500
    ) -> dict[str, list[dict[str, Any]]]:
        """The newest ``limit`` bars of each of ``symbols`` (one query: ``LIMIT n BY symbol``), oldest first,
        as ``Bar``-shaped dicts; symbols without bars are left out. Used to warm the Redis cache."""
        if limit <= 0 or not symbols:
            return {}
        params: dict[str, Any] = {"symbols": list(symbols), "timeframe": timeframe, "limit": int(limit)}
        sql = (
            f"SELECT {select_list(BAR_COLUMNS)} FROM bars FINAL "
            "WHERE symbol IN {symbols:Array(String)} AND timeframe = {timeframe:String} "
            "ORDER BY symbol, start DESC LIMIT {limit:UInt32} BY symbol"
        )
        out: dict[str, list[dict[str, Any]]] = {}
        for row in await self._query("recent_bars", sql, params):
            out.setdefault(row["symbol"], []).append(row)
        for rows in out.values():
            rows.reverse()
        return out

    async def ohlcv(
        self,
        symbol: str,
        interval: Rollup = "1m",
        start_us: int | None = None,
        end_us: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """OHLCV rolled up from ticks (views ``ohlcv_1m`` / ``ohlcv_1h`` / ``ohlcv_1d``): the newest ``limit``
        buckets with ``start_us <= start < end_us``, oldest first; ``trades`` is the number of ticks."""
        if interval not in ("1m", "1h", "1d"):
            raise ValueError(f"ohlcv interval {interval!r}: use '1m', '1h' or '1d'")
        if limit <= 0:
            return []
        params: dict[str, Any] = {"symbol": symbol, "limit": int(limit)}
        sql = (
            "SELECT symbol, toUnixTimestamp64Micro(toDateTime64(start, 6, 'UTC')) AS start_us, "
            f"open, high, low, close, volume, vwap, trades FROM ohlcv_{interval} "
            "WHERE symbol = {symbol:String}"
            f"{self._range(start_us, end_us, params)} ORDER BY start DESC LIMIT {{limit:UInt32}}"
        )
        rows = await self._query(f"ohlcv_{interval}", sql, params)
        rows.reverse()
        return rows

    async def signal_stats(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Daily signal statistics (view ``signal_stats_1d``) by symbol and day: ``signals``, ``buys``,
        ``sells``, ``holds``, ``mean_score``, ``min_score``, ``max_score``; ``day`` a ``datetime.date``."""
        params: dict[str, Any] = {}
        where = ""
        if symbol is not None:
            where, params["symbol"] = " WHERE symbol = {symbol:String}", symbol
        return await self._query(
            "signal_stats", f"SELECT * FROM signal_stats_1d{where} ORDER BY symbol, day", params
        )

    async def partitions(self, table: str) -> list[str]:
        """The partition ids of ``table``'s active parts (``YYYYMMDD`` for the day-partitioned tables)."""
        check_identifier(table, "table")
        rows = await self._query(
            "partitions",
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
            "AND table = {table:String} AND active ORDER BY partition_id",
            {"table": table},
        )
        return [str(r["partition_id"]) for r in rows]

    async def max_seqs(self) -> dict[str, int]:
        """The highest stored tick ``seq`` of every symbol: a sink taking over partitions drops re-delivered
        ticks at or below it (:func:`processors.ticks.after_seq`), which keeps the rollups exact."""
        rows = await self._query("max_seqs", "SELECT symbol, max(seq) AS s FROM ticks GROUP BY symbol", {})
        return {str(r["symbol"]): int(r["s"]) for r in rows}

    async def rebuild_rollups(self, day: dt.date) -> int:
        """Recompute the tick rollups (``ohlcv_1m/1h/1d``) of one UTC ``day`` from one copy of each tick.

        Needed only after a crash re-delivered ticks in differently cut batches (their sums would count
        them twice). Drops the day's partition of the three state tables, then re-inserts the day's
        ``ticks FINAL`` into ``ticks`` so the materialized views aggregate them again (the extra copies in
        ``ticks`` collapse on merge like any re-insert). Run it for a finished day: ticks of ``day`` inserted
        while it runs may be missing from the rebuilt rollups. Returns the number of ticks re-aggregated."""
        part = f"{day:%Y%m%d}"
        params: dict[str, Any] = {"day": int(part)}

        def run(c: Client) -> None:
            for table in _ROLLUP_TABLES:
                c.command(f"ALTER TABLE {table} DROP PARTITION ID '{part}'")
            c.command(
                "INSERT INTO ticks (symbol, ts, price, size, seq) SELECT symbol, ts, price, size, seq "
                "FROM ticks FINAL WHERE toYYYYMMDD(ts) = {day:UInt32}",
                parameters=params,
                settings={"insert_deduplicate": 0},
            )

        await self._call("rebuild_rollups", run)
        count = "SELECT count() AS n FROM ticks FINAL WHERE toYYYYMMDD(ts) = {day:UInt32}"
        (row,) = await self._query("rebuild_rollups", count, params)
        return int(row["n"])
