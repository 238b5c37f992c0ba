"""The fetch watchdog of a Faust worker: :class:`streams.fetch_wait.FetchWait` applied to its aiokafka
consumer, whose fetch wait (unlike librdkafka's) is read afresh for every fetch request, so a stall raises it
in place, with no reconnect and no rebalance."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from streams.fetch_wait import FetchWait
from streams.metrics import CONSUMED_OFFSET, FETCH_STALLS, FETCH_WAIT

log = logging.getLogger("stockpulse.fetch")
LOOK_S = 0.5


class FetchWatch:
    """Counts the messages a worker receives; every ``LOOK_S`` compares its read positions (``position``:
    its own offsets) with the high watermarks of the last fetch responses, and feeds the policy."""

    def __init__(
        self, app: Any, service: str, policy: FetchWait, position: Callable[[str, int], int]
    ) -> None:
        self.app, self.service, self.policy, self._position = app, service, policy, position
        self.received = 0
        FETCH_WAIT.labels(service).set(policy.wait_ms)
        app.timer(interval=LOOK_S)(self.look)

    def _behind(self) -> bool:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None and high > self._position(tp.topic, tp.partition):
                return True
        return False

    def _set_wait(self, wait_ms: int) -> None:
        fetcher = self.app.consumer._thread._ensure_consumer()._fetcher  # aiokafka's Fetcher
        fetcher._fetch_max_wait_ms = wait_ms  # read when it builds each fetch request

    def _export_positions(self) -> None:
        for tp in self.app.consumer.assignment():
            pos = self._position(tp.topic, tp.partition)
            CONSUMED_OFFSET.labels(self.service, tp.topic, str(tp.partition)).set(pos)

    async def look(self) -> None:
        self._export_positions()
        got, self.received = self.received, 0
        event = self.policy.observe(time.monotonic(), got, got == 0 and self._behind())
        if event is None:
            return
        FETCH_STALLS.labels(self.service).inc()
        log.warning(
            "%s: fetch stall #%d: no message while its inputs hold more than it read; %s",
            self.service,
            self.policy.stalls,
            f"fetch wait raised to {self.policy.wait_ms} ms"
            if event == "raised"
            else f"already at STOCKPULSE_FETCH__CEILING_MS ({self.policy.wait_ms} ms)",
        )
        if event == "raised":
            self._set_wait(self.policy.wait_ms)
            FETCH_WAIT.labels(self.service).set(self.policy.wait_ms)
