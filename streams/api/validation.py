"""Input rules of the API and the wording of what was wrong with an input and how to fix it.

Path and query parameters are declared once here (``Annotated`` types with patterns and bounds, which also go
into the OpenAPI document); :func:`describe_errors` turns pydantic's errors into one readable sentence per
problem, each naming the parameter, the value received and what to send instead.

>>> SYMBOL_RE.match("BTC-PERP") is not None, SYMBOL_RE.match("btc") is None
(True, True)
>>> parse_symbols("EURUSD,BTC-PERP")
['EURUSD', 'BTC-PERP']
>>> parse_symbols("EURUSD,,x")
Traceback (most recent call last):
...
ValueError: symbols: 'x' is not a valid symbol: use 1-32 characters A-Z 0-9 . _ / - starting with a letter \
or digit, upper case (e.g. BTCUSDT, EUR/USD)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

from fastapi import Path, Query

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._/-]{0,31}$"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
TIMEFRAME_PATTERN = r"^[0-9]{1,4}[smhd]$"
MAX_LIMIT = 5000
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"

SYMBOL_HINT = (
    "use 1-32 characters A-Z 0-9 . _ / - starting with a letter or digit, upper case (e.g. BTCUSDT, EUR/USD)"
)

#: What to do about a bad value, per parameter or body field name.
HINTS: dict[str, str] = {
    "symbol": SYMBOL_HINT,
    "symbols": "give a comma-separated list of symbols, e.g. symbols=BTCUSDT,EURUSD; " + SYMBOL_HINT,
    "timeframe": "use one of the stored timeframes (GET /api/symbols lists them), e.g. timeframe=1m",
    "limit": f"use an integer from 1 to {MAX_LIMIT}",
    "indicator": "use one of ema, rsi, stochrsi, macd, bbands",
    "period": "use an integer from 1 (ema) or 2 (rsi, stochrsi, bbands) to 100000",
    "stoch_period": "use an integer from 1 to 100000",
    "k": "use an integer from 1 to 100000",
    "d": "use an integer from 1 to 100000",
    "fast": "use an integer from 2 to 100000, smaller than slow",
    "slow": "use an integer from 2 to 100000, larger than fast",
    "signal": "use an integer from 1 to 100000",
    "nbdev": "use a finite number >= 0, e.g. 2",
    "values": "send a JSON array of at most 100000 finite numbers (no null, NaN or Infinity)",
    "params": "send an object with exactly the parameters of the indicator (see the OpenAPI document /docs)",
    "side": "use BUY or SELL",
    "quantity": "use a finite number > 0 and <= 1e9",
    "body": "send a JSON object with Content-Type: application/json (the shape is in the OpenAPI document)",
    "Idempotency-Key": "use 1-128 characters A-Z a-z 0-9 . _ : - (e.g. a UUID), the same for retries",
}

SymbolPath = Annotated[
    str,
    Path(
        pattern=SYMBOL_PATTERN,
        description=f"The instrument: {SYMBOL_HINT}. A '/' may be sent as is or as %2F.",
        examples=["BTC-PERP"],
    ),
]
TimeframeQuery = Annotated[
    str,
    Query(
        pattern=TIMEFRAME_PATTERN,
        description="Bar timeframe; one of the pipeline's timeframes (STOCKPULSE_TOPICS__TIMEFRAMES).",
        examples=["1m"],
    ),
]
LimitQuery = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"How many of the newest bars (1..{MAX_LIMIT}).")
]


def check_timeframe(timeframe: str, known: Sequence[str]) -> str:
    """``timeframe`` if it is one of ``known``; ``ValueError`` naming the known ones otherwise.

    >>> check_timeframe("5m", ("1s", "1m"))
    Traceback (most recent call last):
    ...
    ValueError: timeframe: '5m' is not stored; use one of 1s, 1m
    """
    if timeframe not in known:
        raise ValueError(f"timeframe: {timeframe!r} is not stored; use one of {', '.join(known)}")
    return timeframe


def parse_symbols(raw: str | None, max_symbols: int = 1000) -> list[str] | None:
    """A comma-separated symbol list (empty items ignored, duplicates removed, order kept), or None for
    ``None``; ``ValueError`` naming the first bad symbol and the fix."""
    if raw is None:
        return None
    out: list[str] = []
    for item in raw.split(","):
        s = item.strip()
        if not s:
            continue
        if not SYMBOL_RE.match(s):
            raise ValueError(f"symbols: {s[:40]!r} is not a valid symbol: {SYMBOL_HINT}")
        if s not in out:
            out.append(s)
    if len(out) > max_symbols:
        raise ValueError(f"symbols: {len(out)} symbols given, at most {max_symbols} are accepted per request")
    return out


def _where(loc: Sequence[Any]) -> tuple[str, str]:
    """(``query parameter 'limit'`` style description, the parameter/field name) of an error location."""
    parts = [str(p) for p in loc]
    if not parts:
        return "request", ""
    kind, rest = parts[0], parts[1:]
    names = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body field"}
    if kind == "body":
        # Discriminated unions add the tag (e.g. 'ema') to the location: drop it from the field path.
        rest = [p for p in rest if p not in ("ema", "rsi", "stochrsi", "macd", "bbands")]
        if not rest:
            return "request body", ""
        return f"body field '{'.'.join(rest)}'", next((p for p in rest if not p.isdigit()), rest[0])
    name = rest[0] if rest else kind
    label = "Idempotency-Key" if name.lower().replace("_", "-") == "idempotency-key" else name
    return f"{names.get(kind, kind)} '{label}'", label


def _body_problem(err: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(where, hint name, problem) of the errors about the body as a whole, whose pydantic wording names no
    field: not JSON, not an object, missing, or an unknown/missing ``indicator`` (the union's tag).

    >>> _body_problem({"type": "json_invalid", "loc": ("body", 7), "msg": "JSON decode error"})
    ('request body', 'body', 'is not valid JSON (decoding failed at character 7)')
    >>> _body_problem({"type": "union_tag_invalid", "loc": ("body",), "ctx": {"tag": "sma"}})
    ("body field 'indicator'", 'indicator', "'sma' is not an indicator")
    """
    kind, loc = err.get("type"), tuple(err.get("loc", ()))
    if not loc or loc[0] != "body":
        return None
    if kind == "json_invalid":
        at = f" (decoding failed at character {loc[1]})" if len(loc) > 1 else ""
        return "request body", "body", f"is not valid JSON{at}"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return "body field 'indicator'", "indicator", f"{_show(tag)} is not an indicator"
    if kind == "union_tag_not_found":
        return "body field 'indicator'", "indicator", "is required but missing"
    if len(loc) == 1 and kind == "missing":
        return "request body", "body", "is required but missing"
    if len(loc) == 1 and kind in ("model_attributes_type", "dict_type", "model_type"):
        value = err.get("input")
        if isinstance(value, bytes | bytearray):
            return "request body", "body", "was not sent as JSON (Content-Type is not application/json)"
        return "request body", "body", f"must be a JSON object, got {type(value).__name__} {_show(value)}"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors as ``{"where", "problem", "fix", "message"}`` dicts.

    >>> err = {"loc": ("query", "limit"), "msg": "Input should be less than or equal to 5000",
    ...        "input": "9000", "type": "less_than_equal"}
    >>> for part in describe_errors([err])[0]["message"].split("; "):
    ...     print(part)
    query parameter 'limit': Input should be less than or equal to 5000 (got '9000')
    use an integer from 1 to 5000
    """
    out: list[dict[str, Any]] = []
    for err in errors:
        special = _body_problem(err)
        if special is not None:
            where, name, problem = special
        else:
            where, name = _where(err.get("loc", ()))
            problem = str(err.get("msg", "invalid value"))
            if err.get("type") == "missing":
                problem = "is required but missing"
            elif "input" in err and not isinstance(err["input"], dict | list):
                problem += f" (got {_show(err['input'])})"
        fix = HINTS.get(name, "see the OpenAPI document at /docs for the accepted values")
        out.append({"where": where, "problem": problem, "fix": fix, "message": f"{where}: {problem}; {fix}"})
    return out
