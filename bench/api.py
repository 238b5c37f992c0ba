"""API under load: Locust (``tests/load/locustfile.py``, chart data 3 : signals 2 : orders 1) against a local
``stockpulse api`` on the real local stack, at several user counts for a fixed time each.

Data: a namespace of its own (topics, Redis prefix, ClickHouse database, PostgreSQL schema; removed at the
end) with ``SYMBOLS`` symbols of real FTX BTC-PERP 1m bars (``../shared/data``, a different stretch of the
recording per symbol, 600 bars each): 90 % of the symbols are in Redis and ClickHouse (hot), 10 % only in
ClickHouse and PostgreSQL (cold: their first chart request falls back and warms Redis), each with a signal.

Per user count: the API is started fresh (``python -m streams.api``, ``WORKERS`` uvicorn processes), Locust
runs headless for ``DURATION_S`` after ramping up (``SPAWN_RATE`` users/s) and ``WARMUP_S`` more (the ramp
and warm-up, when the API opens its connections, are not measured), each user waiting 0.5-1.5 s between
requests. Recorded: p50/p95/p99/max and requests/s per endpoint from every
response time (ms, from Locust's request events, not its rounded CSV), failures, the cache hit ratio of the
chart reads (``stockpulse_cache_requests_total`` from ``/metrics`` before and after), orders accepted vs
rejected, and the CPU cores kept busy by the API, by Locust and by everything else on the machine during the
run (the stack, and whatever else runs there: on a shared machine that column explains noisy tails).

``run(quick=True)``: one 10 s run at 20 users. Results: ``bench/results/api.json`` (``stockpulse bench api``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from streams.config import Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
LOCUSTFILE = ROOT / "tests" / "load" / "locustfile.py"
SYMBOLS = 50
BARS = 600
DURATION_S = 30
SPAWN_RATE = 50
WARMUP_S = 3
WORKERS = 1
USERS = (50, 100, 200, 400, 600)
TARGET_P50_MS, TARGET_P99_MS = 10.0, 50.0
ENDPOINTS = ("chart-data", "signals", "orders")


def _layout() -> dict[str, Any]:
    from bench.api_data import Placement

    out = {}
    for i in range(SYMBOLS):
        cold = i % 10 == 9
        out[f"BENCH-{i:03d}"] = Placement(
            BARS, redis=0 if cold else BARS, clickhouse=True, postgres=cold, offset=i * 800, signal=True
        )
    return out


def _metrics(base_url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "stockpulse_cache_requests_total":
                out[f"cache_{s.labels['result']}"] = out.get(f"cache_{s.labels['result']}", 0) + s.value
            elif s.name == "stockpulse_api_orders_total":
                out[f"orders_{s.labels['status']}"] = out.get(f"orders_{s.labels['status']}", 0) + s.value
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _summary(samples: list[float], errors: int, seconds: float) -> dict[str, Any]:
    return {
        "requests": len(samples),
        "failures": errors,
        "rps": round(len(samples) / seconds, 1) if seconds > 0 else None,
        "p50_ms": round(_percentile(samples, 0.50), 2),
        "p95_ms": round(_percentile(samples, 0.95), 2),
        "p99_ms": round(_percentile(samples, 0.99), 2),
        "max_ms": round(max(samples), 2) if samples else None,
        "mean_ms": round(statistics.fmean(samples), 2) if samples else None,
    }


def _cpu(pid: int) -> Any:
    try:
        import psutil
    except ImportError:  # locust depends on psutil; without it the CPU figures are left out
        return None
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs if p.is_running())


def _machine_busy() -> float | None:
    """CPU seconds the whole machine spent busy so far (every process: the stack, other work)."""
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return float(t.user + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "nice", 0))


def _locust_run(settings: Settings, base_url: str, users: int, seconds: int, api_pid: int) -> dict[str, Any]:
    """One headless Locust run; returns its per-endpoint summary, cache and order counts, CPU."""
    symbols = ",".join(_layout())
    before = _metrics(base_url)
    api_cpu0 = _cpu(api_pid)
    machine0 = _machine_busy()
    with tempfile.TemporaryDirectory(prefix="locust-") as tmp:
        out = Path(tmp) / "samples.json"
        ramp = users / SPAWN_RATE
        env = {
            **os.environ,
            "STOCKPULSE_LOAD_SYMBOLS": symbols,
            "STOCKPULSE_LOAD_OUT": str(out),
            "STOCKPULSE_LOAD_WAIT": "0.5,1.5",
            "STOCKPULSE_LOAD_WARMUP": str(WARMUP_S),
        }
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
        cmd += ["-u", str(users), "-r", str(SPAWN_RATE), "-t", f"{int(seconds + ramp + WARMUP_S + 1)}s"]
        cmd += [
            "--host",
            base_url,
            "--stop-timeout",
            "5",
            "--loglevel",
            "WARNING",
            "--exit-code-on-error",
            "0",
        ]
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        locust_cpu = None
        while proc.poll() is None:
            cpu = _cpu(proc.pid)
            locust_cpu = cpu if cpu is not None else locust_cpu
            time.sleep(0.5)
        log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        wall = time.perf_counter() - began
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"locust failed (exit {proc.returncode}):\n{log[-3000:]}")
        report = json.loads(out.read_text())
    after = _metrics(base_url)
    api_cpu = _cpu(api_pid)
    machine = _machine_busy()
    seconds_measured = float(report["seconds"])
    samples = report["samples_ms"]
    errors = report["errors"]
    endpoints = {n: _summary(samples.get(n, []), errors.get(n, 0), seconds_measured) for n in ENDPOINTS}
    everything = [x for n in ENDPOINTS for x in samples.get(n, [])]
    hits = after.get("cache_hit", 0) - before.get("cache_hit", 0)
    misses = after.get("cache_miss", 0) - before.get("cache_miss", 0)
    result: dict[str, Any] = {
        "users": users,
        "measured_s": round(seconds_measured, 1),
        "all": _summary(everything, sum(errors.values()), seconds_measured),
        "endpoints": endpoints,
        "cache": {
            "hits": int(hits),
            "misses": int(misses),
            "hit_ratio": round(hits / max(1, hits + misses), 4),
        },
        "orders": {
            "accepted": int(after.get("orders_ACCEPTED", 0) - before.get("orders_ACCEPTED", 0)),
            "rejected": int(after.get("orders_REJECTED", 0) - before.get("orders_REJECTED", 0)),
        },
    }
    if any(report.get("error_samples", {}).values()):
        result["error_samples"] = report["error_samples"]
    if api_cpu is not None and api_cpu0 is not None and locust_cpu is not None:
        api_cores, locust_cores = (api_cpu - api_cpu0) / wall, locust_cpu / wall
        busy = (machine - machine0) / wall if machine is not None and machine0 is not None else None
        result["cpu_cores_busy"] = {
            "api": round(api_cores, 2),
            "locust": round(locust_cores, 2),
            "everything_else": round(busy - api_cores - locust_cores, 2) if busy is not None else None,
            "machine_cores": os.cpu_count(),
            "load_average_after": round(os.getloadavg()[0], 2),
        }
    all_ = result["all"]
    result["meets_target"] = bool(all_["p50_ms"] <= TARGET_P50_MS and all_["p99_ms"] <= TARGET_P99_MS)
    return result


def _bench(settings: Settings, users: tuple[int, ...], seconds: int, workers: int) -> list[dict[str, Any]]:
    from bench.api_data import api_namespace, api_process, drop_namespace, free_port, seed

    ns = api_namespace(settings, "benchapi")
    try:
        asyncio.run(seed(ns, _layout()))
        runs = []
        for n in users:
            asyncio.run(_cool(ns))
            port = free_port()
            log = ns.stack.dir / "logs" / f"bench-api-{n}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with api_process(ns, port, workers=workers, log=log) as proc:
                runs.append(_locust_run(ns, f"http://127.0.0.1:{port}", n, seconds, proc.pid))
        return runs
    finally:
        asyncio.run(drop_namespace(ns))


async def _cool(settings: Settings) -> None:
    """Remove the cold symbols' bars and cached responses from Redis again (an earlier run warmed them), so
    every run starts from the same cache state."""
    from sinks.redis_state import RedisHotState
    from streams.stores import redis_config

    redis = await RedisHotState(redis_config(settings)).open()
    try:
        cold = [s for s, p in _layout().items() if not p.redis]
        for symbol in cold:
            await redis.client.delete(redis.bars_key(symbol, "1m"), redis.chart_key(symbol, "1m"))
    finally:
        await redis.close()


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| users | endpoint | req/s | p50 ms | p95 ms | p99 ms | failures |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in result["runs"]:
        for name, s in [*run["endpoints"].items(), ("all", run["all"])]:
            lines.append(
                f"| {run['users']} | {name} | {s['rps']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | "
                f"{s['failures']} |"
            )
    lines.append("")
    lines.append(
        f"highest user count with p50 <= {TARGET_P50_MS:g} ms and p99 <= {TARGET_P99_MS:g} ms: "
        f"{result['highest_users_meeting_target']}; chart cache hit ratio "
        + ", ".join(f"{r['users']} users {r['cache']['hit_ratio']:.2%}" for r in result["runs"])
    )
    for r in result["runs"]:
        cpu = r.get("cpu_cores_busy")
        if cpu:
            lines.append(
                f"- {r['users']} users: CPU cores busy: API {cpu['api']}, Locust {cpu['locust']}, everything "
                f"else {cpu['everything_else']} (of {cpu['machine_cores']}); orders accepted "
                f"{r['orders']['accepted']}, rejected {r['orders']['rejected']}"
            )
    return "\n".join(lines)


def run(quick: bool = False) -> dict[str, Any]:
    """Full: ``USERS`` for ``DURATION_S`` each; quick: 20 users for 10 s."""
    users, seconds = ((20,), 10) if quick else (USERS, DURATION_S)
    runs = _bench(get_settings(), users, seconds, WORKERS)
    meeting = [r["users"] for r in runs if r["meets_target"]]
    result: dict[str, Any] = {
        "benchmark": "api",
        "input": f"{SYMBOLS} symbols x {BARS} real FTX BTC-PERP 1m bars (a different stretch each); 90% hot "
        "(Redis + ClickHouse), 10% cold (ClickHouse + PostgreSQL only: first chart request falls back)",
        "load": "Locust FastHttpUser, mix chart-data 3 : signals 2 : orders 1, think time 0.5-1.5 s, "
        f"watchlist of 5 symbols per user, chart limit 100/300/500; {seconds} s measured per user count "
        f"after a ramp of {SPAWN_RATE} users/s and {WARMUP_S} s of warm-up; API: {WORKERS} uvicorn "
        "worker(s), fresh per user count; Locust and the API share the machine",
        "target": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS},
        "runs": runs,
        "highest_users_meeting_target": max(meeting) if meeting else None,
        "machine": machine_info(("fastapi", "uvicorn", "starlette", "locust", "redis", "hiredis")),
    }
    result["table"] = markdown(result)
    return result


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one 10 s run at 20 users")
    args = ap.parse_args()
    result = run(args.quick)
    RESULTS.mkdir(exist_ok=True)
    name = "api.quick.json" if args.quick else "api.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])


if __name__ == "__main__":
    main()
