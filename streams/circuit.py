"""A circuit breaker: stop calling a failing dependency, probe it again after a cool-down.

States::

    CLOSED --(failure_threshold consecutive failures)--> OPEN --(cooldown_s elapsed, allow())--> HALF_OPEN
    HALF_OPEN --(probe succeeds)--> CLOSED        HALF_OPEN --(probe fails)--> OPEN (cool-down restarts)

While OPEN, :meth:`CircuitBreaker.allow` says no (the caller uses its fallback). The first ``allow`` after
the cool-down moves to HALF_OPEN and lets exactly one probe call through; others keep getting no until the
probe reports. A probe that never reports (its task was cancelled) is replaced by a new one after another
cool-down. Pure state machine: time comes from the injectable ``clock``; no I/O, no asyncio.

>>> t = [0.0]
>>> b = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, clock=lambda: t[0])
>>> b.record_failure(); b.state
<BreakerState.CLOSED: 'closed'>
>>> b.record_failure(); b.state, b.allow()
(<BreakerState.OPEN: 'open'>, False)
>>> t[0] = 1.0
>>> b.allow(), b.state, b.allow()
(True, <BreakerState.HALF_OPEN: 'half_open'>, False)
>>> b.record_success(); b.state, b.allow()
(<BreakerState.CLOSED: 'closed'>, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failures; one half-open probe per ``cooldown_s``."""

    def __init__(
        self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not cooldown_s >= 0.0:
            raise ValueError(f"cooldown_s must be >= 0 seconds, got {cooldown_s}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._since = clock()  # when OPEN began, or when the HALF_OPEN probe was let through
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May the caller try the dependency now? (May move OPEN -> HALF_OPEN and hand out the probe.)"""
        if self._state is BreakerState.CLOSED:
            return True
        if self._clock() - self._since < self.cooldown_s:
            return False  # OPEN and cooling down, or HALF_OPEN with its probe still out
        self._state = BreakerState.HALF_OPEN
        self._since = self._clock()
        return True

    def record_success(self) -> None:
        """A call succeeded: CLOSED (from HALF_OPEN too). A late success while OPEN changes nothing."""
        if self._state is BreakerState.OPEN:
            return
        self._state = BreakerState.CLOSED
        self._failures = 0

    def record_failure(self) -> None:
        """A call failed or timed out."""
        if self._state is BreakerState.OPEN:
            return  # a late failure of a call made before the breaker opened: keep the cool-down as is
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._since = self._clock()
            self.times_opened += 1

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self._state.value}, failures={self._failures}/{self.failure_threshold}, "
            f"cooldown_s={self.cooldown_s})"
        )
