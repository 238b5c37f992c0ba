"""The soak stall, reproduced in seconds: a partition of the local broker holding so many record batches that
its per-fetch offset lookup outlasts a 5 ms fetch wait (such fetches come back empty, quirk 7 in the
environment notes). Without the fetch watchdog the feed read nothing from it; with it, it raises its wait and
reads every tick."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.feed import FETCH_WAIT_FLOOR_MS, FeedHandler
from streams.metrics import FETCH_STALLS
from streams.sources.producer import TickProducer
from tests.support.kafka import isolated

pytestmark = pytest.mark.integration

TS = 1_610_000_000_000_000
BATCHES = 45_000  # one tick per record batch: ~18 ms per fetch to find an offset on this broker


def test_feed_raises_its_fetch_wait_when_fetches_come_back_empty_on_a_long_log(
    stack_settings: Settings,
) -> None:
    s = isolated(stack_settings, "feed-stall", tick_partitions=1)
    encode = TickProducer(s, "avro").encode
    producer = Producer({**s.kafka.librdkafka(consumer=False), "linger.ms": 0})
    for i in range(BATCHES):
        producer.produce(s.topics.ticks_raw, encode("AAA", TS + i * 1000, 100.0, 1.0), key=b"AAA")
        producer.flush()  # each message its own record batch
    stalls_before = FETCH_STALLS.labels("feed")._value.get()
    handler = FeedHandler(s)
    handler.run(idle_exit_s=6.0, install_signals=False)
    assert handler.stats.valid == BATCHES, "the feed stopped short: its fetches came back empty"
    assert handler.fetch_wait.stalls >= 1 and handler.fetch_wait.wait_ms > FETCH_WAIT_FLOOR_MS
    assert FETCH_STALLS.labels("feed")._value.get() - stalls_before == handler.fetch_wait.stalls
