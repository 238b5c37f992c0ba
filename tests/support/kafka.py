"""Isolated topics per test and reading topics back over real connections."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.config import Settings
from streams.kafka import create_topics


def isolated(settings: Settings, tag: str, **topic_overrides: Any) -> Settings:
    """Settings whose topic names and consumer groups are unique to this test, topics created."""
    run = f"{tag}-{uuid.uuid4().hex[:8]}"
    t = settings.topics
    topics = t.model_copy(
        update={
            "ticks_raw": f"{run}.ticks.raw",
            "ticks": f"{run}.ticks",
            "bars_prefix": f"{run}.bars",
            "indicators_prefix": f"{run}.indicators",
            "signals": f"{run}.signals",
            "orders": f"{run}.orders",
            "fills": f"{run}.fills",
            "dead_letter": f"{run}.deadletter",
            **topic_overrides,
        }
    )
    feed = settings.feed.model_copy(update={"group_id": f"{run}-feed"})
    out = settings.model_copy(update={"topics": topics, "feed": feed})
    create_topics(out)
    return out


def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list[Any]], bool],
    timeout: float = 30.0,
    decode: Callable[[bytes], Any] | None = None,
) -> list[Any]:
    """Read a topic from the beginning (all partitions) until ``until(values)`` or the timeout."""
    conf = {
        **settings.kafka.librdkafka(),
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(conf)
    md = consumer.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
    consumer.assign(parts)
    values: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(values):
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    raw = msg.value()
                    values.append(decode(raw) if decode else (msg.partition(), msg.offset(), msg.key(), raw))
    finally:
        consumer.close()
    return values


def read_to_end(settings: Settings, topic: str, timeout: float = 60.0) -> list[tuple[int, bytes]]:
    """Every message of a topic as (partition, value), up to the end offsets read first."""
    conf = {
        **settings.kafka.librdkafka(),
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    consumer = Consumer(conf)
    try:
        md = consumer.list_topics(topic, timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in md.topics[topic].partitions}  # fmt: skip
        todo = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"{topic}: partitions {sorted(todo)} not read to the end"
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is not None:
                    continue
                part, offset = msg.partition(), msg.offset()
                assert part is not None and offset is not None
                out.append((part, msg.value() or b""))
                if offset + 1 >= ends[part]:
                    todo.discard(part)
    finally:
        consumer.close()
    return out
