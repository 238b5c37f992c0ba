"""The FastAPI application: ``create_app(settings)``.

Routes (OpenAPI at ``/openapi.json``, interactive docs at ``/docs``):

=======================================  ==========================================================
``GET /``                                the dashboard (``static/index.html``)
``GET /api/historical/chart-data/{sym}`` bars: Redis, then ClickHouse, then the PostgreSQL replica
``GET /api/symbols``                     symbols with data, and the stored timeframes
``GET /api/signals/current``             the newest signal per symbol (Redis)
``POST /api/orders``                     risk-checked manual order -> orders topic (Avro ``Order``)
``GET /api/indicators/{sym}``            an indicator over the stored bars (processors.indicators)
``POST /api/indicators/compute``         the WASM module's fallback (contract in wasm/indicators.js)
``WS /ws/stream``                        snapshot, then live bars and signals
``GET /healthz``, ``GET /metrics``       dependencies (200/503), Prometheus
``/static/...``, ``/static/wasm/...``    the dashboard's files; the repository's ``wasm/`` directory
=======================================  ==========================================================
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse

from streams.api import (
    errors,
    openapi_doc,
    routes_history,
    routes_indicators,
    routes_ops,
    routes_orders,
    routes_signals,
    ws,
)
from streams.api.jsonresp import RawJSONResponse
from streams.api.metrics import MetricsMiddleware
from streams.api.state import ApiState
from streams.config import Settings, get_settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
VERSION = "0.1.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new application bound to ``settings`` (default: the process settings). Connections are opened by
    its lifespan (uvicorn runs it; in tests ``async with app.router.lifespan_context(app)``)."""
    settings = settings or get_settings()
    state = ApiState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        # Everything loaded so far (modules, schemas, compiled kernels: ~10^5 objects) lives as long as the
        # process: freeze it out of the cyclic collector, whose full collections would otherwise scan it
        # all and stall every request in flight for ~30 ms now and then.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="StockPulse Stream API",
        version=VERSION,
        description="Bars, signals, indicators and manual orders of the StockPulse pipeline, and a live "
        "WebSocket stream (`/ws/stream?symbols=A,B&timeframe=1m`). Every error is "
        '`{"error": "<what was wrong and how to fix it>"}`.',
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        default_response_class=RawJSONResponse,
    )
    app.state.api = state
    errors.install(app)
    openapi_doc.install(app)
    for module in (routes_history, routes_signals, routes_orders, routes_indicators, routes_ops, ws):
        app.include_router(module.router)

    app.mount("/static/wasm", StaticFiles(directory=settings.api.wasm_dir, check_dir=False), name="wasm")
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(errors.BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    return app
