"""``GET /api/signals/current``: the newest signal of each symbol, from Redis."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from sinks.base import SinkError
from streams.api.errors import ApiError, bad_request
from streams.api.jsonresp import json_response
from streams.api.models import ErrorBody, SignalList
from streams.api.state import ApiState, get_state
from streams.api.stream_hub import SIGNAL_FIELDS
from streams.api.validation import parse_symbols

router = APIRouter(tags=["signals"])

#: Longest ``symbols`` value (a few hundred symbols). Even as percent-encoded 4-byte UTF-8 (12 bytes a
#: character) it keeps the URL under the 64 KiB that uvicorn parses: a longer URL is refused by the HTTP
#: server itself, in plain text, before the API could name the problem.
MAX_SYMBOLS_CHARS = 4_000


@router.get(
    "/api/signals/current",
    response_model=SignalList,
    responses={
        400: {"model": ErrorBody, "description": "invalid symbols list"},
        503: {"model": ErrorBody, "description": "Redis did not answer"},
    },
    summary="The newest signal of each symbol (or of the given symbols)",
)
async def current_signals(
    state: Annotated[ApiState, Depends(get_state)],
    symbols: Annotated[
        str | None,
        Query(
            max_length=MAX_SYMBOLS_CHARS,
            description="comma-separated symbols, e.g. BTCUSDT,EURUSD (default: every symbol with a signal); "
            f"at most {MAX_SYMBOLS_CHARS} characters",
        ),
    ] = None,
) -> Response:
    """Sorted by symbol; symbols without a signal are left out."""
    try:
        wanted = parse_symbols(symbols)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    try:
        redis = await state.backends.redis()
        rows = await asyncio.wait_for(redis.latest_signals(wanted), state.settings.api.store_timeout_s)
    except SinkError as exc:
        raise ApiError(503, f"redis is unavailable: {exc.detail}; check: {exc.hint}") from exc
    except TimeoutError:
        raise ApiError(
            503, f"redis did not answer within {state.settings.api.store_timeout_s:g} s; check GET /healthz"
        ) from None
    signals = [{k: r.get(k) for k in SIGNAL_FIELDS} for r in rows]
    return json_response({"count": len(signals), "signals": signals}, headers={"Cache-Control": "no-store"})
