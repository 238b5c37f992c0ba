"""The paper trader's risk checks and execution (processors.orders), and the vectorized TickBatch path
equal to the per-tick one on generated inputs."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.orders import MINUTE_US, OrderBook, RiskLimits

S = 1_000_000


def _signal(sym: str, start: int, action: str, sid: str | None = None) -> dict[str, Any]:
    return {"signal_id": sid or f"{sym}|{start}", "symbol": sym, "start_us": start, "action": action,
            "ingest_us": 1, "publish_us": 2}  # fmt: skip


def test_each_risk_check_rejects_with_its_reason() -> None:
    def first_order(limits: RiskLimits, tick_at: int, price: float = 100.0) -> dict[str, Any]:
        book = OrderBook(limits, (MINUTE_US,))
        book.on_signal(_signal("A", 0, "BUY"), MINUTE_US)
        orders, _ = book.on_ticks("A", [(tick_at, price, 1)])
        return orders[0]

    assert first_order(RiskLimits(), MINUTE_US + 1)["status"] == "ACCEPTED"
    stale = first_order(RiskLimits(max_staleness_us=10 * S), MINUTE_US + 11 * S)
    assert stale["status"] == "REJECTED" and "stale price" in stale["reason"]
    killed = first_order(RiskLimits(kill_switch=True, kill_reason="test"), MINUTE_US + 1)
    assert "kill switch engaged (test)" in killed["reason"]
    big = first_order(RiskLimits(order_quantity=2.0, max_position=1.0), MINUTE_US + 1)
    assert "position limit" in big["reason"]
    rich = first_order(RiskLimits(max_notional=50.0), MINUTE_US + 1)
    assert "notional limit" in rich["reason"]
    book = OrderBook(RiskLimits(max_orders_per_minute=1, max_position=5), (S,))
    statuses = []
    for k, action in enumerate(["BUY", "SELL", "BUY"]):
        book.on_signal(_signal("A", k * S, action), S)
        statuses += [o["status"] for o in book.on_ticks("A", [((k + 1) * S + 1, 10.0, k + 1)])[0]]
    assert statuses == ["ACCEPTED", "REJECTED", "REJECTED"]


def test_positions_and_realized_pnl_follow_the_fills() -> None:
    book = OrderBook(RiskLimits(order_quantity=1.0), (S,))
    book.on_signal(_signal("A", 0, "BUY"), S)
    book.on_ticks("A", [(S + 1, 10.0, 1)])
    book.on_signal(_signal("A", S, "SELL"), S)
    _, fills = book.on_ticks("A", [(2 * S + 1, 13.0, 2)])
    assert [(f["side"], f["quantity"], f["position"], f["realized_pnl"]) for f in fills] == [
        ("SELL", 2.0, -1.0, 3.0)
    ]


def test_state_round_trips_and_redelivered_ticks_are_ignored() -> None:
    book = OrderBook(RiskLimits(), (S, MINUTE_US))
    book.on_ticks("A", [(1, 10.0, 1), (S + 1, 11.0, 2)])
    book.on_signal(_signal("A", 0, "BUY"), MINUTE_US)
    again = OrderBook.from_bytes(book.to_bytes(), RiskLimits(), (S, MINUTE_US))
    assert again.to_bytes() == book.to_bytes()
    assert again.on_ticks("A", [(S + 1, 11.0, 2)]) == ([], [])  # seq 2 already applied
    with pytest.raises(ValueError, match="bad magic"):
        OrderBook.from_bytes(b"nope")


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 5 * S), st.floats(1.0, 100.0), st.booleans()),
        min_size=0,
        max_size=60,
    ),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.sampled_from(["BUY", "SELL", "HOLD"]))),
)
@settings(max_examples=300, deadline=None)
def test_the_batch_path_equals_the_per_tick_path(
    ticks: list[tuple[int, int, float, bool]], signals: list[tuple[int, int, str]]
) -> None:
    names = ["A", "B", "C"]
    a, b = (
        OrderBook(RiskLimits(max_position=5), (S, MINUTE_US)),
        OrderBook(RiskLimits(max_position=5), (S, MINUTE_US)),
    )
    for sym, start, action in sorted(signals, key=lambda x: x[1]):
        for book in (a, b):
            book.on_signal(_signal(names[sym], start * S, action, f"{sym}-{start}"), S)
    seqs = [0, 0, 0]
    rows = []
    for sym, ts, price, replay in sorted(ticks, key=lambda x: x[1]):
        seqs[sym] += 0 if (replay and seqs[sym]) else 1  # some ticks re-delivered with the last seq
        rows.append((sym, ts, price, seqs[sym]))
    half = len(rows) // 2
    out_a: list[Any] = []
    out_b: list[Any] = []
    for part in (rows[:half], rows[half:]):
        for i, name in enumerate(names):
            mine = [(t, p, q) for s, t, p, q in part if s == i]
            if mine:
                out_a.append(a.on_ticks(name, mine))
        if part:
            idx, ts_, px, sq = (np.array(c) for c in zip(*part, strict=True))
            out_b.append(b.on_tick_batch(names, idx, ts_, px, sq))
    flat_a = [x for o, f in out_a for x in (*o, *f)]
    flat_b = [x for o, f in out_b for x in (*o, *f)]
    assert sorted(map(repr, flat_a)) == sorted(map(repr, flat_b))
    assert pickle.loads(a.to_bytes()[6:]) == pickle.loads(b.to_bytes()[6:])  # same state, any key order
