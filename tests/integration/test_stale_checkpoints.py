"""Checkpoints bound to the log they describe: a topic deleted and re-created, or a broker that lost its
storage, between two runs of the feed. Never a silent skip: the feed stops naming the partitions and the
command (``on_stale_log=stop``), or re-reads them from their start (``earliest``) or end (``latest``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from infra.local import stack
from streams import kafka
from streams.apps.checkpointing import StaleCheckpointError
from streams.cli import app
from streams.config import Settings
from streams.feed import FeedHandler
from streams.kafka import create_topics
from streams.metrics import CHECKPOINT_RESETS
from streams.sources.producer import TickProducer
from tests.support.kafka import isolated

pytestmark = pytest.mark.integration

TS = 1_610_000_000_000_000
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]


def _send(s: Settings, n: int, t0: int) -> None:
    rng = np.random.default_rng(n)
    idx = rng.integers(0, len(SYMBOLS), n).astype(np.int32)
    TickProducer(s, "avro").send(SYMBOLS, idx, t0 + np.arange(n) * 1000, 100 + rng.random(n), np.ones(n))


def _send_one_by_one(s: Settings, n: int, t0: int) -> None:
    """Each tick its own record batch: the local broker reports a partition's end as the start of its last
    batch + 1 (quirk 2 in the environment notes), so "from the end" needs the last batch to be one record."""
    encode = TickProducer(s, "avro").encode
    producer = kafka.producer(s, **{"linger.ms": 0})  # murmur2: the symbols' partitions
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        producer.produce(s.topics.ticks_raw, encode(symbol, t0 + i * 1000, 100.0, 1.0), key=symbol.encode())
        producer.flush()


def _feed(s: Settings, on_stale: str = "stop") -> FeedHandler:
    settings = s.model_copy(update={"checkpoint": s.checkpoint.model_copy(update={"on_stale_log": on_stale})})
    handler = FeedHandler(settings)
    handler.run(idle_exit_s=1.5, install_signals=False)
    return handler


def _recreate(s: Settings, topic: str) -> None:
    client = AdminClient(dict(s.kafka.librdkafka(consumer=False)))
    for future in client.delete_topics([topic], operation_timeout=10).values():
        future.result(timeout=15)
    deadline = time.monotonic() + 15
    while topic in client.list_topics(timeout=5).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    create_topics(s)


def test_a_recreated_topic_stops_the_feed_then_is_read_from_its_start_or_end(
    stack_settings: Settings,
) -> None:
    s = isolated(stack_settings, "stale-topic")
    _send(s, 3000, TS)
    assert _feed(s).stats.valid == 3000  # checkpoints now at offsets ~250 per partition, with the topic id
    _recreate(s, s.topics.ticks_raw)
    _send(s, 600, TS + 10**9)  # fewer messages than before: every one below the old checkpoints
    with pytest.raises(StaleCheckpointError) as stop:
        _feed(s, "stop")
    msg = str(stop.value)
    assert "topic's id changed" in msg and f"stockpulse checkpoints reset --group {s.feed.group_id}" in msg
    assert "Nothing was skipped" in msg and "STOCKPULSE_CHECKPOINT__ON_STALE_LOG" in msg
    command = msg[msg.index("`stockpulse checkpoints reset") + 1 : msg.index("`, or")].split()[1:]
    listed = CliRunner().invoke(app, ["checkpoints", "list", "--group", s.feed.group_id])
    assert listed.exit_code == 0 and s.feed.group_id[:12] in listed.output, listed.output
    reset = CliRunner().invoke(app, command)  # the command the message names
    assert reset.exit_code == 0 and "reset 6 checkpoint(s)" in reset.output, reset.output
    handler = _feed(s, "stop")  # from offset 0 of the new log, state kept
    assert handler.stats.valid == 600, "messages below the stale checkpoints were skipped"
    _send(s, 50, TS + 2 * 10**9)
    assert _feed(s, "stop").stats.valid == 50  # the new checkpoints carry the new id: no stop, no re-read
    _recreate(s, s.topics.ticks_raw)
    _send_one_by_one(s, 40, TS + 3 * 10**9)
    assert _feed(s, "latest").stats.valid == 0  # from the end: what was there is left alone
    _send(s, 30, TS + 4 * 10**9)
    assert _feed(s, "stop").stats.valid == 30


def test_a_broker_that_lost_its_storage_is_a_stale_log_too(stack_settings: Settings) -> None:
    s = isolated(stack_settings, "stale-broker")
    _send(s, 2000, TS)
    assert _feed(s).stats.valid == 2000
    stack.down(stack_settings, ["broker"])  # the local broker keeps nothing across a restart
    stack.up(stack_settings, ["broker"])
    create_topics(s)
    _send(s, 500, TS + 10**9)
    with pytest.raises(StaleCheckpointError, match="topic's id changed"):
        _feed(s, "stop")
    before = CHECKPOINT_RESETS.labels("feed", s.topics.ticks_raw, "earliest")._value.get()
    assert _feed(s, "earliest").stats.valid == 500
    assert CHECKPOINT_RESETS.labels("feed", s.topics.ticks_raw, "earliest")._value.get() > before
