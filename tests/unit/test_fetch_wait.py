"""The adaptive fetch wait (streams.fetch_wait): when it counts a stall, how far it raises the wait."""

from __future__ import annotations

import pytest

from streams.config import Settings
from streams.fetch_wait import FetchWait


def test_empty_looks_count_as_a_stall_only_while_behind_and_for_long_enough() -> None:
    w = FetchWait(floor_ms=5, ceiling_ms=5_000, stall_s=1.0)
    assert [w.observe(t, 0, behind=False) for t in (0.0, 5.0, 10.0)] == [None, None, None]
    assert w.observe(10.5, 0, behind=True) is None and w.observe(11.4, 0, behind=True) is None
    assert w.observe(11.6, 0, behind=True) == "raised" and w.wait_ms == 10
    assert w.observe(12.0, 7, behind=True) is None  # data: the clock restarts
    assert w.observe(12.5, 0, behind=True) is None and w.observe(13.4, 0, behind=True) is None
    assert w.observe(13.5, 0, behind=True) == "raised" and (w.wait_ms, w.stalls) == (20, 2)


def test_a_long_wait_needs_three_empty_waits_before_it_is_called_a_stall() -> None:
    w = FetchWait(floor_ms=1_000, ceiling_ms=4_000, stall_s=1.0)
    w.observe(0.0, 0, behind=True)
    assert w.observe(2.9, 0, behind=True) is None
    assert w.observe(3.0, 0, behind=True) == "raised" and w.wait_ms == 2_000
    assert w.observe(9.0, 0, behind=True) == "raised" and w.wait_ms == 4_000
    assert w.observe(21.0, 0, behind=True) == "stuck" and w.wait_ms == 4_000 and w.stalls == 3


def test_the_settings_give_the_ceiling_and_the_stall_time() -> None:
    s = Settings(fetch={"ceiling_ms": 40, "stall_ms": 250})
    w = s.fetch.policy(10)
    assert (w.floor_ms, w.ceiling_ms, w.stall_s, w.wait_ms) == (10, 40, 0.25, 10)
    assert Settings(fetch={"ceiling_ms": 5}).fetch.policy(10).ceiling_ms == 10  # never below the floor
    with pytest.raises(ValueError, match="floor_ms"):
        FetchWait(floor_ms=0)
