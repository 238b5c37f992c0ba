"""Hot state in Redis Cluster: the newest bars, prices, indicators, signals and positions per symbol.

Key layout (``P`` = key prefix, default ``sp``; ``{SYM}`` is a hash tag, so one symbol's keys share a slot)::

    P:{SYM}:bars:<tf>   sorted set  score = start_us, member = the bar as a compact JSON array in the order of
                                    BAR_MEMBER_FIELDS (symbol/timeframe are in the key); one member per
                                    start_us, capped to the newest ``max_bars`` (default 2,000)
    P:{SYM}:price       hash        symbol, price (close of the newest bar), ts_us (its end), timeframe
    P:{SYM}:ind:<tf>    hash        the newest IndicatorSnapshot of the symbol and timeframe
    P:{SYM}:signal      hash        the newest Signal of the symbol (any timeframe), by start_us
    P:{SYM}:position:<tf> hash      symbol, timeframe, quantity, avg_price, realized_pnl, last_price, ts_us,
                                    fill_id, order_id (the position after the newest fill of the book: each
                                    signal timeframe trades its own book; a symbol's net is their sum)
    P:{SYM}:chart:<tf>  hash        cached chart responses of the API (:class:`~sinks.redis_cache.ChartCache`)
    P:symbols           sorted set  every symbol written; score = newest start_us/ts_us seen (ZADD GT)

Every key has a TTL chosen by data type (:class:`~sinks.redis_cache.CachePolicy`, see
:mod:`sinks.redis_cache`): price 1 s while the symbol's market is open and 60 s when closed, indicators 5 s
at high volatility and 30 s otherwise, everything else 300 s; chart bars live an hour after their last write.
Every read counts hits and misses in ``stats`` (:class:`~sinks.redis_cache.CacheStats`).

Writes are batched: a whole batch is one cluster pipeline, which redis-py splits into one packed request per
primary, sent concurrently (so a batch costs one round trip per primary it touches, at most 3 locally). Each
key gets one command per batch: the records are grouped per key first and applied by small Lua scripts
(:mod:`sinks.redis_scripts`):

* bars: ``ZREMRANGEBYSCORE s s`` + ``ZADD s member`` per bar, then ``ZREMRANGEBYRANK`` to the cap, the TTL,
  and the deletion of the symbol/timeframe's cached chart responses. Re-writing a bar (even with different
  stage timestamps after a crash) leaves exactly one member per start.
* latest hashes: replaced only when the stored ``start_us`` (``ts_us`` for positions and prices) is not
  newer, so re-processing old records never moves "latest" back in time. An equal time replaces.

Scripts run by EVALSHA; after a failover or ``SCRIPT FLUSH`` (NOSCRIPT) they are loaded again and the batch
is re-sent (safe: every write is idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from sinks.base import SinkBase, SinkError, input_error
from sinks.redis_cache import (
    BarSource,
    CachePolicy,
    CacheStats,
    ChartCache,
    LookupCallback,
    timeframe_us,
    warm,
)
from sinks.redis_codec import (
    BAR_MEMBER_FIELDS,
    POSITION_KINDS,
    bar_member,
    bars_from_members,
    decode_hash,
    hash_args,
    kinds,
)
from sinks.redis_scripts import SCRIPTS

__all__ = ["BAR_MEMBER_FIELDS", "RedisConfig", "RedisHotState"]

Record = Mapping[str, Any]
_BARS_PER_CALL = 1000  # bars per EVALSHA: bounds how long one script blocks its shard
_HINT = (
    "is the Redis Cluster up and reachable (`stockpulse stack up`, `stockpulse stack status`) and are the "
    "startup nodes right (STOCKPULSE_REDIS__STARTUP_NODES)? Writes are idempotent: retry the same batch"
)
_PRICE_KINDS = {"symbol": "str", "price": "float", "ts_us": "int", "timeframe": "str"}
_MIN = -(2**63)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where and how to connect. ``nodes`` are startup nodes (any subset of the cluster); ``cache`` is the TTL
    policy; ``warm_bars`` the bars per (symbol, timeframe) loaded by :func:`sinks.redis_cache.warm`."""

    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 17000), ("127.0.0.1", 17001), ("127.0.0.1", 17002))
    username: str | None = None  # an ACL user (Redis 6+); None: the default user
    password: str | None = None
    ssl: bool = False
    key_prefix: str = "sp"
    max_bars: int = 2000
    socket_timeout_s: float = 5.0
    max_connections: int = 32
    cache: CachePolicy = field(default_factory=CachePolicy)
    warm_bars: int = 500


class RedisHotState(SinkBase):
    """Batched, idempotent hot-state writes and the API's reads (``redis.asyncio`` cluster, hiredis).

    ``on_lookup(read, "hit" | "miss", n)`` is called on every counted read (the services export it as a
    Prometheus counter; sinks never import prometheus)."""

    store = "redis"

    def __init__(self, config: RedisConfig | None = None, on_lookup: LookupCallback | None = None) -> None:
        self.config = config or RedisConfig()
        if not self.config.nodes:
            raise ValueError("RedisConfig.nodes is empty: give at least one host:port of the cluster")
        if self.config.max_bars < 0:
            raise ValueError(f"RedisConfig.max_bars={self.config.max_bars}: use 0 (no cap) or a positive cap")
        if self.config.warm_bars < 0:
            raise ValueError(f"RedisConfig.warm_bars={self.config.warm_bars}: use 0 (no warming) or more")
        self.stats = CacheStats(on_lookup)
        self.chart = ChartCache(self)
        self._client: RedisCluster | None = None
        self._sha: dict[str, str] = {}
        # one pipeline holds at most one connection per node: bounding the pipelines in flight by the pool
        # size makes a burst wait for a free (warm) connection rather than fail with MaxConnectionsError
        self._slots = asyncio.Semaphore(self.config.max_connections)

    # ---- keys -------------------------------------------------------------------------------------------

    def _key(self, symbol: str, *parts: str) -> str:
        return ":".join((self.config.key_prefix, "{" + symbol + "}", *parts))

    def bars_key(self, symbol: str, timeframe: str) -> str:
        """``P:{SYM}:bars:<tf>``"""
        return self._key(symbol, "bars", timeframe)

    def chart_key(self, symbol: str, timeframe: str) -> str:
        """``P:{SYM}:chart:<tf>``"""
        return self._key(symbol, "chart", timeframe)

    def price_key(self, symbol: str) -> str:
        """``P:{SYM}:price``"""
        return self._key(symbol, "price")

    def snapshot_key(self, symbol: str, timeframe: str) -> str:
        """``P:{SYM}:ind:<tf>``"""
        return self._key(symbol, "ind", timeframe)

    def signal_key(self, symbol: str) -> str:
        """``P:{SYM}:signal``"""
        return self._key(symbol, "signal")

    def position_key(self, symbol: str, timeframe: str) -> str:
        """``P:{SYM}:position:<tf>``"""
        return self._key(symbol, "position", timeframe)

    @property
    def symbols_key(self) -> str:
        """``P:symbols``"""
        return f"{self.config.key_prefix}:symbols"

    @property
    def kill_switch_key(self) -> str:
        """``P:control:kill_switch``: the global kill switch (its value is the reason; absent = off)."""
        return f"{self.config.key_prefix}:control:kill_switch"

    # ---- lifecycle --------------------------------------------------------------------------------------

    async def open(self) -> RedisHotState:
        """Connect to the cluster and load the Lua scripts on every primary."""
        if self._client is not None:
            return self
        cfg = self.config
        client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in cfg.nodes],
            username=cfg.username,
            password=cfg.password,
            ssl=cfg.ssl,
            decode_responses=True,
            socket_timeout=cfg.socket_timeout_s,
            socket_connect_timeout=cfg.socket_timeout_s,
            max_connections=cfg.max_connections,
        )
        try:
            await client.initialize()
            self._slots = asyncio.Semaphore(cfg.max_connections)  # bound to the loop that opens the client
            self._client = client
            await self._load_scripts()
        except (RedisError, RedisClusterException, OSError) as exc:
            self._client = None
            await client.aclose()
            nodes = ",".join(f"{h}:{p}" for h, p in cfg.nodes)
            raise SinkError(self.store, f"connect to {nodes}", f"{type(exc).__name__}: {exc}", _HINT) from exc
        return self

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _probe(self) -> str:
        info = await self._require().cluster_info()
        state = info.get("cluster_state") if isinstance(info, dict) else None
        if state != "ok":
            raise RuntimeError(f"cluster_state={state}; see `redis-cli -p <port> cluster info`")
        return f"cluster_state=ok, {len(self._require().get_primaries())} primaries"

    def _require(self) -> RedisCluster:
        if self._client is None:
            raise RuntimeError("RedisHotState.open() was not called (or close() was): open it first")
        return self._client

    @property
    def is_open(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> RedisCluster:
        """The underlying cluster client (for ad-hoc reads and tests)."""
        return self._require()

    async def _load_scripts(self) -> None:
        client = self._require()
        self._sha = {name: await client.script_load(text) for name, text in SCRIPTS.items()}

    # ---- one pipeline -----------------------------------------------------------------------------------

    async def execute(self, operation: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` as one cluster pipeline (one packed request per primary). A command
        ``("EVALSHA", name, ...)`` runs the script ``name`` of :data:`sinks.redis_scripts.SCRIPTS`; on
        NOSCRIPT the scripts are loaded again and the batch re-sent once. A failed command raises
        :class:`SinkError` naming ``operation``."""
        client = self._require()
        if not commands:
            return []
        async with self._slots:  # queue for a connection instead of failing with MaxConnectionsError
            return await self._execute(client, operation, commands)

    async def _execute(
        self, client: RedisCluster, operation: str, commands: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        try:
            for attempt in (0, 1):
                pipe = client.pipeline()
                for cmd in commands:
                    if cmd[0] == "EVALSHA":
                        pipe.execute_command("EVALSHA", self._sha[cmd[1]], *cmd[2:])
                    else:
                        pipe.execute_command(*cmd)
                results = await pipe.execute(raise_on_error=False)
                if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                    await self._load_scripts()
                    continue
                for r in results:
                    if isinstance(r, Exception):
                        raise r
                return list(results)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise SinkError(self.store, operation, f"{type(exc).__name__}: {exc}", _HINT) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _symbol_commands(self, newest: Mapping[str, int]) -> list[tuple[Any, ...]]:
        if not newest:
            return []
        args: list[Any] = []
        for sym, t in newest.items():
            args += [t, sym]
        commands: list[tuple[Any, ...]] = [("ZADD", self.symbols_key, "GT", *args)]
        ttl = self.config.cache.index_ttl_ms
        commands.append(("PEXPIRE", self.symbols_key, ttl) if ttl else ("PERSIST", self.symbols_key))
        return commands

    # ---- writes -----------------------------------------------------------------------------------------

    async def write_bars(self, bars: Iterable[Record]) -> int:
        """Add closed bars (decoded ``Bar`` records) to the per-symbol sorted sets, update each symbol's
        price, and invalidate the cached chart responses of every symbol/timeframe written; one pipeline.

        Idempotent: one member per (symbol, timeframe, start_us) whatever is re-sent; the newest
        ``max_bars`` are kept. Returns the number of bars given."""
        per_key: dict[tuple[str, str], dict[int, str]] = {}
        newest: dict[str, int] = {}
        prices: dict[str, dict[str, Any]] = {}
        n = 0
        try:
            for bar in bars:
                sym, tf, start = bar["symbol"], bar["timeframe"], int(bar["start_us"])
                per_key.setdefault((sym, tf), {})[start] = bar_member(bar)
                newest[sym] = max(start, newest.get(sym, _MIN))
                end = start + timeframe_us(tf)
                cur = prices.get(sym)
                if cur is None or cur["ts_us"] <= end:
                    prices[sym] = {"symbol": sym, "price": float(bar["close"]), "ts_us": end, "timeframe": tf}
                n += 1
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, "Bar", exc) from exc
        policy, cap = self.config.cache, self.config.max_bars
        commands: list[tuple[Any, ...]] = []
        for (sym, tf), members in per_key.items():
            starts = sorted(members)
            if cap:
                starts = starts[-cap:]  # older ones would be trimmed at once
            keys = (self.bars_key(sym, tf), self.chart_key(sym, tf))
            for i in range(0, len(starts), _BARS_PER_CALL):
                args: list[Any] = []
                for s in starts[i : i + _BARS_PER_CALL]:
                    args += [s, members[s]]
                commands.append(("EVALSHA", "bars", 2, *keys, cap, policy.bars_ttl_ms, *args))
        for sym, price in prices.items():
            ttl = policy.price_ttl_ms(price["ts_us"])
            commands.append(self._latest(self.price_key(sym), "ts_us", price, ttl))
        commands += self._symbol_commands(newest)
        await self.execute("write_bars", commands)
        return n

    @staticmethod
    def _latest(key: str, order_field: str, rec: Record, ttl_ms: int) -> tuple[Any, ...]:
        return ("EVALSHA", "latest", 1, key, order_field, int(rec[order_field]), ttl_ms, *hash_args(rec))

    async def _write_latest(
        self,
        operation: str,
        kind: str,
        records: Iterable[Record],
        key_of: Callable[[Record], str],
        order_field: str,
        ttl_of: Callable[[Record], int],
    ) -> int:
        latest: dict[str, Record] = {}
        newest: dict[str, int] = {}
        n = 0
        try:
            for rec in records:
                key = key_of(rec)
                t = int(rec[order_field])
                cur = latest.get(key)
                if cur is None or int(cur[order_field]) <= t:
                    latest[key] = rec
                sym = rec["symbol"]
                newest[sym] = max(t, newest.get(sym, _MIN))
                n += 1
            commands = [self._latest(key, order_field, rec, ttl_of(rec)) for key, rec in latest.items()]
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, kind, exc) from exc
        commands += self._symbol_commands(newest)
        await self.execute(operation, commands)
        return n

    async def write_snapshots(self, snapshots: Iterable[Record]) -> int:
        """Keep the newest ``IndicatorSnapshot`` per (symbol, timeframe); older ones never replace newer.
        TTL 5 s when the snapshot's ATR/close marks high volatility, else 30 s (the cache policy)."""
        return await self._write_latest(
            "write_snapshots",
            "IndicatorSnapshot",
            snapshots,
            lambda r: self.snapshot_key(r["symbol"], r["timeframe"]),
            "start_us",
            self.config.cache.indicator_ttl_ms,
        )

    async def write_signals(self, signals: Iterable[Record]) -> int:
        """Keep the newest ``Signal`` per symbol (by bar ``start_us``); older ones never replace newer."""
        default = self.config.cache.default_ttl_ms
        return await self._write_latest(
            "write_signals",
            "Signal",
            signals,
            lambda r: self.signal_key(r["symbol"]),
            "start_us",
            lambda _: default,
        )

    async def write_positions(self, fills: Iterable[Record]) -> int:
        """Keep the position after the newest ``Fill`` per book (symbol, timeframe; by ``ts_us``: a fill
        carries its book's position, average price and realized PnL after it)."""
        rows: list[dict[str, Any]] = []
        try:
            for f in fills:
                rows.append(
                    {
                        "symbol": f["symbol"],
                        "timeframe": str(f.get("timeframe", "")),
                        "quantity": float(f["position"]),
                        "avg_price": float(f["avg_price"]),
                        "realized_pnl": float(f["realized_pnl"]),
                        "last_price": float(f["price"]),
                        "ts_us": int(f["ts_us"]),
                        "fill_id": f["fill_id"],
                        "order_id": f["order_id"],
                    }
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, "Fill", exc) from exc
        default = self.config.cache.default_ttl_ms
        return await self._write_latest(
            "write_positions",
            "Fill",
            rows,
            lambda r: self.position_key(r["symbol"], r["timeframe"]),
            "ts_us",
            lambda _: default,
        )

    # ---- control --------------------------------------------------------------------------------------

    async def kill_switch(self) -> str | None:
        """The reason the global kill switch was engaged, or None when it is off."""
        (value,) = await self.execute("kill_switch", [("GET", self.kill_switch_key)])
        return None if value is None else str(value)

    async def set_kill_switch(self, reason: str | None) -> None:
        """Engage the global kill switch with ``reason`` (no expiry), or release it with None."""
        if reason is None:
            await self.execute("kill_switch off", [("DEL", self.kill_switch_key)])
        else:
            await self.execute("kill_switch on", [("SET", self.kill_switch_key, reason or "engaged")])

    # ---- reads (each counted as hits and misses in ``stats``) ----------------------------------------------

    async def bars(self, symbol: str, timeframe: str, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` bars of ``symbol``/``timeframe``, oldest first (as stored: JSON-decoded)."""
        if limit <= 0:
            return []
        (members,) = await self.execute("bars", [("ZRANGE", self.bars_key(symbol, timeframe), -limit, -1)])
        self.stats.count("bars", int(bool(members)), int(not members))
        return bars_from_members(symbol, timeframe, members)

    async def bars_read_through(
        self, symbol: str, timeframe: str, source: BarSource, limit: int = 500
    ) -> list[dict[str, Any]]:
        """:meth:`bars`, and on a miss warm the key from ``source`` (ClickHouse) and read it again."""
        rows = await self.bars(symbol, timeframe, limit)
        if rows:
            return rows
        report = await warm(self, [symbol], [timeframe], source, max(limit, self.config.warm_bars))
        if not report.bars:
            return []
        (members,) = await self.execute("bars", [("ZRANGE", self.bars_key(symbol, timeframe), -limit, -1)])
        return bars_from_members(symbol, timeframe, members)

    async def symbols(self) -> list[str]:
        """Every symbol written so far, sorted."""
        (syms,) = await self.execute("symbols", [("ZRANGE", self.symbols_key, 0, -1)])
        return sorted(syms)

    async def latest_signals(self, symbols: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The newest signal of each symbol (all known symbols when ``symbols`` is None), sorted by symbol;
        symbols without a signal are left out. One pipeline for all symbols."""
        syms = await self.symbols() if symbols is None else sorted(set(symbols))
        raws = await self.execute("latest_signals", [("HGETALL", self.signal_key(s)) for s in syms])
        found = [d for d in (decode_hash(kinds("Signal"), r) for r in raws) if d is not None]
        self.stats.count("signal", len(found), len(syms) - len(found))
        return found

    async def _hash(self, read: str, key: str, kinds_: Mapping[str, Any]) -> dict[str, Any] | None:
        (raw,) = await self.execute(read, [("HGETALL", key)])
        out = decode_hash(kinds_, raw)
        self.stats.count(read, int(out is not None), int(out is None))
        return out

    async def latest_snapshot(self, symbol: str, timeframe: str) -> dict[str, Any] | None:
        """The newest indicator snapshot of ``symbol``/``timeframe``, or None."""
        return await self._hash("snapshot", self.snapshot_key(symbol, timeframe), kinds("IndicatorSnapshot"))

    async def price(self, symbol: str) -> dict[str, Any] | None:
        """``{symbol, price, ts_us, timeframe}``: the close of the newest bar of ``symbol`` and its end time,
        or None once the price TTL has passed (1 s while the market is open, 60 s when closed)."""
        return await self._hash("price", self.price_key(symbol), _PRICE_KINDS)

    async def position(self, symbol: str, timeframe: str) -> dict[str, Any] | None:
        """The position of the book (``symbol``, ``timeframe``) after its newest fill, or None (keys as in
        ``POSITION_KINDS``)."""
        return await self._hash("position", self.position_key(symbol, timeframe), POSITION_KINDS)

    async def net_position(self, symbol: str, timeframes: Sequence[str]) -> float:
        """The sum of the positions of ``symbol``'s books in ``timeframes`` (0 for a book with none)."""
        books = await asyncio.gather(*(self.position(symbol, tf) for tf in timeframes))
        return sum(float(b["quantity"]) for b in books if b)
