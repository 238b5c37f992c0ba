"""confluent-kafka clients built from the settings, and idempotent topic creation."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings


class BrokerError(RuntimeError):
    """The broker could not be reached or refused a request; the message says what to check."""


def producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent, acks=all producer that batches (linger 5 ms, lz4 off for loopback speed)."""
    conf: dict[str, Any] = {
        **settings.kafka.librdkafka(consumer=False),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "partitioner": "murmur2_random",
    }
    conf.update(overrides)
    return Producer(conf)


def consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that never auto-commits: services commit after their outputs and checkpoints are durable."""
    conf: dict[str, Any] = {
        **settings.kafka.librdkafka(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
        "queued.min.messages": 100_000,
    }
    conf.update(overrides)
    return Consumer(conf)


def admin(settings: Settings) -> AdminClient:
    return AdminClient(dict(settings.kafka.librdkafka(consumer=False)))


def list_topics(settings: Settings, timeout: float = 5.0) -> dict[str, int]:
    """Topic name -> partition count, as the broker reports them."""
    try:
        md = admin(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(
            f"cannot reach the broker at {settings.kafka.bootstrap_servers} ({exc}); "
            "start the local stack with `stockpulse stack up` or set STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS"
        ) from None
    return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}


def check_partitions(
    settings: Settings, existing: dict[str, int] | None = None, timeout: float = 10.0
) -> None:
    """Refuse a topic that exists with another partition count than the settings give it: every producer
    and service computes a symbol's partition from the settings' count (murmur2), so they would disagree.
    Services call this at start; topics not created yet are skipped."""
    wanted = settings.topics.all_topics()
    found = list_topics(settings, timeout) if existing is None else existing
    names = settings.topics.partition_settings()
    mismatched = {t: (found[t], n) for t, n in wanted.items() if t in found and found[t] != n}
    if mismatched:
        detail = "; ".join(
            f"topic {t} has {have} partitions, but STOCKPULSE_TOPICS__{names.get(t, '*_PARTITIONS')} "
            f"is {want}"
            for t, (have, want) in mismatched.items()
        )
        raise BrokerError(
            f"{detail}. Partition counts are final: set the setting to the topic's count, or delete and "
            "recreate the topic with `stockpulse topics create`"
        )


def create_topics(settings: Settings, timeout: float = 15.0) -> dict[str, str]:
    """Create every pipeline topic with its final partition count; existing topics are left alone.

    Returns topic -> "created" | "exists". An existing topic with a different partition count is an error,
    because the partition of a symbol would change (and the local broker cannot add partitions).
    """
    wanted = settings.topics.all_topics()
    existing = list_topics(settings, timeout)
    result: dict[str, str] = {}
    check_partitions(settings, existing)
    new = [
        NewTopic(t, num_partitions=n, replication_factor=settings.topics.replication_factor)
        for t, n in wanted.items()
        if t not in existing
    ]
    for t in wanted:
        result[t] = "exists"
    if new:
        client = admin(settings)  # keep a reference: the futures fail if the client is collected
        futures = client.create_topics(new, request_timeout=timeout)
        for topic, fut in futures.items():
            try:
                fut.result(timeout=timeout)
                result[topic] = "created"
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    continue
                raise BrokerError(f"could not create topic {topic}: {exc}") from None
    return result
