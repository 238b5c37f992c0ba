"""Model features from indicator values: the one definition shared by training and the signal service.

Every feature is scale-free, so one model serves instruments at any price level (BTC 40,000, GBP/USD 1.5):

=================== ==========================================================================================
``ema_fast_rel``    ``(ema_fast - close) / close``
``ema_slow_rel``    ``(ema_slow - close) / close``
``rsi``             ``rsi / 100``
``stochrsi_k``      ``stochrsi_k / 100``
``stochrsi_d``      ``stochrsi_d / 100``
``macd_rel``        ``macd / close``
``macd_signal_rel`` ``macd_signal / close``
``macd_hist_rel``   ``macd_hist / close``
``bb_upper_rel``    ``(bb_upper - close) / close``
``bb_middle_rel``   ``(bb_middle - close) / close``
``bb_lower_rel``    ``(bb_lower - close) / close``
``atr_rel``         ``atr / close``
``ret_1 .. ret_8``  the last :data:`N_RETURNS` log returns of the close, ``ret_1`` the newest
=================== ==========================================================================================

Volume and VWAP are not used: one of the training instruments (FXCM GBP/USD) has no volume, and the VWAP is
cumulative since its session start, so its distance to the close depends on when a process started.

Indicator parameters are the ``IndicatorSet`` defaults (:data:`INDICATOR_PARAMS`). Log returns are
``math.log(close / prev_close)`` (:func:`log_return`); the snapshot's ``returns`` must be computed that way.

**Warm-up.** A row whose features are not all finite (an indicator still warming up, fewer than
:data:`N_RETURNS` returns, a non-positive close) is not predicted: :func:`is_valid` is False and the signal
service answers HOLD without calling the model. With the default parameters the first valid row is bar 33
(0-based; the MACD signal line is the last indicator to warm up).

Both entry points compute features with the same float64 numpy expressions (:func:`_compute`), one row or
many, and round to float32 last, so :func:`features_from_snapshot` on a bar's snapshot equals the matching row
of :func:`feature_matrix` bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from processors.indicators import batch

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: How many recent log returns are features.
N_RETURNS = 8

#: The indicator parameters the features are defined with (the ``IndicatorConfig`` defaults, same names).
INDICATOR_PARAMS: dict[str, int | float] = {
    "ema_fast": 12,
    "ema_slow": 26,
    "rsi_period": 14,
    "stoch_period": 14,
    "stoch_k": 3,
    "stoch_d": 3,
    "macd_fast": 12,
    "macd_slow": 26,
    "macd_signal": 9,
    "bb_period": 20,
    "bb_nbdev": 2.0,
    "atr_period": 14,
}

#: The snapshot fields the features read (all of ``IndicatorSet.update``'s keys except ``vwap``).
SNAPSHOT_FIELDS: tuple[str, ...] = (
    "close",
    "ema_fast",
    "ema_slow",
    "rsi",
    "stochrsi_k",
    "stochrsi_d",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
)

FEATURE_NAMES: tuple[str, ...] = (
    "ema_fast_rel",
    "ema_slow_rel",
    "rsi",
    "stochrsi_k",
    "stochrsi_d",
    "macd_rel",
    "macd_signal_rel",
    "macd_hist_rel",
    "bb_upper_rel",
    "bb_middle_rel",
    "bb_lower_rel",
    "atr_rel",
    *(f"ret_{i}" for i in range(1, N_RETURNS + 1)),
)

#: Number of features (the model's input width).
N_FEATURES = len(FEATURE_NAMES)


def log_return(prev_close: float, close: float) -> float:
    """The log return between two closes, ``math.log(close / prev_close)``: the definition of ``returns``.

    >>> round(log_return(100.0, 101.0), 8)
    0.00995033
    """
    return math.log(close / prev_close)


def log_returns(close: npt.ArrayLike) -> F64:
    """Log returns of a close series, same length: ``out[0]`` is NaN, ``out[i] = log_return(c[i-1], c[i])``.

    Uses :func:`math.log` element by element (not ``np.log``, whose SIMD loops may differ by an ulp), so the
    values equal what a streaming producer computes with :func:`log_return`.

    >>> log_returns([100.0, 101.0, 100.0]).round(6).tolist()
    [nan, 0.00995, -0.00995]
    """
    c = np.asarray(close, dtype=np.float64)
    out = np.full(c.shape[0], np.nan)
    if c.shape[0] > 1:
        ratio = c[1:] / c[:-1]
        out[1:] = [math.log(r) if r > 0.0 else math.nan for r in ratio.tolist()]
    return out


def _compute(cols: Mapping[str, F64], rets: F64) -> F32:
    """Features of ``n`` rows from the snapshot columns (each float64 ``[n]``) and returns ``[n, N_RETURNS]``
    (column 0 the newest). The single place where features are defined."""
    close = cols["close"]
    n = close.shape[0]
    out = np.empty((n, N_FEATURES), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out[:, 0] = (cols["ema_fast"] - close) / close
        out[:, 1] = (cols["ema_slow"] - close) / close
        out[:, 2] = cols["rsi"] / 100.0
        out[:, 3] = cols["stochrsi_k"] / 100.0
        out[:, 4] = cols["stochrsi_d"] / 100.0
        out[:, 5] = cols["macd"] / close
        out[:, 6] = cols["macd_signal"] / close
        out[:, 7] = cols["macd_hist"] / close
        out[:, 8] = (cols["bb_upper"] - close) / close
        out[:, 9] = (cols["bb_middle"] - close) / close
        out[:, 10] = (cols["bb_lower"] - close) / close
        out[:, 11] = cols["atr"] / close
        out[:, 12:] = rets
    out[~(close > 0.0)] = np.nan  # a non-positive or NaN close: not predictable
    return out.astype(np.float32)


def features_from_snapshot(snapshot: Mapping[str, float], returns: Sequence[float]) -> F32:
    """The features of one bar: float32 ``[N_FEATURES]``, NaN where the inputs are still warming up.

    ``snapshot`` holds the fields in :data:`SNAPSHOT_FIELDS` (an ``IndicatorSet.update`` result plus
    ``close``, or a decoded ``IndicatorSnapshot``; other keys are ignored); ``returns`` the recent log returns
    of the close, newest last (the ``IndicatorSnapshot.returns`` field). Only the last :data:`N_RETURNS` are
    used; with fewer, the missing ones are NaN.

    >>> snap = dict.fromkeys(SNAPSHOT_FIELDS, 100.0) | {"rsi": 50.0, "atr": 1.0, "macd": 0.5}
    >>> x = features_from_snapshot(snap, [0.001] * N_RETURNS)
    >>> x.shape, x.dtype.name, float(x[FEATURE_NAMES.index("rsi")]), float(x[FEATURE_NAMES.index("atr_rel")])
    ((20,), 'float32', 0.5, 0.009999999776482582)
    >>> bool(is_valid(features_from_snapshot(snap, [0.001] * 3)))
    False
    """
    missing = [f for f in SNAPSHOT_FIELDS if f not in snapshot]
    if missing:
        raise KeyError(
            f"snapshot lacks {', '.join(missing)}: pass an IndicatorSet.update() result with 'close' added, "
            "or a decoded IndicatorSnapshot"
        )
    cols = {f: np.array([snapshot[f]], dtype=np.float64) for f in SNAPSHOT_FIELDS}
    rets = np.full((1, N_RETURNS), np.nan)
    recent = [float(r) for r in list(returns)[-N_RETURNS:]][::-1]  # newest first
    rets[0, : len(recent)] = recent
    return _compute(cols, rets)[0]


def snapshot_columns(
    open: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
) -> dict[str, F64]:
    """Every ``IndicatorSet`` snapshot field (plus ``close``) over a whole series, from the batch functions.

    Row ``i`` is what ``IndicatorSet.update`` returns after bar ``i``. ``open`` is unused (accepted so the
    signature matches ``update``); ``volume`` only feeds ``vwap``.

    >>> cols = snapshot_columns([1.0] * 3, [2.0] * 3, [0.5] * 3, [1.5] * 3, [0.0] * 3)
    >>> sorted(cols) == sorted((*SNAPSHOT_FIELDS, "vwap"))
    True
    """
    c = np.asarray(close, dtype=np.float64)
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    o = np.asarray(open, dtype=np.float64)
    if not (o.shape == h.shape == lo.shape == c.shape == v.shape) or c.ndim != 1:
        raise ValueError(
            "open, high, low, close and volume must be 1-D arrays of the same length, got shapes "
            f"{o.shape}, {h.shape}, {lo.shape}, {c.shape}, {v.shape}"
        )
    p = INDICATOR_PARAMS
    st = batch.stochrsi(c, int(p["rsi_period"]), int(p["stoch_period"]), int(p["stoch_k"]), int(p["stoch_d"]))
    m = batch.macd(c, int(p["macd_fast"]), int(p["macd_slow"]), int(p["macd_signal"]))
    bb = batch.bbands(c, int(p["bb_period"]), float(p["bb_nbdev"]))
    return {
        "close": c,
        "ema_fast": batch.ema(c, int(p["ema_fast"])),
        "ema_slow": batch.ema(c, int(p["ema_slow"])),
        "rsi": batch.rsi(c, int(p["rsi_period"])),
        "stochrsi_k": st.k,
        "stochrsi_d": st.d,
        "macd": m.macd,
        "macd_signal": m.signal,
        "macd_hist": m.hist,
        "bb_upper": bb.upper,
        "bb_middle": bb.middle,
        "bb_lower": bb.lower,
        "atr": batch.atr(h, lo, c, int(p["atr_period"])),
        "vwap": batch.vwap(batch.typical_price(h, lo, c), v),
    }


def returns_matrix(close: npt.ArrayLike) -> F64:
    """``[n, N_RETURNS]``: row ``i`` holds the log returns up to bar ``i``, newest first (NaN before bar 1).

    >>> returns_matrix([1.0, 2.0, 4.0])[:, :3].round(4).tolist()
    [[nan, nan, nan], [0.6931, nan, nan], [0.6931, 0.6931, nan]]
    """
    lr = log_returns(close)
    n = lr.shape[0]
    out = np.full((n, N_RETURNS), np.nan)
    for j in range(min(N_RETURNS, n)):
        out[j:, j] = lr[: n - j]
    return out


def feature_matrix(
    open: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Features of every bar of a series: ``(X [n, N_FEATURES] float32, valid [n] bool)``.

    Row ``i`` equals ``features_from_snapshot`` on bar ``i``'s snapshot and its recent returns; ``valid``
    marks the rows with all features finite (the others are warm-up: HOLD).

    >>> close = 100.0 + np.sin(np.arange(60.0))
    >>> X, valid = feature_matrix(close, close + 1.0, close - 1.0, close, np.ones(60))
    >>> X.shape, int(valid.argmax()), int(valid.sum())
    ((60, 20), 33, 27)
    """
    cols = snapshot_columns(open, high, low, close, volume)
    X = _compute(cols, returns_matrix(cols["close"]))
    return X, is_valid(X)


def is_valid(features: npt.NDArray[np.floating]) -> npt.NDArray[np.bool_]:
    """True where a feature row (``[F]`` or ``[n, F]``) can be predicted: all features finite.

    >>> is_valid(np.array([[0.0, 1.0], [np.nan, 1.0]], dtype=np.float32)).tolist()
    [True, False]
    """
    return np.isfinite(features).all(axis=-1)
