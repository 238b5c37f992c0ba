"""Soak: the processes of the topology at a steady input rate for N minutes; RSS, lag and latency over time.

``stockpulse bench soak --minutes N [--rate R]`` starts the services as processes on their own namespace
(as :mod:`bench.e2e`), sends simulated ticks (event time = wall clock) at ``R`` ticks/s through
``ticks.raw``, and every ``sample_s`` records per service the resident memory (VmRSS of its process tree) and
CPU, and for the pipeline:

* lag, from our own numbers only (never the broker's end offsets, which the local broker reports wrongly):
  ``ticks sent - ticks stored in ClickHouse`` (end to end), and the feed's input lag ``messages the producer
  had acknowledged on ticks.raw - the feed's checkpointed next offsets`` (PostgreSQL ``stream_checkpoints``);
* tick -> signal p50/p99 of the signals that arrived in the window (from the message timestamps).

At the end, growth is flagged from least-squares slopes over the second half of the run (the first half
warms caches, JIT and allocators): RSS growth above ``rss_mb_per_min`` per service (a leak), and lag creep
when the median lag of the last third of the run exceeds the middle third's by more than one second of
input (or half of it, whichever is larger): the sink writes every 0.5 s, so single samples are noisy.
The services make 1 s bars into signals (``STOCKPULSE_SIGNAL__TIMEFRAMES=["1s","1m"]``): 1 m indicators
need 35 minutes of event time before their first signal. JSON to ``bench/results/soak.json``
(``soak.quick.json`` for short runs) and a PNG of RSS and lag over time.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from bench.e2e_inputs import continue_prices, encode_ticks, steady
from bench.e2e_observe import ProcTree, Stores, Tally, drop_namespace
from bench.machine import machine_info
from streams import kafka
from streams.config import Settings, get_settings
from streams.demo import run_settings, settings_env, spawn, stop
from streams.kafka import create_topics
from streams.topology import processes

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 60.0
    rate: float = 5_000.0  # ticks/s, one tick per message
    symbols: int = 100
    sample_s: float = 10.0
    chunk_s: float = 0.1
    rss_mb_per_min: float = 2.0  # flag a service whose RSS grows faster than this in the second half
    max_lag_s: float = 10.0  # stored ticks may trail sent ticks by at most this much input, after minute 1
    latency_growth: float = (
        2.0  # the last third's median p99 tick -> signal may be at most this x the first's
    )
    # The input producer's linger: the local broker's (Tansu memory storage) fetch cost grows with the number
    # of stored record batches (measured: a hop 5 -> 15 ms from 20k to 120k batches per partition); at 5 ms
    # linger 2,000 ticks/s became ~1 batch per tick on ticks.raw and the feed stalled after ~12 minutes
    # (bench/results/soak_linger5ms.json). Each fetch there also gives up, returning nothing, once that lookup
    # outlasts its wait (the consumers now raise their wait: streams.fetch_wait). 100 ms: one batch per
    # partition per 0.1 s (~36k per partition in an hour); real Kafka indexes offsets. The ticks' latency is
    # measured from the feed's receipt, so this linger is not in the tick -> signal figures.
    producer_linger_ms: float = 100.0


def _broker_tree() -> ProcTree | None:
    """The local broker's process (its RSS grows by design: memory storage keeps every record)."""
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"/tansu") and b"broker" in cmd:
            return ProcTree(int(entry.name))
    return None


def _rss_mb(tree: ProcTree) -> float:
    total = 0
    for pid in tree.pids():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def slope_per_min(t_s: list[float], y: list[float]) -> float:
    """Least-squares slope of ``y`` per minute of ``t_s`` (0 with fewer than 3 points).

    >>> slope_per_min([0, 60, 120], [10, 12, 14])
    2.0
    """
    if len(t_s) < 3:
        return 0.0
    return round(float(np.polyfit(np.asarray(t_s) / 60.0, np.asarray(y, dtype=float), 1)[0]), 6)


class _Soak:
    def __init__(self, cfg: SoakConfig, base: Settings) -> None:
        self.cfg = cfg
        self.run = f"soak-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"
        self.s = run_settings(base, self.run)
        self.env = {**settings_env(self.s), "STOCKPULSE_SIGNAL__TIMEFRAMES": '["1s","1m"]'}
        self.logs = base.stack.dir / "logs"
        self.procs: dict[str, Any] = {}
        self.trees: dict[str, ProcTree] = {}
        self.acked: dict[int, int] = {}  # ticks.raw partition -> highest acknowledged offset + 1

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            p, o = msg.partition(), msg.offset()
            self.acked[p] = max(self.acked.get(p, 0), o + 1)

    async def _feed_next_offsets(self) -> int:
        conn = await asyncpg.connect(self.s.postgres.dsn.get_secret_value())
        try:
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM stream_checkpoints WHERE group_id = $1 AND topic = $2",
                self.s.feed.group_id,
                self.s.topics.ticks_raw,
            )
        except asyncpg.UndefinedTableError:
            return 0
        finally:
            await conn.close()
        done = {r["partition"]: r["next_offset"] for r in rows}
        return sum(max(0, acked - done.get(p, 0)) for p, acked in self.acked.items())

    def execute(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.s
        create_topics(s)
        tally = Tally(s)
        tally.start()
        for proc in processes(s.topology):
            name = proc.name
            self.procs[name] = spawn(list(proc.command), self.env, self.logs / f"{self.run}-{name}.log")
            self.trees[name] = ProcTree(self.procs[name].pid)
        broker = _broker_tree()
        stores = Stores(s)
        producer = kafka.producer(s, on_delivery=self._on_delivery, **{"linger.ms": cfg.producer_linger_ms})
        last_price: dict[str, float] = {}
        samples: list[dict[str, Any]] = []
        sent, seen_signals = 0, 0
        began = time.time()
        end = began + cfg.minutes * 60
        next_sample = began + cfg.sample_s
        chunk_t = began
        cpu0 = {n: t.cpu_s() for n, t in self.trees.items()}
        broker_cpu0 = broker.cpu_s() if broker else 0.0
        while time.time() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} during the soak; see its log")
            ticks = steady("S", cfg.symbols, cfg.rate, cfg.chunk_s, int(chunk_t * 1e6), seed=sent + 1)
            continue_prices(ticks, last_price)
            values, keys = encode_ticks(ticks)
            for v, k in zip(values, keys, strict=True):
                producer.produce(s.topics.ticks_raw, v, key=k)
            producer.poll(0)
            sent += len(values)
            chunk_t += cfg.chunk_s
            time.sleep(max(0.0, chunk_t - time.time()))
            if time.time() >= next_sample:
                next_sample += cfg.sample_s
                producer.flush(10)
                signals = tally.records("signals", "S")
                # ingest_us: the feed's receive time of the batch that closed the bar (a tick, or a watermark)
                window = [
                    (r["publish_us"] - r["ingest_us"]) / 1000
                    for r in signals[seen_signals:]
                    if r["ingest_us"]
                ]
                seen_signals = len(signals)
                stored = stores.ticks_or_zero("S")
                samples.append(
                    {
                        "t_s": round(time.time() - began, 1),
                        "sent": sent,
                        "stored": stored,
                        "lag_ticks": sent - stored,
                        "feed_lag_messages": asyncio.run(self._feed_next_offsets()),
                        "tick_to_signal_p50_ms": round(float(np.percentile(window, 50)), 1)
                        if window
                        else None,
                        "tick_to_signal_p99_ms": round(float(np.percentile(window, 99)), 1)
                        if window
                        else None,
                        "rss_mb": {n: _rss_mb(t) for n, t in self.trees.items()},
                        "cpu_cores": {
                            n: round((t.cpu_s() - cpu0[n]) / (time.time() - began), 3)
                            for n, t in self.trees.items()
                        },
                        "broker_rss_mb": _rss_mb(broker) if broker else None,
                        "broker_cpu_cores": round((broker.cpu_s() - broker_cpu0) / (time.time() - began), 3)
                        if broker
                        else None,
                        "loadavg_1m": round(os.getloadavg()[0], 2),
                    }
                )
                print(
                    json.dumps({k: v for k, v in samples[-1].items() if k not in ("cpu_cores",)}), flush=True
                )
        producer.flush(30)
        tally.stop()
        stores.close()
        return {"samples": samples, "sent": sent, "minutes": cfg.minutes}

    def close(self) -> None:
        stop(self.procs)
        for problem in drop_namespace(self.s, list(self.s.topics.all_topics())):
            print(f"note: cleaning up run {self.run}: {problem}")


def analyse(samples: list[dict[str, Any]], cfg: SoakConfig) -> dict[str, Any]:
    """Slopes over the second half and the flags (see the module docstring)."""
    half = [x for x in samples if x["t_s"] >= samples[-1]["t_s"] / 2] if samples else []
    t = [x["t_s"] for x in half]
    names = list(samples[0]["rss_mb"]) if samples else []
    rss = {n: slope_per_min(t, [x["rss_mb"][n] for x in half]) for n in names}
    lag = slope_per_min(t, [x["lag_ticks"] for x in half])
    leaks = [n for n, v in rss.items() if v > cfg.rss_mb_per_min]
    third = len(samples) // 3
    middle = float(np.median([x["lag_ticks"] for x in samples[third : 2 * third]])) if third else 0.0
    last = float(np.median([x["lag_ticks"] for x in samples[2 * third :]])) if third else 0.0
    creep = bool(third) and last > middle + max(cfg.rate, 0.5 * middle)
    p99 = [x["tick_to_signal_p99_ms"] for x in half if x["tick_to_signal_p99_ms"] is not None]
    bound = cfg.max_lag_s * cfg.rate
    over = [x["t_s"] for x in samples if x["t_s"] >= 60 and x["lag_ticks"] > bound]

    def third_p99(part: list[dict[str, Any]]) -> float | None:
        vals = [x["tick_to_signal_p99_ms"] for x in part if x["tick_to_signal_p99_ms"] is not None]
        return float(np.median(vals)) if vals else None

    first_p99, last_p99 = third_p99(samples[:third]), third_p99(samples[2 * third :])
    latency_grew = bool(first_p99 and last_p99 and last_p99 > cfg.latency_growth * first_p99)
    failures = [
        *(f"RSS of {n} grows {rss[n]:.2f} MB/min" for n in leaks),
        *(["lag creeps: the last third's median lag exceeds the middle third's"] if creep else []),
        *(
            [f"lag above {bound:.0f} ticks ({cfg.max_lag_s:g} s of input) at {len(over)} samples"]
            if over
            else []
        ),
        *([f"p99 tick -> signal grew from {first_p99} to {last_p99} ms"] if latency_grew else []),
    ]
    return {
        "passed": not failures,
        "failures": failures,
        "lag_bound_ticks": bound,
        "tick_to_signal_p99_ms_median_first_and_last_third": [first_p99, last_p99],
        "rss_mb_per_min_second_half": {n: round(v, 3) for n, v in rss.items()},
        "lag_ticks_per_min_second_half": round(lag, 1),
        "rss_growth_flagged": leaks,
        "lag_creep_flagged": creep,
        "median_lag_ticks_middle_and_last_third": [middle, last],
        "max_lag_ticks": max((x["lag_ticks"] for x in samples), default=0),
        "tick_to_signal_p99_ms_second_half": {
            "median": float(np.median(p99)) if p99 else None,
            "max": max(p99) if p99 else None,
        },
    }


def _plot(result: dict[str, Any], name: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed: no soak plot")
        return None
    samples = result["samples"]
    t = [x["t_s"] / 60 for x in samples]
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for svc in samples[0]["rss_mb"] if samples else ():
        a.plot(t, [x["rss_mb"][svc] for x in samples], label=svc)
    if samples and samples[0].get("broker_rss_mb") is not None:
        a.plot(t, [x["broker_rss_mb"] for x in samples], label="broker (keeps every record)", linestyle="--")
    a.set_ylabel("RSS (MB)")
    a.legend(fontsize=8)
    b.plot(t, [x["lag_ticks"] for x in samples], label="ticks sent - stored")
    b.plot(t, [x["feed_lag_messages"] for x in samples], label="feed input lag (messages)")
    b.set_ylabel("lag")
    b.legend(fontsize=8)
    for q in ("p50", "p99"):
        c.plot(t, [x[f"tick_to_signal_{q}_ms"] for x in samples], label=f"tick -> signal {q}")
    c.set_yscale("log")
    c.set_ylabel("ms")
    c.set_xlabel("minutes")
    c.legend(fontsize=8)
    fig.suptitle(f"soak: {result['config']['rate']:.0f} ticks/s for {result['config']['minutes']:g} min")
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path.relative_to(RESULTS.parent.parent))


def run_soak(cfg: SoakConfig, settings: Settings | None = None, write: bool = True) -> dict[str, Any]:
    soak = _Soak(cfg, settings or get_settings())
    try:
        raw = soak.execute()
    finally:
        soak.close()
    result = {
        "benchmark": "soak",
        "config": asdict(cfg),
        "analysis": analyse(raw["samples"], cfg),
        **raw,
        "machine": machine_info(("confluent-kafka", "faust-streaming")),
    }
    name = "soak" if cfg.minutes >= 10 else "soak.quick"
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        result["plot"] = _plot(result, name)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any], window_min: float = 10.0) -> str:
    """The README's soak table: per ``window_min`` minutes of the run, the input rate, the largest lag
    (ticks, and seconds of input), the median tick -> signal p50/p99 of the samples, the services' summed
    RSS at the window's end, and the broker's CPU (average since the start) and RSS.

    >>> def sample(t, lag):
    ...     return {"t_s": t, "sent": int(t * 10), "lag_ticks": lag, "tick_to_signal_p50_ms": 5.0,
    ...             "tick_to_signal_p99_ms": 9.0, "rss_mb": {"feed": 1.0}, "broker_cpu_cores": 0.5,
    ...             "broker_rss_mb": 9.0}
    >>> rows = table({"config": {"rate": 10.0}, "samples": [sample(30, 4), sample(60, 20)]}, window_min=1)
    >>> print(rows.splitlines()[-1])
    | 0-1 | 10 | 20 | 2.0 | 5 / 9 | 1 | 0.50 | 9 |
    """
    rate = result["config"]["rate"]
    rows = [
        "| minutes | ticks/s sent | max lag (ticks) | max lag (s of input) | tick -> signal p50 / p99 (ms) "
        "| services RSS (MB) | broker CPU (cores) | broker RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    samples = result["samples"]
    end = samples[-1]["t_s"] if samples else 0.0
    windows = max(1, round(end / (window_min * 60)))  # a last sample a moment past the end joins the last
    lo, prev_sent, prev_t = 0.0, 0, 0.0
    for k in range(windows):
        hi = lo + window_min * 60
        part = [x for x in samples if lo < x["t_s"] <= (hi if k < windows - 1 else float("inf"))]
        if part:
            last = part[-1]
            p50 = [x["tick_to_signal_p50_ms"] for x in part if x["tick_to_signal_p50_ms"] is not None]
            p99 = [x["tick_to_signal_p99_ms"] for x in part if x["tick_to_signal_p99_ms"] is not None]
            lag = max(x["lag_ticks"] for x in part)
            latency = f"{np.median(p50):,.0f} / {np.median(p99):,.0f}" if p50 else "-"
            rows.append(
                f"| {lo / 60:g}-{hi / 60:g} | {(last['sent'] - prev_sent) / (last['t_s'] - prev_t):,.0f} "
                f"| {lag:,} | {lag / rate:.1f} | {latency} | {sum(last['rss_mb'].values()):,.0f} "
                f"| {last['broker_cpu_cores']:.2f} | {last['broker_rss_mb']:,.0f} |"
            )
            prev_sent, prev_t = last["sent"], last["t_s"]
        lo = hi
    return "\n".join(rows)
