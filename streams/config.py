"""The one typed configuration object of StockPulse Stream.

Every setting can be given as an environment variable with the prefix ``STOCKPULSE_`` and ``__``
between nested names, or in a ``.env`` file in the working directory::

    STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS=broker-1:9092,broker-2:9092
    STOCKPULSE_KAFKA__SECURITY_PROTOCOL=SASL_SSL
    STOCKPULSE_KAFKA__SASL_PASSWORD=...            # a SecretStr: never printed
    STOCKPULSE_TOPICS__TICK_PARTITIONS=24
    STOCKPULSE_CLICKHOUSE__URL=http://clickhouse:8123

Defaults point at the local stack started by ``stockpulse stack up``.

>>> s = Settings()
>>> s.kafka.librdkafka()["bootstrap.servers"]
'127.0.0.1:19092'
>>> s.topics.bars("1s")
'bars.1s'
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.event_time import EventTimePolicy
from streams.fetch_wait import FetchWait

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_CONSUMER_ONLY = frozenset({"session_timeout_ms", "fetch_wait_max_ms"})


class KafkaSettings(_Frozen):
    """Broker connection. Each field maps one-to-one onto the librdkafka key with ``_`` read as ``.``."""

    bootstrap_servers: str = Field("127.0.0.1:19092", description="bootstrap.servers")
    client_id: str = Field("stockpulse", description="client.id")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = (
        Field(None, description="sasl.mechanism")
    )
    sasl_username: str | None = Field(None, description="sasl.username")
    sasl_password: SecretStr | None = Field(None, description="sasl.password")
    ssl_ca_location: str | None = Field(None, description="ssl.ca.location")
    ssl_certificate_location: str | None = Field(None, description="ssl.certificate.location")
    ssl_key_location: str | None = Field(None, description="ssl.key.location")
    ssl_key_password: SecretStr | None = Field(None, description="ssl.key.password")
    session_timeout_ms: int = Field(
        6000,
        ge=1000,
        description="session.timeout.ms (a group join waits half of it on Tansu: keep it small)",
    )
    fetch_wait_max_ms: int = Field(
        10,
        ge=0,
        le=10_000,
        description="fetch.wait.max.ms: Tansu answers a fetch that found no data only after this wait, "
        "even when data arrives meanwhile, so it bounds every hop's latency (Kafka itself wakes early)",
    )

    def librdkafka(self, consumer: bool = True) -> dict[str, str | int]:
        """The librdkafka configuration: only the keys that are set, secrets revealed; ``consumer=False``
        leaves out the consumer-only keys (a producer would warn about them)."""
        out: dict[str, str | int] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None or (not consumer and name in _CONSUMER_ONLY):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[name.replace("_", ".")] = value
        return out

    @property
    def bootstrap_list(self) -> list[str]:
        return [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]


class FetchSettings(_Frozen):
    """The adaptive fetch wait of every consumer (:mod:`streams.fetch_wait`): it starts at the consumer's
    ``fetch.wait.max.ms`` and doubles on a stall (empty fetches while the log holds more than was read)."""

    ceiling_ms: int = Field(
        5_000,
        ge=1,
        le=60_000,
        description="the most a consumer's fetch wait grows to after stalls (a broker that gives up a fetch "
        "whose offset lookup outlasts the wait, as Tansu's memory storage does on a long log, needs more)",
    )
    stall_ms: int = Field(
        1_000,
        ge=100,
        description="empty fetches while behind for this long (or three fetch waits, if longer) count as a "
        "stall: logged, counted in stockpulse_fetch_stalls_total, and the wait doubles",
    )

    def policy(self, floor_ms: int) -> FetchWait:
        return FetchWait(max(1, floor_ms), max(self.ceiling_ms, floor_ms), self.stall_ms / 1000)


class CheckpointSettings(_Frozen):
    """What a service does with checkpoints that point into another log than the broker's now (a topic
    deleted and re-created, a broker that lost its storage, another cluster): see
    :func:`streams.apps.checkpointing.stale_checkpoints`."""

    on_stale_log: Literal["stop", "earliest", "latest"] = Field(
        "stop",
        description="stop: the service stops, naming the partitions and the `stockpulse checkpoints reset` "
        "command; earliest: drop those checkpoints and re-read the partitions from their start; latest: "
        "drop them and go on from the end. Logged and counted in stockpulse_checkpoint_resets_total",
    )


class TopicSettings(_Frozen):
    """Topic names and their final partition counts (the local broker cannot add partitions later)."""

    ticks_raw: str = "ticks.raw"
    ticks: str = "ticks"
    bars_prefix: str = "bars"
    indicators_prefix: str = "indicators"
    signals: str = "signals"
    orders: str = "orders"
    fills: str = "fills"
    dead_letter: str = "deadletter"
    perf_alerts: str = "perf.alerts"
    timeframes: tuple[str, ...] = ("1s", "1m")
    tick_partitions: int = Field(12, ge=1, le=1024)
    bar_partitions: int = Field(12, ge=1, le=1024)
    signal_partitions: int = Field(12, ge=1, le=1024)
    order_partitions: int = Field(12, ge=1, le=1024)
    dead_letter_partitions: int = Field(3, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)

    def bars(self, timeframe: str) -> str:
        return f"{self.bars_prefix}.{timeframe}"

    def indicators(self, timeframe: str) -> str:
        return f"{self.indicators_prefix}.{timeframe}"

    def partition_settings(self) -> dict[str, str]:
        """Topic -> the setting (after ``STOCKPULSE_TOPICS__``) that sets its partition count."""
        out = {self.ticks_raw: "TICK_PARTITIONS", self.ticks: "TICK_PARTITIONS",
               self.signals: "SIGNAL_PARTITIONS", self.orders: "ORDER_PARTITIONS",
               self.fills: "ORDER_PARTITIONS", self.dead_letter: "DEAD_LETTER_PARTITIONS"}  # fmt: skip
        for tf in self.timeframes:
            out[self.bars(tf)] = out[self.indicators(tf)] = "BAR_PARTITIONS"
        return out

    def all_topics(self) -> dict[str, int]:
        """Every topic the pipeline uses with its partition count."""
        topics = {
            self.ticks_raw: self.tick_partitions,
            self.ticks: self.tick_partitions,
            self.signals: self.signal_partitions,
            self.orders: self.order_partitions,
            self.fills: self.order_partitions,
            self.dead_letter: self.dead_letter_partitions,
            self.perf_alerts: 1,
        }
        for tf in self.timeframes:
            topics[self.bars(tf)] = self.bar_partitions
            topics[self.indicators(tf)] = self.bar_partitions
        return topics


class SchemaSettings(_Frozen):
    """Where Avro schema ids come from: the checked-in catalog, or a Schema Registry when a URL is set."""

    registry_url: str | None = None
    registry_username: str | None = None
    registry_password: SecretStr | None = None


class CacheSettings(_Frozen):
    """Redis TTLs by data type (seconds; 0 = no expiry) and the thresholds that choose between them
    (:class:`sinks.redis_cache.CachePolicy`; ``STOCKPULSE_REDIS__CACHE__*``)."""

    price_open_ttl_s: float = Field(1.0, ge=0, description="price keys while the symbol's market is open")
    price_closed_ttl_s: float = Field(60.0, ge=0, description="price keys while it is closed")
    market_open_window_s: float = Field(60.0, ge=0, description="open = newest bar ended at most this ago")
    indicator_high_vol_ttl_s: float = Field(5.0, ge=0, description="indicator keys at high volatility")
    indicator_low_vol_ttl_s: float = Field(30.0, ge=0, description="indicator keys otherwise")
    high_volatility_atr_ratio: float = Field(0.002, ge=0, description="ATR/close above this = high vol")
    default_ttl_s: float = Field(300.0, ge=0, description="signals, positions, cached chart responses")
    bars_ttl_s: float = Field(3600.0, ge=0, description="chart bars, after their last write")
    warm_bars: int = Field(500, ge=0, description="bars per symbol/timeframe loaded from ClickHouse at start")


class RedisSettings(_Frozen):
    startup_nodes: str = Field("127.0.0.1:17000,127.0.0.1:17001,127.0.0.1:17002", description="host:port,...")
    username: str | None = Field(None, description="Redis ACL user (AUTH username password)")
    password: SecretStr | None = None
    ssl: bool = False
    key_prefix: str = "sp"
    cache: CacheSettings = CacheSettings()

    @property
    def nodes(self) -> list[tuple[str, int]]:
        out = []
        for item in self.startup_nodes.split(","):
            host, _, port = item.strip().rpartition(":")
            out.append((host, int(port)))
        return out


class PostgresSettings(_Frozen):
    dsn: SecretStr = SecretStr("postgresql://stockpulse@127.0.0.1:15432/stockpulse")
    replica_dsn: SecretStr = SecretStr("postgresql://stockpulse@127.0.0.1:15433/stockpulse")
    schema_name: str = Field("public", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="schema of the tables")


class ClickHouseSettings(_Frozen):
    """ClickHouse over HTTP at ``url``: a real server in production, and locally the process that owns the
    embedded engine's data directory at ``path`` (``stockpulse stack up``; chdb allows one process per
    directory, so every other process talks HTTP to it with the same client code)."""

    url: str = "http://127.0.0.1:18123"
    path: Path | None = None
    database: str = "stockpulse"
    username: str = "default"
    password: SecretStr | None = None


class TritonSettings(_Frozen):
    """The signal model client (:mod:`streams.inference`): Triton over gRPC with a per-request deadline of
    ``timeout_ms``, micro-batches of up to ``max_batch`` rows (<= the model config's max_batch_size) collected
    for at most ``max_wait_us``, a circuit breaker, and an in-process onnxruntime fallback."""

    grpc_url: str = "127.0.0.1:18001"
    http_url: str = "127.0.0.1:18000"
    model_name: str = "signal"
    timeout_ms: int = Field(50, ge=1)
    max_batch: int = Field(256, ge=1)
    max_wait_us: int = Field(500, ge=0)
    max_inflight: int = Field(8, ge=1, description="Triton requests in flight at once per client")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures/timeouts that open the breaker")
    breaker_cooldown_ms: int = Field(1000, ge=0, description="open time before one half-open probe")
    fallback_model: Path | None = Field(
        None, description="model.onnx of the in-process fallback; None: triton_models/signal/1/model.onnx"
    )


class FeedSettings(_Frozen):
    """The feed handler: validation limits and how TickBatch messages are cut."""

    batch_max_ticks: int = Field(500, ge=1, le=100_000)
    batch_max_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description="publish a partition's open TickBatch after this long even while the input never drains "
        "(batches are published at once whenever the feed has drained its input: smart batching)",
    )
    min_ts_us: int = Field(946_684_800_000_000, description="2000-01-01: older timestamps are rejected")
    max_ts_us: int = Field(4_102_444_800_000_000, description="2100-01-01: later timestamps are rejected")
    max_price: float = Field(1e9, gt=0)
    symbol_pattern: str = r"^[A-Z0-9][A-Z0-9._/-]{0,31}$"
    symbols: tuple[str, ...] = Field(
        (), description='known symbols, e.g. ["BTCUSDT","EURUSD"]; others are dead-lettered (empty: any)'
    )
    group_id: str = "stockpulse-feed"
    checkpoint_ms: int = Field(
        200, ge=10, le=60_000, description="how often state and offsets are checkpointed"
    )
    consume_batch: int = Field(5000, ge=1, le=100_000, description="messages taken per consume call")
    fetch_wait_ms: int = Field(
        5,
        ge=1,
        le=10_000,
        description="the feed's first fetch.wait.max.ms: a hop's latency on a broker that answers an empty "
        "fetch only after the wait (Tansu); it doubles on a fetch stall (STOCKPULSE_FETCH__*)",
    )


class EventTimeSettings(_Frozen):
    """When bars close and when a tick is late (:mod:`processors.event_time`; README "Event time").

    A bar closes once its symbol's event time passes its end by ``allowed_lateness_ms``; for live symbols the
    feed's watermark (its clock minus ``max_delay_ms``, sent every ``watermark_interval_ms``) advances that
    event time even when the symbol does not trade."""

    mode: Literal["auto", "live", "replay"] = Field(
        "auto",
        description="auto: a symbol is live when its newest tick is within live_window_s of the feed's "
        "clock; live: every symbol follows the feed's watermarks; replay: only the symbols' own ticks close "
        "bars",
    )
    max_delay_ms: int = Field(
        250,
        ge=0,
        le=3_600_000,
        description="how long after its timestamp a live tick may reach the feed and still count (the feed "
        "waits longer while it sees longer delays); a quiet live bar closes this long after its end (watch "
        "stockpulse_tick_delay_seconds to choose it)",
    )
    allowed_lateness_ms: int = Field(
        0,
        ge=0,
        le=86_400_000,
        description="how far a symbol's event time must pass a bar's end before the bar closes: ticks of a "
        "symbol may arrive this much out of order and still count",
    )
    live_window_s: float = Field(
        60.0, ge=0, description="mode auto: ticks older than this when the feed reads them are a replay"
    )
    watermark_interval_ms: int = Field(
        100,
        ge=1,
        le=60_000,
        description="how often at most the feed checks whether a partition with live bars needs a watermark "
        "(one per bar boundary passed); it also checks right when its watermark reaches the next boundary",
    )

    def policy(self) -> EventTimePolicy:
        """The pure-code policy these settings describe."""
        return EventTimePolicy(
            mode=self.mode,
            allowed_lateness_us=self.allowed_lateness_ms * 1000,
            max_delay_us=self.max_delay_ms * 1000,
            live_window_us=int(self.live_window_s * 1e6),
            watermark_interval_us=self.watermark_interval_ms * 1000,
        )


class PriceSettings(_Frozen):
    """The price service: bars and indicators."""

    checkpoint_s: float = Field(1.0, gt=0, description="how often state and offsets are checkpointed")


class SignalSettings(_Frozen):
    """The signal service: which indicator timeframes become signals, and the hysteresis thresholds."""

    timeframes: tuple[str, ...] = ("1m",)
    buy_above: float = Field(
        0.53, ge=0, le=1, description="probability at or above which the regime turns long"
    )
    sell_below: float = Field(0.47, ge=0, le=1, description="probability at or below which it turns short")
    checkpoint_s: float = Field(1.0, gt=0)


class OrderSettings(_Frozen):
    """The order service: risk limits of the paper trader (see ``processors.orders``)."""

    order_quantity: float = Field(1.0, gt=0)
    max_position: float = Field(1.0, gt=0)
    max_notional: float = Field(10_000_000.0, gt=0)
    max_orders_per_minute: int = Field(10, ge=0)
    max_staleness_s: float = Field(300.0, gt=0, description="reject when the next tick is later than this")
    kill_switch: bool = Field(False, description="reject every new order (also: `stockpulse kill-switch on`)")
    kill_switch_poll_s: float = Field(1.0, gt=0, description="how often the global switch in Redis is read")
    checkpoint_s: float = Field(1.0, gt=0)


class SinkSettings(_Frozen):
    """The sink service: how much it buffers before writing to the stores."""

    flush_s: float = Field(0.5, gt=0, description="write buffered records at least this often")
    max_buffered: int = Field(20_000, ge=1, description="write when this many records are buffered")
    fetch_wait_max_ms: int = Field(
        100,
        ge=0,
        le=10_000,
        description="fetch.wait.max.ms of the sink's consumer (the workers use kafka.fetch_wait_max_ms): the "
        "sink writes every flush_s, so a longer wait costs its stores no freshness and saves idle CPU in "
        "the sink and the broker, which answers an empty fetch only after this wait (Tansu)",
    )
    redis_max_bars: int = Field(2000, ge=1, description="bars kept per symbol and timeframe in Redis")
    ticks_ttl_days: int = Field(90, ge=0, description="ClickHouse tick history retention (0 = forever)")
    performance_refresh_s: float = Field(
        10.0, ge=0, description="refresh PostgreSQL daily_performance at most this often after new fills"
    )


class StackSettings(_Frozen):
    """The local stack (``stockpulse stack up``): loopback ports and the data directory."""

    dir: Path = PROJECT_ROOT / ".stack"
    host: str = "127.0.0.1"
    broker_port: int = 19092
    redis_base_port: int = 17000
    postgres_port: int = 15432
    postgres_replica_port: int = 15433
    triton_http_port: int = 18000
    triton_grpc_port: int = 18001
    triton_metrics_port: int = 18002
    tansu_storage: str = "memory://tansu/"
    clickhouse_http_port: int = 18123
    postgres_bin_dir: Path | None = None


class MonitorSettings(_Frozen):
    """The monitor service (``stockpulse monitor``) and ``stockpulse top``: which Prometheus endpoints to
    scrape, how often, and the anomaly detector's thresholds (:class:`processors.anomaly.DetectorConfig`)."""

    targets: str = Field(
        "",
        description="service=url,... of the /metrics endpoints, e.g. "
        "feed=http://127.0.0.1:9101/metrics,price=http://127.0.0.1:9102/metrics",
    )
    interval_s: float = Field(1.0, gt=0, description="scrape interval")
    z_threshold: float = Field(6.0, gt=0)
    critical_z: float = Field(12.0, gt=0)
    persistence: int = Field(2, ge=1, description="consecutive breaching scrapes before an alert")
    warmup: int = Field(30, ge=1, description="scrapes per series before it can alert")

    def target_map(self) -> dict[str, str]:
        """``{"feed": "http://..."}``; raises ValueError naming the bad entry."""
        out: dict[str, str] = {}
        for item in filter(None, (x.strip() for x in self.targets.split(","))):
            name, sep, url = item.partition("=")
            if not sep or not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"monitor target {item!r}: use service=http://host:port/metrics "
                    "(STOCKPULSE_MONITOR__TARGETS, comma-separated)"
                )
            out[name.strip()] = url.strip()
        return out


class ApiSettings(_Frozen):
    """The API service (``stockpulse api``, :mod:`streams.api`): where it listens, its input limits and how
    long it waits for the stores and the broker. One process by default; ``workers`` > 1 starts that many
    uvicorn worker processes on the same port (each with its own store pools and stream consumer)."""

    host: str = Field("127.0.0.1", description="listen address (0.0.0.0 for all interfaces)")
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    cors_origins: tuple[str, ...] = Field((), description="origins allowed by CORS, e.g. https://app.example")
    compute_max_values: int = Field(100_000, ge=1, description="largest `values` of /api/indicators/compute")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest accepted request body")
    store_timeout_s: float = Field(2.0, gt=0, description="deadline of one store read before falling back")
    health_timeout_s: float = Field(1.0, gt=0, description="deadline of each /healthz check")
    order_ack_timeout_s: float = Field(5.0, gt=0, description="wait for the broker to acknowledge an order")
    idempotency_ttl_s: int = Field(86_400, ge=60, description="how long an Idempotency-Key is remembered")
    ws_snapshot_bars: int = Field(
        300, ge=0, le=5000, description="bars per symbol in a new client's snapshot"
    )
    ws_queue: int = Field(2000, ge=10, description="messages buffered per WebSocket client before dropping")
    ws_max_symbols: int = Field(50, ge=1, le=1000, description="symbols per WebSocket subscription")
    wasm_dir: Path = Field(PROJECT_ROOT / "wasm", description="served at /static/wasm (indicators.js/.wasm)")
    access_log: bool = Field(False, description="uvicorn access log (off: it costs ~10% throughput)")


class Settings(BaseSettings):
    """All of StockPulse Stream's settings (env prefix ``STOCKPULSE_``, nested with ``__``)."""

    model_config = SettingsConfigDict(
        env_prefix="STOCKPULSE_", env_nested_delimiter="__", env_file=".env", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = KafkaSettings()
    fetch: FetchSettings = FetchSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    topics: TopicSettings = TopicSettings()
    schemas: SchemaSettings = SchemaSettings()
    redis: RedisSettings = RedisSettings()
    postgres: PostgresSettings = PostgresSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    triton: TritonSettings = TritonSettings()
    feed: FeedSettings = FeedSettings()
    event_time: EventTimeSettings = EventTimeSettings()
    price: PriceSettings = PriceSettings()
    signal: SignalSettings = SignalSettings()
    order: OrderSettings = OrderSettings()
    sink: SinkSettings = SinkSettings()
    stack: StackSettings = StackSettings()
    api: ApiSettings = ApiSettings()
    monitor: MonitorSettings = MonitorSettings()
    data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    log_level: Literal["debug", "info", "warn", "error"] = "warn"
    service_group_prefix: str = Field(
        "stockpulse", description="Faust apps and consumer groups are named <prefix>-<service>"
    )
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port of a service; 0 = off")
    topology: Literal["chained", "split"] = Field(
        "chained",
        description="chained: price, signal and order run in one engine worker, handing records over in "
        "memory; split: each its own worker process (see streams.topology)",
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(os.path.expanduser(v))

    def clickhouse_path(self) -> Path:
        return self.clickhouse.path or (self.stack.dir / "clickhouse")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
