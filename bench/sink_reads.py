"""Chart reads per store: p50/p99 of one chart window (the API's default, 500 bars) on the local stack.

The same real bars as the write benchmark (:func:`bench.sinks.load_bars`) are written once per store under
a fresh key prefix / database / schema; then each read is timed call by call, cycling over the symbols,
one caller at a time (latency, not throughput):

* Redis: ``ChartCache.get`` (the API's hit path: one HGET of a rendered response) and
  ``RedisHotState.bars`` (ZRANGE of the newest 500 bars, decoded), against the bare client's
  ``zrange`` of the same key (bytes, nothing decoded) as the baseline.
* ClickHouse: ``ClickHouseHistory.bars`` (``FINAL``, newest 500, as dicts; the API's first fallback)
  against ``client.query`` of the same SQL called directly (no thread hop, rows as tuples).
* PostgreSQL: ``PostgresOrders.bars`` on the streaming replica (the API's second fallback) against
  ``asyncpg`` ``fetch`` of the same SQL on one replica connection.

The baseline is the store's own client doing the same query in the same run: the adapter's ratio to it is
what the adapter costs on top of the store.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import numpy as np

from sinks.clickhouse_columns import BAR_COLUMNS, select_list
from sinks.clickhouse_history import ClickHouseHistory
from sinks.postgres_orders import PostgresOrders
from sinks.postgres_sql import SELECT_BARS
from sinks.redis_state import RedisHotState
from streams.config import Settings
from streams.stores import clickhouse_config, postgres_config, redis_config

WINDOW = 500
WARMUP = 20


@dataclass(frozen=True, slots=True)
class ReadRow:
    store: str
    method: str
    window: int
    calls: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    baseline: bool = False


async def time_calls(
    method: Callable[[str], Awaitable[Sequence[Any] | str | None]], symbols: Sequence[str], calls: int
) -> np.ndarray:
    """Milliseconds of each of ``calls`` sequential calls (after ``WARMUP`` untimed ones), cycling symbols;
    every call must return a non-empty answer (a read that finds nothing is not a chart read)."""
    out = np.empty(calls)
    for i in range(WARMUP + calls):
        sym = symbols[i % len(symbols)]
        t0 = time.perf_counter()
        got = await method(sym)
        dt = time.perf_counter() - t0
        if not got:
            raise AssertionError(f"chart read of {sym} returned nothing: the bars were not stored")
        if i >= WARMUP:
            out[i - WARMUP] = dt * 1e3
    return out


def _row(store: str, method: str, ms: np.ndarray, baseline: bool = False) -> ReadRow:
    p50, p99 = np.percentile(ms, [50, 99])
    return ReadRow(store, method, WINDOW, len(ms), float(p50), float(p99), float(ms.mean()), baseline)


async def read_redis(settings: Settings, bars: list[dict[str, Any]], calls: int) -> list[ReadRow]:
    base = replace(redis_config(settings), key_prefix=f"benchr{uuid.uuid4().hex[:8]}")
    state = await RedisHotState(base).open()
    symbols = sorted({b["symbol"] for b in bars})
    try:
        await state.write_bars(bars)
        body = json.dumps({"bars": bars[:WINDOW]}, separators=(",", ":"))  # a response of the window's size
        newest = {b["symbol"]: b["start_us"] for b in sorted(bars, key=lambda b: b["start_us"])}
        for sym in symbols:
            if not await state.chart.put(sym, "1m", f"limit={WINDOW}", body, newest[sym]):
                raise AssertionError(f"redis: the chart response of {sym} was not cached")
        client = state.client

        async def raw(sym: str) -> list[Any]:
            return await client.zrange(state.bars_key(sym, "1m"), -WINDOW, -1)

        async def cached(sym: str) -> str | None:
            return await state.chart.get(sym, "1m", f"limit={WINDOW}")

        async def decoded(sym: str) -> list[dict[str, Any]]:
            return await state.bars(sym, "1m", WINDOW)

        return [
            _row("redis", "client.zrange (raw bytes)", await time_calls(raw, symbols, calls), baseline=True),
            _row("redis", "ChartCache.get (rendered response)", await time_calls(cached, symbols, calls)),
            _row("redis", "RedisHotState.bars (decoded)", await time_calls(decoded, symbols, calls)),
        ]
    finally:
        keys = [k async for k in state.client.scan_iter(match=f"{base.key_prefix}:*", count=1000)]
        for k in keys:
            await state.client.delete(k)
        await state.close()


async def read_clickhouse(settings: Settings, bars: list[dict[str, Any]], calls: int) -> list[ReadRow]:
    config = replace(clickhouse_config(settings), database=f"benchr_{uuid.uuid4().hex[:10]}")
    history = await ClickHouseHistory(config).open()
    symbols = sorted({b["symbol"] for b in bars})
    try:
        await history.write_bars(bars)
        client = history.client
        sql = (
            f"SELECT {select_list(BAR_COLUMNS)} FROM bars FINAL WHERE symbol = {{symbol:String}} "
            f"AND timeframe = '1m' ORDER BY start DESC LIMIT {WINDOW}"
        )

        async def raw(sym: str) -> Sequence[Any]:
            return client.query(sql, parameters={"symbol": sym}).result_rows

        async def adapter(sym: str) -> list[dict[str, Any]]:
            return await history.bars(sym, "1m", limit=WINDOW)

        return [
            _row("clickhouse", "client.query (same SQL)", await time_calls(raw, symbols, calls), True),
            _row("clickhouse", "ClickHouseHistory.bars", await time_calls(adapter, symbols, calls)),
        ]
    finally:
        await asyncio.to_thread(history.client.command, f"DROP DATABASE IF EXISTS {config.database}")
        await history.close()


async def _replicated(replica_dsn: str, schema: str, n: int, timeout_s: float = 60.0) -> None:
    """Wait until the replica has replayed all ``n`` bars of ``schema``."""
    conn = await asyncpg.connect(replica_dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got = await conn.fetchval(f"SELECT count(*) FROM {schema}.historical_data")
            except asyncpg.UndefinedTableError:
                got = 0
            if got == n:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres replica has {got} of {n} bars after {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def read_postgres(settings: Settings, bars: list[dict[str, Any]], calls: int) -> list[ReadRow]:
    schema = f"benchr_{uuid.uuid4().hex[:8]}"
    config = replace(postgres_config(settings), schema=schema)
    replica_dsn = config.replica_dsn or config.dsn
    adapter = await PostgresOrders(config).open()
    symbols = sorted({b["symbol"] for b in bars})
    try:
        await adapter.write_bars(bars)
        await _replicated(replica_dsn, schema, len(bars))
        sql = f"{SELECT_BARS} WHERE symbol = $1 AND timeframe = '1m' ORDER BY start DESC LIMIT {WINDOW}"
        conn = await asyncpg.connect(replica_dsn, server_settings={"search_path": schema})
        try:

            async def raw(sym: str) -> list[Any]:
                return await conn.fetch(sql, sym)

            async def read(sym: str) -> list[dict[str, Any]]:
                return await adapter.bars(sym, "1m", limit=WINDOW)

            raw_ms = await time_calls(raw, symbols, calls)
            return [
                _row("postgres", "replica: asyncpg fetch (same SQL)", raw_ms, True),
                _row("postgres", "replica: PostgresOrders.bars", await time_calls(read, symbols, calls)),
            ]
        finally:
            await conn.close()
    finally:
        await adapter.close()
        conn = await asyncpg.connect(config.dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def run_reads(settings: Settings, bars: list[dict[str, Any]], calls: int) -> list[ReadRow]:
    return [
        *await read_redis(settings, bars, calls),
        *await read_clickhouse(settings, bars, calls),
        *await read_postgres(settings, bars, calls),
    ]


def read_markdown(rows: Sequence[ReadRow]) -> str:
    """The reads as a markdown table; each adapter's p50 against its store's baseline (the raw client)."""
    lines = [
        f"| store | read ({WINDOW}-bar window) | calls | p50 ms | p99 ms | p50 vs raw client |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    base: dict[str, float] = {}
    for r in rows:
        if r.baseline:
            base[r.store] = r.p50_ms
        ratio = f"{r.p50_ms / base[r.store]:.2f}x" if r.store in base else ""
        lines.append(f"| {r.store} | {r.method} | {r.calls:,} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {ratio} |")
    return "\n".join(lines)
