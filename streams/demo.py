"""``stockpulse demo``: the pipeline on the local stack with real data, and a summary whose counts add up.

Steps: topics for this run (``demo-<id>.*``, so earlier runs do not blur the counts) -> the feed handler and
the price service as separate processes (as in production) -> replay of the real recordings in
``../shared/data`` plus three deliberately bad messages -> wait until every replayed tick is either in a
1-second bar or in the dead-letter topic -> summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from schemas.serde import AvroSerde
from streams.config import Settings
from streams.kafka import create_topics
from streams.sources.producer import TickProducer
from streams.sources.recordings import load_recording

DEFAULT_FILES = (
    "eurusd_2020-01-01_quotes.csv",
    "truefx_usdjpy_2013-01_quotes.csv",
    "binance_btcusdt_trades.parquet",
)
DEMO_TS = 1_577_898_000_000_000


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make a child process see the same (run-specific) settings."""
    t = settings.topics
    env = {
        "STOCKPULSE_TOPICS__TICKS_RAW": t.ticks_raw,
        "STOCKPULSE_TOPICS__TICKS": t.ticks,
        "STOCKPULSE_TOPICS__BARS_PREFIX": t.bars_prefix,
        "STOCKPULSE_TOPICS__INDICATORS_PREFIX": t.indicators_prefix,
        "STOCKPULSE_TOPICS__SIGNALS": t.signals,
        "STOCKPULSE_TOPICS__ORDERS": t.orders,
        "STOCKPULSE_TOPICS__FILLS": t.fills,
        "STOCKPULSE_TOPICS__DEAD_LETTER": t.dead_letter,
        "STOCKPULSE_FEED__GROUP_ID": settings.feed.group_id,
        "STOCKPULSE_SERVICE_GROUP_PREFIX": settings.service_group_prefix,
    }
    return env


def run_settings(settings: Settings, run: str) -> Settings:
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
        }
    )
    feed = settings.feed.model_copy(update={"group_id": f"{run}-feed"})
    return settings.model_copy(update={"topics": t, "feed": feed, "service_group_prefix": run})


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _bad_messages() -> list[tuple[bytes, str]]:
    bar = AvroSerde.for_record("Bar").encode(
        {
            "bar_id": "x",
            "symbol": "EURUSD",
            "timeframe": "1s",
            "start_us": DEMO_TS,
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 0.0,
            "vwap": 1.0,
            "trades": 1,
        }
    )
    nan_tick = AvroSerde.for_record("Tick").encode(
        {"symbol": "EURUSD", "ts_us": DEMO_TS, "price": float("nan"), "size": 0.0, "source": "demo"}
    )
    corrupt = b"\x13\x37 corrupt bytes"
    return [(corrupt, "corrupt_payload"), (bar, "wrong_schema"), (nan_tick, "invalid_price")]


class _Tally:
    """Reads the run's bar and dead-letter topics and keeps the totals."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Consumer

        self.settings = settings
        self.bar_topic = settings.topics.bars("1s")
        self._bars = AvroSerde.for_record("BarBatch")
        self._dead = AvroSerde.for_record("DeadLetter")
        self._consumer = Consumer(
            {
                **settings.kafka.librdkafka(),
                "group.id": f"{settings.service_group_prefix}-tally",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([self.bar_topic, settings.topics.dead_letter])
        self.bars = 0
        self.ticks_in_bars = 0
        self.dead = Counter[str]()
        self.bar_ids: set[str] = set()

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self._consumer.consume(1000, timeout=0.1):
                if msg.error() is not None:
                    continue
                if msg.topic() == self.bar_topic:
                    for bar in self._bars.decode(msg.value() or b"")["bars"]:
                        if bar["bar_id"] not in self.bar_ids:
                            self.bar_ids.add(bar["bar_id"])
                            self.bars += 1
                            self.ticks_in_bars += bar["trades"]
                else:
                    self.dead[self._dead.decode(msg.value() or b"")["reason_code"]] += 1

    def close(self) -> None:
        self._consumer.close()


def run_demo(settings: Settings, files: list[Path] | None, timeout: float, console: Console) -> int:
    run = f"demo-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"
    s = run_settings(settings, run)
    create_topics(s)
    logs = settings.stack.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = settings_env(s)
    t = s.topics
    console.print(f"[bold]demo run {run}[/bold]: topics {t.ticks_raw} -> {t.ticks} -> {t.bars('1s')}")
    procs = {
        "feed": _spawn(["feed"], env, logs / f"{run}-feed.log"),
        "price": _spawn(["worker", "price"], env, logs / f"{run}-price.log"),
    }
    tally = _Tally(s)
    t0 = time.perf_counter()
    try:
        producer = TickProducer(s, "avro")
        sent = 0
        per_file: list[tuple[str, str, int]] = []
        for f in files or [settings.data_dir / name for name in DEFAULT_FILES]:
            rec = load_recording(f)
            r = producer.send([rec.symbol], np.zeros(len(rec), np.int32), rec.ts_us, rec.price, rec.size)
            per_file.append((f.name, rec.symbol, r.sent))
            sent += r.sent
        bad = _bad_messages()
        for value, _ in bad:
            producer.send_raw(value, b"EURUSD")
        producer.flush()
        total = sent + len(bad)
        console.print(f"replayed {sent} real ticks + {len(bad)} bad messages; waiting for the pipeline ...")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tally.poll(0.5)
            for name, p in procs.items():
                if p.poll() is not None:
                    log = logs / f"{run}-{name}.log"
                    console.print(f"[red]{name} exited with {p.returncode}; see {log}[/red]")
                    return 1
            if tally.ticks_in_bars + sum(tally.dead.values()) >= total:
                break
        wall = time.perf_counter() - t0
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        tally.close()
    return _summary(console, per_file, total, len(bad), tally, wall, [reason for _, reason in bad])


def _summary(
    console: Console,
    per_file: list[tuple[str, str, int]],
    total: int,
    bad: int,
    tally: _Tally,
    wall: float,
    expected_reasons: list[str],
) -> int:
    table = Table(title="StockPulse demo summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, symbol, n in per_file:
        table.add_row(f"ticks replayed from {name} ({symbol})", f"{n:,}")
    table.add_row("bad messages injected", str(bad))
    table.add_row("ticks in (total)", f"{total:,}")
    dead = sum(tally.dead.values())
    table.add_row("invalid -> dead-letter topic", f"{dead:,} " + str(dict(tally.dead)))
    table.add_row("1s bars out", f"{tally.bars:,}")
    table.add_row("ticks inside those bars", f"{tally.ticks_in_bars:,}")
    table.add_row("ticks in bars + dead letters", f"{tally.ticks_in_bars + dead:,}")
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("throughput", f"{total / wall:,.0f} ticks/s (includes process start-up and group joins)")
    console.print(table)
    ok = tally.ticks_in_bars + dead == total and sorted(tally.dead.elements()) == sorted(expected_reasons)
    console.print("[green]counts add up[/green]" if ok else "[red]counts do not add up[/red]")
    return 0 if ok else 1
