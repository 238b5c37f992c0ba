"""Scraping the services' Prometheus endpoints and turning two scrapes into interval metrics.

A scrape is the text exposition format parsed into ``{(name, labels): value}``. Between two scrapes of the
same targets, :func:`interval_metrics` derives what the anomaly detector and ``stockpulse top`` watch:

* ``<stage>_p50_ms`` / ``<stage>_p99_ms``: quantiles of ``stockpulse_stage_latency_seconds{stage}`` over the
  observations of the interval only (bucket deltas, linear inside a bucket, like PromQL's
  ``histogram_quantile``); absent when the interval had none;
* ``<service>_ticks_per_s``: the rate of ``stockpulse_ticks_total{service}``;
* ``fallback_ratio``: fallback predictions / all predictions in the interval;
* ``errors_per_s``: sink errors plus dead letters per second;
* ``cache_hit_ratio``: hot-state hits / lookups in the interval.

:func:`lags` gives each consumer's lag per partition from one scrape, from our own offsets: a topic's end is
the highest ``stockpulse_produced_offset`` any of our producers reports (the offsets the broker acknowledged
to them), a service's position its ``stockpulse_consumed_offset``; for an input whose producers are not ours
(``ticks.raw``) the end is the one the consuming service saw in its last fetch response.

>>> text = 'stockpulse_ticks_total{service="price"} 100\\n'
>>> a = parse(text); b = parse(text.replace("100", "1100"))
>>> interval_metrics(a, b, 2.0)["price_ticks_per_s"]
500.0
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]
Scrape = dict[Key, float]

STAGES = ("tick_to_bar", "bar_to_indicator", "inference", "tick_to_signal", "tick_to_order")


def parse(text: str, extra: Mapping[str, str] | None = None) -> Scrape:
    """The samples of an exposition text, labels sorted; ``extra`` labels are added to each."""
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {**sample.labels, **(extra or {})}
            out[(sample.name, tuple(sorted(labels.items())))] = float(sample.value)
    return out


def scrape(targets: Mapping[str, str], timeout_s: float = 2.0) -> tuple[Scrape, dict[str, str]]:
    """Scrape every target (``service -> url``); returns the merged samples (labelled ``target=service``)
    and ``service -> error`` for the targets that did not answer."""
    merged: Scrape = {}
    errors: dict[str, str] = {}
    for name, url in targets.items():
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                merged.update(parse(resp.read().decode(), {"target": name}))
        except (OSError, ValueError) as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    return merged, errors


def _sum(s: Scrape, name: str, **match: str) -> float:
    total = 0.0
    for (n, labels), v in s.items():
        if n == name and all(dict(labels).get(k) == want for k, want in match.items()):
            total += v
    return total


def _delta(a: Scrape, b: Scrape, name: str, **match: str) -> float:
    """The increase of a counter between scrapes (a restarted process counts from zero)."""
    d = _sum(b, name, **match) - _sum(a, name, **match)
    return d if d >= 0 else _sum(b, name, **match)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The q-quantile from cumulative ``(upper_bound, count)`` buckets (``+Inf`` last), PromQL-style.

    >>> histogram_quantile(0.5, [(0.001, 0), (0.002, 10), (float("inf"), 10)])
    0.0015
    """
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = upper, count
    return lower


def _stage_buckets(a: Scrape, b: Scrape, stage: str) -> list[tuple[float, float]]:
    per_le: dict[float, float] = defaultdict(float)
    name = "stockpulse_stage_latency_seconds_bucket"
    for snap, sign in ((b, 1.0), (a, -1.0)):
        for (n, labels), v in snap.items():
            lab = dict(labels)
            if n == name and lab.get("stage") == stage:
                per_le[float(lab["le"])] += sign * v
    return sorted((le, max(0.0, c)) for le, c in per_le.items())


def interval_metrics(a: Scrape, b: Scrape, seconds: float) -> dict[str, float]:
    """The metrics of the interval between scrapes ``a`` and ``b`` (see the module docstring)."""
    out: dict[str, float] = {}
    for stage in STAGES:
        buckets = _stage_buckets(a, b, stage)
        if buckets and buckets[-1][1] > 0:
            out[f"{stage}_p50_ms"] = histogram_quantile(0.5, buckets) * 1000
            out[f"{stage}_p99_ms"] = histogram_quantile(0.99, buckets) * 1000
    services = {dict(labels).get("service") for (n, labels) in b if n == "stockpulse_ticks_total"}
    for service in sorted(s for s in services if s):
        out[f"{service}_ticks_per_s"] = _delta(a, b, "stockpulse_ticks_total", service=service) / seconds
    fallback = _delta(a, b, "stockpulse_inference_total", path="fallback")
    predictions = _delta(a, b, "stockpulse_inference_total")
    if predictions > 0:
        out["fallback_ratio"] = fallback / predictions
    errors = _delta(a, b, "stockpulse_sink_errors_total") + _delta(a, b, "stockpulse_dead_letters_total")
    out["errors_per_s"] = errors / seconds
    hits = _delta(a, b, "stockpulse_cache_requests_total", result="hit")
    lookups = _delta(a, b, "stockpulse_cache_requests_total")
    if lookups > 0:
        out["cache_hit_ratio"] = hits / lookups
    return out


def lags(s: Scrape) -> dict[tuple[str, str, str], float]:
    """(service, topic, partition) -> messages the service has still to apply (see the module docstring).

    >>> text = (
    ...     'stockpulse_produced_offset{topic="ticks",partition="0"} 120\\n'
    ...     'stockpulse_consumed_offset{service="engine",topic="ticks",partition="0"} 100\\n'
    ...     'stockpulse_consumed_offset{service="feed",topic="ticks.raw",partition="0"} 40\\n'
    ...     'stockpulse_input_end_offset{topic="ticks.raw",partition="0"} 45\\n'
    ... )
    >>> lags(parse(text))
    {('engine', 'ticks', '0'): 20.0, ('feed', 'ticks.raw', '0'): 5.0}
    """
    ends: dict[tuple[str, str], float] = {}
    for name in ("stockpulse_input_end_offset", "stockpulse_produced_offset"):
        for (n, labels), v in s.items():
            if n == name:
                lab = dict(labels)
                key = (lab["topic"], lab["partition"])
                ends[key] = max(ends.get(key, 0.0), v)
    out: dict[tuple[str, str, str], float] = {}
    for (n, labels), v in s.items():
        if n == "stockpulse_consumed_offset":
            lab = dict(labels)
            end = ends.get((lab["topic"], lab["partition"]))
            if end is not None:
                out[(lab["service"], lab["topic"], lab["partition"])] = max(0.0, end - v)
    return dict(sorted(out.items()))
