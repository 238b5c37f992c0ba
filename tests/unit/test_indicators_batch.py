"""Batch indicator functions: warm-up lengths, edge cases and input validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.indicators import atr, bbands, ema, kernels, macd, rsi, sma, stochrsi, typical_price, vwap

talib = pytest.importorskip("talib")

F64 = npt.NDArray[np.float64]


def walk(n: int, seed: int = 0) -> F64:
    return 100.0 + np.cumsum(np.random.default_rng(seed).normal(0.0, 1.0, n))


def leading_nans(x: F64) -> int:
    finite = np.flatnonzero(~np.isnan(x))
    return int(finite[0]) if finite.size else int(x.shape[0])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 120),
    p=st.integers(2, 40),
    sp=st.integers(1, 10),
    k=st.integers(1, 5),
    d=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_warmup_lengths(n: int, p: int, sp: int, k: int, d: int, seed: int) -> None:
    """NaN exactly during the documented warm-up, values afterwards; also for series shorter than it."""
    x = walk(n, seed)
    h, lo = x + 1.0, x - 1.0
    expected = {
        "sma": (sma(x, p), p - 1),
        "ema": (ema(x, p), p - 1),
        "rsi": (rsi(x, p), p),
        "atr": (atr(h, lo, x, p), p),
        "bb": (bbands(x, p).upper, p - 1),
        "stochrsi_k": (stochrsi(x, p, sp, k, d).k, p + sp + k - 2),
        "stochrsi_d": (stochrsi(x, p, sp, k, d).d, p + sp + k + d - 3),
        "macd": (macd(x, 2, p + 1, k).macd, p),
        "macd_signal": (macd(x, 2, p + 1, k).signal, p + k - 1),
    }
    for name, (out, warm) in expected.items():
        assert out.shape == (n,), name
        assert leading_nans(out) == min(warm, n), name
        assert not np.isnan(out[warm:]).any(), name


def test_empty_input_gives_empty_output() -> None:
    e = np.empty(0)
    for out in (sma(e, 3), ema(e, 3), rsi(e), atr(e, e, e), vwap(e, e), typical_price(e, e, e)):
        assert out.shape == (0,)
    assert all(a.shape == (0,) for a in (*macd(e), *bbands(e), *stochrsi(e)))


def test_accepts_lists_ints_and_strided_views() -> None:
    x = walk(200)
    assert np.array_equal(sma(x[::2], 5), talib.SMA(np.ascontiguousarray(x[::2]), 5), equal_nan=True)
    assert np.array_equal(ema([1, 2, 3, 4], 2), ema(np.array([1.0, 2.0, 3.0, 4.0]), 2), equal_nan=True)


def test_flat_prices() -> None:
    """Flat price: RSI 0 (TA-Lib's zero test), StochRSI 0 (max == min), bands collapse onto the SMA."""
    x = np.full(60, 46000.25)
    assert np.array_equal(rsi(x, 14)[14:], np.zeros(46))
    assert np.array_equal(rsi(x, 14), talib.RSI(x, 14), equal_nan=True)
    s = stochrsi(x, 14, 14, 3, 3)
    assert np.array_equal(s.k[29:], np.zeros(31)) and np.array_equal(s.d[31:], np.zeros(29))
    up, mid, lo = bbands(x, 20)
    assert np.array_equal(up[19:], mid[19:]) and np.array_equal(lo[19:], mid[19:])


def test_rsi_holds_on_unchanged_prices_so_stochrsi_sees_a_flat_window() -> None:
    x = np.array([10.0, 10.5, 10.2, 10.9, 11.3, 10.7, 10.7, 10.7, 10.7, 11.0])
    r = rsi(x, 3)
    assert r[5] == r[6] == r[7] == r[8] != r[4]
    k = stochrsi(x, 3, 3, 1, 1).k
    assert k[7] == k[8] == 0.0  # windows r[5:8] and r[6:9] are flat
    assert k[6] == 100.0 * (r[6] - r[4:7].min()) / (r[4:7].max() - r[4:7].min())


def test_macd_fast_ema_is_seeded_like_talib() -> None:
    """TA-Lib seeds MACD's fast EMA at bar slow-1: it differs from EMA(fast) early on, converges later."""
    x = walk(3000, 3)
    m = macd(x, 12, 26, 9).macd
    naive = ema(x, 12) - ema(x, 26)
    assert abs(m[25] - naive[25]) > 1e-6
    np.testing.assert_allclose(m[-100:], naive[-100:], rtol=0, atol=1e-9)


Batch = Callable[[F64], object]
SINGLE_INPUT: dict[str, Batch] = {
    "sma": lambda x: sma(x, 3),
    "ema": lambda x: ema(x, 3),
    "rsi": lambda x: rsi(x, 3),
    "stochrsi": lambda x: stochrsi(x, 3, 3, 2, 2),
    "macd": lambda x: macd(x, 2, 3, 2),
    "bbands": lambda x: bbands(x, 3),
}


@pytest.mark.parametrize("name", sorted(SINGLE_INPUT))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", [0, 1, 7, 19])
def test_non_finite_close_raises(name: str, bad: float, where: int) -> None:
    x = walk(20)
    x[where] = bad
    with pytest.raises(
        ValueError, match=rf"^close\[{where}\] is {bad!r}: inputs must be finite.*drop or fill"
    ):
        SINGLE_INPUT[name](x)


@pytest.mark.parametrize("field", ["high", "low", "close"])
def test_atr_non_finite_raises_naming_the_field(field: str) -> None:
    cols = {"high": walk(20) + 1, "low": walk(20) - 1, "close": walk(20)}
    cols[field][19] = math.nan
    with pytest.raises(ValueError, match=rf"^{field}\[19\] is nan"):
        atr(cols["high"], cols["low"], cols["close"])
    with pytest.raises(ValueError, match="same length"):
        atr(np.ones(3), np.ones(2), np.ones(3))


def test_vwap_validation() -> None:
    with pytest.raises(ValueError, match=r"volume\[1\] is -1.0: volumes must be >= 0"):
        vwap([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match=r"price\[0\] is inf"):
        vwap([math.inf, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"volume\[1\] is nan"):
        vwap([1.0, 2.0], [1.0, math.nan])
    with pytest.raises(ValueError, match="session must be a 1-D integer array"):
        vwap([1.0], [1.0], session=[0.5])
    with pytest.raises(ValueError, match="same length"):
        vwap([1.0, 2.0], [1.0, 1.0], session=[1])
    assert np.isnan(vwap([5.0, 6.0], [0.0, 0.0])).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sma([1.0], 0), r"period must be an integer in \[1, 100000\], got 0"),
        (lambda: ema([1.0], 2.5), r"period must be an integer in \[1, 100000\], got 2.5"),  # type: ignore[arg-type]
        (lambda: rsi([1.0], 1), r"period must be an integer in \[2, 100000\], got 1"),
        (lambda: rsi([1.0], True), "period must be an integer"),
        (lambda: stochrsi([1.0], 14, 0), r"stoch_period must be an integer"),
        (lambda: macd([1.0], 26, 12), "fast must be smaller than slow"),
        (lambda: macd([1.0], 12, 26, 0), "signal must be an integer"),
        (lambda: bbands([1.0], 20, -1.0), "nbdev must be a finite number >= 0"),
        (lambda: bbands([1.0], 20, "2"), "nbdev must be a finite number >= 0"),  # type: ignore[arg-type]
        (lambda: bbands([1.0], 1), r"period must be an integer in \[2, 100000\]"),
        (lambda: sma([[1.0, 2.0]], 1), "close must be a 1-D array"),
        (lambda: sma([1.0], 100_001), r"\[1, 100000\]"),
    ],
)
def test_parameter_validation(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_compiled_kernels_equal_the_same_source_interpreted() -> None:
    """Each numba kernel gives bit for bit what CPython computes running its source (strict IEEE doubles,
    no FMA, no reassociation): the kernels' source is an executable specification for ports."""
    rng = np.random.default_rng(11)
    x = np.round(100.0 + np.cumsum(rng.normal(0.0, 1.0, 400)), 2)
    x[50:60] = x[50]  # a flat stretch
    h, lo = x + rng.random(400), x - rng.random(400)
    v = rng.random(400)

    def both(kernel: Any, *args: Any, n_out: int = 1) -> None:
        outs_c = [np.empty(400) for _ in range(n_out)]
        outs_p = [np.empty(400) for _ in range(n_out)]
        assert kernel(*args, *outs_c) == kernel.py_func(*args, *outs_p)
        for a, b in zip(outs_c, outs_p, strict=True):
            assert np.array_equal(a.view(np.int64), b.view(np.int64)), kernel.__name__

    both(kernels.sma_kernel, x, 7)
    both(kernels.ema_kernel, x, 7)
    both(kernels.rsi_kernel, x, 7)
    r = rsi(x, 5)
    both(kernels.stoch_sma_kernel, r, 5, 6, 3, 2, n_out=2)
    both(kernels.macd_kernel, x, 3, 9, 4, n_out=3)
    both(kernels.bbands_kernel, x, 9, 2.0, n_out=3)
    both(kernels.atr_kernel, h, lo, x, 7)
    both(kernels.vwap_kernel, x, v, np.arange(400) // 50, True)
