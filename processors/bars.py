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
any chunking, with any allowed lateness and any watermarks in between) and closing the rest at the end gives
bit for bit the bars of :func:`aggregate` over the trades it did not report as late. Both agree with
``pandas`` ``resample(..., origin="epoch")`` of the same trades (OHLC and counts
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
# Header (int64): the aggregator's event time, its frontier, the late count, the open bars and the lateness.
H_TIME = 0  # newest event time seen: max of accepted trade times and watermarks
H_FRONTIER = 1  # start of the oldest bucket that still accepts trades (older buckets are closed)
H_LATE = 2  # late trades so far
H_NOPEN = 3  # open bars (slots 0 .. nopen-1, ascending start)
H_LATENESS = 4  # allowed lateness (µs): a bar closes once the event time passes its end by this much
N_H = 5
# One open bar (a slot): int64 fields, then float64 fields.
S_START, S_OPEN_TS, S_CLOSE_TS, S_TRADES = range(4)
N_SI = 4
P_OPEN, P_HIGH, P_LOW, P_CLOSE, P_VOL, P_PV = range(6)
N_SF = 6

_MAGIC = b"SPBA"
_VERSION = 2
_HEADER = struct.Struct("<4sHq")  # magic, version, timeframe_us
_V2 = struct.Struct("<I")  # slot capacity (after the header and before the state arrays)


def slots_for(timeframe_us: int, allowed_lateness_us: int) -> int:
    """How many bars can be open at once: those whose end is within the lateness of the event time.

    Open bars start between ``floor((time - lateness) / tf) * tf`` and ``floor(time / tf) * tf``, so at most
    ``ceil(lateness / tf) + 1`` of them.

    >>> slots_for(60_000_000, 0), slots_for(1_000_000, 1_000_000), slots_for(1_000_000, 2_500_000)
    (1, 2, 4)
    """
    return -(-allowed_lateness_us // timeframe_us) + 1


@_jit_inline
def _emit(si: I64, sf: F64, k: int, oi: I64, of: F64) -> None:  # pragma: no cover - compiled
    """Write the bar of one slot as bar ``k`` of the outputs (``oi``: (2, cap), ``of``: (6, cap))."""
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
def _close_until(
    h: I64, si: I64, sf: F64, tf: int, limit: int, oi: I64, of: F64, k: int
) -> int:  # pragma: no cover - compiled
    """Close the open bars that start before ``limit`` (a bucket start), oldest first, into outputs from bar
    ``k``; move the frontier to ``limit``. Returns the number of bars written."""
    n = h[H_NOPEN]
    c = 0
    while c < n and si[c, S_START] < limit:
        _emit(si[c], sf[c], k + c, oi, of)
        c += 1
    if c:
        for j in range(n - c):
            si[j, :] = si[j + c, :]
            sf[j, :] = sf[j + c, :]
        h[H_NOPEN] = n - c
    if limit > h[H_FRONTIER]:
        h[H_FRONTIER] = limit
    return c


@_jit_inline
def _advance(h: I64, si: I64, sf: F64, tf: int, t: int, oi: I64, of: F64, k: int) -> int:  # pragma: no cover
    """Event time reaches ``t``: close every bar whose end plus the lateness is at or before it."""
    if t > h[H_TIME]:
        h[H_TIME] = t
    # bars [s, s + tf) with s + tf + lateness <= time, i.e. s < floor((time - lateness) / tf) * tf
    return _close_until(h, si, sf, tf, ((h[H_TIME] - h[H_LATENESS]) // tf) * tf, oi, of, k)


@_jit_inline
def _tick(
    h: I64, si: I64, sf: F64, tf: int, t: int, p: float, s: float, oi: I64, of: F64, k: int
) -> int:  # pragma: no cover - compiled
    """Apply one trade: -1 if it is late, else the number of bars it closed (written from bar ``k``)."""
    b = (t // tf) * tf  # floor division: also right for negative timestamps
    if b < h[H_FRONTIER]:
        h[H_LATE] += 1
        return -1
    closed = _advance(h, si, sf, tf, t, oi, of, k)
    n = h[H_NOPEN]
    j = n - 1
    while j >= 0 and si[j, S_START] > b:  # usually the newest slot is this bucket: no search
        j -= 1
    if j >= 0 and si[j, S_START] == b:
        if p > sf[j, P_HIGH]:
            sf[j, P_HIGH] = p
        if p < sf[j, P_LOW]:
            sf[j, P_LOW] = p
        if t < si[j, S_OPEN_TS]:
            si[j, S_OPEN_TS] = t
            sf[j, P_OPEN] = p
        if t >= si[j, S_CLOSE_TS]:
            si[j, S_CLOSE_TS] = t
            sf[j, P_CLOSE] = p
        si[j, S_TRADES] += 1
        sf[j, P_VOL] = sf[j, P_VOL] + s
        sf[j, P_PV] = sf[j, P_PV] + p * s
        return closed
    j += 1  # a new bar, inserted at position j (ascending start)
    for m in range(n, j, -1):
        si[m, :] = si[m - 1, :]
        sf[m, :] = sf[m - 1, :]
    h[H_NOPEN] = n + 1
    si[j, S_START] = b
    si[j, S_OPEN_TS] = t
    si[j, S_CLOSE_TS] = t
    si[j, S_TRADES] = 1
    sf[j, P_OPEN] = p
    sf[j, P_HIGH] = p
    sf[j, P_LOW] = p
    sf[j, P_CLOSE] = p
    sf[j, P_VOL] = 0.0 + s
    sf[j, P_PV] = 0.0 + p * s
    return closed


@_jit
def _ingest(
    h: I64, si: I64, sf: F64, tf: int, ts: I64, price: F64, size: F64, oi: I64, of: F64, late: I64
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Feed trades in arrival order; return (bars closed into ``oi``/``of``, late trades put in ``late``)."""
    nbars = 0
    nlate = 0
    for i in range(ts.shape[0]):
        r = _tick(h, si, sf, tf, ts[i], price[i], size[i], oi, of, nbars)
        if r < 0:
            late[nlate] = i
            nlate += 1
        else:
            nbars += r
    return nbars, nlate


@_jit
def _watermark(
    h: I64, si: I64, sf: F64, tf: int, watermark: int, oi: I64, of: F64
) -> int:  # pragma: no cover
    return _advance(h, si, sf, tf, watermark, oi, of, 0)


@_jit
def _close_all(h: I64, si: I64, sf: F64, tf: int, oi: I64, of: F64) -> int:  # pragma: no cover - compiled
    """End of input: close every open bar at its own end (later buckets still accept trades)."""
    n = h[H_NOPEN]
    if n == 0:
        return 0
    return _close_until(h, si, sf, tf, si[n - 1, S_START] + tf, oi, of, 0)


@_jit
def _bucket_sorted(ts: I64, tf: int) -> bool:  # pragma: no cover - compiled
    prev = _INT64_MIN
    for i in range(ts.shape[0]):
        b = (ts[i] // tf) * tf
        if b < prev:
            return False
        prev = b
    return True


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
    agg = BarAggregator(tf)
    n = ts.shape[0]
    oi = np.empty((2, n + 1), dtype=np.int64)
    of = np.empty((6, n + 1), dtype=np.float64)
    nbars, nlate = _ingest(agg._h, agg._si, agg._sf, tf, ts, p, s, oi, of, np.empty(0, dtype=np.int64))
    if nlate:  # pragma: no cover - impossible for bucket-sorted input
        raise AssertionError("late trades in a sorted batch")
    return Bars.concat([_bars_from(oi, of, nbars), agg.close_all()])


class BarAggregator:
    """Streaming OHLCV bars for one symbol, in event time, with an allowed lateness.

    The aggregator's *event time* is the newest of its accepted trade times and the watermarks it was given
    (:meth:`advance`). A bar ``[start, start + tf)`` closes once the event time reaches ``start + tf +
    allowed_lateness_us``; until then trades for it are merged, whatever order they come in. A trade whose
    bar has closed is *late*: it is counted in :attr:`late_trades` and handed back to the caller, never
    merged. With no lateness (the default) a bar closes at the first trade of a later bucket.
    :meth:`close_all` closes every open bar at the end of the input.

    >>> agg = BarAggregator(timeframe_us=60_000_000)
    >>> agg.update(1_000_000, 100.0, 2.0)
    (Bars(n=0), False)
    >>> closed, late = agg.update(61_000_000, 101.0, 1.0)
    >>> closed.start_us.tolist(), closed.close.tolist(), late
    ([0], [100.0], False)
    >>> agg.update(59_000_000, 99.0, 1.0)  # belongs to the closed minute: late
    (Bars(n=0), True)
    >>> agg.advance(120_000_000).start_us.tolist(), agg.late_trades  # a watermark closes the next minute
    ([60000000], 1)

    With a lateness of 30 s the first minute stays open until the event time reaches 1:30:

    >>> agg = BarAggregator(60_000_000, allowed_lateness_us=30_000_000)
    >>> _ = agg.update(1_000_000, 100.0, 1.0); _ = agg.update(61_000_000, 101.0, 1.0)
    >>> agg.update(59_000_000, 99.0, 1.0)[1], len(agg.advance(90_000_000)), agg.open_bars
    (False, 1, 1)
    """

    __slots__ = ("_h", "_sf", "_si", "_tf")

    def __init__(self, timeframe_us: int, allowed_lateness_us: int = 0) -> None:
        self._tf = _check_timeframe(timeframe_us)
        lateness = int(allowed_lateness_us)
        if lateness < 0:
            raise ValueError(f"allowed_lateness_us must be >= 0, got {allowed_lateness_us!r}")
        self._h = np.zeros(N_H, dtype=np.int64)
        self._h[H_TIME] = _INT64_MIN
        self._h[H_FRONTIER] = _INT64_MIN
        self._h[H_LATENESS] = lateness
        cap = slots_for(self._tf, lateness)
        self._si = np.zeros((cap, N_SI), dtype=np.int64)
        self._sf = np.zeros((cap, N_SF), dtype=np.float64)

    @property
    def timeframe_us(self) -> int:
        """Bar length in microseconds."""
        return self._tf

    @property
    def allowed_lateness_us(self) -> int:
        """How far past a bar's end the event time must be before the bar closes."""
        return int(self._h[H_LATENESS])

    @property
    def late_trades(self) -> int:
        """Number of late trades seen so far (kept across checkpoints)."""
        return int(self._h[H_LATE])

    @property
    def event_time_us(self) -> int:
        """The newest accepted trade time or watermark (int64 min before the first)."""
        return int(self._h[H_TIME])

    @property
    def open_bars(self) -> int:
        """Bars being built (not yet closed)."""
        return int(self._h[H_NOPEN])

    @property
    def next_close_us(self) -> int | None:
        """The event time at which the oldest open bar closes (its end plus the lateness), or None."""
        if not self._h[H_NOPEN]:
            return None
        return int(self._si[0, S_START]) + self._tf + int(self._h[H_LATENESS])

    def missed_bar(self, ts_us: int) -> int:
        """Start of the bar a trade at ``ts_us`` belongs to (for naming the bar a late trade missed)."""
        return (int(ts_us) // self._tf) * self._tf

    @property
    def open_bar(self) -> Bar | None:
        """The newest bar being built (not yet closed), or None."""
        n = int(self._h[H_NOPEN])
        if not n:
            return None
        oi = np.empty((2, 1), dtype=np.int64)
        of = np.empty((6, 1), dtype=np.float64)
        _emit_slot(self._si, self._sf, n - 1, oi, of)
        return _bars_from(oi, of, 1)[0]

    def update(self, ts_us: int, price: float, size: float) -> tuple[Bars, bool]:
        """Add one trade; return ``(closed_bars, late)``.

        ``closed_bars`` are the bars this trade's time closed (oldest first); ``late`` is True when the trade
        was rejected as late (then nothing closed and the state is unchanged apart from the late counter).
        """
        if isinstance(ts_us, bool) or not isinstance(ts_us, int | np.integer):
            raise ValueError(f"ts_us must be an integer number of microseconds, got {ts_us!r}")
        p = float(price)
        s = float(size)
        if not (math.isfinite(p) and math.isfinite(s) and s >= 0.0):
            raise ValueError(
                f"trade needs a finite price and a finite size >= 0, got price={price!r}, size={size!r}"
            )
        closed, late = self.update_many(np.array([int(ts_us)], dtype=np.int64), np.array([p]), np.array([s]))
        return closed, bool(late.shape[0])

    def update_many(
        self, ts_us: npt.ArrayLike, price: npt.ArrayLike, size: npt.ArrayLike
    ) -> tuple[Bars, I64]:
        """Add trades in arrival order (e.g. a TickBatch's columns); return ``(closed_bars, late_indices)``.

        ``late_indices`` are the positions (into these arrays) of the trades rejected as late. All inputs are
        validated before any trade is applied.
        """
        ts, p, s = _check_trades(ts_us, price, size)
        n = ts.shape[0]
        cap = n + self._si.shape[0]
        oi = np.empty((2, cap), dtype=np.int64)
        of = np.empty((6, cap), dtype=np.float64)
        late = np.empty(n, dtype=np.int64)
        nbars, nlate = _ingest(self._h, self._si, self._sf, self._tf, ts, p, s, oi, of, late)
        return _bars_from(oi, of, nbars), late[:nlate]

    def advance(self, watermark_us: int) -> Bars:
        """A watermark: no trade older than ``watermark_us`` is expected any more. The event time moves to it
        (if later) and the bars whose end plus the lateness is at or before it close (returned, oldest
        first); later trades for them are late."""
        oi, of = self._outputs()
        return _bars_from(
            oi, of, _watermark(self._h, self._si, self._sf, self._tf, int(watermark_us), oi, of)
        )

    def close_all(self) -> Bars:
        """End of input: close every open bar at its own end (returned, oldest first). Trades for those
        bars are late from now on; later buckets still accept trades."""
        oi, of = self._outputs()
        return _bars_from(oi, of, _close_all(self._h, self._si, self._sf, self._tf, oi, of))

    def _outputs(self) -> tuple[I64, F64]:
        cap = self._si.shape[0]
        return np.empty((2, cap), dtype=np.int64), np.empty((6, cap), dtype=np.float64)

    def with_lateness(self, allowed_lateness_us: int) -> BarAggregator:
        """A copy with another allowed lateness (a changed setting after a restart): the open bars are kept,
        and close by the new rule at the next trade or watermark."""
        out = BarAggregator(self._tf, allowed_lateness_us)
        n = int(self._h[H_NOPEN])
        if out._si.shape[0] < n:
            out._si = np.zeros((n, N_SI), dtype=np.int64)
            out._sf = np.zeros((n, N_SF), dtype=np.float64)
        out._h[:] = self._h
        out._h[H_LATENESS] = int(allowed_lateness_us)
        out._si[:n] = self._si[:n]
        out._sf[:n] = self._sf[:n]
        return out

    def to_bytes(self) -> bytes:
        """Serialize: ``b"SPBA"``, u16 version, i64 timeframe, u32 slot capacity, then the int64 header and
        slots and the float64 slots (all little-endian)."""
        return (
            _HEADER.pack(_MAGIC, _VERSION, self._tf)
            + _V2.pack(self._si.shape[0])
            + self._h.astype("<i8").tobytes()
            + self._si.astype("<i8").tobytes()
            + self._sf.astype("<f8").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BarAggregator:
        """Rebuild an aggregator from :meth:`to_bytes` output (this version or version 1); it resumes
        bit-identically."""
        buf = bytes(data)
        if len(buf) < _HEADER.size:
            raise ValueError(f"BarAggregator checkpoint too short: {len(buf)} bytes")
        magic, version, tf = _HEADER.unpack_from(buf)
        if magic != _MAGIC:
            raise ValueError(f"not a BarAggregator checkpoint (magic {magic!r}, expected {_MAGIC!r})")
        if version == 1:
            return _from_v1(buf, tf)
        if version != _VERSION:
            raise ValueError(
                f"unsupported BarAggregator checkpoint version {version} (this code reads 1 and {_VERSION})"
            )
        pos = _HEADER.size
        if len(buf) < pos + _V2.size:
            raise ValueError(f"corrupt BarAggregator checkpoint: {len(buf)} bytes")
        (cap,) = _V2.unpack_from(buf, pos)
        pos += _V2.size
        expected = pos + 8 * (N_H + cap * (N_SI + N_SF))
        if len(buf) != expected or cap < 1:
            raise ValueError(f"corrupt BarAggregator checkpoint: {len(buf)} bytes, expected {expected}")
        head = np.frombuffer(buf, dtype="<i8", count=N_H, offset=pos).astype(np.int64)
        out = cls(tf, int(head[H_LATENESS]))
        out._h = head
        pos += 8 * N_H
        out._si = np.frombuffer(buf, "<i8", cap * N_SI, pos).astype(np.int64).reshape(cap, N_SI)
        pos += 8 * cap * N_SI
        out._sf = np.frombuffer(buf, "<f8", cap * N_SF, pos).astype(np.float64).reshape(cap, N_SF)
        return out

    def __repr__(self) -> str:
        return (
            f"BarAggregator(timeframe_us={self._tf}, allowed_lateness_us={self.allowed_lateness_us}, "
            f"open={self.open_bars}, late={self.late_trades})"
        )


def _from_v1(buf: bytes, tf: int) -> BarAggregator:
    """Version 1 (one open bar, no lateness): 7 int64 (open, start, open_ts, close_ts, frontier, trades,
    late) and 6 float64 after the header."""
    if len(buf) != _HEADER.size + 8 * 13:
        raise ValueError(f"corrupt BarAggregator checkpoint: {len(buf)} bytes, expected {_HEADER.size + 104}")
    old_i = np.frombuffer(buf, dtype="<i8", count=7, offset=_HEADER.size).astype(np.int64)
    old_f = np.frombuffer(buf, dtype="<f8", count=6, offset=_HEADER.size + 56).astype(np.float64)
    out = BarAggregator(_check_timeframe(tf))
    is_open, start, open_ts, close_ts, frontier, trades, late = (int(x) for x in old_i)
    out._h[H_FRONTIER] = frontier
    out._h[H_LATE] = late
    out._h[H_TIME] = close_ts if is_open else frontier
    if is_open:
        out._h[H_NOPEN] = 1
        out._si[0] = (start, open_ts, close_ts, trades)
        out._sf[0] = old_f
    return out


@_jit
def _emit_slot(si: I64, sf: F64, j: int, oi: I64, of: F64) -> None:  # pragma: no cover - compiled
    _emit(si[j], sf[j], 0, oi, of)
