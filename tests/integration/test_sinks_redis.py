"""RedisHotState against the real local Redis Cluster: batching, idempotency, "latest" never going back,
newest-N bars, and the API reads. Every test writes under its own key prefix and deletes it afterwards."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from redis.asyncio.cluster import ClusterNode

from sinks.base import Sink, SinkError, SinkInputError
from sinks.redis_state import RedisConfig, RedisHotState
from streams.config import Settings

pytestmark = pytest.mark.integration

MINUTE_US = 60_000_000
FTX = "ftx_btc-perp_2022-01_1m.csv"


def _ftx_bars(data_dir: Path, symbol: str, n: int, timeframe: str = "1m") -> list[dict[str, Any]]:
    """The first ``n`` real FTX BTC-PERP 1m bars as ``Bar`` records of ``symbol``."""
    path = data_dir / FTX
    if not path.exists():
        pytest.skip(f"{path} is missing: the recordings live in ../shared/data (see its README)")
    df = pd.read_csv(path, nrows=n)
    start = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("us").astype("int64")
    assert start.iloc[0] == 1_640_991_660_000_000  # 2021-12-31 23:01 UTC in µs
    return [
        {
            "bar_id": f"{symbol}|{timeframe}|{s}",
            "symbol": symbol,
            "timeframe": timeframe,
            "start_us": int(s),
            "open": float(o),
            "high": float(h),
            "low": float(lo),
            "close": float(c),
            "volume": float(v),
            "vwap": (float(h) + float(lo) + float(c)) / 3,
            "trades": 1,
            "first_seq": i,
            "last_seq": i,
            "ingest_us": int(s) + MINUTE_US,
            "close_us": int(s) + MINUTE_US + 5,
        }
        for i, (s, o, h, lo, c, v) in enumerate(
            zip(start, df["open"], df["high"], df["low"], df["close"], df["volume"], strict=True)
        )
    ]


def _signal(symbol: str, start_us: int, action: str = "BUY", score: float = 0.7) -> dict[str, Any]:
    return {
        "signal_id": f"{symbol}|1m|{start_us}|m1",
        "symbol": symbol,
        "timeframe": "1m",
        "start_us": start_us,
        "action": action,
        "score": score,
        "price": 46_000.5,
        "model_version": "m1",
        "inference_path": "fallback",
        "ingest_us": start_us + 1,
        "close_us": start_us + 2,
        "indicator_us": start_us + 3,
        "inference_us": start_us + 4,
        "publish_us": start_us + 5,
    }


def _snapshot(symbol: str, start_us: int, rsi: float) -> dict[str, Any]:
    names = ("ema_fast", "ema_slow", "stochrsi_k", "stochrsi_d", "macd", "macd_signal", "macd_hist")
    return {
        "snapshot_id": f"{symbol}|1m|{start_us}",
        "symbol": symbol,
        "timeframe": "1m",
        "start_us": start_us,
        "close": 46_000.0,
        "volume": 12.5,
        **dict.fromkeys(names, math.nan),
        "rsi": rsi,
        "bb_upper": 1.0,
        "bb_middle": 0.5,
        "bb_lower": 0.25,
        "atr": 3.0,
        "vwap": 45_999.0,
        "returns": [0.001, -0.002],
        "bars_seen": 7,
        "ingest_us": 1,
        "close_us": 2,
        "indicator_us": 3,
    }


def _fill(symbol: str, ts_us: int, position: float, n: int = 0) -> dict[str, Any]:
    return {
        "fill_id": f"f-{symbol}-{ts_us}-{n}",
        "order_id": f"o-{symbol}-{ts_us}-{n}",
        "symbol": symbol,
        "side": "BUY",
        "quantity": 1.0,
        "price": 100.0 + position,
        "ts_us": ts_us,
        "position": position,
        "avg_price": 99.5,
        "realized_pnl": -1.25,
        "timeframe": "1m",
    }


@pytest.fixture
async def state(stack_settings: Settings) -> AsyncIterator[RedisHotState]:
    cfg = stack_settings.redis
    config = RedisConfig(
        nodes=tuple(cfg.nodes),
        password=cfg.password.get_secret_value() if cfg.password else None,
        ssl=cfg.ssl,
        key_prefix=f"test{uuid.uuid4().hex[:10]}",
        max_bars=2000,
    )
    adapter = await RedisHotState(config).open()
    try:
        yield adapter
    finally:
        client = adapter.client
        keys = [k async for k in client.scan_iter(match=f"{config.key_prefix}:*", count=1000)]
        for k in keys:
            await client.delete(k)
        await adapter.close()


async def _with(state: RedisHotState, **changes: Any) -> RedisHotState:
    from dataclasses import replace

    return await RedisHotState(replace(state.config, **changes)).open()


async def test_health(state: RedisHotState) -> None:
    report = await state.health()
    assert report.ok and report.store == "redis", report
    assert isinstance(state, Sink)


async def test_a_burst_bigger_than_the_pool_waits_for_a_connection(state: RedisHotState) -> None:
    """redis-py's cluster client raises MaxConnectionsError when its pool is spent; the adapter queues."""
    small = await _with(state, max_connections=4)
    try:
        await small.write_signals([_signal("BTC-PERP", 1_640_991_660_000_000)])
        found = await asyncio.gather(*(small.latest_signals(["BTC-PERP", "ETH-PERP"]) for _ in range(200)))
    finally:
        await small.close()
    assert [len(f) for f in found] == [1] * 200


async def test_bars_are_idempotent_and_newest_n_come_oldest_first(
    state: RedisHotState, stack_settings: Settings
) -> None:
    bars = _ftx_bars(stack_settings.data_dir, "BTC-PERP", 300)
    assert await state.write_bars(bars) == 300
    await state.write_bars(bars)  # the same batch again
    # re-processed after a crash: same bars, new stage timestamps, different chunking and order
    again = [{**b, "close_us": b["close_us"] + 999} for b in reversed(bars[100:250])]
    await state.write_bars(again)
    client = state.client
    assert await client.zcard(state.bars_key("BTC-PERP", "1m")) == 300

    newest = await state.bars("BTC-PERP", "1m", limit=10)
    assert [b["start_us"] for b in newest] == [b["start_us"] for b in bars[-10:]]
    assert newest[-1] == bars[-1]  # exact round trip, symbol/timeframe restored
    all_bars = await state.bars("BTC-PERP", "1m", limit=10_000)
    assert [b["bar_id"] for b in all_bars] == [b["bar_id"] for b in bars]
    assert await state.bars("BTC-PERP", "1s", limit=10) == []


async def test_bars_are_capped_to_the_newest_n(state: RedisHotState, stack_settings: Settings) -> None:
    capped = await _with(state, max_bars=50)
    try:
        bars = _ftx_bars(stack_settings.data_dir, "ETH-PERP", 180)
        await capped.write_bars(bars[100:])
        await capped.write_bars(bars[:100])  # older bars arrive late: trimmed right away
        await capped.write_bars(bars[140:170])
        got = await capped.bars("ETH-PERP", "1m", limit=1000)
        assert [b["start_us"] for b in got] == [b["start_us"] for b in bars[-50:]]
    finally:
        await capped.close()


async def test_a_batch_is_one_request_per_primary(
    state: RedisHotState, stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's cluster pipeline packs each primary's commands into one request: count them."""
    calls: list[int] = []
    original = ClusterNode.execute_pipeline

    async def counting(self: ClusterNode, commands: list[Any]) -> bool:
        calls.append(len(commands))
        return await original(self, commands)

    base = _ftx_bars(stack_settings.data_dir, "X", 40)
    bars = [{**b, "symbol": f"SYM{i}"} for i in range(50) for b in base]  # 2,000 bars, 50 symbols
    monkeypatch.setattr(ClusterNode, "execute_pipeline", counting)
    await state.write_bars(bars)
    await state.write_signals([_signal(f"SYM{i}", base[-1]["start_us"]) for i in range(50)])
    monkeypatch.undo()
    primaries = len(state.client.get_primaries())
    # write_bars: one request per primary; write_signals: the same. write_bars: 50 bars keys + 50 price
    # keys, write_signals: 50 signal keys; each + the symbols index's ZADD and PEXPIRE.
    assert len(calls) <= 2 * primaries, calls
    assert sum(calls) == (100 + 2) + (50 + 2)
    assert len(await state.latest_signals()) == 50


async def test_latest_signal_never_goes_back_in_time(state: RedisHotState) -> None:
    t = 1_641_000_000_000_000
    await state.write_signals([_signal("BTC", t, "BUY"), _signal("BTC", t - MINUTE_US, "SELL")])
    await state.write_signals([_signal("BTC", t - 2 * MINUTE_US, "SELL")])  # re-processed, older
    (sig,) = await state.latest_signals(["BTC"])
    assert sig == _signal("BTC", t, "BUY")
    await state.write_signals([_signal("BTC", t, "HOLD", 0.5)])  # same bar again: replaces (same time)
    assert (await state.latest_signals(["BTC"]))[0]["action"] == "HOLD"
    await state.write_signals([_signal("BTC", t + MINUTE_US, "SELL")])
    assert (await state.latest_signals(["BTC"]))[0]["start_us"] == t + MINUTE_US


async def test_latest_signals_of_all_known_symbols(state: RedisHotState) -> None:
    t = 1_641_000_000_000_000
    await state.write_signals([_signal(s, t) for s in ("C", "A", "B")])
    await state.write_bars([{**_ftx_bar_stub(t), "symbol": "D"}])  # known symbol without a signal
    assert await state.symbols() == ["A", "B", "C", "D"]
    assert [s["symbol"] for s in await state.latest_signals()] == ["A", "B", "C"]
    assert [s["symbol"] for s in await state.latest_signals(["B", "Z"])] == ["B"]


def _ftx_bar_stub(start_us: int) -> dict[str, Any]:
    return {
        "bar_id": f"stub|{start_us}",
        "symbol": "S",
        "timeframe": "1m",
        "start_us": start_us,
        "open": 1.0,
        "high": 1.0,
        "low": 1.0,
        "close": 1.0,
        "volume": 0.0,
        "vwap": math.nan,
        "trades": 1,
        "first_seq": 1,
        "last_seq": 1,
        "ingest_us": 0,
        "close_us": 0,
    }


async def test_latest_snapshot_round_trips_types_and_nan(state: RedisHotState) -> None:
    t = 1_641_000_000_000_000
    await state.write_snapshots([_snapshot("BTC", t, 55.5), _snapshot("BTC", t - MINUTE_US, 44.0)])
    await state.write_snapshots([_snapshot("BTC", t - 5 * MINUTE_US, 11.0)])
    got = await state.latest_snapshot("BTC", "1m")
    want = _snapshot("BTC", t, 55.5)
    assert got is not None and got.keys() == want.keys()
    for k, v in want.items():
        assert (
            (math.isnan(got[k]) and math.isnan(v)) if isinstance(v, float) and math.isnan(v) else got[k] == v
        )
    assert isinstance(got["bars_seen"], int) and got["returns"] == [0.001, -0.002]
    assert await state.latest_snapshot("BTC", "1s") is None


async def test_position_moves_only_forward(state: RedisHotState) -> None:
    t = 1_641_000_000_000_000
    await state.write_positions([_fill("BTC", t, 2.0), _fill("BTC", t - 10, 1.0)])
    await state.write_positions([_fill("BTC", t - 20, 5.0)])  # an older fill re-processed
    pos = await state.position("BTC", "1m")
    assert pos == {
        "symbol": "BTC",
        "timeframe": "1m",
        "quantity": 2.0,
        "avg_price": 99.5,
        "realized_pnl": -1.25,
        "last_price": 102.0,
        "ts_us": t,
        "fill_id": f"f-BTC-{t}-0",
        "order_id": f"o-BTC-{t}-0",
    }
    # two fills in the same microsecond: the later one in the stream wins
    await state.write_positions([_fill("BTC", t + 1, 3.0, 0), _fill("BTC", t + 1, 4.0, 1)])
    assert (await state.position("BTC", "1m") or {})["quantity"] == 4.0
    assert await state.position("NOPE", "1m") is None
    # each signal timeframe is its own book: a 1s fill does not move the 1m position; the net is the sum
    await state.write_positions([{**_fill("BTC", t + 5, -1.0), "timeframe": "1s"}])
    assert (await state.position("BTC", "1m") or {})["quantity"] == 4.0
    assert (
        await state.net_position("BTC", ["1s", "1m"]) == 3.0 and await state.net_position("NOPE", ["1m"]) == 0
    )


async def test_odd_symbols_are_just_symbols(state: RedisHotState, stack_settings: Settings) -> None:
    evil = "x' OR 1=1 --"
    await state.write_bars(_ftx_bars(stack_settings.data_dir, "BTC", 5))
    assert await state.bars(evil, "1m", 10) == []
    assert await state.latest_signals([evil, "*"]) == []
    bars = [{**b, "symbol": "EUR/USD{x}"} for b in _ftx_bars(stack_settings.data_dir, "X", 3)]
    await state.write_bars(bars)
    assert len(await state.bars("EUR/USD{x}", "1m", 10)) == 3


async def test_lost_scripts_are_reloaded(state: RedisHotState, stack_settings: Settings) -> None:
    """After a failover or SCRIPT FLUSH the script SHAs are unknown (NOSCRIPT): loaded again, batch re-sent.
    (Simulated with an unknown SHA: flushing the shared cluster's scripts would disturb other users.)"""
    state._sha["bars"] = "0" * 40
    state._sha["latest"] = "1" * 40
    await state.write_bars(_ftx_bars(stack_settings.data_dir, "BTC", 5))
    await state.write_signals([_signal("BTC", 1)])
    assert len(await state.bars("BTC", "1m", 10)) == 5
    assert len(await state.latest_signals(["BTC"])) == 1


async def test_malformed_records_and_unreachable_cluster_raise_sink_errors(state: RedisHotState) -> None:
    with pytest.raises(SinkInputError, match="missing field 'start_us'"):
        await state.write_bars([{"symbol": "BTC", "timeframe": "1m"}])
    with pytest.raises(SinkError, match="Redis Cluster"):
        await RedisHotState(RedisConfig(nodes=(("127.0.0.1", 1),))).open()
    with pytest.raises(RuntimeError, match="open"):
        await RedisHotState().write_bars([])
