"""The workers' delivery core (:class:`streams.apps.checkpointing.Checkpointer`) in process: restore, skip
below the checkpoint, the flush -> save -> commit order, and the sink's split take/save with outputs written
while consumption goes on. The store is an in-memory stand-in for ``sinks.checkpoints.CheckpointStore``
(which has its own integration tests against PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from sinks.checkpoints import Checkpoint, CheckpointStore
from streams.apps.checkpointing import Checkpointer, StatePartitions, Taken

Key = tuple[str, int]


class MemoryStore:
    def __init__(self, fail_saves: int = 0) -> None:
        self.rows: dict[Key, Checkpoint] = {}
        self.fail_saves = fail_saves

    async def load(
        self, group_id: str, topics: Sequence[str], partitions: Sequence[int]
    ) -> dict[Key, Checkpoint]:
        return {k: v for k, v in self.rows.items() if k[0] in topics and k[1] in partitions}

    async def save(self, group_id: str, checkpoints: Mapping[Key, Checkpoint]) -> None:
        if self.fail_saves:
            self.fail_saves -= 1
            raise ConnectionError("store down")
        self.rows.update(checkpoints)


class State:
    def __init__(self, value: bytes) -> None:
        self.value = value

    def to_bytes(self) -> bytes:
        return self.value


def _checkpointer(store: MemoryStore, states: dict[int, State], interval_s: float = 0.0) -> Checkpointer:
    return Checkpointer(
        cast(CheckpointStore, store), "svc", "grp", ["t"], interval_s, states.get, StatePartitions({"t": 2})
    )


async def test_restore_then_skip_what_the_checkpoint_covers() -> None:
    store = MemoryStore()
    store.rows[("t", 0)] = Checkpoint(5, b"s0")
    cp = _checkpointer(store, {})
    assert await cp.restore([0, 1]) == {0: b"s0"}
    assert [o for o in range(8) if cp.should_skip("t", 0, o)] == [0, 1, 2, 3, 4]
    assert not cp.should_skip("t", 1, 0), "no checkpoint: nothing is skipped"


async def test_outputs_are_flushed_before_the_offsets_are_saved_and_committed() -> None:
    store, states, calls = MemoryStore(), {0: State(b"a")}, []
    cp = _checkpointer(store, states)
    await cp.restore([0])
    cp.processed("t", 0, 9)

    async def flush() -> None:
        calls.append(("flush", dict(store.rows)))

    async def commit() -> None:
        calls.append(("commit", dict(store.rows)))

    await cp.checkpoint(flush, commit)
    assert calls == [("flush", {}), ("commit", {("t", 0): Checkpoint(10, b"a")})]
    await cp.checkpoint(flush, commit)
    assert len(calls) == 2, "nothing processed since: no checkpoint"


async def test_a_failed_flush_or_save_keeps_the_partition_for_the_next_checkpoint() -> None:
    store, states = MemoryStore(fail_saves=1), {0: State(b"a")}
    cp = _checkpointer(store, states)
    await cp.restore([0])
    cp.processed("t", 0, 3)

    async def nothing() -> None:
        return None

    async def broken() -> None:
        raise OSError("sink down")

    with pytest.raises(OSError):
        await cp.checkpoint(broken, nothing)
    with pytest.raises(ConnectionError):
        await cp.checkpoint(nothing, nothing)
    assert store.rows == {}
    await cp.checkpoint(nothing, nothing)
    assert store.rows == {("t", 0): Checkpoint(4, b"a")}


async def test_taken_rows_cover_only_what_was_handed_over_before_consumption_went_on() -> None:
    """The sink's split checkpoint: take at the hand-over, go on consuming, save once the write is done."""
    store, states = MemoryStore(), {0: State(b""), 1: State(b"")}
    cp = _checkpointer(store, states)
    await cp.restore([0, 1])
    cp.processed("t", 0, 10)
    taken = cp.take()
    assert taken is not None and taken.partitions == [0]
    cp.processed("t", 0, 11)  # consumed while the taken buffers are being written
    cp.processed("t", 1, 0)
    committed: list[Any] = []

    async def commit() -> None:
        committed.append(dict(store.rows))

    await cp.save(taken, commit)
    assert store.rows == {("t", 0): Checkpoint(11, b"")}, "not the offsets consumed after the hand-over"
    later = cp.take()
    assert later is not None and later.partitions == [0, 1]
    await cp.save(later, commit)
    assert store.rows == {("t", 0): Checkpoint(12, b""), ("t", 1): Checkpoint(1, b"")}
    assert [o for o in range(13) if cp.should_skip("t", 0, o)] == list(range(12))


async def _taken_at_offset_4() -> tuple[Checkpointer, Taken]:
    """A checkpointer of one restored partition that processed offset 4, and the rows it took."""
    cp = _checkpointer(MemoryStore(), {0: State(b"")})
    await cp.restore([0])
    cp.processed("t", 0, 4)
    taken = cp.take()
    assert taken is not None
    return cp, taken


async def test_rows_given_back_after_a_failed_write_are_saved_by_the_next_checkpoint() -> None:
    cp, taken = await _taken_at_offset_4()
    assert cp.take() is None
    cp.give_back(taken)  # the write of its buffers failed
    again = cp.take()
    assert again is not None and again.rows == {("t", 0): Checkpoint(5, b"")}


async def test_a_revoked_partition_is_not_given_back() -> None:
    cp, taken = await _taken_at_offset_4()
    cp.forget([0])
    cp.give_back(taken)
    assert cp.take() is None
