"""docs/capacity.md quotes the measured benchmark figures: fail when one of them changes in
bench/results/ without the capacity model being updated (the issue asks to update it then)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CAPACITY = REPO / "docs" / "capacity.md"
RESULTS = REPO / "bench" / "results"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return data


def _sink(store: str, method: str, batch: int) -> int:
    rows = [
        r["rows_per_s"]
        for r in _load("sinks.json")["results"]
        if r["store"] == store and r["method"] == method and r["batch"] == batch
    ]
    assert len(rows) == 1, (store, method, batch)
    value: int = rows[0]
    return value


def _quoted() -> dict[str, tuple[str, Any]]:
    """What capacity.md cites: label -> (file, value)."""
    feed, ind, inf = _load("feed_avro.json"), _load("indicators.json"), _load("inference.json")
    res = inf["results"]
    return {
        "feed ticks/s": ("feed_avro.json", feed["feed_msgs_per_s"]),
        "raw consume msgs/s": ("feed_avro.json", feed["raw_consume_msgs_per_s"]),
        "produce msgs/s": ("feed_avro.json", feed["produce_msgs_per_s"]),
        "feed batches": ("feed_avro.json", feed["batches"]),
        "indicator update median ns": (
            "indicators.json",
            round(ind["update"]["indicatorset_update_median_ns"]),
        ),
        "indicator update p99 ns": ("indicators.json", round(ind["update"]["indicatorset_update_p99_ns"])),
        "triton 256 rows/s": ("inference.json", res["client_concurrent_256"]["rows_per_s"]),
        "triton 32 rows/s": ("inference.json", res["client_concurrent_32"]["rows_per_s"]),
        "triton 1 rows/s": ("inference.json", res["client_concurrent_1"]["rows_per_s"]),
        "fallback rows/s": ("inference.json", res["fallback_inprocess"]["raw"]["rows_per_s"]),
        "redis 1k": ("sinks.json", _sink("redis", "RedisHotState.write_bars", 1000)),
        "redis 20k": ("sinks.json", _sink("redis", "RedisHotState.write_bars", 20000)),
        "clickhouse 1k": ("sinks.json", _sink("clickhouse", "ClickHouseHistory.write_bars", 1000)),
        "clickhouse 20k": ("sinks.json", _sink("clickhouse", "ClickHouseHistory.write_bars", 20000)),
        "postgres 1k": ("sinks.json", _sink("postgres", "PostgresOrders.write_orders (COPY)", 1000)),
        "postgres 20k": ("sinks.json", _sink("postgres", "PostgresOrders.write_orders (COPY)", 20000)),
    }


@pytest.mark.parametrize("label", sorted(_quoted()))
def test_capacity_model_quotes_the_current_benchmark(label: str) -> None:
    source, value = _quoted()[label]
    text = CAPACITY.read_text()
    assert f"{value:,}" in text, (
        f"docs/capacity.md does not quote {label} = {value:,} from bench/results/{source}: "
        "the benchmark changed, so update the capacity model (and the sizes derived from it)"
    )
    assert source in text


def test_capacity_model_names_what_is_not_measured() -> None:
    text = CAPACITY.read_text()
    assert "Not yet measured" in text and "e2e.json" in text, "the end-to-end benchmark is quoted"
    assert "us-east-1" in text and "on-demand" in text
