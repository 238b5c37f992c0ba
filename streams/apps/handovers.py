"""The sink's hand-overs (pure asyncio): each checkpoint hands its buffers over as one write per store, and
the checkpoint itself is saved once every store has written its part.

Each store writes its parts in hand-over order, independently of the other stores: a slow or failing store
delays only its own writes and the checkpoints (they cover only what every store holds), never the other
stores. Checkpoints are saved in hand-over order, and one is never saved after an earlier one failed (its
records might be missing). At most ``limit`` hand-overs are pending: the next one waits for the oldest
(backpressure, not loss).

>>> async def demo() -> list[str]:
...     log: list[str] = []
...     slow = asyncio.Event()
...     async def write(name: str, gate: asyncio.Event | None = None) -> None:
...         if gate is not None:
...             await gate.wait()
...         log.append(name)
...     async def save(n: int) -> None:
...         log.append(f"checkpoint {n}")
...     h = HandOvers(limit=3)
...     first = {"redis": lambda: write("redis 1"), "clickhouse": lambda: write("ch 1", slow)}
...     await h.submit(first, lambda: save(1))
...     second = {"redis": lambda: write("redis 2"), "clickhouse": lambda: write("ch 2")}
...     await h.submit(second, lambda: save(2))
...     await asyncio.sleep(0.01)  # redis has written both hand-overs; clickhouse is stuck on the first
...     log.append("clickhouse released")
...     slow.set()
...     await h.settle()
...     return log
>>> log = asyncio.run(demo())
>>> log[:3]
['redis 1', 'redis 2', 'clickhouse released']
>>> at = {entry: i for i, entry in enumerate(log)}
>>> at["ch 1"] < at["ch 2"], at["ch 1"] < at["checkpoint 1"] < at["checkpoint 2"]
(True, True)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

Step = Callable[[], Awaitable[None]]


class HandOvers:
    """Per-store write chains and in-order checkpoints (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit={limit}: at least one hand-over must be allowed")
        self.limit = limit
        self._last_write: dict[str, asyncio.Task[None]] = {}
        self._saves: deque[asyncio.Task[None]] = deque()

    @property
    def pending(self) -> int:
        return len(self._saves)

    async def submit(
        self, writes: Mapping[str, Step], finish: Step, abandon: Callable[[], None] = lambda: None
    ) -> None:
        """Schedule one hand-over: ``writes`` (store -> its write, after that store's earlier ones) and then
        ``finish`` (after every write of this hand-over and every earlier finish), or ``abandon`` when a write
        or an earlier hand-over failed. Waits while ``limit`` hand-overs are pending; raises the failure of
        one that failed."""
        while len(self._saves) >= self.limit:
            await self._oldest()
        tasks = []
        for store, write in writes.items():
            task = asyncio.create_task(self._after(self._last_write.get(store), write))
            self._last_write[store] = task
            tasks.append(task)
        previous = self._saves[-1] if self._saves else None
        self._saves.append(asyncio.create_task(self._finish(previous, tasks, finish, abandon)))

    async def settle(self) -> None:
        """Wait for every pending hand-over; raises the first failure."""
        while self._saves:
            await self._oldest()

    async def _oldest(self) -> None:
        """Wait for the oldest pending hand-over. A failed one stays, so every later call raises it too, and
        the later ones (which fail with it) are collected so that no failure goes unretrieved."""
        try:
            await self._saves[0]
        except BaseException:
            await asyncio.gather(*self._saves, return_exceptions=True)
            raise
        self._saves.popleft()

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, step: Step) -> None:
        if previous is not None:
            await previous  # in order per store; an earlier failure stops the chain
        await step()

    @staticmethod
    async def _finish(
        previous: asyncio.Task[None] | None,
        writes: list[asyncio.Task[None]],
        step: Step,
        abandon: Callable[[], None],
    ) -> None:
        results = await asyncio.gather(*writes, return_exceptions=True)
        try:
            if previous is not None:
                await previous  # checkpoints in order, never one after a failed one
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except BaseException:
            abandon()
            raise
        await step()
