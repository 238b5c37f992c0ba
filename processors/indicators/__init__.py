"""Technical indicators: TA-Lib-exact batch functions and a bit-identical incremental engine.

* :mod:`~processors.indicators.batch` -- ``ema, sma, rsi, stochrsi, macd, bbands, atr, vwap`` over
  float64 arrays (same length out, NaN during warm-up), equal to TA-Lib within 1e-9 relative wherever TA-Lib
  has a value.
* :mod:`~processors.indicators.incremental` -- :class:`IndicatorSet`, one O(1) ``update`` per bar, equal to
  the batch functions bit for bit, checkpointable with ``to_bytes``/``from_bytes``.
* :mod:`~processors.indicators.kernels` -- the numba loops both are built on; their docstrings are the
  arithmetic specification for ports (C/WASM).

>>> from processors.indicators import IndicatorSet, ema
>>> ema([1.0, 2.0, 3.0], 2).tolist()
[nan, 1.5, 2.5]
>>> IndicatorSet().update(1.0, 1.0, 1.0, 1.0, 0.0)["ema_fast"]
nan
"""

from processors.indicators.batch import (
    BBands,
    Macd,
    StochRSI,
    atr,
    bbands,
    ema,
    macd,
    rsi,
    sma,
    stochrsi,
    typical_price,
    vwap,
)
from processors.indicators.config import SNAPSHOT_KEYS, IndicatorConfig
from processors.indicators.incremental import IndicatorSet

__all__ = [
    "SNAPSHOT_KEYS",
    "BBands",
    "IndicatorConfig",
    "IndicatorSet",
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
