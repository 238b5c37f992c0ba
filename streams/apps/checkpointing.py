"""Per-partition state checkpoints for Faust services, stored with the consumed offsets in PostgreSQL.

The order at every checkpoint (as Quix Streams documents it): flush sinks -> flush the producer (outputs
acknowledged) -> write state + next offsets (one PostgreSQL transaction) -> commit offsets to Kafka.

Restore on assignment: the state is loaded and the partition's checkpointed next offset remembered; Kafka's
committed offset is never ahead of it, so any message below it that Faust re-delivers was already applied to
the restored state and is skipped (``should_skip``). Nothing depends on the broker's end offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from sinks.checkpoints import Checkpoint, CheckpointStore
from streams.metrics import CHECKPOINTS

log = logging.getLogger("stockpulse.checkpoint")


class PartitionState(Protocol):
    """What a service keeps per partition: it serializes to bytes and back."""

    def to_bytes(self) -> bytes: ...


class Checkpointer:
    """Tracks processed offsets per partition and writes checkpoints on an interval."""

    def __init__(
        self,
        store: CheckpointStore,
        service: str,
        group_id: str,
        topic: str,
        interval_s: float,
        state_of: Callable[[int], PartitionState],
    ) -> None:
        self.store = store
        self.service = service
        self.group_id = group_id
        self.topic = topic
        self.interval_s = interval_s
        self._state_of = state_of
        self.restored_next: dict[int, int] = {}
        self.next_offset: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._last = time.monotonic()
        self.count = 0

    async def restore(self, partitions: list[int]) -> dict[int, bytes]:
        """Load the checkpoints of newly assigned partitions; returns partition -> state bytes."""
        saved = await self.store.load(self.group_id, self.topic, partitions)
        for p in partitions:
            cp = saved.get(p)
            self.restored_next[p] = cp.next_offset if cp else 0
            self.next_offset.pop(p, None)
            self._dirty.discard(p)
        log.info("%s: restored %d of %d partitions", self.service, len(saved), len(partitions))
        return {p: cp.state for p, cp in saved.items()}

    def should_skip(self, partition: int, offset: int) -> bool:
        """True for a message already applied to the restored state."""
        return offset < self.restored_next.get(partition, 0)

    def processed(self, partition: int, offset: int) -> None:
        self.next_offset[partition] = offset + 1
        self._dirty.add(partition)

    def touch(self, partition: int) -> None:
        """The state changed without a new input (e.g. an idle flush): include it in the next checkpoint."""
        if partition not in self.next_offset and partition in self.restored_next:
            self.next_offset[partition] = self.restored_next[partition]
        if partition in self.next_offset:
            self._dirty.add(partition)

    def due(self) -> bool:
        return bool(self._dirty) and time.monotonic() - self._last >= self.interval_s

    async def checkpoint(
        self,
        flush_outputs: Callable[[], Awaitable[None]],
        commit: Callable[[dict[int, int]], Awaitable[None]],
        partitions: set[int] | None = None,
    ) -> None:
        """Flush outputs -> write state + offsets -> commit offsets (given partitions, or all dirty ones)."""
        parts = sorted(self._dirty if partitions is None else self._dirty & partitions)
        self._last = time.monotonic()
        if not parts:
            return
        await flush_outputs()
        await self.store.save(
            self.group_id,
            self.topic,
            {p: Checkpoint(self.next_offset[p], self._state_of(p).to_bytes()) for p in parts},
        )
        for p in parts:
            self.restored_next[p] = self.next_offset[p]
        await commit({p: self.next_offset[p] for p in parts})
        self._dirty.difference_update(parts)
        self.count += 1
        CHECKPOINTS.labels(self.service).inc()

    def forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self.restored_next.pop(p, None)
            self.next_offset.pop(p, None)
            self._dirty.discard(p)
