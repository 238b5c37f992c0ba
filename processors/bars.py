"""OHLCV bars from trades, in event time: batch :func:`aggregate` and streaming :class:`BarAggregator`.

A trade at ``ts_us`` (int64 microseconds since the epoch) belongs to the bucket starting at
``floor(ts_us / timeframe_us) * timeframe_us``. Each bucket with at least one trade gives one bar; buckets
without trades give none. Bar fields:

* ``start_us`` -- bucket start (int64 µs); the bar covers ``[start_us, start_us + timeframe_us)``;
* ``open``/``close`` -- price of the earliest/latest trade by timestamp (ties: first/last received);
* ``high``/``low`` -- max/min price;
* ``volume`` -- running sum of sizes in the order the trades were received (plain float64 sum from 0.0);
* ``vwap`` -- ``pv / volume`` with ``pv`` the running sum of ``price * size`` in the same order; NaN when the
  volume is 0 (only zero-size trades);
* ``trades`` -- number of trades (int64).

Results come as :class:`Bar` (one bar, a NamedTuple) or :class:`Bars` (columnar: one numpy array per field,
the form used for batches and for Arrow/Parquet/ClickHouse).

Batch and streaming agree exactly: feeding any sequence of trades to :meth:`BarAggregator.update_many` (in
any chunking) and flushing gives bit for bit the bars of :func:`aggregate` over the trades it did not report
as late. Both agree with ``pandas`` ``resample(..., origin="epoch")`` of the same trades (OHLC and counts
exactly; volume and VWAP to rounding, since pandas sums in time order with compensated summation).

>>> import numpy as np
>>> ts = np.array([0, 30_000_000, 61_000_000, 200_000_000])  # µs
>>> bars = aggregate(ts, np.array([10.0, 12.0, 11.0, 9.0]), np.array([1.0, 3.0, 2.0, 1.0]), 60_000_000)
>>> bars.start_us.tolist(), bars.close.tolist(), bars.vwap.tolist(), bars.trades.tolist()
([0, 60000000, 180000000], [12.0, 11.0, 9.0], [11.5, 11.0, 9.0], [2, 1, 1])
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

__all__ = ["Bar", "BarAggregator", "Bars", "aggregate"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_jit = nb.njit(nogil=True, cache=True, error_model="numpy", fastmath=False)
_jit_inline = nb.njit(nogil=True, cache=True, error_model="numpy", fastmath=False, inline="always")
_INT64_MIN = np.iinfo(np.int64).min


class Bar(NamedTuple):
    """One OHLCV bar (see the module docstring for the field definitions)."""

    start_us: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    trades: int


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """Columnar bars: one array per :class:`Bar` field, all the same length, ordered by ``start_us``.

    ``start_us`` and ``trades`` are int64, the other columns float64. ``len(bars)``, ``bars[i]`` (a
    :class:`Bar`) and iteration work as for a sequence of bars; :meth:`equals` compares bit for bit.

    >>> b = Bars.from_bars([Bar(0, 1.0, 2.0, 0.5, 1.5, 10.0, 1.2, 3)])
    >>> len(b), b[0].close, b.to_dict()["trades"].tolist()
    (1, 1.5, [3])
    """

    start_us: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    vwap: F64
    trades: I64

    @classmethod
    def empty(cls) -> Bars:
        """No bars."""
        f = np.empty(0, dtype=np.float64)
        i = np.empty(0, dtype=np.int64)
        return cls(i, f, f, f, f, f, f, i)

    @classmethod
    def from_bars(cls, bars: list[Bar]) -> Bars:
        """Columnar form of a list of bars."""
        if not bars:
            return cls.empty()
        cols = list(zip(*bars, strict=True))
        f = [np.array(col, dtype=np.float64) for col in cols[1:7]]
        return cls(
            np.array(cols[0], dtype=np.int64),
            f[0],
            f[1],
            f[2],
            f[3],
            f[4],
            f[5],
            np.array(cols[7], dtype=np.int64),
        )

    @classmethod
    def concat(cls, parts: list[Bars]) -> Bars:
        """Concatenate several Bars (e.g. the outputs of successive ``update_many`` calls)."""
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in Bar._fields))

    def __len__(self) -> int:
        return int(self.start_us.shape[0])

    def __getitem__(self, i: int) -> Bar:
        return Bar(
            int(self.start_us[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
            float(self.vwap[i]),
            int(self.trades[i]),
        )

    def __iter__(self) -> Iterator[Bar]:
        for i in range(len(self)):
            yield self[i]

    def to_dict(self) -> dict[str, npt.NDArray[np.int64] | npt.NDArray[np.float64]]:
        """``{field: array}``, e.g. for ``pandas.DataFrame(bars.to_dict())``."""
        return {name: getattr(self, name) for name in Bar._fields}

    def equals(self, other: Bars) -> bool:
        """Bit-for-bit equality of every column (NaN equal to NaN)."""
        return all(
            np.array_equal(getattr(self, n).view(np.int64), getattr(other, n).view(np.int64))
            for n in Bar._fields
        )

    def __repr__(self) -> str:
        return f"Bars(n={len(self)})"


# --- state layout of the streaming aggregator ------------------------------------------------------------
S_OPEN = 0  # 1 while a bar is open
S_START = 1  # its bucket start
S_OPEN_TS = 2  # timestamp of its open trade (earliest)
S_CLOSE_TS = 3  # timestamp of its close trade (latest)
S_FRONTIER = 4  # start of the oldest bucket that still accepts trades
S_TRADES = 5
S_LATE = 6  # late trades so far
N_SI = 7
P_OPEN, P_HIGH, P_LOW, P_CLOSE, P_VOL, P_PV = range(6)
N_SF = 6

_MAGIC = b"SPBA"
_VERSION = 1
_HEADER = struct.Struct("<4sHq")  # magic, version, timeframe_us


@_jit_inline
def _emit(si: I64, sf: F64, k: int, oi: I64, of: F64) -> None:  # pragma: no cover - compiled
    """Write the open bar as bar ``k`` of the outputs (``oi``: (2, cap) start/trades, ``of``: (6, cap))."""
    vol = sf[P_VOL]
    oi[0, k] = si[S_START]
    oi[1, k] = si[S_TRADES]
    of[0, k] = sf[P_OPEN]
    of[1, k] = sf[P_HIGH]
    of[2, k] = sf[P_LOW]
    of[3, k] = sf[P_CLOSE]
    of[4, k] = vol
    of[5, k] = sf[P_PV] / vol if vol > 0.0 else np.nan


@_jit_inline
def _tick(
    si: I64, sf: F64, tf: int, t: int, p: float, s: float, oi: I64, of: F64, k: int
) -> int:  # pragma: no cover
    """Apply one trade: -1 if it is late, 1 if it closed the open bar (written as bar ``k``), else 0."""
    b = (t // tf) * tf  # floor division: also right for negative timestamps
    if b < si[S_FRONTIER]:
        si[S_LATE] += 1
        return -1
    closed = 0
    if si[S_OPEN] == 1 and b > si[S_START]:
        _emit(si, sf, k, oi, of)
        closed = 1
        si[S_OPEN] = 0
    if si[S_OPEN] == 0:
        si[S_OPEN] = 1
        si[S_START] = b
        si[S_FRONTIER] = b
        si[S_OPEN_TS] = t
        si[S_CLOSE_TS] = t
        si[S_TRADES] = 1
        sf[P_OPEN] = p
        sf[P_HIGH] = p
        sf[P_LOW] = p
        sf[P_CLOSE] = p
        sf[P_VOL] = 0.0 + s
        sf[P_PV] = 0.0 + p * s
    else:
        if p > sf[P_HIGH]:
            sf[P_HIGH] = p
        if p < sf[P_LOW]:
            sf[P_LOW] = p
        if t < si[S_OPEN_TS]:
            si[S_OPEN_TS] = t
            sf[P_OPEN] = p
        if t >= si[S_CLOSE_TS]:
            si[S_CLOSE_TS] = t
            sf[P_CLOSE] = p
        si[S_TRADES] += 1
        sf[P_VOL] = sf[P_VOL] + s
        sf[P_PV] = sf[P_PV] + p * s
    return closed


@_jit
def _ingest(
    si: I64, sf: F64, tf: int, ts: I64, price: F64, size: F64, oi: I64, of: F64, late: I64
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Feed trades in arrival order; return (bars closed into ``oi``/``of``, late trades put in ``late``)."""
    nbars = 0
    nlate = 0
    for i in range(ts.shape[0]):
        r = _tick(si, sf, tf, ts[i], price[i], size[i], oi, of, nbars)
        if r < 0:
            late[nlate] = i
            nlate += 1
        else:
            nbars += r
    return nbars, nlate


@_jit
def _ingest_one(
    si: I64, sf: F64, tf: int, t: int, p: float, s: float, oi: I64, of: F64
) -> int:  # pragma: no cover
    return _tick(si, sf, tf, t, p, s, oi, of, 0)


@_jit
def _flush(si: I64, sf: F64, tf: int, watermark: int, oi: I64, of: F64) -> int:  # pragma: no cover - compiled
    """Close the open bar if it ends at or before ``watermark``; advance the frontier. Returns bars made."""
    nbars = 0
    if si[S_OPEN] == 1 and si[S_START] + tf <= watermark:
        _emit(si, sf, 0, oi, of)
        nbars = 1
        si[S_OPEN] = 0
        si[S_FRONTIER] = si[S_START] + tf
    wb = (watermark // tf) * tf
    if wb > si[S_FRONTIER] and si[S_OPEN] == 0:
        si[S_FRONTIER] = wb
    return nbars


@_jit
def _bucket_sorted(ts: I64, tf: int) -> bool:  # pragma: no cover - compiled
    prev = _INT64_MIN
    for i in range(ts.shape[0]):
        b = (ts[i] // tf) * tf
        if b < prev:
            return False
        prev = b
    return True


def _bar_at(oi: I64, of: F64, k: int) -> Bar:
    """Bar ``k`` of the kernel outputs as a :class:`Bar`."""
    return Bar(
        int(oi[0, k]),
        float(of[0, k]),
        float(of[1, k]),
        float(of[2, k]),
        float(of[3, k]),
        float(of[4, k]),
        float(of[5, k]),
        int(oi[1, k]),
    )


def _bars_from(oi: I64, of: F64, n: int) -> Bars:
    """Copy the first ``n`` bars out of the (oversized) kernel outputs."""
    f = of[:, :n].copy()
    i = oi[:, :n].copy()
    return Bars(i[0], f[0], f[1], f[2], f[3], f[4], f[5], i[1])


def _check_timeframe(timeframe_us: object) -> int:
    if isinstance(timeframe_us, bool) or not isinstance(timeframe_us, int | np.integer) or timeframe_us <= 0:
        raise ValueError(
            f"timeframe_us must be a positive integer number of microseconds, got {timeframe_us!r}"
        )
    return int(timeframe_us)


def _check_trades(ts_us: npt.ArrayLike, price: npt.ArrayLike, size: npt.ArrayLike) -> tuple[I64, F64, F64]:
    ts = np.asarray(ts_us)
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(
            f"ts_us must be a 1-D integer array of microseconds, got dtype {ts.dtype} and shape {ts.shape} "
            "(convert datetimes with .astype('datetime64[us]').view('int64'))"
        )
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    p = np.ascontiguousarray(price, dtype=np.float64)
    s = np.ascontiguousarray(size, dtype=np.float64)
    if p.shape != ts.shape or s.shape != ts.shape:
        raise ValueError(
            f"ts_us, price and size must have the same length, got {ts.shape}, {p.shape}, {s.shape}"
        )
    for name, arr in (("price", p), ("size", s)):
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise ValueError(f"{name}[{bad}] is {float(arr[bad])!r}: trades need finite prices and sizes")
    if s.shape[0] and float(s.min()) < 0.0:
        bad = int(np.argmax(s < 0.0))
        raise ValueError(f"size[{bad}] is {float(s[bad])!r}: trade sizes must be >= 0")
    return ts, p, s


def aggregate(ts_us: npt.ArrayLike, price: npt.ArrayLike, size: npt.ArrayLike, timeframe_us: int) -> Bars:
    """OHLCV bars of a batch of trades (any order; see the module docstring for the bar definition).

    Trades need not be sorted: they are grouped by bucket with a stable sort, so within a bucket the volume
    is summed in the order given, exactly as :class:`BarAggregator` does.

    >>> bars = aggregate([5, 1, 12], [2.0, 1.0, 3.0], [1.0, 1.0, 2.0], 10)
    >>> [(b.start_us, b.open, b.close, b.trades) for b in bars]
    [(0, 1.0, 2.0, 2), (10, 3.0, 3.0, 1)]
    """
    tf = _check_timeframe(timeframe_us)
    ts, p, s = _check_trades(ts_us, price, size)
    if not _bucket_sorted(ts, tf):
        order = np.argsort(ts // tf, kind="stable")
        ts, p, s = ts[order], p[order], s[order]
    n = ts.shape[0]
    si = np.zeros(N_SI, dtype=np.int64)
    si[S_FRONTIER] = _INT64_MIN
    sf = np.zeros(N_SF, dtype=np.float64)
    oi = np.empty((2, n + 1), dtype=np.int64)
    of = np.empty((6, n + 1), dtype=np.float64)
    nbars, nlate = _ingest(si, sf, tf, ts, p, s, oi, of, np.empty(0, dtype=np.int64))
    if nlate:  # pragma: no cover - impossible for bucket-sorted input
        raise AssertionError("late trades in a sorted batch")
    if si[S_OPEN]:
        _emit(si, sf, nbars, oi, of)
        nbars += 1
    return _bars_from(oi, of, nbars)


class BarAggregator:
    """Streaming OHLCV bars for one symbol, in event time.

    A bar closes when the first trade of a later bucket arrives, or on :meth:`flush` with a watermark at or
    past its end. A trade for a bucket older than the open one (or one already closed by a watermark) is
    *late*: it is counted in :attr:`late_trades` and handed back to the caller, never merged.

    >>> agg = BarAggregator(timeframe_us=60_000_000)
    >>> agg.update(1_000_000, 100.0, 2.0)
    (None, False)
    >>> closed, late = agg.update(61_000_000, 101.0, 1.0)
    >>> closed.start_us, closed.close, late
    (0, 100.0, False)
    >>> agg.update(59_000_000, 99.0, 1.0)  # belongs to the closed minute: late
    (None, True)
    >>> agg.flush(120_000_000).start_us, agg.late_trades
    (60000000, 1)
    """

    __slots__ = ("_scratch", "_sf", "_si", "_tf")

    def __init__(self, timeframe_us: int) -> None:
        self._tf = _check_timeframe(timeframe_us)
        self._scratch = (np.empty((2, 1), dtype=np.int64), np.empty((6, 1), dtype=np.float64))
        self._si = np.zeros(N_SI, dtype=np.int64)
        self._si[S_FRONTIER] = _INT64_MIN
        self._sf = np.zeros(N_SF, dtype=np.float64)

    @property
    def timeframe_us(self) -> int:
        """Bar length in microseconds."""
        return self._tf

    @property
    def late_trades(self) -> int:
        """Number of late trades seen so far (kept across checkpoints)."""
        return int(self._si[S_LATE])

    @property
    def open_bar(self) -> Bar | None:
        """The bar being built (not yet closed), or None."""
        if not self._si[S_OPEN]:
            return None
        oi = np.empty((2, 1), dtype=np.int64)
        of = np.empty((6, 1), dtype=np.float64)
        _emit_now(self._si, self._sf, oi, of)
        return _bar_at(oi, of, 0)

    def update(self, ts_us: int, price: float, size: float) -> tuple[Bar | None, bool]:
        """Add one trade; return ``(closed_bar, late)``.

        ``closed_bar`` is the bar this trade closed (or None); ``late`` is True when the trade was rejected as
        late (then ``closed_bar`` is None and the state is unchanged apart from the late counter).
        """
        if isinstance(ts_us, bool) or not isinstance(ts_us, int | np.integer):
            raise ValueError(f"ts_us must be an integer number of microseconds, got {ts_us!r}")
        p = float(price)
        s = float(size)
        if not (math.isfinite(p) and math.isfinite(s) and s >= 0.0):
            raise ValueError(
                f"trade needs a finite price and a finite size >= 0, got price={price!r}, size={size!r}"
            )
        oi, of = self._scratch
        r = _ingest_one(self._si, self._sf, self._tf, int(ts_us), p, s, oi, of)
        if r < 0:
            return None, True
        return (_bar_at(oi, of, 0) if r else None), False

    def update_many(
        self, ts_us: npt.ArrayLike, price: npt.ArrayLike, size: npt.ArrayLike
    ) -> tuple[Bars, I64]:
        """Add trades in arrival order (e.g. a TickBatch's columns); return ``(closed_bars, late_indices)``.

        ``late_indices`` are the positions (into these arrays) of the trades rejected as late. All inputs are
        validated before any trade is applied.
        """
        ts, p, s = _check_trades(ts_us, price, size)
        n = ts.shape[0]
        oi = np.empty((2, n), dtype=np.int64)
        of = np.empty((6, n), dtype=np.float64)
        late = np.empty(n, dtype=np.int64)
        nbars, nlate = _ingest(self._si, self._sf, self._tf, ts, p, s, oi, of, late)
        return _bars_from(oi, of, nbars), late[:nlate]

    def flush(self, watermark_us: int) -> Bar | None:
        """Declare that no trade older than ``watermark_us`` will come (more would be late).

        Closes and returns the open bar if it ends at or before the watermark (``start + timeframe <=
        watermark_us``); buckets that end at or before the watermark stop accepting trades either way.
        """
        wm = int(watermark_us)
        oi = np.empty((2, 1), dtype=np.int64)
        of = np.empty((6, 1), dtype=np.float64)
        return _bar_at(oi, of, 0) if _flush(self._si, self._sf, self._tf, wm, oi, of) else None

    def to_bytes(self) -> bytes:
        """Serialize: ``b"SPBA"``, u16 version, i64 timeframe, then the int64 and float64 state (all
        little-endian)."""
        return (
            _HEADER.pack(_MAGIC, _VERSION, self._tf)
            + self._si.astype("<i8").tobytes()
            + self._sf.astype("<f8").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BarAggregator:
        """Rebuild an aggregator from :meth:`to_bytes` output; it resumes bit-identically."""
        buf = bytes(data)
        expected = _HEADER.size + 8 * (N_SI + N_SF)
        if len(buf) < _HEADER.size:
            raise ValueError(f"BarAggregator checkpoint too short: {len(buf)} bytes")
        magic, version, tf = _HEADER.unpack_from(buf)
        if magic != _MAGIC:
            raise ValueError(f"not a BarAggregator checkpoint (magic {magic!r}, expected {_MAGIC!r})")
        if version != _VERSION:
            raise ValueError(
                f"unsupported BarAggregator checkpoint version {version} (this code reads {_VERSION})"
            )
        if len(buf) != expected:
            raise ValueError(f"corrupt BarAggregator checkpoint: {len(buf)} bytes, expected {expected}")
        out = cls(tf)
        out._si = np.frombuffer(buf, dtype="<i8", count=N_SI, offset=_HEADER.size).astype(np.int64)
        out._sf = np.frombuffer(buf, dtype="<f8", count=N_SF, offset=_HEADER.size + 8 * N_SI).astype(
            np.float64
        )
        return out

    def __repr__(self) -> str:
        return (
            f"BarAggregator(timeframe_us={self._tf}, open={bool(self._si[S_OPEN])}, late={self.late_trades})"
        )


@_jit
def _emit_now(si: I64, sf: F64, oi: I64, of: F64) -> None:  # pragma: no cover - compiled
    _emit(si, sf, 0, oi, of)
