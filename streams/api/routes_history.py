"""``GET /api/historical/chart-data/{symbol}`` (bars for charts) and ``GET /api/symbols``.

Chart responses are cached in Redis per symbol, timeframe and ``limit``
(:class:`sinks.redis_cache.ChartCache`: the sink deletes them whenever it writes a bar of the symbol and
timeframe), so a repeated request costs one ``HGET`` instead of reading, decoding and encoding the bars again;
``X-Cache`` says ``hit`` or ``miss``. Only responses built from Redis bars are cached.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from sinks.base import SinkError
from streams.api.errors import ApiError, bad_request
from streams.api.jsonresp import RawJSONResponse, dumps, json_response
from streams.api.models import ChartData, ErrorBody, SymbolList
from streams.api.state import ApiState, get_state
from streams.api.validation import LimitQuery, SymbolPath, TimeframeQuery, check_timeframe
from streams.metrics import CACHE_REQUESTS

router = APIRouter(tags=["history"])
NO_STORE = {"Cache-Control": "no-store"}

ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "invalid symbol, timeframe or limit"},
    404: {"model": ErrorBody, "description": "no store holds a bar of the symbol and timeframe"},
    503: {"model": ErrorBody, "description": "no store answered"},
}


def known_timeframe(state: ApiState, timeframe: str) -> str:
    try:
        return check_timeframe(timeframe, state.settings.topics.timeframes)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


@router.get(
    "/api/historical/chart-data/{symbol:path}",
    response_model=ChartData,
    responses=ERRORS,
    summary="Newest bars of a symbol (Redis, then ClickHouse, then the PostgreSQL replica)",
)
async def chart_data(
    symbol: SymbolPath,
    state: Annotated[ApiState, Depends(get_state)],
    timeframe: TimeframeQuery = "1m",
    limit: LimitQuery = 500,
) -> Response:
    """The newest ``limit`` bars, oldest first. ``source`` says which store served them: ``redis`` is a hit
    of the hot cache; on a miss ClickHouse and then the PostgreSQL replica are asked (and Redis is warmed).
    The response header ``X-Cache`` says whether the rendered response came from the response cache."""
    tf = known_timeframe(state, timeframe)
    variant = f"limit={limit}"
    cached = await _cached(state, symbol, tf, variant)
    if cached is not None:
        CACHE_REQUESTS.labels("hit").inc()
        return RawJSONResponse(cached, headers={**NO_STORE, "X-Source": "redis", "X-Cache": "hit"})
    result = await state.history.bars(symbol, tf, limit)
    body = dumps(
        {
            "symbol": symbol,
            "timeframe": tf,
            "source": result.source,
            "count": len(result.bars),
            "bars": result.bars,
        }
    )
    if result.source == "redis":  # a fallback's answer is not cached: Redis is being warmed with its bars
        await _store(state, symbol, tf, variant, body, result.bars[-1]["start_us"])
    return RawJSONResponse(body, headers={**NO_STORE, "X-Source": result.source, "X-Cache": "miss"})


async def _cached(state: ApiState, symbol: str, timeframe: str, variant: str) -> bytes | None:
    """The cached response body (Redis ``P:{SYM}:chart:<tf>``, :class:`sinks.redis_cache.ChartCache`), or
    None: not cached, or Redis did not answer (then the bars path decides what to do)."""
    try:
        redis = await state.backends.redis()
        body = await asyncio.wait_for(redis.chart.get(symbol, timeframe, variant), state.history.timeout_s)
    except (SinkError, TimeoutError):
        return None
    return None if body is None else body.encode()


async def _store(state: ApiState, symbol: str, timeframe: str, variant: str, body: bytes, as_of: int) -> None:
    """Cache a response built from Redis bars up to ``as_of``; skipped (stored by the next request) when a
    newer bar arrived meanwhile or Redis does not answer. Writing bars deletes the cached responses."""
    with contextlib.suppress(SinkError, TimeoutError):
        redis = await state.backends.redis()
        await asyncio.wait_for(
            redis.chart.put(symbol, timeframe, variant, body.decode(), as_of), state.history.timeout_s
        )


@router.get(
    "/api/symbols",
    response_model=SymbolList,
    responses={503: {"model": ErrorBody, "description": "Redis did not answer"}},
    summary="Symbols with stored data, and the stored timeframes",
)
async def symbols(
    state: Annotated[ApiState, Depends(get_state)],
    prefix: Annotated[
        str | None, Query(pattern=r"^[A-Z0-9._/-]{1,32}$", description="only symbols starting with this")
    ] = None,
) -> Response:
    try:
        names = await (await state.backends.redis()).symbols()
    except SinkError as exc:
        raise ApiError(503, f"redis is unavailable: {exc.detail}; check: {exc.hint}") from exc
    if prefix:
        names = [n for n in names if n.startswith(prefix)]
    return json_response({"symbols": names, "timeframes": list(state.settings.topics.timeframes)})
