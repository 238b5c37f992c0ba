"""What every store adapter has in common: the lifecycle, the health report and the one error type.

The sink service treats Redis, ClickHouse and PostgreSQL alike::

    async with adapter:                 # open() ... close()
        report = await adapter.health() # Health(store, ok, detail, latency_ms)
        try:
            await adapter.write_bars(bars)
        except SinkError as exc:        # exc.store names the store; str(exc) says what to check
            ...                         # retry the same batch (every write is idempotent), count the error

Writes are idempotent (records carry deterministic ids), so retrying a batch after a :class:`SinkError`
never doubles anything. Adapters never import ``streams`` (data flows one way: the services call the sinks)
and never record metrics themselves: they raise, the service counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable


class SinkError(RuntimeError):
    """A store operation failed. ``store`` is ``redis``, ``clickhouse`` or ``postgres``; ``operation`` what
    was attempted; ``hint`` what to check. The batch can be retried as is: every write is idempotent.

    >>> str(SinkError("redis", "write_bars", "connection refused", "is the cluster up?"))
    'redis write_bars failed: connection refused; check: is the cluster up?'
    """

    def __init__(self, store: str, operation: str, detail: str, hint: str) -> None:
        self.store = store
        self.operation = operation
        self.detail = detail
        self.hint = hint
        super().__init__(f"{store} {operation} failed: {detail}; check: {hint}")


class SinkInputError(SinkError, ValueError):
    """A record given to an adapter is malformed (missing field, wrong type). Retrying will not help: the
    message names the record and the field; fix the producer or dead-letter the record."""


@dataclass(frozen=True, slots=True)
class Health:
    """The result of :meth:`Sink.health`: never raises, says what is wrong in ``detail``."""

    store: str
    ok: bool
    detail: str
    latency_ms: float


@runtime_checkable
class Sink(Protocol):
    """The lifecycle of every adapter (``RedisHotState``, ``ClickHouseHistory``, ``PostgresOrders``)."""

    store: str

    async def open(self) -> Self: ...

    async def close(self) -> None: ...

    async def health(self) -> Health: ...


class SinkBase:
    """Shared plumbing: ``async with`` support and timed health checks. Subclasses set ``store`` and
    implement ``open``, ``close`` and ``_probe`` (a cheap round trip returning a detail string)."""

    store: str = "sink"

    async def open(self) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError

    async def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _probe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    async def health(self) -> Health:
        """Probe the store with one cheap round trip; ``ok=False`` with the reason instead of raising."""
        began = time.perf_counter()
        try:
            detail = await self._probe()
            ok = True
        except Exception as exc:  # health must report, not raise
            detail, ok = f"{type(exc).__name__}: {exc}", False
        return Health(self.store, ok, detail, (time.perf_counter() - began) * 1000.0)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def input_error(store: str, kind: str, exc: Exception) -> SinkInputError:
    """The :class:`SinkInputError` for a ``KeyError``/``TypeError``/``ValueError`` met encoding records."""
    what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
    return SinkInputError(
        store,
        f"encode {kind} records",
        f"a {kind} record is malformed ({what})",
        f"pass decoded {kind} Avro records (dicts with every field of schemas/avro/{kind}.avsc); "
        "dead-letter the record if the producer sent it",
    )
