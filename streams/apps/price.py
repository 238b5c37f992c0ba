"""The price service (Faust): TickBatch from ``ticks`` -> bars per timeframe -> indicator snapshots.

One ``PricePartition`` per assigned partition holds every symbol's BarAggregators and IndicatorSets.
Closed bars go to ``bars.<tf>`` and their snapshots to ``indicators.<tf>`` (one BarBatch / IndicatorBatch
per input batch and timeframe, on the same partition). Late ticks go to the dead-letter topic with the
timeframe they were late for. Symbols with no ticks for ``price.idle_flush_s`` seconds get their open
bars closed.

Exactly-once effect: events are acknowledged to Faust only after a checkpoint (state + next offsets in
PostgreSQL, written after the producer flushed), so Kafka's committed offset never passes the checkpoint; on
assignment the state is restored and re-delivered messages below the checkpoint are skipped. Ticks already
applied (per-symbol ``seq``) are dropped, so a feed handler restart does not double them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import faust
from faust.types import TP, EventT

from processors.price_state import PriceOutput, PricePartition, parse_timeframes
from schemas.serde import AvroSerde, WireFormatError
from sinks.checkpoints import CheckpointStore
from streams.apps.checkpointing import Checkpointer
from streams.apps.common import make_app, raw_topic
from streams.config import Settings
from streams.deadletter import DeadLetterEncoder
from streams.metrics import DEAD_LETTERS, MESSAGES, STAGE_LATENCY, TICKS

log = logging.getLogger("stockpulse.price")
SERVICE = "price"


def _now_us() -> int:
    return time.time_ns() // 1000


class PriceService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = make_app(settings, SERVICE, broker_commit_interval=3600.0, broker_commit_every=1_000_000)
        t = settings.topics
        self.timeframes = parse_timeframes(t.timeframes)
        self.ticks_topic = raw_topic(self.app, t.ticks)
        self.bar_topics = {tf: raw_topic(self.app, t.bars(tf)) for tf, _ in self.timeframes}
        self.ind_topics = {tf: raw_topic(self.app, t.indicators(tf)) for tf, _ in self.timeframes}
        self.dead_topic = raw_topic(self.app, t.dead_letter)
        self.ticks_serde = AvroSerde.for_record("TickBatch")
        self.bars_serde = AvroSerde.for_record("BarBatch")
        self.ind_serde = AvroSerde.for_record("IndicatorBatch")
        self.tick_serde = AvroSerde.for_record("Tick")
        self.dead = DeadLetterEncoder(SERVICE)
        self.states: dict[int, PricePartition] = {}
        self.last_input: dict[int, float] = {}
        self.pending: list[EventT] = []
        self.store = CheckpointStore(settings.postgres.dsn.get_secret_value())
        self.checkpointer = Checkpointer(
            self.store,
            SERVICE,
            self.app.conf.id,
            t.ticks,
            settings.price.checkpoint_s,
            self.states.__getitem__,
        )
        self.app.agent(self.ticks_topic, name="price")(self._agent)
        self.app.timer(interval=0.5)(self._idle_flush)
        self.app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self._opened = False
        self._lock = asyncio.Lock()  # one event, idle flush or checkpoint at a time

    # -- partition ownership --------------------------------------------------------------------------------
    def _mine(self, tps: set[TP]) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == self.ticks_topic.get_topic_name())

    async def _ensure_store(self) -> None:
        if not self._opened:
            await self.store.open()
            self._opened = True

    async def _on_assigned(self, app: Any, assigned: set[TP], **kwargs: Any) -> None:
        await self._ensure_store()
        parts = [p for p in self._mine(assigned) if p not in self.states]
        saved = await self.checkpointer.restore(parts)
        for p in parts:
            blob = saved.get(p)
            self.states[p] = PricePartition.from_bytes(blob) if blob else PricePartition(self.timeframes)
            self.last_input[p] = time.monotonic()

    async def _on_revoked(self, app: Any, revoked: set[TP], **kwargs: Any) -> None:
        parts = self._mine(revoked)
        if not parts:
            return
        async with self._lock:
            await self._checkpoint()
        for p in parts:
            self.states.pop(p, None)
            self.last_input.pop(p, None)
        self.checkpointer.forget(parts)

    # -- processing -----------------------------------------------------------------------------------------
    async def _agent(self, stream: faust.StreamT[bytes]) -> None:
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            async with self._lock:
                await self._process(event)

    async def _process(self, event: EventT) -> None:
        if True:
            msg = event.message
            part, offset = msg.partition, msg.offset
            self.pending.append(event)
            if self.checkpointer.should_skip(part, offset):
                return
            state = self.states.get(part)
            if state is None:  # assigned before our handler ran: restore now
                await self._on_assigned(self.app, {msg.tp})
                state = self.states[part]
            try:
                batch = self.ticks_serde.decode(event.value)
            except WireFormatError as exc:
                await self._dead_letter(exc.reason_code, exc.reason, part, offset, event.value)
            else:
                now = _now_us()
                out = state.apply(
                    batch["symbols"],
                    batch["symbol_index"],
                    batch["ts_us"],
                    batch["price"],
                    batch["size"],
                    batch["seq"],
                    batch["ingest_us"],
                    now,
                )
                await self._publish(part, out, offset)
                TICKS.labels(SERVICE).inc(out.ticks)
            MESSAGES.labels(SERVICE, self.ticks_topic.get_topic_name(), "in").inc()
            self.last_input[part] = time.monotonic()
            self.checkpointer.processed(part, offset)
            if self.checkpointer.due():
                await self._checkpoint()

    async def _publish(self, part: int, out: PriceOutput, offset: int) -> None:
        for tf, bars in out.bars.items():
            await self.bar_topics[tf].send(value=self.bars_serde.encode({"bars": bars}), partition=part)
            MESSAGES.labels(SERVICE, self.bar_topics[tf].get_topic_name(), "out").inc()
            for bar in bars:
                if bar["ingest_us"]:
                    STAGE_LATENCY.labels("tick_to_bar").observe((bar["close_us"] - bar["ingest_us"]) / 1e6)
        for tf, snaps in out.snapshots.items():
            await self.ind_topics[tf].send(value=self.ind_serde.encode({"snapshots": snaps}), partition=part)
            MESSAGES.labels(SERVICE, self.ind_topics[tf].get_topic_name(), "out").inc()
        for tf, symbol, ts, price, size, seq in out.late:
            tick = self.tick_serde.encode(
                {"symbol": symbol, "ts_us": ts, "price": price, "size": size, "source": ""}
            )
            reason = (
                f"tick {symbol} seq {seq} at {ts} us is older than the open {tf} bar; bars close in "
                "event time, so send the ticks of a symbol in time order"
            )
            await self._dead_letter("late_tick", reason, part, offset, tick)

    async def _dead_letter(
        self, code: str, reason: str, part: int, offset: int, payload: bytes | None
    ) -> None:
        value = self.dead.encode(code, reason, self.ticks_topic.get_topic_name(), part, offset, None, payload)
        await self.dead_topic.send(value=value)
        DEAD_LETTERS.labels(SERVICE, code).inc()

    async def _idle_flush(self) -> None:
        idle_s = self.settings.price.idle_flush_s
        if idle_s <= 0:
            return
        async with self._lock:
            await self._flush_idle_partitions(idle_s)

    async def _flush_idle_partitions(self, idle_s: float) -> None:
        now = time.monotonic()
        for part, state in list(self.states.items()):
            if now - self.last_input.get(part, now) < idle_s or not state.open_bars():
                continue
            out = state.flush_idle(_now_us())
            next_offset = self.checkpointer.next_offset.get(part)
            await self._publish(part, out, -1 if next_offset is None else next_offset - 1)
            self.checkpointer.touch(part)
        if self.checkpointer.due():
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        await self.checkpointer.checkpoint(self._flush_outputs, self._ack_and_commit)

    async def _flush_outputs(self) -> None:
        await self.app.producer.flush()

    async def _ack_and_commit(self, offsets: dict[int, int]) -> None:
        pending, self.pending = self.pending, []
        for event in pending:
            event.ack()
        await self.app.consumer.commit()


def build(settings: Settings) -> faust.App:
    return PriceService(settings).app
