"""Scale-out throughput: the end-to-end benchmark (:mod:`bench.e2e`) with one and with two processes of every
worker (one consumer group each), back to back on the same code and machine.

``stockpulse bench e2e_scale [--quick]`` writes ``bench/results/e2e_scale.json``: per worker count the
TickBatch and single-tick throughput, the compute-only raw baseline of the same run, and tick -> signal
p50/p99 at each input rate. On a 2-core machine a second process adds coordination, not cores: the figure
shows what scale-out costs or gains here, not on a larger machine.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.e2e import QUICK, Config, run_config
from bench.machine import machine_info


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    t = result["throughput"]
    return {
        "tick_batch_ticks_per_s": t["tick_batch"]["ticks_per_s"],
        "single_tick_ticks_per_s": t["single_tick"]["ticks_per_s"],
        "baseline_ticks_per_s": t["baseline"]["ticks_per_s"],
        "tick_to_signal_ms": {
            str(r["rate"]): {k: r["tick_to_signal_ms"][k] for k in ("p50", "p99")} for r in result["latency"]
        },
    }


def run(quick: bool = False) -> dict[str, Any]:
    base = QUICK if quick else Config()
    runs = {str(w): _summary(run_config(replace(base, workers=w, tag=f"e2e-w{w}"))) for w in (1, 2)}
    one, two = runs["1"]["tick_batch_ticks_per_s"], runs["2"]["tick_batch_ticks_per_s"]
    return {
        "benchmark": "e2e_scale",
        "config": {"ticks": base.ticks, "rates": list(base.rates), "quick": quick},
        "workers": runs,
        "two_over_one_workers_ratio": round(two / one, 3) if one else None,
        "machine": machine_info(("confluent-kafka", "faust-streaming")),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        "| workers of each stage | TickBatch ticks/s | single-tick ticks/s | raw baseline ticks/s "
        "| tick -> signal p50 / p99 (ms) by input rate |",
        "|---:|---:|---:|---:|---|",
    ]
    for w, r in result["workers"].items():
        lat = ", ".join(
            f"{int(rate):,}/s: {v['p50']:,.0f} / {v['p99']:,.0f}"
            for rate, v in r["tick_to_signal_ms"].items()
        )
        rows.append(
            f"| {w} | {r['tick_batch_ticks_per_s']:,} | {r['single_tick_ticks_per_s']:,} "
            f"| {r['baseline_ticks_per_s']:,} | {lat} |"
        )
    return "\n".join(rows)
