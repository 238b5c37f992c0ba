"""A partition restored twice at once (the rebalance handler and an early delivery) keeps the state that
messages were applied to: regression test for a race that lost an open bar's first ticks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from streams.apps.price import PriceService
from streams.config import Settings
from tests.support.kafka import isolated

pytestmark = pytest.mark.integration


async def test_a_second_concurrent_restore_does_not_replace_a_live_state(stack_settings: Settings) -> None:
    settings = isolated(stack_settings, "assign")
    service = PriceService(settings)
    original = service.checkpointer.restore
    calls = 0

    async def slow_restore(parts: list[int]) -> dict[int, bytes]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)  # the rebalance handler's restore is still reading PostgreSQL ...
        return await original(parts)

    service.checkpointer.restore = slow_restore  # type: ignore[method-assign]
    tp = {TP(settings.topics.ticks, 0)}
    try:
        rebalance = asyncio.create_task(service._on_assigned(service.app, tp))
        await asyncio.sleep(0.05)
        await service._on_assigned(service.app, tp)  # ... when the first message arrives
        live: Any = service.states[0]
        live.apply(["BTC"], [0], [1_610_064_000_000_000], [100.0], [1.0], [1], 1, 2)  # an open bar
        await rebalance
        assert service.states[0] is live, "the live state was replaced by a second restore"
        assert service.states[0].open_bars() == 2  # 1s and 1m bars still open
    finally:
        await service.store.close()
