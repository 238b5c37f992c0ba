"""The whole pipeline on the real recordings, as separate processes on the real local stack.

- counts reconcile between the input, the dead-letter topic, the output topics and every store;
- SIGKILL of each service in turn, mid-replay, leaves the stores identical to a clean run;
- stopping Triton mid-run switches signals to the in-process fallback and back, with no gap.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest

from infra.local import stack
from processors.features import N_FEATURES
from schemas.serde import AvroSerde
from streams.config import Settings
from streams.inference import SignalModelClient
from tests.conftest import ANALYST_QUERIES, BAD
from tests.support.kafka import read_topic
from tests.support.pipeline import PipelineRun, Ticks, pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_stockpulse_sql_answers_while_the_pipeline_runs(clean: dict[str, Any], ticks: Ticks) -> None:
    sql, analyst = clean["sql"], clean["analyst"]
    assert sql.returncode == 0, sql.stdout + sql.stderr
    n = json.loads(sql.stdout.strip().splitlines()[-1])["n"]
    assert 0 <= int(n) <= len(ticks), n
    assert len(clean["snapshot"]["ticks"]) == len(ticks)
    assert analyst.returncode == 0, analyst.stdout + analyst.stderr
    from streams.sql import split_statements

    statements = split_statements(ANALYST_QUERIES.read_text())
    assert len(statements) >= 8 and analyst.stdout.count("row(s)") == len(statements), analyst.stdout
    assert "0 row(s)" not in analyst.stdout.splitlines(), (
        f"every analyst query returns rows on real data:\n{analyst.stdout}"
    )


def _distinct(settings: Settings, topic: str, record: str, key: str, expected: int) -> set[str]:
    serde = AvroSerde.for_record(record)

    def enough(values: list[Any]) -> bool:
        return len({x[key] for x in values}) >= expected

    values = read_topic(settings, topic, until=enough, decode=serde.decode, timeout=20)
    return {v[key] for v in values}


def test_counts_reconcile_across_topics_and_stores(clean: dict[str, Any], ticks: Ticks) -> None:
    run: PipelineRun = clean["run"]
    snap, s = clean["snapshot"], run.settings
    dead = read_topic(s, s.topics.dead_letter, until=lambda v: len(v) >= len(BAD), timeout=20,
                      decode=AvroSerde.for_record("DeadLetter").decode)  # fmt: skip
    assert len(dead) == len(BAD) and {d["reason_code"] for d in dead} <= {
        "corrupt_payload",
        "invalid_timestamp",
    }
    assert len(snap["ticks"]) + len(dead) == len(ticks) + len(BAD), "ticks in = ticks stored + dead letters"
    assert sum(b[8] for b in snap["bars"] if b[1] == "1s") == len(ticks)
    assert sum(b[8] for b in snap["bars"] if b[1] == "1m") == len(ticks)
    assert snap["pg_bars"] == snap["bars"], "bars in ClickHouse = bars in PostgreSQL historical_data"
    signals = _distinct(s, s.topics.signals, "Signal", "signal_id", len(snap["signals"]))
    assert signals == {row[0] for row in snap["signals"]} and signals, "signals on the topic = in ClickHouse"
    orders = _distinct(s, s.topics.orders, "Order", "order_id", len(snap["orders"]))
    assert orders == {row[0] for row in snap["orders"]}, "orders on the topic = rows in PostgreSQL"
    accepted = {row[0] for row in snap["orders"] if row[5] == "ACCEPTED"}
    assert {f"f-{o[2:]}" for o in accepted} == {row[0] for row in snap["fills"]}, (
        "one fill per accepted order"
    )
    assert len(snap["indicators"]) == len(snap["bars"])


def test_sigkill_of_every_service_mid_replay_matches_a_clean_run(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any]
) -> None:
    n = len(ticks)
    with pipeline(stack_settings, "chaos") as run:
        run.start()
        faults = []
        names = list(run.layout)
        step = n // (len(names) + 1)
        for i, name in enumerate(names):
            run.send(ticks, i * step, (i + 1) * step, rate=2000)
            run.kill(name)
            run.start(name)
            faults.append((name, (i + 1) * step))
        run.send(ticks, len(names) * step, n, rate=2000)
        run.finish(ticks, BAD)
        counts = run.wait_settled(n, timeout=180)
        snap = run.snapshot()
    print("\nfaults injected (SIGKILL + restart, after N ticks sent):", faults)
    print("store counts, clean vs chaos:", {k: (clean["counts"][k], counts[k]) for k in counts})
    for table in ("ticks", "bars", "pg_bars", "indicators", "signals", "orders", "fills"):
        assert snap[table] == clean["snapshot"][table], f"{table} differ from the clean run"


async def _until_triton_serves(settings: Settings, timeout: float = 60.0) -> None:
    """One prediction answered by Triton itself (not the fallback), retried until it is."""
    X = np.zeros((1, N_FEATURES), np.float32)
    deadline = time.monotonic() + timeout
    async with SignalModelClient(settings.triton) as client:
        while (await client.predict(X)).path != "triton":
            assert time.monotonic() < deadline, f"Triton did not serve again: {client.stats.last_error}"
            await asyncio.sleep(0.2)


def test_triton_outage_falls_back_and_recovers_without_a_gap(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any]
) -> None:
    n = len(ticks)
    with pipeline(stack_settings, "triton-outage") as run:
        run.start()
        run.send(ticks, 0, n // 3, rate=3000)
        s = run.settings
        serde = AvroSerde.for_record("Signal")
        stack.down(stack_settings, ["triton"])
        try:
            run.send(ticks, n // 3, 2 * n // 3, rate=3000)
            # Triton stays down until signals were made without it (the services may still be starting)
            read_topic(s, s.topics.signals, until=lambda v: any(x["inference_path"] == "fallback" for x in v),
                       timeout=120, decode=serde.decode)  # fmt: skip
        finally:
            stack.up(stack_settings, ["triton"])
        asyncio.run(_until_triton_serves(stack_settings))  # its first inference after a start is slow
        time.sleep(stack_settings.triton.breaker_cooldown_ms / 1000 + 1)  # then the service's probe succeeds
        run.send(ticks, 2 * n // 3, n, rate=3000)
        run.finish(ticks, BAD)
        run.wait_settled(n, timeout=180)
        snap = run.snapshot()
        signals = read_topic(s, s.topics.signals, until=lambda v: len(v) >= len(snap["signals"]), timeout=20,
                             decode=serde.decode)  # fmt: skip
    paths = [sig["inference_path"] for sig in sorted(signals, key=lambda x: (x["symbol"], x["start_us"]))]
    assert "fallback" in paths and "triton" in paths, f"paths seen: {set(paths)}"
    assert [row[:4] for row in snap["signals"]] == [row[:4] for row in clean["snapshot"]["signals"]], (
        "every bar got its signal, same ids and actions as the clean run"
    )
