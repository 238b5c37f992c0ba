"""The monitor service (``stockpulse monitor``): scrapes every service's /metrics, runs the streaming anomaly
detector (:mod:`processors.anomaly`) over the interval metrics (:mod:`streams.scrape`), and publishes a
``PerfAlert`` (Avro) to ``perf.alerts`` for each alert, with the severity and the likely stage.

Watched: the p50 and p99 of every stage latency (tick -> bar, bar -> indicator, inference, tick -> signal,
tick -> order; the median is the steadier signal on a busy machine, the p99 catches tail-only slowdowns),
the fallback ratio of the signal model, and sink errors + dead letters per second.
Consumer lag per service and partition (:func:`streams.scrape.lags`, from our own offsets) is exported on
the monitor's /metrics as ``stockpulse_consumer_lag`` for the Grafana lag panels.
Throughput is shown by ``stockpulse top`` but not alerted on: it follows the input rate, which the
pipeline does not control. A target whose /metrics stops answering raises a critical alert for its
service after ``persistence`` scrapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from confluent_kafka import Producer

from processors.anomaly import Anomaly, AnomalyDetector, DetectorConfig, MetricSpec
from schemas.serde import AvroSerde
from streams.config import Settings
from streams.metrics import CONSUMER_LAG
from streams.scrape import STAGES, Scrape, interval_metrics, lags, scrape
from streams.topology import STAGES as STAGES_BY_NAME

log = logging.getLogger("stockpulse.monitor")

#: stage latency -> the pipeline stage it points at (from the topology; inference is its own suspect)
STAGE_OF = {
    **{series: stage.name for stage in STAGES_BY_NAME.values() for series in stage.latencies},
    "inference": "inference",
}


#: end-to-end latencies: they move with any stage they span, so they never name the root cause alone
CUMULATIVE = frozenset({"tick_to_signal", "tick_to_order"})


def metric_specs() -> list[MetricSpec]:
    """The watched series, ranked in pipeline order (upstream first) for the root-cause hint."""
    specs = [
        MetricSpec(f"{s}_{q}_ms", STAGE_OF[s], "up", 2.0, 0.5, rank=i, cumulative=s in CUMULATIVE)
        for i, s in enumerate(STAGES)
        for q in ("p50", "p99")
    ]
    specs.append(MetricSpec("fallback_ratio", "inference", "up", floor=0.05, rank=STAGES.index("inference")))
    specs.append(MetricSpec("errors_per_s", "sink", "up", floor=1.0, rank=len(STAGES)))
    return specs


def detector_config(settings: Settings) -> DetectorConfig:
    m = settings.monitor
    return DetectorConfig(
        z_threshold=m.z_threshold, critical_z=m.critical_z, persistence=m.persistence, warmup=m.warmup
    )


@dataclass
class Step:
    """One monitor step: the interval metrics, unreachable targets and the alerts raised."""

    ts: float
    metrics: dict[str, float]
    unreachable: dict[str, str]
    alerts: list[Anomaly]
    lags: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (service, topic, partition)


class Monitor:
    """Scrape -> derive -> detect -> publish; ``step()`` does one round (the loop calls it every interval)."""

    def __init__(
        self,
        settings: Settings,
        targets: dict[str, str] | None = None,
        publish: Callable[[Anomaly], None] | None = None,
    ) -> None:
        self.settings = settings
        self.targets = targets if targets is not None else settings.monitor.target_map()
        if not self.targets:
            raise ValueError(
                "no targets to monitor: set STOCKPULSE_MONITOR__TARGETS=service=http://host:port/metrics,... "
                "(each service serves /metrics on its STOCKPULSE_METRICS_PORT)"
            )
        self.detector = AnomalyDetector(metric_specs(), detector_config(settings))
        self.publish = publish
        self._pool = ThreadPoolExecutor(max(1, len(self.targets)), thread_name_prefix="scrape")
        self._last: tuple[float, Scrape] | None = None
        self._down: dict[str, int] = {}

    def _scrape(self) -> tuple[Scrape, dict[str, str]]:
        merged: Scrape = {}
        errors: dict[str, str] = {}
        futures = {n: self._pool.submit(scrape, {n: u}) for n, u in self.targets.items()}
        for fut in futures.values():
            got, errs = fut.result()
            merged.update(got)
            errors.update(errs)
        return merged, errors

    def step(self) -> Step:
        now = time.time()
        current, errors = self._scrape()
        metrics: dict[str, float] = {}
        alerts: list[Anomaly] = []
        if self._last is not None:
            then, previous = self._last
            metrics = interval_metrics(previous, current, max(1e-6, now - then))
            alerts = self.detector.update(now, metrics)
        alerts += self._unreachable(now, errors)
        # a silent target keeps its last counters, so its next answer is compared with them
        previous = self._last[1] if self._last else {}
        silent = {k: v for k, v in previous.items() if dict(k[1]).get("target") in errors}
        self._last = (now, {**silent, **current})
        for alert in alerts:
            log.warning("perf alert [%s] %s", alert.severity, alert.message)
            if self.publish is not None:
                self.publish(alert)
        lag = lags(self._last[1])
        CONSUMER_LAG.clear()  # a partition that moved to another worker is reported by that one
        for (service, topic, part), value in lag.items():
            CONSUMER_LAG.labels(service, topic, part).set(value)
        return Step(now, metrics, errors, alerts, lag)

    def _unreachable(self, now: float, errors: dict[str, str]) -> list[Anomaly]:
        out = []
        for name in self.targets:
            if name not in errors:
                self._down.pop(name, None)
                continue
            n = self._down[name] = self._down.get(name, 0) + 1
            if n == self.settings.monitor.persistence:
                out.append(
                    Anomaly(
                        ts=now,
                        metric=f"{name}_up",
                        stage=name,
                        likely_stage=name,
                        severity="critical",
                        score=float("inf"),
                        value=0.0,
                        baseline=1.0,
                        breach_started=now,
                        message=f"{name} /metrics ({self.targets[name]}) not answering for {n} scrapes: "
                        f"{errors[name]}; is the process alive (`stockpulse top`, its log)?",
                    )
                )
        return out

    def run(self, seconds: float | None = None) -> None:
        """Step every ``monitor.interval_s`` until interrupted (or for ``seconds``)."""
        interval = self.settings.monitor.interval_s
        end = None if seconds is None else time.monotonic() + seconds
        next_at = time.monotonic()
        while end is None or time.monotonic() < end:
            self.step()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class AlertPublisher:
    """Produces ``PerfAlert`` records to ``perf.alerts`` (confluent-kafka, acks=all, key = metric)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topics.perf_alerts
        self.serde = AvroSerde.for_record("PerfAlert")
        self.producer = Producer({**settings.kafka.librdkafka(consumer=False), "acks": "all", "linger.ms": 5})

    def __call__(self, a: Anomaly) -> None:
        record = {
            "alert_id": f"{a.metric}|{int(a.breach_started * 1e6)}|{int(a.ts * 1e6)}",
            "metric": a.metric,
            "stage": a.stage,
            "likely_stage": a.likely_stage,
            "severity": a.severity,
            "score": a.score if a.score != float("inf") else 1e9,
            "value": a.value,
            "baseline": a.baseline,
            "breach_started_us": int(a.breach_started * 1e6),
            "ts_us": int(a.ts * 1e6),
            "message": a.message,
        }
        self.producer.produce(self.topic, self.serde.encode(record), key=a.metric.encode())
        self.producer.poll(0)

    def flush(self, timeout: float = 10.0) -> None:
        self.producer.flush(timeout)
