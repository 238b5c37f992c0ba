"""wasm/indicators.js + indicators.wasm in headless Chromium, compared with processors.indicators bit for bit.

A local ``http.server`` on 127.0.0.1 serves ``wasm/`` (``.wasm`` as ``application/wasm``), the real closes as
JSON, and the fallback endpoint ``POST /api/indicators/compute`` computed by processors.indicators (the
contract at the top of indicators.js). Debian's ``chromium --dump-dom`` runs ``wasm/test.html``, which writes
the SHA-256 of every output's little-endian float64 bytes into the page; NaNs are hashed as
0x7ff8000000000000 on both sides. Needs no stack service, only ``/usr/bin/chromium``.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.wasm_runner import IndicatorServer, reference, sha256_le

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WASM_DIR = ROOT / "wasm"
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CHROMIUM = Path("/usr/bin/chromium")
N_CLOSES = 5_000

CALLS: list[dict[str, Any]] = [
    {"indicator": "ema", "params": [12]},
    {"indicator": "rsi", "params": [14]},
    {"indicator": "stochrsi", "params": [14, 14, 3, 3]},
    {"indicator": "macd", "params": [12, 26, 9]},
    {"indicator": "bbands", "params": [20, 2.0]},
    {"indicator": "bbands", "params": [50, 2.5]},
]
ERRORS: list[dict[str, Any]] = [
    {"indicator": "ema", "params": [0], "nanAt": None},
    {"indicator": "macd", "params": [26, 12, 9], "nanAt": None},
    {"indicator": "rsi", "params": [14], "nanAt": 7},
]


def _closes(file: str) -> list[float]:
    path = DATA_DIR / file
    if not path.exists():
        pytest.skip(
            f"real market data not found at {path} (expected ../shared/data next to the project root)"
        )
    import pandas as pd

    return pd.read_csv(path)["close"].to_numpy(dtype=np.float64)[-N_CLOSES:].tolist()


@pytest.fixture(scope="module")
def cases() -> dict[str, Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"headless Chromium not found at {CHROMIUM}: install with: apt-get install -y chromium")
    return {
        "cases": [
            {"name": "ftx_btc-perp", "values": _closes("ftx_btc-perp_2022-01_1m.csv"), "calls": CALLS},
            {"name": "fxcm_gbpusd", "values": _closes("fxcm_gbpusd_2012_m1_bid.csv"), "calls": CALLS},
        ],
        "errors": [{**e, "values": list(range(100, 140))} for e in ERRORS],
    }


def run_page(server: IndicatorServer, query: str) -> dict[str, Any]:
    """Load test.html in headless Chromium and return the JSON report it writes into the DOM."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"{server.base_url}/test.html?{query}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    dom = proc.stdout
    status = re.search(r'<pre id="status">(.*?)</pre>', dom, re.S)
    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert status is not None, f"chromium printed no page (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert html.unescape(status.group(1)) == "done", f"test.html: {html.unescape(status.group(1))}"
    assert result is not None
    report: dict[str, Any] = json.loads(html.unescape(result.group(1)))
    return report


def check_report(report: dict[str, Any], cases: dict[str, Any], path: str) -> None:
    """Every call used ``path`` and produced exactly the processors.indicators bytes; errors match."""
    by_name = {c["name"]: np.asarray(c["values"], dtype=np.float64) for c in cases["cases"]}
    assert len(report["calls"]) == sum(len(c["calls"]) for c in cases["cases"])
    for call in report["calls"]:
        what = f"{call['name']} {call['indicator']}{tuple(call['params'])}"
        assert call["path"] == path and call["lastPath"] == path, what
        ref = reference(call["indicator"], by_name[call["name"]], call["params"])
        assert call["lengths"] == [N_CLOSES] * len(ref), what
        assert call["sha256"] == [sha256_le(a) for a in ref], f"{what}: browser output differs from Python"
    msgs = {(e["indicator"], tuple(e["params"]), e["nanAt"]): e["message"] for e in report["errors"]}
    assert msgs[("ema", (0,), None)] == "period must be an integer in [1, 100000], got 0"
    assert msgs[("macd", (26, 12, 9), None)] == "fast must be smaller than slow, got fast=26, slow=12"
    assert msgs[("rsi", (14,), 7)] == (
        "close[7] is NaN: inputs must be finite numbers; drop or fill NaN/inf values before calling"
    )


def test_wasm_in_chromium_is_bit_exact(cases: dict[str, Any]) -> None:
    with IndicatorServer(WASM_DIR, {"/cases.json": cases}) as server:
        report = run_page(server, "data=/cases.json")
    assert report["webassembly"] == "object" and report["loadPath"] == "wasm", report["loadError"]
    check_report(report, cases, "wasm")
    assert ("POST", "/api/indicators/compute") not in server.requests


def test_wrong_wasm_mime_type_falls_back_to_instantiate(cases: dict[str, Any]) -> None:
    """instantiateStreaming rejects application/octet-stream: the loader refetches and instantiates bytes."""
    with IndicatorServer(WASM_DIR, {"/cases.json": cases}, wasm_mime="application/octet-stream") as server:
        report = run_page(server, "data=/cases.json")
    assert report["loadPath"] == "wasm", report["loadError"]
    assert server.requests.count(("GET", "/indicators.wasm")) == 2
    check_report(report, cases, "wasm")


def test_without_webassembly_the_server_computes_the_same_values(cases: dict[str, Any]) -> None:
    with IndicatorServer(WASM_DIR, {"/cases.json": cases}) as server:
        report = run_page(server, "data=/cases.json&wasm=off")
    assert report["webassembly"] == "undefined" and report["loadPath"] == "server"
    check_report(report, cases, "server")
    posts = server.requests.count(("POST", "/api/indicators/compute"))
    assert posts == len(report["calls"])  # argument errors are caught in the page, before any request
    assert ("GET", "/indicators.wasm") not in server.requests


def test_missing_wasm_file_falls_back_to_the_server(cases: dict[str, Any]) -> None:
    with IndicatorServer(WASM_DIR, {"/cases.json": cases}) as server:
        report = run_page(server, "data=/cases.json&wasm_url=/missing.wasm")
    assert report["webassembly"] == "object" and report["loadPath"] == "server"
    assert "404" in report["loadError"]
    check_report(report, cases, "server")
