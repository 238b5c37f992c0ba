"""Everything one API process holds: settings, store connections, the order producer, the stream hub."""

from __future__ import annotations

import logging

from fastapi import Request

from streams.api.backends import Backends
from streams.api.history import History
from streams.api.order_producer import OrderProducer
from streams.api.orders import OrderDesk
from streams.api.stream_hub import StreamHub
from streams.config import Settings

log = logging.getLogger("stockpulse.api")


class ApiState:
    """Created by :func:`streams.api.app.create_app`; started and stopped by the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backends = Backends(settings)
        self.history = History(self.backends, settings.api.store_timeout_s)
        self.producer = OrderProducer(settings)
        self.orders = OrderDesk(settings, self.backends, self.producer)
        self.hub = StreamHub(settings)

    async def start(self) -> None:
        """Open the stores (a store that is down is reported, not fatal), start the producer and the hub."""
        await self.backends.start()
        self.producer.start()
        if not await self.hub.start():
            log.warning(
                "stream hub not assigned yet (broker down?); WebSocket clients get live data once it is"
            )

    async def stop(self) -> None:
        await self.hub.stop()
        await self.history.drain()
        self.producer.close()
        await self.backends.close()


async def get_state(request: Request) -> ApiState:
    """FastAPI dependency: the process's :class:`ApiState`. A coroutine on purpose: FastAPI runs a plain
    ``def`` dependency in its worker-thread pool, a thread hop per request that under load queued requests
    behind the pool's 40 threads for hundreds of milliseconds."""
    state: ApiState = request.app.state.api
    return state
