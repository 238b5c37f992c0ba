"""Locust load test of the API: the desk mix chart data 3 : signals 2 : orders 1.

Each simulated user watches a few symbols and, with a think time between requests, loads chart data
(``GET /api/historical/chart-data/{symbol}``, 100/300/500 bars), polls the current signals of its watchlist
(``GET /api/signals/current?symbols=...``) and places a small manual order (``POST /api/orders`` with an
``Idempotency-Key``; 201 accepted and 422 rejected by the risk checks are both answers, not failures).

Run by ``bench/api.py`` (which seeds a namespace and starts the API), or by hand against a running API::

    STOCKPULSE_LOAD_SYMBOLS=BTC-PERP,ETH-PERP locust -f tests/load/locustfile.py --headless \\
        -u 100 -r 50 -t 30s --host http://127.0.0.1:8080

Environment: ``STOCKPULSE_LOAD_SYMBOLS`` (comma-separated; default: what ``GET /api/symbols`` lists),
``STOCKPULSE_LOAD_WAIT`` (think time range in seconds, default ``0.5,1.5``), ``STOCKPULSE_LOAD_OUT`` (a file:
every response time after the ramp-up and ``STOCKPULSE_LOAD_WARMUP`` seconds more, default 0, is written
there as JSON, in ms, by endpoint, when Locust quits).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from locust import FastHttpUser, between, events, task

LIMITS = (100, 300, 500)
WATCHLIST = 5
_wait = [float(x) for x in os.environ.get("STOCKPULSE_LOAD_WAIT", "0.5,1.5").split(",")]
_warmup = float(os.environ.get("STOCKPULSE_LOAD_WARMUP", "0"))
_symbols: list[str] = [s for s in os.environ.get("STOCKPULSE_LOAD_SYMBOLS", "").split(",") if s]
_samples: dict[str, list[float]] = defaultdict(list)
_errors: dict[str, int] = defaultdict(int)
_error_samples: dict[str, list[str]] = defaultdict(list)
_slow: list[tuple[float, str, float]] = []
_window: dict[str, float] = {}


@events.test_start.add_listener
def _symbols_from_api(environment: Any, **_: Any) -> None:
    if _symbols:
        return
    import urllib.request

    with urllib.request.urlopen(f"{environment.host}/api/symbols", timeout=10) as resp:
        _symbols.extend(json.load(resp)["symbols"])
    if not _symbols:
        raise RuntimeError("GET /api/symbols lists no symbol: seed data first or set STOCKPULSE_LOAD_SYMBOLS")


@events.spawning_complete.add_listener
def _start_recording(user_count: int, **_: Any) -> None:
    _samples.clear()
    _errors.clear()
    _error_samples.clear()
    _slow.clear()
    _window["start"] = time.time() + _warmup


@events.request.add_listener
def _record(name: str, response_time: float, exception: Any, response: Any = None, **_: Any) -> None:
    if "start" not in _window or time.time() < _window["start"]:
        return
    _samples[name].append(response_time)
    _window["last"] = time.time()
    if response_time > 500 and len(_slow) < 200:
        _slow.append((round(time.time() - _window["start"], 3), name, round(response_time, 1)))
    if exception is not None:
        _errors[name] += 1
        if len(_error_samples[name]) < 5:
            _error_samples[name].append(f"{type(exception).__name__}: {str(exception)[:200]}")


@events.quitting.add_listener
def _dump(environment: Any, **_: Any) -> None:
    out = os.environ.get("STOCKPULSE_LOAD_OUT")
    if not out:
        return
    start = _window.get("start", time.time())
    report = {
        "seconds": _window.get("last", start) - start,
        "samples_ms": _samples,
        "errors": _errors,
        "error_samples": _error_samples,
        "slow": _slow,
    }
    with open(out, "w") as f:
        json.dump(report, f)


class DeskUser(FastHttpUser):
    """A trader with a watchlist: charts, signals and the occasional manual order."""

    wait_time = between(_wait[0], _wait[-1])

    def on_start(self) -> None:
        self.watchlist = random.sample(_symbols, min(WATCHLIST, len(_symbols)))

    @task(3)
    def chart_data(self) -> None:
        symbol = quote(random.choice(self.watchlist), safe="")
        limit = random.choice(LIMITS)
        self.client.get(f"/api/historical/chart-data/{symbol}?timeframe=1m&limit={limit}", name="chart-data")

    @task(2)
    def signals(self) -> None:
        symbols = quote(",".join(self.watchlist), safe=",")
        self.client.get(f"/api/signals/current?symbols={symbols}", name="signals")

    @task(1)
    def order(self) -> None:
        body = {
            "symbol": random.choice(self.watchlist),
            "side": random.choice(("BUY", "SELL")),
            "quantity": round(random.uniform(0.01, 0.5), 4),
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            "/api/orders", json=body, headers=headers, name="orders", catch_response=True
        ) as resp:
            if resp.status_code in (201, 422):
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
