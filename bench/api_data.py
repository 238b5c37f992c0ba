"""Real data for the API tests, the dashboard test and the API benchmark, in a namespace of their own.

:func:`api_namespace` gives settings whose topics, consumer groups, Redis key prefix, ClickHouse database and
PostgreSQL schema belong to one run only (:func:`streams.demo.run_settings`, topics created with few
partitions). :func:`seed` writes real FTX BTC-PERP 1-minute bars (``../shared/data``) through the sink
adapters, each symbol into the stores its :class:`Placement` names, and signals into Redis;
:func:`drop_namespace` removes everything again. :class:`ApiServer` serves the app with a real uvicorn on a
free loopback port in a thread of the calling process; :func:`api_process` starts ``python -m streams.api``
as a process of its own (the benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd
import uvicorn

from sinks.clickhouse_history import ClickHouseHistory
from sinks.postgres_orders import PostgresOrders
from sinks.redis_state import RedisHotState
from streams.config import Settings
from streams.demo import run_settings, settings_env
from streams.kafka import admin, create_topics
from streams.stores import clickhouse_config, postgres_config, redis_config

FTX = "ftx_btc-perp_2022-01_1m.csv"
MINUTE_US = 60_000_000
ROOT = Path(__file__).resolve().parents[1]


class DataMissing(RuntimeError):
    """The real recordings are not in ``../shared/data``: callers skip with this message."""


@dataclass(frozen=True)
class Placement:
    """Where a symbol's bars are written: Redis holds the newest ``redis`` of them (0: none), ClickHouse and
    the PostgreSQL ``historical_data`` table all ``bars`` when the flag is set; ``offset`` is the first row of
    the recording used (symbols get different stretches of the real series)."""

    bars: int
    redis: int = 0
    clickhouse: bool = False
    postgres: bool = False
    offset: int = 0
    signal: bool = False


def api_namespace(base: Settings, tag: str, partitions: int = 2) -> Settings:
    """Settings of a new namespace ``<tag>-<id>`` with every topic created (``partitions`` each)."""
    settings = run_settings(base, f"{tag}-{uuid.uuid4().hex[:6]}")
    counts = {
        name: partitions
        for name in ("tick_partitions", "bar_partitions", "signal_partitions", "order_partitions")
    }
    topics = settings.topics.model_copy(update={**counts, "dead_letter_partitions": 1})
    settings = settings.model_copy(update={"topics": topics})
    create_topics(settings)
    return settings


def ftx_bars(data_dir: Path, symbol: str, n: int, offset: int = 0) -> list[dict[str, Any]]:
    """Rows ``offset .. offset+n`` of the real FTX BTC-PERP 1m bars as ``Bar`` records of ``symbol``."""
    path = data_dir / FTX
    if not path.exists():
        raise DataMissing(f"{path} is missing: the real recordings live in ../shared/data (see its README)")
    df = _ftx(path).iloc[offset : offset + n]
    if len(df) < n:
        raise ValueError(f"{FTX} has {len(_ftx(path))} rows, asked for rows {offset}..{offset + n}")
    columns = [df[c].to_numpy() for c in ("start_us", "open", "high", "low", "close", "volume")]
    out = []
    for i, (s, o, h, lo, c, v) in enumerate(zip(*columns, strict=True)):
        start = int(s)
        out.append(
            {
                "bar_id": f"{symbol}|1m|{start}",
                "symbol": symbol,
                "timeframe": "1m",
                "start_us": start,
                "open": float(o),
                "high": float(h),
                "low": float(lo),
                "close": float(c),
                "volume": float(v),
                "vwap": (float(h) + float(lo) + float(c)) / 3,
                "trades": 1 + i % 7,
                "first_seq": offset + i,
                "last_seq": offset + i,
                "ingest_us": start + MINUTE_US,
                "close_us": start + MINUTE_US + 5,
            }
        )
    return out


_FRAMES: dict[Path, pd.DataFrame] = {}


def _ftx(path: Path) -> pd.DataFrame:
    if path not in _FRAMES:
        df = pd.read_csv(path)
        df["start_us"] = pd.to_datetime(df["timestamp"], utc=True).dt.as_unit("us").astype("int64")
        _FRAMES[path] = df
    return _FRAMES[path]


def signal_for(bar: dict[str, Any], previous_close: float, model_version: str = "test-m1") -> dict[str, Any]:
    """A ``Signal`` record for a real bar: BUY when it closed above the previous close, else SELL; the score
    is the move in basis points squashed into [0, 1]."""
    move = (bar["close"] - previous_close) / previous_close
    sid = hashlib.sha1(f"{bar['symbol']}|1m|{bar['start_us']}|{model_version}".encode()).hexdigest()[:24]
    t = bar["start_us"] + MINUTE_US
    return {
        "signal_id": sid,
        "symbol": bar["symbol"],
        "timeframe": "1m",
        "start_us": bar["start_us"],
        "action": "BUY" if move > 0 else "SELL",
        "score": round(min(1.0, max(0.0, 0.5 + move * 100)), 6),
        "price": bar["close"],
        "model_version": model_version,
        "inference_path": "fallback",
        "ingest_us": t,
        "close_us": t + 1,
        "indicator_us": t + 2,
        "inference_us": t + 3,
        "publish_us": t + 4,
    }


async def seed(settings: Settings, layout: dict[str, Placement]) -> dict[str, list[dict[str, Any]]]:
    """Write every symbol's bars where its placement says (schemas created), signals into Redis, and wait
    until the PostgreSQL replica has the bars. Returns symbol -> its bars (oldest first)."""
    data = {s: ftx_bars(settings.data_dir, s, p.bars, p.offset) for s, p in layout.items()}
    redis = await RedisHotState(redis_config(settings)).open()
    ch = await ClickHouseHistory(clickhouse_config(settings)).open()
    pg = await PostgresOrders(postgres_config(settings)).open()
    try:
        await redis.write_bars(b for s, p in layout.items() if p.redis for b in data[s][-p.redis :])
        await ch.write_bars([b for s, p in layout.items() if p.clickhouse for b in data[s]])
        pg_bars = [b for s, p in layout.items() if p.postgres for b in data[s]]
        await pg.write_bars(pg_bars)
        await redis.write_signals(
            signal_for(data[s][-1], data[s][-2]["close"]) for s, p in layout.items() if p.signal
        )
    finally:
        for adapter in (redis, ch, pg):
            await adapter.close()
    await wait_replica(settings, len(pg_bars))
    return data


async def wait_replica(settings: Settings, rows: int, timeout_s: float = 20.0) -> None:
    """Wait until the replica's ``historical_data`` holds ``rows`` rows (streaming replication lag)."""
    pg = settings.postgres
    conn = await asyncpg.connect(pg.replica_dsn.get_secret_value())
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                n = await conn.fetchval(f"SELECT count(*) FROM {pg.schema_name}.historical_data")
                if n >= rows:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the replica did not reach {rows} rows of historical_data in {timeout_s}s"
                )
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def drop_namespace(settings: Settings) -> None:
    """Delete the namespace's Redis keys, ClickHouse database, PostgreSQL schema and topics."""
    redis = await RedisHotState(redis_config(settings)).open()
    try:
        client = redis.client
        keys = [k async for k in client.scan_iter(match=f"{settings.redis.key_prefix}:*", count=1000)]
        for key in keys:
            await client.delete(key)
    finally:
        await redis.close()
    # Connected to "default": the namespace's database may be gone already (then there is nothing to drop).
    ch = await ClickHouseHistory(replace(clickhouse_config(settings), database="default"), apply=False).open()
    try:
        await asyncio.to_thread(ch.client.command, f"DROP DATABASE IF EXISTS {settings.clickhouse.database}")
    finally:
        await ch.close()
    conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.postgres.schema_name} CASCADE")
    finally:
        await conn.close()
    kafka = admin(settings)
    futures = kafka.delete_topics(list(settings.topics.all_topics()), request_timeout=15)
    for fut in futures.values():
        with contextlib.suppress(Exception):
            fut.result(timeout=15)


@contextlib.contextmanager
def seeded(
    base: Settings, tag: str, layout: dict[str, Placement]
) -> Iterator[tuple[Settings, dict[str, list[dict[str, Any]]]]]:
    """A new namespace (:func:`api_namespace`) seeded with ``layout`` (:func:`seed`), dropped at the end."""
    settings = api_namespace(base, tag)
    try:
        yield settings, asyncio.run(seed(settings, layout))
    finally:
        asyncio.run(drop_namespace(settings))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ApiServer:
    """``create_app(settings)`` under a real uvicorn on 127.0.0.1:<free port>, in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        """Not started: use it as a context manager."""
        from streams.api.app import create_app

        self.app = create_app(settings)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="api-test-server", daemon=True)

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start within 30 s (see the log above)")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(30)


@contextlib.contextmanager
def api_process(
    settings: Settings, port: int, workers: int = 1, log: Path | None = None, extra: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m streams.api`` for ``settings`` on ``port`` until the block ends (SIGTERM, then KILL)."""
    env = {**os.environ, **settings_env(settings), "STOCKPULSE_LOG_LEVEL": "warn"}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "streams.api", "--port", str(port), "--workers", str(workers), *extra]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if log:
            out.close()  # type: ignore[union-attr]


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 60.0) -> None:
    """Wait until ``url`` answers 200."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the API process exited with {proc.returncode} before answering {url}")
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
            conn.request("GET", parts.path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout_s:g} s")


def closes(bars: Iterable[dict[str, Any]]) -> list[float]:
    return [float(b["close"]) for b in bars]
