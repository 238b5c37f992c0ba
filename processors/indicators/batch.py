"""Batch indicators over float64 arrays: same length out, NaN during warm-up, TA-Lib-compatible values.

Each function validates its input (1-D, finite; ValueError naming the argument and index otherwise -- unlike
TA-Lib, leading NaNs are not skipped), then runs the numba kernel of :mod:`processors.indicators.kernels`,
whose docstrings give the exact arithmetic.

Wherever TA-Lib (0.6+) produces a value these functions produce the same value within 1e-9 relative
(``|ours - talib| <= 1e-9 * max(1, |talib|)``), and they are never NaN there. They may produce values that
TA-Lib hides: the MACD line from bar ``slow-1`` and StochRSI %K before %D exists.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from processors.indicators import kernels
from processors.indicators.validation import as_float_array, check_period, check_volume, same_length

F64 = npt.NDArray[np.float64]

__all__ = [
    "BBands",
    "Macd",
    "StochRSI",
    "atr",
    "bbands",
    "ema",
    "macd",
    "rsi",
    "sma",
    "stochrsi",
    "typical_price",
    "vwap",
]


class StochRSI(NamedTuple):
    """StochRSI outputs: ``k`` (%K) and ``d`` (%D)."""

    k: F64
    d: F64


class Macd(NamedTuple):
    """MACD outputs: the MACD line, its signal EMA and the histogram (line - signal)."""

    macd: F64
    signal: F64
    hist: F64


class BBands(NamedTuple):
    """Bollinger Bands outputs."""

    upper: F64
    middle: F64
    lower: F64


def sma(close: npt.ArrayLike, period: int) -> F64:
    """Simple moving average; equals ``talib.SMA`` bit for bit.

    Warm-up: ``period - 1`` leading NaNs (the first value is at index ``period - 1``).

    >>> sma([1.0, 2.0, 3.0, 4.0], 2).tolist()
    [nan, 1.5, 2.5, 3.5]
    """
    p = check_period("period", period)
    x = as_float_array("close", close, check_finite=False)
    out = np.empty_like(x)
    _checked(kernels.sma_kernel(x, p, out), close=x)
    return out


def ema(close: npt.ArrayLike, period: int) -> F64:
    """Exponential moving average seeded with the SMA of the first ``period`` values; equals ``talib.EMA``.

    ``k = 2 / (period + 1)``. Warm-up: ``period - 1`` leading NaNs.

    >>> ema([1.0, 2.0, 3.0, 4.0, 5.0], 3).tolist()
    [nan, nan, 2.0, 3.0, 4.0]
    """
    p = check_period("period", period)
    x = as_float_array("close", close, check_finite=False)
    out = np.empty_like(x)
    _checked(kernels.ema_kernel(x, p, out), close=x)
    return out


def rsi(close: npt.ArrayLike, period: int = 14) -> F64:
    """Relative Strength Index with Wilder smoothing; equals ``talib.RSI`` (period >= 2).

    Warm-up: ``period`` leading NaNs (one price change per bar; the first RSI needs ``period`` changes).
    When average gain + average loss is below 1e-14 the RSI is 0, as in TA-Lib.

    >>> rsi([1.0, 2.0, 3.0, 2.0, 3.0], 2).round(6).tolist()
    [nan, nan, 100.0, 50.0, 75.0]
    """
    p = check_period("period", period, minimum=2)
    x = as_float_array("close", close, check_finite=False)
    out = np.empty_like(x)
    _checked(kernels.rsi_kernel(x, p, out), close=x)
    return out


def stochrsi(
    close: npt.ArrayLike, period: int = 14, stoch_period: int = 14, k: int = 3, d: int = 3
) -> StochRSI:
    """Charting-standard StochRSI: %K = SMA(stoch(RSI), k), %D = SMA(%K, d).

    ``stoch = 100 * (rsi - min(rsi, stoch_period)) / (max - min)`` (0 when max == min). Equivalent TA-Lib
    call: with ``r = talib.RSI(close, period)`` and ``v = r[period:]``,
    ``talib.STOCH(v, v, v, fastk_period=stoch_period, slowk_period=k, slowk_matype=0, slowd_period=d,
    slowd_matype=0)``. (``talib.STOCHRSI`` is a different, unsmoothed variant.)

    Warm-up: %K has ``period + stoch_period + k - 2`` leading NaNs, %D ``period + stoch_period + k + d - 3``.
    (TA-Lib's STOCH only starts %K together with %D.)

    >>> out = stochrsi([1.0, 2.0, 1.5, 3.0, 2.0, 2.5, 4.0, 3.0], period=2, stoch_period=2, k=2, d=2)
    >>> out.k.round(4).tolist()
    [nan, nan, nan, nan, 50.0, 50.0, 100.0, 50.0]
    >>> out.d.round(4).tolist()
    [nan, nan, nan, nan, nan, 50.0, 75.0, 75.0]
    """
    p = check_period("period", period, minimum=2)
    sp = check_period("stoch_period", stoch_period)
    kp = check_period("k", k)
    dp = check_period("d", d)
    x = as_float_array("close", close, check_finite=False)
    r = np.empty_like(x)
    _checked(kernels.rsi_kernel(x, p, r), close=x)
    kk = np.empty_like(x)
    dd = np.empty_like(x)
    kernels.stoch_sma_kernel(r, p, sp, kp, dp, kk, dd)
    return StochRSI(kk, dd)


def macd(close: npt.ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """MACD line, signal and histogram; equals ``talib.MACD`` wherever TA-Lib has a value.

    As in TA-Lib, the fast EMA inside MACD is seeded at bar ``slow - 1`` with the mean of the ``fast``
    closes ending there, so ``macd`` differs from ``ema(close, fast) - ema(close, slow)`` during the first few
    hundred bars. Requires ``2 <= fast < slow`` and ``signal >= 1``.

    Warm-up: the MACD line has ``slow - 1`` leading NaNs; signal and histogram ``slow + signal - 2``
    (TA-Lib also hides the MACD line until the signal exists).

    >>> m = macd([1.0, 2.0, 4.0, 3.0, 5.0, 6.0], fast=2, slow=3, signal=2)
    >>> m.macd.round(6).tolist()
    [nan, nan, 0.666667, 0.333333, 0.5, 0.527778]
    >>> m.signal.round(6).tolist()
    [nan, nan, nan, 0.5, 0.5, 0.518519]
    """
    f = check_period("fast", fast, minimum=2)
    s = check_period("slow", slow, minimum=2)
    g = check_period("signal", signal)
    if f >= s:
        raise ValueError(f"fast must be smaller than slow, got fast={f}, slow={s}")
    x = as_float_array("close", close, check_finite=False)
    out = Macd(np.empty_like(x), np.empty_like(x), np.empty_like(x))
    _checked(kernels.macd_kernel(x, f, s, g, out.macd, out.signal, out.hist), close=x)
    return out


def bbands(close: npt.ArrayLike, period: int = 20, nbdev: float = 2.0) -> BBands:
    """Bollinger Bands: SMA +- ``nbdev`` population standard deviations; matches ``talib.BBANDS`` (SMA).

    The middle band is bit-identical to ``talib.SMA``; the deviation uses anchored running sums that are
    re-anchored every ``period`` bars (see :func:`processors.indicators.kernels.bbands_kernel`), accurate to a
    few ulps of the price, unlike the naive ``E[x^2] - mean^2``.

    Warm-up: ``period - 1`` leading NaNs. Requires ``period >= 2`` and a finite ``nbdev >= 0``. Prices must
    stay within ~1e150 of each other (the squared deviations must not overflow).

    >>> up, mid, lo = bbands([1.0, 3.0, 1.0, 3.0], period=2, nbdev=2.0)
    >>> up.tolist(), mid.tolist(), lo.tolist()
    ([nan, 4.0, 4.0, 4.0], [nan, 2.0, 2.0, 2.0], [nan, 0.0, 0.0, 0.0])
    """
    p = check_period("period", period, minimum=2)
    dev = _check_nbdev(nbdev)
    x = as_float_array("close", close, check_finite=False)
    out = BBands(np.empty_like(x), np.empty_like(x), np.empty_like(x))
    _checked(kernels.bbands_kernel(x, p, dev, out.upper, out.middle, out.lower), close=x)
    return out


def atr(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int = 14) -> F64:
    """Average True Range with Wilder smoothing; equals ``talib.ATR``.

    Warm-up: ``period`` leading NaNs (bar 0 has no true range).

    >>> atr([2.0, 3.0, 4.0, 3.0], [1.0, 2.0, 2.0, 1.0], [1.5, 2.5, 3.0, 2.0], period=2).tolist()
    [nan, nan, 1.75, 1.875]
    """
    p = check_period("period", period)
    h = as_float_array("high", high, check_finite=False)
    lo = as_float_array("low", low, check_finite=False)
    c = as_float_array("close", close, check_finite=False)
    same_length(high=h, low=lo, close=c)
    out = np.empty_like(c)
    _checked(kernels.atr_kernel(h, lo, c, p, out), high=h, low=lo, close=c)
    return out


def vwap(price: npt.ArrayLike, volume: npt.ArrayLike, session: npt.ArrayLike | None = None) -> F64:
    """Cumulative volume-weighted average price, restarting at every new session.

    ``out[i] = sum(price * volume) / sum(volume)`` over the bars of the current session up to ``i``; NaN while
    the session's volume is still 0. Without ``session`` the whole array is one session; with it, a session
    starts at index 0 and wherever ``session[i] != session[i - 1]`` (e.g. pass the trading day of each bar).
    For bars, pass :func:`typical_price` as ``price`` (that is what ``IndicatorSet`` does). Volumes must be
    finite and >= 0. No warm-up beyond the first bar with volume.

    >>> vwap([10.0, 11.0, 12.0], [1.0, 3.0, 0.0]).tolist()
    [10.0, 10.75, 10.75]
    >>> vwap([10.0, 11.0, 12.0], [1.0, 3.0, 2.0], session=[1, 1, 2]).tolist()
    [10.0, 10.75, 12.0]
    >>> vwap([10.0], [0.0]).tolist()
    [nan]
    """
    p = as_float_array("price", price, check_finite=False)
    v = as_float_array("volume", volume, check_finite=False)
    same_length(price=p, volume=v)
    if session is None:
        s = np.zeros(0, dtype=np.int64)
    else:
        s = np.ascontiguousarray(session)
        if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"session must be a 1-D integer array of session ids, got dtype {s.dtype}")
        same_length(price=p, session=s)
        s = s.astype(np.int64, copy=False)
    out = np.empty_like(p)
    if not kernels.vwap_kernel(p, v, s, session is not None, out):
        _checked(False, price=p, volume=v)  # NaN/inf
        check_volume("volume", v)  # negative volume
    return out


def typical_price(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> F64:
    """``((high + low) + close) / 3`` per bar, the price :class:`IndicatorSet` feeds to its VWAP.

    >>> typical_price([3.0], [1.0], [2.0]).tolist()
    [2.0]
    """
    h = as_float_array("high", high)
    lo = as_float_array("low", low)
    c = as_float_array("close", close)
    same_length(high=h, low=lo, close=c)
    out = np.empty_like(c)
    kernels.typical_price_kernel(h, lo, c, out)
    return out


def _checked(ok: bool, **inputs: F64) -> None:
    """The kernels check their inputs while computing; when one reports a problem, name the first NaN/inf."""
    if not ok:
        for name, arr in inputs.items():
            as_float_array(name, arr)  # raises, naming the first non-finite value


def _check_nbdev(nbdev: object) -> float:
    if isinstance(nbdev, bool) or not isinstance(nbdev, int | float | np.integer | np.floating):
        raise ValueError(f"nbdev must be a finite number >= 0, got {nbdev!r}")
    dev = float(nbdev)
    if not 0.0 <= dev < math.inf:
        raise ValueError(f"nbdev must be a finite number >= 0, got {nbdev!r}")
    return dev
