"""Sink adapters vs the raw client loop, per store, in the same run: rows/s on the local stack.

Input: the real FTX BTC-PERP 1m bars (../shared/data/ftx_btc-perp_2022-01_1m.csv), the first N/K bars
replicated over K symbols (BTC-PERP.0 .. BTC-PERP.K-1, same prices) to reach N bars (default 20,000 =
2,000 bars x 10 symbols). PostgreSQL gets one Order per bar (order_id from the bar id, ts = bar start).

* Redis: one ``await client.zadd`` per bar (a round trip each) vs ``RedisHotState.write_bars`` (one cluster
  pipeline per batch: one packed request per primary; its requests are counted).
* ClickHouse: one INSERT per row and INSERTs of 10 rows (on a sample: they are slow) vs
  ``ClickHouseHistory.write_bars`` (one columnar INSERT per batch).
* PostgreSQL: one ``await conn.execute(INSERT … ON CONFLICT DO NOTHING)`` per row (on a sample) and
  ``executemany`` of that INSERT vs ``PostgresOrders.write_orders`` (COPY into a temp table, then one
  INSERT … SELECT … ON CONFLICT DO NOTHING, one transaction per batch). The raw loops write to a plain
  copy of the table without the order-id guard, so they do less work than the adapter.

Then chart reads (500-bar windows) from each store against its raw client: :mod:`bench.sink_reads`.
Everything is written under a fresh key prefix / database / schema, removed at the end.
``python -m bench.sinks [--quick]`` writes bench/results/sinks.json and prints a markdown table.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd
from redis.asyncio.cluster import ClusterNode

from bench.machine import machine_info
from bench.sink_reads import ReadRow, read_markdown, run_reads
from sinks.clickhouse_history import ClickHouseHistory
from sinks.postgres_orders import PostgresConfig, PostgresOrders
from sinks.redis_state import RedisHotState
from streams.config import Settings, get_settings
from streams.stores import clickhouse_config, redis_config

RESULTS = Path(__file__).resolve().parent / "results"
FTX = "ftx_btc-perp_2022-01_1m.csv"
MINUTE_US = 60_000_000


@dataclass(frozen=True, slots=True)
class Row:
    store: str
    method: str
    rows: int
    batch: int
    seconds: float
    requests_per_batch: float | None = None
    runs: tuple[float, ...] = ()

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def load_bars(data_dir: Path, n: int, symbols: int) -> list[dict[str, Any]]:
    """``n`` Bar records: the first ``n // symbols`` real FTX 1m bars for each of ``symbols`` symbols."""
    path = data_dir / FTX
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the recordings live in ../shared/data (see its README)")
    per = max(1, n // symbols)
    df = pd.read_csv(path, nrows=per)
    start = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("us").astype("int64").tolist()
    cols = [df[c].astype(float).tolist() for c in ("open", "high", "low", "close", "volume")]
    out = []
    for k in range(symbols):
        sym = f"BTC-PERP.{k}"
        for i, s in enumerate(start):
            o, h, lo, c, v = (col[i] for col in cols)
            out.append(
                {
                    "bar_id": f"{sym}|1m|{s}",
                    "symbol": sym,
                    "timeframe": "1m",
                    "start_us": s,
                    "open": o,
                    "high": h,
                    "low": lo,
                    "close": c,
                    "volume": v,
                    "vwap": (h + lo + c) / 3,
                    "trades": 1,
                    "first_seq": i,
                    "last_seq": i,
                    "ingest_us": s + MINUTE_US,
                    "close_us": s + MINUTE_US + 1,
                }
            )
    return out


def orders_from(bars: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Order per bar (deterministic ids), for the PostgreSQL benchmark."""
    return [
        {
            "order_id": f"o|{b['bar_id']}",
            "signal_id": f"s|{b['bar_id']}",
            "symbol": b["symbol"],
            "side": "BUY" if b["close"] >= b["open"] else "SELL",
            "quantity": 0.01,
            "ref_price": b["close"],
            "status": "ACCEPTED",
            "reason": "",
            "source": "signal",
            "ts_us": b["start_us"],
            "ingest_us": b["ingest_us"],
            "signal_us": b["close_us"],
        }
        for b in bars
    ]


def _batches(rows: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def _timed(fn: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


def relabel(bars: Sequence[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """The same bars under other symbols (``<symbol>.<tag>``) and ids: fresh records for a repeat."""
    out = []
    for b in bars:
        sym = f"{b['symbol']}.{tag}"
        out.append({**b, "symbol": sym, "bar_id": f"{sym}|1m|{b['start_us']}"})
    return out


async def _median_of(
    repeats: int, bars: Sequence[dict[str, Any]], write: Callable[[list[dict[str, Any]]], Awaitable[object]]
) -> tuple[float, list[float], list[dict[str, Any]]]:
    """Median seconds of ``repeats`` runs of ``write`` over fresh copies of ``bars`` (new symbols and ids, so
    no run is a re-write); also every run's seconds and the last run's records (to check what was stored)."""
    times: list[float] = []
    fresh: list[dict[str, Any]] = []
    for _ in range(repeats):
        fresh = relabel(bars, uuid.uuid4().hex[:6])
        times.append(await _timed(partial(write, fresh)))
    return statistics.median(times), times, fresh


# ---- Redis ----------------------------------------------------------------------------------------------


async def bench_redis(settings: Settings, bars: list[dict[str, Any]], batch: int, repeats: int) -> list[Row]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    base = replace(redis_config(settings), key_prefix=prefix)
    state = await RedisHotState(base).open()
    client = state.client
    rows: list[Row] = []
    try:
        members = [
            (state.bars_key(b["symbol"], "raw"), json.dumps(b, separators=(",", ":")), b["start_us"])
            for b in bars
        ]

        async def raw() -> None:
            for key, member, score in members:
                await client.zadd(key, {member: score})

        rows.append(Row("redis", "raw loop: await zadd per bar", len(bars), 1, await _timed(raw), 1.0))

        requests: list[int] = []
        original = ClusterNode.execute_pipeline

        async def counting(node: ClusterNode, commands: list[Any]) -> bool:
            requests.append(len(commands))
            return await original(node, commands)

        for size in (batch, len(bars)):
            requests.clear()
            ClusterNode.execute_pipeline = counting  # type: ignore[method-assign,assignment]
            try:

                async def adapter(fresh: list[dict[str, Any]], size: int = size) -> None:
                    for chunk in _batches(fresh, size):
                        await state.write_bars(chunk)

                seconds, runs, last = await _median_of(repeats, bars, adapter)
            finally:
                ClusterNode.execute_pipeline = original  # type: ignore[method-assign]
            n_batches = len(_batches(bars, size)) * repeats
            rows.append(
                Row(
                    "redis",
                    "RedisHotState.write_bars",
                    len(bars),
                    size,
                    seconds,
                    len(requests) / n_batches,
                    tuple(runs),
                )
            )
            stored = sum([await client.zcard(state.bars_key(s, "1m")) for s in {b["symbol"] for b in last}])
            if stored != len(bars):
                raise AssertionError(f"redis: {stored} bars stored, expected {len(bars)}")
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for k in keys:
            await client.delete(k)
        await state.close()
    return rows


# ---- ClickHouse -----------------------------------------------------------------------------------------


async def bench_clickhouse(
    settings: Settings, bars: list[dict[str, Any]], batch: int, sample: int, repeats: int
) -> list[Row]:
    config = replace(clickhouse_config(settings), database=f"bench_{uuid.uuid4().hex[:10]}")
    history = await ClickHouseHistory(config).open()
    rows: list[Row] = []
    try:
        history.client.command("CREATE TABLE bars_raw AS bars")  # same engine, no materialized view
        names = [
            "bar_id",
            "symbol",
            "timeframe",
            "start",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "vwap",
            "trades",
            "first_seq",
            "last_seq",
            "ingest_at",
            "closed_at",
        ]
        fields = [
            "bar_id",
            "symbol",
            "timeframe",
            "start_us",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "vwap",
            "trades",
            "first_seq",
            "last_seq",
            "ingest_us",
            "close_us",
        ]
        client = history.client

        def raw(size: int, part: Sequence[dict[str, Any]]) -> None:
            for chunk in _batches(part, size):
                client.insert("bars_raw", [[b[f] for f in fields] for b in chunk], column_names=names)

        for size in (1, 10):
            part = bars[:sample]

            async def loop(size: int = size, part: Sequence[dict[str, Any]] = part) -> None:
                await asyncio.to_thread(raw, size, part)

            seconds = await _timed(loop)
            label = "raw loop: one INSERT per row" if size == 1 else "raw loop: INSERT of 10 rows"
            rows.append(Row("clickhouse", label, len(part), size, seconds, 1.0))

        for size in (batch, len(bars)):

            async def adapter(fresh: list[dict[str, Any]], size: int = size) -> None:
                for chunk in _batches(fresh, size):
                    await history.write_bars(chunk)

            seconds, runs, last = await _median_of(repeats, bars, adapter)
            rows.append(
                Row("clickhouse", "ClickHouseHistory.write_bars", len(bars), size, seconds, 1.0, tuple(runs))
            )
            counts = await history.counts(sorted({b["symbol"] for b in last}))
            if counts["bars"].distinct != len(bars):
                raise AssertionError(f"clickhouse: {counts['bars']} bars stored, expected {len(bars)}")
    finally:
        await asyncio.to_thread(history.client.command, f"DROP DATABASE IF EXISTS {config.database}")
        await history.close()
    return rows


# ---- PostgreSQL -----------------------------------------------------------------------------------------

RAW_INSERT = """
INSERT INTO orders (order_id, signal_id, symbol, side, quantity, ref_price, status, reason, source, ts,
                    ingest_us, signal_us)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, timestamptz 'epoch' + $10::bigint * interval '1 microsecond',
        $11, $12)
ON CONFLICT DO NOTHING
"""


async def bench_postgres(
    settings: Settings, bars: list[dict[str, Any]], batch: int, sample: int, repeats: int
) -> list[Row]:
    pg = settings.postgres
    run_id = uuid.uuid4().hex[:8]
    schemas = {k: f"bench_{run_id}_{k}" for k in ("raw", "many", "copy", "copyall")}
    orders = orders_from(bars)
    rows: list[Row] = []
    adapters: dict[str, PostgresOrders] = {}
    try:
        for k, schema in schemas.items():
            adapters[k] = await PostgresOrders(
                PostgresConfig(dsn=pg.dsn.get_secret_value(), replica_dsn=None, schema=schema)
            ).open()
            await adapters[k].ensure_partitions([o["ts_us"] for o in orders])
        fields = (
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
        args = [tuple(o[f] for f in fields) for o in orders]

        async def per_row() -> None:
            async with adapters["raw"].pool.acquire() as conn:
                for a in args[:sample]:
                    await conn.execute(RAW_INSERT, *a)

        seconds = await _timed(per_row)
        rows.append(Row("postgres", "raw loop: await execute(INSERT) per row", sample, 1, seconds, 1.0))

        async def many() -> None:
            async with adapters["many"].pool.acquire() as conn:
                for chunk in _batches(args, batch):
                    async with conn.transaction():
                        await conn.executemany(RAW_INSERT, chunk)

        seconds = await _timed(many)
        rows.append(Row("postgres", "raw: executemany(INSERT) per batch", len(args), batch, seconds))

        for key, size in (("copy", batch), ("copyall", len(orders))):
            adapter = adapters[key]

            async def write(
                fresh: list[dict[str, Any]], adapter: PostgresOrders = adapter, size: int = size
            ) -> None:
                for chunk in _batches(orders_from(fresh), size):
                    await adapter.write_orders(chunk)

            seconds, runs, last = await _median_of(repeats, bars, write)
            rows.append(
                Row(
                    "postgres",
                    "PostgresOrders.write_orders (COPY)",
                    len(orders),
                    size,
                    seconds,
                    None,
                    tuple(runs),
                )
            )
            counted = (await adapter.counts(sorted({b["symbol"] for b in last})))["orders"]
            if counted != len(orders):
                raise AssertionError(f"postgres: {counted} orders stored, expected {len(orders)}")
    finally:
        for adapter in adapters.values():
            await adapter.close()
        conn = await asyncpg.connect(pg.dsn.get_secret_value())
        try:
            for schema in schemas.values():
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
    return rows


# ---- report ---------------------------------------------------------------------------------------------


def markdown(rows: Sequence[Row]) -> str:
    """The results as a markdown table; speed-up is against the store's first (raw per-record) row."""
    lines = [
        "| store | method | rows | batch | rows/s | requests/batch | vs per-record loop |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    first: dict[str, float] = {}
    for r in rows:
        base = first.setdefault(r.store, r.rows_per_s)
        req = "" if r.requests_per_batch is None else f"{r.requests_per_batch:.1f}"
        lines.append(
            f"| {r.store} | {r.method} | {r.rows:,} | {r.batch:,} | {r.rows_per_s:,.0f} | {req} | "
            f"{r.rows_per_s / base:.1f}x |"
        )
    return "\n".join(lines)


async def _run(
    settings: Settings, n: int, symbols: int, batch: int, sample: int, repeats: int, calls: int
) -> tuple[list[Row], list[ReadRow]]:
    bars = load_bars(settings.data_dir, n, symbols)
    writes = [
        *await bench_redis(settings, bars, batch, repeats),
        *await bench_clickhouse(settings, bars, batch, sample, repeats),
        *await bench_postgres(settings, bars, batch, sample, repeats),
    ]
    return writes, await run_reads(settings, bars, calls)


def run(quick: bool = False) -> dict[str, Any]:
    """Run every store's write comparison and chart reads; ``quick``: 2,000 bars, small per-row samples and
    100 timed reads per method (for a smoke test)."""
    settings = get_settings()
    n, symbols, batch, sample, repeats = (2_000, 4, 500, 100, 1) if quick else (20_000, 10, 1_000, 1_000, 3)
    calls = 100 if quick else 2_000
    rows, reads = asyncio.run(_run(settings, n, symbols, batch, sample, repeats, calls))
    return {
        "benchmark": "sinks",
        "input": f"{FTX}: first {n // symbols} real 1m bars x {symbols} symbols (same prices) = {n} bars",
        "quick": quick,
        "repeats": f"adapter rows: median of {repeats} runs on fresh ids; raw loops: one run",
        "results": [
            {
                "store": r.store,
                "method": r.method,
                "rows": r.rows,
                "batch": r.batch,
                "seconds": round(r.seconds, 4),
                "rows_per_s": round(r.rows_per_s),
                "requests_per_batch": r.requests_per_batch,
                "seconds_each_run": [round(s, 4) for s in r.runs] or [round(r.seconds, 4)],
            }
            for r in rows
        ],
        "table": markdown(rows),
        "reads": [asdict(r) for r in reads],
        "reads_table": read_markdown(reads),
        "read_targets": {"redis_p99_ms": 1.0, "postgres_replica_p99_ms": 10.0},
        "machine": machine_info(("redis", "hiredis", "clickhouse-connect", "asyncpg", "pandas")),
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 bars, small samples")
    args = ap.parse_args()
    result = run(args.quick)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "sinks.json").write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])
    print()
    print(result["reads_table"])
    print(
        f"\ninput: {result['input']}\nmachine: {result['machine']['cpu']}, {result['machine']['cores']} cores"
    )


if __name__ == "__main__":
    main()
