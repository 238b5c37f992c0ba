"""ClickHouseHistory against the local ClickHouse HTTP server: columnar inserts, idempotency
(ReplacingMergeTree + FINAL / uniqExact), the duplicate-safe hourly rollup, parameterized reads. Each test
uses its own database ``test_<uuid>``, dropped at the end."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sinks.base import Sink, SinkError, SinkInputError
from sinks.clickhouse_history import ClickHouseConfig, ClickHouseHistory, TableCount
from streams.config import Settings

pytestmark = pytest.mark.integration

MINUTE_US = 60_000_000
FTX = "ftx_btc-perp_2022-01_1m.csv"
TRADES = "binance_btcusdt_trades.parquet"


def _need(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.exists():
        pytest.skip(f"{path} is missing: the recordings live in ../shared/data (see its README)")
    return path


def _ftx_bars(data_dir: Path, symbol: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` real FTX BTC-PERP 1m bars as ``Bar`` records of ``symbol``."""
    df = pd.read_csv(_need(data_dir, FTX), nrows=n)
    start = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("us").astype("int64")
    assert start.iloc[0] == 1_640_991_660_000_000  # 2021-12-31 23:01 UTC in µs
    return [
        {
            "bar_id": f"{symbol}|1m|{s}",
            "symbol": symbol,
            "timeframe": "1m",
            "start_us": int(s),
            "open": float(o),
            "high": float(h),
            "low": float(lo),
            "close": float(c),
            "volume": float(v),
            "vwap": (float(h) + float(lo) + float(c)) / 3,
            "trades": 1 + i % 7,
            "first_seq": i,
            "last_seq": i,
            "ingest_us": int(s) + MINUTE_US,
            "close_us": int(s) + MINUTE_US + 5,
        }
        for i, (s, o, h, lo, c, v) in enumerate(
            zip(start, df["open"], df["high"], df["low"], df["close"], df["volume"], strict=True)
        )
    ]


def _tick_batches(data_dir: Path, symbols: list[str], per_batch: int) -> tuple[list[dict[str, Any]], int]:
    """Real Binance BTCUSDT trades as TickBatch records, replayed for each of ``symbols`` (seq per symbol)."""
    df = pd.read_parquet(_need(data_dir, TRADES))
    ts = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("us").astype("int64").tolist()
    price, size = df["price"].astype(float).tolist(), df["quantity"].astype(float).tolist()
    batches = []
    for lo in range(0, len(ts), per_batch):
        hi = min(lo + per_batch, len(ts))
        k = hi - lo
        batches.append(
            {
                "batch_id": f"b{lo}",
                "symbols": symbols,
                "symbol_index": [j for j in range(len(symbols)) for _ in range(k)],
                "ts_us": ts[lo:hi] * len(symbols),
                "price": price[lo:hi] * len(symbols),
                "size": size[lo:hi] * len(symbols),
                "seq": list(range(lo + 1, hi + 1)) * len(symbols),
                "ingest_us": 0,
                "publish_us": 0,
            }
        )
    return batches, len(ts)


def _signal(symbol: str, start_us: int, model: str = "m1") -> dict[str, Any]:
    return {
        "signal_id": f"{symbol}|1m|{start_us}|{model}",
        "symbol": symbol,
        "timeframe": "1m",
        "start_us": start_us,
        "action": ("HOLD", "BUY", "SELL")[start_us // MINUTE_US % 3],
        "score": 0.25,
        "price": 46_000.5,
        "model_version": model,
        "inference_path": "triton",
        "ingest_us": start_us + 1,
        "close_us": start_us + 2,
        "indicator_us": start_us + 3,
        "inference_us": start_us + 4,
        "publish_us": start_us + 5,
    }


def _snapshot(symbol: str, start_us: int) -> dict[str, Any]:
    names = ("ema_fast", "ema_slow", "rsi", "stochrsi_k", "stochrsi_d", "macd", "macd_signal", "macd_hist")
    return {
        "snapshot_id": f"{symbol}|1m|{start_us}",
        "symbol": symbol,
        "timeframe": "1m",
        "start_us": start_us,
        "close": 46_000.0,
        "volume": 12.5,
        **dict.fromkeys(names, math.nan),
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


def _config(settings: Settings, database: str) -> ClickHouseConfig:
    ch = settings.clickhouse
    return ClickHouseConfig(
        url=ch.url,
        database=database,
        username=ch.username,
        password=ch.password.get_secret_value() if ch.password else None,
    )


async def test_health_and_schema_is_idempotent(history: ClickHouseHistory) -> None:
    report = await history.health()
    assert report.ok and "ClickHouse" in report.detail, report
    assert isinstance(history, Sink)
    again = await ClickHouseHistory(history.config).open()  # apply_schema on an existing database
    await again.close()
    tables = history.client.query("SHOW TABLES").result_columns[0]
    assert set(tables) >= {"ticks", "bars", "indicators", "signals", "bars_1h_state", "bars_1h_mv", "bars_1h"}


async def test_bars_written_twice_and_reprocessed_are_stored_once(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    bars = _ftx_bars(stack_settings.data_dir, "BTC-PERP", 300)
    assert await history.write_bars(bars) == 300
    await history.write_bars(bars)  # a retried batch (identical block)
    # re-processed after a crash: other chunking and order, new stage timestamps
    await history.write_bars([{**b, "close_us": b["close_us"] + 7} for b in reversed(bars[50:200])])
    counts = await history.counts(["BTC-PERP"])
    assert counts["bars"].distinct == 300 and counts["bars"].rows >= 300
    got = await history.bars("BTC-PERP", "1m", limit=1000)
    assert [b["bar_id"] for b in got] == [b["bar_id"] for b in bars]  # one copy each, oldest first
    for g, b in zip(got, bars, strict=True):
        assert {k: v for k, v in g.items() if k != "close_us"} == {
            k: v for k, v in b.items() if k != "close_us"
        }
        assert g["close_us"] in (b["close_us"], b["close_us"] + 7)


async def test_bar_reads_take_the_newest_in_range_oldest_first(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    bars = _ftx_bars(stack_settings.data_dir, "BTC-PERP", 120)
    await history.write_bars(bars)
    starts = [b["start_us"] for b in bars]
    assert [b["start_us"] for b in await history.bars("BTC-PERP", "1m", limit=5)] == starts[-5:]
    got = await history.bars("BTC-PERP", "1m", start_us=starts[10], end_us=starts[20], limit=100)
    assert [b["start_us"] for b in got] == starts[10:20]  # start inclusive, end exclusive
    got = await history.bars("BTC-PERP", "1m", start_us=starts[10], end_us=starts[20], limit=3)
    assert [b["start_us"] for b in got] == starts[17:20]
    assert await history.bars("BTC-PERP", "1s") == []
    assert await history.bars("BTC-PERP", "1m", limit=0) == []


async def test_parameters_keep_odd_symbols_as_plain_values(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    await history.write_bars(_ftx_bars(stack_settings.data_dir, "BTC-PERP", 10))
    evil = "x' OR 1=1 --"
    assert await history.bars(evil, "1m") == []
    assert await history.bars("BTC-PERP", "1m' OR '1'='1") == []
    assert await history.latest_signals(evil) == []
    assert all(c == TableCount(0, 0) for c in (await history.counts([evil])).values())
    odd = [
        {**b, "symbol": evil, "bar_id": f"odd|{b['start_us']}"}
        for b in _ftx_bars(stack_settings.data_dir, "x", 3)
    ]
    await history.write_bars(odd)  # stored and found as the literal symbol
    assert len(await history.bars(evil, "1m")) == 3
    assert (await history.counts())["bars"].distinct == 13


async def test_ticks_from_tick_batches_are_stored_once(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    batches, n = _tick_batches(stack_settings.data_dir, ["BTCUSDT", "BTCUSDT.1"], per_batch=500)
    assert await history.write_ticks(batches) == 2 * n
    await history.write_ticks(batches[1:3])  # retried batches
    rebatched, _ = _tick_batches(stack_settings.data_dir, ["BTCUSDT", "BTCUSDT.1"], per_batch=333)
    await history.write_ticks(rebatched)  # re-processed with other batch boundaries
    assert await history.tick_count("BTCUSDT") == n
    assert await history.tick_count("BTCUSDT.1") == n
    counts = await history.counts(["BTCUSDT", "BTCUSDT.1"])
    assert counts["ticks"].distinct == 2 * n
    # numpy columns work too
    np_batch = {
        "batch_id": "np",
        "symbols": ["NP"],
        "symbol_index": np.zeros(3, np.int32),
        "ts_us": np.array([1, 2, 3], np.int64) + 1_641_000_000_000_000,
        "price": np.array([1.0, 2.0, 3.0]),
        "size": np.zeros(3),
        "seq": np.arange(1, 4, dtype=np.int64),
    }
    assert await history.write_ticks([np_batch]) == 3
    assert await history.tick_count("NP") == 3


async def test_hourly_rollup_matches_pandas_and_ignores_duplicates(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    bars = _ftx_bars(stack_settings.data_dir, "BTC-PERP", 300)
    await history.write_bars(bars[:200])
    await history.write_bars(bars[150:])  # overlapping re-processed bars
    await history.write_bars(bars[:10])
    df = pd.DataFrame(bars)
    df["hour"] = df["start_us"] // 3_600_000_000 * 3_600_000_000
    df["pv"] = df["volume"] * df["vwap"]
    want = df.groupby("hour").agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        pv=("pv", "sum"),
        trades=("trades", "sum"),
        bars=("start_us", "count"),
    )
    got = await history.bars_1h("BTC-PERP", limit=100)
    assert [g["start_us"] for g in got] == want.index.tolist()
    for g, (_, w) in zip(got, want.iterrows(), strict=True):
        assert (g["open"], g["high"], g["low"], g["close"]) == (w["open"], w["high"], w["low"], w["close"])
        assert g["volume"] == pytest.approx(w["volume"], rel=1e-12)
        assert g["vwap"] == pytest.approx(w["pv"] / w["volume"], rel=1e-12)
        assert (g["trades"], g["bars"]) == (w["trades"], w["bars"])


async def test_signals_and_snapshots_are_stored_once(history: ClickHouseHistory) -> None:
    t0 = 1_641_000_000_000_000
    signals = [_signal("BTC", t0 + i * MINUTE_US, m) for i in range(20) for m in ("m1", "m2")]
    await history.write_signals(signals)
    await history.write_signals(signals[5:25])
    snaps = [_snapshot("BTC", t0 + i * MINUTE_US) for i in range(20)]
    await history.write_snapshots(snaps)
    await history.write_snapshots(snaps[::-1])
    counts = await history.counts(["BTC"])
    assert counts["signals"].distinct == 40 and counts["indicators"].distinct == 20
    latest = await history.latest_signals("BTC", limit=2)
    assert latest == [signals[-2], signals[-1]]  # newest start first, then model_version
    rows = history.client.query(
        "SELECT rsi, returns, bars_seen, toUnixTimestamp64Micro(indicator_at) FROM indicators FINAL "
        "WHERE symbol = {s:String} ORDER BY start LIMIT 1",
        parameters={"s": "BTC"},
    ).result_rows
    rsi, returns, bars_seen, indicator_us = rows[0]
    assert math.isnan(rsi) and returns == [0.001, -0.002] and bars_seen == 7 and indicator_us == 3


async def test_tick_ttl_is_configurable(history: ClickHouseHistory) -> None:
    def ttl() -> str:
        return str(
            history.client.query(
                "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = 'ticks'"
            ).result_rows[0][0]
        )

    assert "toIntervalDay(90)" in ttl() or "INTERVAL 90 DAY" in ttl()
    for days in (7, 0):
        other = await ClickHouseHistory(replace(history.config, ticks_ttl_days=days)).open()
        await other.close()
        assert (" TTL " in ttl()) == bool(days), ttl()


async def test_errors_name_the_store_and_the_fix(
    history: ClickHouseHistory, stack_settings: Settings
) -> None:
    with pytest.raises(SinkInputError, match="missing field 'vwap'"):
        await history.write_bars(
            [{k: v for k, v in _ftx_bars(stack_settings.data_dir, "B", 1)[0].items() if k != "vwap"}]
        )
    with pytest.raises(ValueError, match="not a plain identifier"):
        ClickHouseHistory(ClickHouseConfig(database="x; DROP TABLE bars"))
    with pytest.raises(ValueError, match="http"):
        ClickHouseHistory(ClickHouseConfig(url="127.0.0.1:8123"))
    with pytest.raises(SinkError, match="clickhouse open"):
        await ClickHouseHistory(ClickHouseConfig(url="http://127.0.0.1:1", connect_timeout_s=1)).open()
    with pytest.raises(SinkError, match=r"UNKNOWN_DATABASE|does not exist"):
        await ClickHouseHistory(_config(stack_settings, "test_missing_db_x"), apply=False).open()
