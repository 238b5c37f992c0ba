"""Each worker's consumer fetch wait: the workers use ``kafka.fetch_wait_max_ms`` (a latency bound on Tansu),
the sink its own longer ``sink.fetch_wait_max_ms`` (it writes every ``sink.flush_s`` anyway)."""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

from streams.apps.engine import EngineService
from streams.apps.sink import SinkService
from streams.config import Settings


def _consumer_wait_ms() -> Any:
    """The fetch wait the next Faust consumer of this process is created with (``make_app`` sets it)."""
    return getattr(driver.AIOKafkaConsumerThread._create_worker_consumer, "_stockpulse_wait", None)


def test_the_sink_and_the_engine_fetch_with_their_own_waits() -> None:
    settings = Settings(kafka={"fetch_wait_max_ms": 7}, sink={"fetch_wait_max_ms": 250})  # type: ignore[arg-type]
    SinkService(settings)
    assert _consumer_wait_ms() == 250
    EngineService(settings)
    assert _consumer_wait_ms() == 7


def test_each_worker_watches_its_fetches_from_its_own_floor_up_to_the_ceiling() -> None:
    settings = Settings(  # type: ignore[arg-type]
        kafka={"fetch_wait_max_ms": 7}, sink={"fetch_wait_max_ms": 250}, fetch={"ceiling_ms": 900}
    )
    sink, engine = SinkService(settings).fetch_watch.policy, EngineService(settings).fetch_watch.policy
    assert (sink.floor_ms, sink.ceiling_ms, engine.floor_ms, engine.ceiling_ms) == (250, 900, 7, 900)
