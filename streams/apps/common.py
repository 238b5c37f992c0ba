"""Building Faust apps from the settings: one app (and consumer group) per service."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from streams.config import KafkaSettings, Settings


def faust_credentials(kafka: KafkaSettings) -> Any:
    """Faust/aiokafka credentials equivalent to the librdkafka security settings."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
        if kafka.ssl_certificate_location:
            password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            context.load_cert_chain(kafka.ssl_certificate_location, kafka.ssl_key_location, password)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return faust.SASLCredentials(
        username=kafka.sasl_username or "",
        password=password,
        mechanism=kafka.sasl_mechanism or "PLAIN",
        ssl_context=context,
    )


def _patch_fetch_wait(wait_ms: int) -> None:
    """Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change it; on
    a broker that does not answer a waiting fetch when data arrives (Tansu) that is up to 1.5 s per hop.
    Set the consumer's wait to ``STOCKPULSE_KAFKA__FETCH_WAIT_MAX_MS`` before it starts fetching."""
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_stockpulse_wait", None) == wait_ms:
        return
    base = getattr(original, "_stockpulse_original", original)

    def create(self: Any, transport: Any) -> Any:
        consumer = base(self, transport)
        consumer._fetch_max_wait_ms = wait_ms  # read by AIOKafkaConsumer.start() to build its fetcher
        return consumer

    create._stockpulse_wait = wait_ms  # type: ignore[attr-defined]
    create._stockpulse_original = base  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def make_app(
    settings: Settings, service: str, fetch_wait_ms: int | None = None, **overrides: Any
) -> faust.App:
    """A Faust app for one service: its own consumer group ``<prefix>-<service>``, raw bytes values; its
    consumer's fetch wait is ``fetch_wait_ms`` (default ``kafka.fetch_wait_max_ms``).

    Faust's own offset commits are disabled in effect (long interval): services checkpoint their state and
    offsets in PostgreSQL and seek there on assignment (see ``sinks.checkpoints``).
    """
    _patch_fetch_wait(settings.kafka.fetch_wait_max_ms if fetch_wait_ms is None else fetch_wait_ms)
    faust_dir = settings.stack.dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {
        "broker": [f"kafka://{h}" for h in settings.kafka.bootstrap_list],
        "broker_credentials": faust_credentials(settings.kafka),
        "broker_session_timeout": settings.kafka.session_timeout_ms / 1000,
        "broker_heartbeat_interval": 1.0,
        "broker_client_id": f"{settings.kafka.client_id}-{service}",
        "consumer_auto_offset_reset": "earliest",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_partitions": settings.topics.tick_partitions,
        "topic_replication_factor": settings.topics.replication_factor,
        "topic_allow_declare": False,
        "web_enabled": False,
        # Faust's local data (table stores; we keep none) under the stack directory, not in the cwd
        "datadir": str(faust_dir / "{conf.name}-data"),
        "producer_linger_ms": 2,
        "producer_acks": -1,
        "stream_buffer_maxsize": 4096,
        "broker_max_poll_records": 500,
        "table_cleanup_interval": 3600.0,
        # Events are acked only after our checkpoint; Faust must not wait for acks during a rebalance
        # (our revocation handler checkpoints and acks the revoked partitions itself).
        "stream_wait_empty": False,
    }
    conf.update(overrides)
    return faust.App(f"{settings.service_group_prefix}-{service}", **conf)


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic whose keys and values are bytes (we encode Avro ourselves, in batches)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw")
