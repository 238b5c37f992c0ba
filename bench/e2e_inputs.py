"""Inputs of the end-to-end benchmark (:mod:`bench.e2e`) and the outputs they must produce.

- :func:`replay`: the real Binance BTCUSDT trades (2,001 trades over 47 s) replayed as K symbols, each a full
  copy shifted by a different sub-second offset, merged in event-time order (so every TickBatch carries many
  symbols, as a busy feed does);
- :func:`steady`: seeded simulated ticks (:func:`processors.simulate.simulate` without bursts: Poisson
  arrivals at a constant rate) whose event time is the wall clock from ``t0_us`` on;
- :func:`tick_batches`: the TickBatch records a producer that bypasses the feed sends to ``ticks``: one output
  partition per symbol (murmur2, as the feed), cut at ``max_ticks`` in input order, per-symbol ``seq`` from 1;
- :func:`expected`: what the pipeline must store for a tick set (bars, snapshots, signals, Redis bars), from
  the same processors the services run.

>>> t = TickSet(["A", "B"], np.array([0, 1, 0]), np.array([1, 2, 3]), np.ones(3), np.ones(3))
>>> t.seq().tolist(), len(t), t.symbol_names().tolist()
([1, 1, 2], 3, ['A', 'B', 'A'])
>>> [(p, r["symbols"], r["seq"]) for p, r in tick_batches(t, partitions=1, max_ticks=2)]
[(0, ['A', 'B'], [1, 1]), (0, ['A'], [2])]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.features import features_from_snapshot, is_valid
from processors.price_state import PricePartition, parse_timeframes
from processors.simulate import MarketModel, simulate
from processors.ticks import partition_for
from schemas.serde import AvroSerde
from streams.sources.recordings import load_recording

RECORDING = "binance_btcusdt_trades.parquet"


@dataclass
class TickSet:
    """Ticks in send order: row i is (symbols[index[i]], ts[i], price[i], size[i])."""

    symbols: list[str]
    index: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    price: npt.NDArray[np.float64]
    size: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def seq(self) -> npt.NDArray[np.int64]:
        """Per-symbol sequence numbers from 1 in send order (what the feed assigns)."""
        out = np.empty(len(self), np.int64)
        order = np.argsort(self.index, kind="stable")
        counts = np.bincount(self.index, minlength=len(self.symbols))
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        out[order] = np.arange(len(self)) - starts + 1
        return out

    def symbol_names(self) -> npt.NDArray[np.str_]:
        return np.asarray(self.symbols)[self.index]


def replay(data_dir: Path, prefix: str, n: int) -> TickSet:
    """``n`` real trades: ceil(n / 2001) copies of the BTCUSDT recording as symbols ``<prefix>NNNN.BTCUSDT``,
    copy k shifted by k * 7,919 us modulo one second (the last copy is cut short)."""
    rec = load_recording(Path(data_dir) / RECORDING)
    copies = -(-n // len(rec))
    parts = []
    for k in range(copies):
        take = min(len(rec), n - k * len(rec))
        off = (k * 7_919) % 1_000_000
        parts.append((np.full(take, k), rec.ts_us[:take] + off, rec.price[:take], rec.size[:take]))
    idx, ts, px, sz = (np.concatenate(c) for c in zip(*parts, strict=True))
    order = np.argsort(ts, kind="stable")
    names = [f"{prefix}{k:04d}.BTCUSDT" for k in range(copies)]
    return TickSet(names, idx[order].astype(np.int64), ts[order], px[order], sz[order])


def steady(prefix: str, symbols: int, rate: float, seconds: float, t0_us: int, seed: int) -> TickSet:
    """Simulated ticks at a constant ``rate`` (Poisson arrivals, no bursts), event time from ``t0_us``."""
    sim = simulate(symbols, rate, seconds, seed, MarketModel(burst_prob=0.0, start_us=t0_us))
    names = [f"{prefix}{i:04d}" for i in range(symbols)]
    return TickSet(names, sim.symbol_index.astype(np.int64), sim.ts_us, sim.price, sim.size)


def continue_prices(ticks: TickSet, last: dict[str, float]) -> None:
    """Scale each symbol's prices so its path continues from ``last[symbol]``; update ``last``."""
    for i, name in enumerate(ticks.symbols):
        rows = np.flatnonzero(ticks.index == i)
        if not rows.size:
            continue
        if name in last:
            ticks.price[rows] *= last[name] / ticks.price[rows[0]]
        last[name] = float(ticks.price[rows[-1]])


def encode_ticks(ticks: TickSet) -> tuple[list[bytes], list[bytes]]:
    """Single-tick Avro messages (values, keys) in send order."""
    serde = AvroSerde.for_record("Tick")
    keys = [s.encode() for s in ticks.symbols]
    names = ticks.symbols
    values = [
        serde.encode({"symbol": names[i], "ts_us": t, "price": p, "size": z, "source": "bench"})
        for i, t, p, z in zip(
            ticks.index.tolist(), ticks.ts.tolist(), ticks.price.tolist(), ticks.size.tolist(), strict=True
        )
    ]
    return values, [keys[i] for i in ticks.index.tolist()]


def tick_batches(ticks: TickSet, partitions: int, max_ticks: int) -> list[tuple[int, dict[str, Any]]]:
    """(partition, TickBatch record without stage times) in the order a feed would publish them."""
    part_of = np.array([partition_for(s, partitions) for s in ticks.symbols], np.int64)[ticks.index]
    seq = ticks.seq()
    chunks: list[tuple[int, int, npt.NDArray[np.int64]]] = []  # (position of last tick, partition, rows)
    for p in range(partitions):
        rows = np.flatnonzero(part_of == p)
        for i in range(0, rows.size, max_ticks):
            chunk = rows[i : i + max_ticks]
            chunks.append((int(chunk[-1]), p, chunk))
    chunks.sort(key=lambda c: c[0])
    out = []
    for n, (_, p, rows) in enumerate(chunks):
        local, inverse = np.unique(ticks.index[rows], return_inverse=True)
        out.append(
            (
                p,
                {
                    "batch_id": f"bench:{p}@{n}",
                    "symbols": [ticks.symbols[i] for i in local.tolist()],
                    "symbol_index": inverse.astype(np.int64).tolist(),
                    "ts_us": ticks.ts[rows].tolist(),
                    "price": ticks.price[rows].tolist(),
                    "size": ticks.size[rows].tolist(),
                    "seq": seq[rows].tolist(),
                    "ingest_us": 0,
                    "publish_us": 0,
                },
            )
        )
    return out


def expected(
    ticks: TickSet, timeframes: tuple[str, ...], signal_timeframes: tuple[str, ...], max_bars: int
) -> dict[str, int]:
    """What the pipeline stores for recorded ``ticks`` (replay mode) before their end of stream, while the
    last bar of each series stays open:
    closed bars (and snapshots) per timeframe, signals (valid feature rows of the signal timeframes), chart
    bars in Redis (capped per symbol/timeframe) and symbols with a latest signal."""
    state = PricePartition(parse_timeframes(timeframes))
    out = state.apply(ticks.symbols, ticks.index, ticks.ts, ticks.price, ticks.size, ticks.seq(), 1, 1)
    if out.late or out.duplicates or out.gaps:
        raise ValueError(f"benchmark input is not clean: {len(out.late)} late, {out.duplicates} duplicates")
    bars = sum(len(b) for b in out.bars.values())
    per_series: dict[tuple[str, str], int] = {}
    for tf, rows in out.bars.items():
        for bar in rows:
            per_series[(bar["symbol"], tf)] = per_series.get((bar["symbol"], tf), 0) + 1
    signals, signal_symbols = 0, set()
    for tf in signal_timeframes:
        for snap in out.snapshots.get(tf, []):
            if is_valid(features_from_snapshot(snap, snap["returns"])):
                signals += 1
                signal_symbols.add(snap["symbol"])
    return {
        "ticks": len(ticks),
        "bars": bars,
        "indicators": sum(len(s) for s in out.snapshots.values()),
        "signals": signals,
        "redis_bars": sum(min(n, max_bars) if max_bars else n for n in per_series.values()),
        "redis_signals": len(signal_symbols),
    }
