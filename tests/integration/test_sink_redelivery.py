"""Ticks delivered twice reach ClickHouse once: the rollups (materialized views that sum every insert) stay
exact. A re-delivery after a crash comes in differently cut batches, which ClickHouse's block deduplication
does not catch; the sink drops ticks at or below the highest stored seq of their symbol."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from processors.ticks import partition_for
from schemas.serde import AvroSerde
from streams import kafka
from streams.cli import app
from streams.config import Settings, get_settings
from tests.support.pipeline import pipeline

pytestmark = pytest.mark.integration

MINUTE_US = 60_000_000
T0 = 1_700_000_000_000_000 // MINUTE_US * MINUTE_US


def _batch(name: str, seqs: range) -> dict[str, Any]:
    return {
        "batch_id": name,
        "symbols": ["AAA"],
        "symbol_index": [0] * len(seqs),
        "ts_us": [T0 + s * 1_000_000 for s in seqs],  # one tick a second: 200 ticks over 4 minutes
        "price": [100.0 + s % 7 for s in seqs],
        "size": [1.0 + s % 3 for s in seqs],
        "seq": list(seqs),
        "ingest_us": 0,
        "publish_us": 0,
    }


def test_a_batch_delivered_again_cut_differently_is_stored_and_rolled_up_once(
    stack_settings: Settings,
) -> None:
    with pipeline(stack_settings, "redeliver") as run:
        s = run.settings
        serde, part = AvroSerde.for_record("TickBatch"), partition_for("AAA", s.topics.tick_partitions)
        producer = kafka.producer(s)
        run.start("sink")
        # first delivery: seq 1-120 and 121-200; then a feed that crashed before its checkpoint sends 81-200
        # again, cut as 81-150 and 151-200
        for name, seqs in (("a", range(1, 121)), ("b", range(121, 201))):
            producer.produce(s.topics.ticks, serde.encode(_batch(name, seqs)), key=b"AAA", partition=part)
        producer.flush(10)
        run.wait_for(lambda c: c.get("ticks", 0) >= 200, timeout=60)
        for name, seqs in (("c", range(81, 151)), ("d", range(151, 201))):
            producer.produce(s.topics.ticks, serde.encode(_batch(name, seqs)), key=b"AAA", partition=part)
        producer.flush(10)
        time.sleep(3.0)  # the sink writes every flush_s (0.5 s): a second copy would be in by now
        run.kill("sink")  # and a sink that restarts reads the floors from ClickHouse
        for name, seqs in (("e", range(1, 201)),):
            producer.produce(s.topics.ticks, serde.encode(_batch(name, seqs)), key=b"AAA", partition=part)
        producer.flush(10)
        run.start("sink")
        time.sleep(6.0)
        snap = run.snapshot()
        env = {"STOCKPULSE_CLICKHOUSE__DATABASE": s.clickhouse.database}
        day = dt.datetime.fromtimestamp(T0 / 1e6, dt.UTC).date().isoformat()
        get_settings.cache_clear()  # the command reads its settings (this run's database) from the env
        try:
            rebuilt = CliRunner().invoke(app, ["rollups", "rebuild", "--day", day], env=env)
        finally:
            get_settings.cache_clear()
        again = run.snapshot()
    assert rebuilt.exit_code == 0 and "rebuilt from 200 ticks" in rebuilt.output, rebuilt.output
    assert again["ohlcv_1m"] == snap["ohlcv_1m"], "the repair changed exact rollups"
    assert len(snap["ticks"]) == 200
    trades = {row[1]: row[7] for row in snap["ohlcv_1m"]}
    assert sum(trades.values()) == 200, f"ticks counted more than once in ohlcv_1m: {trades}"
    assert sum(row[7] for row in snap["ohlcv_1d"]) == 200
