"""``stockpulse demo``: the whole pipeline on the local stack with real data, and a summary that adds up.

Steps: a namespace for this run (topics ``demo-<id>.*``, Redis prefix, ClickHouse database and PostgreSQL
schema ``demo_<id>``, so earlier runs do not blur the counts) -> the processes of the topology (as in
production: the feed, the engine and the sink by default; :mod:`streams.topology`) -> replay of the real
recordings in ``../shared/data`` plus three deliberately bad messages -> wait until every replayed tick is
either in a 1-second bar or in the dead-letter topic, and the stores hold what the topics carried -> summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer
from rich.console import Console
from rich.table import Table

from schemas.serde import AvroSerde
from sinks.base import SinkError
from sinks.clickhouse_history import ClickHouseHistory, TableCount
from streams.config import Settings
from streams.kafka import create_topics
from streams.sources.producer import TickProducer
from streams.sources.recordings import load_recording
from streams.stores import clickhouse_config, clickhouse_history, postgres_orders, redis_state
from streams.topology import processes

DEFAULT_FILES = (
    "eurusd_2020-01-01_quotes.csv",
    "truefx_usdjpy_2013-01_quotes.csv",
    "binance_btcusdt_trades.parquet",
)
_PARTITION_FIELDS = ("tick_partitions", "bar_partitions", "signal_partitions", "order_partitions")
DEMO_TS = 1_577_898_000_000_000


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a child process see the same (run-specific) settings: topic
    names, partition counts and timeframes, consumer groups and store namespaces."""
    t = settings.topics
    return {
        **{f"STOCKPULSE_TOPICS__{k.upper()}": str(getattr(t, k)) for k in _PARTITION_FIELDS},
        "STOCKPULSE_TOPICS__TIMEFRAMES": json.dumps(list(t.timeframes)),
        "STOCKPULSE_SIGNAL__TIMEFRAMES": json.dumps(list(settings.signal.timeframes)),
        "STOCKPULSE_TOPICS__TICKS_RAW": t.ticks_raw,
        "STOCKPULSE_TOPICS__TICKS": t.ticks,
        "STOCKPULSE_TOPICS__BARS_PREFIX": t.bars_prefix,
        "STOCKPULSE_TOPICS__INDICATORS_PREFIX": t.indicators_prefix,
        "STOCKPULSE_TOPICS__SIGNALS": t.signals,
        "STOCKPULSE_TOPICS__ORDERS": t.orders,
        "STOCKPULSE_TOPICS__FILLS": t.fills,
        "STOCKPULSE_TOPICS__DEAD_LETTER": t.dead_letter,
        "STOCKPULSE_TOPICS__PERF_ALERTS": t.perf_alerts,
        "STOCKPULSE_FEED__GROUP_ID": settings.feed.group_id,
        "STOCKPULSE_SERVICE_GROUP_PREFIX": settings.service_group_prefix,
        "STOCKPULSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "STOCKPULSE_CLICKHOUSE__DATABASE": settings.clickhouse.database,
        "STOCKPULSE_POSTGRES__SCHEMA_NAME": settings.postgres.schema_name,
        "STOCKPULSE_TOPOLOGY": settings.topology,
    }


def run_settings(settings: Settings, run: str) -> Settings:
    """Settings whose topics, consumer groups and store namespaces belong to this run only."""
    t = settings.topics.model_copy(
        update={
            "ticks_raw": f"{run}.ticks.raw",
            "ticks": f"{run}.ticks",
            "bars_prefix": f"{run}.bars",
            "indicators_prefix": f"{run}.indicators",
            "signals": f"{run}.signals",
            "orders": f"{run}.orders",
            "fills": f"{run}.fills",
            "dead_letter": f"{run}.deadletter",
            "perf_alerts": f"{run}.perf.alerts",
        }
    )
    ns = run.replace("-", "_")
    return settings.model_copy(
        update={
            "topics": t,
            "feed": settings.feed.model_copy(update={"group_id": f"{run}-feed"}),
            "service_group_prefix": run,
            "redis": settings.redis.model_copy(update={"key_prefix": run}),
            "clickhouse": settings.clickhouse.model_copy(update={"database": ns}),
            "postgres": settings.postgres.model_copy(update={"schema_name": ns}),
        }
    )


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``stockpulse ARGS`` as its own process group, output to ``log``."""
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    for p in procs.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def bad_messages() -> list[tuple[bytes, str]]:
    bar = AvroSerde.for_record("Bar").encode(
        {"bar_id": "x", "symbol": "EURUSD", "timeframe": "1s", "start_us": DEMO_TS, "open": 1.0,
         "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0, "vwap": 1.0, "trades": 1}
    )  # fmt: skip
    nan_tick = AvroSerde.for_record("Tick").encode(
        {"symbol": "EURUSD", "ts_us": DEMO_TS, "price": float("nan"), "size": 0.0, "source": "demo"}
    )
    corrupt = b"\x13\x37 corrupt bytes"
    return [(corrupt, "corrupt_payload"), (bar, "wrong_schema"), (nan_tick, "invalid_price")]


class Tally:
    """Reads the run's output topics and keeps the totals (distinct ids, so re-deliveries do not count)."""

    def __init__(self, settings: Settings) -> None:
        t = settings.topics
        self.kind = {t.bars("1s"): "bars_1s", t.dead_letter: "dead", t.signals: "signals", t.orders: "orders",
                     t.fills: "fills"}  # fmt: skip
        for tf in t.timeframes:
            self.kind.setdefault(t.bars(tf), f"bars_{tf}")
        self.serde = {
            "bars": AvroSerde.for_record("BarBatch"),
            "dead": AvroSerde.for_record("DeadLetter"),
            "signals": AvroSerde.for_record("Signal"),
            "orders": AvroSerde.for_record("Order"),
            "fills": AvroSerde.for_record("Fill"),
        }
        self.ids: dict[str, set[str]] = {k: set() for k in self.kind.values()}
        self.ticks_in_1s_bars = 0
        self.dead = Counter[str]()
        self.actions = Counter[str]()
        self.paths = Counter[str]()
        self.order_status = Counter[str]()
        self.tick_to_signal_ms: list[float] = []
        self.pnl: dict[str, tuple[int, float]] = {}  # symbol -> (ts_us, realized PnL after its newest fill)
        self._consumer = Consumer(
            {**settings.kafka.librdkafka(), "group.id": f"{settings.service_group_prefix}-tally",
             "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )  # fmt: skip
        self._consumer.subscribe(list(self.kind))

    def count(self, kind: str) -> int:
        return len(self.ids[kind])

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self._consumer.consume(1000, timeout=0.1):
                if msg.error() is None:
                    self._add(self.kind[msg.topic() or ""], msg.value() or b"")

    def _add(self, kind: str, value: bytes) -> None:
        if kind.startswith("bars_"):
            for bar in self.serde["bars"].decode(value)["bars"]:
                if bar["bar_id"] not in self.ids[kind]:
                    self.ids[kind].add(bar["bar_id"])
                    if kind == "bars_1s":
                        self.ticks_in_1s_bars += bar["trades"]
        elif kind == "dead":
            d = self.serde["dead"].decode(value)
            key = f"{d['topic']}:{d['partition']}:{d['offset']}:{d['reason_code']}:{d['payload']!r}"
            if key not in self.ids["dead"]:
                self.ids["dead"].add(key)
                self.dead[d["reason_code"]] += 1
        else:
            rec = self.serde[kind].decode(value)
            rid = rec[{"signals": "signal_id", "orders": "order_id", "fills": "fill_id"}[kind]]
            if rid not in self.ids[kind]:
                self.ids[kind].add(rid)
                if kind == "signals":
                    self.actions[rec["action"]] += 1
                    self.paths[rec["inference_path"]] += 1
                    if rec["ingest_us"]:
                        self.tick_to_signal_ms.append((rec["publish_us"] - rec["ingest_us"]) / 1000)
                elif kind == "fills":
                    cur = self.pnl.get(rec["symbol"])
                    if cur is None or cur[0] <= rec["ts_us"]:
                        self.pnl[rec["symbol"]] = (rec["ts_us"], rec["realized_pnl"])
                elif kind == "orders":
                    self.order_status[rec["status"]] += 1

    def close(self) -> None:
        self._consumer.close()


async def store_counts(settings: Settings, redis: bool = False) -> dict[str, int]:
    """Distinct rows per table in ClickHouse and PostgreSQL for this run's namespace (and, with ``redis``,
    the hot state: symbols, chart bars, latest signals)."""
    ch = await clickhouse_history(settings).open()
    pg = await postgres_orders(settings).open()
    try:
        ch_counts = await ch.counts()
        pg_counts = await pg.counts()
    finally:
        await ch.close()
        await pg.close()
    out = {f"clickhouse.{k}": v.distinct for k, v in ch_counts.items()}
    out.update({f"postgres.{k}": v for k, v in pg_counts.items()})
    if redis:
        out.update(await _redis_counts(settings))
    return out


async def _redis_counts(settings: Settings) -> dict[str, int]:
    state = await redis_state(settings).open()
    try:
        symbols = await state.symbols()
        bars = 0
        for tf in settings.topics.timeframes:
            for sym in symbols:
                bars += int(await state.client.zcard(state.bars_key(sym, tf)))
        signals = len(await state.latest_signals(symbols))
    finally:
        await state.close()
    return {"redis.symbols": len(symbols), "redis.chart_bars": bars, "redis.latest_signals": signals}


def run_demo(settings: Settings, files: list[Path] | None, timeout: float, console: Console) -> int:
    run = f"demo-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"
    s = run_settings(settings, run)
    create_topics(s)
    logs = settings.stack.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = settings_env(s)
    layout = processes(s.topology)
    names = ", ".join(f"{p.name} ({'+'.join(p.stages)})" if len(p.stages) > 1 else p.name for p in layout)
    console.print(f"[bold]demo run {run}[/bold]: {s.topology} topology: {names}; logs in {logs}/{run}-*.log")
    procs = {p.name: spawn(list(p.command), env, logs / f"{run}-{p.name}.log") for p in layout}
    tally = Tally(s)
    t0 = time.perf_counter()
    bad = bad_messages()
    try:
        producer = TickProducer(s, "avro")
        per_file: list[tuple[str, str, int]] = []
        for f in files or [settings.data_dir / name for name in DEFAULT_FILES]:
            rec = load_recording(f)
            r = producer.send([rec.symbol], np.zeros(len(rec), np.int32), rec.ts_us, rec.price, rec.size)
            producer.end_of_stream([rec.symbol])  # the replay ends: its last bars close now
            per_file.append((f.name, rec.symbol, r.sent))
        for value, _ in bad:
            producer.send_raw(value, b"EURUSD")
        producer.flush()
        total = sum(n for _, _, n in per_file) + len(bad)
        console.print(f"replayed {total - len(bad):,} real ticks + {len(bad)} bad messages; waiting ...")
        deadline = time.monotonic() + timeout
        stores: dict[str, int] = {}
        settled = False
        stored_s = None
        while time.monotonic() < deadline and not settled:
            tally.poll(0.5)
            for name, p in procs.items():
                if p.poll() is not None:
                    console.print(
                        f"[red]{name} exited with {p.returncode}; see {logs}/{run}-{name}.log[/red]"
                    )
                    return 1
            if stored_s is None and asyncio.run(_ticks_stored(s)) >= total - len(bad):
                stored_s = time.perf_counter() - t0
            if tally.ticks_in_1s_bars + sum(tally.dead.values()) < total:
                continue
            stores = asyncio.run(store_counts(s))
            settled = _stores_match(tally, stores, total - len(bad))
        wall = time.perf_counter() - t0
        if settled:
            stores = asyncio.run(store_counts(s, redis=True))
    finally:
        stop(procs)
        tally.close()
    timing = {"wall_s": wall, "stored_s": stored_s or wall, "valid_ticks": total - len(bad)}
    return _summary(console, per_file, total, bad, tally, stores, timing, settled)


async def _ticks_stored(settings: Settings) -> int:
    """Distinct ticks in the run's ClickHouse database (0 until the sink has created it)."""
    ch = ClickHouseHistory(clickhouse_config(settings), apply=False)
    try:
        await ch.open()
        return (await ch.counts()).get("ticks", TableCount(0, 0)).distinct
    except SinkError:
        return 0
    finally:
        await ch.close()


def _stores_match(tally: Tally, stores: dict[str, int], valid_ticks: int) -> bool:
    bars = sum(tally.count(k) for k in tally.ids if k.startswith("bars_"))
    return (
        stores.get("clickhouse.ticks") == valid_ticks
        and stores.get("clickhouse.bars") == bars
        and stores.get("clickhouse.signals") == tally.count("signals")
        and stores.get("postgres.orders") == tally.count("orders")
        and stores.get("postgres.fills") == tally.count("fills")
    )


def _summary(
    console: Console,
    per_file: list[tuple[str, str, int]],
    total: int,
    bad: list[tuple[bytes, str]],
    tally: Tally,
    stores: dict[str, int],
    timing: dict[str, float],
    settled: bool,
) -> int:
    table = Table(title="StockPulse demo summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, symbol, n in per_file:
        table.add_row(f"ticks replayed: {symbol} ({name})", f"{n:,}")
    table.add_row("bad messages injected", str(len(bad)))
    table.add_row("ticks in (total)", f"{total:,}")
    dead = sum(tally.dead.values())
    table.add_row("invalid -> dead-letter topic", f"{dead:,} {dict(tally.dead)}")
    for kind in sorted(k for k in tally.ids if k.startswith("bars_")):
        table.add_row(f"{kind.replace('bars_', '')} bars", f"{tally.count(kind):,}")
    table.add_row("ticks inside the 1s bars", f"{tally.ticks_in_1s_bars:,}")
    table.add_row("ticks in 1s bars + dead letters", f"{tally.ticks_in_1s_bars + dead:,}")
    table.add_row("signals (1m)", f"{tally.count('signals'):,} {dict(tally.actions)} via {dict(tally.paths)}")
    table.add_row("orders", f"{tally.count('orders'):,} {dict(tally.order_status)}")
    table.add_row("fills", f"{tally.count('fills'):,}")
    pnl = sum(p for _, p in tally.pnl.values())
    per_symbol = {sym: round(p, 6) for sym, (_, p) in sorted(tally.pnl.items())}
    table.add_row("realized PnL (paper, quote currency)", f"{pnl:,.6f} {per_symbol}")
    for name, n in sorted(stores.items()):
        table.add_row(f"stored: {name}", f"{n:,}")
    if tally.tick_to_signal_ms:
        p50, p99 = np.percentile(tally.tick_to_signal_ms, [50, 99])
        table.add_row(
            "tick -> signal latency (replay sent before the services were up: mostly their start-up)",
            f"p50 {p50:,.1f} ms, p99 {p99:,.1f} ms",
        )
    stored_s = timing["stored_s"]
    table.add_row(
        "throughput, replay start -> every tick in ClickHouse",
        f"{timing['valid_ticks'] / stored_s:,.0f} ticks/s ({stored_s:.1f} s, incl. service start-up)",
    )
    table.add_row(
        "wall time", f"{timing['wall_s']:.1f} s (includes process start-up and consumer group joins)"
    )
    console.print(table)
    expected = sorted(reason for _, reason in bad)
    ok = tally.ticks_in_1s_bars + dead == total and sorted(tally.dead.elements()) == expected and settled
    console.print("[green]counts add up[/green]" if ok else "[red]counts do not add up[/red]")
    return 0 if ok else 1
