"""What the end-to-end benchmark watches: the output topics, the stores, and the service processes.

- :class:`Tally`: a thread consuming the run's topics (assigned, no group join): arrival times of every
  message per topic kind, and the decoded Signal / Order / Fill stage timestamps (TickBatch stage times only
  while ``decode_batches`` is set);
- :class:`Stores`: one round trip per store for the row counts of a symbol prefix (ClickHouse ticks, bars,
  indicators, signals; PostgreSQL orders, fills, historical_data, signals; Redis chart bars and latest
  signals), over connections kept open;
- :class:`ProcTree`: CPU seconds (utime + stime) and peak RSS (VmHWM) of a process and its descendants,
  from ``/proc``.

>>> percentiles([1.0, 2.0, 3.0, 4.0])["p50"]
2.5
>>> percentiles([])
{'n': 0}
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.serde import AvroSerde
from sinks.clickhouse_columns import KEYS
from streams.config import Settings
from streams.topology import workers

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99, p99.9, max (of milliseconds, rounded to 0.01)."""
    if not len(values):
        return {"n": 0}
    a = np.asarray(values, dtype=np.float64)
    p = np.percentile(a, [50, 90, 99, 99.9])
    return {
        "n": int(a.size),
        "p50": round(float(p[0]), 2),
        "p90": round(float(p[1]), 2),
        "p99": round(float(p[2]), 2),
        "p99_9": round(float(p[3]), 2),
        "max": round(float(a.max()), 2),
    }


class Tally(threading.Thread):
    """Consumes the run's output topics from the beginning; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="e2e-tally", daemon=True)
        t = settings.topics
        self.kind = {t.ticks: "ticks", t.signals: "signals", t.orders: "orders", t.fills: "fills",
                     t.dead_letter: "dead"}  # fmt: skip
        for tf in t.timeframes:
            self.kind[t.bars(tf)] = "bars"
            self.kind[t.indicators(tf)] = "indicators"
        self.serde = {
            k: AvroSerde.for_record(r)
            for k, r in (
                ("signals", "Signal"),
                ("orders", "Order"),
                ("fills", "Fill"),
                ("ticks", "TickBatch"),
                ("dead", "DeadLetter"),
            )
        }
        self.dead: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {k: [] for k in set(self.kind.values())}
        self.signals: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.fills: list[dict[str, Any]] = []
        self.batches: list[tuple[float, int, int, int]] = []  # (recv, ingest_us, publish_us, ticks)
        self.decode_batches = False
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._consumer = Consumer(
            {
                **settings.kafka.librdkafka(),
                "group.id": f"{settings.service_group_prefix}-e2e-tally",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 2,
                "isolation.level": "read_uncommitted",
            }
        )
        counts = t.all_topics()
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in self.kind for p in range(counts[topic])]
        )

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                msgs = self._consumer.consume(500, timeout=0.005)  # returns at the timeout: keep it short
                now = time.time()
                with self._lock:
                    for msg in msgs:
                        if msg.error() is None:
                            self._add(self.kind[msg.topic() or ""], msg, now)
        finally:
            self._consumer.close()

    def _add(self, kind: str, msg: Any, now: float) -> None:
        self.arrivals[kind].append(now)
        if kind in ("bars", "indicators") or (kind == "ticks" and not self.decode_batches):
            return
        rec = self.serde[kind].decode(msg.value())
        if kind == "dead":
            self.dead[rec["reason_code"]] += 1
            return
        if kind == "ticks":
            self.batches.append((now, rec["ingest_us"], rec["publish_us"], len(rec["ts_us"])))
            return
        rec["recv"] = now
        rec["kafka_ms"] = msg.timestamp()[1]
        {"signals": self.signals, "orders": self.orders, "fills": self.fills}[kind].append(rec)

    def last_arrival(self, kind: str, since: float) -> float | None:
        with self._lock:
            after = [t for t in self.arrivals[kind] if t >= since]
        return max(after) if after else None

    def records(self, kind: str, prefix: str = "") -> list[dict[str, Any]]:
        with self._lock:
            rows = {"signals": self.signals, "orders": self.orders, "fills": self.fills}[kind]
            return [r for r in rows if r["symbol"].startswith(prefix)]

    def dead_letters(self, reason_code: str) -> int:
        """Dead letters with this reason so far."""
        with self._lock:
            return self.dead[reason_code]

    def distinct(self, kind: str, prefix: str = "") -> int:
        key = {"signals": "signal_id", "orders": "order_id", "fills": "fill_id"}[kind]
        return len({r[key] for r in self.records(kind, prefix)})

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Stores:
    """Row counts per store for the symbols of a prefix (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        import asyncpg
        import clickhouse_connect
        from redis.cluster import ClusterNode, RedisCluster

        c = settings.clickhouse
        self.db = c.database
        self.ch = clickhouse_connect.get_client(
            dsn=c.url, username=c.username, password=c.password.get_secret_value() if c.password else ""
        )
        r = settings.redis
        self.prefix = r.key_prefix
        self.redis = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in r.nodes],
            password=r.password.get_secret_value() if r.password else None,
        )
        self.timeframes = settings.topics.timeframes
        self.loop = asyncio.new_event_loop()
        pg = settings.postgres
        self.pg = self.loop.run_until_complete(
            asyncpg.connect(pg.dsn.get_secret_value(), server_settings={"search_path": pg.schema_name})
        )

    def counts(
        self,
        prefix: str,
        symbols: Sequence[str] = (),
        final: bool = False,
        since: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """ClickHouse and PostgreSQL rows of symbols starting with ``prefix`` (``final``: distinct natural
        keys); with ``symbols``, also Redis chart bars and latest signals of those symbols. With ``since``
        (a :meth:`clickhouse_rows` result) ClickHouse counts are the rows inserted since then, read from the
        parts metadata (cheap enough to poll while the sink writes; for a phase nothing else writes to)."""
        like = prefix.replace("_", "\\_") + "%"
        tables = ("ticks", "bars", "indicators", "signals")
        if since is not None:
            now = self.clickhouse_rows()
            out = {f"clickhouse.{t}": now.get(t, 0) - since.get(t, 0) for t in tables}
        else:
            where = "WHERE symbol LIKE {p:String}"
            exprs = ", ".join(
                f"(SELECT {KEYS[t] if final else 'count()'} FROM {self.db}.{t} {where})" for t in tables
            )
            row = self.ch.query(f"SELECT {exprs}", parameters={"p": like}).result_rows[0]
            out = {f"clickhouse.{t}": int(v) for t, v in zip(tables, row, strict=True)}
        pg_tables = ("orders", "fills", "historical_data", "signals")
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t} WHERE symbol LIKE $1)" for t in pg_tables)
        rec = self.loop.run_until_complete(self.pg.fetchrow(sql, like))
        out.update({f"postgres.{t}": int(rec[i]) for i, t in enumerate(pg_tables)})
        if symbols:
            out.update(self.redis_counts(symbols))
        return out

    def clickhouse_rows(self) -> dict[str, int]:
        """Rows per table of the run's database from ``system.parts`` (inserted rows, metadata only)."""
        rows = self.ch.query(
            "SELECT table, sum(rows) FROM system.parts WHERE database = {d:String} AND active GROUP BY table",
            parameters={"d": self.db},
        ).result_rows
        return {str(t): int(n) for t, n in rows}

    def ticks_or_zero(self, prefix: str) -> int:
        """ClickHouse ticks of the prefix; 0 while the sink has not created the database yet."""
        try:
            return self.counts(prefix)["clickhouse.ticks"]
        except Exception as exc:
            if "UNKNOWN_DATABASE" in str(exc) or "UNKNOWN_TABLE" in str(exc) or "does not exist" in str(exc):
                return 0
            raise

    def redis_counts(self, symbols: Sequence[str]) -> dict[str, int]:
        pipe = self.redis.pipeline()
        for s in symbols:
            for tf in self.timeframes:
                pipe.zcard(f"{self.prefix}:{{{s}}}:bars:{tf}")
            pipe.exists(f"{self.prefix}:{{{s}}}:signal")
        res = pipe.execute()
        k = len(self.timeframes) + 1
        bars = sum(int(v) for i, v in enumerate(res) if i % k != k - 1)
        return {"redis.bars": bars, "redis.signals": sum(int(v) for v in res[k - 1 :: k])}

    def close(self) -> None:
        self.loop.run_until_complete(self.pg.close())
        self.loop.close()
        self.ch.close()
        self.redis.close()


class ProcTree:
    """CPU seconds and peak RSS of a process and its descendants (see the module docstring)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.pids():
            try:
                f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (
                int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
            ) / CLK_TCK  # utime stime cutime cstime
        return total

    def peak_rss_mb(self) -> float:
        total = 0
        for p in self.pids():
            try:
                status = Path(f"/proc/{p}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        return round(total / 1024, 1)


def drop_namespace(settings: Settings, topics: Sequence[str]) -> list[str]:
    """Best effort: delete a finished run's topics, ClickHouse database, PostgreSQL schema, checkpoints and
    Redis keys (the broker keeps topics in memory). Returns what failed; never raises."""
    import asyncpg
    import clickhouse_connect
    from redis.cluster import ClusterNode, RedisCluster

    from streams import kafka

    group = settings.service_group_prefix
    db, schema = settings.clickhouse.database, settings.postgres.schema_name
    if not group or db in ("stockpulse", "default", "system") or schema == "public":
        return [f"refusing to drop a shared namespace ({group!r}, {db!r}, {schema!r})"]
    failed = []
    c = settings.clickhouse
    try:
        ch = clickhouse_connect.get_client(
            dsn=c.url, username=c.username, password=c.password.get_secret_value() if c.password else ""
        )
        ch.command(f"DROP DATABASE IF EXISTS {db}")
        ch.close()
    except Exception as exc:
        failed.append(f"clickhouse: {exc}")

    async def pg() -> None:
        conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.execute("DELETE FROM stream_checkpoints WHERE group_id LIKE $1", f"{group}-%")
        finally:
            await conn.close()

    try:
        asyncio.run(pg())
    except Exception as exc:
        failed.append(f"postgres: {exc}")
    try:
        r = settings.redis
        client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in r.nodes],
            password=r.password.get_secret_value() if r.password else None,
        )
        keys = list(client.scan_iter(match=f"{r.key_prefix}:*", count=1000))
        pipe = client.pipeline()
        for key in keys:
            pipe.delete(key)
        pipe.execute()
        client.close()
    except Exception as exc:
        failed.append(f"redis: {exc}")
    names = dict.fromkeys((*workers("chained"), *workers("split")))
    leaders = [f"{group}-{svc}-__assignor-__leader" for svc in names]
    try:
        admin = kafka.admin(settings)  # keep a reference: the futures fail if the client is collected
        existing = set(kafka.list_topics(settings))
        todo = [t for t in (*topics, *leaders) if t in existing]
        for fut in admin.delete_topics(todo, request_timeout=15).values() if todo else ():
            fut.result(15)
    except Exception as exc:
        failed.append(f"topics: {exc}")
    return failed
