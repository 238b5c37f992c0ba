"""The engine (Faust): the price, signal and order stages chained in one worker (the ``chained`` topology).

It reads only ``ticks``. Each TickBatch is decoded once and goes through the stages in memory. Smart batching:
the batches of a partition that have arrived together (up to ``MAX_RUN``) are merged into one before the
stages (:mod:`processors.tick_batches`: exact, since a watermark or an end of input ends a run), so a
backlog is worked off in large passes and a lone batch goes through at once. The price stage closes bars and
computes their snapshots, the signal stage predicts for the snapshots of the signal timeframes and decides,
the order stage takes those signals and then the batch's ticks, watermark and ended inputs. Every
intermediate record is still produced to its topic (``bars.<tf>``, ``indicators.<tf>``, ``signals``,
``orders``, ``fills``) for subscribers and the sink, exactly as the separate workers of the ``split``
topology produce them: the order books decide in event time, so handing a signal over before or after the
ticks that follow it gives the same orders.

State per ``ticks`` partition is the three stages' states together (:class:`EngineState`), checkpointed with
the partition's offset in one row (flush the producer -> save -> commit; :mod:`streams.apps.checkpointing`).
A restart re-reads the ticks after the checkpoint and re-makes the same records with the same ids.
"""

from __future__ import annotations

import struct
from typing import Any

import faust

from processors.orders import OrderBook
from processors.price_state import PricePartition
from processors.signals import SignalState
from processors.tick_batches import ends_a_run, merge
from schemas.serde import AvroSerde, WireFormatError
from streams.apps.base import StatefulService
from streams.apps.order import OrderStage
from streams.apps.price import PriceStage
from streams.apps.signal import SignalStage
from streams.config import Settings

#: at most this many batches of a partition are merged into one pass (bounds the delay of the first)
MAX_RUN = 64
_MAGIC = b"SPEN"
_HEADER = struct.Struct("<4sBIII")  # magic, version, lengths of the price, signal and order blobs


class EngineState:
    """The price, signal and order state of one ``ticks`` partition."""

    def __init__(self, price: PricePartition, signal: SignalState, order: OrderBook) -> None:
        self.price = price
        self.signal = signal
        self.order = order

    def to_bytes(self) -> bytes:
        blobs = (self.price.to_bytes(), self.signal.to_bytes(), self.order.to_bytes())
        return _HEADER.pack(_MAGIC, 1, *(len(b) for b in blobs)) + b"".join(blobs)

    @staticmethod
    def split(blob: bytes) -> tuple[bytes, bytes, bytes]:
        """The three stage blobs of :meth:`to_bytes`.

        >>> EngineState.split(_HEADER.pack(_MAGIC, 1, 1, 2, 3) + b"abbccc")
        (b'a', b'bb', b'ccc')
        >>> EngineState.split(b"SPXX")
        Traceback (most recent call last):
        ...
        ValueError: not an engine checkpoint (magic b'SPXX'): was the topology changed under this group?
        """
        magic = blob[:4]
        if magic != _MAGIC or len(blob) < _HEADER.size:
            raise ValueError(
                f"not an engine checkpoint (magic {magic!r}): was the topology changed under this group?"
            )
        _, _version, a, b, c = _HEADER.unpack_from(blob)
        at = _HEADER.size
        return blob[at : at + a], blob[at + a : at + a + b], blob[at + a + b : at + a + b + c]


class EngineService(StatefulService[EngineState]):
    """price -> signal -> order in one worker (see the module docstring)."""

    service = "engine"

    def __init__(self, settings: Settings) -> None:
        stages = (settings.price, settings.signal, settings.order)
        checkpoint_s = min(s.checkpoint_s for s in stages)  # each stage's setting bounds the interval
        super().__init__(settings, [settings.topics.ticks], checkpoint_s)
        self.price = PriceStage(self, settings)
        self.signal = SignalStage(self, settings)
        self.order = OrderStage(self, settings, lambda: (s.order for s in self.states.values()))
        self.signal_timeframes = tuple(settings.signal.timeframes)
        self.ticks_serde = AvroSerde.for_record("TickBatch")
        self._deferred: dict[int, list[tuple[str, int, dict[str, Any]]]] = {}  # partition -> its run

    async def on_open(self) -> None:
        await self.order.open()

    def new_state(self, partition: int) -> EngineState:
        return EngineState(self.price.new_state(), self.signal.new_state(), self.order.new_state())

    def load_state(self, partition: int, blob: bytes) -> EngineState:
        price, signal, order = EngineState.split(blob)
        return EngineState(
            self.price.load_state(price), self.signal.load_state(signal), self.order.load_state(order)
        )

    async def handle(self, topic: str, partition: int, offset: int, value: bytes, state: EngineState) -> None:
        """Decode and defer: the batches of a partition that arrive together go through the stages as one
        (:meth:`drained`); a batch with a watermark or an end of input ends its run at once."""
        try:
            batch = self.ticks_serde.decode(value)
        except WireFormatError as exc:
            await self.dead_letter(exc.reason_code, exc.reason, topic, partition, offset, value, "price")
            return
        run = self._deferred.setdefault(partition, [])
        run.append((topic, offset, batch))
        if ends_a_run(batch) or len(run) >= MAX_RUN:
            await self._flush(partition)

    async def drained(self) -> None:
        for partition in list(self._deferred):
            await self._flush(partition)

    async def _flush(self, partition: int) -> None:
        run = self._deferred.pop(partition, None)
        if not run:
            return
        state = self.states[self.partitions.of(partition)]
        topic, offset, _ = run[-1]  # late ticks of a merged run are dead-lettered with its last offset
        await self._stages(merge([b for _, _, b in run]), state, topic, partition, offset)

    async def _stages(
        self, batch: dict[str, Any], state: EngineState, topic: str, partition: int, offset: int
    ) -> None:
        out = await self.price.apply(batch, state.price, topic, partition, offset)
        snapshots = [snap for tf in self.signal_timeframes for snap in out.snapshots.get(tf, ())]
        if snapshots:
            for signal in await self.signal.on_snapshots(snapshots, state.signal):
                await self.order.on_signal(signal, state.order)
        await self.order.on_ticks(batch, state.order)


def build(settings: Settings) -> faust.App:
    return EngineService(settings).app
