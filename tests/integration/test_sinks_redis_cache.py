"""The Redis cache policy against the real local Redis Cluster: TTLs by data type, hit/miss counters, the
price key, cached chart responses invalidated on new bars, and warming from the real ClickHouse engine."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from sinks.clickhouse_history import ClickHouseConfig, ClickHouseHistory
from sinks.redis_cache import CachePolicy, warm
from sinks.redis_state import RedisConfig, RedisHotState
from streams.config import Settings
from tests.integration.test_sinks_redis import MINUTE_US, _ftx_bars, _signal, _snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
async def state(stack_settings: Settings) -> AsyncIterator[RedisHotState]:
    cfg = stack_settings.redis
    config = RedisConfig(nodes=tuple(cfg.nodes), key_prefix=f"test{uuid.uuid4().hex[:10]}")
    lookups: list[tuple[str, str, int]] = []
    adapter = await RedisHotState(config, lambda r, res, n: lookups.append((r, res, n))).open()
    adapter.lookups = lookups  # type: ignore[attr-defined]
    try:
        yield adapter
    finally:
        client = adapter.client
        async for k in client.scan_iter(match=f"{config.key_prefix}:*", count=1000):
            await client.delete(k)
        await adapter.close()


async def _pttl(state: RedisHotState, key: str) -> int:
    return int(await state.client.pttl(key))


def _live_bars(bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bars shifted so the newest one ended just now (a symbol whose market is open)."""
    shift = (time.time_ns() // 1000) - MINUTE_US - bars[-1]["start_us"]
    return [{**b, "start_us": b["start_us"] + shift} for b in bars]


async def test_price_ttl_is_short_while_the_market_is_open_and_long_when_closed(
    state: RedisHotState, stack_settings: Settings
) -> None:
    old = _ftx_bars(stack_settings.data_dir, "OLD", 5)  # 2022: closed
    live = _live_bars(_ftx_bars(stack_settings.data_dir, "LIVE", 5))
    await state.write_bars(old + live)
    closed, open_ = await _pttl(state, state.price_key("OLD")), await _pttl(state, state.price_key("LIVE"))
    assert 59_000 < closed <= 60_000, closed
    assert 0 < open_ <= 1_000, open_
    price = await state.price("OLD")
    assert price == {
        "symbol": "OLD",
        "price": old[-1]["close"],
        "ts_us": old[-1]["start_us"] + MINUTE_US,
        "timeframe": "1m",
    }
    bars_ttl = await _pttl(state, state.bars_key("OLD", "1m"))
    assert 3_590_000 < bars_ttl <= 3_600_000, bars_ttl
    await asyncio.sleep(1.2)
    assert await state.price("LIVE") is None, "an open market's price expires after 1 s"
    assert await state.price("OLD") is not None


async def test_indicator_ttl_follows_volatility_and_signals_get_the_default(state: RedisHotState) -> None:
    t = 1_641_000_000_000_000
    calm = {**_snapshot("CALM", t, 50.0), "atr": 0.001 * 46_000.0}
    wild = {**_snapshot("WILD", t, 50.0), "atr": 0.01 * 46_000.0}
    warming = {**_snapshot("NEW", t, 50.0), "atr": float("nan")}
    await state.write_snapshots([calm, wild, warming])
    assert 29_000 < await _pttl(state, state.snapshot_key("CALM", "1m")) <= 30_000
    assert 4_000 < await _pttl(state, state.snapshot_key("WILD", "1m")) <= 5_000
    assert 29_000 < await _pttl(state, state.snapshot_key("NEW", "1m")) <= 30_000, "NaN ATR counts as calm"
    await state.write_signals([_signal("CALM", t)])
    assert 299_000 < await _pttl(state, state.signal_key("CALM")) <= 300_000
    assert 0 < await _pttl(state, state.symbols_key) <= 3_600_000


async def test_ttls_are_configurable_and_zero_means_no_expiry(state: RedisHotState) -> None:
    forever = replace(state.config, cache=CachePolicy(indicator_low_vol_ttl_s=0, default_ttl_s=12))
    other = await RedisHotState(forever).open()
    try:
        t = 1_641_000_000_000_000
        await other.write_snapshots([{**_snapshot("Z", t, 1.0), "atr": 0.0}])
        await other.write_signals([_signal("Z", t)])
        assert await _pttl(other, other.snapshot_key("Z", "1m")) == -1
        assert 11_000 < await _pttl(other, other.signal_key("Z")) <= 12_000
    finally:
        await other.close()
    with pytest.raises(ValueError, match="price_open_ttl_s=-1"):
        CachePolicy(price_open_ttl_s=-1)


async def test_hits_and_misses_are_counted_per_read(state: RedisHotState, stack_settings: Settings) -> None:
    await state.write_bars(_ftx_bars(stack_settings.data_dir, "BTC", 3))
    await state.bars("BTC", "1m")
    await state.bars("BTC", "1s")
    await state.latest_signals(["BTC", "ETH"])
    await state.position("BTC", "1m")
    snap = state.stats.snapshot()
    assert snap["by_read"]["bars"] == {"hit": 1, "miss": 1}
    assert snap["by_read"]["signal"] == {"hit": 0, "miss": 2}
    assert snap["hit"] == 1 and snap["miss"] == 4
    assert ("bars", "hit", 1) in state.lookups  # type: ignore[attr-defined]
    assert ("signal", "miss", 2) in state.lookups  # type: ignore[attr-defined]


async def test_chart_responses_are_invalidated_by_new_bars(
    state: RedisHotState, stack_settings: Settings
) -> None:
    bars = _ftx_bars(stack_settings.data_dir, "BTC", 10)
    await state.write_bars(bars[:5])
    as_of = bars[4]["start_us"]
    assert await state.chart.get("BTC", "1m", "limit=5") is None
    assert await state.chart.put("BTC", "1m", "limit=5", '{"bars": 5}', as_of)
    assert await state.chart.get("BTC", "1m", "limit=5") == '{"bars": 5}'
    assert 299_000 < await _pttl(state, state.chart_key("BTC", "1m")) <= 300_000
    await state.write_bars(bars[5:6])  # a new bar: the cached response is gone
    assert await state.chart.get("BTC", "1m", "limit=5") is None
    # a response computed from the old bars arrives late: refused, it is stale already
    assert not await state.chart.put("BTC", "1m", "limit=5", '{"bars": 5}', as_of)
    assert await state.chart.get("BTC", "1m", "limit=5") is None
    assert await state.chart.put("BTC", "1m", "limit=5", "{}", bars[5]["start_us"])
    assert await state.chart.invalidate("BTC", ["1m", "1s"]) == 1
    assert state.stats.snapshot()["by_read"]["chart"] == {"hit": 1, "miss": 3}


async def test_warming_fills_missing_keys_from_clickhouse(
    state: RedisHotState, stack_settings: Settings
) -> None:
    ch = stack_settings.clickhouse
    config = ClickHouseConfig(url=ch.url, database=f"test_{uuid.uuid4().hex[:12]}")
    history = await ClickHouseHistory(config).open()
    try:
        btc = _ftx_bars(stack_settings.data_dir, "BTC", 120)
        eth = [{**b, "symbol": "ETH", "bar_id": b["bar_id"].replace("X", "ETH")} for b in btc[:30]]
        await history.write_bars(btc + eth)
        await state.write_bars(eth[-2:])  # ETH's key exists: left alone
        report = await warm(state, None, ["1m", "1s"], history, limit=50)
        assert (report.checked, report.missing, report.warmed, report.bars) == (4, 3, 1, 50)
        got = await state.bars("BTC", "1m", limit=1000)
        assert [b["start_us"] for b in got] == [b["start_us"] for b in btc[-50:]]
        assert got[-1]["close"] == btc[-1]["close"] and got[-1]["bar_id"] == btc[-1]["bar_id"]
        assert len(await state.bars("ETH", "1m", limit=1000)) == 2
        # read-through: a missing key is warmed on the read that misses it
        await state.client.delete(state.bars_key("BTC", "1m"))
        rows = await state.bars_read_through("BTC", "1m", history, limit=20)
        assert [b["start_us"] for b in rows] == [b["start_us"] for b in btc[-20:]]
    finally:
        await asyncio.to_thread(history.client.command, f"DROP DATABASE IF EXISTS {config.database}")
        await history.close()
