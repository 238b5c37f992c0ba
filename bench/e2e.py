"""End-to-end benchmark: the processes of the topology (``STOCKPULSE_TOPOLOGY``: feed, engine, sink when
chained; feed, price, signal, order, sink when split) on the local stack, every store written.

One run, on its own namespace (topics ``<run>.*``, consumer groups, Redis prefix, ClickHouse database and
PostgreSQL schema, as :func:`streams.demo.run_settings`):

1. start ``stockpulse feed`` and the workers of the topology (:mod:`streams.topology`); the warm-up (40 s of
   simulated history for the latency symbols ``L*``, through ``ticks.raw``) must reach ClickHouse and the
   signals topic before anything is timed, so process start-up and group joins are not measured;
2. throughput, first input to the last signal on the topic AND the last row in every store (ClickHouse
   ticks/bars/indicators/signals, PostgreSQL historical_data/signals/orders/fills, Redis chart bars and
   latest signals): (a) single-tick Avro messages into ``ticks.raw`` through the feed, (b) TickBatch
   messages straight to ``ticks`` (per-symbol ``seq`` as the feed assigns). Input: the real BTCUSDT trades
   replayed as many symbols (:func:`bench.e2e_inputs.replay`); the expected counts come from the same
   processors;
3. the same-run baseline (:mod:`bench.e2e_baseline`, one raw confluent-kafka process) on (b)'s input,
   best of ``baseline_passes`` passes, first message consumed to last signal flushed;
4. latency at steady input rates (simulated ticks, event time = wall clock) from the stage timestamps in
   Signal/Order/TickBatch messages;
5. CPU seconds per million ticks and peak RSS per service process tree (``/proc``).

The services run with ``STOCKPULSE_SIGNAL__TIMEFRAMES=["1s","1m"]`` (1 s signals give latency samples every
second) and the default event-time settings: the throughput inputs are recordings (replay mode: the last
open bar of a series stays open, as :func:`bench.e2e_inputs.expected` counts), the warm-up is history older
than the live window, and the latency phases are live ticks stamped with the wall clock, whose bars close by
the symbols' next ticks or the feed's watermarks; each phase reports the late ticks dead-lettered during it.
``run(quick)`` is what ``stockpulse bench e2e`` calls; ``run_config`` takes a :class:`Config` (the smoke test
runs a tiny one).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from bisect import bisect_right
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from confluent_kafka.admin import NewTopic

from bench.e2e_inputs import TickSet, continue_prices, encode_ticks, expected, replay, steady, tick_batches
from bench.e2e_observe import ProcTree, Stores, Tally, drop_namespace
from bench.e2e_report import assemble, latency_stats, markdown, plots, steady_rate
from schemas.serde import AvroSerde
from streams import kafka
from streams.config import Settings, get_settings
from streams.demo import run_settings, settings_env, spawn, stop
from streams.kafka import create_topics
from streams.topology import processes

__all__ = ["QUICK", "Config", "markdown", "run", "run_config"]

RESULTS = Path(__file__).resolve().parent / "results"
SIGNAL_TIMEFRAMES = ("1s", "1m")
STORE_KEYS = (
    "clickhouse.ticks",
    "clickhouse.bars",
    "clickhouse.indicators",
    "clickhouse.signals",
    "postgres.historical_data",
    "postgres.signals",
    "redis.bars",
    "redis.signals",
)


@dataclass(frozen=True)
class Config:
    ticks: int = 400_000  # per throughput phase
    latency_symbols: int = 200
    rates: tuple[int, ...] = (1_000, 10_000, 50_000)
    latency_s: float = 10.0
    warm_s: float = 40.0  # event-time history of the latency symbols: 1 s indicators need 34 bars
    warm_ticks_per_symbol_s: float = 5.0
    timeout_s: float = 120.0
    poll_s: float = 0.2
    quiet_s: float = 1.0
    tag: str = "e2e"
    baseline_passes: int = 3  # the baseline's best pass counts (a shared machine slows some passes)
    keep_data: bool = False  # keep the run's topics and store namespaces (to inspect them afterwards)
    workers: int = 1  # processes of each worker (the feed stays one): scale-out in one consumer group


QUICK = Config(ticks=100_000, latency_symbols=100, rates=(1_000, 10_000), latency_s=5.0)


def run(quick: bool = False) -> dict[str, Any]:
    return run_config(QUICK if quick else Config(), plot_prefix="e2e.quick" if quick else "e2e")


def run_config(
    cfg: Config, settings: Settings | None = None, plot_prefix: str | None = None
) -> dict[str, Any]:
    """One full run (see the module docstring); ``plot_prefix``: write PNG plots under bench/results/."""
    bench = _Run(cfg, settings or get_settings())
    try:
        result = bench.execute()
    finally:
        bench.close()
    if plot_prefix:
        # names in bench/results/, not this machine's paths
        result["plots"] = [Path(p).name for p in plots(result, bench.samples, RESULTS, plot_prefix)]
    return result


def _now_us() -> int:
    return time.time_ns() // 1000


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class _Run:
    def __init__(self, cfg: Config, base: Settings) -> None:
        self.cfg = cfg
        self.run = f"{cfg.tag}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:4]}"
        s = run_settings(base, self.run)
        self.s = s.model_copy(
            update={"signal": s.signal.model_copy(update={"timeframes": SIGNAL_TIMEFRAMES})}
        )
        self.env = {
            **settings_env(self.s),
            "STOCKPULSE_SIGNAL__TIMEFRAMES": json.dumps(list(SIGNAL_TIMEFRAMES)),
        }
        self.logs = base.stack.dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.trees: dict[str, ProcTree] = {}
        self.samples: dict[str, Any] = {}
        self.sent: dict[str, int] = {}
        self.tally: Tally | None = None
        self.stores: Stores | None = None
        self.base_in, self.base_out = f"{self.run}.base.ticks", f"{self.run}.base.signals"
        # the second baseline writes the stores in its own namespace: the run's stores must match its topics
        self.s_stores = run_settings(base, f"{self.run}-sb").model_copy(update={"signal": self.s.signal})
        self.batch_serde = AvroSerde.for_record("TickBatch")

    # -- plumbing -------------------------------------------------------------------------------------------
    def close(self) -> None:
        stop(self.procs)
        if self.tally is not None:
            self.tally.stop()
        if self.stores is not None:
            self.stores.close()
        if not self.cfg.keep_data:
            topics = [*self.s.topics.all_topics(), self.base_in, f"{self.base_in}-stores", self.base_out]
            for problem in drop_namespace(self.s, topics):
                print(f"note: cleaning up run {self.run}: {problem}")
            for problem in drop_namespace(self.s_stores, []):
                print(f"note: cleaning up the stores baseline of run {self.run}: {problem}")

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                log = self.logs / f"{self.run}-{name}.log"
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"service {name} exited with {p.returncode}; {log}:\n{tail}")

    def cpu(self) -> dict[str, float]:
        return {name: tree.cpu_s() for name, tree in self.trees.items()}

    def produce_ticks(self, prefix: str, values: list[bytes], keys: list[bytes], producer: Any) -> None:
        topic = self.s.topics.ticks_raw
        for i, (v, k) in enumerate(zip(values, keys, strict=True)):
            while True:
                try:
                    producer.produce(topic, v, key=k)
                    break
                except BufferError:
                    producer.poll(0.005)
            if i % 10_000 == 0:
                producer.poll(0)
        producer.flush(60)
        self.sent[prefix] = self.sent.get(prefix, 0) + len(values)

    def produce_batches(self, topic: str, batches: list[tuple[int, dict[str, Any]]], producer: Any) -> None:
        for part, rec in batches:
            stamp = _now_us()
            value = self.batch_serde.encode({**rec, "ingest_us": stamp, "publish_us": stamp})
            producer.produce(topic, value, partition=part)
            producer.poll(0)
        producer.flush(60)

    def wait(self, ready: Any, what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.cfg.timeout_s)
        while time.monotonic() < deadline:
            self.check_alive()
            if ready():
                return
            time.sleep(self.cfg.poll_s)
        raise RuntimeError(
            f"timed out waiting for {what} (run {self.run}, logs {self.logs}/{self.run}-*.log)"
        )

    def quiet(self) -> None:
        """Until no message arrived on any output topic for ``quiet_s``."""
        assert self.tally is not None
        last = -1
        since = time.monotonic()
        while time.monotonic() - since < self.cfg.quiet_s:
            n = sum(len(v) for v in self.tally.arrivals.values())
            if n != last:
                last, since = n, time.monotonic()
            time.sleep(0.1)

    # -- the run --------------------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.s
        load = {"start": list(os.getloadavg())}
        create_topics(s)
        admin = kafka.admin(s)
        for fut in admin.create_topics(
            [
                NewTopic(t, num_partitions=s.topics.tick_partitions, replication_factor=1)
                for t in (self.base_in, f"{self.base_in}-stores", self.base_out)
            ]
        ).values():
            fut.result(15)
        t_prep = time.perf_counter()
        # history before the live window: replayed as fast as it goes, its bars close by its own ticks
        history_s = cfg.warm_s + s.event_time.live_window_s + 10
        warm = steady(
            "L",
            cfg.latency_symbols,
            cfg.latency_symbols * cfg.warm_ticks_per_symbol_s,
            cfg.warm_s,
            _now_us() - int(history_s * 1e6),
            seed=1,
        )
        self.last_price: dict[str, float] = {}
        continue_prices(warm, self.last_price)
        warm_exp = expected(warm, s.topics.timeframes, SIGNAL_TIMEFRAMES, s.sink.redis_max_bars)
        a = replay(s.data_dir, "A", cfg.ticks)
        b = replace(a, symbols=[f"B{n[1:]}" for n in a.symbols])
        exp = expected(a, s.topics.timeframes, SIGNAL_TIMEFRAMES, s.sink.redis_max_bars)
        a_values, a_keys = encode_ticks(a)
        b_batches = tick_batches(b, s.topics.tick_partitions, s.feed.batch_max_ticks)
        prep_s = time.perf_counter() - t_prep

        self.tally = Tally(s)
        self.tally.start()
        t_start = time.time()
        for proc in processes(s.topology):
            copies = 1 if proc.name == "feed" else self.cfg.workers
            for k in range(copies):
                name = proc.name if k == 0 else f"{proc.name}+{k + 1}"
                self.procs[name] = spawn(list(proc.command), self.env, self.logs / f"{self.run}-{name}.log")
                self.trees[name] = ProcTree(self.procs[name].pid)
        producer = kafka.producer(s)
        self.produce_ticks("L", *encode_ticks(warm), producer)
        self.stores = Stores(s)
        tally, stores = self.tally, self.stores
        self.wait(
            lambda: (
                tally.distinct("signals", "L") >= warm_exp["signals"]
                and stores.ticks_or_zero("L") >= len(warm)
            ),
            "the warm-up to reach the signals topic and ClickHouse",
        )
        self.quiet()
        startup_s = time.time() - t_start
        idle0, t_idle = self.cpu(), time.time()
        time.sleep(2.0)  # what the services burn with no input (timers, heartbeats, fetch loops)
        idle = {k: round((v - idle0[k]) / (time.time() - t_idle), 3) for k, v in self.cpu().items()}
        load["after_warmup"] = list(os.getloadavg())

        single = self.phase("A", a, exp, lambda: self.produce_ticks("A", a_values, a_keys, producer))
        batched = self.phase("B", b, exp, lambda: self.produce_batches(s.topics.ticks, b_batches, producer))
        self.sent["B"] = len(b)
        load["after_throughput"] = list(os.getloadavg())
        baseline = self.baseline(b_batches, len(b), exp, producer)
        baseline_stores = self.baseline(b_batches, len(b), exp, producer, stores=True)
        latency = [self.latency(rate, producer) for rate in cfg.rates]
        load["after_latency"] = list(os.getloadavg())
        reconcile = self.reconcile()
        rss = {name: tree.peak_rss_mb() for name, tree in self.trees.items()}
        load["end"] = list(os.getloadavg())
        settings = {
            "timeframes": list(s.topics.timeframes),
            "signal_timeframes": list(SIGNAL_TIMEFRAMES),
            "event_time": s.event_time.model_dump(),
            "topology": s.topology,
            "processes": {p.name: list(p.stages) for p in processes(s.topology)},
            "tick_partitions": s.topics.tick_partitions,
            "feed_batch_max_ticks": s.feed.batch_max_ticks,
        }
        return assemble(
            self.run, {**asdict(cfg), **settings}, exp, single, batched, (baseline, baseline_stores), latency,
            reconcile,
            {name: {"peak_rss_mb": rss[name], "idle_cpu_cores": idle[name]} for name in self.procs},
            load, {"prep_s": round(prep_s, 1), "startup_s": round(startup_s, 1)},
        )  # fmt: skip

    def phase(self, prefix: str, ticks: TickSet, exp: dict[str, int], send: Any) -> dict[str, Any]:
        """Send one throughput input; wait until every store holds what it must; when did each finish."""
        assert self.tally is not None and self.stores is not None
        tally, stores = self.tally, self.stores
        want = {k: exp[k.split(".", 1)[1].replace("historical_data", "bars")] for k in STORE_KEYS}
        want["redis.bars"], want["redis.signals"] = exp["redis_bars"], exp["redis_signals"]
        rows0 = stores.clickhouse_rows()
        cpu0, load0, own0 = self.cpu(), os.getloadavg(), _own_cpu()
        t0 = time.time()
        send()
        produced = time.time()
        first_seen: dict[str, tuple[int, float]] = {}
        ticks_seen: list[tuple[float, int]] = []
        poll_ms: list[float] = []
        deadline = time.monotonic() + self.cfg.timeout_s
        stable_since = None
        while True:
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"phase {prefix} did not complete: {first_seen} want {want}")
            t_poll = time.perf_counter()
            counts = stores.counts(prefix, since=rows0)
            if counts["clickhouse.bars"] >= want["clickhouse.bars"]:  # Redis is written in the same flush
                counts.update(stores.redis_counts(ticks.symbols))
            counts["topic.signals"] = tally.distinct("signals", prefix)
            counts["topic.orders"] = tally.distinct("orders", prefix)
            counts["topic.fills"] = tally.distinct("fills", prefix)
            now = time.time()
            for k, v in counts.items():
                if k not in first_seen or first_seen[k][0] != v:
                    first_seen[k] = (v, now)
            ticks_seen.append((now, counts["clickhouse.ticks"]))
            poll_ms.append((time.perf_counter() - t_poll) * 1000)
            done = (
                all(counts.get(k, -1) >= v for k, v in want.items())
                and counts["topic.signals"] >= exp["signals"]
            )
            done = done and (counts["postgres.orders"], counts["postgres.fills"]) == (
                counts["topic.orders"],
                counts["topic.fills"],
            )
            if done:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= self.cfg.quiet_s:
                    break
            else:
                stable_since = None
            time.sleep(self.cfg.poll_s)
        cpu1, load1, own1 = self.cpu(), os.getloadavg(), _own_cpu()
        exact = stores.counts(prefix, ticks.symbols, final=True)  # distinct natural keys of this prefix
        exact.update({k: v for k, v in counts.items() if k.startswith("topic.")})
        stages = {"input (producer)": produced - t0}
        for kind, stage in (
            ("ticks", "feed"),
            ("indicators", "price"),
            ("signals", "signal"),
            ("orders", "order"),
        ):
            last = tally.last_arrival(kind, t0)
            if last is not None and not (kind == "ticks" and prefix == "B"):
                stages[f"{stage} ({kind} topic)"] = last - t0
        for k in (*STORE_KEYS, "postgres.orders", "postgres.fills"):
            if first_seen[k][0]:
                stages[k] = first_seen[k][1] - t0
        end = max(v for k, v in stages.items() if k != "input (producer)")
        n = len(ticks)
        return {
            "ticks": n,
            "symbols": len(ticks.symbols),
            "seconds": round(end, 3),
            "ticks_per_s": round(n / end),
            "stages": {k: {"done_s": round(v, 3), "ticks_per_s": round(n / v)} for k, v in stages.items()},
            "clickhouse_ticks_per_s_10_to_90pct": steady_rate(ticks_seen, n),
            "counts": dict(sorted(exact.items())),
            "expected": want,
            "cpu_s_per_1m_ticks": {k: round((cpu1[k] - cpu0[k]) / n * 1e6, 2) for k in cpu0},
            "harness_cpu_s": round(own1 - own0, 2),
            "store_poll_ms": {
                "n": len(poll_ms),
                "mean": round(sum(poll_ms) / len(poll_ms), 1),
                "max": round(max(poll_ms), 1),
            },
            "clickhouse_ticks_progress": [
                [round(t - t0, 2), c] for t, c in ticks_seen[:: max(1, len(ticks_seen) // 40)]
            ],
            "load_avg": [round(x, 2) for x in (*load0, *load1)],
        }

    def baseline(
        self,
        batches: list[tuple[int, dict[str, Any]]],
        n: int,
        exp: dict[str, int],
        producer: Any,
        stores: bool = False,
    ) -> dict[str, Any]:
        """One baseline process (``stores``: the second one, which also writes every store, in its own
        namespace) over the TickBatch input, best of ``baseline_passes``."""
        parts = self.s.topics.tick_partitions
        tag = "-stores" if stores else ""
        base_in = f"{self.base_in}{tag}"
        args = [
            "--in-topic",
            base_in,
            "--out-topic",
            self.base_out,
            "--ticks",
            str(n),
            "--pings",
            str(parts),
            "--passes",
            str(self.cfg.baseline_passes),
            *(["--stores"] if stores else []),
        ]
        env = {**self.env, **settings_env(self.s_stores)} if stores else self.env
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.e2e_baseline", *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
            stderr=(self.logs / f"{self.run}-baseline{tag}.log").open("ab"),
        )
        ping = {
            "symbol_index": [0],
            "ts_us": [1_600_000_000_000_000],
            "price": [1.0],
            "size": [1.0],
            "seq": [1],
        }
        pings = [(p, {**ping, "batch_id": f"ping{p}", "symbols": [f"Z{p:02d}PING"]}) for p in range(parts)]
        self.produce_batches(base_in, pings, producer)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            raise RuntimeError(f"baseline did not start: {line!r}")
        load0 = os.getloadavg()
        t0 = time.time()
        self.produce_batches(base_in, batches, producer)
        try:
            out, _ = proc.communicate(timeout=self.cfg.timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        report = json.loads(out.strip().splitlines()[-1])
        passes = report["passes"]
        first = passes[0]
        best = min(passes, key=lambda p: p["done"] - p["first_consume"])
        seconds = best["done"] - best["first_consume"]
        same = all(p["signals"] == exp["signals"] and p["bars"] == exp["bars"] for p in passes)
        return {
            "ticks": best["ticks"],
            "passes": len(passes),
            "seconds": round(seconds, 3),
            "ticks_per_s": round(n / seconds),
            "seconds_per_pass": [round(p["done"] - p["first_consume"], 3) for p in passes],
            "first_input_to_done_s": round(first["done"] - t0, 3),
            "first_consume_after_s": round(first["first_consume"] - t0, 3),
            "bars": best["bars"],
            "signals": best["signals"],
            "signals_match_pipeline": same,
            **({"stored_first_pass": first["stored"]} if stores else {}),  # PostgreSQL counts new rows
            "cpu_s_per_1m_ticks": round(min(p["cpu_s"] for p in passes) / n * 1e6, 2),
            "peak_rss_mb": report["peak_rss_mb"],
            "load_avg": [round(x, 2) for x in (*load0, *os.getloadavg())],
        }

    def latency(self, rate: int, producer: Any) -> dict[str, Any]:
        """Steady input at ``rate`` ticks/s for ``latency_s`` through ticks.raw; stage latencies."""
        assert self.tally is not None and self.stores is not None
        tally, stores, cfg, s = self.tally, self.stores, self.cfg, self.s
        # event time starts once the ticks are encoded (generous estimate: 10 us a tick on a loaded machine)
        t0_us = _now_us() + 500_000 + int(rate * cfg.latency_s * 10)
        ticks = steady("L", cfg.latency_symbols, rate, cfg.latency_s, t0_us, seed=rate)
        continue_prices(ticks, self.last_price)
        values, keys = encode_ticks(ticks)
        due = (ticks.ts / 1e6).tolist()
        lat_producer = kafka.producer(self.s, **{"linger.ms": 1})
        topic = self.s.topics.ticks_raw
        time.sleep(max(0.0, t0_us / 1e6 - time.time()))
        late_start_s = max(0.0, time.time() - t0_us / 1e6)
        tally.decode_batches = True
        cpu0, load0 = self.cpu(), os.getloadavg()
        late0 = tally.dead_letters("late_tick")
        t_send = time.time()
        i = 0
        while i < len(values):
            j = bisect_right(due, time.time(), lo=i)
            for k in range(i, j):
                lat_producer.produce(topic, values[k], key=keys[k])
            lat_producer.poll(0)
            i = j
            if i < len(values):
                time.sleep(min(max(0.0, due[i] - time.time()), 0.002))
        lat_producer.flush(30)
        sent_s = time.time() - t_send
        self.sent["L"] += len(values)
        self.wait(  # an input rate above capacity leaves a backlog: give it time to drain
            lambda: stores.counts("L")["clickhouse.ticks"] >= self.sent["L"],
            f"the {rate}/s ticks stored",
            max(cfg.timeout_s, len(values) / 2_000),
        )
        drain_s = time.time() - t_send - sent_s
        # live bars close on the feed's watermark: wait for the last ones, then for quiet
        time.sleep((s.event_time.max_delay_ms + s.event_time.watermark_interval_ms) / 1000 + 1.0)
        self.quiet()
        tally.decode_batches = False
        cpu1, load1 = self.cpu(), os.getloadavg()
        wall = time.time() - t_send
        stats, samples = latency_stats(tally, t0_us, t0_us + int(cfg.latency_s * 1e6), t_send)
        self.samples[str(rate)] = samples
        n = len(values)
        return {
            "rate": rate,
            "ticks": n,
            "achieved_rate": round(n / sent_s),
            "late_start_s": round(late_start_s, 3),
            "drain_s": round(drain_s, 2),
            "late_ticks": tally.dead_letters("late_tick") - late0,
            **stats,
            "cpu_cores": {k: round((cpu1[k] - cpu0[k]) / wall, 2) for k in cpu0},
            "cpu_s_per_1m_ticks": {k: round((cpu1[k] - cpu0[k]) / n * 1e6, 2) for k in cpu0},
            "load_avg": [round(x, 2) for x in (*load0, *load1)],
        }

    def reconcile(self) -> dict[str, Any]:
        """Every tick sent is stored once; the stores hold what the topics carried (distinct ids)."""
        assert self.tally is not None and self.stores is not None
        tally, stores = self.tally, self.stores

        def state() -> dict[str, Any]:
            c = stores.counts("", final=True)
            return {
                "ticks_sent": sum(self.sent.values()),
                "clickhouse.ticks": c["clickhouse.ticks"],
                "topic.signals": tally.distinct("signals"),
                "clickhouse.signals": c["clickhouse.signals"],
                "postgres.signals": c["postgres.signals"],
                "topic.orders": tally.distinct("orders"),
                "postgres.orders": c["postgres.orders"],
                "clickhouse.bars": c["clickhouse.bars"],
                "postgres.historical_data": c["postgres.historical_data"],
                "clickhouse.indicators": c["clickhouse.indicators"],
            }

        def ok(r: dict[str, Any]) -> bool:
            return bool(
                r["clickhouse.ticks"] == r["ticks_sent"]
                and r["topic.signals"] == r["clickhouse.signals"] == r["postgres.signals"]
                and r["topic.orders"] == r["postgres.orders"]
                and r["clickhouse.bars"] == r["postgres.historical_data"] == r["clickhouse.indicators"]
            )

        last: dict[str, Any] = {}
        with contextlib.suppress(RuntimeError):  # report what is there; "ok" says whether it adds up
            self.wait(lambda: ok(last.update(state()) or last), "the stores to agree with the topics", 30)
        return {**last, "ok": ok(last)}
