"""Tick validation, sequencing, partitioning and TickBatch building."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.ticks import (
    Sequencer,
    TickBatchBuilder,
    TickLimits,
    batch_rows,
    check_tick,
    murmur2,
    partition_for,
)
from schemas.serde import AvroSerde

LIMITS = TickLimits()
TS = 1_610_000_000_000_000


@pytest.mark.parametrize(
    ("symbol", "ts", "price", "size", "code"),
    [
        ("BTCUSDT", TS, 40_000.0, 0.1, None),
        ("EUR/USD", TS, 1.1, 0.0, None),
        ("btcusdt", TS, 1.0, 0.0, "invalid_symbol"),
        ("X" * 1_000_000, TS, 1.0, 0.0, "invalid_symbol"),
        ("", TS, 1.0, 0.0, "invalid_symbol"),
        (None, TS, 1.0, 0.0, "invalid_symbol"),
        ("A", TS, math.nan, 0.0, "invalid_price"),
        ("A", TS, math.inf, 0.0, "invalid_price"),
        ("A", TS, -1.0, 0.0, "invalid_price"),
        ("A", TS, 0.0, 0.0, "invalid_price"),
        ("A", TS, 1e308, 0.0, "invalid_price"),
        ("A", TS, "1.0", 0.0, "invalid_price"),
        ("A", TS, True, 0.0, "invalid_price"),
        ("A", TS, 1.0, -0.5, "invalid_size"),
        ("A", TS, 1.0, math.nan, "invalid_size"),
        ("A", 0, 1.0, 0.0, "invalid_timestamp"),
        ("A", 4_200_000_000_000_000, 1.0, 0.0, "invalid_timestamp"),
        ("A", 1.5e15, 1.0, 0.0, "invalid_timestamp"),
    ],
)
def test_check_tick(symbol: object, ts: object, price: object, size: object, code: str | None) -> None:
    problem = check_tick(symbol, ts, price, size, LIMITS)
    if code is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == code
        assert len(problem[1]) < 300, "a huge symbol must not be echoed whole"


def test_kafka_murmur2_vectors() -> None:
    # From Apache Kafka's UtilsTest.testMurmur2.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


@given(st.text(min_size=1, max_size=20), st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_partition_in_range(symbol: str, parts: int) -> None:
    assert 0 <= partition_for(symbol, parts) < parts


@given(st.lists(st.sampled_from(["A", "B", "C"]), max_size=50), st.integers(0, 50))
@settings(max_examples=100, deadline=None)
def test_sequencer_resumes_gap_free(symbols: list[str], cut: int) -> None:
    whole = Sequencer()
    expected = [whole.next(s) for s in symbols]
    first = Sequencer()
    got = [first.next(s) for s in symbols[:cut]]
    resumed = Sequencer.from_bytes(first.to_bytes())
    got += [resumed.next(s) for s in symbols[cut:]]
    assert got == expected
    for s in set(symbols):
        assert [n for sym, n in zip(symbols, expected, strict=True) if sym == s] == list(
            range(1, symbols.count(s) + 1)
        )


def test_tick_batch_round_trip() -> None:
    builder = TickBatchBuilder()
    rows = [("A", TS + i, 1.0 + i, 0.5, i + 1) for i in range(3)] + [("B", TS + 9, 7.0, 0.0, 1)]
    for sym, ts, px, sz, seq in rows:
        builder.add(sym, ts, px, sz, seq, ingest_us=42)
    serde = AvroSerde.for_record("TickBatch")
    decoded = serde.decode(serde.encode(builder.record("b1", publish_us=43)))
    assert list(batch_rows(decoded)) == rows
    assert decoded["symbols"] == ["A", "B"] and decoded["ingest_us"] == 42


def test_unknown_symbols_are_rejected_only_when_an_allowlist_is_configured() -> None:
    from processors.ticks import TickLimits, check_tick

    ts = 1_600_000_000_000_000
    assert check_tick("ZZZ", ts, 1.0, 1.0, TickLimits()) is None
    known = TickLimits(known_symbols=frozenset({"BTCUSDT"}))
    assert check_tick("BTCUSDT", ts, 1.0, 1.0, known) is None
    code, reason = check_tick("ZZZ", ts, 1.0, 1.0, known) or ("", "")
    assert code == "unknown_symbol" and "STOCKPULSE_FEED__SYMBOLS" in reason
