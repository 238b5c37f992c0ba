"""Smoke test of the end-to-end benchmark (``stockpulse bench e2e``) on a tiny configuration: the processes
of the default topology on the real local stack, a few thousand ticks per phase.

Checks the result's structure (what the README table and the regression check read) and that the counts
reconcile: every input tick is stored once, the signals on the topic are the signals in ClickHouse and
PostgreSQL, and the raw baseline made the same bars and signals as the pipeline.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.e2e import Config, markdown, run_config
from bench.runner import ratios
from streams.config import Settings
from streams.topology import processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = Config(ticks=4_002, latency_symbols=20, rates=(1_000,), latency_s=3.0, tag="e2esmoke")


@pytest.fixture(scope="module")
def result(stack_settings: Settings) -> dict[str, Any]:
    if not (stack_settings.data_dir / "binance_btcusdt_trades.parquet").exists():
        pytest.skip(f"real recordings not found in {stack_settings.data_dir} (see ../shared/data/README.md)")
    return run_config(TINY, stack_settings)


def test_every_tick_is_stored_and_the_stores_agree_with_the_topics(result: dict[str, Any]) -> None:
    rec = result["reconcile"]
    assert rec["ok"], rec
    assert rec["clickhouse.ticks"] == rec["ticks_sent"] > 2 * TINY.ticks
    assert rec["topic.signals"] == rec["clickhouse.signals"] == rec["postgres.signals"] > 0
    assert rec["topic.orders"] == rec["postgres.orders"]
    for phase in ("single_tick", "tick_batch"):
        r = result["throughput"][phase]
        assert r["counts"]["clickhouse.ticks"] == r["expected"]["clickhouse.ticks"] == TINY.ticks, r
        assert (
            r["counts"]["topic.signals"]
            == r["counts"]["clickhouse.signals"]
            == r["expected"]["clickhouse.signals"]
        )
        assert r["counts"]["clickhouse.bars"] == r["expected"]["clickhouse.bars"] > 0
    base = result["throughput"]["baseline"]
    assert base["ticks"] == TINY.ticks and base["signals_match_pipeline"], base
    stores = result["throughput"]["baseline_stores"]  # the second baseline writes what the sink writes
    assert stores["ticks"] == TINY.ticks and stores["signals_match_pipeline"], stores
    expected = result["throughput"]["tick_batch"]["expected"]
    for name in ("clickhouse.ticks", "clickhouse.bars", "clickhouse.signals", "postgres.signals"):
        assert stores["stored_first_pass"][name] == expected[name], (name, stores, expected)


def test_the_result_has_what_the_readme_and_the_regression_check_read(result: dict[str, Any]) -> None:
    t = result["throughput"]
    for phase in ("single_tick", "tick_batch", "baseline", "baseline_stores"):
        assert t[phase]["ticks_per_s"] > 0 and t[phase]["seconds"] > 0
    assert {"clickhouse.ticks", "postgres.orders", "redis.bars", "signal (signals topic)"} <= set(
        t["tick_batch"]["stages"]
    )
    found = ratios(result)
    assert {
        "ratios.tick_batch_pipeline_over_baseline",
        "ratios.single_tick_pipeline_over_baseline",
        "ratios.cpu_baseline_over_pipeline_tick_batch",
        "ratios.tick_batch_pipeline_over_baseline_stores",
    } <= set(found)
    assert all(v > 0 for v in found.values()), found
    (lat,) = result["latency"]
    assert lat["rate"] == 1_000 and lat["tick_to_signal_ms"]["n"] > 0
    assert {"p50", "p99", "p99_9"} <= set(lat["tick_to_signal_ms"])
    # the live phase's bars close on the symbols' ticks or the feed's watermarks; late ticks are counted
    assert lat["stages_ms"]["bar_end_to_close"]["n"] > 0 and isinstance(lat["late_ticks"], int)
    assert result["config"]["event_time"]["max_delay_ms"] > 0
    assert set(result["services"]) == {p.name for p in processes(Settings().topology)}
    for s in result["services"].values():
        assert s["peak_rss_mb"] > 10 and s["cpu_s_per_1m_ticks_tick_batch"] >= 0
    assert result["machine"]["cores"] and len(result["load_avg"]["start"]) == 3
    table = markdown(result)
    assert "| (b) TickBatch → `ticks` → services |" in table and "| sink |" in table
