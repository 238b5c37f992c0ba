"""Checkpoints survive a PostgreSQL outage: the store retries while the connection is gone and the write
lands once PostgreSQL is reachable again (over a real connection through a loopback forwarder that is
taken down, so the shared PostgreSQL keeps serving the other tests)."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from sinks.checkpoints import Checkpoint, CheckpointStore
from streams.config import Settings
from tests.support.net import TcpProxy

pytestmark = pytest.mark.integration


def _via(dsn: str, port: int) -> str:
    url = urlsplit(dsn)
    netloc = f"{url.username}@127.0.0.1:{port}" if url.username else f"127.0.0.1:{port}"
    return urlunsplit(url._replace(netloc=netloc))


async def test_save_waits_out_an_outage_and_a_dead_store_says_what_to_check(stack_settings: Settings) -> None:
    dsn = stack_settings.postgres.dsn.get_secret_value()
    url = urlsplit(dsn)
    proxy = TcpProxy(f"{url.hostname}:{url.port}")
    await proxy.up()
    store = await CheckpointStore(_via(dsn, proxy.port), retry_for_s=30).open()
    group = f"test-{uuid.uuid4().hex[:8]}"
    try:
        await store.save(group, {("t", 0): Checkpoint(10, b"a")})
        await proxy.down()
        saving = asyncio.create_task(store.save(group, {("t", 0): Checkpoint(20, b"b")}))
        await asyncio.sleep(1.5)
        assert not saving.done(), "the save must wait for PostgreSQL, not fail or pretend"
        await proxy.up()
        await asyncio.wait_for(saving, 20)
        loaded = await store.load(group, ["t"], [0])
        assert loaded == {("t", 0): Checkpoint(20, b"b")}

        await proxy.down()
        store.retry_for_s = 1.0
        with pytest.raises(ConnectionError, match=r"checkpoint save failed for 1s.*STOCKPULSE_POSTGRES__DSN"):
            await store.save(group, {("t", 0): Checkpoint(30, b"c")})
    finally:
        await proxy.up()
        await store.clear(group)
        await store.close()
        await proxy.down()
