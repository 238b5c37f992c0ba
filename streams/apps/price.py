"""The price service (Faust): TickBatch from ``ticks`` -> bars per timeframe -> indicator snapshots.

One ``PricePartition`` per assigned partition holds every symbol's BarAggregators and IndicatorSets. Bars
close in event time (:mod:`processors.event_time`): by the symbols' own ticks, by the watermarks the feed
sends in-band for live symbols, and at the end of a symbol's input (``closed_symbols``). Closed bars go to
``bars.<tf>`` and their snapshots to ``indicators.<tf>``, each on the symbol's own partition of that topic
(murmur2 of the symbol, as every producer computes it: topics may have different partition counts). Late
ticks go to the dead-letter topic as ``late_tick`` naming the bar they missed, and are counted in
``stockpulse_late_ticks_total``.

Exactly-once effect: state and offsets are checkpointed together (``streams.apps.base``), and ticks already
applied (per-symbol ``seq``) are dropped, so neither a price nor a feed restart doubles or loses a tick.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import faust

from processors.price_state import PriceOutput, PricePartition, parse_timeframes
from processors.ticks import partition_for
from schemas.serde import AvroSerde, WireFormatError
from streams.apps.base import StatefulService, now_us
from streams.apps.common import raw_topic
from streams.config import Settings
from streams.metrics import LATE_TICKS, SEQUENCE_EVENTS, STAGE_LATENCY, TICKS, WATERMARKS

#: records per BarBatch/IndicatorBatch message: a snapshot is ~1 KB of Avro, and a broker takes 1 MB messages
MAX_RECORDS = 500
log = logging.getLogger("stockpulse.price")


def by_partition(records: list[dict[str, Any]], partitions: int) -> dict[int, list[dict[str, Any]]]:
    """Records grouped by their symbol's partition among ``partitions`` (order kept within a group).

    >>> sorted(by_partition([{"symbol": "A"}, {"symbol": "B"}, {"symbol": "A"}], 1)[0], key=str) == [
    ...     {"symbol": "A"}, {"symbol": "A"}, {"symbol": "B"}]
    True
    """
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[partition_for(r["symbol"], partitions)].append(r)
    return out


class PriceStage:
    """The price step, run by a host service (its own ``price`` worker, or the chained engine): applies a
    decoded TickBatch to a partition's state and publishes the closed bars, their snapshots and the late
    ticks."""

    name = "price"

    def __init__(self, host: StatefulService[Any], settings: Settings) -> None:
        t = settings.topics
        self.host = host
        self.settings = settings
        self.timeframes = parse_timeframes(t.timeframes)
        self.policy = settings.event_time.policy()
        self.bar_topics = {tf: raw_topic(host.app, t.bars(tf)) for tf, _ in self.timeframes}
        self.ind_topics = {tf: raw_topic(host.app, t.indicators(tf)) for tf, _ in self.timeframes}
        self.bars_serde = AvroSerde.for_record("BarBatch")
        self.ind_serde = AvroSerde.for_record("IndicatorBatch")
        self.tick_serde = AvroSerde.for_record("Tick")

    def new_state(self) -> PricePartition:
        return PricePartition(self.timeframes, policy=self.policy)

    def load_state(self, blob: bytes) -> PricePartition:
        return PricePartition.from_bytes(blob, policy=self.policy)

    async def apply(
        self, batch: dict[str, Any], state: PricePartition, topic: str, partition: int, offset: int
    ) -> PriceOutput:
        """Apply one decoded TickBatch (read at ``topic``/``partition``/``offset``); returns what closed."""
        if batch["watermark_us"]:
            WATERMARKS.labels(self.name).inc()
        out = state.apply(
            batch["symbols"],
            batch["symbol_index"],
            batch["ts_us"],
            batch["price"],
            batch["size"],
            batch["seq"],
            batch["ingest_us"],
            now_us(),
            batch["watermark_us"],
            batch["closed_symbols"],
        )
        await self._publish(partition, out, topic, offset)
        TICKS.labels(self.name).inc(out.ticks)
        if out.duplicates or out.gaps:
            SEQUENCE_EVENTS.labels(self.name, "duplicate").inc(out.duplicates)
            SEQUENCE_EVENTS.labels(self.name, "gap").inc(max(0, out.gaps))
            log.info(
                "partition %d: %d duplicate ticks dropped, %d missing", partition, out.duplicates, out.gaps
            )
        return out

    async def _publish(self, part: int, out: PriceOutput, topic: str, offset: int) -> None:
        send = self.host.send
        n_bars = self.settings.topics.bar_partitions
        for tf, bars in out.bars.items():
            for p, rows in by_partition(bars, n_bars).items():
                for i in range(0, len(rows), MAX_RECORDS):
                    await send(
                        self.bar_topics[tf], self.bars_serde.encode({"bars": rows[i : i + MAX_RECORDS]}), p
                    )
            for bar in bars:
                if bar["ingest_us"]:
                    STAGE_LATENCY.labels("tick_to_bar").observe((bar["close_us"] - bar["ingest_us"]) / 1e6)
        for tf, snaps in out.snapshots.items():
            for p, rows in by_partition(snaps, n_bars).items():
                for i in range(0, len(rows), MAX_RECORDS):
                    value = self.ind_serde.encode({"snapshots": rows[i : i + MAX_RECORDS]})
                    await send(self.ind_topics[tf], value, p)
            for snap in snaps:
                STAGE_LATENCY.labels("bar_to_indicator").observe(
                    (snap["indicator_us"] - snap["close_us"]) / 1e6
                )
        for late in out.late:
            tick = self.tick_serde.encode(
                {"symbol": late.symbol, "ts_us": late.ts_us, "price": late.price, "size": late.size,
                 "source": ""}
            )  # fmt: skip
            reason = (
                f"tick {late.symbol} seq {late.seq} at {late.ts_us} us missed its {late.timeframe} bar "
                f"{late.symbol}|{late.timeframe}|{late.bar_start_us}, which had closed: a bar closes when "
                "the symbol's event time passes its end by STOCKPULSE_EVENT_TIME__ALLOWED_LATENESS_MS (live "
                "ticks: when the feed's clock passes it by STOCKPULSE_EVENT_TIME__MAX_DELAY_MS); send a "
                "symbol's ticks in time order, or raise those settings"
            )
            await self.host.dead_letter("late_tick", reason, topic, part, offset, tick, self.name)
            LATE_TICKS.labels(late.timeframe).inc()


class PriceService(StatefulService[PricePartition]):
    """The price stage as its own worker (the split topology)."""

    service = "price"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, [settings.topics.ticks], settings.price.checkpoint_s)
        self.stage = PriceStage(self, settings)
        self.ticks_serde = AvroSerde.for_record("TickBatch")

    def new_state(self, partition: int) -> PricePartition:
        return self.stage.new_state()

    def load_state(self, partition: int, blob: bytes) -> PricePartition:
        return self.stage.load_state(blob)

    async def handle(
        self, topic: str, partition: int, offset: int, value: bytes, state: PricePartition
    ) -> None:
        try:
            batch = self.ticks_serde.decode(value)
        except WireFormatError as exc:
            await self.dead_letter(exc.reason_code, exc.reason, topic, partition, offset, value)
            return
        await self.stage.apply(batch, state, topic, partition, offset)


def build(settings: Settings) -> faust.App:
    return PriceService(settings).app
