"""Processor state checkpoints stored with the consumed offsets, in PostgreSQL.

A service's state (per-symbol sequencers, bar aggregators, indicator sets) and the next offset to read are
written in one row per (consumer group, topic, partition) in one transaction. On partition assignment the
service restores the state and seeks to that offset, so recovery never depends on the broker's end offsets
(which the local broker reports wrongly) and never double-applies an input.

Checkpoint order (as in Quix Streams): flush sinks -> flush the producer (outputs acknowledged) -> write
state + offsets here -> commit offsets to Kafka (informational, for lag tools). State is written after the
producer flush, not before it, because it lives beside the offsets here rather than in a changelog topic:
a state row must never describe outputs that could still be lost.

PostgreSQL outages: ``load`` and ``save`` retry connection failures with backoff (0.1 s doubling to 5 s)
for up to ``retry_for_s`` (default 600 s) before raising; meanwhile the service waits (it holds its
processing lock), so nothing is consumed past the last checkpoint and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
TopicPartition = tuple[str, int]
log = logging.getLogger("stockpulse.checkpoints")
# InternalClientError: a pooled connection whose server went away mid-operation ("cannot switch to state";
# seen when the primary was killed): the pool's connections are dropped and the call retried on a new one
_TRANSIENT = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.InternalClientError,
)

DDL = """
CREATE TABLE IF NOT EXISTS stream_checkpoints (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    state       bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    log_id      text        NOT NULL DEFAULT '',
    PRIMARY KEY (group_id, topic, partition)
);
ALTER TABLE stream_checkpoints ADD COLUMN IF NOT EXISTS log_id text NOT NULL DEFAULT ''
"""

UPSERT = """
INSERT INTO stream_checkpoints (group_id, topic, partition, next_offset, state, log_id, updated_at)
SELECT $1, t, p, o, s, l, now()
FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::bytea[], $6::text[]) AS u(t, p, o, s, l)
ON CONFLICT (group_id, topic, partition)
DO UPDATE SET next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, log_id = EXCLUDED.log_id,
              updated_at = now()
"""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The next offset to read and the state as of it; ``log_id`` names the log the offset points into
    (the topic's id on the broker: a re-created topic or another cluster has another one; '' unknown)."""

    next_offset: int
    state: bytes
    log_id: str = ""


class CheckpointStore:
    """Async access to ``stream_checkpoints`` (asyncpg pool)."""

    def __init__(self, dsn: str, retry_for_s: float = 600.0) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self.retry_for_s = retry_for_s

    async def _retrying(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried on connection failures (PostgreSQL restarting, failing over, unreachable)."""
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.1
        while True:
            try:
                return await call()
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise ConnectionError(
                        f"checkpoint {operation} failed for {self.retry_for_s:g}s ({type(exc).__name__}: "
                        f"{exc}); is PostgreSQL up (`stockpulse stack status`) and STOCKPULSE_POSTGRES__DSN "
                        "right? The service stops; restarted, it resumes from its last checkpoint"
                    ) from exc
                log.warning("checkpoint %s failed (%s); retrying in %.1fs", operation, exc, delay)
                if self._pool is not None:
                    await self._pool.expire_connections()  # the next call opens a fresh connection
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def open(self) -> CheckpointStore:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
            except (OSError, asyncpg.PostgresError) as exc:
                raise ConnectionError(
                    f"no PostgreSQL for checkpoints ({exc}); start the stack (`stockpulse stack up`) "
                    "or set STOCKPULSE_POSTGRES__DSN"
                ) from None
            async with self._pool.acquire() as conn:
                await conn.execute(DDL)
        return self

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("CheckpointStore.open() was not called")
        return self._pool

    async def load(
        self, group_id: str, topics: list[str], partitions: list[int]
    ) -> dict[TopicPartition, Checkpoint]:
        """The checkpoints of these topics' partitions: (topic, partition) -> Checkpoint."""
        rows = await self._retrying(
            "load",
            lambda: self._require().fetch(
                "SELECT topic, partition, next_offset, state, log_id FROM stream_checkpoints "
                "WHERE group_id = $1 AND topic = ANY($2::text[]) AND partition = ANY($3::integer[])",
                group_id,
                topics,
                partitions,
            ),
        )
        return {
            (r["topic"], r["partition"]): Checkpoint(r["next_offset"], bytes(r["state"]), r["log_id"])
            for r in rows
        }

    async def save(self, group_id: str, checkpoints: Mapping[TopicPartition, Checkpoint]) -> None:
        """Write all rows in one statement (one transaction): either every row is updated or none."""
        if not checkpoints:
            return
        keys = list(checkpoints)
        args = (
            group_id,
            [t for t, _ in keys],
            [p for _, p in keys],
            [checkpoints[k].next_offset for k in keys],
            [checkpoints[k].state for k in keys],
            [checkpoints[k].log_id for k in keys],
        )
        await self._retrying("save", lambda: self._require().execute(UPSERT, *args))

    async def clear(self, group_id: str) -> None:
        await self._require().execute("DELETE FROM stream_checkpoints WHERE group_id = $1", group_id)

    async def reset(
        self, group_id: str, topic: str | None = None, partitions: list[int] | None = None
    ) -> int:
        """Point a group's checkpoints (of one topic, of some partitions) at the start of whatever log is
        there: offset 0, log id unknown. The state is kept, so sequence numbers go on (a fresh state would
        number ticks from 1 again, and the sink would take them for ticks it has stored). Returns the number
        of rows reset."""
        status = await self._require().execute(
            "UPDATE stream_checkpoints SET next_offset = 0, log_id = '', updated_at = now() "
            "WHERE group_id = $1 AND ($2::text IS NULL OR topic = $2) "
            "AND ($3::integer[] IS NULL OR partition = ANY($3::integer[]))",
            group_id,
            topic,
            partitions,
        )
        return int(status.split()[-1])

    async def groups(self) -> list[tuple[str, str, int, int, str]]:
        """Every checkpoint row: (group, topic, partition, next offset, log id)."""
        rows = await self._require().fetch(
            "SELECT group_id, topic, partition, next_offset, log_id FROM stream_checkpoints "
            "ORDER BY group_id, topic, partition"
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


class SyncCheckpointStore:
    """The same store for synchronous services (the feed handler): runs asyncpg on a private loop thread."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="checkpoints", daemon=True)
        self._thread.start()
        self._store = CheckpointStore(dsn)
        self._run(self._store.open())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def load(
        self, group_id: str, topics: list[str], partitions: list[int]
    ) -> dict[TopicPartition, Checkpoint]:
        return self._run(self._store.load(group_id, topics, partitions))

    def save(self, group_id: str, checkpoints: Mapping[TopicPartition, Checkpoint]) -> None:
        self._run(self._store.save(group_id, checkpoints))

    def clear(self, group_id: str) -> None:
        self._run(self._store.clear(group_id))

    def close(self) -> None:
        self._run(self._store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
