"""The sink's hand-over ordering (streams.apps.handovers) in process: a slow store holds back only its own
writes and the checkpoints; at most ``limit`` hand-overs wait; a failed write stops every later checkpoint."""

from __future__ import annotations

import asyncio

import pytest

from streams.apps.handovers import HandOvers


def _step(log: list[str], name: str, gate: asyncio.Event | None = None, fail: bool = False):  # type: ignore[no-untyped-def]
    async def run() -> None:
        if gate is not None:
            await gate.wait()
        if fail:
            raise OSError(f"{name} failed")
        log.append(name)

    return run


async def test_a_slow_store_holds_back_the_checkpoints_but_not_the_other_stores() -> None:
    log: list[str] = []
    slow = asyncio.Event()
    h = HandOvers(limit=4)
    for n in (1, 2, 3):
        gate = slow if n == 1 else None
        writes = {"redis": _step(log, f"redis {n}"), "clickhouse": _step(log, f"ch {n}", gate)}
        await h.submit(writes, _step(log, f"checkpoint {n}"))
    await asyncio.sleep(0.01)
    assert log == ["redis 1", "redis 2", "redis 3"], "clickhouse 1 is stuck: no checkpoint, redis goes on"
    slow.set()
    await h.settle()
    assert [x for x in log if x.startswith("checkpoint")] == ["checkpoint 1", "checkpoint 2", "checkpoint 3"]
    assert all(log.index(f"ch {n}") < log.index(f"checkpoint {n}") for n in (1, 2, 3))


async def test_the_next_hand_over_waits_while_limit_are_pending() -> None:
    log: list[str] = []
    slow = asyncio.Event()
    h = HandOvers(limit=2)
    await h.submit({"ch": _step(log, "ch 1", slow)}, _step(log, "checkpoint 1"))
    await h.submit({"ch": _step(log, "ch 2")}, _step(log, "checkpoint 2"))
    third = asyncio.create_task(h.submit({"ch": _step(log, "ch 3")}, _step(log, "checkpoint 3")))
    await asyncio.sleep(0.01)
    assert not third.done() and h.pending == 2, "backpressure: the sink waits for the slow store"
    slow.set()
    await third
    await h.settle()
    assert [x for x in log if x.startswith("checkpoint")] == ["checkpoint 1", "checkpoint 2", "checkpoint 3"]
    assert [x for x in log if x.startswith("ch ")] == ["ch 1", "ch 2", "ch 3"]


async def test_a_failed_write_abandons_its_checkpoint_and_every_later_one() -> None:
    log: list[str] = []
    abandoned: list[int] = []
    h = HandOvers(limit=4)
    await h.submit(
        {"pg": _step(log, "pg 1", fail=True)}, _step(log, "checkpoint 1"), lambda: abandoned.append(1)
    )
    await h.submit({"redis": _step(log, "redis 2")}, _step(log, "checkpoint 2"), lambda: abandoned.append(2))
    with pytest.raises(OSError, match="pg 1 failed"):
        await h.settle()
    with pytest.raises(OSError, match="pg 1 failed"):
        await h.settle()
    assert "checkpoint 1" not in log and "checkpoint 2" not in log, "never a checkpoint past missing records"
    assert sorted(abandoned) == [1, 2]


def test_at_least_one_hand_over() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HandOvers(limit=0)
