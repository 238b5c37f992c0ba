"""The dashboard at ``/`` in headless Chromium, against the API on the real local stack with real data.

Debian's ``/usr/bin/chromium`` runs headless with remote debugging on; the test drives it over the DevTools
protocol (a WebSocket, :class:`Browser`): it opens the page, waits until the page reports that it is live,
reads what the page shows (``window.stockpulseDashboard.snapshot()``), compares the indicators the page
computed with the server's ``GET /api/indicators``, produces the next real bar and a signal to the run's
topics and waits for the page to draw them, and takes a screenshot (under ``.stack/screenshots/``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from websockets.sync.client import ClientConnection, connect

from bench.api_data import ApiServer, DataMissing, Placement, ftx_bars, seeded, signal_for
from schemas.serde import AvroSerde
from sinks.redis_state import RedisHotState
from streams.config import Settings
from streams.stores import redis_config

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SYMBOL = "BTC-PERP"
LAYOUT = {SYMBOL: Placement(400, redis=400, signal=True), "ETH-CH": Placement(120, redis=120, offset=5_000)}
SNAPSHOT = 300
INDICATORS = {
    "ema": ({"indicator": "ema", "period": 12}, ("ema",)),
    "rsi": ({"indicator": "rsi", "period": 14}, ("rsi",)),
    "stochrsi": ({"indicator": "stochrsi", "period": 14, "stoch_period": 14, "k": 3, "d": 3}, ("k", "d")),
}


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: str) -> None:
        cmd = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
            "--window-size=1280,860",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"chromium did not start its DevTools endpoint:\n{err}")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20)
        )
        self.ids = itertools.count(1)
        self.errors: list[str] = []
        self.call("Runtime.enable")
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=860, deviceScaleFactor=1, mobile=False
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("method") == "Runtime.exceptionThrown":
                self.errors.append(
                    msg["params"]["exceptionDetails"].get("exception", {}).get("description", "")
                )
            elif msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] == "error":
                self.errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in msg["params"]["args"])
                )
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:  # the page is still being replaced (navigation)
                value = None
            if value:
                return value
            time.sleep(0.1)
        state = self.eval("JSON.stringify(Object.assign({}, document.documentElement.dataset))")
        raise AssertionError(f"timed out waiting for {expression}; page: {state}; errors: {self.errors}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def env(stack_settings: Settings) -> Iterator[tuple[Settings, dict[str, list[dict[str, Any]]], ApiServer]]:
    if not CHROMIUM.exists():
        pytest.skip(f"headless Chromium not found at {CHROMIUM}: install it with apt-get install -y chromium")
    base = stack_settings.model_copy(
        update={"api": stack_settings.api.model_copy(update={"ws_snapshot_bars": SNAPSHOT})}
    )
    try:
        with seeded(base, "apidash", LAYOUT) as (settings, data), ApiServer(settings) as server:
            yield settings, data, server
    except DataMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def browser() -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="chromium-dashboard-")
    b = Browser(profile)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


def _live(browser: Browser, bars: int) -> dict[str, Any]:
    """Wait until the page is live and shows ``bars`` bars with indicators computed over them."""
    browser.wait_for(
        "(() => { const d = document.documentElement.dataset;"
        f" return d.status === 'live' && d.bars === '{bars}' && window.stockpulseDashboard"
        f" && window.stockpulseDashboard.snapshot().ema.length === {bars}; }})()"
    )
    snap: dict[str, Any] = browser.eval("window.stockpulseDashboard.snapshot()")
    return snap


def _server_values(base_url: str, limit: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for params, outputs in INDICATORS.values():
            resp = client.get(f"/api/indicators/{SYMBOL}", params={**params, "limit": limit})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            out["start_us"], out["close"] = body["start_us"], body["close"]
            out.update({name: body["values"][name] for name in outputs})
    return out


def _assert_page_equals_server(snap: dict[str, Any], server: dict[str, Any]) -> None:
    assert snap["start_us"] == server["start_us"] and snap["close"] == server["close"]
    for name in ("ema", "rsi", "k", "d"):
        assert snap[name] == server[name], f"{name}: the page's values differ from GET /api/indicators"
    assert sum(v is not None for v in snap["k"]) > 200, "the indicators must have warmed up"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_dashboard_computes_the_servers_indicators_with_wasm_and_draws_live_bars(
    env: tuple[Settings, dict[str, list[dict[str, Any]]], ApiServer], browser: Browser
) -> None:
    settings, data, server = env
    index = httpx.get(f"{server.base_url}/", timeout=10)
    assert index.status_code == 200 and "<canvas" in index.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", index.text), "no external resources (offline)"

    browser.call("Page.navigate", url=f"{server.base_url}/?symbol={SYMBOL}&timeframe=1m")
    snap = _live(browser, SNAPSHOT)
    assert browser.eval("document.documentElement.dataset.indicatorPath") == "wasm"
    assert snap["path"] == "wasm" and snap["symbol"] == SYMBOL and snap["error"] is None
    assert browser.eval("window.stockpulseDashboard.snapshot().signals.length") == 1
    _assert_page_equals_server(snap, _server_values(server.base_url, SNAPSHOT))
    assert snap["legend"][0] == f"{snap['ema'][-1]:.2f}", "the legend shows the newest EMA"
    painted = browser.eval("window.stockpulseDashboard.paintedPixels()")
    assert painted["up"] > 500 and painted["down"] > 500 and painted["ema"] > 200, painted

    # The next real bar and its signal arrive on the topics (as the price and signal services publish them).
    new = ftx_bars(settings.data_dir, SYMBOL, 401)[-1]
    sig = signal_for(new, data[SYMBOL][-1]["close"])
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 1})
    producer.produce(
        settings.topics.bars("1m"), key=SYMBOL, value=AvroSerde.for_record("BarBatch").encode({"bars": [new]})
    )
    producer.produce(settings.topics.signals, key=SYMBOL, value=AvroSerde.for_record("Signal").encode(sig))
    assert producer.flush(10) == 0
    snap = _live(browser, SNAPSHOT + 1)
    assert snap["start_us"][-1] == new["start_us"] and snap["close"][-1] == new["close"]
    browser.wait_for("window.stockpulseDashboard.snapshot().signals.length === 2")

    async def write_bar() -> None:  # what the sink service does with the bar: then the server has it too
        redis = await RedisHotState(redis_config(settings)).open()
        try:
            await redis.write_bars([new])
        finally:
            await redis.close()

    asyncio.run(write_bar())
    _assert_page_equals_server(snap, _server_values(server.base_url, SNAPSHOT + 1))

    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert _png_size(shot) == (1280, 860) and len(shot) > 20_000
    out = settings.stack.dir / "screenshots" / "dashboard.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(shot)
    assert browser.errors == [], browser.errors


def test_without_webassembly_the_page_uses_the_server_and_shows_the_same_values(
    env: tuple[Settings, dict[str, list[dict[str, Any]]], ApiServer], browser: Browser
) -> None:
    server = env[2]
    browser.call("Page.navigate", url=f"{server.base_url}/?symbol={SYMBOL}&wasm=off")
    snap = _live(browser, SNAPSHOT)
    assert snap["path"] == "server"
    assert browser.eval("document.documentElement.dataset.indicatorPath") == "server"
    _assert_page_equals_server(snap, _server_values(server.base_url, SNAPSHOT))


def test_an_unknown_symbol_is_reported_on_the_page(
    env: tuple[Settings, dict[str, list[dict[str, Any]]], ApiServer], browser: Browser
) -> None:
    server = env[2]
    browser.call("Page.navigate", url=f"{server.base_url}/?symbol=NOPE-1")
    browser.wait_for("document.documentElement.dataset.status === 'live'")
    message = browser.wait_for("document.getElementById('error').textContent")
    assert "no 1m bars for symbol 'NOPE-1'" in message
    options = browser.eval("Array.from(document.querySelectorAll('#symbol option'), (o) => o.value)")
    assert options[0] == "NOPE-1" and {SYMBOL, "ETH-CH"} <= set(options)
