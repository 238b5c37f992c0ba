"""OHLCV bars: batch == streaming bit for bit, both == pandas resample, late trades handed back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.bars import Bar, BarAggregator, Bars, aggregate

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Trades = tuple[I64, F64, F64]
HYPO = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pandas_bars(ts: I64, price: F64, size: F64, timeframe_us: int) -> pd.DataFrame:
    """Independent reference: pandas resample in event time, empty buckets dropped."""
    df = pd.DataFrame({"p": price, "q": size, "pq": price * size}, index=pd.to_datetime(ts, unit="us"))
    r = df.resample(pd.Timedelta(microseconds=timeframe_us), origin="epoch", closed="left", label="left")
    out = pd.DataFrame(
        {
            "open": r["p"].first(),
            "high": r["p"].max(),
            "low": r["p"].min(),
            "close": r["p"].last(),
            "volume": r["q"].sum(),
            "pv": r["pq"].sum(),
            "trades": r["p"].count(),
        }
    )
    out = out[out["trades"] > 0]
    out["start_us"] = out.index.to_numpy().astype("datetime64[us]").astype(np.int64)
    return out


def assert_same_as_pandas(bars: Bars, ref: pd.DataFrame) -> None:
    assert np.array_equal(bars.start_us, ref["start_us"].to_numpy())
    for col in ("open", "high", "low", "close", "trades"):
        assert np.array_equal(getattr(bars, col), ref[col].to_numpy()), col
    # pandas sums in time order with compensated summation; ours is a plain sum in arrival order
    np.testing.assert_allclose(bars.volume, ref["volume"].to_numpy(), rtol=1e-12, atol=0)
    with np.errstate(invalid="ignore"):
        vwap = (ref["pv"] / ref["volume"]).to_numpy()
    np.testing.assert_allclose(bars.vwap, vwap, rtol=1e-12, atol=0, equal_nan=True)


def stream(ts: I64, price: F64, size: F64, tf: int, chunk: int) -> tuple[Bars, I64, BarAggregator]:
    agg = BarAggregator(tf)
    parts, late = [], []
    for start in range(0, ts.shape[0], chunk):
        bars, idx = agg.update_many(
            ts[start : start + chunk], price[start : start + chunk], size[start : start + chunk]
        )
        parts.append(bars)
        late.append(idx + start)
    last = agg.flush(np.iinfo(np.int64).max)
    if last is not None:
        parts.append(Bars.from_bars([last]))
    return Bars.concat(parts), np.concatenate(late) if late else np.empty(0, np.int64), agg


# --- real trades ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binance() -> Trades:
    path = DATA_DIR / "binance_btcusdt_trades.parquet"
    if not path.exists():
        pytest.skip(
            f"real market data not found at {path} (expected ../shared/data next to the project root)"
        )
    df = pd.read_parquet(path)
    ts = df["timestamp"].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    return ts, df["price"].to_numpy(dtype=np.float64), df["quantity"].to_numpy(dtype=np.float64)


TIMEFRAMES = [100_000, 1_000_000, 5_000_000, 10_000_000, 60_000_000]


@pytest.mark.parametrize("tf", TIMEFRAMES)
def test_real_trades_batch_matches_pandas_resample(binance: Trades, tf: int) -> None:
    bars = aggregate(*binance, tf)
    assert len(bars) > 0 and int(bars.trades.sum()) == binance[0].shape[0]
    assert_same_as_pandas(bars, pandas_bars(*binance, tf))


@pytest.mark.parametrize("tf", TIMEFRAMES)
@pytest.mark.parametrize("chunk", [1, 7, 300, 5000])
def test_real_trades_streaming_equals_batch_bitwise(binance: Trades, tf: int, chunk: int) -> None:
    bars, late, _ = stream(*binance, tf, chunk)
    assert late.shape == (0,)
    assert bars.equals(aggregate(*binance, tf))


def test_real_trades_single_updates_and_checkpoints(binance: Trades) -> None:
    ts, price, size = binance
    tf = 1_000_000
    agg = BarAggregator(tf)
    closed: list[Bar] = []
    for i in range(ts.shape[0]):
        if i % 97 == 0:
            agg = BarAggregator.from_bytes(agg.to_bytes())
        bar, late = agg.update(int(ts[i]), float(price[i]), float(size[i]))
        assert not late
        if bar is not None:
            closed.append(bar)
    last = agg.flush(int(ts[-1]) + tf)
    assert last is not None and agg.open_bar is None
    assert Bars.from_bars([*closed, last]).equals(aggregate(ts, price, size, tf))


def test_real_trades_shuffled_batch_still_matches_pandas(binance: Trades) -> None:
    ts, price, size = binance
    order = np.random.default_rng(5).permutation(ts.shape[0])
    shuffled = (ts[order], price[order], size[order])
    assert_same_as_pandas(aggregate(*shuffled, 1_000_000), pandas_bars(*shuffled, 1_000_000))


# --- properties -----------------------------------------------------------------------------------


@st.composite
def trades(draw: st.DrawFn) -> tuple[Trades, int]:
    """Random trades: mostly in order, with jitter, duplicates, gaps, negative times and zero sizes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 300))
    tf = draw(st.sampled_from([1, 7, 1_000, 1_000_000, 60_000_000]))
    step = draw(st.sampled_from([0, 1, tf // 3 + 1, tf, 5 * tf]))
    jitter = draw(st.sampled_from([0, 1, tf, 3 * tf]))
    start = draw(st.integers(-(10**12), 10**12))
    gaps = (rng.random(n) < 0.05) * rng.integers(0, 50 * tf + 1, n)
    ts = start + np.cumsum(rng.integers(0, step + 1, n) + gaps) - rng.integers(0, jitter + 1, n)
    price = np.round(100.0 + np.cumsum(rng.normal(0.0, 0.5, n)), 2)
    size = rng.random(n) * (rng.random(n) < 0.9)
    return (ts.astype(np.int64), price, size), tf


@HYPO
@given(data=trades(), chunk=st.integers(1, 64))
def test_streaming_equals_batch_over_non_late_trades(data: tuple[Trades, int], chunk: int) -> None:
    (ts, price, size), tf = data
    bars, late, agg = stream(ts, price, size, tf, chunk)
    keep = np.ones(ts.shape[0], dtype=bool)
    keep[late] = False
    assert bars.equals(aggregate(ts[keep], price[keep], size[keep], tf))
    assert agg.late_trades == late.shape[0]
    # late == bucket older than the newest accepted bucket (independent reference)
    buckets = (ts // tf) * tf
    frontier = np.iinfo(np.int64).min
    expected_late = []
    for i, b in enumerate(buckets):
        if b < frontier:
            expected_late.append(i)
        else:
            frontier = b
    assert late.tolist() == expected_late


@settings(max_examples=25, deadline=None)
@given(data=trades())
def test_batch_matches_pandas_on_random_trades(data: tuple[Trades, int]) -> None:
    (ts, price, size), tf = data
    if tf < 1_000:  # pandas needs a Timedelta of whole microseconds: fine, but keep the frames small
        tf = 1_000
    assert_same_as_pandas(aggregate(ts, price, size, tf), pandas_bars(ts, price, size, tf))


@HYPO
@given(data=trades(), cut=st.floats(0.0, 1.0), watermarks=st.lists(st.integers(0, 299), max_size=5))
def test_checkpoint_resume_and_watermarks(
    data: tuple[Trades, int], cut: float, watermarks: list[int]
) -> None:
    """Serialize/resume mid-stream is invisible; flushes at watermarks close exactly the finished bars and
    make later trades for them late."""
    (ts, price, size), tf = data
    n = ts.shape[0]
    k = int(cut * n)
    marks = {w: int(ts[w]) for w in watermarks if w < n}

    def run(checkpoint: bool) -> tuple[list[Bar], list[int], bytes]:
        agg = BarAggregator(tf)
        out: list[Bar] = []
        late: list[int] = []
        for i in range(n):
            if checkpoint and i == k:
                agg = BarAggregator.from_bytes(agg.to_bytes())
            if i in marks:
                bar = agg.flush(marks[i])
                if bar is not None:
                    assert bar.start_us + tf <= marks[i]
                    out.append(bar)
            bar, is_late = agg.update(int(ts[i]), float(price[i]), float(size[i]))
            if is_late:
                late.append(i)
            elif bar is not None:
                out.append(bar)
        return out, late, agg.to_bytes()

    bars, late, state = run(checkpoint=False)
    assert repr(run(checkpoint=True)) == repr((bars, late, state))  # repr: NaN VWAPs compare unequal
    keep = np.ones(n, dtype=bool)
    keep[late] = False
    final = BarAggregator.from_bytes(state).flush(np.iinfo(np.int64).max)
    got = Bars.from_bars(bars + ([final] if final else []))
    assert got.equals(aggregate(ts[keep], price[keep], size[keep], tf))


# --- behaviour ------------------------------------------------------------------------------------


def test_bar_definition_small_example() -> None:
    ts = np.array([5, 1, 9, 1, 12, 25])  # out of order and a duplicate timestamp inside [0, 10)
    price = np.array([2.0, 1.0, 3.0, 4.0, 5.0, 6.0])
    size = np.array([1.0, 2.0, 0.0, 1.0, 2.0, 0.0])
    bars = aggregate(ts, price, size, 10)
    assert [b.start_us for b in bars] == [0, 10, 20]
    first = bars[0]
    assert (first.open, first.high, first.low, first.close, first.trades) == (1.0, 4.0, 1.0, 3.0, 4)
    assert first.volume == 4.0 and first.vwap == (2.0 + 2.0 + 0.0 + 4.0) / 4.0
    assert bars[2].volume == 0.0 and math.isnan(bars[2].vwap)  # only zero-size trades
    # same timestamp twice: first received opens, last received closes
    tie = aggregate([3, 3, 3], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 10)[0]
    assert (tie.open, tie.close) == (1.0, 3.0)


def test_negative_timestamps_floor_to_their_bucket() -> None:
    bars = aggregate([-11, -10, -1, 0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0], 10)
    assert bars.start_us.tolist() == [-20, -10, 0] and bars.trades.tolist() == [1, 2, 1]


def test_streaming_late_and_flush_semantics() -> None:
    agg = BarAggregator(10)
    assert agg.update(12, 1.0, 1.0) == (None, False)
    assert agg.open_bar == Bar(10, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
    assert agg.update(9, 2.0, 1.0) == (None, True)  # older bucket than the open one
    assert agg.flush(19) is None  # bar [10, 20) not finished yet
    assert agg.update(15, 3.0, 1.0) == (None, False)  # still accepted
    bar = agg.flush(20)
    assert bar is not None and (bar.start_us, bar.close, bar.trades) == (10, 3.0, 2)
    assert agg.update(19, 4.0, 1.0) == (None, True)  # its bar was closed by the watermark
    assert agg.flush(45) is None  # no open bar: buckets before 40 are now closed too
    assert agg.update(35, 5.0, 1.0) == (None, True)
    assert agg.update(41, 6.0, 1.0) == (None, False)
    assert agg.late_trades == 3
    closed, late = agg.update_many(np.array([40, 30, 55, 61]), np.array([7.0, 8.0, 9.0, 10.0]), np.ones(4))
    assert late.tolist() == [1] and closed.start_us.tolist() == [40, 50]
    assert agg.late_trades == 4 and "late=4" in repr(agg) and agg.timeframe_us == 10


def test_bars_container() -> None:
    bars = aggregate([1, 11], [1.0, 2.0], [1.0, 1.0], 10)
    assert len(bars) == 2 and list(bars)[1] == bars[1] and "n=2" in repr(bars)
    assert set(bars.to_dict()) == set(Bar._fields)
    assert Bars.concat([]).equals(Bars.empty()) and Bars.from_bars([]).equals(Bars.empty())
    assert bars.start_us.dtype == np.int64 and bars.trades.dtype == np.int64 and bars.vwap.dtype == np.float64
    assert pd.DataFrame(bars.to_dict()).shape == (2, 8)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1.0], [1.0], [1.0], 10), "ts_us must be a 1-D integer array of microseconds"),
        (([1], [1.0], [1.0], 0), "timeframe_us must be a positive integer"),
        (([1], [1.0], [1.0], 1.5), "timeframe_us must be a positive integer"),
        (([1], [1.0, 2.0], [1.0], 10), "same length"),
        (([1, 2], [1.0, math.nan], [1.0, 1.0], 10), r"price\[1\] is nan"),
        (([1], [1.0], [math.inf], 10), r"size\[0\] is inf"),
        (([1, 2], [1.0, 1.0], [1.0, -2.0], 10), r"size\[1\] is -2.0: trade sizes must be >= 0"),
    ],
)
def test_aggregate_validation(args: tuple[object, object, object, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aggregate(*args)  # type: ignore[arg-type]


def test_streaming_validation_leaves_state_untouched() -> None:
    agg = BarAggregator(10)
    agg.update(1, 1.0, 1.0)
    before = agg.to_bytes()
    for bad in [(2, math.nan, 1.0), (2, 1.0, -1.0), (2.5, 1.0, 1.0), (True, 1.0, 1.0)]:
        with pytest.raises(ValueError):
            agg.update(*bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"price\[1\] is nan"):
        agg.update_many(np.array([2, 3]), np.array([1.0, math.nan]), np.ones(2))
    assert agg.to_bytes() == before


def test_from_bytes_rejects_garbage() -> None:
    blob = BarAggregator(10).to_bytes()
    with pytest.raises(ValueError, match="too short"):
        BarAggregator.from_bytes(b"SP")
    with pytest.raises(ValueError, match="not a BarAggregator checkpoint"):
        BarAggregator.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(ValueError, match="unsupported BarAggregator checkpoint version 2"):
        BarAggregator.from_bytes(blob[:4] + (2).to_bytes(2, "little") + blob[6:])
    with pytest.raises(ValueError, match="corrupt"):
        BarAggregator.from_bytes(blob + b"\0")
    with pytest.raises(ValueError, match="timeframe_us must be a positive integer"):
        BarAggregator.from_bytes(blob[:6] + (0).to_bytes(8, "little") + blob[14:])
