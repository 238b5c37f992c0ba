"""Merging consecutive TickBatches of one partition into one (pure code), for a worker that takes every
batch that has arrived in one go (smart batching: small at low load, large at high load).

Merging is exact only where nothing happens *between* the batches: a watermark or an end of input applies
after its own batch's ticks, so only the last batch of a run may carry one (:func:`runs` cuts there). The
merged batch keeps the first batch's ``ingest_us`` (the stage timestamp of its earliest tick: latencies
measured from it are not flattered) and the last one's watermark and ended inputs.

>>> a = {"symbols": ["X", "Y"], "symbol_index": [0, 1], "ts_us": [1, 2], "price": [1.0, 2.0],
...      "size": [1.0, 1.0], "seq": [1, 1], "ingest_us": 10, "watermark_us": 0, "closed_symbols": []}
>>> b = {"symbols": ["Y"], "symbol_index": [0], "ts_us": [3], "price": [3.0], "size": [1.0], "seq": [2],
...      "ingest_us": 11, "watermark_us": 99, "closed_symbols": ["Y"]}
>>> m = merge([a, b])
>>> m["symbols"], m["symbol_index"].tolist(), m["ts_us"].tolist(), m["ingest_us"], m["watermark_us"]
(['X', 'Y'], [0, 1, 1], [1, 2, 3], 10, 99)
>>> [len(r) for r in runs([b, a, a, b, a])]
[1, 3, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Batch = dict[str, Any]
COLUMNS = (("ts_us", np.int64), ("price", np.float64), ("size", np.float64), ("seq", np.int64))


def ends_a_run(batch: Batch) -> bool:
    """True when something applies after this batch's ticks (a watermark or an end of input)."""
    return bool(batch["watermark_us"] or batch["closed_symbols"])


def runs(batches: Sequence[Batch]) -> list[list[Batch]]:
    """Consecutive batches cut after each one that :func:`ends_a_run`: each run merges exactly."""
    out: list[list[Batch]] = []
    current: list[Batch] = []
    for batch in batches:
        current.append(batch)
        if ends_a_run(batch):
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def merge(run: Sequence[Batch]) -> Batch:
    """One batch equal to applying ``run`` in order (see the module docstring); raises ValueError when a
    batch before the last carries a watermark or an end of input."""
    if len(run) == 1:
        return run[0]
    if any(ends_a_run(b) for b in run[:-1]):
        raise ValueError("only the last batch of a merged run may carry a watermark or an end of input")
    position: dict[str, int] = {}
    index_parts: list[np.ndarray] = []
    for b in run:
        remap = np.fromiter((position.setdefault(s, len(position)) for s in b["symbols"]), np.int64)
        index = np.asarray(b["symbol_index"], dtype=np.int64)
        index_parts.append(remap[index] if index.size else index)
    out: Batch = {
        "symbols": list(position),
        "symbol_index": np.concatenate(index_parts),
        "ingest_us": min((b["ingest_us"] for b in run if b["ingest_us"]), default=0),
        "watermark_us": run[-1]["watermark_us"],
        "closed_symbols": run[-1]["closed_symbols"],
    }
    for name, dtype in COLUMNS:
        out[name] = np.concatenate([np.asarray(b[name], dtype=dtype) for b in run])
    return out
