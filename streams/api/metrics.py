"""Prometheus metrics of the API service, and the ASGI middleware that records every HTTP request.

Besides :data:`streams.metrics.CACHE_REQUESTS` (``stockpulse_cache_requests_total{result="hit"|"miss"}``,
counted by the chart endpoint), the API exposes:

* ``stockpulse_http_requests_total{method, route, status}``
* ``stockpulse_http_request_duration_seconds{method, route}`` (histogram, 0.25 ms .. 10 s)
* ``stockpulse_ws_clients``, ``stockpulse_ws_messages_total{type}``, ``stockpulse_ws_dropped_total``
* ``stockpulse_api_orders_total{status}``

``route`` is the route template (``/api/historical/chart-data/{symbol}``), never the raw path, so symbols do
not multiply the series. With several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` (``stockpulse api``
does) and ``/metrics`` adds up all workers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "stockpulse_http_requests", "HTTP requests answered by the API", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "stockpulse_http_request_duration_seconds",
    "Time from request to the end of the response body",
    ["method", "route"],
    buckets=(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
WS_CLIENTS = Gauge("stockpulse_ws_clients", "Connected WebSocket clients", multiprocess_mode="livesum")
WS_MESSAGES = Counter("stockpulse_ws_messages", "Messages queued for WebSocket clients", ["type"])
WS_DROPPED = Counter("stockpulse_ws_dropped", "Messages dropped because a WebSocket client fell behind")
API_ORDERS = Counter("stockpulse_api_orders", "Orders placed through the API", ["status"])


def render() -> tuple[bytes, str]:
    """The metrics text (all worker processes in multiprocess mode) and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status (pure ASGI: no body copy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or ("unmatched" if status == 404 else "other")
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - began)
