"""History in ClickHouse: ticks, bars, indicator snapshots and signals, inserted as columnar batches.

Talks ClickHouse's HTTP interface with ``clickhouse-connect`` (a real server in production; locally the
stack's process that owns the embedded engine), so nothing here is chdb-specific. The client is
synchronous: every call runs on a small private thread pool (2 threads) and is awaited.

Tables (``sinks/clickhouse/schema.sql``): ``ticks`` (ReplacingMergeTree ORDER BY (symbol, seq)), ``bars``,
``indicators`` (ORDER BY (symbol, timeframe, start)), ``signals`` (… start, model_version), the hourly
rollup ``bars_1h_state`` fed by the materialized view ``bars_1h_mv`` from 1m bars, and the view ``bars_1h``.

Idempotency: deterministic records + ReplacingMergeTree keyed by the natural key (one row per key after
merges; reads use FINAL), insert-block deduplication for exact retries, and a duplicate-safe hourly rollup.
Every write is one INSERT per table per batch (Native format, no per-insert DESCRIBE: column types are read
once per table). Reads use server-side ``{name:Type}`` parameters only.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Template
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.base import SinkBase, SinkError, input_error

__all__ = ["SCHEMA_FILE", "ClickHouseConfig", "ClickHouseHistory", "TableCount", "apply_schema"]

T = TypeVar("T")
Record = Mapping[str, Any]

SCHEMA_FILE = Path(__file__).resolve().parent / "clickhouse" / "schema.sql"
_TTL_DAYS = re.compile(r"TTL inserted_at \+ (?:toIntervalDay\((\d+)\)|INTERVAL (\d+) DAY)")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HINT = (
    "is ClickHouse up at the configured URL (`stockpulse stack status`; STOCKPULSE_CLICKHOUSE__URL), are the "
    "credentials right, and was the schema applied (ClickHouseHistory.open applies it)? Writes are "
    "idempotent: retry the same batch"
)

# Record field -> (column, how to read it from a record). Stage timestamps go in as integer microseconds
# (clickhouse-connect writes Python ints into DateTime64(6) as raw ticks).
_BAR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bar_id", "bar_id"),
    ("symbol", "symbol"),
    ("timeframe", "timeframe"),
    ("start", "start_us"),
    ("open", "open"),
    ("high", "high"),
    ("low", "low"),
    ("close", "close"),
    ("volume", "volume"),
    ("vwap", "vwap"),
    ("trades", "trades"),
    ("first_seq", "first_seq"),
    ("last_seq", "last_seq"),
    ("ingest_at", "ingest_us"),
    ("closed_at", "close_us"),
)
_INDICATORS = (
    "ema_fast",
    "ema_slow",
    "rsi",
    "stochrsi_k",
    "stochrsi_d",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
    "vwap",
)
_SNAPSHOT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("snapshot_id", "snapshot_id"),
    ("symbol", "symbol"),
    ("timeframe", "timeframe"),
    ("start", "start_us"),
    ("close", "close"),
    ("volume", "volume"),
    *((f, f) for f in _INDICATORS),
    ("returns", "returns"),
    ("bars_seen", "bars_seen"),
    ("ingest_at", "ingest_us"),
    ("closed_at", "close_us"),
    ("indicator_at", "indicator_us"),
)
_SIGNAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("signal_id", "signal_id"),
    ("symbol", "symbol"),
    ("timeframe", "timeframe"),
    ("start", "start_us"),
    ("action", "action"),
    ("score", "score"),
    ("price", "price"),
    ("model_version", "model_version"),
    ("inference_path", "inference_path"),
    ("ingest_at", "ingest_us"),
    ("closed_at", "close_us"),
    ("indicator_at", "indicator_us"),
    ("inference_at", "inference_us"),
    ("publish_at", "publish_us"),
)
_TICK_COLUMNS = ("symbol", "ts", "price", "size", "seq")


def _select_list(columns: Sequence[tuple[str, str]]) -> str:
    """Columns as the record fields: DateTime64 columns back to integer microseconds."""
    out = []
    for col, field in columns:
        if col == "start" or col.endswith("_at"):
            out.append(f"toUnixTimestamp64Micro({col}) AS {field}")
        else:
            out.append(col if col == field else f"{col} AS {field}")
    return ", ".join(out)


def _as_list(values: Any) -> list[Any]:
    """Python values of a record's array (numpy arrays become lists of Python numbers)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


# (table, expression of the distinct natural key) for counts().
_KEYS = {
    "ticks": "uniqExact(symbol, seq)",
    "bars": "uniqExact(bar_id)",
    "indicators": "uniqExact(snapshot_id)",
    "signals": "uniqExact(signal_id)",
}


class TableCount(NamedTuple):
    """Rows stored (before merges collapse re-inserted records) and distinct natural keys."""

    rows: int
    distinct: int


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


def apply_schema(client: Client, ticks_ttl_days: int = 90) -> None:
    """Create the tables and views in the client's database (idempotent), and bring the tick TTL of an
    existing ``ticks`` table to ``ticks_ttl_days``. The database itself must exist (see
    :func:`create_database`)."""
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


def _client_args(config: ClickHouseConfig) -> dict[str, Any]:
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
    boot = clickhouse_connect.get_client(**_client_args(config))
    try:
        boot.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    finally:
        boot.close()


class ClickHouseHistory(SinkBase):
    """Columnar batch inserts and parameterized reads of the history tables."""

    store = "clickhouse"

    def __init__(self, config: ClickHouseConfig | None = None, *, apply: bool = True) -> None:
        self.config = config or ClickHouseConfig()
        check_identifier(self.config.database)
        _client_args(self.config)  # validate the URL early
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
            client = clickhouse_connect.get_client(**_client_args(self.config), database=self.config.database)
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
        return await self._write("bars", "Bar", bars, _BAR_COLUMNS)

    async def write_snapshots(self, snapshots: Iterable[Record]) -> int:
        """Insert ``IndicatorSnapshot`` records (one INSERT)."""
        return await self._write("indicators", "IndicatorSnapshot", snapshots, _SNAPSHOT_COLUMNS)

    async def write_signals(self, signals: Iterable[Record]) -> int:
        """Insert ``Signal`` records (one INSERT)."""
        return await self._write("signals", "Signal", signals, _SIGNAL_COLUMNS)

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
                symbol += [names[i] for i in _as_list(idx)]
                ts += _as_list(b["ts_us"])
                price += _as_list(b["price"])
                size += _as_list(b["size"])
                seq += _as_list(b["seq"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise input_error(self.store, "TickBatch", exc) from exc
        if not symbol:
            return 0
        columns: list[list[Any]] = [symbol, ts, price, size, seq]
        await self._call("insert into ticks", lambda c: self._insert(c, "ticks", _TICK_COLUMNS, columns))
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
            f"SELECT {_select_list(_BAR_COLUMNS)} FROM bars FINAL "
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
            f"SELECT {_select_list(_SIGNAL_COLUMNS)} FROM signals FINAL WHERE symbol = {{symbol:String}} "
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
            for table, key in _KEYS.items()
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
