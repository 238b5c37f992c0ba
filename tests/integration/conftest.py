"""Fixtures shared by the integration tests of the stores."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from sinks.clickhouse_history import ClickHouseHistory
from streams.config import Settings
from tests.integration.test_sinks_clickhouse import _config


@pytest.fixture
async def history(stack_settings: Settings) -> AsyncIterator[ClickHouseHistory]:
    """A ClickHouseHistory on its own database ``test_<uuid>``, dropped afterwards."""
    adapter = await ClickHouseHistory(_config(stack_settings, f"test_{uuid.uuid4().hex[:12]}")).open()
    try:
        yield adapter
    finally:
        await asyncio.to_thread(adapter.client.command, f"DROP DATABASE IF EXISTS {adapter.config.database}")
        await adapter.close()
