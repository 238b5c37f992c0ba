"""Event time in the price state (processors.price_state + processors.event_time), in process: any arrival
order and watermark schedule accounts for every tick once; replay mode equals batch ``aggregate``; live bars
close on watermarks through quiet gaps; an on-time tick is never late."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.bars import aggregate
from processors.event_time import DelayTracker, EventTimePolicy, WatermarkSchedule
from processors.price_state import PriceOutput, PricePartition, parse_timeframes

TFS = parse_timeframes(["1s", "1m"])
NOW = 1_800_000_000_000_000  # a wall clock (2027)
HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EMPTY_I = np.array([], np.int64)
EMPTY_F = np.array([], np.float64)


def _apply(state: PricePartition, rows: list[tuple[int, int, float, int]], names: list[str], ingest: int,
           watermark: int = 0, closed: tuple[str, ...] = ()) -> PriceOutput:  # fmt: skip
    """Apply one TickBatch of rows (symbol index, ts, price, seq)."""
    if rows:
        idx, ts, px, sq = (np.array(c) for c in zip(*rows, strict=True))
    else:
        idx, ts, px, sq = EMPTY_I, EMPTY_I, EMPTY_F, EMPTY_I
    return state.apply(names, idx, ts, px, np.ones(len(rows)), sq, ingest, ingest, watermark, closed)


def _collect(outs: list[PriceOutput]) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], dict[str, set]]:
    bars: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    late: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for out in outs:
        for tf, rows in out.bars.items():
            for b in rows:
                bars[(b["symbol"], tf)].append(b)
        for lt in out.late:
            late[lt.timeframe].add((lt.symbol, lt.seq))
    return bars, late


@st.composite
def streams(draw: st.DrawFn) -> dict[str, Any]:
    """Ticks of 3 symbols near a clock (event time), shuffled within a bound, cut into batches, with
    watermarks between batches that trail the clock by a random delay."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 250))
    disorder = draw(st.sampled_from([0, 200_000, 3_000_000]))
    ts = NOW + np.cumsum(rng.integers(0, 400_000, n))
    sym = rng.integers(0, 3, n)
    arrival = np.argsort(ts + rng.integers(0, disorder + 1, n), kind="stable")
    cuts = sorted(set(rng.integers(0, n + 1, draw(st.integers(0, 12))).tolist()) | {0, n})
    delays = draw(
        st.lists(st.sampled_from([-1, 0, 250_000, 2_000_000]), min_size=len(cuts), max_size=len(cuts))
    )
    return {"ts": ts, "sym": sym, "arrival": arrival, "cuts": cuts, "delays": delays,
            "lateness": draw(st.sampled_from([0, 500_000, 90_000_000]))}  # fmt: skip


@HYPO
@given(data=streams(), mode=st.sampled_from(["live", "replay"]))
def test_any_arrival_order_and_watermarks_account_for_every_tick_exactly_once(
    data: dict[str, Any], mode: str
) -> None:
    names = ["A", "B", "C"]
    ts, sym, arrival, cuts = data["ts"], data["sym"], data["arrival"], data["cuts"]
    policy = EventTimePolicy(mode=mode, allowed_lateness_us=data["lateness"])  # type: ignore[arg-type]
    state = PricePartition(TFS, policy=policy)
    seq = np.zeros(len(ts), np.int64)
    counters = [0, 0, 0]
    for i in arrival:  # the feed numbers each symbol's ticks in arrival order
        counters[sym[i]] += 1
        seq[i] = counters[sym[i]]
    outs, seen_max = [], NOW
    for k in range(len(cuts) - 1):
        batch = arrival[cuts[k] : cuts[k + 1]]
        rows = [(int(sym[i]), int(ts[i]), 1.0 + float(ts[i] % 997), int(seq[i])) for i in batch]
        seen_max = max([seen_max, *(int(ts[i]) for i in batch)])
        delay = data["delays"][k]
        watermark = 0 if delay < 0 else seen_max - delay
        outs.append(_apply(state, rows, names, ingest=seen_max, watermark=watermark))
        if k == 1:  # a checkpoint round trip in the middle is invisible
            state = PricePartition.from_bytes(state.to_bytes(), policy=policy)
    outs.append(_apply(state, [], names, ingest=seen_max, closed=tuple(names)))  # end of input
    bars, late = _collect(outs)
    for tf, tf_us in TFS:
        for s, name in enumerate(names):
            mine = [i for i in range(len(ts)) if sym[i] == s]
            kept = [i for i in mine if (name, int(seq[i])) not in late[tf]]
            got = bars[(name, tf)]
            # every tick once: in exactly one closed bar, or late (for this timeframe)
            assert sum(b["trades"] for b in got) + (len(mine) - len(kept)) == len(mine)
            assert [b["start_us"] for b in got] == sorted({b["start_us"] for b in got})
            order = [i for i in arrival if i in set(kept)]  # arrival order, as the volume is summed
            want = aggregate(ts[order], 1.0 + (ts[order] % 997).astype(float), np.ones(len(order)), tf_us)
            assert [(b["start_us"], b["open"], b["close"], b["trades"], b["volume"]) for b in got] == list(
                zip(want.start_us.tolist(), want.open.tolist(), want.close.tolist(), want.trades.tolist(),
                    want.volume.tolist(), strict=True)
            )  # fmt: skip
        if mode == "replay" and data["lateness"] >= 3_000_000 + tf_us:  # disorder within the lateness
            assert not late[tf], "an on-time tick is never late"


@HYPO
@given(data=streams())
def test_replay_mode_in_time_order_equals_batch_aggregate(data: dict[str, Any]) -> None:
    """Ticks of each symbol in time order, any batching, watermarks ignored: exactly ``aggregate``."""
    names = ["A", "B", "C"]
    ts, sym, cuts = data["ts"], data["sym"], data["cuts"]
    state = PricePartition(TFS, policy=EventTimePolicy(mode="replay"))
    seq = np.zeros(len(ts), np.int64)
    counters = [0, 0, 0]
    for i in range(len(ts)):
        counters[sym[i]] += 1
        seq[i] = counters[sym[i]]
    outs = []
    for k in range(len(cuts) - 1):
        rows = [(int(sym[i]), int(ts[i]), 1.0 + i, int(seq[i])) for i in range(cuts[k], cuts[k + 1])]
        outs.append(_apply(state, rows, names, ingest=NOW, watermark=NOW + 10**12))  # ignored in replay
    outs.append(_apply(state, [], names, ingest=NOW, closed=tuple(names)))
    bars, late = _collect(outs)
    assert not late
    for tf, tf_us in TFS:
        for s, name in enumerate(names):
            rows = np.flatnonzero(sym == s)
            want = aggregate(ts[rows], 1.0 + rows.astype(float), np.ones(rows.size), tf_us)
            got = bars[(name, tf)]
            assert [b["start_us"] for b in got] == want.start_us.tolist()
            assert [b["close"] for b in got] == want.close.tolist()


def test_a_quiet_gap_inside_a_minute_keeps_every_tick_in_its_bar_and_the_bar_closes_on_the_watermark() -> (
    None
):
    """The issue's case: live ticks, 20/s, a 6 s gap in the middle of a minute, nothing after it. Every tick
    is in its 1m bar; the bar closes when the watermark (clock minus the delay) passes its end, without a
    later tick of the symbol."""
    policy = EventTimePolicy(max_delay_us=250_000)
    state = PricePartition(TFS, policy=policy)
    minute = (NOW // 60_000_000) * 60_000_000
    before = [minute + k * 50_000 for k in range(400)]  # 20 s of ticks
    after = [minute + 26_000_000 + k * 50_000 for k in range(400)]  # 6 s quiet, then 20 s more
    outs = []
    for seq, t in enumerate(before + after, start=1):
        # a watermark every 100 ms of the clock, as the feed sends while it is caught up
        outs.append(_apply(state, [(0, t, 1.0, seq)], ["A"], ingest=t + 1_000, watermark=t - 250_000))
    for clock in range(after[-1], minute + 61_000_000, 100_000):  # the symbol never trades again
        outs.append(_apply(state, [], ["A"], ingest=clock, watermark=policy.watermark(clock)))
    bars, late = _collect(outs)
    assert not late
    (bar,) = bars[("A", "1m")]
    assert bar["trades"] == 800 and bar["start_us"] == minute
    assert bar["close_us"] - (minute + 60_000_000) <= 250_000 + 100_000  # closed within delay + interval
    assert sum(b["trades"] for b in bars[("A", "1s")]) == 800


def test_a_late_tick_names_the_bar_it_missed_and_replay_symbols_ignore_the_clock() -> None:
    state = PricePartition(TFS, policy=EventTimePolicy(max_delay_us=250_000))
    old = 1_300_000_000_000_000  # a 2011 recording on the same partition as a live symbol
    out = _apply(state, [(0, NOW, 1.0, 1), (1, old, 2.0, 1)], ["LIVE", "REPLAY"], ingest=NOW + 1_000)
    assert state.symbols["LIVE"].live and not state.symbols["REPLAY"].live
    out = _apply(state, [], [], ingest=NOW + 2_000_000, watermark=NOW + 1_750_000)
    assert [(b["symbol"], b["timeframe"]) for b in out.bars["1s"]] == [("LIVE", "1s")]  # REPLAY stays open
    out = _apply(state, [(0, NOW + 500_000, 3.0, 2)], ["LIVE"], ingest=NOW + 2_100_000)  # 1.6 s delayed
    (lt,) = [x for x in out.late if x.timeframe == "1s"]
    assert (lt.symbol, lt.seq, lt.bar_start_us) == ("LIVE", 2, (NOW // 1_000_000) * 1_000_000)
    assert not [x for x in out.late if x.timeframe == "1m"]  # its minute is still open
    out = _apply(state, [], [], ingest=NOW, closed=("REPLAY",))  # the end of the replay closes its bars
    assert {(b["symbol"], b["timeframe"]) for rows in out.bars.values() for b in rows} == {
        ("REPLAY", "1s"), ("REPLAY", "1m")}  # fmt: skip


def test_a_changed_lateness_setting_applies_to_checkpointed_bars() -> None:
    state = PricePartition(TFS, policy=EventTimePolicy(mode="replay", allowed_lateness_us=5_000_000))
    _apply(state, [(0, NOW, 1.0, 1), (0, NOW + 2_000_000, 1.0, 2)], ["A"], ingest=NOW)
    assert state.open_bars() == 3  # two 1s bars kept open by the lateness, one minute
    strict = PricePartition.from_bytes(state.to_bytes(), policy=EventTimePolicy(mode="replay"))
    out = _apply(strict, [(0, NOW + 2_100_000, 1.0, 3)], ["A"], ingest=NOW)
    assert [b["start_us"] - NOW for b in out.bars["1s"]] == [0]


def test_version_1_checkpoints_still_load() -> None:
    """A checkpoint written before event-time watermarks (version 1) resumes; its symbols start as replay."""
    import struct

    from processors.bars import BarAggregator
    from processors.indicators import IndicatorSet

    agg, ind = BarAggregator(1_000_000), IndicatorSet()
    agg.update(NOW, 1.0, 1.0)
    blob = (
        b"SPPP" + struct.pack("<HI", 1, 1) + struct.pack("<Hq", 2, 1_000_000) + b"1s" + struct.pack("<I", 1)
    )
    blob += struct.pack("<Hqq", 1, 1, NOW) + b"A"
    a, i = agg.to_bytes(), ind.to_bytes()
    blob += struct.pack("<II", len(a), len(i)) + a + i + struct.pack("<dB", float("nan"), 0)
    state = PricePartition.from_bytes(blob)
    assert state.open_bars() == 1 and not state.symbols["A"].live
    out = state.apply(["A"], [0], [NOW + 1_000_000], [2.0], [1.0], [2], NOW, NOW)
    assert [b["start_us"] for b in out.bars["1s"]] == [NOW - NOW % 1_000_000]
    with pytest.raises(ValueError, match="unsupported price-partition checkpoint version 9"):
        PricePartition.from_bytes(b"SPPP" + struct.pack("<HI", 9, 0))


def test_the_watermark_schedule_covers_partitions_until_their_bars_can_have_closed() -> None:
    s = WatermarkSchedule(hold_us=61_000_000, interval_us=100_000, timeframes_us=(1_000_000, 60_000_000))
    assert s.due(0, -250_000) == []  # nothing live: no watermarks at all
    s.cover([1, 2], now_us=0)
    s.live_tick(2, now_us=30_000_000)
    assert s.due(50_000_000, 49_750_000) == [1, 2] and s.due(50_050_000, 49_800_000) == []
    assert s.due(50_200_000, 49_950_000) == [], "no bar boundary passed since the last one"
    assert s.due(50_300_000, 50_050_000) == [1, 2], "the 50 s boundary passed"
    assert s.due(62_000_000, 61_750_000) == [2] and s.due(92_000_000, 91_750_000) == []


def test_the_watermark_delay_adapts_to_the_delays_the_feed_sees() -> None:
    d = DelayTracker(floor_us=250_000, window_us=10_000_000)
    d.observe(0, 100_000)  # below half the floor: changes nothing
    assert d.delay(0) == 250_000
    d.observe(1_000_000, 700_000)
    d.observe(2_000_000, 300_000)
    assert (
        d.delay(3_000_000) == 1_400_000 and d.delay(11_500_000) == 600_000 and d.delay(13_000_000) == 250_000
    )
