"""PostgresOrders against the local primary + streaming replica: COPY-staged idempotent writes, partitions on
demand, positions only forward, reads from the replica (polled: it lags a little). Each test uses its own
schema ``test_<uuid>``, dropped at the end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import pytest

from sinks.base import Sink, SinkError, SinkInputError
from sinks.postgres_orders import PostgresConfig, PostgresOrders
from streams.config import Settings

pytestmark = pytest.mark.integration

T = TypeVar("T")
T0 = 1_640_995_200_000_000  # 2022-01-01 00:00 UTC
DAY_US = 86_400_000_000


def _order(i: int, ts_us: int, symbol: str = "BTC-PERP") -> dict[str, Any]:
    return {
        "order_id": f"o-{symbol}-{i}",
        "signal_id": f"s-{symbol}-{i}",
        "symbol": symbol,
        "side": "BUY" if i % 2 else "SELL",
        "quantity": 0.5 + i,
        "ref_price": 46_000.25 + i,
        "status": "ACCEPTED" if i % 3 else "REJECTED",
        "reason": "" if i % 3 else "max position",
        "source": "signal",
        "ts_us": ts_us,
        "ingest_us": ts_us - 3,
        "signal_us": ts_us - 1,
        "timeframe": "1m",
    }


def _fill(i: int, ts_us: int, position: float, symbol: str = "BTC-PERP") -> dict[str, Any]:
    return {
        "fill_id": f"f-{symbol}-{i}",
        "order_id": f"o-{symbol}-{i}",
        "symbol": symbol,
        "side": "BUY",
        "quantity": 1.0,
        "price": 46_000.0 + i,
        "ts_us": ts_us,
        "position": position,
        "avg_price": 45_999.5,
        "realized_pnl": 12.5 * i,
        "timeframe": "1m",
    }


def _signal(i: int, symbol: str = "BTC-PERP") -> dict[str, Any]:
    start = T0 + i * 60_000_000
    return {
        "signal_id": f"s-{symbol}-{i}",
        "symbol": symbol,
        "timeframe": "1m",
        "start_us": start,
        "action": ("HOLD", "BUY", "SELL")[i % 3],
        "score": 0.125 * (i % 8),
        "price": 46_000.5,
        "model_version": "m1",
        "inference_path": "fallback",
        "ingest_us": start + 1,
        "close_us": start + 2,
        "indicator_us": start + 3,
        "inference_us": start + 4,
        "publish_us": start + 5,
    }


async def _eventually(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float = 10.0
) -> T:
    """Poll the replica until ``done(read())`` (bounded: it replays the primary's WAL with a small lag)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await read()
        if done(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.02)


@pytest.fixture
async def orders_db(stack_settings: Settings) -> AsyncIterator[PostgresOrders]:
    pg = stack_settings.postgres
    schema = f"test_{uuid.uuid4().hex[:12]}"
    config = PostgresConfig(
        dsn=pg.dsn.get_secret_value(), replica_dsn=pg.replica_dsn.get_secret_value(), schema=schema
    )
    adapter = await PostgresOrders(config).open()
    try:
        yield adapter
    finally:
        await adapter.close()
        conn = await asyncpg.connect(config.dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


async def test_health_and_schema_is_idempotent(orders_db: PostgresOrders) -> None:
    report = await orders_db.health()
    assert report.ok and "PostgreSQL" in report.detail, report
    assert isinstance(orders_db, Sink)
    again = await PostgresOrders(orders_db.config).open()  # apply_schema on an existing schema
    assert (await again.health()).ok
    await again.close()


async def test_orders_are_stored_once_in_monthly_partitions_and_read_from_the_replica(
    orders_db: PostgresOrders,
) -> None:
    orders = [_order(i, T0 + i * 7 * DAY_US + i) for i in range(12)]  # Jan .. Mar 2022
    assert await orders_db.write_orders(orders) == 12
    assert await orders_db.write_orders(orders) == 0  # the same batch again
    # re-processed after a crash with a different ts (e.g. a wall-clock stamp): still one order
    assert await orders_db.write_orders([{**o, "ts_us": o["ts_us"] + 1_000} for o in orders[3:6]]) == 0
    assert await orders_db.write_orders([_order(99, T0 + 99)]) == 1
    assert (await orders_db.counts())["orders"] == 13

    pool = orders_db.pool
    parts = await pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'orders' "
        "AND p.relnamespace = $1::regnamespace ORDER BY 1",
        orders_db.config.schema,
    )
    assert {"orders_y2022m01", "orders_y2022m02", "orders_y2022m03"} <= {r["relname"] for r in parts}

    got = await _eventually(lambda: orders_db.orders("BTC-PERP", limit=100), lambda r: len(r) == 13)
    assert len(got) == 13
    assert got[0] == orders[-1]  # newest first; exact round trip (µs timestamps included)
    assert {o["order_id"]: o for o in got}[orders[4]["order_id"]] == orders[4]
    assert len(await orders_db.orders(limit=5)) == 5


async def test_fills_are_stored_once_and_positions_only_move_forward(orders_db: PostgresOrders) -> None:
    fills = [_fill(i, T0 + i * 1_000, float(i)) for i in range(10)]
    assert await orders_db.write_fills(fills[5:]) == 5
    assert await orders_db.write_fills(fills[:5]) == 5  # older fills arrive late: position unchanged
    assert await orders_db.write_fills(fills) == 0
    same_us = [_fill(20, T0 + 50_000, 20.0), _fill(21, T0 + 50_000, 21.0)]
    await orders_db.write_fills(same_us)  # the same microsecond: the later one in the stream wins
    want = {
        "symbol": "BTC-PERP",
        "timeframe": "1m",
        "quantity": 21.0,
        "avg_price": 45_999.5,
        "realized_pnl": 12.5 * 21,
        "last_price": 46_021.0,
        "ts_us": T0 + 50_000,
        "fill_id": "f-BTC-PERP-21",
        "order_id": "o-BTC-PERP-21",
    }
    positions = await _eventually(orders_db.positions, lambda p: p == [want])
    assert positions == [want]
    other_book = {**_fill(30, T0 + 60_000, -1.0), "timeframe": "1s"}  # each timeframe is its own book
    await orders_db.write_fills([other_book])
    both = await _eventually(orders_db.positions, lambda p: len(p) == 2)
    assert [(p["timeframe"], p["quantity"]) for p in both] == [("1m", 21.0), ("1s", -1.0)]
    got = await _eventually(lambda: orders_db.fills("BTC-PERP", limit=50), lambda r: len(r) == 13)
    assert sorted(f["fill_id"] for f in got) == sorted(f["fill_id"] for f in [*fills, *same_us, other_book])
    by_order = await orders_db.fills(order_id="o-BTC-PERP-3")
    assert by_order == [fills[3]]


async def test_signals_are_stored_once(orders_db: PostgresOrders) -> None:
    signals = [_signal(i) for i in range(30)]
    assert await orders_db.write_signals(signals) == 30
    assert await orders_db.write_signals(signals[10:]) == 0
    got = await _eventually(lambda: orders_db.signals("BTC-PERP", limit=3), lambda r: len(r) == 3)
    assert got == [signals[29], signals[28], signals[27]]


async def test_odd_symbols_are_parameters_not_sql(orders_db: PostgresOrders) -> None:
    evil = "x' OR 1=1 --"
    await orders_db.write_orders([_order(1, T0), _order(2, T0 + 1, symbol=evil)])
    got = await _eventually(lambda: orders_db.orders(evil), lambda r: len(r) == 1)
    assert [o["symbol"] for o in got] == [evil]
    assert await orders_db.fills(symbol=evil) == []
    assert (await orders_db.counts([evil]))["orders"] == 1


async def test_errors_name_the_store_and_the_fix(orders_db: PostgresOrders, stack_settings: Settings) -> None:
    with pytest.raises(SinkInputError, match="missing field 'ts_us'"):
        await orders_db.write_orders([{k: v for k, v in _order(1, T0).items() if k != "ts_us"}])
    bad = {**_order(2, T0), "side": "HOLD"}  # violates the CHECK: the whole batch is rolled back
    with pytest.raises(SinkError, match="postgres write_orders failed: CheckViolationError"):
        await orders_db.write_orders([_order(3, T0), bad])
    assert (await orders_db.counts())["orders"] == 0
    with pytest.raises(ValueError, match="not a plain identifier"):
        PostgresOrders(PostgresConfig(schema="x; DROP TABLE orders"))
    with pytest.raises(SinkError, match="postgres open"):
        await PostgresOrders(PostgresConfig(dsn="postgresql://nobody@127.0.0.1:1/nothing")).open()
