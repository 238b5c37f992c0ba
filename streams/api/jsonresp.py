"""JSON bodies without FastAPI's generic encoder: plain dicts/lists of str/int/float/bool/None go straight to
``json.dumps`` (compact), which is several times faster than ``jsonable_encoder`` + pydantic on bar lists.

Non-finite floats (NaN warm-ups, overflow) are written as ``null`` (JSON has no NaN), and float arrays from
numpy take a faster path: :func:`float_array_json`.

>>> dumps({"a": [1.0, float("nan")], "b": "x"})
b'{"a":[1.0,null],"b":"x"}'
>>> float_array_json(__import__("numpy").array([1.5, float("nan"), float("-inf")]))
'[1.5,null,null]'
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.responses import JSONResponse, Response

_strict = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode
_loose = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively through dicts and lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/inf as null (the common all-finite case is one pass)."""
    try:
        return _strict(value).encode()
    except ValueError:
        return _strict(_finite(value)).encode()


def float_array_json(values: npt.NDArray[np.float64]) -> str:
    """A float64 array as a JSON array with round-trip precision, non-finite values as ``null``."""
    text: str = _loose(values.tolist())
    if "N" in text or "I" in text:  # only numbers in the text: these letters come from NaN/Infinity alone
        text = text.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null")
    return text


class RawJSONResponse(JSONResponse):
    """A response whose body is already-encoded JSON bytes (anything else is encoded with :func:`dumps`).

    A :class:`~starlette.responses.JSONResponse` subclass: FastAPI then documents each route's
    ``response_model`` as its success body in the OpenAPI document (for other response classes it writes
    ``{"type": "string"}``)."""

    def render(self, content: Any) -> bytes:
        return bytes(content) if isinstance(content, bytes | bytearray | memoryview) else dumps(content)


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as a JSON response (see :func:`dumps`)."""
    return RawJSONResponse(dumps(value), status_code=status, headers=headers)
