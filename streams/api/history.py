"""Chart history: Redis (hot cache) first, then ClickHouse, then the PostgreSQL replica.

Redis holds the newest ``STOCKPULSE_SINK__REDIS_MAX_BARS`` bars of every symbol and timeframe (written by the
sink service). A request is a cache **hit** when Redis alone answers it: it holds at least ``limit`` bars, or
ClickHouse said within the last ``SHORT_HISTORY_TTL_S`` seconds that it has no more bars than Redis holds (a
short history, e.g. a symbol that started trading today). Otherwise it is a **miss**: ClickHouse is asked,
and the PostgreSQL replica when ClickHouse has fewer than ``limit`` bars or fails; the store with the most
bars serves (ties: the earlier store). Bars served by a fallback are written back into Redis in the background
(``RedisHotState.write_bars``: idempotent, capped), so the next request hits.

Each store read has a deadline (``STOCKPULSE_API__STORE_TIMEOUT_S``); a store that fails or times out is
skipped. No store has a bar: :class:`NoBars` (404); every store failed: 503 naming them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sinks.base import SinkError
from streams.api.backends import Backends, Store
from streams.api.errors import ApiError
from streams.metrics import CACHE_REQUESTS

log = logging.getLogger("stockpulse.api")

BAR_FIELDS = ("start_us", "open", "high", "low", "close", "volume", "vwap", "trades")
SHORT_HISTORY_TTL_S = 10.0
_SHORT_HISTORY_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Bars:
    """Bars (oldest first) and the store that served them; ``hit`` when Redis alone answered."""

    source: Store
    bars: list[dict[str, Any]]
    hit: bool


class NoBars(ApiError):
    """No store holds a bar of the symbol and timeframe (404)."""


class History:
    """The fallback chain over :class:`~streams.api.backends.Backends`."""

    def __init__(self, backends: Backends, store_timeout_s: float) -> None:
        self.backends = backends
        self.timeout_s = store_timeout_s
        self._short: dict[tuple[str, str], tuple[int, float]] = {}  # (symbol, tf) -> (bars in CH, expiry)
        self._warming: set[asyncio.Task[None]] = set()

    async def _read(self, store: Store, call: Callable[[Any], Awaitable[list[dict[str, Any]]]]) -> Any:
        adapter = await self.backends.get(store)
        return await asyncio.wait_for(call(adapter), self.timeout_s)

    async def _postgres_bars(self, symbol: str, timeframe: str, limit: int) -> list[dict[str, Any]]:
        """Bars from the PostgreSQL replica, when the adapter offers ``bars`` (table ``historical_data``)."""
        adapter = await self.backends.postgres()
        reader = getattr(adapter, "bars", None)
        if reader is None:
            return []
        rows: list[dict[str, Any]] = await asyncio.wait_for(
            reader(symbol, timeframe, limit=limit), self.timeout_s
        )
        return rows

    async def bars(self, symbol: str, timeframe: str, limit: int) -> Bars:
        """The newest ``limit`` bars of ``symbol``/``timeframe``, oldest first (see the module docstring)."""
        errors: dict[str, str] = {}
        redis_rows: list[dict[str, Any]] = []
        try:
            redis_rows = await self._read("redis", lambda r: r.bars(symbol, timeframe, limit))
        except (SinkError, TimeoutError) as exc:
            errors["redis"] = _reason(exc, self.timeout_s)
        key = (symbol, timeframe)
        if redis_rows and (len(redis_rows) >= limit or self._short_history(key, len(redis_rows))):
            CACHE_REQUESTS.labels("hit").inc()
            return Bars("redis", _trim(redis_rows), True)
        CACHE_REQUESTS.labels("miss").inc()

        best: tuple[Store, list[dict[str, Any]]] | None = ("redis", redis_rows) if redis_rows else None
        tiers: list[tuple[Store, Callable[[], Awaitable[list[dict[str, Any]]]]]] = [
            (
                "clickhouse",
                lambda: self._read("clickhouse", lambda c: c.bars(symbol, timeframe, limit=limit)),
            ),
            ("postgres", lambda: self._postgres_bars(symbol, timeframe, limit)),
        ]
        for store, read in tiers:
            try:
                rows = await read()
            except (SinkError, TimeoutError) as exc:
                errors[store] = _reason(exc, self.timeout_s)
                continue
            if store == "clickhouse":
                self._remember(key, len(rows))
            if rows and (best is None or len(rows) > len(best[1])):
                best = (store, rows)
            if best is not None and len(best[1]) >= limit:
                break
        if best is None:
            if len(errors) == 3:
                detail = "; ".join(f"{s}: {e}" for s, e in errors.items())
                raise ApiError(
                    503,
                    f"no store answered for {symbol} {timeframe} ({detail}); check `stockpulse stack status` "
                    "and GET /healthz",
                )
            raise NoBars(
                404,
                f"no {timeframe} bars for symbol {symbol!r} in Redis, ClickHouse or PostgreSQL; check the "
                "symbol (GET /api/symbols lists the known ones) and the timeframe. Bars appear once the "
                "price "
                "service has closed one",
                **({"unavailable": errors} if errors else {}),
            )
        source, rows = best
        if source != "redis":
            self._warm(rows)
        return Bars(source, _trim(rows), False)

    def _short_history(self, key: tuple[str, str], have: int) -> bool:
        found = self._short.get(key)
        return found is not None and found[1] > time.monotonic() and found[0] <= have

    def _remember(self, key: tuple[str, str], count: int) -> None:
        if len(self._short) >= _SHORT_HISTORY_MAX:
            self._short.clear()
        self._short[key] = (count, time.monotonic() + SHORT_HISTORY_TTL_S)

    def _warm(self, rows: list[dict[str, Any]]) -> None:
        """Write fallback bars back into Redis in the background (skipping rows without every Bar field)."""

        async def write() -> None:
            try:
                redis = await self.backends.redis()
                await redis.write_bars(rows)
            except (SinkError, KeyError) as exc:
                log.info("cache warming skipped: %s", exc)

        task = asyncio.create_task(write())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def drain(self) -> None:
        """Wait for background cache writes (tests and shutdown)."""
        while self._warming:
            await asyncio.gather(*list(self._warming), return_exceptions=True)


def _trim(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in BAR_FIELDS} for r in rows]


def _reason(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, SinkError):
        return exc.detail
    return str(exc)
