"""Run the benchmarks by name, write their JSON under ``bench/results/``, and check for regressions.

Every benchmark module has ``run(quick: bool) -> dict``; a full run writes ``results/<name>.json`` (the
figures the README quotes), a quick run ``results/<name>.quick.json``. The regression check compares the
*ratios* of a new result with a saved one (ours vs a same-run baseline: machines are shared and noisy, so
absolute times are not compared) and flags any that dropped by more than the tolerance.

>>> ratios({"a": {"speedup_vs_talipp": 17.0, "ms": 3}, "rows": [{"ratio": 0.5}]})
{'a.speedup_vs_talipp': 17.0, 'rows[0].ratio': 0.5}
>>> regressions({"x_over_y": 2.0, "ratio": 1.0}, {"x_over_y": 1.5, "ratio": 1.1}, tolerance=0.2)
['x_over_y: 2 -> 1.5 (-25%)']
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> module; each has ``run(quick: bool = False) -> dict``.
BENCHMARKS = {
    "indicators": "bench.indicators",
    "inference": "bench.inference",
    "sinks": "bench.sinks",
    "wasm": "bench.wasm",
    "feed": "bench.feed",
    "api": "bench.api",
    "e2e": "bench.e2e",
    "e2e_scale": "bench.e2e_scale",
}

#: keys whose values are same-run ratios where higher is better ("ours / baseline" speed)
HIGHER_IS_BETTER = ("speedup", "_over_", "ratio_vs", "throughput_ratio", "pipeline_over_baseline")
#: ratio keys where lower is better ("ours / reference" time)
LOWER_IS_BETTER = ("ratio",)


def ratios(result: Any, prefix: str = "") -> dict[str, float]:
    """Every numeric value in ``result`` whose key names a ratio or speed-up, by dotted path."""
    out: dict[str, float] = {}
    if isinstance(result, dict):
        for key, value in result.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if any(tag in str(key) for tag in HIGHER_IS_BETTER + LOWER_IS_BETTER):
                    out[path] = float(value)
            else:
                out.update(ratios(value, path))
    elif isinstance(result, list):
        for i, value in enumerate(result):
            out.update(ratios(value, f"{prefix}[{i}]"))
    return out


def _higher_is_better(path: str) -> bool:
    leaf = path.rsplit(".", 1)[-1]
    return any(tag in leaf for tag in HIGHER_IS_BETTER) or leaf != "ratio"


def regressions(saved: dict[str, float], new: dict[str, float], tolerance: float = 0.2) -> list[str]:
    """Ratios that got worse by more than ``tolerance`` (0.2 = 20 %)."""
    found = []
    for path, old in saved.items():
        if path not in new or old == 0:
            continue
        change = (new[path] - old) / abs(old)
        worse = -change if _higher_is_better(path) else change
        if worse > tolerance:
            found.append(f"{path}: {old:g} -> {new[path]:g} ({change:+.0%})")
    return found


def run_benchmark(name: str, quick: bool, write: bool = True) -> dict[str, Any]:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    module = importlib.import_module(BENCHMARKS[name])
    runner: Callable[..., dict[str, Any]] = module.run
    t0 = time.perf_counter()
    result = runner(quick=quick)
    result.setdefault("benchmark", name)
    result["quick"] = quick
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def check_regression(saved_path: Path, new_path: Path, tolerance: float = 0.2) -> list[str]:
    saved = ratios(json.loads(saved_path.read_text()))
    new = ratios(json.loads(new_path.read_text()))
    return regressions(saved, new, tolerance)
