"""Run the whole pipeline (the processes of its topology: feed, engine, sink by default) in an isolated
namespace, inject faults, and read back what the stores hold, over real connections.

Used by the pipeline, chaos and benchmark tests: a clean run and a run with faults must leave identical
stores.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import numpy as np
from redis.cluster import ClusterNode, RedisCluster

from schemas.serde import AvroSerde
from sinks.redis_codec import BAR_MEMBER_FIELDS
from streams.config import Settings
from streams.demo import run_settings, settings_env, spawn
from streams.kafka import create_topics
from streams.sources.producer import TickProducer
from streams.sources.recordings import load_recording
from streams.topology import processes
from tests.support.kafka import read_to_end
from tests.support.net import free_port

#: record fields stamped with the wall clock as a record passes a stage (they differ from run to run)
WALL_CLOCK_FIELDS = frozenset(
    {"ingest_us", "close_us", "indicator_us", "inference_us", "publish_us", "signal_us", "inference_path"}
)
FILES = ("eurusd_2020-01-01_quotes.csv", "truefx_usdjpy_2013-01_quotes.csv", "binance_btcusdt_trades.parquet")


@dataclass
class Ticks:
    symbols: list[str]
    index: np.ndarray
    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


def real_ticks(settings: Settings, files: tuple[str, ...] = FILES) -> Ticks:
    """The real recordings, interleaved round-robin by position so every symbol advances together."""
    recs = [load_recording(settings.data_dir / f) for f in files]
    keys = np.concatenate([np.arange(len(r)) / len(r) for r in recs])
    order = np.argsort(keys, kind="stable")
    idx = np.concatenate([np.full(len(r), i, np.int32) for i, r in enumerate(recs)])[order]
    ts = np.concatenate([r.ts_us for r in recs])[order]
    px = np.concatenate([r.price for r in recs])[order]
    sz = np.concatenate([r.size for r in recs])[order]
    return Ticks([r.symbol for r in recs], idx, ts, px, sz)


class PipelineRun:
    """One namespace (topics, groups, Redis prefix, ClickHouse database, PostgreSQL schema), its processes."""

    def __init__(self, settings: Settings, tag: str, extra_env: dict[str, str] | None = None) -> None:
        self.run = f"{tag}-{uuid.uuid4().hex[:6]}"
        self.settings = run_settings(settings, self.run)
        create_topics(self.settings)
        self.env = {**settings_env(self.settings), **(extra_env or {})}
        self.logs = settings.stack.dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.producer = TickProducer(self.settings, "avro")
        self.layout = {p.name: p for p in processes(self.settings.topology)}
        self.metrics_ports = {name: free_port() for name in self.layout}

    @property
    def metrics_targets(self) -> dict[str, str]:
        """service -> its /metrics URL (every service serves Prometheus metrics on its own port)."""
        return {n: f"http://127.0.0.1:{p}/metrics" for n, p in self.metrics_ports.items()}

    def log(self, name: str) -> Path:
        return self.logs / f"{self.run}-{name}.log"

    def start(self, *names: str) -> None:
        for name in names or self.layout:
            env = {**self.env, "STOCKPULSE_METRICS_PORT": str(self.metrics_ports[name])}
            self.procs[name] = spawn(list(self.layout[name].command), env, self.log(name))

    def kill(self, name: str) -> None:
        """SIGKILL the service's whole process group: no shutdown hooks, no final checkpoint."""
        p = self.procs[name]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)

    def add(self, name: str) -> str:
        """Start one more process of ``name`` (scale-out; same consumer group): returns its key."""
        key = f"{name}+{sum(1 for k in self.procs if k.startswith(f'{name}+')) + 1}"
        self.metrics_ports[key] = free_port()
        env = {**self.env, "STOCKPULSE_METRICS_PORT": str(self.metrics_ports[key])}
        self.procs[key] = spawn(list(self.layout[name].command), env, self.log(key))
        return key

    def remove(self, key: str, kill: bool = False) -> None:
        """Stop one process and stop watching it: SIGTERM (it checkpoints and hands its partitions over) or
        SIGKILL (no shutdown hooks)."""
        p = self.procs.pop(key)
        os.killpg(p.pid, signal.SIGKILL if kill else signal.SIGTERM)
        p.wait(30)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = self.log(name).read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {p.returncode}:\n{tail}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def send(self, ticks: Ticks, start: int = 0, stop: int | None = None, rate: float | None = None) -> None:
        """Send ticks[start:stop] to ticks.raw, at ``rate`` ticks/s (None: as fast as possible)."""
        stop = len(ticks) if stop is None else stop
        chunk = (stop - start) if rate is None else max(1, int(rate / 20))
        t0 = time.perf_counter()
        for i in range(start, stop, chunk):
            j = min(stop, i + chunk)
            self.producer.send(
                ticks.symbols, ticks.index[i:j], ticks.ts[i:j], ticks.price[i:j], ticks.size[i:j]
            )
            if rate is not None:
                time.sleep(max(0.0, t0 + (j - start) / rate - time.perf_counter()))

    def finish(self, ticks: Ticks, bad: list[bytes] | None = None) -> None:
        """After the replay: send ``bad`` messages (keyed EURUSD), then the end of stream of every replayed
        symbol (their last bars close), and flush."""
        for value in bad or []:
            self.producer.send_raw(value, b"EURUSD")
        self.producer.end_of_stream(ticks.symbols)

    def topic_contents(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every output topic's records (batches flattened), each as (partition, sorted fields), sorted, with
        the wall-clock stage stamps and the inference path (which server answered) left out."""
        t = self.settings.topics
        kinds = {t.signals: "Signal", t.orders: "Order", t.fills: "Fill"}
        for tf in t.timeframes:
            kinds[t.bars(tf)] = "BarBatch"
            kinds[t.indicators(tf)] = "IndicatorBatch"
        out: dict[str, list[tuple[Any, ...]]] = {}
        for topic, record in kinds.items():
            serde = AvroSerde.for_record(record)
            rows = []
            for part, value in read_to_end(self.settings, topic):
                decoded = serde.decode(value)
                items = decoded.get("bars") or decoded.get("snapshots") or [decoded]
                for item in items:
                    kept = sorted((k, v) for k, v in item.items() if k not in WALL_CLOCK_FIELDS)
                    rows.append((part, *(_plain(v) for _, v in kept)))
            out[topic.removeprefix(f"{self.run}.")] = sorted(rows, key=repr)
        return out

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every store's content for this namespace, as sorted tuples (stage timestamps left out)."""
        return asyncio.run(_snapshot(self.settings))

    def wait_for(self, ready: Any, timeout: float = 60.0) -> dict[str, int]:
        """Wait until ``ready(counts)`` is true for the stores' counts; returns those counts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            counts = asyncio.run(_counts(self.settings))
            if ready(counts):
                return counts
            time.sleep(0.2)
        raise AssertionError(f"stores did not get there in {timeout}s: {counts}")

    def wait_settled(self, valid_ticks: int, timeout: float = 120.0, quiet_s: float = 3.0) -> dict[str, int]:
        """Wait until ClickHouse has every valid tick, every tick is inside a stored 1s bar (the last bars
        close on the end of stream, see :meth:`finish`) and no store count changed for ``quiet_s`` seconds."""
        deadline = time.monotonic() + timeout
        last: dict[str, int] | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            self.check_alive()
            counts = asyncio.run(_counts(self.settings))
            if counts != last:
                last, since = counts, time.monotonic()
            elif (
                counts.get("ticks", 0) >= valid_ticks
                and counts.get("ticks_in_1s_bars", 0) >= valid_ticks
                and time.monotonic() - since >= quiet_s
            ):
                return counts
            time.sleep(0.5)
        raise AssertionError(f"pipeline did not settle in {timeout}s: {last} (want {valid_ticks} ticks)")


async def _counts(settings: Settings) -> dict[str, int]:
    snap = await _snapshot(settings)
    counts = {k: len(v) for k, v in snap.items()}
    counts["ticks_in_1s_bars"] = sum(int(b[8]) for b in snap["bars"] if b[1] == "1s")
    return counts


def _plain(v: Any) -> Any:
    """A field value comparable with ==: NaN as None, lists as tuples."""
    if isinstance(v, list):
        return tuple(_plain(x) for x in v)
    return None if isinstance(v, float) and math.isnan(v) else v


def _row(row: Any) -> tuple[Any, ...]:
    """A row as a tuple with NaN as None: NaN != NaN would make equal stores compare unequal."""
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)


async def _snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    import asyncpg

    c = settings.clickhouse
    ch = await asyncio.to_thread(
        clickhouse_connect.get_client,
        dsn=c.url,
        username=c.username,
        password=c.password.get_secret_value() if c.password else "",
    )
    queries = {
        "ticks": "SELECT symbol, seq, toUnixTimestamp64Micro(ts), price, size FROM {db}.ticks FINAL",
        "bars": "SELECT symbol, timeframe, toUnixTimestamp64Micro(start), open, high, low, close, volume, "
        "trades "
        "FROM {db}.bars FINAL",
        "indicators": "SELECT snapshot_id, ema_fast, rsi, macd, bb_upper, atr FROM {db}.indicators FINAL",
        "signals": "SELECT signal_id, symbol, toUnixTimestamp64Micro(start), toString(action), "
        "round(score, 5) "
        "FROM {db}.signals FINAL",
        # derived stores: sums rounded (their addition order follows the insert blocks)
        "ohlcv_1m": "SELECT symbol, toUnixTimestamp(start), open, high, low, close, round(volume, 6), trades "
        "FROM {db}.ohlcv_1m",
        "ohlcv_1d": "SELECT symbol, toUnixTimestamp(start), open, high, low, close, round(volume, 6), trades "
        "FROM {db}.ohlcv_1d",
        "signal_stats_1d": "SELECT symbol, day, signals, buys, sells, holds, round(mean_score, 5) "
        "FROM {db}.signal_stats_1d",
    }
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        for name, sql in queries.items():
            try:
                rows = (await asyncio.to_thread(ch.query, sql.format(db=c.database))).result_rows
            except Exception as exc:  # the table does not exist until the sink's first write
                if "UNKNOWN_TABLE" not in str(exc) and "UNKNOWN_DATABASE" not in str(exc):
                    raise
                rows = []
            out[name] = sorted(_row(r) for r in rows)
    finally:
        ch.close()
    pg = settings.postgres
    conn = await asyncpg.connect(pg.dsn.get_secret_value(), server_settings={"search_path": pg.schema_name})
    try:
        for name, sql in {
            "orders": "SELECT order_id, symbol, side, quantity, ref_price, status, reason FROM orders",
            "fills": "SELECT fill_id, order_id, side, quantity, price, position, realized_pnl FROM fills",
            "pg_bars": "SELECT symbol, timeframe, (extract(epoch FROM start) * 1000000)::bigint, open, high, "
            "low, close, volume, trades FROM historical_data",
            "daily_performance": "SELECT symbol, day, trades, buys, sells, closing_trades, "
            "round(quantity::numeric, 6), round(notional::numeric, 4), round(realized_pnl::numeric, 4) "
            "FROM daily_performance",
        }.items():
            try:
                if name == "daily_performance":  # a read model refreshed on a timer: bring it up to date
                    await conn.execute("REFRESH MATERIALIZED VIEW daily_performance")
                rows = await conn.fetch(sql)
            except asyncpg.UndefinedTableError:
                rows = []
            out[name] = sorted(_row(r) for r in rows)
    finally:
        await conn.close()
    out.update(await asyncio.to_thread(_redis_snapshot, settings))
    return out


def _redis_snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """The hot state in Redis that outlives a test (TTL 300 s): the chart bars (stage timestamps left out),
    the newest signal and the position of every book. Prices and indicator snapshots (TTL 1-30 s) are not
    compared."""
    r = settings.redis
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in r.nodes],
        password=r.password.get_secret_value() if r.password else None,
        decode_responses=True,
    )
    keep = BAR_MEMBER_FIELDS.index("ingest_us")
    out: dict[str, list[tuple[Any, ...]]] = {"redis_bars": [], "redis_signals": [], "redis_positions": []}
    try:
        for key in client.scan_iter(match=f"{r.key_prefix}:{{*", count=1000):
            symbol, kind = key.split("{", 1)[1].split("}", 1)[0], key.split("}:", 1)[1]
            if kind.startswith("bars:"):
                for member in client.zrange(key, 0, -1):
                    fields = json.loads(member)[:keep]
                    out["redis_bars"].append((symbol, kind[5:], *(_plain(v) for v in fields)))
            elif kind == "signal":
                h = client.hgetall(key)
                out["redis_signals"].append((symbol, h.get("signal_id"), h.get("timeframe"), h.get("action")))
            elif kind.startswith("position:"):
                h = client.hgetall(key)
                fields = ("fill_id", "order_id", "quantity", "avg_price", "realized_pnl")
                out["redis_positions"].append((symbol, kind[9:], *(h.get(f) for f in fields)))
    finally:
        client.close()
    return {name: sorted(rows, key=repr) for name, rows in out.items()}


def distinct_records(topic: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A topic's distinct records (:meth:`PipelineRun.topic_contents` rows; a record produced again after a
    crash is one record: consumers collapse it by id). Signal scores to 5 decimals, as the stores keep them:
    the in-process fallback model (taken when Triton is slow) agrees with Triton to about 1e-7, not to the
    last bit."""
    if topic == "signals":
        rows = [tuple(round(v, 5) if isinstance(v, float) else v for v in row) for row in rows]
    return sorted(set(rows), key=repr)


def reconcile(
    clean: dict[str, Any], snap: dict[str, list[tuple[Any, ...]]], topics: dict[str, Any]
) -> list[str]:
    """The reconcile table of a run against the clean one: every store and output topic, with the records
    lost and duplicated (stores are compared row for row, topics as distinct records)."""
    lines = ["store/topic | clean | run | lost | duplicated"]
    for table, got in snap.items():
        want = set(clean["snapshot"].get(table, []))
        lines.append(
            f"{table} | {len(want)} | {len(got)} | {len(want - set(got))} | {len(got) - len(set(got))}"
        )
    for topic, rows in topics.items():
        want, got = set(distinct_records(topic, clean["topics"][topic])), distinct_records(topic, rows)
        lines.append(f"{topic} | {len(want)} | {len(rows)} | {len(want - set(got))} | {len(rows) - len(got)}")
    return lines


@contextmanager
def pipeline(settings: Settings, tag: str, extra_env: dict[str, str] | None = None) -> Iterator[PipelineRun]:
    run = PipelineRun(settings, tag, extra_env)
    try:
        yield run
    finally:
        run.stop()
