"""``WS /ws/stream?symbols=A,B&timeframe=1m``: a snapshot, then bars and signals as they arrive.

1. The query is checked (symbols as in the REST API, at most ``api.ws_max_symbols``; a stored timeframe).
   A bad query is answered with ``{"type": "error", "error": "..."}`` and close code 1008.
2. The client is subscribed to the stream hub *before* the snapshot is read, so nothing published in between
   is lost (a bar may then come twice: clients key bars by ``start_us``).
3. ``{"type": "snapshot", "timeframe", "symbols": {SYM: {"bars": [...], "source", "signal": {...} | null}}}``:
   the newest ``api.ws_snapshot_bars`` bars of each symbol (Redis, with the chart-data fallbacks) and its
   newest signal.
4. Then every ``bar`` (of the chosen timeframe) and ``signal`` message of the subscribed symbols (see
   :mod:`streams.api.stream_hub`). Messages sent by the client are read and ignored (``{"type": "ping"}`` is
   answered with ``{"type": "pong"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from sinks.base import SinkError
from streams.api.errors import ApiError
from streams.api.jsonresp import dumps
from streams.api.metrics import WS_CLIENTS
from streams.api.state import ApiState
from streams.api.stream_hub import SIGNAL_FIELDS, Subscriber
from streams.api.validation import check_timeframe, parse_symbols

router = APIRouter()


def _query(ws: WebSocket, state: ApiState) -> tuple[list[str], str]:
    """(symbols, timeframe) from the query string; ValueError with the fix."""
    symbols = parse_symbols(ws.query_params.get("symbols"), state.settings.api.ws_max_symbols)
    if not symbols:
        raise ValueError("symbols: give at least one symbol, e.g. /ws/stream?symbols=BTCUSDT,EURUSD")
    timeframe = check_timeframe(ws.query_params.get("timeframe", "1m"), state.settings.topics.timeframes)
    return symbols, timeframe


async def _snapshot(state: ApiState, symbols: list[str], timeframe: str) -> dict[str, Any]:
    n = state.settings.api.ws_snapshot_bars
    out: dict[str, Any] = {}
    signals: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(SinkError, TimeoutError):
        redis = await state.backends.redis()
        rows = await asyncio.wait_for(redis.latest_signals(symbols), state.settings.api.store_timeout_s)
        signals = {r["symbol"]: {k: r.get(k) for k in SIGNAL_FIELDS} for r in rows}
    for symbol in symbols:
        entry: dict[str, Any] = {"bars": [], "source": None, "signal": signals.get(symbol)}
        if n:
            try:
                result = await state.history.bars(symbol, timeframe, n)
                entry["bars"], entry["source"] = result.bars, result.source
            except ApiError as exc:
                entry["error"] = exc.message
        out[symbol] = entry
    return {"type": "snapshot", "timeframe": timeframe, "symbols": out}


async def _pump(ws: WebSocket, sub: Subscriber) -> None:
    while True:
        await ws.send_text(await sub.queue.get())


async def _listen(ws: WebSocket) -> None:
    while True:
        text = await ws.receive_text()
        with contextlib.suppress(ValueError, AttributeError):
            if json.loads(text).get("type") == "ping":
                await ws.send_text('{"type":"pong"}')


@router.websocket("/ws/stream")
async def stream(ws: WebSocket) -> None:
    state: ApiState = ws.app.state.api
    await ws.accept()
    try:
        symbols, timeframe = _query(ws, state)
    except ValueError as exc:
        await ws.send_text(dumps({"type": "error", "error": str(exc)}).decode())
        await ws.close(code=1008, reason=str(exc)[:120])
        return
    sub = state.hub.subscribe(symbols, timeframe, state.settings.api.ws_queue)
    WS_CLIENTS.inc()
    tasks: list[asyncio.Task[None]] = []
    try:
        await ws.send_text(dumps(await _snapshot(state, symbols, timeframe)).decode())
        tasks = [asyncio.create_task(_pump(ws, sub)), asyncio.create_task(_listen(ws))]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            err = task.exception()
            if err is not None and not isinstance(err, WebSocketDisconnect | RuntimeError | OSError):
                raise err
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        state.hub.unsubscribe(sub)
        WS_CLIENTS.dec()
