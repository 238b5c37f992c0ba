"""Topologies, partitioning by key and per-timeframe books, on the real stack with the real recordings
(replay mode):

- the split topology (every stage its own process) gives the same topic records and stores as the default
  chained one (price -> signal -> order in one engine worker);

- 24 ``ticks`` partitions and 12 for every other topic give the same stores as equal counts (a copy of the
  BTCUSDT trades as ``BTCUSDT.X`` lands on ``ticks`` partition 15, which ``bars.*`` and ``signals`` do not
  have: the price service used to crash there);
- a partition count that cannot work is refused at start, naming the setting to change;
- with two signal timeframes every BUY/SELL signal gets exactly one order decision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.ticks import partition_for
from schemas.serde import AvroSerde
from streams.config import Settings
from streams.demo import settings_env
from tests.conftest import BAD
from tests.support.kafka import isolated, read_topic
from tests.support.pipeline import Ticks, pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COPY = "BTCUSDT.X"
TABLES = ("ticks", "bars", "pg_bars", "indicators", "signals", "orders", "fills")


def _uneven(settings: Settings, **update: Any) -> Settings:
    topics = settings.topics.model_copy(update={"tick_partitions": 24})
    return settings.model_copy(update={"topics": topics, **update})


def _with_copy(ticks: Ticks, of: str, name: str) -> Ticks:
    """The ticks plus a copy of symbol ``of``'s ticks as ``name``, each right after its original."""
    src = ticks.symbols.index(of)
    rows = np.flatnonzero(ticks.index == src)
    order = np.argsort(np.concatenate([np.arange(len(ticks)), rows + 0.5]), kind="stable")
    cat = [np.concatenate([a, a[rows]]) for a in (ticks.ts, ticks.price, ticks.size)]
    idx = np.concatenate([ticks.index, np.full(rows.size, len(ticks.symbols), ticks.index.dtype)])
    return Ticks([*ticks.symbols, name], idx[order], *(c[order] for c in cat))


def _of(snap: dict[str, list[tuple[Any, ...]]], table: str, symbol: str) -> list[tuple[Any, ...]]:
    """One symbol's rows of a table, without the symbol and the ids hashed from it (signal, order, fill)."""
    rows = snap[table]
    if table in ("ticks", "bars", "pg_bars"):  # (symbol, ...)
        return [r[1:] for r in rows if r[0] == symbol]
    if table == "indicators":  # ("SYMBOL|tf|start", ...)
        return [(r[0][len(symbol) :], *r[1:]) for r in rows if r[0].startswith(f"{symbol}|")]
    if table in ("signals", "orders"):  # (id, symbol, ...)
        return sorted(r[2:] for r in rows if r[1] == symbol)
    orders = {r[0] for r in snap["orders"] if r[1] == symbol}  # fills: (fill_id, order_id, ...)
    return sorted(r[2:] for r in rows if r[1] in orders)


def test_unequal_partition_counts_give_the_same_stores_as_equal_ones(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any]
) -> None:
    assert partition_for(COPY, 24) == 15 and partition_for(COPY, 12) == 3
    both = _with_copy(ticks, "BTCUSDT", COPY)
    with pipeline(_uneven(stack_settings), "uneven") as run:
        run.start()
        run.send(both)
        run.finish(both, BAD)
        run.wait_settled(len(both), timeout=240)
        snap = run.snapshot()
    want = clean["snapshot"]
    for table in TABLES:
        copy = _of(snap, table, COPY)
        originals = [r for r in snap[table] if not _of({**snap, table: [r]}, table, COPY)]
        assert originals == want[table], f"{table}: the recordings' rows differ from the equal-count run"
        assert copy == _of(want, table, "BTCUSDT"), f"{table}: {COPY} differs from BTCUSDT"
        assert copy or table in ("signals", "orders", "fills"), f"{table}: nothing stored for {COPY}"
    # 47 s of BTCUSDT trades make no 1m signal: the order book of ticks partition 15 trades in the
    # two-timeframe test below, on 1s signals


def test_the_split_topology_gives_the_same_topics_and_stores_as_the_chained_one(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any]
) -> None:
    """The clean run is the default (chained: feed, engine, sink); the same replay with every stage its own
    process gives the same records on every output topic (each on the same partition) and in every store."""
    assert clean["run"].settings.topology == "chained"
    assert set(clean["run"].layout) == {"feed", "engine", "sink"}
    with pipeline(stack_settings.model_copy(update={"topology": "split"}), "split") as run:
        assert set(run.layout) == {"feed", "price", "signal", "order", "sink"}
        run.start()
        run.send(ticks)
        run.finish(ticks, BAD)
        run.wait_settled(len(ticks), timeout=240)
        snap = run.snapshot()
        topics = run.topic_contents()
    for table in TABLES:
        assert snap[table] == clean["snapshot"][table], f"{table}: split and chained stores differ"
    assert set(topics) == set(clean["topics"])
    for topic, rows in topics.items():
        assert rows, f"{topic}: nothing produced"
        assert rows == clean["topics"][topic], f"{topic}: split and chained records differ"


def test_a_partition_count_that_cannot_work_is_refused_at_start(stack_settings: Settings) -> None:
    """In the split topology the order worker's signals has 12 partitions; 20 ticks partitions cannot be
    co-located with them by symbol."""
    topics = stack_settings.topics.model_copy(update={"tick_partitions": 20})
    s = isolated(stack_settings.model_copy(update={"topics": topics, "topology": "split"}), "refuse")
    cmd = [str(Path(sys.executable).with_name("stockpulse")), "worker", "order"]
    env = {**os.environ, **settings_env(s)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "not a multiple of the 12" in out and "STOCKPULSE_TOPICS__TICK_PARTITIONS" in out, out
    # and a topic whose real count differs from the settings
    env["STOCKPULSE_TOPICS__TICK_PARTITIONS"] = "12"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "has 20 partitions, but STOCKPULSE_TOPICS__TICK_PARTITIONS is 12" in (
        done.stdout + done.stderr
    ), done.stdout + done.stderr


def test_two_signal_timeframes_every_buy_sell_signal_gets_exactly_one_order_decision(
    stack_settings: Settings, ticks: Ticks
) -> None:
    signal = stack_settings.signal.model_copy(update={"timeframes": ("1s", "1m")})
    both = _with_copy(ticks, "BTCUSDT", COPY)  # its ticks on partition 15, its signals on 3: one order book
    with pipeline(_uneven(stack_settings, signal=signal), "two-tf") as run:
        assert json.loads(run.env["STOCKPULSE_SIGNAL__TIMEFRAMES"]) == ["1s", "1m"]
        run.start()
        run.send(both)
        run.finish(both)
        run.wait_settled(len(both), timeout=240)
        s = run.settings
        signals = read_topic(s, s.topics.signals, until=lambda v: False, timeout=8,
                             decode=AvroSerde.for_record("Signal").decode)  # fmt: skip
        trading = {x["signal_id"]: x for x in signals if x["action"] in ("BUY", "SELL")}

        def all_decided(values: list[dict[str, Any]]) -> bool:
            return len({o["signal_id"] for o in values}) >= len(trading)

        orders = read_topic(s, s.topics.orders, until=all_decided, timeout=30,
                            decode=AvroSerde.for_record("Order").decode)  # fmt: skip
        snap = run.snapshot()
    assert {x["timeframe"] for x in trading.values()} == {"1s", "1m"}, "both timeframes trade"
    assert any(o["symbol"] == COPY and o["status"] == "ACCEPTED" for o in orders), "partition 15 trades too"
    decided = {o["signal_id"] for o in orders}
    assert decided == set(trading), "every BUY/SELL signal has an order decision, and no other order exists"
    by_id: dict[str, set[tuple[Any, ...]]] = {}
    for o in orders:  # a re-delivered order is the same decision
        by_id.setdefault(o["order_id"], set()).add((o["signal_id"], o["status"], o["reason"], o["timeframe"]))
    assert all(len(v) == 1 for v in by_id.values()) and len(by_id) == len(trading)
    assert all(o["timeframe"] == trading[o["signal_id"]]["timeframe"] for o in orders)
    assert sorted(r[0] for r in snap["orders"]) == sorted(by_id), "PostgreSQL holds each decision once"
