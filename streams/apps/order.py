"""The order service (Faust): signals -> risk checks -> ``orders`` (accepted or rejected with the reason) ->
paper execution at the next tick -> ``fills``, with positions and realized PnL (``processors.orders``).

It reads ``signals`` and ``ticks``, which may have different partition counts (one a multiple of the other):
its state is kept per symbol partition among the fewer, so a symbol's signals and ticks meet in one
``OrderBook`` (``colocated``). Each (symbol, signal timeframe) is its own book; decisions are made in event
time, so the outcome does not depend on how the topics interleave. Orders and fills go to the symbol's
partition of ``orders`` and ``fills``.

The global kill switch: ``STOCKPULSE_ORDER__KILL_SWITCH=true`` at start, or at run time
``stockpulse kill-switch on --reason "..."`` (a Redis key every order process reads every
``order.kill_switch_poll_s``; ``off`` releases it). While Redis cannot be read the last known state holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import faust

from processors.orders import OrderBook
from processors.price_state import parse_timeframe
from processors.risk import engaged
from processors.ticks import partition_for
from schemas.serde import AvroSerde, WireFormatError
from sinks.base import SinkError
from streams.apps.base import StatefulService, now_us
from streams.apps.common import raw_topic
from streams.config import Settings
from streams.metrics import STAGE_LATENCY
from streams.risk import KILL_SWITCH_SETTING, risk_limits
from streams.stores import redis_state

log = logging.getLogger("stockpulse.order")


class OrderStage:
    """The order step, run by a host service (its own ``order`` worker, or the chained engine): risk checks
    and paper execution on a partition's :class:`OrderBook`, the kill switch polled on a timer of the host."""

    name = "order"

    def __init__(
        self, host: StatefulService[Any], settings: Settings, books: Callable[[], Iterable[OrderBook]]
    ) -> None:
        t, o = settings.topics, settings.order
        self.host = host
        self.settings = settings
        self.books = books
        self.base_limits = self.limits = risk_limits(settings)
        self.timeframes_us = tuple(parse_timeframe(tf) for tf in settings.signal.timeframes)
        self.policy = settings.event_time.policy()
        self.orders_topic = raw_topic(host.app, t.orders)
        self.fills_topic = raw_topic(host.app, t.fills)
        self.order_serde = AvroSerde.for_record("Order")
        self.fill_serde = AvroSerde.for_record("Fill")
        self.redis = redis_state(settings)
        host.timer(o.kill_switch_poll_s, self.poll_kill_switch)

    async def open(self) -> None:
        try:
            await self.redis.open()
            await self.poll_kill_switch()
        except SinkError as exc:
            log.warning("kill switch in Redis not readable at start (%s); trying again every poll", exc)

    async def poll_kill_switch(self) -> None:
        try:
            if not self.redis.is_open:
                await self.redis.open()
            reason = await self.redis.kill_switch()
        except SinkError as exc:
            log.warning("kill switch not readable (%s); keeping the last known state", exc)
            return
        limits = engaged(self.base_limits, reason, KILL_SWITCH_SETTING)
        if limits != self.limits:
            why = limits.kill_reason
            log.warning(
                "kill switch %s%s", "ENGAGED" if limits.kill_switch else "released", f": {why}" if why else ""
            )
            self.limits = limits
            for book in self.books():
                book.limits = limits

    def new_state(self) -> OrderBook:
        return OrderBook(self.limits, self.timeframes_us, self.policy)

    def load_state(self, blob: bytes) -> OrderBook:
        return OrderBook.from_bytes(blob, self.limits, self.timeframes_us, self.policy)

    async def on_signal(self, signal: dict[str, Any], book: OrderBook) -> None:
        """Queue one decoded Signal; publish the orders and fills it completes. Raises ValueError for a
        signal the books cannot take (a timeframe not in ``STOCKPULSE_SIGNAL__TIMEFRAMES``)."""
        orders, fills = book.on_signal(signal, parse_timeframe(signal["timeframe"]))
        await self._publish(orders, fills)

    async def on_ticks(self, batch: dict[str, Any], book: OrderBook) -> None:
        """Apply one decoded TickBatch (ticks, watermark, ended inputs); publish what it decides."""
        orders, fills = book.on_tick_batch(
            batch["symbols"], batch["symbol_index"], batch["ts_us"], batch["price"], batch["seq"],
            batch["ingest_us"],
        )  # fmt: skip
        if batch["watermark_us"] or batch["closed_symbols"]:  # no next tick will come for some signals
            o, f = book.on_progress(batch["watermark_us"], batch["closed_symbols"])
            orders, fills = orders + o, fills + f
        await self._publish(orders, fills)

    async def _publish(self, orders: list[dict[str, Any]], fills: list[dict[str, Any]]) -> None:
        now = now_us()
        n = self.settings.topics.order_partitions
        send = self.host.send
        for order in orders:
            symbol = order["symbol"]
            await send(
                self.orders_topic, self.order_serde.encode(order), partition_for(symbol, n), symbol.encode()
            )
            if order["ingest_us"]:
                STAGE_LATENCY.labels("tick_to_order").observe((now - order["ingest_us"]) / 1e6)
        for fill in fills:
            symbol = fill["symbol"]
            value = self.fill_serde.encode(fill)
            await send(self.fills_topic, value, partition_for(symbol, n), symbol.encode())


class OrderService(StatefulService[OrderBook]):
    """The order stage as its own worker (the split topology), reading ``signals`` and ``ticks``."""

    service = "order"
    colocated = True

    def __init__(self, settings: Settings) -> None:
        t, o = settings.topics, settings.order
        super().__init__(settings, [t.signals, t.ticks], o.checkpoint_s)
        self.stage = OrderStage(self, settings, self.states.values)
        self.signal_serde = AvroSerde.for_record("Signal")
        self.ticks_serde = AvroSerde.for_record("TickBatch")

    async def on_open(self) -> None:
        await self.stage.open()

    def new_state(self, partition: int) -> OrderBook:
        return self.stage.new_state()

    def load_state(self, partition: int, blob: bytes) -> OrderBook:
        return self.stage.load_state(blob)

    async def handle(self, topic: str, partition: int, offset: int, value: bytes, state: OrderBook) -> None:
        is_signal = topic == self.settings.topics.signals
        try:
            record = (self.signal_serde if is_signal else self.ticks_serde).decode(value)
        except WireFormatError as exc:
            await self.dead_letter(exc.reason_code, exc.reason, topic, partition, offset, value)
            return
        if not is_signal:
            await self.stage.on_ticks(record, state)
            return
        try:
            await self.stage.on_signal(record, state)
        except ValueError as exc:
            await self.dead_letter("invalid_signal", str(exc), topic, partition, offset, value)


def build(settings: Settings) -> faust.App:
    return OrderService(settings).app
