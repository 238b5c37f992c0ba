"""Merging TickBatches (processors.tick_batches) is exact: the price state and the order book give the same
records whether a partition's batches are applied one by one or as merged runs (the engine's smart
batching), for any batching, arrival order, watermark schedule and end of input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.event_time import EventTimePolicy
from processors.orders import OrderBook, RiskLimits
from processors.price_state import PricePartition, parse_timeframes
from processors.tick_batches import merge, runs

TFS = parse_timeframes(["1s", "1m"])
NOW = 1_800_000_000_000_000
WALL_CLOCK = {"close_us", "indicator_us", "ingest_us"}  # stage stamps: not part of the result


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """TickBatches of 3 symbols near a clock, shuffled within a bound, each batch with its own symbol list
    (as the feed makes them), some with a watermark, the last one ending the input."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 300))
    ts = NOW + np.cumsum(rng.integers(0, 300_000, n))
    sym = rng.integers(0, 3, n)
    arrival = np.argsort(ts + rng.integers(0, draw(st.sampled_from([0, 500_000])) + 1, n), kind="stable")
    cuts = sorted(set(rng.integers(0, n + 1, draw(st.integers(0, 20))).tolist()) | {0, n})
    counters = [0, 0, 0]
    out, seen = [], NOW
    for k in range(len(cuts) - 1):
        rows = arrival[cuts[k] : cuts[k + 1]]
        names = sorted({f"S{sym[i]}" for i in rows}, key=lambda s: rng.random())
        seq = []
        for i in rows:
            counters[sym[i]] += 1
            seq.append(counters[sym[i]])
        seen = max([seen, *(int(ts[i]) for i in rows)])
        watermark = seen - 250_000 if rng.random() < draw(st.sampled_from([0.0, 0.3])) else 0
        out.append({
            "symbols": names,
            "symbol_index": [names.index(f"S{sym[i]}") for i in rows],
            "ts_us": [int(ts[i]) for i in rows],
            "price": [1.0 + float(ts[i] % 997) for i in rows],
            "size": [1.0] * len(rows),
            "seq": seq,
            "ingest_us": NOW + k,
            "watermark_us": watermark,
            "closed_symbols": [],
        })  # fmt: skip
    out[-1]["closed_symbols"] = ["S0", "S1", "S2"]
    return out


def _price(state: PricePartition, b: dict[str, Any]) -> list[Any]:
    out = state.apply(b["symbols"], b["symbol_index"], b["ts_us"], b["price"], b["size"], b["seq"],
                      b["ingest_us"], NOW, b["watermark_us"], b["closed_symbols"])  # fmt: skip
    rows = [(tf, sorted((k, v) for k, v in r.items() if k not in WALL_CLOCK))
            for kind in (out.bars, out.snapshots) for tf, rs in kind.items() for r in rs]  # fmt: skip
    return [*rows, *((lt.symbol, lt.seq, lt.timeframe) for lt in out.late)]


def _orders(book: OrderBook, b: dict[str, Any]) -> list[Any]:
    orders, fills = book.on_tick_batch(
        b["symbols"], b["symbol_index"], b["ts_us"], b["price"], b["seq"], b["ingest_us"]
    )
    if b["watermark_us"] or b["closed_symbols"]:
        o, f = book.on_progress(b["watermark_us"], b["closed_symbols"])
        orders, fills = orders + o, fills + f
    return [sorted((k, v) for k, v in r.items() if k not in WALL_CLOCK) for r in (*orders, *fills)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=batches(), mode=st.sampled_from(["live", "replay"]))
def test_merged_runs_give_the_records_of_batch_by_batch(data: list[dict[str, Any]], mode: str) -> None:
    policy = EventTimePolicy(mode=mode)  # type: ignore[arg-type]
    one, merged = PricePartition(TFS, policy=policy), PricePartition(TFS, policy=policy)
    want = [r for b in data for r in _price(one, b)]
    got = [r for run in runs(data) for r in _price(merged, merge(run))]
    assert sorted(map(repr, got)) == sorted(map(repr, want))
    assert one.to_bytes() == merged.to_bytes()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=batches())
def test_the_order_book_gives_the_same_orders_for_merged_runs(data: list[dict[str, Any]]) -> None:
    policy = EventTimePolicy(mode="live")
    books = [OrderBook(RiskLimits(max_position=5), (1_000_000,), policy) for _ in range(2)]
    signals = [{"signal_id": f"s{i}", "symbol": f"S{i % 3}", "action": ("BUY", "SELL")[i % 2],
                "start_us": NOW + i * 1_000_000, "timeframe": "1s"} for i in range(6)]  # fmt: skip
    for book in books:
        for s in signals:
            book.on_signal(s, 1_000_000)
    want = [r for b in data for r in _orders(books[0], b)]
    got = [r for run in runs(data) for r in _orders(books[1], merge(run))]
    assert sorted(map(repr, got)) == sorted(map(repr, want))


def test_a_watermark_inside_a_run_is_refused() -> None:
    b = {"symbols": [], "symbol_index": [], "ts_us": [], "price": [], "size": [], "seq": [], "ingest_us": 1,
         "watermark_us": 5, "closed_symbols": []}  # fmt: skip
    with pytest.raises(ValueError, match="only the last batch"):
        merge([b, {**b, "watermark_us": 0}])
