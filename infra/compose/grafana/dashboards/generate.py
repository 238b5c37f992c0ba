"""Writes stockpulse.json, the provisioned Grafana dashboard (run: python generate.py).

Kept as code so panels stay consistent; the JSON is committed so Grafana needs nothing else.
Metric names are the pipeline's: stockpulse_messages_total{service,topic},
stockpulse_ticks_total{service}, stockpulse_stage_latency_seconds_bucket{stage},
stockpulse_consumer_lag{service,topic,partition}, stockpulse_inference_total{path},
stockpulse_cache_requests_total{result}, stockpulse_sink_errors_total{sink}, stockpulse_late_ticks_total
{timeframe}, stockpulse_watermark_delay_seconds, stockpulse_tick_delay_seconds_bucket,
stockpulse_watermarks_total{service}.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "prometheus"}
SVC = 'service=~"$service"'


def target(expr: str, legend: str, ref: str = "A") -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def timeseries(
    pid: int,
    title: str,
    x: int,
    y: int,
    targets: list[dict],
    unit: str,
    w: int = 12,
    description: str = "",
    stack: bool = False,
) -> dict:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "targets": [target(*t[:2], ref=chr(65 + i)) for i, t in enumerate(targets)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    pid: int,
    title: str,
    x: int,
    y: int,
    expr: str,
    unit: str,
    thresholds: list[tuple[str, float | None]],
    w: int = 4,
    decimals: int | None = None,
) -> dict:
    defaults: dict = {
        "unit": unit,
        "thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in thresholds]},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "id": pid,
        "type": "stat",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 4, "w": w, "x": x, "y": y},
        "targets": [target(expr, "", "A")],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "value",
        },
    }


def row(pid: int, title: str, y: int) -> dict:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
    }


def build() -> dict:
    hit_ratio = (
        'sum(rate(stockpulse_cache_requests_total{result="hit"}[$__rate_interval]))'
        " / clamp_min(sum(rate(stockpulse_cache_requests_total[$__rate_interval])), 1e-9)"
    )
    fallback_ratio = (
        'sum(rate(stockpulse_inference_total{path="fallback"}[$__rate_interval]))'
        " / clamp_min(sum(rate(stockpulse_inference_total[$__rate_interval])), 1e-9)"
    )
    buckets = "sum by (le, stage) (rate(stockpulse_stage_latency_seconds_bucket[$__rate_interval]))"
    p99 = f"histogram_quantile(0.99, {buckets})"
    p50 = f"histogram_quantile(0.50, {buckets})"
    green, amber, red = "green", "orange", "red"
    panels = [
        row(1, "Overview", 0),
        stat(
            2,
            "Ticks / s",
            0,
            1,
            f"sum(rate(stockpulse_ticks_total{{{SVC}}}[$__rate_interval]))",
            "short",
            [(green, None)],
            decimals=0,
        ),
        stat(
            3,
            "Worst stage p99",
            4,
            1,
            "max(histogram_quantile(0.99, sum by (le, stage) "
            "(rate(stockpulse_stage_latency_seconds_bucket[5m]))))",
            "s",
            [(green, None), (amber, 0.05), (red, 0.25)],
        ),
        stat(
            4,
            "Consumer lag (messages)",
            8,
            1,
            f"sum(stockpulse_consumer_lag{{{SVC}}})",
            "short",
            [(green, None), (amber, 10000), (red, 100000)],
            decimals=0,
        ),
        stat(
            5,
            "Inference fallback share",
            12,
            1,
            fallback_ratio,
            "percentunit",
            [(green, None), (amber, 0.01), (red, 0.1)],
        ),
        stat(
            6, "Cache hit ratio", 16, 1, hit_ratio, "percentunit", [(red, None), (amber, 0.8), (green, 0.95)]
        ),
        stat(
            7,
            "Sink errors (5m)",
            20,
            1,
            "sum(increase(stockpulse_sink_errors_total[5m]))",
            "short",
            [(green, None), (red, 1)],
            decimals=0,
        ),
        row(10, "Throughput", 5),
        timeseries(
            11,
            "Messages / s by service and topic",
            0,
            6,
            [
                (
                    f"sum by (service, topic) (rate(stockpulse_messages_total{{{SVC}}}[$__rate_interval]))",
                    "{{service}} {{topic}}",
                )
            ],
            "short",
            description="Kafka messages consumed/produced per service and topic.",
        ),
        timeseries(
            12,
            "Ticks / s by service",
            12,
            6,
            [(f"sum by (service) (rate(stockpulse_ticks_total{{{SVC}}}[$__rate_interval]))", "{{service}}")],
            "short",
            description="Ticks inside the messages (a TickBatch carries many).",
            stack=True,
        ),
        row(20, "Stage latencies", 14),
        timeseries(
            21,
            "Stage latency p99",
            0,
            15,
            [(p99, "{{stage}} p99")],
            "s",
            description="histogram_quantile over stockpulse_stage_latency_seconds_bucket.",
        ),
        timeseries(22, "Stage latency p50", 12, 15, [(p50, "{{stage}} p50")], "s"),
        row(30, "Kafka", 23),
        timeseries(
            31,
            "Consumer lag by service and topic",
            0,
            24,
            [(f"sum by (service, topic) (stockpulse_consumer_lag{{{SVC}}})", "{{service}} {{topic}}")],
            "short",
            description="Sum over partitions of stockpulse_consumer_lag.",
        ),
        timeseries(
            32,
            "Worst partition lag",
            12,
            24,
            [(f"max by (service, topic) (stockpulse_consumer_lag{{{SVC}}})", "{{service}} {{topic}}")],
            "short",
            description="The largest lag of any partition: a hot or stuck partition.",
        ),
        row(40, "Inference", 32),
        timeseries(
            41,
            "Inferences / s by path (triton vs fallback)",
            0,
            33,
            [("sum by (path) (rate(stockpulse_inference_total[$__rate_interval]))", "{{path}}")],
            "short",
            stack=True,
            description="path=triton: served by Triton; path=fallback: in-process onnxruntime.",
        ),
        timeseries(42, "Fallback share", 12, 33, [(fallback_ratio, "fallback")], "percentunit"),
        row(50, "State and sinks", 41),
        timeseries(
            51,
            "Cache hit ratio",
            0,
            42,
            [(hit_ratio, "hit ratio")],
            "percentunit",
            w=8,
            description="stockpulse_cache_requests_total{result=hit} / all.",
        ),
        timeseries(
            52,
            "Cache requests / s",
            8,
            42,
            [("sum by (result) (rate(stockpulse_cache_requests_total[$__rate_interval]))", "{{result}}")],
            "short",
            w=8,
            stack=True,
        ),
        timeseries(
            53,
            "Sink errors / s by sink",
            16,
            42,
            [("sum by (sink) (rate(stockpulse_sink_errors_total[$__rate_interval]))", "{{sink}}")],
            "short",
            w=8,
            description="Redis, ClickHouse and PostgreSQL write failures.",
        ),
        row(60, "Dead letters", 50),
        timeseries(
            61,
            "Dead letters / s by service and reason",
            0,
            51,
            [
                (
                    "sum by (service, reason_code) "
                    f"(rate(stockpulse_dead_letters_total{{{SVC}}}[$__rate_interval]))",
                    "{{service}} {{reason_code}}",
                )
            ],
            "short",
            w=24,
            description="Messages sent to the dead-letter topic, by the reason the feed or a worker gave.",
        ),
        row(70, "Event time", 59),
        timeseries(
            71,
            "Late ticks / s by bar timeframe",
            0,
            60,
            [("sum by (timeframe) (rate(stockpulse_late_ticks_total[$__rate_interval]))", "{{timeframe}}")],
            "short",
            w=8,
            description="Ticks that came after their bar was published (dead-lettered as late_tick).",
        ),
        timeseries(
            72,
            "Tick delay at the feed p99 and watermark delay",
            8,
            60,
            [
                (
                    "histogram_quantile(0.99, sum by (le) "
                    "(rate(stockpulse_tick_delay_seconds_bucket[$__rate_interval])))",
                    "tick delay p99",
                ),
                ("max(stockpulse_watermark_delay_seconds)", "watermark delay"),
            ],
            "s",
            w=8,
            description="Keep STOCKPULSE_EVENT_TIME__MAX_DELAY_MS above the tick delay: a live tick delayed "
            "more than the watermark delay is late.",
        ),
        timeseries(
            73,
            "Watermarks / s",
            16,
            60,
            [("sum by (service) (rate(stockpulse_watermarks_total[$__rate_interval]))", "{{service}}")],
            "short",
            w=8,
            description="Sent by the feed on partitions with open live bars; applied by the price service.",
        ),
    ]
    return {
        "uid": "stockpulse-overview",
        "title": "StockPulse Stream",
        "tags": ["stockpulse"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "service",
                    "label": "service",
                    "type": "query",
                    "datasource": DS,
                    "query": {
                        "query": "label_values(stockpulse_messages_total, service)",
                        "refId": "service",
                    },
                    "definition": "label_values(stockpulse_messages_total, service)",
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("stockpulse.json")
    out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {out}")
