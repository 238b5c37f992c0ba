"""Tick validation, per-symbol sequencing and columnar TickBatch building (pure code, no I/O).

>>> limits = TickLimits()
>>> check_tick("BTCUSDT", 1_610_000_000_000_000, 40_000.0, 0.5, limits) is None
True
>>> check_tick("BTCUSDT", 1_610_000_000_000_000, float("nan"), 0.5, limits)
('invalid_price', 'price nan for BTCUSDT is not a finite number > 0; send the trade or mid price')
>>> seq = Sequencer()
>>> [seq.next("A"), seq.next("A"), seq.next("B")]
[1, 2, 1]
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class TickLimits:
    """What a valid tick looks like (see ``FeedSettings``)."""

    min_ts_us: int = 946_684_800_000_000  # 2000-01-01
    max_ts_us: int = 4_102_444_800_000_000  # 2100-01-01
    max_price: float = 1e9
    symbol_pattern: str = r"^[A-Z0-9][A-Z0-9._/-]{0,31}$"
    known_symbols: frozenset[str] = frozenset()  # empty: any symbol that matches the pattern
    _symbol_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_symbol_re", re.compile(self.symbol_pattern))

    def symbol_ok(self, symbol: str) -> bool:
        return len(symbol) <= 64 and self._symbol_re.match(symbol) is not None


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def check_tick(symbol: Any, ts_us: Any, price: Any, size: Any, limits: TickLimits) -> tuple[str, str] | None:
    """None when the tick is valid, else ``(reason_code, readable reason)``."""
    if not isinstance(symbol, str) or not limits.symbol_ok(symbol):
        return (
            "invalid_symbol",
            f"symbol {_show(symbol)} does not match {limits.symbol_pattern}; use tickers like BTCUSDT",
        )
    if limits.known_symbols and symbol not in limits.known_symbols:
        return (
            "unknown_symbol",
            f"symbol {_show(symbol)} is not one of the {len(limits.known_symbols)} configured symbols; "
            "add it to STOCKPULSE_FEED__SYMBOLS (or leave that empty to accept any valid ticker)",
        )
    if (
        not isinstance(price, (int, float))
        or isinstance(price, bool)
        or not math.isfinite(price)
        or price <= 0
    ):
        return (
            "invalid_price",
            f"price {_show(price)} for {symbol} is not a finite number > 0; send the trade or mid price",
        )
    if price > limits.max_price:
        return (
            "invalid_price",
            f"price {price} for {symbol} is above the limit {limits.max_price:g}; check the units",
        )
    if not isinstance(size, (int, float)) or isinstance(size, bool) or not math.isfinite(size) or size < 0:
        return ("invalid_size", f"size {_show(size)} for {symbol} is not a finite number >= 0")
    if (
        not isinstance(ts_us, int)
        or isinstance(ts_us, bool)
        or not limits.min_ts_us <= ts_us < limits.max_ts_us
    ):
        return (
            "invalid_timestamp",
            f"timestamp {_show(ts_us)} for {symbol} is outside 2000..2100; send UTC microseconds (ts_us)",
        )
    return None


class Sequencer:
    """Per-symbol, gap-free sequence numbers starting at 1; state serializes for checkpoints.

    >>> s = Sequencer(); _ = s.next("X"); _ = s.next("X")
    >>> Sequencer.from_bytes(s.to_bytes()).next("X")
    3
    """

    __slots__ = ("last",)

    def __init__(self, last: dict[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(last or {})

    def next(self, symbol: str) -> int:
        n = self.last.get(symbol, 0) + 1
        self.last[symbol] = n
        return n

    def to_bytes(self) -> bytes:
        out = [struct.pack("<I", len(self.last))]
        for sym, n in self.last.items():
            raw = sym.encode()
            out.append(struct.pack("<H", len(raw)) + raw + struct.pack("<q", n))
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sequencer:
        (count,) = struct.unpack_from("<I", data, 0)
        pos = 4
        last = {}
        for _ in range(count):
            (ln,) = struct.unpack_from("<H", data, pos)
            pos += 2
            sym = data[pos : pos + ln].decode()
            pos += ln
            (n,) = struct.unpack_from("<q", data, pos)
            pos += 8
            last[sym] = n
        return cls(last)


class FeedState:
    """What the feed checkpoints per input partition: its :class:`Sequencer`, and when it last routed a live
    tick to each output partition (so that after a restart it keeps sending those partitions watermarks
    until their live bars have closed).

    >>> s = FeedState(); _ = s.sequencer.next("A"); s.live_outs[3] = 1_000
    >>> again = FeedState.from_bytes(s.to_bytes())
    >>> again.sequencer.next("A"), again.live_outs
    (2, {3: 1000})
    >>> FeedState.from_bytes(Sequencer({"A": 5}).to_bytes()).sequencer.next("A")  # a checkpoint of before
    6
    """

    __slots__ = ("live_outs", "sequencer")
    MAGIC = b"SPF2"

    def __init__(self, sequencer: Sequencer | None = None, live_outs: dict[int, int] | None = None) -> None:
        self.sequencer = sequencer or Sequencer()
        self.live_outs: dict[int, int] = dict(live_outs or {})

    def to_bytes(self) -> bytes:
        head = [self.MAGIC, struct.pack("<I", len(self.live_outs))]
        head += [struct.pack("<Iq", out, us) for out, us in self.live_outs.items()]
        return b"".join(head) + self.sequencer.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeedState:
        if not data.startswith(cls.MAGIC):  # version 1: the sequencer alone
            return cls(Sequencer.from_bytes(data))
        (n,) = struct.unpack_from("<I", data, 4)
        pos = 8
        live = {}
        for _ in range(n):
            out, us = struct.unpack_from("<Iq", data, pos)
            live[out] = us
            pos += 12
        return cls(Sequencer.from_bytes(data[pos:]), live)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's default partitioner), as a signed 32-bit int."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    tail = 4 * n4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=65536)
def partition_for(symbol: str, partitions: int) -> int:
    """The partition of a symbol: Kafka's default (murmur2, positive) so Java/Kafka Streams peers agree.

    >>> partition_for("BTCUSDT", 12) == partition_for("BTCUSDT", 12) < 12
    True
    """
    return (murmur2(symbol.encode()) & 0x7FFFFFFF) % partitions


class TickBatchBuilder:
    """Accumulates validated ticks of one output partition into a columnar TickBatch record."""

    __slots__ = (
        "closed",
        "first_offset",
        "index",
        "ingest_us",
        "price",
        "seq",
        "size",
        "source_partition",
        "symbol_idx",
        "symbols",
        "ts",
        "watermark_us",
    )

    def __init__(self) -> None:
        self.closed: list[str] = []  # symbols whose input ended after their ticks in this batch
        self.watermark_us = 0  # 0: no watermark
        self.symbols: list[str] = []
        self.index: dict[str, int] = {}
        self.symbol_idx: list[int] = []
        self.ts: list[int] = []
        self.price: list[float] = []
        self.size: list[float] = []
        self.seq: list[int] = []
        self.ingest_us = 0
        self.first_offset = -1
        self.source_partition = -1

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, symbol: str, ts_us: int, price: float, size: float, seq: int, ingest_us: int) -> None:
        idx = self.index.get(symbol)
        if idx is None:
            idx = self.index[symbol] = len(self.symbols)
            self.symbols.append(symbol)
        if not self.ts:
            self.ingest_us = ingest_us
        self.symbol_idx.append(idx)
        self.ts.append(ts_us)
        self.price.append(float(price))
        self.size.append(float(size))
        self.seq.append(seq)

    def record(self, batch_id: str, publish_us: int) -> dict[str, Any]:
        return {
            "batch_id": batch_id,
            "symbols": self.symbols,
            "symbol_index": self.symbol_idx,
            "ts_us": self.ts,
            "price": self.price,
            "size": self.size,
            "seq": self.seq,
            "ingest_us": self.ingest_us or publish_us,
            "publish_us": publish_us,
            "watermark_us": self.watermark_us,
            "closed_symbols": self.closed,
        }


def batch_rows(record: dict[str, Any]) -> Iterable[tuple[str, int, float, float, int]]:
    """The rows (symbol, ts_us, price, size, seq) of a decoded TickBatch record."""
    symbols = record["symbols"]
    for i, ts in enumerate(record["ts_us"]):
        yield symbols[record["symbol_index"][i]], ts, record["price"][i], record["size"][i], record["seq"][i]


def after_seq(record: dict[str, Any], floors: dict[str, int]) -> dict[str, Any] | None:
    """The decoded TickBatch without the ticks already stored: those whose ``seq`` is at or below their
    symbol's floor (the highest seq stored). ``floors`` is raised to the batch's highest seq per symbol, so
    a batch delivered twice (a crash before its checkpoint, re-read) passes once. Returns None when no tick
    is left; the record itself when none was dropped; the columns are plain lists.

    >>> b = {"symbols": ["A", "B"], "symbol_index": [0, 1, 0], "ts_us": [1, 2, 3], "price": [1.0, 2.0, 3.0],
    ...      "size": [1.0, 1.0, 1.0], "seq": [7, 4, 8]}
    >>> floors = {"A": 7}
    >>> kept = after_seq(b, floors); kept["ts_us"], kept["seq"], floors
    ([2, 3], [4, 8], {'A': 8, 'B': 4})
    >>> after_seq(b, floors) is None
    True
    """
    symbols = record["symbols"]
    idx = np.asarray(record["symbol_index"], dtype=np.int64)
    seq = np.asarray(record["seq"], dtype=np.int64)
    floor_of = np.array([floors.get(name, -1) for name in symbols], dtype=np.int64)
    keep = seq > floor_of[idx] if len(symbols) else np.zeros(0, dtype=bool)
    if not keep.any():
        return None
    top = np.full(len(symbols), -1, dtype=np.int64)
    np.maximum.at(top, idx[keep], seq[keep])
    for j, name in enumerate(symbols):
        if top[j] > floor_of[j]:
            floors[name] = int(top[j])
    if keep.all():
        return record
    out = dict(record)
    rows = np.flatnonzero(keep)
    for column in ("symbol_index", "ts_us", "price", "size", "seq"):
        values = record[column]
        out[column] = [values[i] for i in rows]
    return out
