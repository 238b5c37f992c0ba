"""The price service's per-partition state: ticks -> bars per timeframe -> indicator snapshots (pure code).

For every symbol of a partition it keeps the last applied tick sequence number (duplicates re-delivered after
a crash are dropped, gaps are counted), a :class:`~processors.bars.BarAggregator` and an
:class:`~processors.indicators.IndicatorSet` per timeframe, and the recent log returns the model's features
need. :meth:`PricePartition.apply` takes one TickBatch's columns and returns the closed bars and indicator
snapshots as records in the Avro field layout (``Bar``, ``IndicatorSnapshot``), with deterministic ids
``SYMBOL|TIMEFRAME|START_US`` so that re-processing yields the same ids.

Bars close in event time (:mod:`processors.event_time`): when the symbol's own ticks pass a bar's end by the
allowed lateness, when a watermark of the partition does so for a live symbol (the feed's clock minus the
maximum delay, in-band in the TickBatch), or when the symbol's input ends (``closed_symbols``: the end of a
replay). Late ticks are decided per timeframe: a tick whose bar of one timeframe has closed is returned as
late for that timeframe, with the start of the bar it missed (the service dead-letters it), and still counts
in the others.

>>> state = PricePartition(parse_timeframes(["1s"]))
>>> out = state.apply(["A"], np.array([0, 0, 0]), np.array([1_000_000, 1_500_000, 2_100_000]),
...                   np.array([10.0, 11.0, 12.0]), np.ones(3), np.array([1, 2, 3]), ingest_us=5, now_us=6)
>>> [(b["start_us"], b["close"], b["trades"]) for b in out.bars["1s"]]
[(1000000, 11.0, 2)]
>>> restored = PricePartition.from_bytes(state.to_bytes())
>>> restored.apply(["A"], np.array([0]), np.array([2_200_000]), np.array([9.0]), np.ones(1), np.array([3]),
...                ingest_us=7, now_us=8).duplicates
1
>>> ended = restored.apply(["A"], np.array([], np.int64), np.array([], np.int64), np.array([]), np.array([]),
...                        np.array([], np.int64), ingest_us=9, now_us=10, closed_symbols=["A"])
>>> [(b["start_us"], b["trades"]) for b in ended.bars["1s"]]  # end of input: the open bar closes
[(2000000, 1)]
"""

from __future__ import annotations

import math
import re
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from processors.bars import Bar, BarAggregator
from processors.event_time import EventTimePolicy
from processors.features import N_RETURNS
from processors.indicators import IndicatorConfig, IndicatorSet

UNITS_US = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_TF_RE = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_MAGIC = b"SPPP"
_VERSION = 2
_NEVER = 2**63 - 1


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


class LateTick(NamedTuple):
    """A tick that came after its bar of ``timeframe`` had closed (the bar starting at ``bar_start_us``)."""

    timeframe: str
    symbol: str
    ts_us: int
    price: float
    size: float
    seq: int
    bar_start_us: int


@dataclass
class PriceOutput:
    """What one batch (or flush) produced."""

    bars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    snapshots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    late: list[LateTick] = field(default_factory=list)
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
    __slots__ = ("last_seq", "last_ts", "live", "next_close", "series")

    def __init__(self, series: list[_Series]) -> None:
        self.last_seq = 0
        self.last_ts = 0
        self.live = False  # follows the partition's (wall-clock) watermarks
        self.next_close = _NEVER  # the event time at which its oldest open bar closes
        self.series = series

    def refresh(self) -> None:
        self.next_close = min((s.agg.next_close_us or _NEVER) for s in self.series)


class PricePartition:
    """Bars and indicators for all symbols of one partition (see the module docstring)."""

    def __init__(
        self,
        timeframes: list[tuple[str, int]],
        config: IndicatorConfig | None = None,
        policy: EventTimePolicy | None = None,
    ) -> None:
        if not timeframes:
            raise ValueError("at least one timeframe is needed, e.g. ['1s', '1m']")
        self.timeframes = timeframes
        self.config = config or IndicatorConfig()
        self.policy = policy or EventTimePolicy()
        self.symbols: dict[str, _Symbol] = {}
        self.watermark_us = -_NEVER  # the newest watermark the partition received

    def _symbol(self, name: str) -> _Symbol:
        sym = self.symbols.get(name)
        if sym is None:
            lateness = self.policy.allowed_lateness_us
            sym = self.symbols[name] = _Symbol(
                [
                    _Series(BarAggregator(tf_us, lateness), IndicatorSet(self.config))
                    for _, tf_us in self.timeframes
                ]
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
        watermark_us: int = 0,
        closed_symbols: Sequence[str] = (),
    ) -> PriceOutput:
        """Apply one TickBatch: its ticks (columns in arrival order), then its watermark (``0``: none) to the
        live symbols, then the end of input of ``closed_symbols``. Returns the closed bars, their snapshots
        and the late ticks."""
        idx = np.asarray(symbol_index, dtype=np.int64)
        ts = np.asarray(ts_us, dtype=np.int64)
        px = np.asarray(price, dtype=np.float64)
        sz = np.asarray(size, dtype=np.float64)
        sq = np.asarray(seq, dtype=np.int64)
        out = PriceOutput()
        if idx.size:
            order = np.argsort(idx, kind="stable")
            bounds = np.searchsorted(idx[order], np.arange(len(symbols) + 1))
            for i, name in enumerate(symbols):
                rows = order[bounds[i] : bounds[i + 1]]
                if rows.size:
                    self._apply_symbol(name, ts[rows], px[rows], sz[rows], sq[rows], ingest_us, now_us, out)
        if watermark_us > self.watermark_us:
            self.watermark_us = watermark_us
            for name, sym in self.symbols.items():
                if sym.live and sym.next_close <= watermark_us:
                    self._advance(name, sym, watermark_us, ingest_us, now_us, out)
        for name in closed_symbols:
            ended = self.symbols.get(name)
            if ended is not None:
                for (tf, _), series in zip(self.timeframes, ended.series, strict=True):
                    for bar in series.agg.close_all():
                        self._emit(name, tf, series, bar, ingest_us, now_us, out)
                ended.refresh()
        return out

    def _advance(self, name: str, sym: _Symbol, watermark_us: int, ingest_us: int, now_us: int,
                 out: PriceOutput) -> None:  # fmt: skip
        for (tf, _), series in zip(self.timeframes, sym.series, strict=True):
            for bar in series.agg.advance(watermark_us):
                self._emit(name, tf, series, bar, ingest_us, now_us, out)
        sym.refresh()

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
        sym.live = self.policy.is_live(sym.last_ts, ingest_us)
        out.ticks += int(sq.size)
        for (tf, _), series in zip(self.timeframes, sym.series, strict=True):
            closed, late = series.agg.update_many(ts, px, sz)
            for j in late.tolist():
                t = int(ts[j])
                out.late.append(
                    LateTick(tf, name, t, float(px[j]), float(sz[j]), int(sq[j]), series.agg.missed_bar(t))
                )
            for bar in closed:
                self._emit(name, tf, series, bar, ingest_us, now_us, out)
        sym.refresh()
        if sym.live and sym.next_close <= self.watermark_us:  # a symbol that just became live
            self._advance(name, sym, self.watermark_us, ingest_us, now_us, out)

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

    def open_bars(self) -> int:
        return sum(ser.agg.open_bars for s in self.symbols.values() for ser in s.series)

    # -- checkpoints ------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        parts = [_MAGIC, struct.pack("<HIq", _VERSION, len(self.timeframes), self.watermark_us)]
        for tf, tf_us in self.timeframes:
            raw = tf.encode()
            parts.append(struct.pack("<Hq", len(raw), tf_us) + raw)
        parts.append(struct.pack("<I", len(self.symbols)))
        for name, sym in self.symbols.items():
            raw = name.encode()
            parts.append(struct.pack("<HqqB", len(raw), sym.last_seq, sym.last_ts, sym.live) + raw)
            for series in sym.series:
                agg = series.agg.to_bytes()
                ind = series.ind.to_bytes()
                rets = list(series.returns)
                parts.append(struct.pack("<II", len(agg), len(ind)) + agg + ind)
                parts.append(struct.pack(f"<dB{len(rets)}d", series.prev_close, len(rets), *rets))
        return b"".join(parts)

    @classmethod
    def from_bytes(
        cls, data: bytes, config: IndicatorConfig | None = None, policy: EventTimePolicy | None = None
    ) -> PricePartition:
        """Rebuild from :meth:`to_bytes` (this version or version 1); resumes bit-identically (each
        IndicatorSet keeps its own config). A changed allowed lateness in ``policy`` applies to the open bars
        from the next tick or watermark on."""
        buf = memoryview(bytes(data))
        if bytes(buf[:4]) != _MAGIC:
            raise ValueError("not a price-partition checkpoint (bad magic)")
        version, n_tf = struct.unpack_from("<HI", buf, 4)
        if version not in (1, _VERSION):
            raise ValueError(
                f"unsupported price-partition checkpoint version {version} (reads 1 and {_VERSION})"
            )
        pos = 10
        watermark = -_NEVER
        if version >= 2:
            (watermark,) = struct.unpack_from("<q", buf, pos)
            pos += 8
        tfs = []
        for _ in range(n_tf):
            ln, tf_us = struct.unpack_from("<Hq", buf, pos)
            pos += 10
            tfs.append((bytes(buf[pos : pos + ln]).decode(), tf_us))
            pos += ln
        (n_sym,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        state = cls(tfs, config, policy)
        state.watermark_us = watermark
        lateness = state.policy.allowed_lateness_us
        for _ in range(n_sym):
            ln, last_seq, last_ts = struct.unpack_from("<Hqq", buf, pos)
            pos += 18
            live = False
            if version >= 2:
                live = bool(buf[pos])
                pos += 1
            name = bytes(buf[pos : pos + ln]).decode()
            pos += ln
            series_list = []
            for _ in range(n_tf):
                la, li = struct.unpack_from("<II", buf, pos)
                pos += 8
                agg = BarAggregator.from_bytes(bytes(buf[pos : pos + la]))
                if agg.allowed_lateness_us != lateness:
                    agg = agg.with_lateness(lateness)
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
            sym.last_seq, sym.last_ts, sym.live = last_seq, last_ts, live
            sym.refresh()
            state.symbols[name] = sym
        return state
