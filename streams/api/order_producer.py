"""Producing to Kafka from the event loop and awaiting the broker's acknowledgement.

One confluent-kafka producer per API process (idempotent, acks=all, as every producer of the pipeline, but
``linger.ms=1``: an API order is one message and a client waits for it). ``produce`` only enqueues; a
daemon thread serves the delivery callbacks (``poll``) and hands each result to the loop's future.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from streams.config import Settings
from streams.kafka import producer

_HINT = (
    "is the broker up at STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS (`stockpulse stack status`) and does the topic "
    "exist (`stockpulse topics create`)?"
)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time or refused the message; the message says what to check."""


class OrderProducer:
    """``await send(topic, key, value)`` -> (partition, offset) once the broker has the message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = producer(
            settings,
            **{
                "linger.ms": 1,
                "client.id": f"{settings.kafka.client_id}-api",
                "message.timeout.ms": max(1000, int(settings.api.order_ack_timeout_s * 1000)),
            },
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="api-producer-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
        """Produce one message and wait for its acknowledgement (``api.order_ack_timeout_s``)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, int]] = loop.create_future()

        def settle(err: KafkaError | None, msg: Message) -> None:
            if fut.done():
                return
            if err is not None:
                fut.set_exception(
                    BrokerUnavailable(f"the broker refused the message: {err.str()}; check: {_HINT}")
                )
            else:
                fut.set_result((msg.partition() or 0, msg.offset() or 0))

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err, msg)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except (BufferError, KafkaException) as exc:
            raise BrokerUnavailable(f"could not enqueue the message: {exc}; check: {_HINT}") from exc
        timeout = self.settings.api.order_ack_timeout_s
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BrokerUnavailable(
                f"no acknowledgement from the broker within {timeout:g} s; check: {_HINT}"
            ) from None

    async def ping(self, timeout_s: float) -> str:
        """A metadata round trip to the broker (for /healthz); raises BrokerUnavailable."""

        def metadata() -> Any:
            return self._producer.list_topics(timeout=timeout_s)

        try:
            md = await asyncio.wait_for(asyncio.to_thread(metadata), timeout_s + 0.5)
        except (KafkaException, TimeoutError) as exc:
            raise BrokerUnavailable(
                f"no metadata answer within {timeout_s:g} s ({exc}); check: {_HINT}"
            ) from None
        topic = self.settings.topics.orders
        if topic not in md.topics or md.topics[topic].error is not None:
            raise BrokerUnavailable(
                f"the orders topic {topic!r} does not exist; create it: stockpulse topics create"
            )
        parts = len(md.topics[topic].partitions)
        return f"{len(md.brokers)} broker(s), orders topic {topic!r} with {parts} partitions"

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout_s``) and stop the poll thread."""
        self._producer.flush(timeout_s)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
