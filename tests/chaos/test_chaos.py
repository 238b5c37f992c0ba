"""Chaos: during a real-data replay, kill and restart every service, fail over a Redis primary, kill the
PostgreSQL replica and then the primary (which holds every checkpoint), restart Triton and the
ClickHouse-owning process; then every store equals a clean run (0 lost, 0 duplicated ticks, bars,
indicators, signals, orders, fills, the derived rollups, daily signal statistics and performance, and the
hot state in Redis: chart bars, newest signals, positions), and
every output topic holds the clean run's records (duplicates produced again after a crash are counted in
the printed reconcile table; consumers collapse them by id). Prints the faults and outcomes.

``make test`` runs one round (each fault once); ``make chaos`` runs STOCKPULSE_CHAOS_ROUNDS (default 3).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from streams.config import Settings
from tests.conftest import BAD
from tests.support import faults
from tests.support.pipeline import PipelineRun, Ticks, distinct_records, pipeline, reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROUNDS = int(os.environ.get("STOCKPULSE_CHAOS_ROUNDS", "1"))
#: every store compared with the clean run, derived ones included (rollups, daily statistics, performance)
STORES = (
    "ticks", "bars", "pg_bars", "indicators", "signals", "orders", "fills",
    "ohlcv_1m", "ohlcv_1d", "signal_stats_1d", "daily_performance",
    "redis_bars", "redis_signals", "redis_positions",
)  # fmt: skip


def _plan(run: PipelineRun, settings: Settings) -> list[tuple[str, Callable[[], str]]]:
    steps: list[tuple[str, Callable[[], str]]] = [
        (f"SIGKILL {name}", lambda name=name: faults.kill_service(run, name))
        for name in run.layout  # type: ignore[misc]
    ]
    steps += [
        ("Redis primary killed (failover)", lambda: faults.redis_primary_failover(settings)),
        ("PostgreSQL replica killed", lambda: faults.postgres_replica_restart(settings)),
        ("PostgreSQL primary killed", lambda: faults.postgres_primary_restart(settings)),
        ("Triton stopped", lambda: faults.stack_restart(settings, "triton")),
        ("ClickHouse owner stopped", lambda: faults.stack_restart(settings, "clickhouse")),
    ]
    return steps


def test_faults_during_a_replay_leave_every_store_equal_to_a_clean_run(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any]
) -> None:
    n = len(ticks)
    rows: list[tuple[float, str, str, float]] = []
    with pipeline(stack_settings, "chaos-suite") as run:
        run.start()
        plan = [step for _ in range(ROUNDS) for step in _plan(run, stack_settings)]
        # the replay runs the whole time, slowly, so every fault hits a pipeline with data in flight
        rate = n / (12.0 * len(plan))
        sender = threading.Thread(target=run.send, args=(ticks, 0, n, rate), daemon=True)
        began = time.monotonic()
        sender.start()
        for name, inject in plan:
            time.sleep(4.0)
            t0 = time.monotonic()
            outcome = inject()
            rows.append((t0 - began, name, outcome, time.monotonic() - t0))
            run.check_alive()
        sender.join()
        run.finish(ticks, BAD)
        counts = run.wait_settled(n, timeout=300)
        snap = run.snapshot()
        topics = run.topic_contents()
    print(f"\nchaos: {ROUNDS} round(s), {len(rows)} faults during a {n:,}-tick replay at {rate:.0f} ticks/s")
    print("at (s) | fault | outcome | seconds")
    for at, name, outcome, secs in rows:
        print(f"{at:.0f} | {name} | {outcome} | {secs:.1f}")
    print("\n".join(reconcile(clean, snap, topics)))
    print("counts:", counts)
    for table in STORES:
        assert snap[table] == clean["snapshot"][table], f"{table} differ from the clean run"
    assert set(topics) == set(clean["topics"])
    for topic, rows in topics.items():  # a record produced again after a crash: consumers collapse it by id
        assert distinct_records(topic, rows) == distinct_records(topic, clean["topics"][topic]), topic
