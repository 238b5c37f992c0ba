"""Fuzz: 10,000 generated bad messages mixed into the real-data replay. Every bad one lands in the
dead-letter topic with its specific reason, no service crashes, and the valid traffic's stores equal the
clean run's. Prints the reconciliation table (kind of bad message -> dead letters by reason)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.ticks import TickLimits
from schemas.serde import AvroSerde
from streams.config import Settings
from streams.feed import InvalidTick, TickDecoder
from tests.support.fuzz import LATE_SYMBOL, bad_traffic
from tests.support.kafka import read_topic
from tests.support.pipeline import Ticks, pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_BAD = 10_000
KNOWN = ["EURUSD", "USDJPY", "BTCUSDT", LATE_SYMBOL]


def _valid_only(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [r for r in rows if not any(isinstance(v, str) and "FUZZ" in v for v in r)]


def test_bad_messages_are_dead_lettered_with_reasons_and_valid_outputs_equal_a_clean_run(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any]
) -> None:
    bad = bad_traffic(N_BAD, seed=20261202, timeframes=len(stack_settings.topics.timeframes))
    env = {"STOCKPULSE_FEED__SYMBOLS": json.dumps(KNOWN)}
    with pipeline(stack_settings, "fuzz", env) as run:
        run.start()
        chunks = 20
        per = len(bad.messages) // chunks + 1
        n = len(ticks)
        for c in range(chunks):
            run.send(ticks, c * n // chunks, (c + 1) * n // chunks)
            for value, key in bad.messages[c * per : (c + 1) * per]:
                run.producer.send_raw(value, key)
        run.finish(ticks)
        run.producer.end_of_stream([LATE_SYMBOL])
        # valid ticks: the replay and the first tick of each out-of-order pair (its partner is late)
        run.wait_settled(n + len(bad.messages) - sum(bad.kinds.values()), timeout=240)
        snap = run.snapshot()
        run.check_alive()
        want = sum(bad.expected.values())
        dead = read_topic(run.settings, run.settings.topics.dead_letter, until=lambda v: len(v) >= want,
                          timeout=60, decode=AvroSerde.for_record("DeadLetter").decode)  # fmt: skip
    got = Counter(d["reason_code"] for d in dead)
    print("\nbad message kind | count")
    for kind, count in sorted(bad.kinds.items()):
        print(f"{kind} | {count}")
    print("reason code | expected | dead-lettered")
    for code in sorted(set(got) | set(bad.expected)):
        print(f"{code} | {bad.expected[code]} | {got[code]}")
    assert sum(bad.kinds.values()) == N_BAD
    assert got == bad.expected, f"dead letters by reason differ: got {got}, want {bad.expected}"
    assert all(d["reason"] and d["service"] in ("feed", "price") for d in dead)
    assert all(len(d["payload"]) <= 64 * 1024 for d in dead), "payloads are truncated to 64 KiB"
    for table in ("ticks", "bars", "pg_bars", "indicators", "signals", "orders", "fills"):
        assert _valid_only(snap[table]) == clean["snapshot"][table], f"{table} differ from the clean run"


@given(st.binary(max_size=300))
@settings(max_examples=2000, deadline=None)
def test_the_decoder_turns_any_bytes_into_a_tick_or_a_reason(raw: bytes) -> None:
    decoder = TickDecoder(TickLimits())
    try:
        symbol, ts, price, size = decoder.decode(raw)
    except InvalidTick as exc:
        assert exc.reason_code and exc.reason
    else:
        assert symbol and price > 0 and size >= 0 and ts > 0
