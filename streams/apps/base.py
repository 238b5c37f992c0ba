"""The plumbing every stateful Faust service shares: partition state, checkpoints, manual acks, dead letters.

A service subclasses :class:`StatefulService`, names its input topics, and implements ``new_state``/
``load_state`` and ``handle`` (one message). State lives per state partition (the input partition, or for a
``colocated`` service whose inputs differ in partition count, the symbol's partition among the fewest: see
:class:`streams.apps.checkpointing.StatePartitions`). The base class restores state on assignment, skips
re-delivered messages below the checkpoint, serializes message handling with timers, checkpoints on an
interval and on revocation, and acknowledges events to Faust only after their checkpoint (see
:mod:`streams.apps.checkpointing`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

import faust
from faust.types import TP, EventT

from sinks.checkpoints import CheckpointStore
from streams.apps.checkpointing import Checkpointer, PartitionCountError, PartitionState, StatePartitions
from streams.apps.common import make_app, raw_topic
from streams.apps.fetch_watch import FetchWatch
from streams.config import Settings
from streams.deadletter import DeadLetterEncoder
from streams.log_identity import describe_logs
from streams.metrics import DEAD_LETTERS, MESSAGES, produced

S = TypeVar("S", bound=PartitionState)
log = logging.getLogger("stockpulse.service")


def _acknowledged(fut: Any) -> None:
    """Faust's send callback: the record's offset for the lag figures (streams.scrape.lags)."""
    meta = fut.result()
    produced(meta.topic, meta.partition, meta.offset)


def now_us() -> int:
    return time.time_ns() // 1000


class StatefulService(ABC, Generic[S]):
    """Base of the price, signal and order services (see the module docstring)."""

    service: str = ""
    colocated: bool = False  # a symbol's records of every input must meet in one state

    def __init__(
        self, settings: Settings, inputs: list[str], checkpoint_s: float, fetch_wait_ms: int | None = None
    ) -> None:
        self.settings = settings
        counts = settings.topics.all_topics()
        self.partitions = StatePartitions(
            {t: counts[t] for t in inputs}, self.colocated, settings.topics.partition_settings()
        )
        commits = {"broker_commit_interval": 3600.0, "broker_commit_every": 1_000_000}  # we commit ourselves
        self.app = make_app(settings, self.service, fetch_wait_ms, **commits)
        self.inputs = inputs
        self.dead_topic = raw_topic(self.app, settings.topics.dead_letter)
        self._dead_encoders: dict[str, DeadLetterEncoder] = {}
        self.states: dict[int, S] = {}
        self.pending: list[EventT] = []
        self.store = CheckpointStore(settings.postgres.dsn.get_secret_value())
        self.checkpointer = Checkpointer(
            self.store,
            self.service,
            self.app.conf.id,
            inputs,
            checkpoint_s,
            self.states.get,
            self.partitions,
            self._describe_logs,
            settings.checkpoint.on_stale_log,
        )
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._assign_lock = asyncio.Lock()
        self._lock = asyncio.Lock()  # one message, timer tick or checkpoint at a time
        channel = self.app.topic(*inputs, key_serializer="raw", value_serializer="raw")
        self.app.agent(channel, name=self.service)(self._agent)
        self.app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        floor = settings.kafka.fetch_wait_max_ms if fetch_wait_ms is None else fetch_wait_ms
        self.fetch_watch = FetchWatch(
            self.app, self.service, settings.fetch.policy(floor), self.checkpointer.position
        )

    # -- what a service implements --------------------------------------------------------------------------
    @abstractmethod
    def new_state(self, partition: int) -> S: ...

    @abstractmethod
    def load_state(self, partition: int, blob: bytes) -> S: ...

    @abstractmethod
    async def handle(self, topic: str, partition: int, offset: int, value: bytes, state: S) -> None:
        """Process one message of ``topic`` (its outputs are sent with ``send``)."""

    async def on_open(self) -> None:
        """Open the service's own connections (called once, before the first restore)."""

    # -- partition ownership --------------------------------------------------------------------------------
    def _mine(self, tps: set[TP]) -> list[int]:
        """The state partitions these topic-partitions belong to."""
        return sorted({self.partitions.of(tp.partition) for tp in tps if tp.topic in self.inputs})

    def _check_complete(self, parts: list[int]) -> None:
        """A co-located state partition must be read whole by one worker: refuse an assignment that splits
        it (several workers of a service whose inputs have different partition counts)."""
        if not self.partitions.colocated:
            return
        have = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        for q in parts:
            missing = [key for key in self.partitions.members(q) if key not in have]
            if missing:
                raise PartitionCountError(
                    f"{self.service}: this worker got part of state partition {q} but not {missing}: with "
                    f"more than one {self.service} worker its inputs "
                    f"{sorted(self.partitions.counts.items())} must have equal partition counts (set the "
                    "STOCKPULSE_TOPICS__*_PARTITIONS alike), or run one worker"
                )

    async def _ensure_open(self) -> None:
        # The rebalance handler and an early delivery can both get here first: open exactly once.
        async with self._open_lock:
            if not self._opened:
                await self.store.open()
                await self.on_open()
                self._opened = True

    async def _on_assigned(self, app: Any, assigned: set[TP], **kwargs: Any) -> None:
        await self._ensure_open()
        # The rebalance handler and an early delivery (``_process``) can both restore a partition; without
        # the lock the second restore would replace a state the first had already applied messages to.
        async with self._assign_lock:
            parts = [p for p in self._mine(assigned) if p not in self.states]
            if not parts:
                return
            self._check_complete(parts)
            saved = await self.checkpointer.restore(parts)
            for p in parts:
                blob = saved.get(p)
                self.states[p] = self.load_state(p, blob) if blob else self.new_state(p)
            await self._seek_stale()

    async def _describe_logs(
        self, keys: list[tuple[str, int]]
    ) -> tuple[dict[str, str], dict[tuple[str, int], int]]:
        return await asyncio.to_thread(describe_logs, self.settings, keys)

    async def _seek_stale(self) -> None:
        """Read partitions whose checkpoints were stale from the start or end of their log
        (:meth:`~streams.apps.checkpointing.DeliveryBook.check_logs` gave them that offset), whatever offset
        the group committed on the broker (a re-created topic can keep the old one). The others go on from
        the committed offset, at or below the checkpoint: what lies below it is skipped."""
        for topic, part in self.checkpointer.stale:
            await self.app.consumer.seek(TP(topic, part), self.checkpointer.position(topic, part))

    async def _on_revoked(self, app: Any, revoked: set[TP], **kwargs: Any) -> None:
        parts = self._mine(revoked)
        if not parts:
            return
        async with self._lock:
            await self.checkpoint(wait=True)  # saved before another worker restores these partitions
            for p in parts:
                self.states.pop(p, None)
            self.checkpointer.forget(parts)

    # -- processing -----------------------------------------------------------------------------------------
    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        queue = getattr(getattr(stream, "channel", None), "queue", None)  # what has arrived and waits
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            self.fetch_watch.received += 1
            async with self._lock:
                await self._process(event)
                if queue is None or queue.empty():
                    await self.drained()

    async def drained(self) -> None:
        """Called when every message that had arrived is handled, and before each checkpoint and timer tick:
        a service that defers work to take what has arrived in one go (smart batching) finishes it here."""

    async def _process(self, event: EventT) -> None:
        msg = event.message
        topic, part, offset = msg.topic, msg.partition, msg.offset
        self.pending.append(event)
        state = self.states.get(self.partitions.of(part))
        if state is None:  # delivered before our assignment handler ran (or while it restores)
            await self._on_assigned(self.app, {msg.tp})
            state = self.states[self.partitions.of(part)]
        if self.checkpointer.should_skip(topic, part, offset):  # only once restored: the checkpoint decides
            return
        await self.handle(topic, part, offset, cast(bytes, event.value), state)
        MESSAGES.labels(self.service, topic, "in").inc()
        self.checkpointer.processed(topic, part, offset)
        if self.checkpointer.due():
            await self.checkpoint()

    async def send(
        self, topic: faust.TopicT, value: bytes, partition: int | None = None, key: bytes | None = None
    ) -> None:
        await topic.send(key=key, value=value, partition=partition, callback=_acknowledged)
        MESSAGES.labels(self.service, topic.get_topic_name(), "out").inc()

    async def dead_letter(
        self,
        code: str,
        reason: str,
        topic: str,
        part: int,
        offset: int,
        payload: bytes | None,
        stage: str | None = None,
    ) -> None:
        """Dead-letter a record, naming the stage that rejected it (default: the service)."""
        name = stage or self.service
        encoder = self._dead_encoders.get(name)
        if encoder is None:
            encoder = self._dead_encoders[name] = DeadLetterEncoder(name)
        value = encoder.encode(code, reason, topic, part, offset, None, payload)
        await self.send(self.dead_topic, value)
        DEAD_LETTERS.labels(name, code).inc()

    async def checkpoint(self, wait: bool = False) -> None:
        """Flush -> save -> ack/commit now (``wait`` is for services that write in the background)."""
        await self.drained()
        await self.checkpointer.checkpoint(self.flush_outputs, self._ack_and_commit)

    async def flush_outputs(self) -> None:
        """Flush sinks (services with their own sinks extend this) and then the producer."""
        await self.app.producer.flush()

    async def _ack_and_commit(self) -> None:
        pending, self.pending = self.pending, []
        for event in pending:
            event.ack()
        await self.app.consumer.commit()

    def timer(self, interval_s: float, tick: Callable[[], Awaitable[None]]) -> None:
        """Run ``tick`` every ``interval_s`` seconds, never concurrently with message handling."""

        async def run() -> None:
            async with self._lock:
                await self.drained()
                await tick()
                if self.checkpointer.due():
                    await self.checkpoint()

        self.app.timer(interval=interval_s)(run)
