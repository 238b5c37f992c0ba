"""Live bars and signals for WebSocket clients: one Kafka consumer per API process, fanned out by symbol.

A daemon thread runs a confluent-kafka consumer on the bars topics (every timeframe) and the signals topic.
It assigns every partition itself, starting at the end offsets read when it starts (no consumer group: no
join wait, no commits; every API process sees every message). Each message is decoded (Avro), and only the
bars and signals of symbols that some client subscribed to are encoded once as JSON text and handed to the
event loop, which puts them on each interested subscriber's bounded queue. A client that cannot keep up
loses its oldest queued messages (counted in ``stockpulse_ws_dropped_total``), never the server's memory.

Messages (JSON text frames)::

    {"type": "bar", "bar": {"symbol", "timeframe", "start_us", "open", "high", "low", "close", "volume",
                            "vwap", "trades"}}
    {"type": "signal", "signal": {"signal_id", "symbol", "timeframe", "start_us", "action", "score", "price",
                                  "model_version", "inference_path", "publish_us"}}

Topics missing at start (not created yet) are looked for again every ``RETRY_S`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas.serde import AvroSerde, WireFormatError
from streams.api.jsonresp import dumps
from streams.api.metrics import WS_DROPPED, WS_MESSAGES
from streams.config import Settings

log = logging.getLogger("stockpulse.api.stream")

RETRY_S = 5.0
BAR_FIELDS = ("symbol", "timeframe", "start_us", "open", "high", "low", "close", "volume", "vwap", "trades")
SIGNAL_FIELDS = (
    "signal_id",
    "symbol",
    "timeframe",
    "start_us",
    "action",
    "score",
    "price",
    "model_version",
    "inference_path",
    "publish_us",
)

# (symbol, timeframe or None for signals, kind, JSON text)
Event = tuple[str, str | None, str, str]


def bar_message(bar: dict[str, Any]) -> str:
    return dumps({"type": "bar", "bar": {k: bar.get(k) for k in BAR_FIELDS}}).decode()


def signal_message(sig: dict[str, Any]) -> str:
    return dumps({"type": "signal", "signal": {k: sig.get(k) for k in SIGNAL_FIELDS}}).decode()


@dataclass(eq=False)
class Subscriber:
    """One WebSocket client: the symbols and bar timeframe it wants and its queue of JSON texts."""

    symbols: frozenset[str]
    timeframe: str
    queue: asyncio.Queue[str]
    dropped: int = 0

    def offer(self, text: str) -> None:
        """Queue ``text``; when the queue is full, drop the oldest message first."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
            WS_DROPPED.inc()
            self.queue.put_nowait(text)


@dataclass
class HubStatus:
    running: bool = False
    ready: bool = False
    assigned_partitions: int = 0
    missing_topics: list[str] = field(default_factory=list)
    consumed: int = 0
    undecodable: int = 0
    last_error: str = ""


class StreamHub:
    """The consumer thread and the subscriber registry (``subscribe`` / ``unsubscribe`` on the loop)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        t = settings.topics
        self.bar_topics = {t.bars(tf): tf for tf in t.timeframes}
        self.signal_topic = t.signals
        self.topics = [*self.bar_topics, self.signal_topic]
        self.status = HubStatus()
        self._subs: dict[str, set[Subscriber]] = {}
        self._wanted: frozenset[str] = frozenset()  # read by the thread (replaced, never mutated)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bars = AvroSerde.for_record("BarBatch")
        self._signals = AvroSerde.for_record("Signal")

    # ---- loop side --------------------------------------------------------------------------------------

    async def start(self, wait_s: float = 10.0) -> bool:
        """Start the consumer thread; wait until its partitions are assigned (True) or ``wait_s`` passed."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="api-stream-hub", daemon=True)
        self.status.running = True
        self._thread.start()
        return await asyncio.to_thread(self._ready.wait, wait_s)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self.status.running = False

    def subscribe(self, symbols: Iterable[str], timeframe: str, queue_size: int) -> Subscriber:
        sub = Subscriber(frozenset(symbols), timeframe, asyncio.Queue(queue_size))
        for s in sub.symbols:
            self._subs.setdefault(s, set()).add(sub)
        self._wanted = frozenset(self._subs)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        for s in sub.symbols:
            subs = self._subs.get(s)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[s]
        self._wanted = frozenset(self._subs)

    @property
    def clients(self) -> int:
        return len({id(sub) for subs in self._subs.values() for sub in subs})

    def _fan_out(self, events: list[Event]) -> None:
        for symbol, timeframe, kind, text in events:
            for sub in self._subs.get(symbol, ()):
                if timeframe is None or timeframe == sub.timeframe:
                    sub.offer(text)
                    WS_MESSAGES.labels(kind).inc()

    # ---- consumer thread --------------------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        conf: dict[str, Any] = {
            **self.settings.kafka.librdkafka(),
            "group.id": f"{self.settings.service_group_prefix}-api-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 20,
            "client.id": f"{self.settings.kafka.client_id}-api-stream",
        }
        return Consumer(conf)

    def _assign(self, consumer: Consumer, assigned: set[tuple[str, int]]) -> None:
        """Add the partitions not assigned yet, each at its current end offset."""
        md = consumer.list_topics(timeout=5)
        new: list[TopicPartition] = []
        missing: list[str] = []
        for topic in self.topics:
            meta = md.topics.get(topic)
            if meta is None or meta.error is not None:
                missing.append(topic)
                continue
            for p in meta.partitions:
                if (topic, p) in assigned:
                    continue
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                new.append(TopicPartition(topic, p, max(high, 0)))
        if new:
            consumer.incremental_assign(new)
            assigned.update((tp.topic, tp.partition) for tp in new)
        self.status.assigned_partitions = len(assigned)
        self.status.missing_topics = missing

    def _run(self) -> None:
        consumer = self._consumer()
        assigned: set[tuple[str, int]] = set()
        next_assign = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_assign:
                    try:
                        self._assign(consumer, assigned)
                        self._ready.set()
                        self.status.ready = True
                        next_assign = now + RETRY_S if self.status.missing_topics else float("inf")
                    except KafkaException as exc:
                        self.status.last_error = f"assign: {exc}"
                        log.warning("stream hub cannot assign partitions yet: %s", exc)
                        next_assign = now + 2.0
                if not assigned:
                    self._stop.wait(0.2)
                    continue
                msgs = consumer.consume(1000, timeout=0.2)
                events = self._decode(msgs)
                if events and self._loop is not None:
                    try:
                        self._loop.call_soon_threadsafe(self._fan_out, events)
                    except RuntimeError:  # the loop is closed: shutting down
                        return
        finally:
            consumer.close()

    def _decode(self, msgs: list[Any]) -> list[Event]:
        wanted = self._wanted
        events: list[Event] = []
        for msg in msgs:
            if msg.error() is not None:
                self.status.last_error = str(msg.error())
                continue
            self.status.consumed += 1
            if not wanted:
                continue
            topic, value = msg.topic(), msg.value() or b""
            try:
                if topic == self.signal_topic:
                    sig = self._signals.decode(value)
                    if sig["symbol"] in wanted:
                        events.append((sig["symbol"], None, "signal", signal_message(sig)))
                    continue
                batch = self._bars.decode(value)
            except WireFormatError:
                self.status.undecodable += 1
                continue
            for bar in batch["bars"]:
                if bar["symbol"] in wanted:
                    events.append((bar["symbol"], bar["timeframe"], "bar", bar_message(bar)))
        return events
