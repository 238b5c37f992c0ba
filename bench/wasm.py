"""WASM indicator benchmark: indicators.wasm vs processors.indicators (numba) vs TA-Lib, and chart updates.

Input: the real FTX BTC-PERP 1-minute closes (../shared/data), tiled to 100k and 1M points exactly as in
``bench/indicators.py`` (each copy rescaled to continue from the previous copy's last close).

* batch, per indicator and size, in one process, calls interleaved round-robin (median of ``repeats``):
  ``wasm`` = bench/wasm_runner.py over wasmtime (copy in, compute, copy out, reset -- what a caller
  pays), ``wasm_call`` = the export alone on data already in linear memory, ``numba`` = processors.indicators,
  ``talib`` = TA-Lib (StochRSI: ``RSI`` then ``STOCH``, the documented equivalent), and ``v8`` = the same
  module through ``wasm/indicators.js`` in Node's V8 (the browser's engine; includes the JS copies and the
  Promise), when ``node`` is installed.
* chart update: when a bar arrives the chart recomputes the five indicators over its window of ``WINDOW``
  closes. In-process WASM (wasmtime and V8) vs the server path: five ``POST /api/indicators/compute``
  round trips (the fallback contract of indicators.js) to a local ``http.server`` on 127.0.0.1 that computes
  with processors.indicators -- a stand-in for the API service, which does not exist yet -- over one
  keep-alive connection; plus the floor of any server design, a localhost round trip fetching a tiny
  precomputed JSON. Loopback has ~no network latency, so real deployments add their RTT to both server rows.
  The batch ABI has no incremental state: the WASM side recomputes the whole window (an O(1) tail update would
  need an incremental ABI, not built).

``run(quick=True)`` does 100k points only and fewer repeats. Results go to ``bench/results/wasm.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.indicators import DATA, load_bars
from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
WASM_DIR = ROOT / "wasm"
F64 = npt.NDArray[np.float64]

WINDOW = 5_000
#: (label, indicator, params), default parameters of the charts.
CASES: list[tuple[str, str, list[Any]]] = [
    ("ema(12)", "ema", [12]),
    ("rsi(14)", "rsi", [14]),
    ("stochrsi(14,14,3,3)", "stochrsi", [14, 14, 3, 3]),
    ("macd(12,26,9)", "macd", [12, 26, 9]),
    ("bbands(20,2)", "bbands", [20, 2.0]),
]

NODE_SCRIPT = r"""
import { readFileSync } from 'node:fs';
const [modUrl, wasmUrl, specPath] = process.argv.slice(2);
const spec = JSON.parse(readFileSync(specPath, 'utf8'));
const { load } = await import(modUrl);
const ind = await load(wasmUrl);
if (ind.path !== 'wasm') throw new Error(`wasm did not load: ${ind.loadError}`);
const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const out = { batch: {}, chart_update_ms: null };
for (const [size, file] of Object.entries(spec.series)) {
  const b = readFileSync(file);
  const x = new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8).slice();
  out.batch[size] = {};
  for (const [label, name, params] of spec.cases) {
    for (let i = 0; i < 2; i++) await ind[name](x, ...params);  // tier-up warm-up
    const t = [];
    for (let i = 0; i < spec.repeats; i++) {
      const t0 = performance.now(); await ind[name](x, ...params); t.push(performance.now() - t0);
    }
    out.batch[size][label] = median(t);
  }
}
const b = readFileSync(spec.window);
const w = new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8).slice();
const update = async () => { for (const [, name, params] of spec.cases) await ind[name](w, ...params); };
for (let i = 0; i < 20; i++) await update();
const t = [];
for (let i = 0; i < spec.update_repeats; i++) {
  const t0 = performance.now(); await update(); t.push(performance.now() - t0);
}
out.chart_update_ms = median(t);
console.log(JSON.stringify(out));
"""


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, interleaved round-robin after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _talib_fns(x: F64) -> dict[str, Callable[[], object]]:
    import talib

    sma = talib.MA_Type.SMA

    def stochrsi() -> object:
        s = talib.RSI(x, 14)[14:]
        return talib.STOCH(
            s, s, s, fastk_period=14, slowk_period=3, slowk_matype=sma, slowd_period=3, slowd_matype=sma
        )

    return {
        "ema(12)": lambda: talib.EMA(x, 12),
        "rsi(14)": lambda: talib.RSI(x, 14),
        "stochrsi(14,14,3,3)": stochrsi,
        "macd(12,26,9)": lambda: talib.MACD(x, 12, 26, 9),
        "bbands(20,2)": lambda: talib.BBANDS(x, 20, 2.0, 2.0, sma),
    }


def bench_batch(series: dict[int, F64], repeats: dict[int, int]) -> list[dict[str, Any]]:
    from bench.wasm_runner import WasmIndicators

    w = WasmIndicators()
    rows: list[dict[str, Any]] = []
    for n, x in series.items():
        talib_fns = _talib_fns(x)
        for label, name, params in CASES:
            t = _time_case(w, name, params, x, talib_fns[label], repeats[n])
            rows.append(
                {
                    "indicator": label,
                    "points": n,
                    **{f"{k}_ms": round(v * 1e3, 3) for k, v in t.items()},
                    "wasm_vs_numba": round(t["wasm"] / t["numba"], 2),
                    "wasm_vs_talib": round(t["wasm"] / t["talib"], 2),
                }
            )
    return rows


def _time_case(
    w: Any, name: str, params: list[Any], x: F64, talib_fn: Callable[[], object], repeats: int
) -> dict[str, float]:
    """Seconds per call of one indicator: wasm wrapper, numba and TA-Lib interleaved, then the bare export."""
    from bench.wasm_runner import assert_bit_equal, reference
    from processors import indicators as ind

    n = x.shape[0]
    ref = reference(name, x, params)
    ours = getattr(w, name)(x, *params)
    for a, b in zip(ours if isinstance(ours, tuple) else (ours,), ref, strict=True):
        assert_bit_equal(a, b, f"{name}{tuple(params)} on {n} points")  # only identical results are timed
    wasm_fn, numba_fn = getattr(w, name), getattr(ind, name)
    t = _interleaved(
        {"wasm": lambda: wasm_fn(x, *params), "numba": lambda: numba_fn(x, *params), "talib": talib_fn},
        repeats,
    )
    # The export alone, on input and outputs already in linear memory.
    src = w.put(x)
    outs = [w.alloc(8 * n) for _ in ref]
    t.update(_interleaved({"wasm_call": lambda: w.call(name, src, n, *params, *outs)}, repeats))
    w.reset()
    return t


def bench_chart_update(window: F64, repeats: int) -> dict[str, Any]:
    """Recompute the five indicators over the chart window: in-process WASM vs HTTP round trips."""
    from bench.wasm_runner import IndicatorServer, WasmIndicators

    w = WasmIndicators()
    values = window.tolist()
    bodies = [
        json.dumps(
            {"indicator": name, "values": values, "params": dict(zip(_names(name), params, strict=True))}
        )
        for _, name, params in CASES
    ]
    with IndicatorServer(WASM_DIR, {"/api/indicators/latest": {"ema": 1.0, "rsi": 50.0}}) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def wasm_update() -> None:
            for _, name, params in CASES:
                getattr(w, name)(window, *params)

        def server_compute() -> None:
            for body in bodies:
                conn.request("POST", "/api/indicators/compute", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = json.loads(resp.read())
                if resp.status != 200:
                    raise RuntimeError(f"compute endpoint answered {resp.status}: {data}")

        def server_floor() -> None:
            conn.request("GET", "/api/indicators/latest")
            resp = conn.getresponse()
            json.loads(resp.read())

        for _ in range(5):
            wasm_update()
            server_compute()
            server_floor()
        t = _interleaved(
            {"wasm": wasm_update, "server_compute": server_compute, "server_floor": server_floor}, repeats
        )
        conn.close()
    return {
        "window": int(window.shape[0]),
        "wasm_ms": round(t["wasm"] * 1e3, 3),
        "server_compute_ms": round(t["server_compute"] * 1e3, 3),
        "server_floor_ms": round(t["server_floor"] * 1e3, 3),
        "speedup_vs_server_compute": round(t["server_compute"] / t["wasm"], 1),
        "speedup_vs_server_floor": round(t["server_floor"] / t["wasm"], 1),
    }


def _names(name: str) -> tuple[str, ...]:
    from bench.wasm_runner import ENDPOINT_SPEC

    return ENDPOINT_SPEC[name][0]


def bench_v8(series: dict[int, F64], window: F64, repeats: int, update_repeats: int) -> dict[str, Any] | None:
    """The same module through wasm/indicators.js in Node's V8; None when node is not installed."""
    node = shutil.which("node")
    if node is None:
        return None
    from bench.wasm_runner import IndicatorServer

    with tempfile.TemporaryDirectory(prefix="bench-wasm-") as tmp, IndicatorServer(WASM_DIR) as server:
        files = {}
        for n, x in series.items():
            files[str(n)] = str(Path(tmp) / f"x{n}.f64")
            x.astype("<f8").tofile(files[str(n)])
        wfile = str(Path(tmp) / "window.f64")
        window.astype("<f8").tofile(wfile)
        spec = {
            "series": files,
            "window": wfile,
            "cases": CASES,
            "repeats": repeats,
            "update_repeats": update_repeats,
        }
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        script = Path(tmp) / "bench.mjs"
        script.write_text(NODE_SCRIPT)
        proc = subprocess.run(
            [
                node,
                str(script),
                (WASM_DIR / "indicators.js").as_uri(),
                f"{server.base_url}/indicators.wasm",
                str(Path(tmp) / "spec.json"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"node benchmark failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    out["node"] = version
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns (and writes to bench/results/wasm.json) the results."""
    sizes = [100_000] if quick else [100_000, 1_000_000]
    close = load_bars(max(sizes))["close"]
    series = {n: np.ascontiguousarray(close[:n]) for n in sizes}
    repeats = {100_000: 7 if quick else 25, 1_000_000: 11}
    window = np.ascontiguousarray(close[-WINDOW:])
    batch = bench_batch(series, repeats)
    update = bench_chart_update(window, repeats=50 if quick else 300)
    v8 = bench_v8(series, window, repeats=5 if quick else 11, update_repeats=100 if quick else 500)
    if v8 is not None:
        for row in batch:
            row["v8_ms"] = round(v8["batch"][str(row["points"])][row["indicator"]], 3)
        update["v8_ms"] = round(v8["chart_update_ms"], 3)
        update["speedup_v8_vs_server_compute"] = round(update["server_compute_ms"] / update["v8_ms"], 1)
        update["speedup_v8_vs_server_floor"] = round(update["server_floor_ms"] / update["v8_ms"], 1)
    info = machine_info(packages=("numpy", "numba", "TA-Lib", "wasmtime", "ziglang"))
    info["node"] = v8["node"] if v8 else None
    result: dict[str, Any] = {
        "benchmark": "wasm",
        "quick": quick,
        "input": (
            f"{DATA.name}: real FTX BTC-PERP 1-minute closes (45,031) tiled to {max(sizes):,} points, "
            "each copy rescaled to continue from the previous copy's last close; the first N points per "
            f"size; the chart window is the last {WINDOW:,}"
        ),
        "batch": batch,
        "chart_update": update,
        "notes": [
            "wasm = wasmtime via bench/wasm_runner.py incl. copies; wasm_call = the export alone",
            "v8 = wasm/indicators.js in Node's V8 (the browser's engine), incl. JS copies and the Promise",
            "server rows: local http.server (ThreadingHTTPServer, processors.indicators) on 127.0.0.1 as a "
            "stand-in for the API service, keep-alive, no network latency",
            "every wasm output was checked bit-identical to processors.indicators before timing",
        ],
        "machine": info,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("wasm.quick.json" if quick else "wasm.json")).write_text(json.dumps(result, indent=2) + "\n")
    return result


def markdown(result: dict[str, Any]) -> str:
    """The results as markdown tables."""
    has_v8 = any("v8_ms" in row for row in result["batch"])
    lines = [
        f"Input: {result['input']}.",
        "",
        "| indicator | points | WASM wasmtime (ms) | export only (ms) | "
        + ("WASM V8 (ms) | " if has_v8 else "")
        + "numba (ms) | TA-Lib (ms) | WASM / numba | WASM / TA-Lib |",
        "|---|---:|---:|---:|" + ("---:|" if has_v8 else "") + "---:|---:|---:|---:|",
    ]
    for r in result["batch"]:
        v8 = f"{r['v8_ms']} | " if has_v8 else ""
        lines.append(
            f"| {r['indicator']} | {r['points']:,} | {r['wasm_ms']} | {r['wasm_call_ms']} | {v8}"
            f"{r['numba_ms']} | {r['talib_ms']} | {r['wasm_vs_numba']} | {r['wasm_vs_talib']} |"
        )
    u = result["chart_update"]
    lines += [
        "",
        f"| chart update: 5 indicators over the last {u['window']:,} closes | ms | server / this |",
        "|---|---:|---:|",
        f"| WASM in process (wasmtime) | {u['wasm_ms']} | {u['speedup_vs_server_compute']}× / "
        f"{u['speedup_vs_server_floor']}× |",
    ]
    if "v8_ms" in u:
        lines.append(
            f"| WASM in process (V8, indicators.js) | {u['v8_ms']} | {u['speedup_v8_vs_server_compute']}× / "
            f"{u['speedup_v8_vs_server_floor']}× |"
        )
    lines += [
        f"| server: 5 × POST /api/indicators/compute (local http.server) | {u['server_compute_ms']} | |",
        f"| server floor: 1 localhost GET of a tiny precomputed JSON | {u['server_floor_ms']} | |",
        "",
        "(server / this: vs the compute round trips / vs the round-trip floor; loopback, so no network RTT.)",
    ]
    m = result["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + (f", node {m['node']}" if m.get("node") else "")
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100k points only, fewer repeats")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
