"""Signal model inference: throughput and latency of the three ways to get a prediction, in one run.

(a) ``grpc_sequential``: one row per gRPC request, one request at a time (``tritonclient.grpc.aio``, no
    client batching) -- the naive client; ``grpc_unbatched_<C>``: the same with ``C`` concurrent callers
    (the unbatched baseline at equal concurrency; Triton's own dynamic batcher still merges what arrives
    together);
(b) ``client_concurrent_<C>``: :class:`~streams.inference.SignalModelClient` with ``C`` concurrent callers,
    each predicting one row at a time (micro-batched into few Triton requests);
(c) ``client_rate_1000``: an open-loop load of 1,000 predictions/s (each call started on schedule, not
    after the previous one returned) through the client, for the target "p99 <= 5 ms at 1,000/s";
(d) ``fallback_inprocess``: the in-process onnxruntime fallback, one row at a time, both raw
    (:class:`~streams.inference.OnnxModel`) and through the client with its breaker open.

Latency is per ``predict`` call (p50/p99, microseconds); throughput is rows per second of wall time.
Inputs are real feature rows (FTX BTC-PERP 1-minute bars through :func:`processors.features.feature_matrix`).
Needs the local stack's Triton serving ``signal`` (``stockpulse stack up``; tests/integration/test_triton.py).

    python -m bench.inference [--quick]      # writes bench/results/inference.json
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.machine import machine_info
from processors.features import feature_matrix
from streams.circuit import CircuitBreaker
from streams.config import Settings, TritonSettings, get_settings
from streams.inference import INPUT_NAME, OUTPUT_NAME, OnnxModel, SignalModelClient

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = (1, 32, 256)


def _features(settings: Settings, n: int) -> np.ndarray:
    path = Path(settings.data_dir) / "ftx_btc-perp_2022-01_1m.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the benchmark replays the real bars in ../shared/data")
    df = pd.read_csv(path)
    X, valid = feature_matrix(
        *(df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume"))
    )
    rows = X[valid]
    return np.ascontiguousarray(np.resize(rows, (n, rows.shape[1])))  # repeats the bars if n > len(rows)


def _summary(latencies_s: list[float], rows: int, wall_s: float) -> dict[str, Any]:
    lat = np.asarray(latencies_s) * 1e6
    return {
        "rows": rows,
        "rows_per_s": round(rows / wall_s),
        "p50_us": round(float(np.percentile(lat, 50)), 1),
        "p99_us": round(float(np.percentile(lat, 99)), 1),
        "wall_s": round(wall_s, 3),
    }


async def _timed_calls(
    call: Callable[[np.ndarray], Awaitable[Any]], X: np.ndarray, concurrency: int
) -> dict[str, Any]:
    """``concurrency`` workers take the rows of ``X`` one by one; each call is timed."""
    latencies: list[float] = []
    next_row = iter(range(X.shape[0]))

    async def worker() -> None:
        for i in next_row:
            t0 = time.perf_counter()
            await call(X[i : i + 1])
            latencies.append(time.perf_counter() - t0)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _summary(latencies, X.shape[0], time.perf_counter() - began)


async def _grpc_unbatched(triton: TritonSettings, X: np.ndarray, concurrency: int = 1) -> dict[str, Any]:
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        if not await client.is_model_ready(triton.model_name):
            raise RuntimeError(
                f"Triton at {triton.grpc_url} does not serve '{triton.model_name}': run "
                "`stockpulse stack up` (restart Triton if it started before triton_models/signal existed)"
            )

        async def call(row: np.ndarray) -> np.ndarray:
            inp = grpcclient.InferInput(INPUT_NAME, list(row.shape), "FP32")
            inp.set_data_from_numpy(row)
            result = await client.infer(triton.model_name, [inp])
            return result.as_numpy(OUTPUT_NAME)

        await _timed_calls(call, X[:50], concurrency)  # warm-up
        return await _timed_calls(call, X, concurrency)
    finally:
        await client.close()


async def _triton_counts(triton: TritonSettings) -> tuple[int, int]:
    """Triton's (inference_count, execution_count) of the model: rows served and model executions."""
    import tritonclient.grpc.aio as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        stats = (await client.get_inference_statistics(triton.model_name)).model_stats[0]
        return int(stats.inference_count), int(stats.execution_count)
    finally:
        await client.close()


async def _client_concurrent(triton: TritonSettings, X: np.ndarray, concurrency: int) -> dict[str, Any]:
    async with SignalModelClient(triton) as client:
        await _timed_calls(client.predict, X[:256], concurrency)  # warm-up
        before = client.stats.triton_requests
        inferences, executions = await _triton_counts(triton)
        out = await _timed_calls(client.predict, X, concurrency)
        out["grpc_requests"] = client.stats.triton_requests - before
        after = await _triton_counts(triton)
        out["triton_executions"] = after[1] - executions
        out["rows_per_execution"] = round((after[0] - inferences) / max(1, after[1] - executions), 1)
        out["fallback_rows"] = client.stats.fallback_rows
    return out


async def _fallback(triton: TritonSettings, X: np.ndarray) -> dict[str, dict[str, Any]]:
    model = OnnxModel(triton.fallback_model)

    async def raw(row: np.ndarray) -> np.ndarray:
        return model.predict(row)

    breaker = CircuitBreaker(1, 3600.0)
    breaker.record_failure()  # open: every call goes to the fallback
    async with SignalModelClient(triton, fallback=model, breaker=breaker) as client:
        via_client = await _timed_calls(client.predict, X, 1)
    return {"raw": await _timed_calls(raw, X, 1), "client_breaker_open": via_client}


async def _open_loop(triton: TritonSettings, X: np.ndarray, rate: float) -> dict[str, Any]:
    """Start one single-row ``predict`` every ``1/rate`` s (open loop); time each from its scheduled start."""
    latencies: list[float] = []
    async with SignalModelClient(triton) as client:
        await _timed_calls(client.predict, X[:256], 8)  # warm-up

        async def one(i: int, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await client.predict(X[i : i + 1])
            latencies.append(time.perf_counter() - due)

        began = time.perf_counter()
        await asyncio.gather(*(one(i, began + i / rate) for i in range(X.shape[0])))
        out = _summary(latencies, X.shape[0], time.perf_counter() - began)
        out["fallback_rows"] = client.stats.fallback_rows
    out["target_rows_per_s"] = rate
    return out


async def _run(triton: TritonSettings, X_seq: np.ndarray, X_conc: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"grpc_sequential": await _grpc_unbatched(triton, X_seq)}
    for c in CONCURRENCY:
        if c > 1:
            out[f"grpc_unbatched_{c}"] = await _grpc_unbatched(triton, X_conc, c)
        out[f"client_concurrent_{c}"] = await _client_concurrent(triton, X_conc if c > 1 else X_seq, c)
    out["client_rate_1000"] = await _open_loop(triton, X_conc[: len(X_seq) * 2], 1000.0)
    out["fallback_inprocess"] = await _fallback(triton, X_seq)
    return out


def run(quick: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    """Run all three; ``quick`` uses fewer rows. Returns the result dict (also written by ``main``)."""
    settings = settings or get_settings()
    # A deadline that does not turn queueing on a loaded 2-core machine into fallbacks: this measures Triton.
    triton = settings.triton.model_copy(update={"timeout_ms": max(settings.triton.timeout_ms, 5000)})
    n_seq, n_conc = (300, 3000) if quick else (3000, 30_000)
    X = _features(settings, n_conc)
    load_before = os.getloadavg()
    results = asyncio.run(_run(triton, X[:n_seq], X))
    seq = results["grpc_sequential"]
    best = max((results[f"client_concurrent_{c}"] for c in CONCURRENCY), key=lambda r: r["rows_per_s"])
    raw = results["fallback_inprocess"]["raw"]
    return {
        "benchmark": "inference",
        "model": settings.triton.model_name,
        "model_version": OnnxModel(triton.fallback_model).version,
        "quick": quick,
        "settings": {
            "max_batch": triton.max_batch,
            "max_wait_us": triton.max_wait_us,
            "max_inflight": triton.max_inflight,
        },
        "results": results,
        "ratios": {
            **{
                f"client_over_unbatched_at_concurrency_{c}_rows_per_s": round(
                    results[f"client_concurrent_{c}"]["rows_per_s"]
                    / results[f"grpc_unbatched_{c}" if c > 1 else "grpc_sequential"]["rows_per_s"],
                    1,
                )
                for c in CONCURRENCY
            },
            "client_best_over_grpc_sequential_rows_per_s": round(best["rows_per_s"] / seq["rows_per_s"], 1),
            "fallback_over_grpc_sequential_rows_per_s": round(raw["rows_per_s"] / seq["rows_per_s"], 1),
            "grpc_sequential_over_fallback_p50": round(seq["p50_us"] / raw["p50_us"], 1),
        },
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "machine": machine_info(("numpy", "onnxruntime", "tritonclient", "grpcio")),
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.inference", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rows (a smoke run)")
    args = ap.parse_args()
    result = run(args.quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inference.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
