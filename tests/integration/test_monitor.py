"""The monitor against a running pipeline: quiet while it is healthy, an alert within 10 s naming the right
stage when one stage is slowed (its process throttled with SIGSTOP/SIGCONT) and when Triton is stopped.
Prints the faults injected, the time to alert and precision/recall over them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import generate_latest

from infra.local import stack
from processors.anomaly import Anomaly, precision_recall
from processors.simulate import simulate
from streams.config import Settings
from streams.monitor import Monitor, Step
from streams.topology import process_of
from tests.support.pipeline import PipelineRun, pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# 1s signals for many latency samples; few partitions so 400 ticks/s still make TickBatches of several ticks
ENV = {
    "STOCKPULSE_SIGNAL__TIMEFRAMES": '["1s","1m"]',
    "STOCKPULSE_TRITON__TIMEOUT_MS": "1000",  # a busy 2-core machine must not turn slow calls into faults
    **{f"STOCKPULSE_TOPICS__{t}_PARTITIONS": "2" for t in ("TICK", "BAR", "SIGNAL", "ORDER")},
}


SPEEDUP = 5  # event time runs 5x the wall clock: indicators warm up in seconds, not minutes


def _feed(run: PipelineRun, stop: threading.Event) -> None:
    """Simulated ticks, 400 ticks/s of wall time over 10 symbols, event time 5x the wall clock."""
    sim = simulate(symbols=10, rate=400 / SPEEDUP, seconds=240 * SPEEDUP, seed=3)
    t0, start_us = time.monotonic(), time.time_ns() // 1000
    ts = sim.ts_us - sim.ts_us[0] + start_us
    step = 100
    for i in range(0, len(ts), step):
        if stop.is_set():
            return
        j = i + step
        run.producer.send(sim.symbols, sim.symbol_index[i:j], ts[i:j], sim.price[i:j], sim.size[i:j])
        due = t0 + (ts[min(j, len(ts) - 1)] - start_us) / 1e6 / SPEEDUP
        time.sleep(max(0.0, due - time.monotonic()))


def _throttle(pid: int, seconds: float) -> None:
    """Leave the process group 10% of the wall time: a slow stage that still answers (slowly)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        os.killpg(pid, signal.SIGSTOP)
        time.sleep(0.9)
        os.killpg(pid, signal.SIGCONT)
        time.sleep(0.1)


def _steps(monitor: Monitor, seconds: float) -> Iterator[Step]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        yield monitor.step()
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))


def _first_alert(
    monitor: Monitor, seconds: float, seen: list[Step] | None = None
) -> tuple[float, Anomaly | None]:
    t0 = time.monotonic()
    for step in _steps(monitor, seconds):
        if seen is not None:
            seen.append(step)
        if step.alerts:
            return time.monotonic() - t0, step.alerts[0]
    return seconds, None


def test_alerts_name_the_slowed_stage_and_stay_quiet_otherwise(stack_settings: Settings) -> None:
    parts = {f"{t}_partitions": 2 for t in ("tick", "bar", "signal", "order")}
    small = stack_settings.model_copy(update={"topics": stack_settings.topics.model_copy(update=parts)})
    with pipeline(small, "monitor", ENV) as run:
        run.start()
        stop = threading.Event()
        feeder = threading.Thread(target=_feed, args=(run, stop), daemon=True)
        feeder.start()
        settings = run.settings.model_copy(
            update={"monitor": run.settings.monitor.model_copy(update={"warmup": 15})}
        )
        monitor = Monitor(settings, run.metrics_targets)
        try:
            for step in _steps(monitor, 60):  # start-up: until signals flow end to end
                run.check_alive()
                if "tick_to_signal_p99_ms" in step.metrics:
                    break
            else:
                pytest.fail("signals never flowed")
            calm = list(_steps(monitor, 35))  # warm-up and a clean stretch
            clean = [a for step in calm for a in step.alerts]
            assert clean == [], [a.message for a in clean]
            price_proc = process_of("price", run.settings.topology).name  # the engine when chained
            consumers = {(svc, topic.removeprefix(f"{run.run}.")) for svc, topic, _ in calm[-1].lags}
            assert {("feed", "ticks.raw"), (price_proc, "ticks"), ("sink", "ticks")} <= consumers, consumers
            exported = generate_latest().decode()  # the monitor's /metrics: what the Grafana lag panels read
            assert f'service="{price_proc}",topic="{run.run}.ticks"' in exported
            sink_lag = [sum(v for (svc, _, _), v in st.lags.items() if svc == "sink") for st in calm]
            os.killpg(run.procs["sink"].pid, signal.SIGSTOP)  # the sink stops reading: its lag must grow
            try:
                stopped = [
                    sum(v for (svc, _, _), v in st.lags.items() if svc == "sink") for st in _steps(monitor, 4)
                ]
            finally:
                os.killpg(run.procs["sink"].pid, signal.SIGCONT)
            print(f"sink lag (messages): calm max {max(sink_lag):.0f}, stopped 4 s {stopped[-1]:.0f}")
            assert stopped[-1] > max(sink_lag), (sink_lag, stopped)
            for _ in _steps(monitor, 6):  # the sink catches up
                pass

            throttler = threading.Thread(target=_throttle, args=(run.procs[price_proc].pid, 8.0))
            throttler.start()
            price_s, price_alert = _first_alert(monitor, 10)
            throttler.join()
            for _ in _steps(monitor, 12):  # recover
                pass

            stack.down(stack_settings, ["triton"])
            try:
                triton_s, triton_alert = _first_alert(monitor, 10)
            finally:
                stack.up(stack_settings, ["triton"])
            quiet = [a for st in _steps(monitor, 8) for a in st.alerts if a.likely_stage != "inference"]
        finally:
            stop.set()
            monitor.close()
    rows = [(f"{price_proc} (runs price) throttled to 10% of the time", "price", price_s, price_alert),
            ("Triton stopped", "inference", triton_s, triton_alert)]  # fmt: skip
    print("\nfault | expected stage | alerted after | alert")
    for name, want, secs, alert in rows:
        print(f"{name} | {want} | {secs:.1f} s | {alert.message if alert else 'none'}")
    hits = [a is not None and a.likely_stage == want for _, want, _, a in rows]
    precision, recall = precision_recall([*hits, bool(quiet)], [True, True, False])
    print(f"precision {precision:.2f}, recall {recall:.2f} over {len(rows)} injected faults + 1 clean window")
    assert price_alert is not None and price_alert.likely_stage == "price", price_alert
    assert triton_alert is not None and triton_alert.likely_stage == "inference", triton_alert
    assert max(price_s, triton_s) <= 10.0
    assert np.isfinite(price_alert.score) and price_alert.severity in ("warning", "critical")
