"""The circuit breaker's state machine (pure: a fake clock, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.circuit import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _breaker(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(threshold, cooldown, clock=clock), clock


def test_opens_after_n_consecutive_failures_only() -> None:
    b, _ = _breaker(threshold=3)
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the count
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.times_opened == 1
    assert not b.allow()


def test_half_open_after_cooldown_lets_exactly_one_probe_through() -> None:
    b, clock = _breaker(threshold=1, cooldown=10.0)
    b.record_failure()
    clock.now = 9.999
    assert not b.allow()
    clock.now = 10.0
    assert b.allow()
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow() and not b.allow()  # the probe is out


def test_probe_success_closes() -> None:
    b, clock = _breaker(threshold=1, cooldown=1.0)
    b.record_failure()
    clock.now = 1.0
    assert b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.consecutive_failures == 0
    assert b.allow()


def test_probe_failure_reopens_and_restarts_the_cooldown() -> None:
    b, clock = _breaker(threshold=2, cooldown=1.0)
    b.record_failure()
    b.record_failure()
    clock.now = 5.0
    assert b.allow()
    b.record_failure()  # one failure is enough in half-open
    assert b.state is BreakerState.OPEN and b.times_opened == 2
    clock.now = 5.5
    assert not b.allow()
    clock.now = 6.0
    assert b.allow()


def test_a_lost_probe_is_replaced_after_another_cooldown() -> None:
    b, clock = _breaker(threshold=1, cooldown=1.0)
    b.record_failure()
    clock.now = 1.0
    assert b.allow()  # probe handed out, never reports
    clock.now = 1.5
    assert not b.allow()
    clock.now = 2.0
    assert b.allow()
    assert b.state is BreakerState.HALF_OPEN


def test_late_results_while_open_change_nothing() -> None:
    b, clock = _breaker(threshold=1, cooldown=1.0)
    b.record_failure()
    clock.now = 0.5
    b.record_success()  # a call made before the breaker opened
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.times_opened == 1
    clock.now = 1.0  # the cool-down was not extended by the late failure
    assert b.allow()


def test_zero_cooldown_probes_at_once() -> None:
    b, _ = _breaker(threshold=1, cooldown=0.0)
    b.record_failure()
    assert b.allow() and b.state is BreakerState.HALF_OPEN


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0), (1, float("nan"))])
def test_bad_parameters_are_refused(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(threshold, cooldown)


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.integers(1, 5),
    events=st.lists(st.tuples(st.sampled_from(["ok", "fail", "allow"]), st.floats(0.0, 3.0)), max_size=60),
)
def test_against_a_reference_model(threshold: int, events: list[tuple[str, float]]) -> None:
    """Random event sequences: the breaker agrees with a straightforward reference implementation."""
    cooldown = 2.0
    b, clock = _breaker(threshold, cooldown)
    state, failures, since = "closed", 0, 0.0
    for event, dt in events:
        clock.now += dt
        now = clock.now
        if event == "allow":
            expected = state == "closed" or now - since >= cooldown
            if state != "closed" and expected:
                state, since = "half_open", now
            assert b.allow() is expected
        elif event == "ok":
            if state != "open":
                state, failures = "closed", 0
            b.record_success()
        else:
            if state != "open":
                failures += 1
                if state == "half_open" or failures >= threshold:
                    state, since = "open", now
            b.record_failure()
        assert b.state.value == state
