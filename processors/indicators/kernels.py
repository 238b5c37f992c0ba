"""Batch indicator kernels: plain loops compiled by numba, the reference arithmetic for every port.

The kernels take validated, C-contiguous float64 inputs and caller-allocated outputs of the same length (see
:mod:`processors.indicators.batch` for the public, validating wrappers; numpy allocates the outputs because it
asks the kernel for huge pages, which numba's allocator does not). They are written so that a C or WASM port
can reproduce them *bit for bit*:

* every floating point operation is written out explicitly, in evaluation order: ``(a * b) + c`` means
  round(round(a * b) + c);
* numba compiles them without ``fastmath``: no reassociation, no reciprocal division, no FMA contraction.
  A C port must use ``-ffp-contract=off`` and no ``-ffast-math``/``-Ofast``/``-freciprocal-math``;
* sums are plain running sums in loop order, starting from 0.0 (never pairwise/SIMD sums such as ``np.sum``);
* an integer period ``p`` used as a float means the exact conversion ``(double)p``; ``p - 1.0`` is exact;
* ``max``/``min`` and the comparisons are exact, so any algorithm that finds the same extreme is allowed.

Input validation is fused into the loops so that each input is read once: ``chk = chk + (v * 0.0)`` stays 0.0
unless some ``v`` is NaN/inf (``v * 0.0`` is NaN exactly then) and the kernel returns ``chk == 0.0``. That is
validation, not arithmetic: a port that validates elsewhere can drop those lines.

The incremental engine (:mod:`processors.indicators.incremental`) performs the identical sequence of
operations one bar at a time; the unit tests check both bit for bit.

Warm-up: output index ``i`` is NaN until the indicator is defined; the warm-up lengths are listed in the
public wrappers' docstrings.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: RSI is reported as 0 when (average gain + average loss) < RSI_ZERO_EPS: TA-Lib's TA_IS_ZERO() test
#: (TA_EPSILON = 1e-14 since TA-Lib 0.6).
RSI_ZERO_EPS = 1e-14

_jit = nb.njit(nogil=True, cache=True, error_model="numpy", fastmath=False)
_jit_inline = nb.njit(nogil=True, cache=True, error_model="numpy", fastmath=False, inline="always")


@_jit
def sma_kernel(x: F64, p: int, out: F64) -> bool:  # pragma: no cover - compiled
    """SMA with TA-Lib's running sum.

    ``total`` starts at 0.0 and receives ``x[0] .. x[p-2]`` in order (``total += x[i]``). Then for each
    ``i >= p-1``: ``total += x[i]``; ``out[i] = total / p``; ``total -= x[i-p+1]`` (the oldest value leaves
    *after* the output is taken, so the sum is never recomputed).
    """
    n = x.shape[0]
    chk = 0.0
    total = 0.0
    for i in range(min(p - 1, n)):
        xi = x[i]
        chk = chk + (xi * 0.0)
        total += xi
        out[i] = np.nan
    for i in range(p - 1, n):
        xi = x[i]
        chk = chk + (xi * 0.0)
        total += xi
        out[i] = total / p
        total -= x[i - p + 1]
    return chk == 0.0


@_jit
def ema_kernel(x: F64, p: int, out: F64) -> bool:  # pragma: no cover - compiled
    """EMA seeded with the SMA of the first ``p`` values (TA-Lib's default compatibility mode).

    ``k = 2.0 / (p + 1.0)``. Seed: ``s = 0.0; s += x[0]; ...; s += x[p-1]; e = s / p`` -> ``out[p-1]``.
    Then for ``i >= p``: ``e = ((x[i] - e) * k) + e`` (subtract, multiply, add: three roundings).
    """
    n = x.shape[0]
    k = 2.0 / (p + 1.0)
    chk = 0.0
    s = 0.0
    for i in range(min(p - 1, n)):
        xi = x[i]
        chk = chk + (xi * 0.0)
        s += xi
        out[i] = np.nan
    if n < p:
        return chk == 0.0
    xi = x[p - 1]
    chk = chk + (xi * 0.0)
    s += xi
    e = s / p
    out[p - 1] = e
    for i in range(p, n):
        xi = x[i]
        chk = chk + (xi * 0.0)
        e = ((xi - e) * k) + e
        out[i] = e
    return chk == 0.0


@_jit
def rsi_kernel(x: F64, p: int, out: F64) -> bool:  # pragma: no cover - compiled
    """RSI with Wilder smoothing (TA-Lib's classic, non-Metastock RSI).

    Per bar ``i >= 1``: ``d = x[i] - x[i-1]``; ``up = d if d > 0.0 else 0.0``;
    ``dn = -d if d < 0.0 else 0.0``.

    Seed (bars 1..p): ``gain = gain + up``; ``loss = loss + dn`` from 0.0 in bar order, then
    ``gain = gain / p``; ``loss = loss / p``.

    Each later bar: ``gain = (gain * c1) + (up * c2)`` and ``loss = (loss * c1) + (dn * c2)`` with
    ``c1 = (p - 1.0) / p`` and ``c2 = 1.0 / p`` computed once. (TA-Lib's textbook
    ``((avg * (p - 1)) + x) / p`` puts a ~15-cycle division on the loop's dependency chain; the two forms
    differ by a few ulps.)

    Output: ``t = gain + loss``; ``100.0 * (gain / t)`` if ``t >= 1e-14`` else ``0.0`` (TA-Lib's zero test).

    Unchanged price: when ``d == 0.0`` on a bar after the seed, the averages are updated as above but the
    output repeats the previous RSI value. (In exact arithmetic both averages shrink by the same factor, so
    the RSI does not move; recomputing it would only add rounding noise, which StochRSI then divides by
    itself.)
    """
    n = x.shape[0]
    chk = 0.0
    for i in range(min(p, n)):
        out[i] = np.nan
    if n <= p:
        for i in range(n):
            chk = chk + (x[i] * 0.0)
        return chk == 0.0
    chk = chk + (x[0] * 0.0)
    gain = 0.0
    loss = 0.0
    for i in range(1, p + 1):
        xi = x[i]
        chk = chk + (xi * 0.0)
        d = xi - x[i - 1]
        up = d if d > 0.0 else 0.0
        dn = -d if d < 0.0 else 0.0
        gain = gain + up
        loss = loss + dn
    gain = gain / p
    loss = loss / p
    t = gain + loss
    r = 100.0 * (gain / t) if t >= RSI_ZERO_EPS else 0.0
    out[p] = r
    c1 = (p - 1.0) / p
    c2 = 1.0 / p
    for i in range(p + 1, n):
        xi = x[i]
        chk = chk + (xi * 0.0)
        d = xi - x[i - 1]
        up = d if d > 0.0 else 0.0
        dn = -d if d < 0.0 else 0.0
        gain = (gain * c1) + (up * c2)
        loss = (loss * c1) + (dn * c2)
        t = gain + loss
        rn = 100.0 * (gain / t) if t >= RSI_ZERO_EPS else 0.0
        r = rn if d != 0.0 else r
        out[i] = r
    return chk == 0.0


@_jit
def stoch_sma_kernel(
    v: F64, start: int, sp: int, k: int, d: int, kout: F64, dout: F64
) -> None:  # pragma: no cover
    """Stochastic of ``v[start:]`` over ``sp`` values, smoothed twice by SMA: the StochRSI tail.

    For each ``j >= start + sp - 1``: ``lo``/``hi`` = min/max of ``v[j-sp+1 .. j]`` (exact; found like
    TA-Lib's STOCH, rescanning the window only when the extreme leaves it);
    ``fk = (100.0 * (v[j] - lo)) / (hi - lo)``, or ``0.0`` when ``hi == lo``. ``K`` = SMA(fk, k) and
    ``D`` = SMA(K, d), each with :func:`sma_kernel`'s running sum (from 0.0, started at the first fk resp. K
    value; the oldest value leaves after the output).
    """
    n = v.shape[0]
    first = start + sp - 1
    for j in range(min(first + k - 1, n)):
        kout[j] = np.nan
    for j in range(min(first + k + d - 2, n)):
        dout[j] = np.nan
    if first >= n:
        return
    fk_ring = np.empty(k)
    k_ring = np.empty(d)
    ktot = 0.0
    dtot = 0.0
    lo_idx = -1
    hi_idx = -1
    lo = 0.0
    hi = 0.0
    for j in range(first, n):
        trailing = j - sp + 1
        val = v[j]
        if lo_idx < trailing:
            lo_idx = trailing
            lo = v[trailing]
            for q in range(trailing + 1, j + 1):
                if v[q] <= lo:
                    lo = v[q]
                    lo_idx = q
        elif val <= lo:
            lo = val
            lo_idx = j
        if hi_idx < trailing:
            hi_idx = trailing
            hi = v[trailing]
            for q in range(trailing + 1, j + 1):
                if v[q] >= hi:
                    hi = v[q]
                    hi_idx = q
        elif val >= hi:
            hi = val
            hi_idx = j
        fk = (100.0 * (val - lo)) / (hi - lo) if hi != lo else 0.0
        m = j - first  # position of fk in the fk series
        fk_ring[m % k] = fk
        ktot += fk
        if m >= k - 1:
            kv = ktot / k
            ktot -= fk_ring[(m + 1) % k]  # oldest fk of the window: index m-k+1
            kout[j] = kv
            q2 = m - (k - 1)  # position of kv in the K series
            k_ring[q2 % d] = kv
            dtot += kv
            if q2 >= d - 1:
                dout[j] = dtot / d
                dtot -= k_ring[(q2 + 1) % d]


@_jit
def macd_kernel(
    x: F64, fast: int, slow: int, signal: int, m_out: F64, s_out: F64, h_out: F64
) -> bool:  # pragma: no cover
    """MACD as TA-Lib's TA_MACD (``fast < slow``).

    Both EMAs produce their first value at bar ``slow-1``: the slow EMA is seeded with
    ``(x[0] + ... + x[slow-1]) / slow`` and the fast EMA -- TA-Lib's convention, *not* ``ema(x, fast)`` --
    with ``(x[slow-fast] + ... + x[slow-1]) / fast`` (running sums from 0.0 in index order). Later bars use
    the :func:`ema_kernel` update ``e = ((x - e) * k) + e`` with ``kf = 2.0 / (fast + 1.0)`` and
    ``ks = 2.0 / (slow + 1.0)``; ``macd = ef - es``. The signal EMA is seeded with the running sum (from 0.0)
    of the first ``signal`` MACD values divided by ``signal``, then updated with
    ``kg = 2.0 / (signal + 1.0)``; ``hist = macd - sig``.
    """
    n = x.shape[0]
    first_sig = slow + signal - 2  # index of the first signal value
    for i in range(min(slow - 1, n)):
        m_out[i] = np.nan
    for i in range(min(first_sig, n)):
        s_out[i] = np.nan
        h_out[i] = np.nan
    chk = 0.0
    if n < slow:
        for i in range(n):
            chk = chk + (x[i] * 0.0)
        return chk == 0.0
    kf = 2.0 / (fast + 1.0)
    ks = 2.0 / (slow + 1.0)
    kg = 2.0 / (signal + 1.0)
    ss = 0.0
    sf = 0.0
    for i in range(slow):
        xi = x[i]
        chk = chk + (xi * 0.0)
        ss += xi
        if i >= slow - fast:
            sf += xi
    es = ss / slow
    ef = sf / fast
    # MACD values that seed the signal line: bars slow-1 .. first_sig.
    gsum = 0.0
    seed_end = min(first_sig + 1, n)
    for i in range(slow - 1, seed_end):
        if i >= slow:
            xi = x[i]
            chk = chk + (xi * 0.0)
            ef = ((xi - ef) * kf) + ef
            es = ((xi - es) * ks) + es
        m = ef - es
        m_out[i] = m
        gsum += m
    if seed_end <= first_sig:
        return chk == 0.0
    sig = gsum / signal
    s_out[first_sig] = sig
    h_out[first_sig] = m_out[first_sig] - sig
    for i in range(first_sig + 1, n):
        xi = x[i]
        chk = chk + (xi * 0.0)
        ef = ((xi - ef) * kf) + ef
        es = ((xi - es) * ks) + es
        m = ef - es
        m_out[i] = m
        sig = ((m - sig) * kg) + sig
        s_out[i] = sig
        h_out[i] = m - sig
    return chk == 0.0


@_jit
def bbands_kernel(x: F64, p: int, nbdev: float, up: F64, mid: F64, lo: F64) -> bool:  # pragma: no cover
    """Bollinger Bands: SMA middle band +- ``nbdev`` population standard deviations over ``p`` values.

    Middle: :func:`sma_kernel`'s running sum ``total`` (bit-identical to TA-Lib's SMA).

    Deviation: anchored running sums ``s1 = sum(x - c)`` and ``s2 = sum((x - c)^2)`` over the window,
    re-anchored every ``p`` bars so that rounding drift cannot build up and the variance never suffers the
    catastrophic cancellation of ``E[x^2] - mean^2`` (which the 2000s TA-Lib had).

    * Every bar ``i`` with ``i % p == 0`` (a rebase): the anchor becomes ``c = x[i]``; then, from
      ``s1 = s2 = 0.0``, for ``j = max(0, i-p+1) .. i`` in index order: ``u = x[j] - c; s1 += u;
      s2 += u * u``.
    * Every other bar: ``u = x[i] - c; s1 += u; s2 += u * u``; then, if ``i >= p``, ``u = x[i-p] - c;
      s1 -= u; s2 -= u * u`` (the value leaving the window).
    * Output for ``i >= p-1``: ``q = (p * s2) - (s1 * s1)`` (``p^2`` times the variance);
      ``sd = sqrt(q) * (1.0 / p)`` if ``q > 0.0`` else ``0.0`` (``1.0 / p`` computed once);
      ``w = sd * nbdev``; ``upper = mid + w``; ``lower = mid - w``.
    """
    n = x.shape[0]
    inv_p = 1.0 / p
    chk = 0.0
    total = 0.0
    c = 0.0
    s1 = 0.0
    s2 = 0.0
    countdown = 0
    for i in range(n):
        xi = x[i]
        chk = chk + (xi * 0.0)
        if countdown == 0:
            c = xi
            s1 = 0.0
            s2 = 0.0
            for j in range(max(0, i - p + 1), i + 1):
                u = x[j] - c
                s1 += u
                s2 += u * u
            countdown = p
        else:
            u = xi - c
            s1 += u
            s2 += u * u
            if i >= p:
                u = x[i - p] - c
                s1 -= u
                s2 -= u * u
        countdown -= 1
        total += xi
        if i >= p - 1:
            m = total / p
            total -= x[i - p + 1]
            q = (p * s2) - (s1 * s1)
            sd = math.sqrt(q) * inv_p if q > 0.0 else 0.0
            w = sd * nbdev
            up[i] = m + w
            mid[i] = m
            lo[i] = m - w
        else:
            up[i] = np.nan
            mid[i] = np.nan
            lo[i] = np.nan
    return chk == 0.0


@_jit_inline
def true_range(h: float, lo: float, prev_close: float) -> float:  # pragma: no cover - compiled
    """``max(h - lo, |prev_close - h|, |prev_close - lo|)`` as two selects, in that order (no branches)."""
    g = h - lo
    a = abs(prev_close - h)
    b = abs(prev_close - lo)
    g = a if a > g else g
    g = b if b > g else g
    return g


@_jit
def atr_kernel(high: F64, low: F64, close: F64, p: int, out: F64) -> bool:  # pragma: no cover - compiled
    """ATR with Wilder smoothing (TA-Lib's TA_ATR). Returns False if an input was NaN/inf.

    True range of bar ``i >= 1``: :func:`true_range` of ``high[i], low[i], close[i-1]``. Seed:
    ``s = 0.0; s += tr[1]; ...; s += tr[p]; atr = s / p`` -> ``out[p]``. Later bars:
    ``atr = (atr * c1) + (tr * c2)`` with ``c1 = (p - 1.0) / p`` and ``c2 = 1.0 / p`` computed once (see
    :func:`rsi_kernel` for why not a division).

    """
    n = close.shape[0]
    chk = 0.0
    s = 0.0
    a = 0.0
    c1 = (p - 1.0) / p
    c2 = 1.0 / p
    for i in range(min(p, n)):
        out[i] = np.nan
    for i in range(n):
        hi = high[i]
        lo = low[i]
        chk = chk + (((hi * 0.0) + (lo * 0.0)) + (close[i] * 0.0))
        if i == 0:
            continue
        tr = true_range(hi, lo, close[i - 1])
        if i < p:
            s += tr
        elif i == p:
            s += tr
            a = s / p
            out[i] = a
        else:
            a = (a * c1) + (tr * c2)
            out[i] = a
    return chk == 0.0


@_jit
def vwap_kernel(
    price: F64, volume: F64, session: I64, use_session: bool, out: F64
) -> bool:  # pragma: no cover
    """Cumulative VWAP, restarted whenever ``session[i] != session[i-1]`` (if ``use_session``).

    ``pv += price[i] * volume[i]``; ``vv += volume[i]`` (both start at 0.0 and restart at 0.0 on a new
    session); ``out[i] = pv / vv`` if ``vv > 0.0`` else NaN. Returns False if an input was NaN/inf or a volume
    was negative.
    """
    n = price.shape[0]
    chk = 0.0
    vmin = 0.0
    pv = 0.0
    vv = 0.0
    for i in range(n):
        if use_session and i > 0 and session[i] != session[i - 1]:
            pv = 0.0
            vv = 0.0
        px = price[i]
        vol = volume[i]
        chk = chk + ((px * 0.0) + (vol * 0.0))
        vmin = vol if vol < vmin else vmin
        pv += px * vol
        vv += vol
        out[i] = pv / vv if vv > 0.0 else np.nan
    return chk == 0.0 and vmin >= 0.0


@_jit
def typical_price_kernel(high: F64, low: F64, close: F64, out: F64) -> None:  # pragma: no cover - compiled
    """``out[i] = ((high[i] + low[i]) + close[i]) / 3.0``."""
    for i in range(close.shape[0]):
        out[i] = ((high[i] + low[i]) + close[i]) / 3.0


@_jit
def first_nonfinite(x: F64) -> int:  # pragma: no cover - compiled
    """Index of the first NaN/inf in ``x``, or -1."""
    for i in range(x.shape[0]):
        if not math.isfinite(x[i]):
            return i
    return -1
