"""Per-partition state checkpoints for Faust services, stored with the consumed offsets in PostgreSQL.

The order at every checkpoint (as Quix Streams documents it): flush sinks -> flush the producer (outputs
acknowledged) -> write state + next offsets of every input topic (one PostgreSQL statement, so all rows or
none) -> acknowledge the events to Faust and commit offsets to Kafka.

Services read one or more co-partitioned topics (partition ``p`` of each carries the same symbols). The state
of partition ``p`` is stored on the row of the first topic; every topic's row holds its next offset.

Restore on assignment: the state is loaded and each topic-partition's checkpointed next offset remembered.
Events are acknowledged only after a checkpoint, so Kafka's committed offset never passes it; a message below
the checkpoint that is delivered again was already applied to the restored state and is skipped
(``should_skip``). Nothing depends on the broker's end offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from sinks.checkpoints import Checkpoint, CheckpointStore
from streams.metrics import CHECKPOINT_SECONDS, CHECKPOINTS

log = logging.getLogger("stockpulse.checkpoint")


class PartitionState(Protocol):
    """What a service keeps per partition: it serializes to bytes and back."""

    def to_bytes(self) -> bytes: ...


class Checkpointer:
    """Tracks processed offsets per topic-partition and writes checkpoints on an interval."""

    def __init__(
        self,
        store: CheckpointStore,
        service: str,
        group_id: str,
        topics: list[str],
        interval_s: float,
        state_of: Callable[[int], PartitionState | None],
    ) -> None:
        self.store = store
        self.service = service
        self.group_id = group_id
        self.topics = topics
        self.interval_s = interval_s
        self._state_of = state_of
        self.restored_next: dict[tuple[str, int], int] = {}
        self.next_offset: dict[tuple[str, int], int] = {}
        self._dirty: set[int] = set()
        self._last = time.monotonic()
        self.count = 0

    async def restore(self, partitions: list[int]) -> dict[int, bytes]:
        """Load the checkpoints of newly assigned partitions; returns partition -> state bytes."""
        saved = await self.store.load(self.group_id, self.topics, partitions)
        states = {}
        for p in partitions:
            self._dirty.discard(p)
            for topic in self.topics:
                cp = saved.get((topic, p))
                self.restored_next[(topic, p)] = cp.next_offset if cp else 0
                self.next_offset.pop((topic, p), None)
            first = saved.get((self.topics[0], p))
            if first is not None and first.state:
                states[p] = first.state
        log.info("%s: restored %d of %d partitions", self.service, len(states), len(partitions))
        return states

    def should_skip(self, topic: str, partition: int, offset: int) -> bool:
        """True for a message already applied to the restored state."""
        return offset < self.restored_next.get((topic, partition), 0)

    def processed(self, topic: str, partition: int, offset: int) -> None:
        self.next_offset[(topic, partition)] = offset + 1
        self._dirty.add(partition)

    def touch(self, partition: int) -> None:
        """The state changed without a new input (e.g. an idle flush): include it in the next checkpoint."""
        self._dirty.add(partition)

    def due(self) -> bool:
        return bool(self._dirty) and time.monotonic() - self._last >= self.interval_s

    def _rows(self, partition: int) -> dict[tuple[str, int], Checkpoint]:
        rows = {}
        state = self._state_of(partition)
        for i, topic in enumerate(self.topics):
            key = (topic, partition)
            nxt = self.next_offset.get(key, self.restored_next.get(key))
            if nxt is None and i > 0:
                continue
            blob = state.to_bytes() if (i == 0 and state is not None) else b""
            rows[key] = Checkpoint(nxt or 0, blob)
        return rows

    async def checkpoint(
        self,
        flush_outputs: Callable[[], Awaitable[None]],
        commit: Callable[[], Awaitable[None]],
        partitions: set[int] | None = None,
    ) -> None:
        """Flush outputs -> write state + offsets -> ack/commit (given partitions, or all dirty ones)."""
        parts = sorted(self._dirty if partitions is None else self._dirty & partitions)
        self._last = time.monotonic()
        if not parts:
            return
        started = time.perf_counter()
        await flush_outputs()
        rows: dict[tuple[str, int], Checkpoint] = {}
        for p in parts:
            rows.update(self._rows(p))
        await self.store.save(self.group_id, rows)
        for key, cp in rows.items():
            self.restored_next[key] = cp.next_offset
        await commit()
        self._dirty.difference_update(parts)
        self.count += 1
        CHECKPOINTS.labels(self.service).inc()
        CHECKPOINT_SECONDS.labels(self.service).observe(time.perf_counter() - started)

    def forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self._dirty.discard(p)
            for topic in self.topics:
                self.restored_next.pop((topic, p), None)
                self.next_offset.pop((topic, p), None)
