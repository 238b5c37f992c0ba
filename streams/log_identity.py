"""Which log a checkpoint points into: the topic's id on the broker and the partitions' end offsets.

A checkpoint's offset only means something in the log it was taken from. A topic deleted and re-created, a
broker that lost its storage (the local one keeps nothing across a restart) or a move to another cluster gives
the same names a new log; the topic id (KIP-516) changes with it. :func:`describe_logs` reads both from the
broker for :func:`streams.apps.checkpointing.stale_checkpoints` to compare.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, KafkaException, TopicCollection, TopicPartition

from streams.config import Settings
from streams.kafka import admin

Key = tuple[str, int]


def describe_logs(
    settings: Settings, keys: list[Key], timeout: float = 10.0
) -> tuple[dict[str, str], dict[Key, int]]:
    """(topic -> topic id, (topic, partition) -> end offset as the broker reports it). A topic the broker
    gives no id for (an older broker) is left out, and so is an end it would not report."""
    topics = sorted({t for t, _ in keys})
    ids: dict[str, str] = {}
    if topics:
        client = admin(settings)
        for topic, future in client.describe_topics(TopicCollection(topics), request_timeout=timeout).items():
            try:
                topic_id = future.result(timeout=timeout).topic_id
            except KafkaException:
                continue
            if topic_id is not None and str(topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA"):
                ids[topic] = str(topic_id)
    ends: dict[Key, int] = {}
    consumer = Consumer(
        {**settings.kafka.librdkafka(), "group.id": f"stockpulse-ends-{uuid.uuid4().hex[:8]}"}
    )
    try:
        for topic, partition in keys:
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            except KafkaException:
                continue
            if high >= 0:
                ends[(topic, partition)] = high
    finally:
        consumer.close()
    return ids, ends
