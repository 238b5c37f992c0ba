"""The paper trader's risk checks and execution (processors.orders), and the vectorized TickBatch path
equal to the per-tick one on generated inputs."""

from __future__ import annotations

import pickle
import random
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


@given(
    st.lists(
        st.tuples(
            st.sampled_from([S, MINUTE_US]), st.integers(0, 180), st.sampled_from(["BUY", "SELL", "HOLD"])
        )
    ),
    st.integers(1, 2**31),
)
@settings(max_examples=200, deadline=None)
def test_two_timeframes_every_buy_sell_signal_gets_one_decision_whatever_the_interleaving(
    signals: list[tuple[int, int, str]], seed: int
) -> None:
    """Signals of 1s and 1m bars for one symbol, each timeframe in bar order, interleaved with each other and
    with the ticks in any way: every BUY/SELL signal gets exactly one order decision, and the decisions are
    the same for every interleaving (each (symbol, timeframe) is its own book)."""
    by_tf: dict[int, list[dict[str, Any]]] = {S: [], MINUTE_US: []}
    for tf, k, action in sorted(signals):
        start = k * S if tf == S else (k % 3) * MINUTE_US  # both within the 200 s of ticks
        if not by_tf[tf] or by_tf[tf][-1]["start_us"] < start:
            by_tf[tf].append({**_signal("A", start, action, f"{tf}-{start}"), "timeframe": str(tf)})
    ticks = [(t * S // 4 + 1, 100.0 + t % 7, t + 1) for t in range(4 * 200)]  # 4 ticks a second, 200 s

    def run(rng: random.Random | None) -> list[tuple[str, str, str, float]]:
        book = OrderBook(RiskLimits(max_position=5), (S, MINUTE_US))
        queues: list[list[tuple[str, int, Any]]] = [
            [("s", S, x) for x in by_tf[S]], [("s", MINUTE_US, x) for x in by_tf[MINUTE_US]],
            [("t", 0, x) for x in ticks]]  # fmt: skip
        out: list[dict[str, Any]] = []
        while any(queues):
            live = [q for q in queues if q]
            kind, tf, item = (live[0] if rng is None else rng.choice(live)).pop(0)
            orders, _ = book.on_signal(item, tf) if kind == "s" else book.on_ticks("A", [item])
            out += orders
        return sorted((o["signal_id"], o["status"], o["side"], o["ref_price"]) for o in out)

    first = run(None)
    wanted = [x["signal_id"] for tf in by_tf for x in by_tf[tf] if x["action"] != "HOLD"]
    assert sorted(sid for sid, *_ in first) == sorted(wanted), "one decision per BUY/SELL signal"
    assert run(random.Random(seed)) == first, "the interleaving changes nothing"


def test_a_signal_with_no_next_tick_is_rejected_at_the_end_of_input_or_when_stale() -> None:
    """Every BUY/SELL signal gets a decision even when no tick follows its bar: the end of the symbol's input
    rejects it (in either arrival order); for a live symbol, a watermark past the bar end plus the staleness
    limit does; a replay symbol waits for its ticks whatever the wall clock says."""
    buy = {**_signal("A", 0, "BUY"), "price": 10.5, "timeframe": "1m"}
    first = OrderBook(RiskLimits(), (MINUTE_US,))
    first.on_tick_batch(["A"], [0], [5], [10.0], [1])
    assert first.on_signal(buy, MINUTE_US) == ([], [])
    (order,), fills = first.on_progress(closed_symbols=["A"])
    assert (order["status"], order["ref_price"], order["ts_us"], fills) == ("REJECTED", 10.5, MINUTE_US, [])
    assert "input of A ended" in order["reason"] and order["timeframe"] == "1m"
    later = OrderBook(RiskLimits(), (MINUTE_US,))
    later.on_tick_batch(["A"], [0], [5], [10.0], [1])
    later.on_progress(closed_symbols=["A"])
    assert later.on_signal(buy, MINUTE_US)[0] == [order], "the same decision, whatever arrived first"
    again = OrderBook.from_bytes(first.to_bytes(), RiskLimits(), (MINUTE_US,))
    assert again.to_bytes() == first.to_bytes() and again.symbols["A"].ended

    now = 1_800_000_000_000_000
    live = OrderBook(RiskLimits(max_staleness_us=10 * S), (MINUTE_US,))
    live.on_tick_batch(["L", "R"], [0, 1], [now, 5], [10.0, 10.0], [1, 1], ingest_us=now + 1_000)
    live.on_signal({**_signal("L", now, "BUY"), "price": 10.0}, MINUTE_US)
    live.on_signal({**_signal("R", 0, "SELL"), "price": 10.0}, MINUTE_US)
    assert live.on_progress(watermark_us=now + MINUTE_US + 9 * S) == ([], [])  # not stale yet
    (stale,), _ = live.on_progress(watermark_us=now + MINUTE_US + 11 * S)
    assert stale["symbol"] == "L" and "no tick of L within 10s" in stale["reason"]
    assert live.pending_count() == 1, "the replay symbol R still waits for its next tick"
