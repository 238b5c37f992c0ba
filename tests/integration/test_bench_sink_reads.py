"""The chart-read benchmark against the real stack: every store answers the 500-bar window, the table has a
baseline per store, and nothing is left behind. No timing is asserted (shared machines)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bench.sink_reads import WINDOW, read_markdown, run_reads
from bench.sinks import load_bars
from streams.config import Settings

pytestmark = pytest.mark.integration


def test_chart_reads_every_store(stack_settings: Settings) -> None:
    if not (stack_settings.data_dir / "ftx_btc-perp_2022-01_1m.csv").exists():
        pytest.skip(f"real recordings not found in {stack_settings.data_dir} (see ../shared/data/README.md)")
    bars = load_bars(stack_settings.data_dir, 2 * (WINDOW + 100), 2)
    rows = asyncio.run(run_reads(stack_settings, bars, calls=10))

    assert [(r.store, r.baseline) for r in rows] == [
        ("redis", True),
        ("redis", False),
        ("redis", False),
        ("clickhouse", True),
        ("clickhouse", False),
        ("postgres", True),
        ("postgres", False),
    ]
    for r in rows:
        assert r.calls == 10 and r.window == WINDOW
        assert 0 < r.p50_ms <= r.p99_ms
    table = read_markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "1.00x" in table

    async def leftovers() -> int:
        conn = await asyncpg.connect(stack_settings.postgres.dsn.get_secret_value())
        try:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'benchr_%'"
            )
            return n
        finally:
            await conn.close()

    assert asyncio.run(leftovers()) == 0
