"""``GET /api/historical/chart-data/{symbol}`` (bars for charts) and ``GET /api/symbols``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from sinks.base import SinkError
from streams.api.errors import ApiError, bad_request
from streams.api.jsonresp import json_response
from streams.api.models import ChartData, ErrorBody, SymbolList
from streams.api.state import ApiState, get_state
from streams.api.validation import LimitQuery, SymbolPath, TimeframeQuery, check_timeframe

router = APIRouter(tags=["history"])

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
    of the hot cache; on a miss ClickHouse and then the PostgreSQL replica are asked (and Redis is warmed)."""
    tf = known_timeframe(state, timeframe)
    result = await state.history.bars(symbol, tf, limit)
    body = {
        "symbol": symbol,
        "timeframe": tf,
        "source": result.source,
        "count": len(result.bars),
        "bars": result.bars,
    }
    return json_response(body, headers={"X-Source": result.source, "Cache-Control": "no-store"})


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
