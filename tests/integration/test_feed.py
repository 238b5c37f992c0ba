"""The feed handler against the real broker and PostgreSQL: batching, dead letters, restart without loss."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from processors.ticks import batch_rows, partition_for
from schemas.serde import AvroSerde
from streams.config import Settings
from streams.feed import FeedHandler
from streams.sources.producer import TickProducer
from tests.support.kafka import isolated, read_topic

pytestmark = pytest.mark.integration

TS = 1_610_000_000_000_000


def _run_feed(settings: Settings, idle: float = 1.5) -> FeedHandler:
    handler = FeedHandler(settings)
    handler.run(idle_exit_s=idle, install_signals=False)
    return handler


def _ticks(settings: Settings, expected: int) -> list[tuple[int, dict]]:
    serde = AvroSerde.for_record("TickBatch")
    batches = read_topic(
        settings,
        settings.topics.ticks,
        until=lambda v: sum(len(serde.decode(x[3])["ts_us"]) for x in v) >= expected,
    )
    return [(p, serde.decode(raw)) for p, _, _, raw in batches]


def test_valid_ticks_become_sequenced_batches_on_the_symbol_partition(stack_settings: Settings) -> None:
    s = isolated(stack_settings, "feed-ok")
    producer = TickProducer(s, "avro")
    n, symbols = 3000, ["AAA", "BBB", "CCC", "DDD"]
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(symbols), n).astype(np.int32)
    producer.send(symbols, idx, TS + np.arange(n) * 1000, 100 + rng.random(n), rng.random(n))
    json_producer = TickProducer(s, "json")
    json_producer.send(["EEE"], np.zeros(5, np.int32), TS + np.arange(5), np.full(5, 2.5), np.ones(5))
    handler = _run_feed(s)
    assert handler.stats.valid == n + 5 and handler.stats.dead_lettered == 0
    rows: dict[str, list[tuple]] = {}
    for part, batch in _ticks(s, n + 5):
        for row in batch_rows(batch):
            assert part == partition_for(row[0], s.topics.tick_partitions)
            rows.setdefault(row[0], []).append(row)
    assert sum(len(v) for v in rows.values()) == n + 5
    for sym, sym_rows in rows.items():
        assert [r[4] for r in sym_rows] == list(range(1, len(sym_rows) + 1)), f"{sym}: gap or reorder"
    sent = [(symbols[i], TS + k * 1000) for k, i in enumerate(idx)]
    for sym in symbols:
        assert [r[1] for r in rows[sym]] == [ts for s_, ts in sent if s_ == sym]


def test_bad_messages_go_to_the_dead_letter_topic_with_reasons(stack_settings: Settings) -> None:
    s = isolated(stack_settings, "feed-bad")
    producer = TickProducer(s, "avro")
    good = producer.encode("GOOD", TS, 10.0, 1.0)
    bar = AvroSerde.for_record("Bar").encode(
        {
            "bar_id": "x",
            "symbol": "GOOD",
            "timeframe": "1s",
            "start_us": TS,
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 0.0,
            "vwap": 1.0,
            "trades": 1,
        }
    )
    bad = {
        b"\xde\xad\xbe\xef corrupt": "corrupt_payload",
        bar: "wrong_schema",
        producer.encode("GOOD", TS, float("nan"), 1.0): "invalid_price",
        json.dumps({"symbol": "GOOD", "ts_us": TS, "price": -5}).encode(): "invalid_price",
        b'{"symbol": "GOOD", "ts_us": 1, "price": NaN}': "invalid_price",
        json.dumps({"symbol": "GOOD", "ts_us": 5, "price": 1.0}).encode(): "invalid_timestamp",
        good[:-4]: "corrupt_payload",
        b"\x00\x00\x00\x99\x99" + good[5:]: "unknown_schema_id",
    }
    producer.send_raw(good, b"GOOD")
    for value in bad:
        producer.send_raw(value, b"GOOD")
    producer.send_raw(good, b"GOOD")
    producer.flush()
    handler = _run_feed(s)
    assert handler.stats.valid == 2 and handler.stats.dead_lettered == len(bad)
    dl = AvroSerde.for_record("DeadLetter")
    letters = read_topic(s, s.topics.dead_letter, until=lambda v: len(v) >= len(bad), decode=dl.decode)
    assert {bytes(d["payload"]): d["reason_code"] for d in letters} == {k: v for k, v in bad.items()}
    for d in letters:
        assert d["service"] == "feed" and d["topic"] == s.topics.ticks_raw and len(d["reason"]) > 20
    rows = [r for _, b in _ticks(s, 2) for r in batch_rows(b)]
    assert [r[4] for r in rows] == [1, 2], "the feed keeps going after bad input"


def test_restart_resumes_sequences_from_the_checkpoint(stack_settings: Settings) -> None:
    s = isolated(stack_settings, "feed-restart")
    producer = TickProducer(s, "avro")
    sym = ["RST"]
    producer.send(sym, np.zeros(500, np.int32), TS + np.arange(500), np.full(500, 3.0), np.ones(500))
    first = _run_feed(s)
    producer.send(sym, np.zeros(300, np.int32), TS + 500 + np.arange(300), np.full(300, 3.0), np.ones(300))
    second = _run_feed(s)
    assert (first.stats.valid, second.stats.valid) == (500, 300), "second run must not re-read the first 500"
    rows = [r for _, b in _ticks(s, 800) for r in batch_rows(b)]
    assert sorted(r[4] for r in rows) == list(range(1, 801))


def test_stop_signal_flushes_and_checkpoints(stack_settings: Settings) -> None:
    s = isolated(stack_settings, "feed-stop")
    handler = FeedHandler(s)
    thread = threading.Thread(target=handler.run, kwargs={"install_signals": False})
    thread.start()
    TickProducer(s, "json").send(
        ["STP"], np.zeros(50, np.int32), TS + np.arange(50), np.ones(50), np.ones(50)
    )
    rows = [r for _, b in _ticks(s, 50) for r in batch_rows(b)]
    handler.stop()
    thread.join(20)
    assert not thread.is_alive() and len(rows) == 50
    assert handler.stats.checkpoints >= 1


def test_end_of_stream_cuts_the_batch_and_names_the_symbol_after_its_ticks(stack_settings: Settings) -> None:
    s = isolated(stack_settings, "feed-eos")
    avro, js = TickProducer(s, "avro"), TickProducer(s, "json")
    avro.send(["EOSA"], np.zeros(20, np.int32), TS + np.arange(20), np.full(20, 3.0), np.ones(20))
    avro.end_of_stream(["EOSA"])
    avro.send(["EOSA"], np.zeros(5, np.int32), TS + 100 + np.arange(5), np.full(5, 3.0), np.ones(5))
    js.send(["EOSJ"], np.zeros(3, np.int32), TS + np.arange(3), np.full(3, 2.0), np.ones(3))
    js.end_of_stream(["EOSJ"])
    avro.send_raw(json.dumps({"symbol": "bad symbol!", "end_of_stream": True}).encode(), b"x")
    avro.flush()
    handler = _run_feed(s)
    assert handler.stats.valid == 28 and handler.stats.dead_lettered == 1
    serde = AvroSerde.for_record("TickBatch")
    batches = read_topic(s, s.topics.ticks, until=lambda v: sum(
        len(serde.decode(x[3])["closed_symbols"]) for x in v) >= 2)  # fmt: skip
    seen: dict[str, list[tuple[str, int]]] = {}
    for part, _, _, raw in sorted(batches, key=lambda b: (b[0], b[1])):
        rec = serde.decode(raw)
        for row in batch_rows(rec):
            seen.setdefault(row[0], []).append(("tick", row[4]))
        for sym in rec["closed_symbols"]:
            assert part == partition_for(sym, s.topics.tick_partitions)
            seen.setdefault(sym, []).append(("end", 0))
    assert seen["EOSA"] == [
        *(("tick", k) for k in range(1, 21)),
        ("end", 0),
        *(("tick", k) for k in range(21, 26)),
    ]
    assert seen["EOSJ"] == [("tick", 1), ("tick", 2), ("tick", 3), ("end", 0)]
    dl = read_topic(s, s.topics.dead_letter, until=lambda v: len(v) >= 1,
                    decode=AvroSerde.for_record("DeadLetter").decode)  # fmt: skip
    assert [d["reason_code"] for d in dl] == ["invalid_symbol"]


def test_watermarks_follow_live_ticks_on_their_partitions_only_and_resume_after_a_restart(
    stack_settings: Settings,
) -> None:
    """Live ticks (stamped now) get watermarks (the feed's clock minus the maximum delay) on their partitions,
    one per bar boundary passed, each at most the clock minus the delay when it was sent; replay ticks get
    none. A restarted feed keeps sending them for the partitions whose live bars may still be open (its
    checkpoint says which)."""
    s = isolated(stack_settings, "feed-wm")
    live, old = "LIVEWM", "OLDWM"
    assert partition_for(live, s.topics.tick_partitions) != partition_for(old, s.topics.tick_partitions)
    producer = TickProducer(s, "avro")
    now = time.time_ns() // 1000
    producer.send([live, old], np.array([0, 1, 0], np.int32), np.array([now, TS, now + 1000]),
                  np.full(3, 5.0), np.ones(3))  # fmt: skip
    sent_at = time.time_ns() // 1000
    _run_feed(s, idle=2.5)
    serde = AvroSerde.for_record("TickBatch")
    delay = s.event_time.max_delay_ms * 1000

    def watermarks(after: int) -> list[tuple[int, int]]:
        got = read_topic(s, s.topics.ticks, until=lambda v: len(v) > after + 3, timeout=10)
        return [
            (p, serde.decode(raw)["watermark_us"])
            for p, _, _, raw in got
            if serde.decode(raw)["watermark_us"]
        ]

    first = watermarks(0)
    live_part = partition_for(live, s.topics.tick_partitions)
    assert first and {p for p, _ in first} == {live_part}, "watermarks on the live symbol's partition only"
    marks = [w for _, w in first]
    assert marks == sorted(marks) and marks[0] >= now + 1000 - delay - 5_000_000  # the feed ran ~1 s
    assert all(w <= time.time_ns() // 1000 - delay for w in marks)
    assert len(first) >= 2 and len({w // 1_000_000 for w in marks}) == len(marks), "one per 1s boundary"
    n_before = len(read_topic(s, s.topics.ticks, until=lambda v: False, timeout=2))
    _run_feed(s, idle=2.5)  # a restart: no new input, but the live bar may still be open
    after = [w for p, w in watermarks(n_before) if w > marks[-1]]
    assert after and all(w > sent_at - delay for w in after)
