"""The soak stall, reproduced in seconds: a partition of the local broker holding so many record batches that
its per-fetch offset lookup outlasts the feed's fetch wait (such fetches come back empty, quirk 7 in the
environment notes). Without the fetch watchdog the feed read nothing from it; with it, it raises its wait and
reads every tick. The feed starts at a 1 ms wait here (STOCKPULSE_FEED__FETCH_WAIT_MS), so a few thousand
batches make the stall; at the default 5 ms it took ~12,000 (~0.4 µs per stored batch per fetch)."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from streams.config import Settings
from streams.feed import FeedHandler
from streams.metrics import FETCH_STALLS
from streams.sources.producer import TickProducer
from tests.support.kafka import isolated

pytestmark = pytest.mark.integration

TS = 1_610_000_000_000_000
BATCHES = 8_000  # one tick per record batch: ~3 ms per fetch to find an offset on this broker


def test_feed_raises_its_fetch_wait_when_fetches_come_back_empty_on_a_long_log(
    stack_settings: Settings,
) -> None:
    s = isolated(stack_settings, "feed-stall", tick_partitions=1)
    s = s.model_copy(update={"feed": s.feed.model_copy(update={"fetch_wait_ms": 1})})
    encode = TickProducer(s, "avro").encode
    producer = Producer({**s.kafka.librdkafka(consumer=False), "linger.ms": 0, "batch.num.messages": 1})
    for i in range(BATCHES):  # each message its own record batch
        producer.produce(s.topics.ticks_raw, encode("AAA", TS + i * 1000, 100.0, 1.0), key=b"AAA")
        producer.poll(0)
    producer.flush(60)
    stalls_before = FETCH_STALLS.labels("feed")._value.get()
    handler = FeedHandler(s)
    handler.run(idle_exit_s=6.0, install_signals=False)
    assert handler.stats.valid == BATCHES, "the feed stopped short: its fetches came back empty"
    assert handler.fetch_wait.stalls >= 1 and handler.fetch_wait.wait_ms > 1
    assert FETCH_STALLS.labels("feed")._value.get() - stalls_before == handler.fetch_wait.stalls
