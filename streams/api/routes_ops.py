"""``GET /healthz`` (stores and broker, each within ``api.health_timeout_s``) and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import PlainTextResponse, Response

from sinks.base import Health
from streams.api.backends import STORES
from streams.api.jsonresp import json_response
from streams.api.metrics import render
from streams.api.models import HealthOut
from streams.api.order_producer import BrokerUnavailable
from streams.api.state import ApiState, get_state

router = APIRouter(tags=["operations"])


async def _broker(state: ApiState, timeout_s: float) -> Health:
    began = time.perf_counter()
    try:
        detail = await state.producer.ping(timeout_s)
    except BrokerUnavailable as exc:
        return Health("broker", False, str(exc), (time.perf_counter() - began) * 1e3)
    hub = state.hub.status
    detail += f"; stream: {hub.assigned_partitions} partitions assigned, {state.hub.clients} clients"
    if hub.missing_topics:
        detail += f", waiting for topics {', '.join(hub.missing_topics)} (stockpulse topics create)"
    return Health("broker", True, detail, (time.perf_counter() - began) * 1e3)


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses={
        503: {"model": HealthOut, "description": "at least one dependency is down; `down` names them"}
    },
    summary="Redis, ClickHouse, PostgreSQL and the broker, checked concurrently",
)
async def healthz(state: Annotated[ApiState, Depends(get_state)]) -> Response:
    """200 when every dependency answers within ``STOCKPULSE_API__HEALTH_TIMEOUT_S``, else 503."""
    timeout = state.settings.api.health_timeout_s
    reports = await asyncio.gather(
        *(state.backends.health(store, timeout) for store in STORES), _broker(state, timeout)
    )
    checks = {
        r.store: {"ok": r.ok, "detail": r.detail, "latency_ms": round(r.latency_ms, 3)} for r in reports
    }
    down = [r.store for r in reports if not r.ok]
    body = {"status": "down" if down else "ok", "down": down, "checks": checks}
    return json_response(body, 503 if down else 200, {"Cache-Control": "no-store"})


@router.get(
    "/metrics", summary="Prometheus metrics (text exposition format)", response_class=PlainTextResponse
)
async def metrics() -> Response:
    text, content_type = render()
    return Response(text, media_type=content_type)
