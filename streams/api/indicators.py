"""Server-side indicators with ``processors.indicators`` (the same values as ``wasm/indicators.wasm``, bit for
bit): the WASM module's fallback and the stored-series endpoint.

>>> import numpy as np
>>> out = compute("ema", np.array([1.0, 2.0, 3.0, 4.0]), {"period": 2})
>>> encode_outputs(out)
'{"ema":[null,1.5,2.5,3.5]}'
>>> resolve_params("ema", {"period": None, "fast": 3})
Traceback (most recent call last):
...
ValueError: fast does not apply to ema; ema takes period
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from processors import indicators as ind
from processors.indicators import IndicatorConfig
from streams.api.jsonresp import float_array_json

F64 = npt.NDArray[np.float64]

_D = IndicatorConfig()
#: indicator -> (parameters in call order with their defaults, output names) as in wasm/indicators.js.
SPEC: dict[str, tuple[dict[str, int | float], tuple[str, ...]]] = {
    "ema": ({"period": _D.ema_fast}, ("ema",)),
    "rsi": ({"period": _D.rsi_period}, ("rsi",)),
    "stochrsi": (
        {"period": _D.rsi_period, "stoch_period": _D.stoch_period, "k": _D.stoch_k, "d": _D.stoch_d},
        ("k", "d"),
    ),
    "macd": (
        {"fast": _D.macd_fast, "slow": _D.macd_slow, "signal": _D.macd_signal},
        ("macd", "signal", "hist"),
    ),
    "bbands": ({"period": _D.bb_period, "nbdev": _D.bb_nbdev}, ("upper", "middle", "lower")),
}
ALL_PARAMS = ("period", "stoch_period", "k", "d", "fast", "slow", "signal", "nbdev")


def resolve_params(indicator: str, given: Mapping[str, int | float | None]) -> dict[str, int | float]:
    """The indicator's parameters: the given ones, the defaults for the rest; ``ValueError`` for a given
    parameter the indicator does not take."""
    defaults, _ = SPEC[indicator]
    for name, value in given.items():
        if value is not None and name not in defaults:
            raise ValueError(f"{name} does not apply to {indicator}; {indicator} takes {', '.join(defaults)}")
    out: dict[str, int | float] = {}
    for name, default in defaults.items():
        value = given.get(name)
        out[name] = default if value is None else value
    return out


def compute(indicator: str, values: F64, params: Mapping[str, int | float]) -> dict[str, F64]:
    """Output name -> array (same length as ``values``). ``ValueError`` (from processors.indicators) names a
    bad parameter or value."""
    defaults, outputs = SPEC[indicator]
    args = [params[name] for name in defaults]
    fn: Any = getattr(ind, indicator)
    result = fn(values, *args)
    arrays = tuple(result) if isinstance(result, tuple) else (result,)
    return dict(zip(outputs, arrays, strict=True))


def encode_outputs(outputs: Mapping[str, F64]) -> str:
    """``{"name": [...], ...}`` with NaN as null (the fallback contract's body)."""
    return "{" + ",".join(f'"{name}":{float_array_json(arr)}' for name, arr in outputs.items()) + "}"
