"""The signal service (Faust): indicator snapshots -> features -> the model (Triton, or the in-process
fallback) -> ``signals`` (BUY/SELL/HOLD with hysteresis, score, model version, inference path, stage times).

One prediction request per incoming IndicatorBatch (all its predictable rows); the batching client merges
concurrent requests into one Triton call. Bars still warming up get no signal. Each Signal is its own
message keyed by symbol, on the symbol's partition of ``signals`` (murmur2, from that topic's own partition
count), with a deterministic ``signal_id``.
"""

from __future__ import annotations

from typing import Any

import faust
import numpy as np

from processors.features import features_from_snapshot, is_valid
from processors.signals import SignalPolicy, SignalState, signal_id
from processors.ticks import partition_for
from schemas.serde import AvroSerde, WireFormatError
from streams.apps.base import StatefulService, now_us
from streams.apps.common import raw_topic
from streams.config import Settings
from streams.inference import SignalModelClient
from streams.metrics import INFERENCE, INFERENCE_BATCH, STAGE_LATENCY


class SignalStage:
    """The signal step, run by a host service (its own ``signal`` worker, or the chained engine): one
    prediction request for a batch of snapshots, then each BUY/SELL/HOLD change published."""

    name = "signal"

    def __init__(self, host: StatefulService[Any], settings: Settings) -> None:
        s = settings.signal
        self.host = host
        self.settings = settings
        self.policy = SignalPolicy(buy_above=s.buy_above, sell_below=s.sell_below)
        self.signals_topic = raw_topic(host.app, settings.topics.signals)
        self.out_serde = AvroSerde.for_record("Signal")
        self.client = SignalModelClient(settings.triton)

    def new_state(self) -> SignalState:
        return SignalState(self.policy)

    def load_state(self, blob: bytes) -> SignalState:
        return SignalState.from_bytes(blob, self.policy)

    async def on_snapshots(self, snapshots: list[dict[str, Any]], state: SignalState) -> list[dict[str, Any]]:
        """Predict for the snapshots not seen before and publish the signals; returns them."""
        rows: list[dict[str, Any]] = []
        features = []
        for snap in snapshots:
            if state.seen(snap["symbol"], snap["timeframe"], snap["start_us"]):
                continue
            x = features_from_snapshot(snap, snap["returns"])
            if not is_valid(x):
                state.skip(snap["symbol"], snap["timeframe"], snap["start_us"])
                continue
            rows.append(snap)
            features.append(x)
        if not rows:
            return []
        prediction = await self.client.predict(np.stack(features))
        inference_us = now_us()
        INFERENCE.labels(prediction.path).inc(len(rows))
        INFERENCE_BATCH.labels(prediction.path).observe(len(rows))
        signals = []
        for snap, p in zip(rows, prediction.probabilities.tolist(), strict=True):
            action = state.decide(snap["symbol"], snap["timeframe"], snap["start_us"], p)
            if action is None:
                continue
            publish_us = now_us()
            signal = {
                "signal_id": signal_id(
                    snap["symbol"], snap["timeframe"], snap["start_us"], prediction.model_version
                ),
                "symbol": snap["symbol"],
                "timeframe": snap["timeframe"],
                "start_us": snap["start_us"],
                "action": action,
                "score": p,
                "price": snap["close"],
                "model_version": prediction.model_version,
                "inference_path": prediction.path,
                "ingest_us": snap["ingest_us"],
                "close_us": snap["close_us"],
                "indicator_us": snap["indicator_us"],
                "inference_us": inference_us,
                "publish_us": publish_us,
            }
            await self.host.send(
                self.signals_topic,
                self.out_serde.encode(signal),
                partition_for(snap["symbol"], self.settings.topics.signal_partitions),
                snap["symbol"].encode(),
            )
            signals.append(signal)
            if snap["ingest_us"]:
                STAGE_LATENCY.labels("tick_to_signal").observe((publish_us - snap["ingest_us"]) / 1e6)
            STAGE_LATENCY.labels("inference").observe((inference_us - snap["indicator_us"]) / 1e6)
        return signals


class SignalService(StatefulService[SignalState]):
    """The signal stage as its own worker (the split topology), reading ``indicators.<tf>``."""

    service = "signal"

    def __init__(self, settings: Settings) -> None:
        s = settings.signal
        inputs = [settings.topics.indicators(tf) for tf in s.timeframes]
        super().__init__(settings, inputs, s.checkpoint_s)
        self.stage = SignalStage(self, settings)
        self.in_serde = AvroSerde.for_record("IndicatorBatch")

    def new_state(self, partition: int) -> SignalState:
        return self.stage.new_state()

    def load_state(self, partition: int, blob: bytes) -> SignalState:
        return self.stage.load_state(blob)

    async def handle(self, topic: str, partition: int, offset: int, value: bytes, state: SignalState) -> None:
        try:
            batch = self.in_serde.decode(value)
        except WireFormatError as exc:
            await self.dead_letter(exc.reason_code, exc.reason, topic, partition, offset, value)
            return
        await self.stage.on_snapshots(batch["snapshots"], state)


def build(settings: Settings) -> faust.App:
    return SignalService(settings).app
