"""The analysts' rollups against the real stores: ClickHouse's tick OHLCV materialized views (1m, 1h, 1d)
equal a pandas resample of the same real trades, the daily signal stats equal a groupby, and PostgreSQL's
``daily_performance`` materialized view is refreshed concurrently and equals the fills it summarizes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pandas as pd
import pytest

from sinks.clickhouse_history import ClickHouseHistory
from sinks.postgres_orders import PostgresOrders
from streams.config import Settings
from streams.stores import postgres_config
from tests.integration.test_sinks_clickhouse import (
    MINUTE_US,
    _signal,
    _tick_batches,
)

pytestmark = pytest.mark.integration
BUCKET_US = {"1m": MINUTE_US, "1h": 60 * MINUTE_US, "1d": 24 * 60 * MINUTE_US}


def _resample(batches: list[dict[str, Any]], symbol: str, bucket_us: int) -> pd.DataFrame:
    """OHLCV per bucket of one symbol's ticks (one copy each), in tick order: the reference."""
    rows = [
        (ts, p, s, q)
        for b in batches
        for i, ts, p, s, q in zip(b["symbol_index"], b["ts_us"], b["price"], b["size"], b["seq"], strict=True)
        if b["symbols"][i] == symbol
    ]
    df = pd.DataFrame(rows, columns=["ts", "price", "size", "seq"]).drop_duplicates("seq")
    df = df.sort_values(["ts", "seq"], kind="stable")
    df["start"] = df["ts"] // bucket_us * bucket_us
    df["pv"] = df["price"] * df["size"]
    return df.groupby("start").agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("size", "sum"),
        pv=("pv", "sum"),
        trades=("price", "count"),
    )


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
async def test_tick_rollups_equal_a_pandas_resample(
    history: ClickHouseHistory, stack_settings: Settings, interval: str
) -> None:
    batches, n = _tick_batches(stack_settings.data_dir, ["BTCUSDT"], per_batch=400)
    await history.write_ticks(batches)
    await history.write_ticks(batches)  # a retried write (the same block): deduplicated, also in the MVs
    want = _resample(batches, "BTCUSDT", BUCKET_US[interval])
    got = await history.ohlcv("BTCUSDT", interval, limit=100_000)  # type: ignore[arg-type]
    assert [g["start_us"] for g in got] == want.index.tolist()
    assert sum(g["trades"] for g in got) == n
    for g, (_, w) in zip(got, want.iterrows(), strict=True):
        assert (g["open"], g["high"], g["low"], g["close"]) == (w["open"], w["high"], w["low"], w["close"])
        assert g["volume"] == pytest.approx(w["volume"], rel=1e-9)
        if w["volume"] > 0:
            assert g["vwap"] == pytest.approx(w["pv"] / w["volume"], rel=1e-9)
    with pytest.raises(ValueError, match="ohlcv interval '5m'"):
        await history.ohlcv("BTCUSDT", "5m")  # type: ignore[arg-type]


async def test_rollups_are_rebuilt_after_reprocessing_with_other_batch_cuts(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    batches, n = _tick_batches(stack_settings.data_dir, ["BTCUSDT"], per_batch=400)
    await history.write_ticks(batches)
    recut, _ = _tick_batches(stack_settings.data_dir, ["BTCUSDT"], per_batch=333)
    await history.write_ticks(recut)  # after a crash: the same ticks in other batches
    assert await history.tick_count("BTCUSDT") == n, "ticks FINAL keeps one copy"
    days = sorted({dt.datetime.fromtimestamp(t / 1e6, dt.UTC).date() for b in batches for t in b["ts_us"]})
    for day in days:
        await history.rebuild_rollups(day)
    got = await history.ohlcv("BTCUSDT", "1m", limit=100_000)
    assert sum(g["trades"] for g in got) == n
    want = _resample(batches, "BTCUSDT", MINUTE_US)
    assert [g["volume"] for g in got] == pytest.approx(want["volume"].tolist(), rel=1e-9)


async def test_daily_signal_stats_equal_a_groupby(history: ClickHouseHistory) -> None:
    day0 = 1_641_000_000_000_000 // BUCKET_US["1d"] * BUCKET_US["1d"]
    signals = [_signal(sym, day0 + i * 7 * MINUTE_US) for sym in ("A", "B") for i in range(500)]
    signals = [{**s, "score": (i % 100) / 100} for i, s in enumerate(signals)]
    await history.write_signals(signals)
    await history.write_signals(signals[:50])  # re-processed: not counted twice
    df = pd.DataFrame(signals)
    df["day"] = pd.to_datetime(df["start_us"], unit="us", utc=True).dt.date
    want = df.groupby(["symbol", "day"]).agg(
        signals=("signal_id", "count"),
        buys=("action", lambda a: int((a == "BUY").sum())),
        sells=("action", lambda a: int((a == "SELL").sum())),
        mean_score=("score", "mean"),
        max_score=("score", "max"),
    )
    got = await history.signal_stats()
    assert [(g["symbol"], g["day"]) for g in got] == want.index.tolist()
    for g, (_, w) in zip(got, want.iterrows(), strict=True):
        assert (g["signals"], g["buys"], g["sells"]) == (w["signals"], w["buys"], w["sells"])
        assert g["holds"] == w["signals"] - w["buys"] - w["sells"]
        assert g["mean_score"] == pytest.approx(w["mean_score"], rel=1e-9)
        assert g["max_score"] == pytest.approx(w["max_score"])


def _fill(n: int, symbol: str, ts_us: int, realized: float) -> dict[str, Any]:
    return {
        "fill_id": f"f-{symbol}-{n}",
        "order_id": f"o-{symbol}-{n}",
        "symbol": symbol,
        "side": "BUY" if n % 2 else "SELL",
        "quantity": 1.0,
        "price": 100.0 + n,
        "ts_us": ts_us,
        "position": float(n % 2),
        "avg_price": 100.0,
        "realized_pnl": realized,
        "first_seq": n,
        "last_seq": n,
        "ingest_us": 0,
        "close_us": 0,
    }


async def test_daily_performance_is_refreshed_concurrently_from_fills(stack_settings: Settings) -> None:
    from dataclasses import replace

    schema = f"test_{uuid.uuid4().hex[:10]}"
    pg = await PostgresOrders(replace(postgres_config(stack_settings), schema=schema)).open()
    try:
        day = 1_641_000_000_000_000
        # cumulative realized PnL after each fill: per-fill profits 0, 5, 0, -2 on day 1, then 3 on day 2
        fills = [
            _fill(1, "BTC", day, 0.0),
            _fill(2, "BTC", day + 1_000_000, 5.0),
            _fill(3, "BTC", day + 2_000_000, 5.0),
            _fill(4, "BTC", day + 3_000_000, 3.0),
            _fill(5, "BTC", day + BUCKET_US["1d"], 6.0),
        ]
        await pg.write_fills(fills)
        await pg.write_fills(fills[1:3])  # re-processed: ON CONFLICT keeps one copy
        assert await pg.refresh_daily_performance()
        async with pg.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT symbol, day, trades, closing_trades, realized_pnl, avg_realized_pnl "
                "FROM daily_performance ORDER BY day"
            )
        got = [dict(r) for r in rows]
        assert [(r["trades"], r["closing_trades"]) for r in got] == [(4, 2), (1, 1)]
        assert [float(r["realized_pnl"]) for r in got] == [3.0, 3.0]
        assert [float(r["avg_realized_pnl"]) for r in got] == [0.75, 3.0]
    finally:
        async with pg.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pg.close()
