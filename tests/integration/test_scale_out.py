"""Scale-out: several processes of every worker in one consumer group, in both topologies, during a real-data
replay: a second of each from the start, a third joining (rebalance), one of each SIGKILLed, one leaving
cleanly. Every store, derived ones included, equals the single-worker clean run; every output topic holds
the clean run's records (a record produced again after a crash is counted: consumers collapse it by id)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from streams.config import Settings
from tests.chaos.test_chaos import STORES
from tests.conftest import BAD
from tests.support.pipeline import Ticks, distinct_records, pipeline, reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("topology", ["chained", "split"])
def test_workers_joining_crashing_and_leaving_mid_replay_change_no_store_and_no_topic(
    stack_settings: Settings, ticks: Ticks, clean: dict[str, Any], topology: str
) -> None:
    n = len(ticks)
    with pipeline(stack_settings.model_copy(update={"topology": topology}), f"scale-{topology}") as run:
        workers = [name for name in run.layout if name != "feed"]
        run.start()
        second = {w: run.add(w) for w in workers}
        sender = threading.Thread(target=run.send, args=(ticks, 0, n, n / 50.0), daemon=True)
        sender.start()
        steps: list[tuple[float, str]] = []
        began = time.monotonic()
        time.sleep(12)
        third = {w: run.add(w) for w in workers}
        steps.append((time.monotonic() - began, f"a third {'/'.join(workers)} joined"))
        time.sleep(12)
        for w in workers:
            run.remove(second[w], kill=True)
        steps.append((time.monotonic() - began, "one of each SIGKILLed"))
        time.sleep(12)
        for w in workers:
            run.remove(third[w])
        steps.append((time.monotonic() - began, "one of each stopped (SIGTERM)"))
        run.check_alive()
        sender.join()
        run.finish(ticks, BAD)
        run.wait_settled(n, timeout=300)
        snap = run.snapshot()
        topics = run.topic_contents()
    print(
        f"\nscale-out ({topology}): {n:,} ticks at {n / 50:.0f} ticks/s; "
        + "; ".join(f"{t:.0f} s: {what}" for t, what in steps)
    )
    print("\n".join(reconcile(clean, snap, topics)))
    for table in STORES:
        assert snap[table] == clean["snapshot"][table], f"{table} differs from the single-worker clean run"
    assert set(topics) == set(clean["topics"])
    for topic, rows in topics.items():
        assert distinct_records(topic, rows) == distinct_records(topic, clean["topics"][topic]), topic
