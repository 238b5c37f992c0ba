"""Feed handler throughput: single-tick messages/s through validate, sequence, TickBatch; real broker.

Baseline in the same run: a raw confluent-kafka loop that only consumes the same messages (the ceiling set by
the client and broker). Input: the real recordings (EUR/USD quotes, Binance trades, FTX bars) replayed as many
symbols (SYMBOL.1 .. SYMBOL.K, same prices) to reach N messages.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import machine_info
from streams.config import Settings, get_settings
from streams.feed import FeedHandler
from streams.kafka import consumer, create_topics
from streams.sources.producer import TickProducer
from streams.sources.recordings import load_recording

RESULTS = Path(__file__).resolve().parent / "results"


def _input(settings: Settings, n: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    recs = [
        load_recording(settings.data_dir / f)
        for f in (
            "eurusd_2020-01-01_quotes.csv",
            "binance_btcusdt_trades.parquet",
            "ftx_btc-perp_2022-01_1m.csv",
        )
    ]
    names: list[str] = []
    cols: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    total, copy = 0, 0
    while total < n:
        for rec in recs:
            take = min(len(rec), n - total)
            if take <= 0:
                break
            names.append(f"{rec.symbol}.{copy}")
            cols.append(
                (np.full(take, len(names) - 1, np.int32), rec.ts_us[:take], rec.price[:take], rec.size[:take])
            )
            total += take
        copy += 1
    idx, ts, px, sz = (np.concatenate(c) for c in zip(*cols, strict=True))
    order = np.argsort(ts, kind="stable")
    return names, idx[order], ts[order], px[order], sz[order]


def _isolated(settings: Settings) -> Settings:
    run = f"bench-feed-{uuid.uuid4().hex[:8]}"
    topics = settings.topics.model_copy(
        update={
            "ticks_raw": f"{run}.ticks.raw",
            "ticks": f"{run}.ticks",
            "dead_letter": f"{run}.deadletter",
            "timeframes": (),
        }
    )
    out = settings.model_copy(
        update={"topics": topics, "feed": settings.feed.model_copy(update={"group_id": run})}
    )
    create_topics(out)
    return out


def _raw_consume(settings: Settings, n: int) -> float:
    c = consumer(settings, f"raw-{uuid.uuid4().hex[:6]}", **{"isolation.level": "read_uncommitted"})
    c.subscribe([settings.topics.ticks_raw])
    got, start = 0, 0.0
    while got < n:
        msgs = c.consume(5000, timeout=0.1)
        if msgs and not start:
            start = time.perf_counter()
        got += sum(1 for m in msgs if m.error() is None)
    elapsed = time.perf_counter() - start
    c.close()
    return n / elapsed


def run(quick: bool = False, n: int | None = None, fmt: str = "avro") -> dict[str, Any]:
    n = n or (100_000 if quick else 500_000)
    settings = _isolated(get_settings())
    names, idx, ts, px, sz = _input(settings, n)
    produced = TickProducer(settings, fmt).send(names, idx, ts, px, sz)
    baseline = _raw_consume(settings, n)
    handler = FeedHandler(settings)
    t0 = time.perf_counter()
    first: list[float] = []
    orig = handler.process

    def timed(msgs: list[Any]) -> None:
        if not first:
            first.append(time.perf_counter())
        orig(msgs)

    handler.process = timed  # type: ignore[method-assign]
    stats = handler.run(idle_exit_s=1.0, install_signals=False)
    # the idle wait is not processing time: measure from the first batch to the last message processed
    elapsed = handler.last_process_end - first[0] if first else time.perf_counter() - t0
    result = {
        "benchmark": "feed",
        "format": fmt,
        "messages": n,
        "symbols": len(names),
        "produce_msgs_per_s": round(produced.rate),
        "feed_msgs_per_s": round(stats.consumed / elapsed),
        "raw_consume_msgs_per_s": round(baseline),
        "feed_over_raw_consume": round(stats.consumed / elapsed / baseline, 3),
        "dead_lettered": stats.dead_lettered,
        "batches": stats.batches,
        "machine": machine_info(),
    }
    return result


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--format", default="avro", choices=["avro", "json"])
    args = ap.parse_args()
    result = run(n=args.messages, fmt=args.format)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"feed_{args.format}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
