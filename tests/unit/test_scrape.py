"""Interval metrics from two real Prometheus expositions (prometheus_client's own registry and format)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from streams.scrape import histogram_quantile, interval_metrics, parse


def _registry() -> tuple[CollectorRegistry, Histogram, Counter, Counter]:
    reg = CollectorRegistry()
    stage = Histogram(
        "stockpulse_stage_latency_seconds", "x", ["stage"], registry=reg,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    )  # fmt: skip
    inference = Counter("stockpulse_inference", "x", ["path"], registry=reg)
    ticks = Counter("stockpulse_ticks", "x", ["service"], registry=reg)
    return reg, stage, inference, ticks


def test_quantiles_cover_only_the_interval_and_rates_divide_by_it() -> None:
    reg, stage, inference, ticks = _registry()
    for _ in range(1000):
        stage.labels("tick_to_bar").observe(0.002)  # before the first scrape: must not count
    inference.labels("triton").inc(90)
    a = parse(generate_latest(reg).decode())
    rng = np.random.default_rng(1)
    values = rng.uniform(0.03, 0.045, 400)
    for v in values:
        stage.labels("tick_to_bar").observe(float(v))
    inference.labels("triton").inc(30)
    inference.labels("fallback").inc(10)
    ticks.labels("price").inc(5000)
    b = parse(generate_latest(reg).decode())
    m = interval_metrics(a, b, 2.0)
    assert 25.0 < m["tick_to_bar_p50_ms"] < 50.0, m  # inside the (25 ms, 50 ms] bucket, not 2 ms
    assert m["tick_to_bar_p99_ms"] == pytest.approx(49.6, abs=0.5)
    assert m["fallback_ratio"] == pytest.approx(10 / 40)
    assert m["price_ticks_per_s"] == 2500.0
    assert "inference_p50_ms" not in m, "no observations of a stage in the interval: no value"


def test_a_restarted_process_counts_from_zero() -> None:
    reg, _, _, ticks = _registry()
    ticks.labels("price").inc(10_000)
    before = parse(generate_latest(reg).decode())
    reg2, _, _, ticks2 = _registry()
    ticks2.labels("price").inc(300)
    assert interval_metrics(before, parse(generate_latest(reg2).decode()), 1.0)["price_ticks_per_s"] == 300


def test_histogram_quantile_edges() -> None:
    assert np.isnan(histogram_quantile(0.5, []))
    assert histogram_quantile(0.99, [(0.01, 0), (float("inf"), 5)]) == 0.01  # all above the top bound
