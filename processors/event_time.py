"""Event time: when a bar closes, when a tick is late, and when the feed sends watermarks (pure code).

The model, as the README's "Event time" section tells it:

* A bar ``[start, start + tf)`` of a symbol closes once that symbol's **event time** has passed its end by the
  **allowed lateness** (``allowed_lateness_us``, default 0). The event time is the newest of the symbol's own
  tick times and the watermarks its partition received. Until the bar closes, its ticks are merged in
  whatever order they come; a tick whose bar has closed is **late**: counted, dead-lettered as ``late_tick``
  with the bar it missed, never merged or dropped silently.
* **Live** symbols (ticks stamped near the wall clock) also follow the feed's clock: whenever the feed has
  read everything on its input, it publishes a **watermark** ``now - max_delay_us`` in-band on each
  ``ticks`` partition (once per bar boundary, as the watermark reaches it). So a live bar closes at
  ``end + max delay + lateness`` of wall time even if its symbol never trades again, and a tick that
  reaches the feed within ``max_delay_us`` of its timestamp is never late. Because the watermark travels
  behind the ticks in the same partition, a slow consumer never closes a bar before it has seen the bar's
  ticks.
* **Replay** symbols (event time far from the wall clock) follow their own ticks only; the end of a replay
  (an ``EndOfStream`` message, sent by ``stockpulse replay`` and the demo) closes their open bars.
* Which symbols are live is read from the data: ``mode="auto"`` (the default) calls a symbol live when its
  newest tick is at most ``live_window_us`` older than the feed's clock when it read it; ``mode="live"`` or
  ``"replay"`` decides for every symbol.

>>> policy = EventTimePolicy(max_delay_us=200_000)  # defaults: see streams.config.EventTimeSettings
>>> policy.is_live(newest_ts_us=1_000_000_000, now_us=1_000_050_000)  # 50 ms behind the clock
True
>>> policy.is_live(newest_ts_us=1_000_000, now_us=1_700_000_000_000_000)  # a recording from 1970
False
>>> policy.watermark(now_us=1_000_050_000)
999850000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["auto", "live", "replay"]
MODES: tuple[Mode, ...] = ("auto", "live", "replay")


@dataclass(frozen=True, slots=True)
class EventTimePolicy:
    """The event-time settings (``STOCKPULSE_EVENT_TIME__*``: :class:`streams.config.EventTimeSettings`)."""

    mode: Mode = "auto"
    allowed_lateness_us: int = 0
    max_delay_us: int = 250_000
    live_window_us: int = 60_000_000
    watermark_interval_us: int = 100_000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"event-time mode {self.mode!r} is not one of {MODES}")
        for name in ("allowed_lateness_us", "max_delay_us", "live_window_us"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.watermark_interval_us <= 0:
            raise ValueError(f"watermark_interval_us must be > 0, got {self.watermark_interval_us}")

    def is_live(self, newest_ts_us: int, now_us: int) -> bool:
        """Whether a symbol whose newest tick is ``newest_ts_us`` (read at ``now_us``) follows the clock."""
        if self.mode == "auto":
            return newest_ts_us >= now_us - self.live_window_us
        return self.mode == "live"

    def watermark(self, now_us: int) -> int:
        """The live watermark at wall time ``now_us``: ticks stamped before it should have arrived."""
        return now_us - self.max_delay_us


@dataclass(slots=True)
class WatermarkSchedule:
    """Which ``ticks`` partitions the feed sends a watermark on, and when (pure bookkeeping, clock in µs).

    A partition needs watermarks while it may hold an open live bar: from a live tick until the longest bar
    that tick can be in has ended, plus the delay and the lateness (``hold_us``). After a restart the
    partitions the feed's checkpoint says were live are covered for that long, so bars opened before a crash
    still close on time. A watermark is worth sending only when it passes a bar boundary (of any of
    ``timeframes_us``, plus the lateness) that the partition's previous one did not: so about once per
    shortest bar. Checked at most every ``interval_us`` and also right when the watermark reaches the next
    bar boundary (:meth:`wait_us` tells the feed how long it may wait for input), so a quiet live bar closes
    as soon as the watermark passes its end, not up to an interval later.

    >>> s = WatermarkSchedule(hold_us=61_000_000, interval_us=100_000, timeframes_us=(1_000_000,))
    >>> s.live_tick(3, now_us=0)
    >>> s.due(now_us=350_000, watermark_us=100_000), s.due(now_us=400_000, watermark_us=150_000)
    ([3], [])
    >>> s.due(now_us=1_100_000, watermark_us=850_000), s.due(now_us=1_300_000, watermark_us=1_050_000)
    ([], [3])
    >>> s.due(now_us=62_000_000, watermark_us=61_750_000)  # no live tick for longer than hold_us
    []
    >>> s.wait_us(now_us=62_000_000) is None  # nothing live: no reason to wake up
    True
    >>> q = WatermarkSchedule(hold_us=61_000_000, interval_us=10_000_000, timeframes_us=(1_000_000,))
    >>> q.live_tick(0, now_us=0); q.due(now_us=400_000, watermark_us=150_000)
    [0]
    >>> q.wait_us(now_us=400_000)  # the watermark (now - 250 ms) reaches the 1 s boundary at 1.25 s
    850000
    >>> q.due(now_us=1_250_000, watermark_us=1_000_000)
    [0]
    """

    hold_us: int
    interval_us: int
    timeframes_us: tuple[int, ...] = (1_000_000,)
    lateness_us: int = 0
    until: dict[int, int] = field(default_factory=dict)
    sent: dict[int, int] = field(default_factory=dict)  # partition -> last watermark sent
    _next_check: int = -(2**63)

    def live_tick(self, partition: int, now_us: int) -> None:
        """A live tick was routed to ``partition``."""
        end = now_us + self.hold_us
        if self.until.get(partition, end - 1) < end:
            self.until[partition] = end

    def cover(self, partitions: list[int], now_us: int) -> None:
        """Cover these partitions from ``now_us`` for ``hold_us`` (after a restart)."""
        for p in partitions:
            self.live_tick(p, now_us)

    def wait_us(self, now_us: int) -> int | None:
        """How long the feed may wait before calling :meth:`due` again (None: no partition is live)."""
        if not self.until:
            return None
        return max(0, self._next_check - now_us)

    def _crossed(self, before: int | None, after: int) -> bool:
        if before is None:
            return True
        late = self.lateness_us
        return any((after - late) // tf > (before - late) // tf for tf in self.timeframes_us)

    def due(self, now_us: int, watermark_us: int) -> list[int]:
        """The partitions to send ``watermark_us`` on now (checked at most once per interval; a partition
        gets it when it passes a bar boundary its last one did not). Expired partitions are dropped."""
        if now_us < self._next_check or not self.until:
            return []
        late = self.lateness_us
        to_boundary = min(
            ((watermark_us - late) // tf + 1) * tf + late - watermark_us for tf in self.timeframes_us
        )
        self._next_check = now_us + min(self.interval_us, to_boundary)
        for p in [p for p, end in self.until.items() if end < now_us]:
            del self.until[p]
            self.sent.pop(p, None)
        out = [p for p in sorted(self.until) if self._crossed(self.sent.get(p), watermark_us)]
        for p in out:
            self.sent[p] = watermark_us
        return out


@dataclass(slots=True)
class DelayTracker:
    """How far the feed's watermark trails its clock: at least the configured maximum delay, and at least
    twice the largest delay of a live tick it has read in the last ``window_us`` (a loaded machine or a slow
    broker delays ticks: the watermark then waits for them instead of making them late).

    >>> d = DelayTracker(floor_us=250_000, window_us=10_000_000)
    >>> d.delay(now_us=0)
    250000
    >>> d.observe(now_us=1_000_000, delay_us=400_000); d.delay(now_us=2_000_000)
    800000
    >>> d.delay(now_us=12_000_000)  # the slow tick is older than the window
    250000
    """

    floor_us: int
    window_us: int = 10_000_000
    recent: list[tuple[int, int]] = field(default_factory=list)  # (seen at, delay), one per consumed batch

    def observe(self, now_us: int, delay_us: int) -> None:
        """The largest delay (clock minus tick time) of the live ticks of one consumed batch."""
        if 2 * delay_us > self.floor_us:
            self.recent.append((now_us, delay_us))

    def delay(self, now_us: int) -> int:
        cut = now_us - self.window_us
        while self.recent and self.recent[0][0] < cut:
            self.recent.pop(0)
        return max([self.floor_us, *(2 * d for _, d in self.recent)])
