"""The price service's per-partition state: ticks -> bars per timeframe -> indicator snapshots (pure code).

For every symbol of a partition it keeps the last applied tick sequence number (duplicates re-delivered after
a crash are dropped, gaps are counted), a :class:`~processors.bars.BarAggregator` and an
:class:`~processors.indicators.IndicatorSet` per timeframe, and the recent log returns the model's features
need. :meth:`PricePartition.apply` takes one TickBatch's columns and returns the closed bars and indicator
snapshots as records in the Avro field layout (``Bar``, ``IndicatorSnapshot``), with deterministic ids
``SYMBOL|TIMEFRAME|START_US`` so that re-processing yields the same ids.

Late ticks are decided per timeframe: a tick older than the open bar of one timeframe is returned as late for
that timeframe (the service dead-letters it with that reason) and still counts in the others.

>>> state = PricePartition(parse_timeframes(["1s"]))
>>> out = state.apply(["A"], np.array([0, 0, 0]), np.array([1_000_000, 1_500_000, 2_100_000]),
...                   np.array([10.0, 11.0, 12.0]), np.ones(3), np.array([1, 2, 3]), ingest_us=5, now_us=6)
>>> [(b["start_us"], b["close"], b["trades"]) for b in out.bars["1s"]]
[(1000000, 11.0, 2)]
>>> restored = PricePartition.from_bytes(state.to_bytes())
>>> restored.apply(["A"], np.array([0]), np.array([2_200_000]), np.array([9.0]), np.ones(1), np.array([3]),
...                ingest_us=7, now_us=8).duplicates
1
"""

from __future__ import annotations

import math
import re
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.bars import Bar, BarAggregator
from processors.features import N_RETURNS
from processors.indicators import IndicatorConfig, IndicatorSet

UNITS_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_TF_RE = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_MAGIC = b"SPPP"
_VERSION = 1


def parse_timeframe(name: str) -> int:
    """``"1s"`` -> 1_000_000 microseconds.

    >>> parse_timeframe("5m")
    300000000
    """
    m = _TF_RE.match(name)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"timeframe {name!r} is not like 500ms, 1s, 1m, 5m, 1h or 1d")
    return int(m.group(1)) * UNITS_US[m.group(2)]


def parse_timeframes(names: Sequence[str]) -> list[tuple[str, int]]:
    return [(n, parse_timeframe(n)) for n in names]


def record_id(symbol: str, timeframe: str, start_us: int) -> str:
    return f"{symbol}|{timeframe}|{start_us}"


@dataclass
class PriceOutput:
    """What one batch (or flush) produced."""

    bars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    late: list[tuple[str, str, int, float, float, int]] = field(
        default_factory=list
    )  # tf, sym, ts, px, sz, seq
    duplicates: int = 0
    gaps: int = 0
    ticks: int = 0

    def merge(self, other: PriceOutput) -> None:
        for tf, rows in other.bars.items():
            self.bars.setdefault(tf, []).extend(rows)
        for tf, rows in other.snapshots.items():
            self.snapshots.setdefault(tf, []).extend(rows)
        self.late.extend(other.late)
        self.duplicates += other.duplicates
        self.gaps += other.gaps
        self.ticks += other.ticks


class _Series:
    """Bars and indicators of one symbol in one timeframe."""

    __slots__ = ("agg", "ind", "prev_close", "returns")

    def __init__(self, agg: BarAggregator, ind: IndicatorSet) -> None:
        self.agg = agg
        self.ind = ind
        self.prev_close = math.nan
        self.returns: deque[float] = deque(maxlen=N_RETURNS)


class _Symbol:
    __slots__ = ("last_seq", "last_ts", "series")

    def __init__(self, series: list[_Series]) -> None:
        self.last_seq = 0
        self.last_ts = 0
        self.series = series


class PricePartition:
    """Bars and indicators for all symbols of one partition (see the module docstring)."""

    def __init__(self, timeframes: list[tuple[str, int]], config: IndicatorConfig | None = None) -> None:
        if not timeframes:
            raise ValueError("at least one timeframe is needed, e.g. ['1s', '1m']")
        self.timeframes = timeframes
        self.config = config or IndicatorConfig()
        self.symbols: dict[str, _Symbol] = {}

    def _symbol(self, name: str) -> _Symbol:
        sym = self.symbols.get(name)
        if sym is None:
            sym = self.symbols[name] = _Symbol(
                [_Series(BarAggregator(tf_us), IndicatorSet(self.config)) for _, tf_us in self.timeframes]
            )
        return sym

    def apply(
        self,
        symbols: Sequence[str],
        symbol_index: npt.ArrayLike,
        ts_us: npt.ArrayLike,
        price: npt.ArrayLike,
        size: npt.ArrayLike,
        seq: npt.ArrayLike,
        ingest_us: int,
        now_us: int,
    ) -> PriceOutput:
        """Apply one TickBatch (columns in arrival order); return closed bars, snapshots and late ticks."""
        idx = np.asarray(symbol_index, dtype=np.int64)
        ts = np.asarray(ts_us, dtype=np.int64)
        px = np.asarray(price, dtype=np.float64)
        sz = np.asarray(size, dtype=np.float64)
        sq = np.asarray(seq, dtype=np.int64)
        out = PriceOutput()
        order = np.argsort(idx, kind="stable")
        bounds = np.searchsorted(idx[order], np.arange(len(symbols) + 1))
        for i, name in enumerate(symbols):
            rows = order[bounds[i] : bounds[i + 1]]
            if rows.size:
                self._apply_symbol(name, ts[rows], px[rows], sz[rows], sq[rows], ingest_us, now_us, out)
        return out

    def _apply_symbol(
        self,
        name: str,
        ts: npt.NDArray[np.int64],
        px: npt.NDArray[np.float64],
        sz: npt.NDArray[np.float64],
        sq: npt.NDArray[np.int64],
        ingest_us: int,
        now_us: int,
        out: PriceOutput,
    ) -> None:
        sym = self._symbol(name)
        fresh = sq > sym.last_seq
        if not fresh.all():
            out.duplicates += int((~fresh).sum())
            ts, px, sz, sq = ts[fresh], px[fresh], sz[fresh], sq[fresh]
            if not sq.size:
                return
        expected = sym.last_seq + sq.size
        if int(sq[-1]) != expected:
            out.gaps += int(sq[-1]) - expected
        sym.last_seq = int(sq[-1])
        sym.last_ts = max(sym.last_ts, int(ts.max()))
        out.ticks += int(sq.size)
        for (tf, _), series in zip(self.timeframes, sym.series, strict=True):
            closed, late = series.agg.update_many(ts, px, sz)
            for j in late.tolist():
                out.late.append((tf, name, int(ts[j]), float(px[j]), float(sz[j]), int(sq[j])))
            for bar in closed:
                self._emit(name, tf, series, bar, ingest_us, now_us, out)

    def _emit(
        self, name: str, tf: str, series: _Series, bar: Bar, ingest_us: int, now_us: int, out: PriceOutput
    ) -> None:
        bar_id = record_id(name, tf, bar.start_us)
        out.bars.setdefault(tf, []).append(
            {
                "bar_id": bar_id,
                "symbol": name,
                "timeframe": tf,
                "start_us": bar.start_us,
                "open": bar.open,
                "high": bar.high,
                "low": bar.low,
                "close": bar.close,
                "volume": bar.volume,
                "vwap": bar.vwap,
                "trades": bar.trades,
                "first_seq": -1,
                "last_seq": -1,
                "ingest_us": ingest_us,
                "close_us": now_us,
            }
        )
        snap = series.ind.update(bar.open, bar.high, bar.low, bar.close, bar.volume)
        if series.prev_close > 0.0:
            series.returns.append(math.log(bar.close / series.prev_close))
        series.prev_close = bar.close
        out.snapshots.setdefault(tf, []).append(
            {
                "snapshot_id": bar_id,
                "symbol": name,
                "timeframe": tf,
                "start_us": bar.start_us,
                "close": bar.close,
                "volume": bar.volume,
                **snap,
                "returns": list(series.returns),
                "bars_seen": series.ind.bars_seen,
                "ingest_us": ingest_us,
                "close_us": now_us,
                "indicator_us": now_us,
            }
        )

    def flush_idle(self, now_us: int) -> PriceOutput:
        """Close every open bar at the end of its own bucket (no later tick of that bucket is expected)."""
        out = PriceOutput()
        for name, sym in self.symbols.items():
            for (tf, tf_us), series in zip(self.timeframes, sym.series, strict=True):
                bar = series.agg.open_bar
                if bar is None:
                    continue
                closed = series.agg.flush(bar.start_us + tf_us)
                if closed is not None:
                    self._emit(name, tf, series, closed, 0, now_us, out)
        return out

    def open_bars(self) -> int:
        return sum(1 for s in self.symbols.values() for ser in s.series if ser.agg.open_bar is not None)

    # -- checkpoints ------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        parts = [_MAGIC, struct.pack("<HI", _VERSION, len(self.timeframes))]
        for tf, tf_us in self.timeframes:
            raw = tf.encode()
            parts.append(struct.pack("<Hq", len(raw), tf_us) + raw)
        parts.append(struct.pack("<I", len(self.symbols)))
        for name, sym in self.symbols.items():
            raw = name.encode()
            parts.append(struct.pack("<Hqq", len(raw), sym.last_seq, sym.last_ts) + raw)
            for series in sym.series:
                agg = series.agg.to_bytes()
                ind = series.ind.to_bytes()
                rets = list(series.returns)
                parts.append(struct.pack("<II", len(agg), len(ind)) + agg + ind)
                parts.append(struct.pack(f"<dB{len(rets)}d", series.prev_close, len(rets), *rets))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, config: IndicatorConfig | None = None) -> PricePartition:
        """Rebuild from :meth:`to_bytes`; resumes bit-identically (each IndicatorSet keeps its own config)."""
        buf = memoryview(bytes(data))
        if bytes(buf[:4]) != _MAGIC:
            raise ValueError("not a price-partition checkpoint (bad magic)")
        version, n_tf = struct.unpack_from("<HI", buf, 4)
        if version != _VERSION:
            raise ValueError(f"unsupported price-partition checkpoint version {version} (reads {_VERSION})")
        pos = 10
        tfs = []
        for _ in range(n_tf):
            ln, tf_us = struct.unpack_from("<Hq", buf, pos)
            pos += 10
            tfs.append((bytes(buf[pos : pos + ln]).decode(), tf_us))
            pos += ln
        (n_sym,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        state = cls(tfs, config)
        for _ in range(n_sym):
            ln, last_seq, last_ts = struct.unpack_from("<Hqq", buf, pos)
            pos += 18
            name = bytes(buf[pos : pos + ln]).decode()
            pos += ln
            series_list = []
            for _ in range(n_tf):
                la, li = struct.unpack_from("<II", buf, pos)
                pos += 8
                agg = BarAggregator.from_bytes(bytes(buf[pos : pos + la]))
                pos += la
                ind = IndicatorSet.from_bytes(bytes(buf[pos : pos + li]))
                pos += li
                series = _Series(agg, ind)
                prev_close, n_ret = struct.unpack_from("<dB", buf, pos)
                pos += 9
                series.prev_close = prev_close
                series.returns.extend(struct.unpack_from(f"<{n_ret}d", buf, pos))
                pos += 8 * n_ret
                series_list.append(series)
            sym = _Symbol(series_list)
            sym.last_seq, sym.last_ts = last_seq, last_ts
            state.symbols[name] = sym
        return state
