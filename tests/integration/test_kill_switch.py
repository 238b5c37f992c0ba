"""The global kill switch over the real Redis Cluster: ``stockpulse kill-switch on`` makes a running order
stage (in the chained engine, and in the split topology's order worker) reject new orders with the reason
within one poll, ``off`` releases it; the env setting wins."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from processors.orders import OrderBook
from streams.apps.base import StatefulService
from streams.apps.engine import EngineService
from streams.apps.order import OrderService, OrderStage
from streams.config import Settings

pytestmark = pytest.mark.integration
MINUTE = 60_000_000
HOSTS = [EngineService, OrderService]


def _stage(service: StatefulService[Any]) -> OrderStage:
    stage = service.order if isinstance(service, EngineService) else service.stage  # type: ignore[attr-defined]
    assert isinstance(stage, OrderStage)
    return stage


def _book(service: StatefulService[Any], partition: int) -> OrderBook:
    """A new partition state of the service, as a rebalance creates it; its order book."""
    state = service.states[partition] = service.new_state(partition)
    return state.order if isinstance(service, EngineService) else state


def _cli(prefix: str, *args: str) -> str:
    exe = str(Path(sys.executable).with_name("stockpulse"))
    env = {"STOCKPULSE_REDIS__KEY_PREFIX": prefix, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([exe, "kill-switch", *args], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def _trade(book: OrderBook, t: int, action: str = "BUY") -> dict[str, object]:
    """A signal on a 1m bar, then the next bar's first tick: the order it produces."""
    signal = {"signal_id": f"s{t}", "symbol": "BTC", "timeframe": "1m", "start_us": t, "action": action,
              "score": 0.9, "price": 100.0, "ingest_us": 1, "publish_us": 2}  # fmt: skip
    book.on_signal(signal, MINUTE)
    orders, _ = book.on_ticks("BTC", [(t + MINUTE + 1, 100.0, t // MINUTE + 1)])
    assert len(orders) == 1
    return orders[0]


@pytest.mark.parametrize("host", HOSTS, ids=["engine", "order"])
async def test_the_switch_reaches_a_running_order_stage(stack_settings: Settings, host: type) -> None:
    prefix = f"ks{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(
        update={"redis": stack_settings.redis.model_copy(update={"key_prefix": prefix})}
    )
    service = host(settings)
    stage = _stage(service)
    await service.on_open()
    try:
        book = _book(service, 0)
        assert _trade(book, 0)["status"] == "ACCEPTED"
        assert _cli(prefix, "on", "--reason", "desk halt") == "kill switch ENGAGED: desk halt"
        await stage.poll_kill_switch()
        rejected = _trade(book, 10 * MINUTE, "SELL")
        assert rejected["status"] == "REJECTED"
        assert "kill switch engaged (desk halt)" in str(rejected["reason"])
        assert _book(service, 1).limits.kill_switch, "partitions assigned later start engaged too"
        assert _cli(prefix, "status") == "kill switch ENGAGED: desk halt"
        assert _cli(prefix, "off") == "kill switch off"
        await stage.poll_kill_switch()
        assert not book.limits.kill_switch
    finally:
        await stage.redis.close()


@pytest.mark.parametrize("host", HOSTS, ids=["engine", "order"])
async def test_the_env_setting_cannot_be_released_from_redis(stack_settings: Settings, host: type) -> None:
    prefix = f"ks{uuid.uuid4().hex[:8]}"
    settings = stack_settings.model_copy(
        update={
            "redis": stack_settings.redis.model_copy(update={"key_prefix": prefix}),
            "order": stack_settings.order.model_copy(update={"kill_switch": True}),
        }
    )
    service = host(settings)
    stage = _stage(service)
    await service.on_open()
    try:
        assert _cli(prefix, "off") == "kill switch off"
        await stage.poll_kill_switch()
        order = _trade(_book(service, 0), 0)
        assert order["status"] == "REJECTED" and "STOCKPULSE_ORDER__KILL_SWITCH" in str(order["reason"])
    finally:
        await stage.redis.close()
