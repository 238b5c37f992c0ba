"""Indicators computed on the server with ``processors.indicators``:

* ``GET /api/indicators/{symbol}``: over the stored bars (the same bars as chart-data), aligned with them;
* ``POST /api/indicators/compute``: over the values sent, the fallback of ``wasm/indicators.js``
  (its header is the contract: ``{"indicator", "values", "params"}`` -> ``{"<output>": [...]}``,
  NaN as null, 400 with ``{"error"}``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from streams.api.errors import bad_request
from streams.api.indicators import SPEC, compute, encode_outputs, resolve_params
from streams.api.jsonresp import RawJSONResponse, dumps
from streams.api.models import ComputeRequest, ComputeResult, ErrorBody, IndicatorSeries
from streams.api.routes_history import known_timeframe
from streams.api.state import ApiState, get_state
from streams.api.validation import LimitQuery, SymbolPath, TimeframeQuery

router = APIRouter(tags=["indicators"])

PeriodQ = Annotated[int | None, Query(ge=1, le=100_000)]
Indicator = Literal["ema", "rsi", "stochrsi", "macd", "bbands"]


@router.get(
    "/api/indicators/{symbol:path}",
    response_model=IndicatorSeries,
    responses={
        400: {"model": ErrorBody, "description": "invalid symbol, timeframe, limit, indicator or parameter"},
        404: {"model": ErrorBody, "description": "no store holds a bar of the symbol and timeframe"},
        503: {"model": ErrorBody, "description": "no store answered"},
    },
    summary="An indicator over the stored bars of a symbol",
)
async def indicator_series(
    symbol: SymbolPath,
    state: Annotated[ApiState, Depends(get_state)],
    timeframe: TimeframeQuery = "1m",
    indicator: Annotated[Indicator, Query(description="which indicator")] = "ema",
    limit: LimitQuery = 500,
    period: PeriodQ = None,
    stoch_period: PeriodQ = None,
    k: PeriodQ = None,
    d: PeriodQ = None,
    fast: PeriodQ = None,
    slow: PeriodQ = None,
    signal: PeriodQ = None,
    nbdev: Annotated[float | None, Query(ge=0, le=1e6, allow_inf_nan=False)] = None,
) -> Response:
    """The indicator over the closes of the newest ``limit`` bars (the bars chart-data returns), so its values
    equal what the browser's WASM module computes from those bars. Parameters left out take the pipeline's
    defaults (ema 12; rsi 14; stochrsi 14, 14, 3, 3; macd 12, 26, 9; bbands 20, 2)."""
    tf = known_timeframe(state, timeframe)
    given = {
        "period": period,
        "stoch_period": stoch_period,
        "k": k,
        "d": d,
        "fast": fast,
        "slow": slow,
        "signal": signal,
        "nbdev": nbdev,
    }
    try:
        params = resolve_params(indicator, given)
    except ValueError as exc:
        raise bad_request(f"{exc}; leave the other parameters out") from None
    result = await state.history.bars(symbol, tf, limit)
    close = np.array([b["close"] for b in result.bars], dtype=np.float64)
    try:
        outputs = compute(indicator, close, params)
    except ValueError as exc:
        raise bad_request(f"{indicator}: {exc}") from None
    head = dumps(
        {
            "symbol": symbol,
            "timeframe": tf,
            "indicator": indicator,
            "params": params,
            "source": result.source,
            "count": len(result.bars),
            "start_us": [b["start_us"] for b in result.bars],
            "close": close.tolist(),
        }
    )
    body = head[:-1] + b',"values":' + encode_outputs(outputs).encode() + b"}"
    return RawJSONResponse(body, headers={"X-Source": result.source, "Cache-Control": "no-store"})


@router.post(
    "/api/indicators/compute",
    response_model=ComputeResult,
    responses={
        400: {"model": ErrorBody, "description": "invalid indicator, values or params"},
        413: {"model": ErrorBody, "description": "body larger than STOCKPULSE_API__MAX_BODY_BYTES"},
    },
    summary="Compute an indicator over the values sent (the WASM module's server fallback)",
)
async def compute_values(req: ComputeRequest) -> Response:
    """``{"indicator": "ema", "values": [...], "params": {"period": 12}}`` -> ``{"ema": [...]}``:
    each output as long as ``values``, warm-up NaN as null. Parameters per indicator: ema ``period``;
    rsi ``period``; stochrsi ``period, stoch_period, k, d``; macd ``fast, slow, signal``;
    bbands ``period, nbdev``."""
    names = SPEC[req.indicator][0]
    params = req.params.model_dump()
    values = np.asarray(req.values, dtype=np.float64)
    try:
        outputs = compute(req.indicator, values, {n: params[n] for n in names})
    except ValueError as exc:
        raise bad_request(f"{req.indicator}: {exc}") from None
    return RawJSONResponse(encode_outputs(outputs).encode())
