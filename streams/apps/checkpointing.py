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
from typing import Literal, Protocol

from sinks.checkpoints import Checkpoint, CheckpointStore
from streams.metrics import CHECKPOINT_RESETS, CHECKPOINT_SECONDS, CHECKPOINTS

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


Key = tuple[str, int]
OnStale = Literal["stop", "earliest", "latest"]


class StaleCheckpointError(RuntimeError):
    """Checkpoints that point into another log than the one there now; the message says what to do."""


def stale_checkpoints(
    saved: Mapping[Key, Checkpoint], log_ids: Mapping[str, str], ends: Mapping[Key, int]
) -> dict[Key, str]:
    """The checkpoints that do not describe the log there now: (topic, partition) -> why.

    A checkpoint is stale when it names another topic id than the broker's (the topic was deleted and
    re-created, the broker lost its storage, or this is another cluster), or when the log is empty while the
    checkpoint is past offset 0. (Only an empty log is compared with the offset: a broker may report its end
    too low, as the local one does after batched produce, so a general "beyond the end" test would misfire.)

    >>> saved = {("t", 0): Checkpoint(5, b"", "A"), ("t", 1): Checkpoint(7, b"", "A")}
    >>> saved[("u", 0)] = Checkpoint(3, b"")
    >>> stale = stale_checkpoints(saved, {"t": "B"}, {("t", 1): 9, ("u", 0): 0})
    >>> sorted(stale)
    [('t', 0), ('t', 1), ('u', 0)]
    >>> stale[("u", 0)]
    'its log is empty but the checkpoint is at offset 3'
    >>> stale_checkpoints(saved, {"t": "A"}, {("t", 0): 5, ("u", 0): 2})
    {}
    """
    out: dict[Key, str] = {}
    for key, cp in saved.items():
        now = log_ids.get(key[0], "")
        if cp.log_id and now and cp.log_id != now:
            out[key] = (
                f"the topic's id changed from {cp.log_id} to {now} (deleted and re-created, a broker that "
                "lost its storage, or another cluster)"
            )
        elif ends.get(key) == 0 and cp.next_offset > 0:
            out[key] = f"its log is empty but the checkpoint is at offset {cp.next_offset}"
    return out


def stale_message(service: str, group_id: str, stale: Mapping[Key, str]) -> str:
    """What a service says when it stops on stale checkpoints: the partitions, why, and the way out.

    >>> msg = stale_message("engine", "g-engine", {("ticks", 3): "its log is empty", ("ticks", 0): "x"})
    >>> msg[msg.index("broker's"):msg.index(". Nothing")]
    "broker's: ticks[0]: x; ticks[3]: its log is empty"
    >>> msg[msg.index("Reset"):msg.index(", or")]
    'Reset them with `stockpulse checkpoints reset --group g-engine --topic ticks --partitions 0,3`'
    """
    keys = sorted(stale)
    what = "; ".join(f"{t}[{p}]: {stale[(t, p)]}" for t, p in keys)
    topics = sorted({t for t, _ in keys})
    resets = " and ".join(
        f"`stockpulse checkpoints reset --group {group_id} --topic {t} --partitions "
        f"{','.join(str(p) for tt, p in keys if tt == t)}`"
        for t in topics
    )
    return (
        f"{service}: checkpoints of group {group_id} point into another log than the broker's: {what}. "
        f"Nothing was skipped. Reset them with {resets}, or set STOCKPULSE_CHECKPOINT__ON_STALE_LOG=earliest "
        "(re-read those partitions from their start) or =latest (go on from their end)"
    )


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
    {('t', 1): Checkpoint(next_offset=8, state=b'', log_id='')}
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
        self.log_ids: dict[str, str] = {}  # topic -> the id of the log this book's offsets point into
        self._restarted: set[Key] = set()  # stale checkpoints replaced: to be saved at the next checkpoint
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
            if any(key in self._restarted for key in self.partitions.members(q)):
                self._dirty.add(q)
        self._restarted.difference_update(k for q in partitions for k in self.partitions.members(q))
        return states

    def check_logs(
        self,
        saved: Mapping[Key, Checkpoint],
        log_ids: Mapping[str, str],
        ends: Mapping[Key, int],
        on_stale: OnStale,
        service: str,
        group_id: str,
    ) -> tuple[dict[Key, Checkpoint], dict[Key, str]]:
        """Before :meth:`restored`: compare the saved checkpoints with the logs there now (their ids are kept
        for the next checkpoints). Stale ones stop the service (``on_stale`` ``stop``: raises
        :class:`StaleCheckpointError`) or get the start (``earliest``) or the reported end (``latest``) of
        the log there now as their offset, logged and counted; their state is kept, so sequence numbers go
        on and nothing stored downstream is taken for a re-delivery. Returns the checkpoints to restore (the
        caller seeks to their offsets) and the stale ones."""
        self.log_ids.update(log_ids)
        stale = stale_checkpoints(saved, log_ids, ends)
        if not stale:
            return dict(saved), {}
        if on_stale == "stop":
            raise StaleCheckpointError(stale_message(service, group_id, stale))
        for (topic, part), why in sorted(stale.items()):
            log.warning(
                "%s: offset of the checkpoint of %s[%d] dropped (state kept): %s; reading from its %s "
                "(STOCKPULSE_CHECKPOINT__ON_STALE_LOG)",
                service,
                topic,
                part,
                why,
                "start" if on_stale == "earliest" else "end",
            )
            CHECKPOINT_RESETS.labels(service, topic, on_stale).inc()
        start = {k: (0 if on_stale == "earliest" else ends.get(k, 0)) for k in stale}
        self._restarted.update(stale)  # saved again at the next checkpoint, with the new log's id
        return {k: (Checkpoint(start[k], v.state) if k in stale else v) for k, v in saved.items()}, stale

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
            rows[key] = Checkpoint(nxt or 0, blob, self.log_ids.get(key[0], ""))
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
        logs: Callable[[list[Key]], Awaitable[tuple[dict[str, str], dict[Key, int]]]] | None = None,
        on_stale: OnStale = "stop",
    ) -> None:
        super().__init__(topics, partitions, interval_s, state_of)
        self.store = store
        self.service = service
        self.group_id = group_id
        self.count = 0
        self._logs = logs
        self.on_stale: OnStale = on_stale
        self.stale: dict[Key, str] = {}  # of the last restore: the caller seeks these

    async def restore(self, partitions: list[int]) -> dict[int, bytes]:
        """Load the checkpoints of newly assigned state partitions (checked against the logs there now, see
        :meth:`check_logs`; the stale ones are left in ``stale``); returns state partition -> state bytes."""
        saved = await self.store.load(self.group_id, self.topics, self.input_partitions(partitions))
        self.stale = {}
        if self._logs is not None:
            keys = [key for q in partitions for key in self.partitions.members(q)]
            ids, ends = await self._logs(keys)
            saved, self.stale = self.check_logs(saved, ids, ends, self.on_stale, self.service, self.group_id)
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
