"""Indicator benchmark: batch kernels vs TA-Lib, IndicatorSet.update vs talipp, import and compile cost.

Input: the real FTX BTC-PERP 1-minute bars (../shared/data), tiled to 1,000,000 bars; each copy is scaled so
that it continues from the previous copy's last close (no artificial price jumps). Every comparison runs in
the same process on the same arrays, alternating ours/theirs so that load changes on a shared machine hit
both.

* batch: median wall time of ``repeats`` calls per function, ours vs TA-Lib (for StochRSI the documented
  equivalent, ``talib.RSI`` then ``talib.STOCH``), including each library's input checks and output
  allocation;
* update: median of per-bar wall times (``perf_counter_ns`` around one call, timer overhead included and
  reported) of ``IndicatorSet.update`` and of the equivalent talipp indicator set (EMA 12/26, RSI 14, StochRSI
  14/14/3/3, MACD 12/26/9, BB 20/2, ATR 14, VWAP; one ``add`` each), in steady state after a warm-up;
* alternatives for ``update``: the same ``step`` source interpreted by CPython over Python lists, the raw
  compiled call without building the dict, and the bare call overhead of an njit function vs a jitclass
  method;
* import: ``import processors.indicators, processors.bars`` and the first use of every compiled function, in a
  fresh interpreter with the numba cache warm and with an empty cache (cold compile).

``run(quick=True)`` uses 200k points and fewer repeats. Results go to ``bench/results/indicators.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DATA = ROOT.parent / "shared" / "data" / "ftx_btc-perp_2022-01_1m.csv"
F64 = npt.NDArray[np.float64]

TARGET_BATCH_RATIO = 2.0
TARGET_UPDATE_NS = 5_000.0
TARGET_SPEEDUP = 10.0


def load_bars(n: int) -> dict[str, F64]:
    """``n`` bars: the real BTC-PERP minute bars tiled, each copy rescaled to continue the previous one."""
    import pandas as pd

    if not DATA.exists():
        raise FileNotFoundError(
            f"benchmark input not found: {DATA} (expected ../shared/data next to the project)"
        )
    df = pd.read_csv(DATA)
    cols = {k: df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")}
    m = cols["close"].shape[0]
    copies = -(-n // m)
    growth = cols["close"][-1] / cols["open"][0]
    scale = np.repeat(growth ** np.arange(copies), m)[:n]
    out = {
        k: np.ascontiguousarray(np.tile(v, copies)[:n] * (scale if k != "volume" else 1.0))
        for k, v in cols.items()
    }
    return out


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round-robin after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_batch(bars: dict[str, F64], repeats: int) -> list[dict[str, Any]]:
    import talib

    from processors import indicators as ind

    c, h, lo, v = bars["close"], bars["high"], bars["low"], bars["volume"]

    def talib_stochrsi() -> object:
        r = talib.RSI(c, 14)
        s = r[14:]
        sma = talib.MA_Type.SMA
        return talib.STOCH(
            s, s, s, fastk_period=14, slowk_period=3, slowk_matype=sma, slowd_period=3, slowd_matype=sma
        )

    cases: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        ("sma(20)", lambda: ind.sma(c, 20), lambda: talib.SMA(c, 20)),
        ("ema(12)", lambda: ind.ema(c, 12), lambda: talib.EMA(c, 12)),
        ("rsi(14)", lambda: ind.rsi(c, 14), lambda: talib.RSI(c, 14)),
        ("stochrsi(14,14,3,3)", lambda: ind.stochrsi(c, 14, 14, 3, 3), talib_stochrsi),
        ("macd(12,26,9)", lambda: ind.macd(c, 12, 26, 9), lambda: talib.MACD(c, 12, 26, 9)),
        (
            "bbands(20,2)",
            lambda: ind.bbands(c, 20, 2.0),
            lambda: talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA),
        ),
        ("atr(14)", lambda: ind.atr(h, lo, c, 14), lambda: talib.ATR(h, lo, c, 14)),
        ("vwap", lambda: ind.vwap(ind.typical_price(h, lo, c), v), None),
    ]
    rows = []
    for name, ours, theirs in cases:
        fns: dict[str, Callable[[], object]] = {"ours": ours}
        if theirs is not None:
            fns["talib"] = theirs
        t = _interleaved(fns, repeats)
        row: dict[str, Any] = {"function": name, "ours_ms": round(t["ours"] * 1e3, 3)}
        if theirs is not None:
            row["talib_ms"] = round(t["talib"] * 1e3, 3)
            row["ratio"] = round(t["ours"] / t["talib"], 2)
            row["target_met"] = row["ratio"] <= TARGET_BATCH_RATIO
        rows.append(row)
    return rows


def _per_call_ns(fn: Callable[[int], object], start: int, count: int) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    for i in range(start, start + count):
        t0 = clock()
        fn(i)
        out.append(clock() - t0)
    return out


def bench_update(bars: dict[str, F64], n_bars: int, n_talipp: int, warmup: int = 1000) -> dict[str, Any]:
    from talipp.indicators import ATR, BB, EMA, MACD, RSI, VWAP, StochRSI
    from talipp.ohlcv import OHLCV

    from processors.indicators import IndicatorSet
    from processors.indicators import incremental as inc

    o, h, lo, c, v = (bars[k].tolist() for k in ("open", "high", "low", "close", "volume"))
    clock = time.perf_counter_ns
    timer_ns = statistics.median(-clock() + clock() for _ in range(10_000))

    ours = IndicatorSet()
    upd = ours.update
    _per_call_ns(lambda i: upd(o[i], h[i], lo[i], c[i], v[i]), 0, warmup)
    ours_ns = _per_call_ns(lambda i: upd(o[i], h[i], lo[i], c[i], v[i]), warmup, n_bars)

    ema_f, ema_s, rsi_, stoch, macd_, bb = (
        EMA(12),
        EMA(26),
        RSI(14),
        StochRSI(14, 14, 3, 3),
        MACD(12, 26, 9),
        BB(20, 2.0),
    )
    atr_, vwap_ = ATR(14), VWAP()

    def talipp_update(i: int) -> None:
        x = c[i]
        bar = OHLCV(o[i], h[i], lo[i], x, v[i])
        ema_f.add(x)
        ema_s.add(x)
        rsi_.add(x)
        stoch.add(x)
        macd_.add(x)
        bb.add(x)
        atr_.add(bar)
        vwap_.add(bar)

    _per_call_ns(talipp_update, 0, warmup)
    talipp_ns = _per_call_ns(talipp_update, warmup, n_talipp)

    # Alternatives for the implementation of update (same bars, same steady state).
    raw = IndicatorSet()
    fst, ist = raw._fst, raw._ist
    step = inc.step
    _per_call_ns(lambda i: step(fst, ist, o[i], h[i], lo[i], c[i], v[i]), 0, warmup)
    raw_ns = _per_call_ns(lambda i: step(fst, ist, o[i], h[i], lo[i], c[i], v[i]), warmup, n_bars)

    interpreted = types.FunctionType(
        inc.step.py_func.__code__,
        {**inc.step.py_func.__globals__, "_ema": inc._ema.py_func, "true_range": inc.true_range.py_func},
    )
    py = IndicatorSet()
    fl, il = py._fst.tolist(), py._ist.tolist()
    _per_call_ns(lambda i: interpreted(fl, il, o[i], h[i], lo[i], c[i], v[i]), 0, warmup)
    python_ns = _per_call_ns(lambda i: interpreted(fl, il, o[i], h[i], lo[i], c[i], v[i]), warmup, n_talipp)
    same_bars = IndicatorSet()
    same_bars.update_many(*(bars[k][: warmup + n_talipp] for k in ("open", "high", "low", "close", "volume")))
    ok = np.array_equal(np.array(fl).view(np.int64), same_bars._fst.view(np.int64))

    arrays = tuple(bars[k] for k in ("open", "high", "low", "close", "volume"))
    many = _interleaved({"update_many": lambda: IndicatorSet().update_many(*arrays)}, repeats=3)[
        "update_many"
    ]

    dispatch = _dispatch_overhead()
    med_ours = statistics.median(ours_ns)
    med_talipp = statistics.median(talipp_ns)
    return {
        "bars_timed": n_bars,
        "talipp_bars_timed": n_talipp,
        "timer_overhead_ns": timer_ns,
        "indicatorset_update_median_ns": med_ours,
        "indicatorset_update_p99_ns": float(np.percentile(ours_ns, 99)),
        "talipp_update_median_ns": med_talipp,
        "update_many_ns_per_bar": many / arrays[0].shape[0] * 1e9,
        "speedup_vs_talipp": round(med_talipp / med_ours, 1),
        "target_update_met": med_ours <= TARGET_UPDATE_NS,
        "target_speedup_met": med_talipp / med_ours >= TARGET_SPEEDUP,
        "alternatives_median_ns": {
            "numba step over flat arrays + dict (IndicatorSet.update, chosen)": med_ours,
            "numba step over flat arrays, raw tuple (no dict)": statistics.median(raw_ns),
            "same step source interpreted by CPython over lists": statistics.median(python_ns),
            "bare call: njit function returning a 13-tuple": dispatch["njit"],
            "bare call: jitclass method returning a 13-tuple": dispatch["jitclass"],
        },
        "interpreted_state_matches_compiled": ok,
    }


def _dispatch_overhead() -> dict[str, float]:
    """Median ns of calling a trivial njit function vs a trivial jitclass method (both return 13 floats)."""
    import numba as nb
    from numba.experimental import jitclass

    @nb.njit
    def fn(a: F64, x: float) -> tuple[float, ...]:
        return (x, x, x, x, x, x, x, x, x, x, x, x, a[0])

    @jitclass([("a", nb.float64[:])])
    class Obj:
        def __init__(self, a: F64) -> None:
            self.a = a

        def update(self, x: float) -> tuple[float, ...]:
            return (x, x, x, x, x, x, x, x, x, x, x, x, self.a[0])

    arr = np.zeros(4)
    obj = Obj(arr)
    fn(arr, 1.0)
    obj.update(1.0)
    n = 50_000
    return {
        "njit": statistics.median(_per_call_ns(lambda i: fn(arr, 1.0), 0, n)),
        "jitclass": statistics.median(_per_call_ns(lambda i: obj.update(1.0), 0, n)),
    }


_IMPORT_PROBE = """
import json, time
t0 = time.perf_counter()
import processors.indicators as I, processors.bars as B
t1 = time.perf_counter()
import numpy as np
x = np.linspace(1.0, 2.0, 64)
I.IndicatorSet().update(1.0, 1.0, 1.0, 1.0, 1.0); I.IndicatorSet().update_many(x, x, x, x, x)
I.sma(x, 3); I.ema(x, 3); I.rsi(x, 3); I.stochrsi(x); I.macd(x); I.bbands(x); I.atr(x, x, x); I.vwap(x, x)
B.aggregate(np.arange(8), x[:8], x[:8], 3); a = B.BarAggregator(3); a.update(1, 1.0, 1.0)
a.update_many(np.arange(8), x[:8], x[:8]); a.flush(100)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_use_s": t2 - t1}))
"""


def bench_import(cold: bool) -> dict[str, Any]:
    """Fresh-interpreter import and first-use times; ``cold`` compiles into an empty NUMBA_CACHE_DIR."""

    def probe(env: dict[str, str]) -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    base = dict(os.environ)
    probe(base)  # make sure the in-tree cache is populated
    result: dict[str, Any] = {"warm_cache": probe(base)}
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t=time.perf_counter(); import numpy, numba; print(time.perf_counter()-t)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result["numpy_numba_import_s"] = float(bare.stdout.strip())
    if cold:
        with tempfile.TemporaryDirectory() as tmp:
            result["cold_cache"] = probe({**base, "NUMBA_CACHE_DIR": tmp})
    return result


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark; returns (and writes to bench/results/indicators.json) the results."""
    n = 200_000 if quick else 1_000_000
    bars = load_bars(n)
    import talib

    info = machine_info(packages=("numpy", "numba", "TA-Lib", "talipp", "pandas"))
    info["ta_lib_c"] = str(getattr(talib, "__ta_version__", b"?"), "ascii", "replace").split(" ")[0]
    result: dict[str, Any] = {
        "benchmark": "indicators",
        "quick": quick,
        "points": n,
        "input": (
            f"{DATA.name}: real FTX BTC-PERP 1-minute bars (45,031) tiled to {n:,} points, each copy "
            "rescaled to continue from the previous copy's last close"
        ),
        "batch": bench_batch(bars, repeats=5 if quick else 15),
        "update": bench_update(
            bars, n_bars=20_000 if quick else 100_000, n_talipp=3_000 if quick else 20_000
        ),
        "import": bench_import(cold=not quick),
        "machine": info,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("indicators.quick.json" if quick else "indicators.json")).write_text(
        json.dumps(result, indent=2) + "\n"
    )
    return result


def markdown(result: dict[str, Any]) -> str:
    """The results as markdown tables."""
    lines = [
        f"Input: {result['input']}.",
        "",
        "| batch function | ours (ms) | TA-Lib (ms) | ours / TA-Lib | ≤ 2× |",
        "|---|---:|---:|---:|:---:|",
    ]
    for row in result["batch"]:
        if "talib_ms" in row:
            mark = "yes" if row["target_met"] else "no"
            lines.append(
                f"| {row['function']} | {row['ours_ms']} | {row['talib_ms']} | {row['ratio']} | {mark} |"
            )
        else:
            lines.append(f"| {row['function']} | {row['ours_ms']} | – | – | – |")
    u = result["update"]
    lines += [
        "",
        "| per-bar update (median, ns) | value |",
        "|---|---:|",
        f"| IndicatorSet.update (13 outputs) | {u['indicatorset_update_median_ns']:.0f} |",
        f"| talipp, same indicator set | {u['talipp_update_median_ns']:.0f} |",
        f"| speed-up vs talipp | {u['speedup_vs_talipp']}× |",
        f"| IndicatorSet.update_many, per bar ({result['points']:,} bars in one call) | "
        f"{u['update_many_ns_per_bar']:.0f} |",
    ]
    for name, ns in u["alternatives_median_ns"].items():
        lines.append(f"| alt: {name} | {ns:.0f} |")
    lines.append(f"| (timer overhead included above) | {u['timer_overhead_ns']:.0f} |")
    imp = result["import"]
    lines += [
        "",
        "| import / first use (fresh interpreter, s) | import | first use of all compiled functions |",
        "|---|---:|---:|",
        f"| numba cache warm | {imp['warm_cache']['import_s']:.3f} | "
        f"{imp['warm_cache']['first_use_s']:.3f} |",
    ]
    if "cold_cache" in imp:
        lines.append(
            f"| numba cache empty (compile) | {imp['cold_cache']['import_s']:.3f} | "
            f"{imp['cold_cache']['first_use_s']:.3f} |"
        )
    lines.append(f"| (numpy + numba alone) | {imp['numpy_numba_import_s']:.3f} | |")
    m = result["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f", TA-Lib C {m['ta_lib_c']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200k points, fewer repeats, no cold compile")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
