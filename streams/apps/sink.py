"""The sink service (Faust): topics -> Redis (hot state), ClickHouse (history), PostgreSQL (orders of record).

Records are buffered and written in batches (one round trip per store and batch) at every checkpoint: every
``sink.flush_s`` seconds or when ``sink.max_buffered`` records wait. Consumption goes on while the stores are
written: a checkpoint hands the buffers over as one write per store and takes the checkpoint rows as of
that point (:mod:`streams.apps.handovers`). Each store writes its parts in order, on its own: a slow store
holds back only its own writes and the checkpoints, never the other stores, and when ``HANDOVER_LIMIT``
hand-overs are pending the sink waits (backpressure, not loss). A checkpoint is saved, in order, once every
store holds its records: write the stores, flush the producer (dead letters), save the offsets it covers,
then acknowledge its events to Faust; so a crash re-delivers at most the records since the last saved
checkpoint, and the stores, keyed by the records' deterministic ids, keep one copy. A store that fails is
retried (``stockpulse_sink_errors_total``) and holds the checkpoints back: nothing is lost while it is down.

Ticks are written once: after every partition assignment the sink reads the highest stored ``seq`` of each
symbol from ClickHouse and drops the ticks at or below it, and as it buffers ticks it raises those floors, so
a re-delivered batch (a sink or feed crash before its checkpoint) is not inserted again. The ``ticks`` table
would collapse the copies on merge anyway; the rollups fed from it by materialized views would not.

At start the Redis chart bars are warmed from ClickHouse for every (symbol, timeframe) whose key is missing
(:func:`sinks.redis_cache.warm`), so charts are served from Redis after a Redis restart or flush.

| topic | Redis | ClickHouse | PostgreSQL |
|---|---|---|---|
| ticks | | ticks | |
| bars.<tf> | bars, price | bars | historical_data |
| indicators.<tf> | latest snapshot | indicators | |
| signals | latest signal | signals | signals |
| orders | | | orders |
| fills | position | | fills |
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import EventT

from processors.ticks import after_seq
from schemas.serde import AvroSerde, WireFormatError
from sinks.base import SinkError, SinkInputError
from sinks.redis_cache import warm
from sinks.redis_state import RedisHotState
from streams.apps.base import StatefulService
from streams.apps.checkpointing import Taken
from streams.apps.handovers import HandOvers
from streams.config import Settings
from streams.metrics import CACHE_REQUESTS, SINK_ERRORS, SINK_LATENCY, SINK_ROWS
from streams.stores import clickhouse_history, postgres_orders, redis_config

log = logging.getLogger("stockpulse.sink")
#: hand-overs that may wait for a slow store (each at most sink.max_buffered records) before the sink waits
HANDOVER_LIMIT = 4
Record = dict[str, Any]
Writer = Callable[[list[Record]], Awaitable[int]]


class _NoState:
    def to_bytes(self) -> bytes:
        return b""


class SinkService(StatefulService[_NoState]):
    service = "sink"

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        self.kinds: dict[str, str] = {
            t.ticks: "ticks",
            t.signals: "signals",
            t.orders: "orders",
            t.fills: "fills",
        }
        for tf in t.timeframes:
            self.kinds[t.bars(tf)] = "bars"
            self.kinds[t.indicators(tf)] = "snapshots"
        super().__init__(settings, list(self.kinds), settings.sink.flush_s, settings.sink.fetch_wait_max_ms)
        self.topic_of = {kind: topic for topic, kind in self.kinds.items()}
        self.serdes = {
            "ticks": AvroSerde.for_record("TickBatch"),
            "bars": AvroSerde.for_record("BarBatch"),
            "snapshots": AvroSerde.for_record("IndicatorBatch"),
            "signals": AvroSerde.for_record("Signal"),
            "orders": AvroSerde.for_record("Order"),
            "fills": AvroSerde.for_record("Fill"),
        }
        self.buffers: dict[str, list[Record]] = {kind: [] for kind in self.serdes}
        self.buffered = 0
        self.redis = RedisHotState(
            redis_config(settings), lambda read, result, n: CACHE_REQUESTS.labels(result).inc(n)
        )
        self.clickhouse = clickhouse_history(settings)
        self.postgres = postgres_orders(settings)
        self._fills_since_refresh = False
        self._refreshed_at = float("-inf")
        self.handovers = HandOvers(HANDOVER_LIMIT)
        # symbol -> highest tick seq stored or buffered; read again from ClickHouse after an assignment
        self._floors: dict[str, int] = {}
        self._reload_floors = True
        self.timer(settings.sink.flush_s, self._tick)

    async def on_open(self) -> None:
        for store in (self.redis, self.clickhouse, self.postgres):
            await self._retry(f"{type(store).__name__}.open", store.open)
        try:
            report = await warm(self.redis, None, self.settings.topics.timeframes, self.clickhouse)
            log.info("redis warmed from clickhouse: %s", report)
        except SinkError as exc:  # warming is an optimisation: never a reason not to start
            log.warning("redis cache warming skipped: %s", exc)

    def new_state(self, partition: int) -> _NoState:
        self._reload_floors = True
        return _NoState()

    def load_state(self, partition: int, blob: bytes) -> _NoState:
        self._reload_floors = True
        return _NoState()

    async def handle(self, topic: str, partition: int, offset: int, value: bytes, state: _NoState) -> None:
        kind = self.kinds[topic]
        try:
            record = self.serdes[kind].decode(value)
        except WireFormatError as exc:
            await self.dead_letter(exc.reason_code, exc.reason, topic, partition, offset, value)
            return
        if kind == "ticks":
            if not record["ts_us"]:
                return  # a watermark or an end of stream alone: nothing to store
            if self._reload_floors:  # partitions were (re)assigned: what is stored already?
                stored = await self._retry("clickhouse.max_seqs", self.clickhouse.max_seqs)
                for symbol, seq in stored.items():
                    self._floors[symbol] = max(seq, self._floors.get(symbol, -1))
                self._reload_floors = False
            unstored = after_seq(record, self._floors)
            if unstored is None:
                return  # every tick of it is stored (a re-delivery)
            record = unstored
        rows = record["bars"] if kind == "bars" else record["snapshots"] if kind == "snapshots" else [record]
        self.buffers[kind].extend(rows)
        self.buffered += len(rows) if kind != "ticks" else len(record["ts_us"])
        if self.buffered >= self.settings.sink.max_buffered:
            await self.checkpoint()

    async def _tick(self) -> None:
        for part in list(self.states):
            if self.buffered:
                self.checkpointer.touch(part)

    async def checkpoint(self, wait: bool = False) -> None:
        """Hand the buffers over (one write per store, after that store's earlier ones) with the checkpoint
        rows as of now, saved once every store holds them (:class:`~streams.apps.handovers.HandOvers`; waits
        while ``HANDOVER_LIMIT`` hand-overs are pending); ``wait``: return once all are saved (revocation)."""
        taken = self.checkpointer.take()
        if taken is not None:
            buffers, self.buffers = self.buffers, {kind: [] for kind in self.serdes}
            self.buffered = 0
            events, self.pending = self.pending, []
            started = time.perf_counter()
            await self.handovers.submit(
                self.store_writes(buffers),
                lambda: self._save(taken, events, started),
                lambda: self.checkpointer.give_back(taken),
            )
        if wait:
            await self.handovers.settle()

    async def _save(self, taken: Taken, events: list[EventT], started: float) -> None:
        await self.app.producer.flush()  # dead letters of rejected records

        async def ack_and_commit() -> None:
            for event in events:
                event.ack()
            await self.app.consumer.commit()

        await self.checkpointer.save(taken, ack_and_commit, started)

    def store_writes(self, b: dict[str, list[Record]]) -> dict[str, Callable[[], Awaitable[None]]]:
        """One write per store of what the buffers hold for it (each retried until the store takes it)."""
        writes: dict[str, list[tuple[str, str, Writer]]] = {"redis": [], "clickhouse": [], "postgres": []}
        ch = self.clickhouse
        if b["ticks"]:
            writes["clickhouse"].append(("clickhouse.ticks", "ticks", self.clickhouse.write_ticks))
        if b["bars"]:
            writes["redis"].append(("redis.bars", "bars", self.redis.write_bars))
            writes["clickhouse"].append(("clickhouse.bars", "bars", self.clickhouse.write_bars))
            writes["postgres"].append(("postgres.historical_data", "bars", self.postgres.write_bars))
        if b["snapshots"]:
            writes["redis"].append(("redis.snapshots", "snapshots", self.redis.write_snapshots))
            writes["clickhouse"].append(("clickhouse.indicators", "snapshots", ch.write_snapshots))
        if b["signals"]:
            writes["redis"].append(("redis.signals", "signals", self.redis.write_signals))
            writes["clickhouse"].append(("clickhouse.signals", "signals", self.clickhouse.write_signals))
            writes["postgres"].append(("postgres.signals", "signals", self.postgres.write_signals))
        if b["orders"]:
            writes["postgres"].append(("postgres.orders", "orders", self.postgres.write_orders))
        if b["fills"]:
            writes["postgres"].append(("postgres.fills", "fills", self.postgres.write_fills))
            writes["redis"].append(("redis.positions", "fills", self.redis.write_positions))

        def store_write(store: str, items: list[tuple[str, str, Writer]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await asyncio.gather(*(self._write(name, kind, w, b[kind]) for name, kind, w in items))
                if store == "postgres" and b["fills"]:
                    self._fills_since_refresh = True
                    await self._refresh_performance()

            return run

        return {store: store_write(store, items) for store, items in writes.items() if items}

    async def _write(self, name: str, kind: str, write: Writer, rows: list[Record]) -> None:
        """One batched write, retried until the store takes it. A batch the store rejects as malformed
        (:class:`SinkInputError`: retrying cannot help) is written record by record, and each rejected
        record goes to the dead-letter topic with the store's reason; the rest are stored."""
        try:
            await self._retry(name, lambda: write(rows))
        except SinkInputError:
            for row in rows:
                try:
                    await self._retry(name, lambda row=row: write([row]))  # type: ignore[misc]
                except SinkInputError as exc:
                    payload = json.dumps(row, default=str, allow_nan=True).encode()
                    reason = f"{name} rejected a {kind} record: {exc}"
                    await self.dead_letter("sink_rejected", reason, self.topic_of[kind], -1, -1, payload)
            return
        store, table = name.split(".", 1)
        SINK_ROWS.labels(store, table).inc(
            len(rows) if kind != "ticks" else sum(len(r["ts_us"]) for r in rows)
        )

    async def _refresh_performance(self) -> None:
        """Refresh ``daily_performance`` (concurrently: readers are not blocked) at most every
        ``sink.performance_refresh_s`` after new fills. A failure is logged, not retried: the next flush
        after new fills tries again, and the view is a derived read model."""
        now = asyncio.get_running_loop().time()
        if (
            not self._fills_since_refresh
            or now - self._refreshed_at < self.settings.sink.performance_refresh_s
        ):
            return
        try:
            await self.postgres.refresh_daily_performance()
            self._fills_since_refresh, self._refreshed_at = False, now
        except SinkError as exc:
            SINK_ERRORS.labels("postgres").inc()
            log.warning("daily_performance refresh failed (%s); trying again after the next fills", exc)

    async def _retry(self, name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Call until it succeeds, backing off from 0.1 s to 5 s; a store outage holds the checkpoint back
        (nothing is acknowledged, so nothing is lost) and consumption waits: the buffer stays bounded."""
        delay = 0.1
        store, _, table = name.partition(".")
        while True:
            started = time.perf_counter()
            try:
                result = await call()
            except SinkInputError:
                raise  # malformed records: retrying cannot help (see _write)
            except (TimeoutError, SinkError, OSError) as exc:
                SINK_ERRORS.labels(store).inc()
                log.warning("%s failed (%s); retrying in %.1fs", name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if table:
                SINK_LATENCY.labels(store, table).observe(time.perf_counter() - started)
            return result


def build(settings: Settings) -> faust.App:
    return SinkService(settings).app
