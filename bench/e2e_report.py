"""Latency statistics from the stage timestamps, the README table and the PNG plots of :mod:`bench.e2e`.

Stage timestamps (UTC microseconds) carried in the messages:

- TickBatch ``ingest_us`` (the feed received the batch's first tick) and ``publish_us`` (batch published);
- Signal ``ingest_us`` (of the batch that closed the bar), ``close_us`` (bar closed in the price service),
  ``indicator_us`` (indicators computed), ``inference_us`` (model answered), ``publish_us`` (signal sent);
- Order ``ingest_us`` / ``signal_us`` (its signal's ingest and publish) and the Kafka record timestamp the
  order service's producer sets when it sends the order (milliseconds: the only send time an Order carries);
- the benchmark's own consumer adds the time it received each message.

>>> stage_table({"a": {"p50": 1.0, "p99": 2.0, "p99_9": 3.0, "n": 5}})
'1.0 / 2.0 / 3.0'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.e2e_observe import Tally, percentiles
from bench.machine import machine_info


def latency_stats(
    tally: Tally, t0_us: int, t1_us: int, t_send: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Percentiles (ms) for the 1 s bars that start and end inside [t0_us, t1_us] (orders: filled at a tick
    of that interval); raw samples for plots."""
    sig = [
        r
        for r in tally.records("signals", "L")
        if r["timeframe"] == "1s" and r["start_us"] >= t0_us and r["start_us"] + 1_000_000 <= t1_us
    ]
    orders = [r for r in tally.records("orders", "L") if t0_us <= r["ts_us"] <= t1_us and r["ingest_us"]]
    batches = [b for b in tally.batches if b[0] >= t_send and b[1] >= t0_us]

    def col(rows: list[dict[str, Any]], f: Any) -> list[float]:
        return [f(r) / 1000 for r in rows]

    tick_to_signal = col(sig, lambda r: r["publish_us"] - r["ingest_us"])
    tick_to_order = col(orders, lambda r: r["kafka_ms"] * 1000 - r["ingest_us"])
    stages = {
        "feed_batch": [(b[2] - b[1]) / 1000 for b in batches],
        "ingest_to_bar_close": col(sig, lambda r: r["close_us"] - r["ingest_us"]),
        "bar_close_to_indicators": col(sig, lambda r: r["indicator_us"] - r["close_us"]),
        "indicators_to_inference": col(sig, lambda r: r["inference_us"] - r["indicator_us"]),
        "inference_to_publish": col(sig, lambda r: r["publish_us"] - r["inference_us"]),
        "signal_to_consumer": col(sig, lambda r: r["recv"] * 1e6 - r["publish_us"]),
        "signal_record_to_consumer": col(sig, lambda r: r["recv"] * 1e6 - r["kafka_ms"] * 1000),
        "bar_end_to_close": col(sig, lambda r: r["close_us"] - r["start_us"] - 1_000_000),
        "bar_end_to_signal": col(sig, lambda r: r["publish_us"] - r["start_us"] - 1_000_000),
        "signal_to_order": col(orders, lambda r: r["kafka_ms"] * 1000 - r["signal_us"]),
        "tick_to_order_observed": col(orders, lambda r: r["recv"] * 1e6 - r["ingest_us"]),
    }
    stats = {
        "tick_to_signal_ms": percentiles(tick_to_signal),
        "tick_to_order_ms": percentiles(tick_to_order),
        "stages_ms": {k: percentiles(v) for k, v in stages.items()},
        "inference_paths": sorted({r["inference_path"] for r in sig}),
    }
    return stats, {"tick_to_signal": tick_to_signal, "tick_to_order": tick_to_order}


def steady_rate(seen: list[tuple[float, int]], n: int) -> int | None:
    """Rows/s between the polls where 10 % and 90 % of ``n`` were first stored (the phase without its
    start and its tail).

    >>> steady_rate([(0.0, 0), (1.0, 20), (2.0, 60), (3.0, 95), (4.0, 100)], 100)  # (95 - 20) / (3 - 1)
    38
    """
    first = [next(((t, c) for t, c in seen if c >= f * n), None) for f in (0.1, 0.9)]
    if first[0] is None or first[1] is None or first[1][0] <= first[0][0]:
        return None
    return round((first[1][1] - first[0][1]) / (first[1][0] - first[0][0]))


def assemble(
    run: str,
    config: dict[str, Any],
    exp: dict[str, int],
    single: dict[str, Any],
    batched: dict[str, Any],
    baselines: tuple[dict[str, Any], dict[str, Any]],
    latency: list[dict[str, Any]],
    reconcile: dict[str, Any],
    procs: dict[str, dict[str, float]],
    load: dict[str, list[float]],
    timing: dict[str, float],
) -> dict[str, Any]:
    """The benchmark's JSON (the runner adds ``quick`` and ``wall_s``); ``baselines``: the compute-only raw
    loop and the raw loop that also writes every store."""
    baseline, baseline_stores = baselines
    base = baseline["ticks_per_s"]
    services = {
        name: {
            "cpu_s_per_1m_ticks_single_tick": single["cpu_s_per_1m_ticks"][name],
            "cpu_s_per_1m_ticks_tick_batch": batched["cpu_s_per_1m_ticks"][name],
            **p,
        }
        for name, p in procs.items()
    }
    cpu_a = sum(single["cpu_s_per_1m_ticks"].values()) or 1e-9
    cpu_b = sum(batched["cpu_s_per_1m_ticks"].values()) or 1e-9
    targets = issue_targets(single, batched, baseline, latency, baseline_stores)
    return {
        "benchmark": "e2e",
        "run": run,
        "config": {
            **config,
            "input": f"{single['symbols']} copies of the real Binance BTCUSDT trades (2,001 trades, "
            "47 s), each shifted by a different sub-second offset, merged in time order",
            "bars_per_1k_ticks": round(exp["bars"] / exp["ticks"] * 1000, 1),
            "signals_per_1k_ticks": round(exp["signals"] / exp["ticks"] * 1000, 2),
        },
        "timing": timing,
        "throughput": {
            "single_tick": single,
            "tick_batch": batched,
            "baseline": baseline,
            "baseline_stores": baseline_stores,
        },
        "ratios": {
            "tick_batch_pipeline_over_baseline": round(batched["ticks_per_s"] / base, 3),
            "tick_batch_pipeline_over_baseline_stores": round(
                batched["ticks_per_s"] / baseline_stores["ticks_per_s"], 3
            ),
            "single_tick_pipeline_over_baseline": round(single["ticks_per_s"] / base, 3),
            "single_tick_over_tick_batch": round(single["ticks_per_s"] / batched["ticks_per_s"], 3),
            # CPU per tick, raw loop / all the pipeline's processes: steadier than wall time when loaded
            "cpu_baseline_over_pipeline_tick_batch": round(baseline["cpu_s_per_1m_ticks"] / cpu_b, 3),
            "cpu_baseline_over_pipeline_single_tick": round(baseline["cpu_s_per_1m_ticks"] / cpu_a, 3),
        },
        "latency": latency,
        "services": services,
        "targets": targets,
        "reconcile": reconcile,
        "load_avg": load,
        "machine": machine_info(),
    }


def issue_targets(
    single: dict[str, Any],
    batched: dict[str, Any],
    baseline: dict[str, Any],
    latency: list[dict[str, Any]],
    baseline_stores: dict[str, Any] | None = None,
) -> dict[str, bool]:
    """The chained-engine targets (GitHub issue 14) met or missed, of those this run measured.

    >>> t = issue_targets({"ticks_per_s": 1}, {"ticks_per_s": 9, "cpu_s_per_1m_ticks": {"a": 4.0}},
    ...                   {"ticks_per_s": 10, "cpu_s_per_1m_ticks": 2.0}, [])
    >>> t["tick_batch >= 0.5x baseline"], t["cpu per tick <= 2x baseline"]
    (True, True)
    """
    base = baseline["ticks_per_s"]
    cpu_b = sum(batched["cpu_s_per_1m_ticks"].values())
    out = {
        "tick_batch_ticks_per_s >= 200k": batched["ticks_per_s"] >= 200_000,
        "tick_batch >= 0.5x baseline": batched["ticks_per_s"] >= 0.5 * base,
        "single_tick_ticks_per_s >= 100k": single["ticks_per_s"] >= 100_000,
        "cpu per tick <= 2x baseline": cpu_b <= 2 * baseline["cpu_s_per_1m_ticks"],
    }
    if baseline_stores:
        out["tick_batch >= 0.8x the stores baseline"] = (
            batched["ticks_per_s"] >= 0.8 * baseline_stores["ticks_per_s"]
        )
    for r in latency:
        if r["rate"] not in (1_000, 10_000) or not r["tick_to_signal_ms"].get("n"):
            continue
        k, sig, end = f"{r['rate'] // 1000}k/s", r["tick_to_signal_ms"], r["stages_ms"]["bar_end_to_signal"]
        out[f"{k} tick->signal p50 <= 5 ms"] = sig["p50"] <= 5
        out[f"{k} tick->signal p99 <= 20 ms"] = sig["p99"] <= 20
        out[f"{k} bar end->signal p50 <= 10 ms"] = end["p50"] <= 10
        out[f"{k} bar end->signal p99 <= 50 ms"] = end["p99"] <= 50
    return out


def stage_table(stats: dict[str, Any]) -> str:
    """``p50 / p99 / p99.9`` of the first entry (ms)."""
    (s,) = stats.values()
    return " / ".join(f"{s[k]:,.1f}" for k in ("p50", "p99", "p99_9")) if s.get("n") else "n/a"


def _pct(s: dict[str, Any]) -> str:
    return stage_table({"x": s})


def markdown(result: dict[str, Any]) -> str:
    """The README tables of one result."""
    t, cfg = result["throughput"], result["config"]
    base = t["baseline"]["ticks_per_s"]
    one = t["single_tick"]
    lines = [
        f"Input: {one['ticks']:,} ticks over {one['symbols']} symbols ({cfg['input']}; "
        f"{cfg['bars_per_1k_ticks']} bars and {cfg['signals_per_1k_ticks']} signals per 1,000 ticks), "
        "every store written.",
        "",
        "| path | seconds | ticks/s (first input → last row in every store) | / baseline |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("single_tick", "(a) single-tick Avro → `ticks.raw` → feed → services"),
        ("tick_batch", "(b) TickBatch → `ticks` → services"),
        ("baseline", "baseline: one raw confluent-kafka process (bars, indicators, model, signals)"),
        ("baseline_stores", "second baseline: the same raw process also writing every store"),
    ):
        if key not in t:
            continue
        r = t[key]
        ratio = r["ticks_per_s"] / base
        lines.append(f"| {label} | {r['seconds']:.2f} | {r['ticks_per_s']:,} | {ratio:.2f} |")
    a, b = t["single_tick"]["stages"], t["tick_batch"]["stages"]
    lines += ["", "| stage done: ticks/s since first input | (a) | (b) |", "|---|---:|---:|"]
    for stage in dict.fromkeys([*a, *b]):
        cells = [f"{x[stage]['ticks_per_s']:,}" if stage in x else "" for x in (a, b)]
        lines.append(f"| {stage} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "| ticks/s in | achieved | tick → signal p50 / p99 / p99.9 ms | tick → order p50 / p99 / p99.9 ms "
        "| bar end → signal p50 / p99 | bar end → close p50 | feed batch p50 | ingest → bar close p50 "
        "| indicators → inference p50 | late ticks | drain s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["latency"]:
        st = r["stages_ms"]
        keys = ("bar_end_to_close", "feed_batch", "ingest_to_bar_close", "indicators_to_inference")
        p50 = [f"{st[k]['p50']:,.1f}" if st.get(k, {}).get("n") else "n/a" for k in keys]
        end = st["bar_end_to_signal"]
        end_s = f"{end['p50']:,.0f} / {end['p99']:,.0f}" if end.get("n") else "n/a"
        sig, order = r["tick_to_signal_ms"], r["tick_to_order_ms"]
        lines.append(
            f"| {r['rate']:,} | {r['achieved_rate']:,} | {_pct(sig)} (n={sig['n']:,}) "
            f"| {_pct(order)} (n={order['n']:,}) | {end_s} | {' | '.join(p50)} "
            f"| {r.get('late_ticks', 'n/a')} | {r['drain_s']} |"
        )
    lines += [
        "",
        "| service | CPU s / 1M ticks (a) | (b) | CPU cores when idle | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    total_a = total_b = 0.0
    for name, s in result["services"].items():
        total_a += s["cpu_s_per_1m_ticks_single_tick"]
        total_b += s["cpu_s_per_1m_ticks_tick_batch"]
        lines.append(
            f"| {name} | {s['cpu_s_per_1m_ticks_single_tick']:,.1f} | "
            f"{s['cpu_s_per_1m_ticks_tick_batch']:,.1f} | {s['idle_cpu_cores']:.2f} "
            f"| {s['peak_rss_mb']:,.0f} |"
        )
    lines.append(f"| all | {total_a:,.1f} | {total_b:,.1f} | | |")
    bl = t["baseline"]
    lines.append(f"| baseline process | | {bl['cpu_s_per_1m_ticks']:,.1f} | | {bl['peak_rss_mb']:,.0f} |")
    r, load = result["ratios"], result["load_avg"]
    lines += [
        "",
        f"TickBatch pipeline / baseline: **{r['tick_batch_pipeline_over_baseline']:.2f}**; single-tick "
        f"pipeline / baseline: {r['single_tick_pipeline_over_baseline']:.2f} (baseline: best of "
        f"{t['baseline']['passes']} passes). CPU per tick, baseline / all the pipeline's processes: "
        f"{r['cpu_baseline_over_pipeline_tick_batch']:.3f} (b), "
        f"{r['cpu_baseline_over_pipeline_single_tick']:.3f} (a). Load average (1 min) at start "
        f"{load['start'][0]:.2f}, after the throughput phases {load['after_throughput'][0]:.2f}, at the end "
        f"{load['end'][0]:.2f}. Stores reconcile with the topics: {result['reconcile']['ok']}.",
    ]
    return "\n".join(lines)


def plots(result: dict[str, Any], samples: dict[str, Any], out_dir: Path, prefix: str) -> list[str]:
    """Latency CDF and throughput per stage as PNG files; [] (with a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; skipping the e2e plots (pip install matplotlib)")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for rate, s in samples.items():
        for key, style in (("tick_to_signal", "-"), ("tick_to_order", "--")):
            v = np.sort(np.asarray(s[key], dtype=float))
            if v.size:
                v = np.maximum(v, 0.01)
                ax.plot(
                    v,
                    np.arange(1, v.size + 1) / v.size,
                    style,
                    label=f"{int(rate):,}/s {key.replace('_', ' ')} (n={v.size:,})",
                )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of samples")
    ax.set_title("StockPulse end to end: tick → signal / order latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = out_dir / f"{prefix}_latency_cdf.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(str(path))

    t = result["throughput"]
    stages = list(dict.fromkeys([*t["single_tick"]["stages"], *t["tick_batch"]["stages"]]))
    y = np.arange(len(stages))
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(stages) + 2))
    for off, (key, label) in (
        (-0.2, ("single_tick", "(a) single-tick → feed")),
        (0.2, ("tick_batch", "(b) TickBatch")),
    ):
        st = t[key]["stages"]
        ax.barh(y + off, [st[s]["ticks_per_s"] if s in st else 0 for s in stages], height=0.4, label=label)
    ax.axvline(t["baseline"]["ticks_per_s"], color="k", linestyle=":", label="raw confluent-kafka baseline")
    ax.set_yticks(y, stages, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ticks/s from first input until the stage had everything (log scale)")
    ax.set_title("StockPulse end to end: throughput per stage")
    ax.legend(fontsize=8)
    path = out_dir / f"{prefix}_throughput.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(str(path))
    return paths
