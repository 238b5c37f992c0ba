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
    parts.append(agg.close_all())
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
        bars, late = agg.update(int(ts[i]), float(price[i]), float(size[i]))
        assert not late
        closed.extend(bars)
    last = agg.advance(int(ts[-1]) + tf)
    assert len(last) == 1 and agg.open_bar is None
    assert Bars.from_bars([*closed, *last]).equals(aggregate(ts, price, size, tf))


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
                for bar in agg.advance(marks[i]):
                    assert bar.start_us + tf <= marks[i]
                    out.append(bar)
            bars, is_late = agg.update(int(ts[i]), float(price[i]), float(size[i]))
            if is_late:
                late.append(i)
            out.extend(bars)
        return out, late, agg.to_bytes()

    bars, late, state = run(checkpoint=False)
    assert repr(run(checkpoint=True)) == repr((bars, late, state))  # repr: NaN VWAPs compare unequal
    keep = np.ones(n, dtype=bool)
    keep[late] = False
    final = BarAggregator.from_bytes(state).advance(np.iinfo(np.int64).max)
    got = Bars.from_bars(bars + list(final))
    assert got.equals(aggregate(ts[keep], price[keep], size[keep], tf))


@HYPO
@given(
    data=trades(),
    lateness_bars=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
    marks=st.lists(st.tuples(st.integers(0, 299), st.integers(-3, 3)), max_size=8),
    shuffle=st.booleans(),
)
def test_any_arrival_order_and_watermarks_account_for_every_trade_once(
    data: tuple[Trades, int], lateness_bars: float, marks: list[tuple[int, int]], shuffle: bool
) -> None:
    """For any arrival order, allowed lateness and watermark schedule: closed bars plus late trades hold every
    trade exactly once; the bars equal batch ``aggregate`` over the trades that were not late; a trade is late
    exactly when its bar's end plus the lateness is at or before the event time it arrived at; bars close in
    start order, and never before the event time passed their end plus the lateness."""
    (ts, price, size), tf = data
    n = ts.shape[0]
    if shuffle:
        order = np.random.default_rng(n).permutation(n)
        ts, price, size = ts[order], price[order], size[order]
    lateness = int(lateness_bars * tf)
    at = {i: int(ts[i]) + k * tf for i, k in marks if i < n}  # watermarks around the trade times
    agg = BarAggregator(tf, lateness)
    time = frontier = np.iinfo(np.int64).min
    bars: list[Bar] = []
    late: list[int] = []
    expected_late: list[int] = []

    def advance(t: int) -> None:
        nonlocal time, frontier
        time = max(time, t)
        frontier = max(frontier, ((time - lateness) // tf) * tf)

    for i in range(n):
        if i in at:
            closed = list(agg.advance(at[i]))
            advance(at[i])
            assert all(b.start_us + tf + lateness <= time for b in closed)
            bars.extend(closed)
        b = (int(ts[i]) // tf) * tf
        if b < frontier:
            expected_late.append(i)
            assert b + tf + lateness <= time  # it really was late
        else:
            advance(int(ts[i]))
        closed, is_late = agg.update(int(ts[i]), float(price[i]), float(size[i]))
        assert all(bar.start_us + tf + lateness <= time for bar in closed)
        bars.extend(closed)
        if is_late:
            late.append(i)
    bars.extend(agg.close_all())
    assert late == expected_late and agg.late_trades == len(late)
    assert [b.start_us for b in bars] == sorted({b.start_us for b in bars})  # in order, each bar once
    assert sum(b.trades for b in bars) + len(late) == n
    keep = np.ones(n, dtype=bool)
    keep[late] = False
    assert Bars.from_bars(bars).equals(aggregate(ts[keep], price[keep], size[keep], tf))


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


def test_streaming_late_and_watermark_semantics() -> None:
    agg = BarAggregator(10)
    closed, late = agg.update(12, 1.0, 1.0)
    assert len(closed) == 0 and not late and agg.open_bars == 1
    assert agg.open_bar == Bar(10, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
    assert agg.update(9, 2.0, 1.0)[1] is True  # older bucket than the open one
    assert len(agg.advance(19)) == 0  # bar [10, 20) not finished yet
    assert agg.update(15, 3.0, 1.0)[1] is False  # still accepted
    (bar,) = agg.advance(20)
    assert (bar.start_us, bar.close, bar.trades) == (10, 3.0, 2)
    assert agg.update(19, 4.0, 1.0)[1] is True  # its bar was closed by the watermark
    assert len(agg.advance(45)) == 0  # no open bar: buckets before 40 are now closed too
    assert agg.update(35, 5.0, 1.0)[1] is True
    assert agg.update(41, 6.0, 1.0)[1] is False
    assert agg.late_trades == 3
    closed, late = agg.update_many(np.array([40, 30, 55, 61]), np.array([7.0, 8.0, 9.0, 10.0]), np.ones(4))
    assert late.tolist() == [1] and closed.start_us.tolist() == [40, 50]
    assert agg.late_trades == 4 and "late=4" in repr(agg) and agg.timeframe_us == 10
    assert agg.next_close_us == 70 and agg.event_time_us == 61 and agg.missed_bar(-1) == -10
    (last,) = agg.close_all()  # end of input: the open bar closes at its own end, later buckets stay open
    assert last.start_us == 60 and agg.next_close_us is None
    assert agg.update(69, 1.0, 1.0)[1] is True and agg.update(70, 1.0, 1.0)[1] is False


def test_allowed_lateness_keeps_bars_open_and_merges_out_of_order_trades() -> None:
    agg = BarAggregator(10, allowed_lateness_us=15)
    closed, _ = agg.update_many(np.array([1, 12, 5, 24]), np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4))
    assert len(closed) == 0
    assert agg.open_bars == 3 and agg.next_close_us == 25  # [0, 10) closes when time reaches 10 + 15
    closed, late = agg.update_many(np.array([26, 8, 19]), np.array([5.0, 6.0, 7.0]), np.ones(3))
    assert closed.start_us.tolist() == [0] and closed.trades.tolist() == [2] and late.tolist() == [1]
    assert agg.advance(35).start_us.tolist() == [10] and agg.open_bars == 1
    assert agg.with_lateness(0).advance(35).start_us.tolist() == [20]  # a changed setting applies at once
    restored = BarAggregator.from_bytes(agg.to_bytes())
    assert restored.allowed_lateness_us == 15 and restored.to_bytes() == agg.to_bytes()
    with pytest.raises(ValueError, match="allowed_lateness_us must be >= 0"):
        BarAggregator(10, -1)


def test_version_1_checkpoints_still_load() -> None:
    """A checkpoint of the one-bar aggregator (version 1) resumes as the same open bar."""
    import struct

    v1 = struct.pack("<4sHq", b"SPBA", 1, 10) + np.array([1, 10, 12, 15, 10, 2, 3], "<i8").tobytes()
    v1 += np.array([1.0, 3.0, 1.0, 3.0, 2.0, 4.0], "<f8").tobytes()
    agg = BarAggregator.from_bytes(v1)
    assert agg.open_bar == Bar(10, 1.0, 3.0, 1.0, 3.0, 2.0, 2.0, 2) and agg.late_trades == 3
    assert agg.update(9, 1.0, 1.0)[1] and agg.advance(20).start_us.tolist() == [10]


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
    with pytest.raises(ValueError, match="unsupported BarAggregator checkpoint version 3"):
        BarAggregator.from_bytes(blob[:4] + (3).to_bytes(2, "little") + blob[6:])
    with pytest.raises(ValueError, match="corrupt"):
        BarAggregator.from_bytes(blob + b"\0")
    with pytest.raises(ValueError, match="timeframe_us must be a positive integer"):
        BarAggregator.from_bytes(blob[:6] + (0).to_bytes(8, "little") + blob[14:])
