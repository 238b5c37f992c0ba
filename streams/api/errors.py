"""One error shape for every failure: ``{"error": "<what was wrong and how to fix it>", ...}``.

* malformed input (path, query, header, body) -> 400 with ``errors``: one entry per problem, each with
  ``where``, ``problem``, ``fix`` (the body shape ``wasm/indicators.js`` expects from its fallback endpoint);
* an order that fails a risk check -> 422 (the order body, ``status: REJECTED`` and ``reason``);
* unknown route or method -> 404/405; a body over the size limit -> 413;
* a store or the broker not answering -> 503 naming it and what to check;
* anything else -> 500 with a reference to the server log (never a traceback in the response).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sinks.base import SinkError
from streams.api.jsonresp import json_response
from streams.api.validation import describe_errors

log = logging.getLogger("stockpulse.api")


TOO_LARGE = (
    "the request body is too large; send fewer values (at most 100000 per /api/indicators/compute call) or "
    "raise STOCKPULSE_API__MAX_BODY_BYTES"
)


class ApiError(Exception):
    """An error answered with ``status`` and ``{"error": message, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def bad_request(message: str, **extra: Any) -> ApiError:
    """A 400 whose message names the input and the fix."""
    return ApiError(400, message, **extra)


def unavailable(store: str, detail: str, hint: str) -> ApiError:
    """A 503 naming the store or broker that did not answer."""
    return ApiError(503, f"{store} is unavailable: {detail}; check: {hint}", store=store)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    return json_response({"error": message, **extra}, status, headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, **exc.extra)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = describe_errors(exc.errors())
    message = "; ".join(p["message"] for p in problems[:5])
    if len(problems) > 5:
        message += f"; and {len(problems) - 5} more problems (see errors)"
    return error_response(400, message or "invalid request", errors=problems)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    messages = {
        404: f"no such endpoint: {request.method} {request.url.path}; the endpoints are listed at /docs",
        405: f"{request.method} is not allowed on {request.url.path}; the methods are listed at /docs",
        413: TOO_LARGE,
    }
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    message = messages.get(exc.status_code, detail)
    if exc.status_code == 400 and "JSON decode error" in detail:
        message = "the request body is not valid JSON; send Content-Type: application/json with a JSON object"
    return error_response(exc.status_code, message, headers=dict(exc.headers or {}))


async def _sink_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SinkError)
    log.warning("store error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, f"{exc.store} is unavailable: {exc.detail}; check: {exc.hint}", store=exc.store
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    ref = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", ref, request.method, request.url.path)
    return error_response(
        500, f"internal error (reference {ref}); the server log has the details under this reference"
    )


class BodyLimitMiddleware:
    """Request bodies over ``max_bytes`` get the JSON 413: at once when ``Content-Length`` says so, else as
    soon as the streamed body passes the limit (an ``HTTPException`` from ``receive``, which FastAPI re-raises
    to the handlers above). Starlette's own limiter would answer in plain text."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await error_response(413, TOO_LARGE)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413)
            return message

        await self.app(scope, limited, send)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SinkError, _sink_error)
    app.add_exception_handler(Exception, _unexpected)
