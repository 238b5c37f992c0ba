"""The caching side of the Redis hot state: the TTL policy by data type, hit/miss counters, cached chart
responses invalidated on new bars, and warming the chart bars from ClickHouse.

TTL policy (:class:`CachePolicy`; every value configurable, ``STOCKPULSE_REDIS__CACHE__*``)::

    key                    data                           TTL
    P:{SYM}:price          newest bar / price of SYM      1 s while SYM's market is open, 60 s when closed
    P:{SYM}:ind:<tf>       newest indicator snapshot      5 s if ATR/close > 0.002 (volatile), else 30 s
    P:{SYM}:bars:<tf>      recent bars (charts)           3,600 s (refreshed by every new bar)
    P:{SYM}:signal         newest signal                  300 s ("everything else")
    P:{SYM}:position       position after newest fill     300 s
    P:{SYM}:chart:<tf>     chart responses (API)           300 s, deleted when a bar of SYM/tf is written
    P:symbols              index of known symbols         the longest of the TTLs above

"Open" is decided per symbol at write time from event time: a symbol's market is open when its newest bar
ended (``start_us`` + the timeframe) no more than ``market_open_window_s`` (60 s) before the wall clock.
Live feeds are therefore "open" while they trade and "closed" from a minute after their last bar (nights,
weekends, halts) with no calendar to maintain; replays of historical recordings are "closed". The chart
sorted sets do not depend on it: they keep the recent bars for ``bars_ttl_s`` after the last write, so a
replay, the demo and the tests see their bars. A TTL of 0 means no expiry.

High volatility: ``atr / close`` of the snapshot above ``high_volatility_atr_ratio`` (ATR of the snapshot's
own timeframe; NaN while the ATR warms up counts as low). Fast-moving indicators then expire after 5 s, so a
reader never shows a stale value for long, while calm ones stay cached 30 s.

Hit/miss counters: every read path of :class:`~sinks.redis_state.RedisHotState` counts a hit (the key
existed) or a miss per key looked up, in :class:`CacheStats` (``stats.snapshot()``), and calls the optional
``on_lookup(read, result, n)`` callback, which the services use to export
``stockpulse_cache_requests_total{result}`` (sinks never import prometheus).

Chart responses (:class:`ChartCache`): the API caches a rendered response per (symbol, timeframe, variant)
in one hash per symbol and timeframe. Writing bars of that symbol/timeframe deletes the hash in the same Lua
script that adds the bars (invalidation on new bars), and ``put`` refuses a response built from bars older
than the newest stored bar (no stale entry from a slow reader).

Warming (:func:`warm`): for every (symbol, timeframe) whose bars key is missing, the newest bars are read
from ClickHouse (one ``LIMIT n BY symbol`` query per timeframe) and written like new bars. The sink service
warms at start; the API can warm one symbol on a miss (:meth:`RedisHotState.bars_read_through`).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from sinks.redis_state import RedisHotState

__all__ = [
    "BarSource",
    "CachePolicy",
    "CacheStats",
    "ChartCache",
    "LookupCallback",
    "WarmReport",
    "timeframe_us",
    "warm",
]

Result = Literal["hit", "miss"]
LookupCallback = Callable[[str, Result, int], None]
_TF = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


def timeframe_us(timeframe: str) -> int:
    """``"1m"`` -> 60,000,000; 0 for a name that is not like ``500ms``/``1s``/``5m``/``1h``/``1d``."""
    m = _TF.match(timeframe)
    return int(m.group(1)) * _UNIT_US[m.group(2)] if m else 0


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """TTLs (seconds; 0 = no expiry) and the thresholds that choose between them (see the module doc)."""

    price_open_ttl_s: float = 1.0
    price_closed_ttl_s: float = 60.0
    market_open_window_s: float = 60.0
    indicator_high_vol_ttl_s: float = 5.0
    indicator_low_vol_ttl_s: float = 30.0
    high_volatility_atr_ratio: float = 0.002
    default_ttl_s: float = 300.0
    bars_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        for name in type(self).__slots__:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"CachePolicy.{name}={value}: use a finite value >= 0 (a TTL of 0 = no expiry)"
                )

    def market_open(self, event_us: int, now_us: int | None = None) -> bool:
        """True when data with event time ``event_us`` is at most ``market_open_window_s`` old."""
        now = time.time_ns() // 1000 if now_us is None else now_us
        return now - event_us <= self.market_open_window_s * 1_000_000

    def price_ttl_ms(self, event_us: int, now_us: int | None = None) -> int:
        """TTL of a symbol's price key whose newest bar ended at ``event_us``."""
        open_ = self.market_open(event_us, now_us)
        return _ms(self.price_open_ttl_s if open_ else self.price_closed_ttl_s)

    def high_volatility(self, snapshot: Mapping[str, Any]) -> bool:
        """True when the snapshot's ATR/close is above the threshold (NaN or a zero close: False)."""
        try:
            ratio = float(snapshot["atr"]) / abs(float(snapshot["close"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return False
        return math.isfinite(ratio) and ratio > self.high_volatility_atr_ratio

    def indicator_ttl_ms(self, snapshot: Mapping[str, Any]) -> int:
        """TTL of an indicator snapshot key, by the snapshot's volatility."""
        high = self.high_volatility(snapshot)
        return _ms(self.indicator_high_vol_ttl_s if high else self.indicator_low_vol_ttl_s)

    @property
    def default_ttl_ms(self) -> int:
        return _ms(self.default_ttl_s)

    @property
    def bars_ttl_ms(self) -> int:
        return _ms(self.bars_ttl_s)

    @property
    def index_ttl_ms(self) -> int:
        """TTL of the symbols index: never shorter than what it indexes (0 if any TTL is 0)."""
        ttls = (self.price_closed_ttl_s, self.indicator_low_vol_ttl_s, self.default_ttl_s, self.bars_ttl_s)
        return 0 if 0 in ttls else _ms(max(ttls))


class CacheStats:
    """Hit/miss counts of the adapter's read paths (thread-safe). ``snapshot()`` gives
    ``{"hit": n, "miss": m, "by_read": {"bars": {"hit": .., "miss": ..}, ...}}``; ``on_lookup`` is called
    with ``(read, "hit" | "miss", n)`` on every count (e.g. to increment a Prometheus counter)."""

    def __init__(self, on_lookup: LookupCallback | None = None) -> None:
        self.on_lookup = on_lookup
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def count(self, read: str, hits: int, misses: int) -> None:
        with self._lock:
            per = self._counts.setdefault(read, {"hit": 0, "miss": 0})
            per["hit"] += hits
            per["miss"] += misses
        if self.on_lookup is not None:
            if hits:
                self.on_lookup(read, "hit", hits)
            if misses:
                self.on_lookup(read, "miss", misses)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_read = {k: dict(v) for k, v in sorted(self._counts.items())}
        return {
            "hit": sum(v["hit"] for v in by_read.values()),
            "miss": sum(v["miss"] for v in by_read.values()),
            "by_read": by_read,
        }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class ChartCache:
    """Cached chart responses of the API, one Redis hash per (symbol, timeframe), field = ``variant`` (any
    string naming the request: range, limit, indicators, format). Entries live ``default_ttl_s`` and are
    deleted whenever a bar of the symbol/timeframe is written."""

    def __init__(self, state: RedisHotState) -> None:
        self._state = state

    async def get(self, symbol: str, timeframe: str, variant: str) -> str | None:
        """The cached response, or None (counted as a hit or a miss of read ``chart``)."""
        (body,) = await self._state.execute(
            "chart get", [("HGET", self._state.chart_key(symbol, timeframe), variant)]
        )
        self._state.stats.count("chart", int(body is not None), int(body is None))
        return None if body is None else str(body)

    async def put(self, symbol: str, timeframe: str, variant: str, body: str, as_of_us: int | None) -> bool:
        """Cache ``body``, built from bars up to start ``as_of_us`` (None: no bar). Returns False, storing
        nothing, when a newer bar was written meanwhile (the response is stale already)."""
        state = self._state
        ttl = state.config.cache.default_ttl_ms
        keys = (state.chart_key(symbol, timeframe), state.bars_key(symbol, timeframe))
        as_of = -1 if as_of_us is None else int(as_of_us)
        (stored,) = await state.execute(
            "chart put", [("EVALSHA", "chart_put", 2, *keys, variant, body, as_of, ttl)]
        )
        return bool(stored)

    async def invalidate(self, symbol: str, timeframes: Sequence[str]) -> int:
        """Delete the cached responses of ``symbol`` for ``timeframes``; returns how many hashes existed."""
        keys = [self._state.chart_key(symbol, tf) for tf in timeframes]
        if not keys:
            return 0
        results = await self._state.execute("chart invalidate", [("DEL", k) for k in keys])
        return sum(int(r) for r in results)


class BarSource(Protocol):
    """Where warming reads bars from (:class:`sinks.clickhouse_history.ClickHouseHistory`)."""

    async def symbols(self, timeframe: str | None = None) -> list[str]: ...

    async def recent_bars(
        self, symbols: Sequence[str], timeframe: str, limit: int = 500
    ) -> dict[str, list[dict[str, Any]]]: ...


@dataclass(frozen=True, slots=True)
class WarmReport:
    """What :func:`warm` did: bars keys checked, found missing, filled from the source, bars written."""

    checked: int
    missing: int
    warmed: int
    bars: int


async def warm(
    state: RedisHotState,
    symbols: Sequence[str] | None,
    timeframes: Sequence[str],
    source: BarSource,
    limit: int | None = None,
) -> WarmReport:
    """Load the newest ``limit`` (default ``config.warm_bars``) bars of every (symbol, timeframe) whose
    Redis bars key is missing from ``source``; keys that exist are left alone. ``symbols=None``: every
    symbol the source has bars for."""
    n = state.config.warm_bars if limit is None else limit
    syms = sorted(set(await source.symbols() if symbols is None else symbols))
    pairs = [(s, tf) for tf in timeframes for s in syms]
    if not pairs or n <= 0:
        return WarmReport(len(pairs), 0, 0, 0)
    exists = await state.execute("warm", [("EXISTS", state.bars_key(s, tf)) for s, tf in pairs])
    missing = [pair for pair, e in zip(pairs, exists, strict=True) if not int(e)]
    warmed = written = 0
    for tf in timeframes:
        wanted = [s for s, t in missing if t == tf]
        if not wanted:
            continue
        found = await source.recent_bars(wanted, tf, n)
        bars = [b for rows in found.values() for b in rows]
        if bars:
            written += await state.write_bars(bars)
            warmed += len(found)
    return WarmReport(len(pairs), len(missing), warmed, written)
