"""A consumer's fetch wait that adapts, and the watchdog that notices a consumer starved while its log grows.

Why: a broker may give up a fetch when finding the requested offset takes longer than the fetch's
``max.wait``. The local broker (Tansu, memory storage) lists every stored record batch of the partition on
each fetch (linear in the partition's history) and answers with *no data* once that outlasts the wait
(measured: 40,000 single-record batches in one partition took 16 ms; fetches waiting 5-20 ms got nothing,
25 ms got data). A consumer with a short wait, chosen because that broker answers an empty fetch only after
the whole wait (latency), then stops for good while its lag grows: the soak stall. Real Kafka indexes
offsets and never does this, so there the wait simply stays at its floor.

:class:`FetchWait` is the policy, pure and clock-driven by its caller: look at the consumer now and then
(messages received since the last look, and whether the log has more than it has read); empty looks while
behind for ``stall_s`` (or three waits, whichever is longer) are a stall: the wait doubles, up to
``ceiling_ms``, and the stall is counted so that it can be logged and exported. The wait never shrinks again
while the process runs, because that broker's cost never does (it frees nothing); a restart starts at the
floor.

>>> w = FetchWait(floor_ms=5, ceiling_ms=40, stall_s=1.0)
>>> w.observe(0.0, got=0, behind=True), w.observe(1.5, got=0, behind=True), w.wait_ms
(None, 'raised', 10)
>>> w.observe(2.0, got=100, behind=True), w.observe(3.0, got=0, behind=False), w.observe(9.0, 0, False)
(None, None, None)
>>> [w.observe(t, got=0, behind=True) for t in (10.0, 10.5, 11.5, 13.0, 14.5)], w.wait_ms, w.stalls
([None, None, 'raised', 'raised', 'stuck'], 40, 4)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Event = Literal["raised", "stuck"]


@dataclass
class FetchWait:
    """The fetch wait policy (see the module docstring). ``wait_ms`` is the wait to use now."""

    floor_ms: int
    ceiling_ms: int = 5_000
    stall_s: float = 1.0
    wait_ms: int = field(init=False)
    stalls: int = field(default=0, init=False)
    _empty_since: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.floor_ms <= self.ceiling_ms:
            raise ValueError(
                f"fetch wait: need 0 < floor_ms <= ceiling_ms, got {self.floor_ms}, {self.ceiling_ms}"
            )
        self.wait_ms = self.floor_ms

    def observe(self, now_s: float, got: int, behind: bool) -> Event | None:
        """One look: ``got`` messages since the last look, ``behind`` when the log holds more than was read.
        Returns what changed: ``raised`` (a stall; the wait doubled), ``stuck`` (a stall at the ceiling), or
        None."""
        if got > 0 or not behind:
            self._empty_since = None
            return None
        if self._empty_since is None:
            self._empty_since = now_s
            return None
        if now_s - self._empty_since < max(self.stall_s, 3 * self.wait_ms / 1000):
            return None
        self.stalls += 1
        self._empty_since = now_s
        if self.wait_ms >= self.ceiling_ms:
            return "stuck"
        self.wait_ms = min(self.ceiling_ms, self.wait_ms * 2)
        return "raised"
