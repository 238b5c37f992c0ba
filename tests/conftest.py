"""Shared fixtures. Integration tests use the real local stack (started by `make test`, or here on demand)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from tests.support.pipeline import PipelineRun, Ticks, pipeline, real_ticks


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Settings of a running stack. The local stack is started if needed (idempotent); with
    STOCKPULSE_TEST_EXTERNAL_STACK=1 the tests use what the STOCKPULSE_ settings point at (compose, cloud)."""
    settings = Settings()
    if os.environ.get("STOCKPULSE_TEST_EXTERNAL_STACK") != "1":
        from infra.local import stack

        stack.up(settings)
    return settings


ANALYST_QUERIES = Path(__file__).resolve().parents[1] / "docs" / "analyst-queries.sql"
BAD = [
    b"\x00\x00\x00\x00\x09 truncated",
    b"not a tick at all",
    b'{"symbol": "EURUSD", "ts_us": 1, "price": 1.0}',
]


@pytest.fixture(scope="session")
def ticks(stack_settings: Settings) -> Ticks:
    if not (stack_settings.data_dir / "eurusd_2020-01-01_quotes.csv").exists():
        pytest.skip(f"real recordings not found in {stack_settings.data_dir} (see ../shared/data/README.md)")
    return real_ticks(stack_settings)


@pytest.fixture(scope="session")
def clean(stack_settings: Settings, ticks: Ticks) -> dict[str, Any]:
    """A clean run in the default topology: every process up for the whole replay, plus three bad messages."""
    with pipeline(stack_settings, "clean") as run:
        run.start()
        run.send(ticks)
        run.finish(ticks, BAD)
        run.wait_for(lambda c: c["ticks"] > 0)  # the first ticks are stored; the rest are on their way
        sql = _stockpulse_sql(run, "--format", "json", "SELECT count() AS n FROM ticks FINAL")
        counts = run.wait_settled(len(ticks))
        analyst = _stockpulse_sql(run, "--file", str(ANALYST_QUERIES))  # services still up, data complete
        return {
            "run": run,
            "snapshot": run.snapshot(),
            "topics": run.topic_contents(),
            "counts": counts,
            "sql": sql,
            "analyst": analyst,
        }


def _stockpulse_sql(run: PipelineRun, *args: str) -> subprocess.CompletedProcess[str]:
    """``stockpulse sql`` in a process of its own, against the run's database, while the services run."""
    db = run.settings.clickhouse.database
    cmd = [str(Path(sys.executable).with_name("stockpulse")), "sql", "--database", db, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **run.env})
