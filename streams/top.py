"""``stockpulse top``: a live terminal view of the running pipeline for the person operating it.

Every interval it scrapes the services' /metrics (the monitor's targets) and shows, per service, whether
it answers and its ticks/s; per stage, p50/p99 latency over the last interval; the consumer lag per service
and topic (total and worst partition, from our own offsets: :func:`streams.scrape.lags`); the inference path
(fallback ratio), the hot-state cache hit ratio, sink errors and dead letters per second; and the newest
alerts from ``perf.alerts`` (published by ``stockpulse monitor``) next to the ones its own detector raises.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from confluent_kafka import Consumer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from schemas.serde import AvroSerde
from streams.config import Settings
from streams.monitor import Monitor, Step
from streams.scrape import STAGES


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def render(step: Step, targets: Iterable[str], alerts: Iterable[str]) -> Group:
    """The view of one step (a rich renderable)."""
    m = step.metrics
    services = Table(title="services", expand=True)
    for col in ("service", "/metrics", "ticks/s"):
        services.add_column(col, justify="right" if col == "ticks/s" else "left")
    for name in targets:
        up = "[red]down[/red]" if name in step.unreachable else "[green]up[/green]"
        services.add_row(name, up, _fmt(m.get(f"{name}_ticks_per_s"), digits=0))
    stages = Table(title="stage latency (last interval)", expand=True)
    for col in ("stage", "p50", "p99"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for stage in STAGES:
        stages.add_row(
            stage, _fmt(m.get(f"{stage}_p50_ms"), " ms", 2), _fmt(m.get(f"{stage}_p99_ms"), " ms", 2)
        )
    health = Table(title="health", expand=True)
    health.add_column("what")
    health.add_column("value", justify="right")
    fallback = m.get("fallback_ratio")
    path = "-" if fallback is None else ("fallback" if fallback > 0.5 else "triton")
    health.add_row("inference path", f"{path} ({_fmt(None if fallback is None else fallback * 100, '%')})")
    hit = m.get("cache_hit_ratio")
    health.add_row("cache hit ratio", _fmt(None if hit is None else hit * 100, "%"))
    health.add_row("sink errors + dead letters", _fmt(m.get("errors_per_s"), "/s", 2))
    lag = Table(title="consumer lag (messages, own offsets)", expand=True)
    for col in ("service", "topic", "total", "worst partition"):
        lag.add_column(col, justify="left" if col in ("service", "topic") else "right")
    by_topic: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for (service, topic, part), value in step.lags.items():
        by_topic.setdefault((service, topic), []).append((value, part))
    for (service, topic), values in sorted(by_topic.items()):
        worst, part = max(values)
        lag.add_row(service, topic, _fmt(sum(v for v, _ in values), digits=0), f"{worst:,.0f} (p{part})")
    recent = Table(title="latest alerts", expand=True)
    recent.add_column("alert")
    for line in alerts:
        recent.add_row(escape(line))  # alert text is data, not rich markup
    return Group(services, stages, health, lag, recent)


class _AlertTail:
    """The newest PerfAlerts on the topic (published by the monitor service)."""

    def __init__(self, settings: Settings, keep: int = 8) -> None:
        self.serde = AvroSerde.for_record("PerfAlert")
        self.lines: deque[str] = deque(maxlen=keep)
        self.consumer = Consumer(
            {
                **settings.kafka.librdkafka(),
                "group.id": f"{settings.service_group_prefix}-top-{time.time_ns()}",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([settings.topics.perf_alerts])

    def poll(self) -> None:
        for msg in self.consumer.consume(100, timeout=0):
            if msg.error() is None:
                a = self.serde.decode(msg.value() or b"")
                stamp = time.strftime("%H:%M:%S", time.localtime(a["ts_us"] / 1e6))
                self.lines.appendleft(f"{stamp} [{a['severity']}] {a['message']}")

    def close(self) -> None:
        self.consumer.close()


def run_top(settings: Settings, seconds: float | None = None) -> None:
    monitor = Monitor(settings)
    tail = _AlertTail(settings)
    own: deque[str] = deque(maxlen=8)
    interval = settings.monitor.interval_s
    end = None if seconds is None else time.monotonic() + seconds
    try:
        with Live(auto_refresh=False, screen=False) as live:
            while end is None or time.monotonic() < end:
                step = monitor.step()
                for a in step.alerts:
                    own.appendleft(f"{time.strftime('%H:%M:%S')} [{a.severity}] (local) {a.message}")
                tail.poll()
                live.update(render(step, monitor.targets, [*tail.lines, *own][:8]), refresh=True)
                time.sleep(interval)
    finally:
        tail.close()
        monitor.close()
