"""The API's store connections: the three adapters of ``sinks`` opened for reading.

Each adapter is opened at start-up; a store that is down then does not stop the API (``/healthz`` says so and
the other stores keep serving). It is opened again on the next request that needs it, at most once per
``REOPEN_S`` so that a dead store costs one fast failure per second, not one connect timeout per request.
The adapters are opened with ``apply=False``: the API never runs DDL (the sink service owns the schemas).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any, Literal, TypeVar, cast

from sinks.base import Health, SinkBase, SinkError
from sinks.clickhouse_history import ClickHouseHistory
from sinks.postgres_orders import PostgresOrders
from sinks.redis_state import RedisHotState
from streams.config import Settings
from streams.stores import clickhouse_config, postgres_config, redis_config

log = logging.getLogger("stockpulse.api")

Store = Literal["redis", "clickhouse", "postgres"]
STORES: tuple[Store, ...] = ("redis", "clickhouse", "postgres")
REOPEN_S = 1.0
#: Redis connections per cluster node for one API process. A request waits for a free one (the adapter bounds
#: its pipelines in flight by the pool size): measured on the local cluster, a cold burst of 400 requests took
#: 0.07-0.09 s with 32-64 warm connections reused and 0.31 s when each request opened its own (pool 512).
REDIS_POOL = 64
OPEN_TIMEOUT_S = 5.0
A = TypeVar("A", bound=SinkBase)

_HINTS: dict[Store, str] = {
    "redis": "is the Redis Cluster up (`stockpulse stack status`) and STOCKPULSE_REDIS__STARTUP_NODES right?",
    "clickhouse": "is ClickHouse up at STOCKPULSE_CLICKHOUSE__URL and does the database "
    "STOCKPULSE_CLICKHOUSE__DATABASE exist (the sink service creates it)?",
    "postgres": "is PostgreSQL up at STOCKPULSE_POSTGRES__DSN / REPLICA_DSN and does the schema "
    "STOCKPULSE_POSTGRES__SCHEMA_NAME exist (the sink service creates it)?",
}


class Backends:
    """The adapters, opened on demand: ``await backends.redis()`` returns an open adapter or raises
    :class:`~sinks.base.SinkError` naming the store and what to check."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._adapters: dict[Store, SinkBase] = {
            "redis": RedisHotState(replace(redis_config(settings), max_connections=REDIS_POOL)),
            "clickhouse": ClickHouseHistory(clickhouse_config(settings), apply=False),
            "postgres": PostgresOrders(postgres_config(settings), apply=False),
        }
        self._open: set[Store] = set()
        self._failed: dict[Store, tuple[float, SinkError]] = {}
        self._locks: dict[Store, asyncio.Lock] = {}

    async def start(self) -> dict[Store, str]:
        """Open every adapter concurrently; returns store -> "ok" or the error (never raises)."""
        results = await asyncio.gather(*(self._get(s) for s in STORES), return_exceptions=True)
        out: dict[Store, str] = {}
        for store, res in zip(STORES, results, strict=True):
            out[store] = "ok" if not isinstance(res, BaseException) else str(res)
            if isinstance(res, BaseException):
                log.warning("store %s not available at start-up: %s", store, res)
        return out

    async def close(self) -> None:
        for store in list(self._open):
            try:
                await self._adapters[store].close()
            except Exception as exc:  # closing must not stop the others from closing
                log.warning("closing %s: %s", store, exc)
        self._open.clear()

    async def _get(self, store: Store) -> SinkBase:
        adapter = self._adapters[store]
        if store in self._open:
            return adapter
        failed = self._failed.get(store)
        if failed is not None and time.monotonic() - failed[0] < REOPEN_S:
            raise failed[1]
        lock = self._locks.setdefault(store, asyncio.Lock())
        async with lock:
            if store in self._open:
                return adapter
            try:
                await asyncio.wait_for(adapter.open(), OPEN_TIMEOUT_S)
            except (SinkError, TimeoutError, OSError) as exc:
                err = (
                    exc
                    if isinstance(exc, SinkError)
                    else SinkError(store, "open", f"no answer within {OPEN_TIMEOUT_S:g} s", _HINTS[store])
                )
                self._failed[store] = (time.monotonic(), err)
                raise err from exc
            self._failed.pop(store, None)
            self._open.add(store)
        return adapter

    async def _typed(self, store: Store, kind: type[A]) -> A:
        return cast(A, await self._get(store))

    async def redis(self) -> RedisHotState:
        return await self._typed("redis", RedisHotState)

    async def clickhouse(self) -> ClickHouseHistory:
        return await self._typed("clickhouse", ClickHouseHistory)

    async def postgres(self) -> PostgresOrders:
        return await self._typed("postgres", PostgresOrders)

    async def get(self, store: Store) -> Any:
        """The adapter of ``store`` (``"redis"``, ``"clickhouse"`` or ``"postgres"``), opened."""
        return await self._get(store)

    async def health(self, store: Store, timeout_s: float) -> Health:
        """One cheap round trip to ``store`` within ``timeout_s``; never raises."""
        began = time.perf_counter()
        try:
            adapter = await asyncio.wait_for(self._get(store), timeout_s)
            report = await asyncio.wait_for(adapter.health(), timeout_s)
        except SinkError as exc:
            return Health(
                store, False, f"{exc.detail}; check: {exc.hint}", (time.perf_counter() - began) * 1e3
            )
        except TimeoutError:
            return Health(
                store,
                False,
                f"no answer within {timeout_s:g} s; check: {_HINTS[store]}",
                (time.perf_counter() - began) * 1e3,
            )
        if not report.ok:
            return Health(store, False, f"{report.detail}; check: {_HINTS[store]}", report.latency_ms)
        return report
