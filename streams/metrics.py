"""Prometheus metrics shared by every service (names used by the Grafana dashboard in infra/compose)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MESSAGES = Counter("stockpulse_messages", "Messages consumed or produced", ["service", "topic", "direction"])
TICKS = Counter("stockpulse_ticks", "Ticks processed", ["service"])
DEAD_LETTERS = Counter(
    "stockpulse_dead_letters", "Messages sent to the dead-letter topic", ["service", "reason_code"]
)
STAGE_LATENCY = Histogram(
    "stockpulse_stage_latency_seconds",
    "Latency of a pipeline stage, from the stage timestamps carried in messages",
    ["stage"],
    # fine enough that a p50/p99 over one scrape interval moves with the latency, not with the bucket edges
    buckets=(
        0.0001,
        0.00025,
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.15,
        0.25,
        0.35,
        0.5,
        0.75,
        1,
        1.5,
        2.5,
        5,
        10,
    ),
)
CONSUMER_LAG = Gauge(
    "stockpulse_consumer_lag",
    "Messages a service has still to apply, from our own offsets (set by the monitor: streams.scrape.lags)",
    ["service", "topic", "partition"],
)
PRODUCED_OFFSET = Gauge(
    "stockpulse_produced_offset",
    "Next offset after the last record this process produced and the broker acknowledged",
    ["topic", "partition"],
)
CONSUMED_OFFSET = Gauge(
    "stockpulse_consumed_offset", "Next offset a service will apply", ["service", "topic", "partition"]
)
INPUT_END_OFFSET = Gauge(
    "stockpulse_input_end_offset",
    "End of an input whose producers are not ours (ticks.raw), as the last fetch response gave it",
    ["topic", "partition"],
)
FETCH_STALLS = Counter(
    "stockpulse_fetch_stalls",
    "Stalls of a consumer: empty fetches while its log held more than it had read (streams.fetch_wait)",
    ["service"],
)
FETCH_WAIT = Gauge(
    "stockpulse_fetch_wait_ms", "A consumer's current fetch.wait.max.ms (adaptive)", ["service"]
)
INFERENCE = Counter("stockpulse_inference", "Predictions by path", ["path"])
SEQUENCE_EVENTS = Counter(
    "stockpulse_sequence_events",
    "Ticks dropped as already applied (duplicate) or missing from a symbol's sequence (gap)",
    ["service", "kind"],
)
CACHE_REQUESTS = Counter("stockpulse_cache_requests", "Hot-state cache lookups", ["result"])
SINK_ERRORS = Counter("stockpulse_sink_errors", "Sink write failures (retried)", ["sink"])
CHECKPOINT_RESETS = Counter(
    "stockpulse_checkpoint_resets",
    "Checkpoints dropped because they pointed into another log (STOCKPULSE_CHECKPOINT__ON_STALE_LOG)",
    ["service", "topic", "action"],
)
CHECKPOINTS = Counter("stockpulse_checkpoints", "State checkpoints written", ["service"])
CHECKPOINT_SECONDS = Histogram(
    "stockpulse_checkpoint_duration_seconds",
    "One checkpoint: flush outputs, write state and offsets, commit",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INFERENCE_BATCH = Histogram(
    "stockpulse_inference_batch_rows",
    "Rows per prediction call of the signal service",
    ["path"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
LATE_TICKS = Counter(
    "stockpulse_late_ticks",
    "Ticks that came after their bar had closed (dead-lettered as late_tick), per bar timeframe",
    ["timeframe"],
)
WATERMARKS = Counter(
    "stockpulse_watermarks", "Watermarks the feed sent, and the price service received", ["service"]
)
WATERMARK_DELAY = Gauge(
    "stockpulse_watermark_delay_seconds",
    "How far the feed's watermark trails its clock: the maximum delay, or twice the largest recent delay",
)
TICK_DELAY = Histogram(
    "stockpulse_tick_delay_seconds",
    "Per consumed batch, the largest delay (feed clock minus tick time) of its live ticks: choose "
    "STOCKPULSE_EVENT_TIME__MAX_DELAY_MS above this",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SINK_ROWS = Counter("stockpulse_sink_rows", "Rows written to a store", ["sink", "table"])
SINK_LATENCY = Histogram(
    "stockpulse_sink_write_seconds",
    "One batched write to a store (successful attempts)",
    ["sink", "table"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def serve_metrics(port: int) -> None:
    """Expose /metrics on ``port`` (0 disables it). A port in use is an error that names the setting."""
    if not port:
        return
    try:
        start_http_server(port, addr="0.0.0.0")
    except OSError as exc:
        raise SystemExit(
            f"cannot serve /metrics on port {port}: {exc.strerror or exc}; another process has it. "
            "Give each service its own port with STOCKPULSE_METRICS_PORT (0 turns /metrics off)."
        ) from exc


def produced(topic: str, partition: int, offset: int) -> None:
    """Record an acknowledged record (``offset`` as the broker gave it)."""
    gauge = PRODUCED_OFFSET.labels(topic, str(partition))
    if offset + 1 > gauge._value.get():
        gauge.set(offset + 1)
