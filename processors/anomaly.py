"""Streaming anomaly detection on performance metrics (pure code: no I/O).

Each metric series (a stage latency quantile, a throughput, an error or fallback rate, a lag) is watched by a
robust baseline: the median and median absolute deviation of its first ``warmup`` points, then an EWMA of
the value and of its absolute deviation, each update clipped at 4 scales so one spike cannot inflate them.
A point's score is ``(x - mean) / (1.4826 * mad + floor)`` in the bad direction of the metric (higher for
latencies, errors, fallbacks and lag; lower for throughput). A breach is a score above
``z_threshold`` for ``persistence`` consecutive points; breaching points do not move the baseline (a slowdown
must not teach the detector that slow is normal). Severity is ``critical`` when the score also exceeds
``critical_z`` (or the breach lasted ``critical_after`` points), else ``warning``.

Root-cause hint: when several metrics breach, the likely stage is the one whose series started to breach
first (a slow stage delays everything downstream, so the upstream latency moves first). Breaches that
start at the same observation are blamed on the most upstream metric (``MetricSpec.rank``: its position in
the pipeline, since a slow downstream stage cannot delay an upstream one), then on the larger score.

The detector needs ``warmup`` points per series before it alerts; ``floor`` (absolute, in the metric's
unit) plus ``rel_floor`` (a fraction of the baseline) keep near-constant series from alerting on noise: on
a quiet machine a 75 ms p99 can be so steady that a 25 ms bump would otherwise score 10.

>>> det = AnomalyDetector([MetricSpec("inference_p99_ms", "inference", floor=0.5)], DetectorConfig(warmup=20))
>>> import random; rnd = random.Random(1)
>>> [a for t in range(60) for a in det.update(t, {"inference_p99_ms": 2 + rnd.random() * 0.2})]
[]
>>> alerts = [a for t in range(60, 64) for a in det.update(t, {"inference_p99_ms": 40.0})]
>>> alerts[0].stage, alerts[0].severity, alerts[0].metric
('inference', 'critical', 'inference_p99_ms')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down"]
Severity = Literal["warning", "critical"]


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Thresholds and smoothing of every series (validated: all finite and positive)."""

    alpha: float = 0.05  # EWMA weight of a new normal point
    z_threshold: float = 6.0
    critical_z: float = 12.0
    persistence: int = 2  # consecutive breaching points before an alert
    critical_after: int = 10  # a breach this long is critical whatever its score
    warmup: int = 30  # points per series before it can alert
    realert_every: int = 30  # while a breach lasts, repeat its alert every this many points

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"DetectorConfig.alpha={self.alpha}: use a weight in (0, 1]")
        for name in ("z_threshold", "critical_z"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DetectorConfig.{name}={value}: use a finite score > 0")
        for name in ("persistence", "critical_after", "warmup", "realert_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"DetectorConfig.{name}={getattr(self, name)}: use a count >= 1")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One watched series: its name, the pipeline stage it belongs to, the bad direction, a noise floor
    (absolute, in the metric's unit: a deviation below it is never anomalous) and its position in the
    pipeline (``rank``: lower = further upstream; used to break ties of the root-cause hint). A
    ``cumulative`` metric (an end-to-end latency) moves whenever any stage it spans moves, so it is
    blamed only when no single-stage metric breaches."""

    name: str
    stage: str
    direction: Direction = "up"
    floor: float = 0.0
    rel_floor: float = 0.0  # and this fraction of the baseline: a 20% wobble of a 100 ms p99 is not news
    rank: int = 0
    cumulative: bool = False  # spans several stages (e.g. tick -> signal): alerted on, never blamed


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An alert: which metric, its stage, the likely root-cause stage, how bad, and the numbers."""

    ts: float
    metric: str
    stage: str
    likely_stage: str
    severity: Severity
    score: float
    value: float
    baseline: float
    breach_started: float
    message: str


@dataclass(slots=True)
class _Series:
    spec: MetricSpec
    n: int = 0
    mean: float = 0.0
    mad: float = 0.0
    run: int = 0  # consecutive breaching points
    started: float = math.nan  # ts of the first point of the current breach
    last_score: float = 0.0
    alerted_at_run: int = 0
    warm: list[float] = field(default_factory=list)

    @property
    def floor(self) -> float:
        return self.spec.floor + self.spec.rel_floor * abs(self.mean)

    @property
    def scale(self) -> float:
        return 1.4826 * self.mad + self.floor + 1e-12

    def score(self, x: float) -> float:
        dev = x - self.mean if self.spec.direction == "up" else self.mean - x
        if dev <= self.floor:
            return 0.0
        return dev / self.scale

    def learn(self, x: float, alpha: float, warmup: int) -> None:
        """Warm-up: the median and MAD of the first ``warmup`` points (start-up outliers do not count);
        then an EWMA of the value and of its absolute deviation, both clipped at 4 scales."""
        self.n += 1
        if self.n <= warmup:
            self.warm.append(x)
            ordered = sorted(self.warm)
            self.mean = ordered[len(ordered) // 2]
            devs = sorted(abs(v - self.mean) for v in ordered)
            self.mad = devs[len(devs) // 2]
            if self.n == warmup:
                self.warm = []
            return
        limit = 4 * self.scale
        d = max(-limit, min(limit, x - self.mean))
        self.mad += alpha * (min(abs(d), limit) - self.mad)
        self.mean += alpha * d


@dataclass
class AnomalyDetector:
    """Watches many series at once; ``update(ts, values)`` returns the alerts raised by these values."""

    specs: Iterable[MetricSpec]
    config: DetectorConfig = field(default_factory=DetectorConfig)

    def __post_init__(self) -> None:
        self._series = {s.name: _Series(s) for s in self.specs}
        if not self._series:
            raise ValueError("AnomalyDetector needs at least one MetricSpec")

    @property
    def metrics(self) -> list[str]:
        return list(self._series)

    def update(self, ts: float, values: Mapping[str, float]) -> list[Anomaly]:
        """Feed one observation per metric (missing or non-finite values are skipped)."""
        cfg = self.config
        breaching: list[_Series] = []
        for name, x in values.items():
            s = self._series.get(name)
            if s is None or x is None or not math.isfinite(x):
                continue
            z = s.score(x) if s.n >= cfg.warmup else 0.0
            s.last_score = z
            if z > cfg.z_threshold:
                if s.run == 0:
                    s.started = ts
                s.run += 1
                breaching.append(s)
            else:
                s.run, s.alerted_at_run, s.started = 0, 0, math.nan
                s.learn(x, cfg.alpha, cfg.warmup)
        due = [s for s in breaching if s.run >= cfg.persistence and self._due(s)]
        if not due:
            return []
        active = [s for s in self._series.values() if s.run >= cfg.persistence]
        own = [s for s in active if not s.spec.cumulative] or active
        root = min(own, key=lambda s: (s.started, s.spec.rank, -s.last_score))
        out = []
        for s in due:
            s.alerted_at_run = s.run
            critical = s.last_score > cfg.critical_z or s.run >= cfg.critical_after
            value = values[s.spec.name]
            out.append(
                Anomaly(
                    ts=ts,
                    metric=s.spec.name,
                    stage=s.spec.stage,
                    likely_stage=root.spec.stage,
                    severity="critical" if critical else "warning",
                    score=round(s.last_score, 2),
                    value=value,
                    baseline=s.mean,
                    breach_started=s.started,
                    message=(
                        f"{s.spec.name} is {value:.4g} against a baseline of {s.mean:.4g} "
                        f"(score {s.last_score:.1f}) for {s.run} points; likely stage: {root.spec.stage}"
                    ),
                )
            )
        return out

    def _due(self, s: _Series) -> bool:
        return s.alerted_at_run == 0 or s.run - s.alerted_at_run >= self.config.realert_every


def precision_recall(alerted: Iterable[bool], injected: Iterable[bool]) -> tuple[float, float]:
    """Precision and recall of alerts over windows that had an injected fault or not.

    >>> precision_recall([True, True, False, False], [True, False, True, False])
    (0.5, 0.5)
    """
    pairs = list(zip(alerted, injected, strict=True))
    tp = sum(a and i for a, i in pairs)
    fp = sum(a and not i for a, i in pairs)
    fn = sum(i and not a for a, i in pairs)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall
