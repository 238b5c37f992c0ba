"""The same-run baseline of the end-to-end benchmark: ONE raw confluent-kafka process that does the
pipeline's computation with no framework and no stores.

consume TickBatch -> decode (fastavro, as the services) -> ``PricePartition.apply`` per partition (bars and
indicators, :mod:`processors.price_state`) -> features of every new snapshot of the signal timeframes
(:mod:`processors.features`) -> the in-process onnxruntime model (:class:`streams.inference.OnnxModel`),
one call per message -> hysteresis (:class:`processors.signals.SignalState`) -> one Avro ``Signal`` per
bar produced to ``--out-topic``, keyed by symbol on the input's partition.

With ``--stores`` it is the second baseline, what a user would write by hand with the same clients: after
each ``consume`` call it also writes what that call produced to the stores the pipeline's sink writes, with
the same adapters (their batched writes: one round trip per store and call), all stores concurrently —
ClickHouse ticks, bars, indicators and signals, PostgreSQL bars and signals, Redis bars, snapshots and
signals. (Orders and fills, a few per thousand signals, are left out: it has no order book.)

Run by :mod:`bench.e2e` as ``python -m bench.e2e_baseline --in-topic T --out-topic S --ticks N --pings P
--passes K [--stores]``; it prints ``READY`` once it has consumed the P ping batches (one per partition),
then makes K passes over the input (each with fresh state and a fresh consumer from the start of the topic,
ending after N ticks, the producer's flush and, with ``--stores``, the last writes) and prints one JSON
line: per pass the ticks, bars, snapshots, signals, first-consume and done wall times and CPU seconds; the
peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from processors.features import features_from_snapshot, is_valid
from processors.price_state import PricePartition, parse_timeframes
from processors.signals import SignalPolicy, SignalState, signal_id
from schemas.serde import AvroSerde
from sinks.redis_state import RedisHotState
from streams import kafka
from streams.config import get_settings
from streams.inference import OnnxModel
from streams.stores import clickhouse_history, postgres_orders, redis_config


def now_us() -> int:
    return time.time_ns() // 1000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--in-topic", required=True)
    ap.add_argument("--out-topic", required=True)
    ap.add_argument("--ticks", type=int, required=True)
    ap.add_argument("--pings", type=int, default=0, help="warm-up messages sent before the input")
    ap.add_argument("--passes", type=int, default=1, help="runs over the same input (fresh state each)")
    ap.add_argument("--stores", action="store_true", help="also write every store (the second baseline)")
    args = ap.parse_args(argv)
    settings = get_settings()
    timeframes = parse_timeframes(settings.topics.timeframes)
    signal_tfs = set(settings.signal.timeframes)
    policy = SignalPolicy(buy_above=settings.signal.buy_above, sell_below=settings.signal.sell_below)
    model = OnnxModel(settings.triton.fallback_model)
    in_serde, out_serde = AvroSerde.for_record("TickBatch"), AvroSerde.for_record("Signal")
    producer = kafka.producer(settings)
    prices: dict[int, PricePartition] = {}
    decisions: dict[int, SignalState] = {}
    counts = dict.fromkeys(("ticks", "bars", "snapshots", "signals", "messages", "pings"), 0)
    stores = Stores(settings) if args.stores else None
    made: dict[str, list[dict[str, Any]]] = {k: [] for k in ("ticks", "bars", "snapshots", "signals")}

    def process(msgs: list[Any]) -> None:
        for msg in msgs:
            if msg.error() is not None:
                continue
            batch = in_serde.decode(msg.value() or b"")
            if batch["batch_id"].startswith("ping"):
                counts["pings"] += 1
                continue
            part = msg.partition() or 0
            state = prices.get(part)
            if state is None:
                state = prices[part] = PricePartition(timeframes)
                decisions[part] = SignalState(policy)
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
            counts["messages"] += 1
            counts["ticks"] += out.ticks
            counts["bars"] += sum(len(b) for b in out.bars.values())
            snaps = [s for tf, rows in out.snapshots.items() if tf in signal_tfs for s in rows]
            counts["snapshots"] += sum(len(s) for s in out.snapshots.values())
            if snaps:
                signals = _signals(snaps, decisions[part], model, out_serde, producer, args, part)
                counts["signals"] += len(signals)
                made["signals"] += signals
            if stores is not None:
                made["ticks"].append(batch)
                made["bars"] += [b for rows in out.bars.values() for b in rows]
                made["snapshots"] += [s for rows in out.snapshots.values() for s in rows]
        producer.poll(0)
        if stores is not None and made["ticks"]:
            stores.write(made)
        for rows in made.values():
            rows.clear()

    # Warm-up, not timed (the services are warm too): a synthetic series through bars, indicators, features
    # and the model, and one ping batch per partition (the consumer is then fetching every partition).
    _warm(timeframes, policy, model, out_serde)
    passes = []
    for n in range(args.passes):
        consumer = kafka.consumer(
            settings,
            f"{settings.service_group_prefix}-baseline-{n}",
            **{"isolation.level": "read_uncommitted"},
        )
        parts = range(settings.topics.tick_partitions)
        consumer.assign([TopicPartition(args.in_topic, p, OFFSET_BEGINNING) for p in parts])
        prices.clear()
        decisions.clear()
        counts.update(dict.fromkeys(counts, 0))
        if stores is not None:
            stores.written = {}
        if n == 0:
            while counts["pings"] < args.pings:
                process(consumer.consume(100, timeout=0.05))
            print("READY", flush=True)
        cpu0 = os.times()
        first = 0.0
        while counts["ticks"] < args.ticks:
            msgs = consumer.consume(1000, timeout=0.05)
            if msgs and not first:
                first = time.time()
            process(msgs)
        producer.flush(30)
        done = time.time()
        cpu1 = os.times()
        consumer.close()
        cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
        stored = {"stored": stores.written} if stores is not None else {}
        passes.append({**counts, "first_consume": first, "done": done, "cpu_s": cpu, **stored})
    if stores is not None:
        stores.close()
    report = {
        "passes": passes,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report), flush=True)


def _warm(
    timeframes: list[tuple[str, int]], policy: SignalPolicy, model: OnnxModel, serde: AvroSerde
) -> None:
    state = PricePartition(timeframes)
    n = 3000
    ts = np.arange(n, dtype=np.int64) * 100_000 + 1_600_000_000_000_000
    px = 100.0 + np.sin(np.arange(n) / 10.0)
    out = state.apply(["WARM"], np.zeros(n), ts, px, np.ones(n), np.arange(1, n + 1), 0, 0)
    snaps = [s for rows in out.snapshots.values() for s in rows]
    x = np.stack([features_from_snapshot(s, s["returns"]) for s in snaps])
    model.predict(x[is_valid(x)])
    SignalState(policy).decide("WARM", "1s", 0, 0.5)
    signal = {"signal_id": "w", "symbol": "WARM", "timeframe": "1s", "start_us": 0, "action": "HOLD"}
    serde.encode({**signal, "score": 0.5, "price": 1.0, "model_version": "w", "inference_path": "fallback"})


def _signals(
    snaps: list[dict[str, Any]],
    state: SignalState,
    model: OnnxModel,
    serde: AvroSerde,
    producer: Any,
    args: argparse.Namespace,
    part: int,
) -> list[dict[str, Any]]:
    rows, features = [], []
    for snap in snaps:
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
    probs = model.predict(np.stack(features)).tolist()
    inference_us = now_us()
    sent = []
    for snap, p in zip(rows, probs, strict=True):
        action = state.decide(snap["symbol"], snap["timeframe"], snap["start_us"], p)
        if action is None:
            continue
        signal = {
            "signal_id": signal_id(snap["symbol"], snap["timeframe"], snap["start_us"], model.version),
            "symbol": snap["symbol"],
            "timeframe": snap["timeframe"],
            "start_us": snap["start_us"],
            "action": action,
            "score": p,
            "price": snap["close"],
            "model_version": model.version,
            "inference_path": "fallback",
            "ingest_us": snap["ingest_us"],
            "close_us": snap["close_us"],
            "indicator_us": snap["indicator_us"],
            "inference_us": inference_us,
            "publish_us": now_us(),
        }
        producer.produce(args.out_topic, serde.encode(signal), key=snap["symbol"].encode(), partition=part)
        sent.append(signal)
    return sent


class Stores:
    """The sink's adapters, written from this synchronous loop on a private event loop."""

    def __init__(self, settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.redis = RedisHotState(redis_config(settings))
        self.clickhouse = clickhouse_history(settings)
        self.postgres = postgres_orders(settings)
        self.written: dict[str, int] = {}  # rows per store of the current pass, as the adapters count them
        for store in (self.redis, self.clickhouse, self.postgres):
            self.loop.run_until_complete(store.open())

    def write(self, made: dict[str, list[dict[str, Any]]]) -> None:
        ch, pg, rd = self.clickhouse, self.postgres, self.redis
        writes = {"clickhouse.ticks": ch.write_ticks(made["ticks"])}
        if made["bars"]:
            bars = made["bars"]
            writes["clickhouse.bars"] = ch.write_bars(bars)
            writes["postgres.historical_data"] = pg.write_bars(bars)
            writes["redis.bars"] = rd.write_bars(bars)
        if made["snapshots"]:
            writes["clickhouse.indicators"] = ch.write_snapshots(made["snapshots"])
            writes["redis.snapshots"] = rd.write_snapshots(made["snapshots"])
        if made["signals"]:
            sig = made["signals"]
            writes["clickhouse.signals"] = ch.write_signals(sig)
            writes["postgres.signals"] = pg.write_signals(sig)
            writes["redis.signals"] = rd.write_signals(sig)

        async def all_of() -> list[int]:
            return list(await asyncio.gather(*writes.values()))

        for name, n in zip(writes, self.loop.run_until_complete(all_of()), strict=True):
            self.written[name] = self.written.get(name, 0) + n

    def close(self) -> None:
        for store in (self.redis, self.clickhouse, self.postgres):
            self.loop.run_until_complete(store.close())
        self.loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
