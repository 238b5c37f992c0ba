"""The price service (Faust): TickBatch from ``ticks`` -> bars per timeframe -> indicator snapshots.

One ``PricePartition`` per assigned partition holds every symbol's BarAggregators and IndicatorSets.
Closed bars go to ``bars.<tf>`` and their snapshots to ``indicators.<tf>`` (one BarBatch / IndicatorBatch
per input batch and timeframe, on the same partition). Late ticks go to the dead-letter topic with the
timeframe they were late for. Partitions with no ticks for ``price.idle_flush_s`` seconds get their open
bars closed.

Exactly-once effect: state and offsets are checkpointed together (``streams.apps.base``), and ticks already
applied (per-symbol ``seq``) are dropped, so neither a price nor a feed restart doubles or loses a tick.
"""

from __future__ import annotations

import logging
import time

import faust

from processors.price_state import PriceOutput, PricePartition, parse_timeframes
from schemas.serde import AvroSerde, WireFormatError
from streams.apps.base import StatefulService, now_us
from streams.apps.common import raw_topic
from streams.config import Settings
from streams.metrics import SEQUENCE_EVENTS, STAGE_LATENCY, TICKS

log = logging.getLogger("stockpulse.price")


class PriceService(StatefulService[PricePartition]):
    service = "price"

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        super().__init__(settings, [t.ticks], settings.price.checkpoint_s)
        self.timeframes = parse_timeframes(t.timeframes)
        self.bar_topics = {tf: raw_topic(self.app, t.bars(tf)) for tf, _ in self.timeframes}
        self.ind_topics = {tf: raw_topic(self.app, t.indicators(tf)) for tf, _ in self.timeframes}
        self.ticks_serde = AvroSerde.for_record("TickBatch")
        self.bars_serde = AvroSerde.for_record("BarBatch")
        self.ind_serde = AvroSerde.for_record("IndicatorBatch")
        self.tick_serde = AvroSerde.for_record("Tick")
        self.timer(0.5, self._idle_flush)

    def new_state(self, partition: int) -> PricePartition:
        return PricePartition(self.timeframes)

    def load_state(self, partition: int, blob: bytes) -> PricePartition:
        return PricePartition.from_bytes(blob)

    async def handle(
        self, topic: str, partition: int, offset: int, value: bytes, state: PricePartition
    ) -> None:
        try:
            batch = self.ticks_serde.decode(value)
        except WireFormatError as exc:
            await self.dead_letter(exc.reason_code, exc.reason, topic, partition, offset, value)
            return
        out = state.apply(
            batch["symbols"],
            batch["symbol_index"],
            batch["ts_us"],
            batch["price"],
            batch["size"],
            batch["seq"],
            batch["ingest_us"],
            now_us(),
        )
        await self._publish(partition, out, topic, offset)
        TICKS.labels(self.service).inc(out.ticks)
        if out.duplicates or out.gaps:
            SEQUENCE_EVENTS.labels(self.service, "duplicate").inc(out.duplicates)
            SEQUENCE_EVENTS.labels(self.service, "gap").inc(max(0, out.gaps))
            log.info(
                "partition %d: %d duplicate ticks dropped, %d missing", partition, out.duplicates, out.gaps
            )

    async def _publish(self, part: int, out: PriceOutput, topic: str, offset: int) -> None:
        for tf, bars in out.bars.items():
            await self.send(self.bar_topics[tf], self.bars_serde.encode({"bars": bars}), part)
            for bar in bars:
                if bar["ingest_us"]:
                    STAGE_LATENCY.labels("tick_to_bar").observe((bar["close_us"] - bar["ingest_us"]) / 1e6)
        for tf, snaps in out.snapshots.items():
            await self.send(self.ind_topics[tf], self.ind_serde.encode({"snapshots": snaps}), part)
            for snap in snaps:
                STAGE_LATENCY.labels("bar_to_indicator").observe(
                    (snap["indicator_us"] - snap["close_us"]) / 1e6
                )
        for tf, symbol, ts, price, size, seq in out.late:
            tick = self.tick_serde.encode(
                {"symbol": symbol, "ts_us": ts, "price": price, "size": size, "source": ""}
            )
            reason = (
                f"tick {symbol} seq {seq} at {ts} us is older than the open {tf} bar; bars close in "
                "event time, so send the ticks of a symbol in time order"
            )
            await self.dead_letter("late_tick", reason, topic, part, offset, tick)

    async def _idle_flush(self) -> None:
        idle_s = self.settings.price.idle_flush_s
        if idle_s <= 0:
            return
        now = time.monotonic()
        for part, state in list(self.states.items()):
            if now - self.last_input.get(part, now) < idle_s or not state.open_bars():
                continue
            out = state.flush_idle(now_us())
            await self._publish(part, out, self.inputs[0], -1)
            self.checkpointer.touch(part)


def build(settings: Settings) -> faust.App:
    return PriceService(settings).app
