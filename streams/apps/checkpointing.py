"""Per-partition state checkpoints for Faust services, stored with the consumed offsets in PostgreSQL.

The order at every checkpoint (as Quix Streams documents it): flush sinks -> flush the producer (outputs
acknowledged) -> write state + next offsets of every input topic (one PostgreSQL statement, so all rows or
none) -> acknowledge the events to Faust and commit offsets to Kafka.

Services read one or more topics. State is kept per *state partition*: by default the partition number (the
inputs are co-partitioned: partition ``p`` of each carries the same symbols). A service whose inputs have
different partition counts and must see a symbol's records of all of them in one state (the order service:
``signals`` and ``ticks``) keys its state by ``murmur2(symbol) % n`` with ``n`` the smallest count, which
every other count is a multiple of: input partition ``p`` then holds only symbols of state partition
``p % n`` (:class:`StatePartitions`). The state of state partition ``q`` is stored on the row of
``(first topic, q)``; every input partition's row holds its next offset.

Restore on assignment: the state is loaded and each topic-partition's checkpointed next offset remembered.
Events are acknowledged only after a checkpoint, so Kafka's committed offset never passes it; a message below
the checkpoint that is delivered again was already applied to the restored state and is skipped
(``should_skip``). Nothing depends on the broker's end offsets.

A service that writes its outputs while it goes on consuming (the sink) splits a checkpoint in two:
:meth:`Checkpointer.take` records the rows as of the point its buffers were handed over, and
:meth:`Checkpointer.save` writes them once those buffers are durable; rows that could not be saved are given
back (their partitions dirty again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sinks.checkpoints import Checkpoint, CheckpointStore
from streams.metrics import CHECKPOINT_SECONDS, CHECKPOINTS

log = logging.getLogger("stockpulse.checkpoint")


class PartitionState(Protocol):
    """What a service keeps per partition: it serializes to bytes and back."""

    def to_bytes(self) -> bytes: ...


class PartitionCountError(ValueError):
    """Topic partition counts that cannot work together; the message names the settings to change."""


class StatePartitions:
    """Which input partitions make up each state partition of a service.

    >>> sp = StatePartitions({"signals": 12, "ticks": 24}, colocated=True)
    >>> sp.count, sp.of(15), sp.members(3)
    (12, 3, [('signals', 3), ('ticks', 3), ('ticks', 15)])
    >>> StatePartitions({"bars": 12}).members(3)
    [('bars', 3)]
    >>> StatePartitions({"signals": 12, "ticks": 20}, colocated=True, settings={"ticks": "TICK_PARTITIONS"})
    Traceback (most recent call last):
    ...
    streams.apps.checkpointing.PartitionCountError: ticks has 20 partitions, not a multiple of the 12 ...
    """

    def __init__(
        self, counts: dict[str, int], colocated: bool = False, settings: dict[str, str] | None = None
    ) -> None:
        self.counts = dict(counts)
        self.colocated = colocated and len(set(counts.values())) > 1
        self.count = min(counts.values()) if self.colocated else max(counts.values())
        if self.colocated:
            smallest = min(counts, key=lambda t: counts[t])
            names = settings or {}
            for topic, n in counts.items():
                if n % self.count:
                    raise PartitionCountError(
                        f"{topic} has {n} partitions, not a multiple of the {self.count} of {smallest}: "
                        "a symbol's records of both must meet in one state. Set STOCKPULSE_TOPICS__"
                        f"{names.get(topic, 'TICK_PARTITIONS')} to a multiple of {self.count} (or equal to "
                        "it) and recreate the topics"
                    )

    def of(self, partition: int) -> int:
        """The state partition of an input partition."""
        return partition % self.count if self.colocated else partition

    def members(self, state_partition: int) -> list[tuple[str, int]]:
        """The input (topic, partition)s whose records belong to a state partition."""
        if not self.colocated:
            return [(t, state_partition) for t in self.counts]
        return [(t, p) for t, n in self.counts.items() for p in range(state_partition, n, self.count)]


@dataclass(frozen=True, slots=True)
class Taken:
    """Checkpoint rows taken at one point of the input (:meth:`Checkpointer.take`), not yet saved."""

    rows: dict[tuple[str, int], Checkpoint]
    partitions: list[int]


class DeliveryBook:
    """The delivery core without I/O, shared by the Faust workers (:class:`Checkpointer`) and the
    confluent-kafka feed: the next offset of every input topic-partition, what to skip after a restore, which
    state partitions changed since their last saved checkpoint, and the rows to save (:meth:`take`, then
    :meth:`saved` once written, or :meth:`give_back`).

    >>> book = DeliveryBook(["t"], StatePartitions({"t": 2}), 0.0, lambda p: None)
    >>> book.restored([0, 1], {("t", 0): Checkpoint(5, b"s")})
    {0: b's'}
    >>> book.should_skip("t", 0, 4), book.should_skip("t", 0, 5)
    (True, False)
    >>> book.processed("t", 1, 7); taken = book.take(); taken.rows
    {('t', 1): Checkpoint(next_offset=8, state=b'')}
    >>> book.take() is None, book.saved(taken), book.should_skip("t", 1, 7)
    (True, None, True)
    """

    def __init__(
        self,
        topics: list[str],
        partitions: StatePartitions,
        interval_s: float,
        state_of: Callable[[int], PartitionState | None],
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.interval_s = interval_s
        self._state_of = state_of
        self.restored_next: dict[tuple[str, int], int] = {}
        self.next_offset: dict[tuple[str, int], int] = {}
        self._dirty: set[int] = set()
        self._last = time.monotonic()

    def input_partitions(self, partitions: list[int]) -> list[int]:
        """The input partition numbers whose checkpoints make up these state partitions."""
        return sorted({p for q in partitions for _, p in self.partitions.members(q)})

    def restored(
        self, partitions: list[int], saved: Mapping[tuple[str, int], Checkpoint]
    ) -> dict[int, bytes]:
        """Take over newly assigned state partitions from their ``saved`` checkpoints; returns state
        partition -> state bytes (those that have a state)."""
        states = {}
        for q in partitions:
            self._dirty.discard(q)
            for key in self.partitions.members(q):
                cp = saved.get(key)
                self.restored_next[key] = cp.next_offset if cp else 0
                self.next_offset.pop(key, None)
            first = saved.get((self.topics[0], q))
            if first is not None and first.state:
                states[q] = first.state
        return states

    def should_skip(self, topic: str, partition: int, offset: int) -> bool:
        """True for a message already applied to the restored state."""
        return offset < self.restored_next.get((topic, partition), 0)

    def position(self, topic: str, partition: int) -> int:
        """The next offset to apply (0 when the partition has neither a checkpoint nor a message yet)."""
        key = (topic, partition)
        return self.next_offset.get(key, self.restored_next.get(key, 0))

    def processed(self, topic: str, partition: int, offset: int) -> None:
        self.next_offset[(topic, partition)] = offset + 1
        self._dirty.add(self.partitions.of(partition))

    def touch(self, partition: int) -> None:
        """Include the partition in the next checkpoint without a new input (the sink's buffered records)."""
        self._dirty.add(partition)

    def due(self) -> bool:
        return bool(self._dirty) and time.monotonic() - self._last >= self.interval_s

    def _rows(self, partition: int) -> dict[tuple[str, int], Checkpoint]:
        rows = {}
        state = self._state_of(partition)
        first = (self.topics[0], partition)
        for key in self.partitions.members(partition):
            nxt = self.next_offset.get(key, self.restored_next.get(key))
            if nxt is None and key != first:
                continue
            blob = state.to_bytes() if (key == first and state is not None) else b""
            rows[key] = Checkpoint(nxt or 0, blob)
        return rows

    def take(self, partitions: set[int] | None = None) -> Taken | None:
        """The checkpoint rows (state + next offsets) of the dirty partitions as of now, which are then
        clean; None when nothing changed. Save them once their outputs are durable, then :meth:`saved`."""
        parts = sorted(self._dirty if partitions is None else self._dirty & partitions)
        self._last = time.monotonic()
        if not parts:
            return None
        rows: dict[tuple[str, int], Checkpoint] = {}
        for p in parts:
            rows.update(self._rows(p))
        self._dirty.difference_update(parts)
        return Taken(rows, parts)

    def saved(self, taken: Taken) -> None:
        """The taken rows are written: what they cover is never applied again (partitions still assigned)."""
        for key, cp in taken.rows.items():
            if key in self.restored_next or key in self.next_offset:
                self.restored_next[key] = max(self.restored_next.get(key, 0), cp.next_offset)

    def give_back(self, taken: Taken) -> None:
        """Rows that could not be saved: their partitions (those still assigned) are dirty again."""
        self._dirty.update(p for p in taken.partitions if p in self._live())

    def _live(self) -> set[int]:
        """State partitions still assigned (their offsets are tracked)."""
        return {self.partitions.of(p) for _, p in (*self.restored_next, *self.next_offset)}

    def forget(self, partitions: list[int]) -> None:
        for q in partitions:
            self._dirty.discard(q)
            for key in self.partitions.members(q):
                self.restored_next.pop(key, None)
                self.next_offset.pop(key, None)


class Checkpointer(DeliveryBook):
    """The delivery core of the Faust workers: the book plus the checkpoint store, on an interval."""

    def __init__(
        self,
        store: CheckpointStore,
        service: str,
        group_id: str,
        topics: list[str],
        interval_s: float,
        state_of: Callable[[int], PartitionState | None],
        partitions: StatePartitions,
    ) -> None:
        super().__init__(topics, partitions, interval_s, state_of)
        self.store = store
        self.service = service
        self.group_id = group_id
        self.count = 0

    async def restore(self, partitions: list[int]) -> dict[int, bytes]:
        """Load the checkpoints of newly assigned state partitions; returns state partition -> state bytes."""
        saved = await self.store.load(self.group_id, self.topics, self.input_partitions(partitions))
        states = self.restored(partitions, saved)
        log.info("%s: restored %d of %d partitions", self.service, len(states), len(partitions))
        return states

    async def checkpoint(
        self,
        flush_outputs: Callable[[], Awaitable[None]],
        commit: Callable[[], Awaitable[None]],
        partitions: set[int] | None = None,
    ) -> None:
        """Flush outputs -> write state + offsets -> ack/commit (given partitions, or all dirty ones)."""
        taken = self.take(partitions)
        if taken is None:
            return
        started = time.perf_counter()
        try:
            await flush_outputs()
        except BaseException:
            self.give_back(taken)
            raise
        await self.save(taken, commit, started)

    async def save(
        self, taken: Taken, commit: Callable[[], Awaitable[None]], started: float | None = None
    ) -> None:
        """Write taken rows (one statement: all or none), then ack/commit. A failure marks the partitions
        dirty again, so the next checkpoint retries them."""
        started = time.perf_counter() if started is None else started
        try:
            await self.store.save(self.group_id, taken.rows)
        except BaseException:
            self.give_back(taken)
            raise
        self.saved(taken)
        await commit()
        self.count += 1
        CHECKPOINTS.labels(self.service).inc()
        CHECKPOINT_SECONDS.labels(self.service).observe(time.perf_counter() - started)
