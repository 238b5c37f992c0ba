"""Hot state in Redis Cluster: the newest bars, indicators, signals and positions per symbol, for the API.

Key layout (``P`` = key prefix, default ``sp``; ``{SYM}`` is a hash tag, so one symbol's keys share a slot)::

    P:{SYM}:bars:<tf>   sorted set  score = start_us, member = the bar as a compact JSON array in the order of
                                    BAR_MEMBER_FIELDS (symbol/timeframe are in the key); one member per
                                    start_us, capped to the newest ``max_bars`` (default 2,000)
    P:{SYM}:ind:<tf>    hash        the newest IndicatorSnapshot of the symbol and timeframe
    P:{SYM}:signal      hash        the newest Signal of the symbol (any timeframe), by start_us
    P:{SYM}:position    hash        symbol, quantity, avg_price, realized_pnl, last_price, ts_us, fill_id,
                                    order_id (the position after the symbol's newest fill)
    P:symbols           sorted set  every symbol written; score = newest start_us/ts_us seen (ZADD GT)

Hash values are plain strings (numbers as ``repr``, arrays as JSON) and are typed back on read from the Avro
schemas in ``schemas/avro``.

Writes are batched: a whole batch is one cluster pipeline, which redis-py splits into one packed request per
primary, sent concurrently (so a batch costs one round trip per primary it touches, at most 3 locally). Each
key gets one command per batch: the records are grouped per key first and applied by small Lua scripts:

* bars: ``ZREMRANGEBYSCORE s s`` + ``ZADD s member`` per bar, then ``ZREMRANGEBYRANK`` to the cap. Re-writing
  a bar (even with different stage timestamps after a crash) leaves exactly one member per start.
* latest hashes: replaced only when the stored ``start_us`` (``ts_us`` for positions) is not newer, so
  re-processing old records never moves "latest" back in time. An equal time replaces (same record).

Scripts run by EVALSHA; after a failover or ``SCRIPT FLUSH`` (NOSCRIPT) they are loaded again and the batch
is re-sent (safe: every write is idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from sinks.base import SinkBase, SinkError, input_error

__all__ = ["BAR_MEMBER_FIELDS", "RedisConfig", "RedisHotState"]

Record = Mapping[str, Any]
_Kind = Literal["int", "float", "str", "json"]

# KEYS[1] bars zset; ARGV[1] cap (0 = none); ARGV[2..] score, member pairs. Returns ZCARD.
_BARS_LUA = """
local key = KEYS[1]
for i = 2, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i], ARGV[i])
  redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
end
local cap = tonumber(ARGV[1])
if cap > 0 then redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1) end
return redis.call('ZCARD', key)
"""

# KEYS[1] hash; ARGV[1] ordering field; ARGV[2] its new value; ARGV[3..] field, value pairs.
# Returns 1 when written, 0 when the stored record is newer.
_LATEST_LUA = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 1
"""

_compact = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per dumps() call
_BARS_PER_CALL = 1000  # bars per EVALSHA: bounds how long one script blocks its shard
_HINT = (
    "is the Redis Cluster up and reachable (`stockpulse stack up`, `stockpulse stack status`) and are the "
    "startup nodes right (STOCKPULSE_REDIS__STARTUP_NODES)? Writes are idempotent: retry the same batch"
)

# Field order of a bar member (a JSON array). Append new fields at the end only: older members then simply
# lack them on read.
BAR_MEMBER_FIELDS: tuple[str, ...] = (
    "bar_id",
    "start_us",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "first_seq",
    "last_seq",
    "ingest_us",
    "close_us",
)

_POSITION_KINDS: dict[str, _Kind] = {
    "symbol": "str",
    "quantity": "float",
    "avg_price": "float",
    "realized_pnl": "float",
    "last_price": "float",
    "ts_us": "int",
    "fill_id": "str",
    "order_id": "str",
}


@cache
def _kinds(record: str) -> dict[str, _Kind]:
    """Field -> value kind of an Avro record (``Bar``, ``IndicatorSnapshot``, ``Signal``)."""
    from schemas.catalog import full_name, load_avsc_files

    out: dict[str, _Kind] = {}
    for field in load_avsc_files()[full_name(record)]["fields"]:
        t = field["type"]
        if t in ("int", "long"):
            out[field["name"]] = "int"
        elif t in ("float", "double"):
            out[field["name"]] = "float"
        elif t == "string" or (isinstance(t, dict) and t.get("type") == "enum"):
            out[field["name"]] = "str"
        else:
            out[field["name"]] = "json"
    return out


def _encode_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return _compact(value)


def _decode_value(kind: _Kind, raw: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "json":
            return json.loads(raw)
    except ValueError:
        return raw
    return raw


def _decode_hash(kinds: Mapping[str, _Kind], raw: Mapping[str, str]) -> dict[str, Any] | None:
    if not raw:
        return None
    return {k: _decode_value(kinds.get(k, "str"), v) for k, v in raw.items()}


def _hash_args(record: Record) -> list[str]:
    args: list[str] = []
    for k, v in record.items():
        args.append(k)
        args.append(_encode_value(v))
    return args


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where and how to connect. ``nodes`` are startup nodes (any subset of the cluster)."""

    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 17000), ("127.0.0.1", 17001), ("127.0.0.1", 17002))
    password: str | None = None
    ssl: bool = False
    key_prefix: str = "sp"
    max_bars: int = 2000
    socket_timeout_s: float = 5.0
    max_connections: int = 32


class RedisHotState(SinkBase):
    """Batched, idempotent hot-state writes and the API's reads (``redis.asyncio`` cluster, hiredis)."""

    store = "redis"

    def __init__(self, config: RedisConfig | None = None) -> None:
        self.config = config or RedisConfig()
        if not self.config.nodes:
            raise ValueError("RedisConfig.nodes is empty: give at least one host:port of the cluster")
        if self.config.max_bars < 0:
            raise ValueError(f"RedisConfig.max_bars={self.config.max_bars}: use 0 (no cap) or a positive cap")
        self._client: RedisCluster | None = None
        self._sha: dict[str, str] = {}

    # ---- keys -------------------------------------------------------------------------------------------

    def _key(self, symbol: str, *parts: str) -> str:
        return ":".join((self.config.key_prefix, "{" + symbol + "}", *parts))

    def bars_key(self, symbol: str, timeframe: str) -> str:
        """``P:{SYM}:bars:<tf>``"""
        return self._key(symbol, "bars", timeframe)

    def snapshot_key(self, symbol: str, timeframe: str) -> str:
        """``P:{SYM}:ind:<tf>``"""
        return self._key(symbol, "ind", timeframe)

    def signal_key(self, symbol: str) -> str:
        """``P:{SYM}:signal``"""
        return self._key(symbol, "signal")

    def position_key(self, symbol: str) -> str:
        """``P:{SYM}:position``"""
        return self._key(symbol, "position")

    @property
    def symbols_key(self) -> str:
        """``P:symbols``"""
        return f"{self.config.key_prefix}:symbols"

    # ---- lifecycle --------------------------------------------------------------------------------------

    async def open(self) -> RedisHotState:
        """Connect to the cluster and load the Lua scripts on every primary."""
        if self._client is not None:
            return self
        cfg = self.config
        client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in cfg.nodes],
            password=cfg.password,
            ssl=cfg.ssl,
            decode_responses=True,
            socket_timeout=cfg.socket_timeout_s,
            socket_connect_timeout=cfg.socket_timeout_s,
            max_connections=cfg.max_connections,
        )
        try:
            await client.initialize()
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
    def client(self) -> RedisCluster:
        """The underlying cluster client (for ad-hoc reads and tests)."""
        return self._require()

    async def _load_scripts(self) -> None:
        client = self._require()
        self._sha = {
            "bars": await client.script_load(_BARS_LUA),
            "latest": await client.script_load(_LATEST_LUA),
        }

    # ---- writes -----------------------------------------------------------------------------------------

    async def _run(self, operation: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` as one cluster pipeline (one packed request per primary); re-load the scripts
        and re-send once on NOSCRIPT. Any other failed command raises :class:`SinkError`."""
        client = self._require()
        if not commands:
            return []
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
        return [("ZADD", self.symbols_key, "GT", *args)]

    async def write_bars(self, bars: Iterable[Record]) -> int:
        """Add closed bars (decoded ``Bar`` records) to the per-symbol sorted sets; one pipeline per batch.

        Idempotent: one member per (symbol, timeframe, start_us) whatever is re-sent; the newest
        ``max_bars`` are kept. Returns the number of bars given."""
        per_key: dict[tuple[str, str], dict[int, str]] = {}
        newest: dict[str, int] = {}
        n = 0
        try:
            for bar in bars:
                sym, tf, start = bar["symbol"], bar["timeframe"], int(bar["start_us"])
                member = _compact([bar[f] for f in BAR_MEMBER_FIELDS])
                per_key.setdefault((sym, tf), {})[start] = member
                if start > newest.get(sym, -(2**63)):
                    newest[sym] = start
                n += 1
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, "Bar", exc) from exc
        cap = self.config.max_bars
        commands: list[tuple[Any, ...]] = []
        for (sym, tf), members in per_key.items():
            starts = sorted(members)
            if cap:
                starts = starts[-cap:]  # older ones would be trimmed at once
            key = self.bars_key(sym, tf)
            for i in range(0, len(starts), _BARS_PER_CALL):
                args: list[Any] = []
                for s in starts[i : i + _BARS_PER_CALL]:
                    args += [s, members[s]]
                commands.append(("EVALSHA", "bars", 1, key, cap, *args))
        commands += self._symbol_commands(newest)
        await self._run("write_bars", commands)
        return n

    async def _write_latest(
        self, operation: str, kind: str, records: Iterable[Record], key_of: Any, order_field: str
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
                if t > newest.get(sym, -(2**63)):
                    newest[sym] = t
                n += 1
            commands: list[tuple[Any, ...]] = [
                ("EVALSHA", "latest", 1, key, order_field, int(rec[order_field]), *_hash_args(rec))
                for key, rec in latest.items()
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise input_error(self.store, kind, exc) from exc
        commands += self._symbol_commands(newest)
        await self._run(operation, commands)
        return n

    async def write_snapshots(self, snapshots: Iterable[Record]) -> int:
        """Keep the newest ``IndicatorSnapshot`` per (symbol, timeframe); older ones never replace newer."""
        return await self._write_latest(
            "write_snapshots",
            "IndicatorSnapshot",
            snapshots,
            lambda r: self.snapshot_key(r["symbol"], r["timeframe"]),
            "start_us",
        )

    async def write_signals(self, signals: Iterable[Record]) -> int:
        """Keep the newest ``Signal`` per symbol (by bar ``start_us``); older ones never replace newer."""
        return await self._write_latest(
            "write_signals", "Signal", signals, lambda r: self.signal_key(r["symbol"]), "start_us"
        )

    async def write_positions(self, fills: Iterable[Record]) -> int:
        """Keep the position after the newest ``Fill`` per symbol (by ``ts_us``; a fill carries the position,
        average price and realized PnL after it)."""
        rows: list[dict[str, Any]] = []
        try:
            for f in fills:
                rows.append(
                    {
                        "symbol": f["symbol"],
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
        return await self._write_latest(
            "write_positions", "Fill", rows, lambda r: self.position_key(r["symbol"]), "ts_us"
        )

    # ---- reads ------------------------------------------------------------------------------------------

    async def _read(self, operation: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return await self._run(operation, list(commands))

    async def bars(self, symbol: str, timeframe: str, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` bars of ``symbol``/``timeframe``, oldest first (as stored: JSON-decoded)."""
        if limit <= 0:
            return []
        (members,) = await self._read("bars", [("ZRANGE", self.bars_key(symbol, timeframe), -limit, -1)])
        out = []
        for m in members:
            bar: dict[str, Any] = {"symbol": symbol, "timeframe": timeframe}
            bar.update(zip(BAR_MEMBER_FIELDS, json.loads(m), strict=False))
            out.append(bar)
        return out

    async def symbols(self) -> list[str]:
        """Every symbol written so far, sorted."""
        (syms,) = await self._read("symbols", [("ZRANGE", self.symbols_key, 0, -1)])
        return sorted(syms)

    async def latest_signals(self, symbols: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The newest signal of each symbol (all known symbols when ``symbols`` is None), sorted by symbol;
        symbols without a signal are left out. One pipeline for all symbols."""
        syms = await self.symbols() if symbols is None else sorted(set(symbols))
        raws = await self._read("latest_signals", [("HGETALL", self.signal_key(s)) for s in syms])
        kinds = _kinds("Signal")
        return [d for d in (_decode_hash(kinds, r) for r in raws) if d is not None]

    async def latest_snapshot(self, symbol: str, timeframe: str) -> dict[str, Any] | None:
        """The newest indicator snapshot of ``symbol``/``timeframe``, or None."""
        (raw,) = await self._read("latest_snapshot", [("HGETALL", self.snapshot_key(symbol, timeframe))])
        return _decode_hash(_kinds("IndicatorSnapshot"), raw)

    async def position(self, symbol: str) -> dict[str, Any] | None:
        """The position after the newest fill of ``symbol``, or None (keys as in :data:`_POSITION_KINDS`)."""
        (raw,) = await self._read("position", [("HGETALL", self.position_key(symbol))])
        return _decode_hash(_POSITION_KINDS, raw)
