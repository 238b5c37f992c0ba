"""The Lua scripts of the Redis adapter. Each touches the keys of one symbol only (one ``{SYM}`` hash tag,
so one cluster slot) and runs atomically on its shard. TTLs are in milliseconds; 0 means no expiry.

* ``bars``: add closed bars to the chart sorted set (one member per start), trim to the cap, set the set's
  TTL, and delete the symbol/timeframe's cached chart responses (invalidation on new bars).
* ``latest``: replace a "latest" hash unless the stored record is newer, and set its TTL.
* ``chart_put``: store one cached chart response unless a bar newer than the response's ``as_of`` has been
  written since it was computed (so a slow reader never caches a response that is already stale).
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# KEYS[1] bars zset, KEYS[2] chart-cache hash; ARGV[1] cap (0 = none); ARGV[2] TTL ms; ARGV[3..] score,
# member pairs. Returns ZCARD.
BARS = """
local key = KEYS[1]
for i = 3, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i], ARGV[i])
  redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
end
local cap = tonumber(ARGV[1])
if cap > 0 then redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1) end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
redis.call('DEL', KEYS[2])
return redis.call('ZCARD', key)
"""

# KEYS[1] hash; ARGV[1] ordering field; ARGV[2] its new value; ARGV[3] TTL ms; ARGV[4..] field, value pairs.
# Returns 1 when written, 0 when the stored record is newer (its TTL is left as it is).
LATEST = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS[1] chart-cache hash, KEYS[2] bars zset; ARGV[1] field (the response variant); ARGV[2] body;
# ARGV[3] as_of (start_us of the newest bar the response was built from; -1 when it had none);
# ARGV[4] TTL ms. Returns 1 when stored, 0 when a newer bar makes the response stale.
CHART_PUT = """
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if top[2] and tonumber(top[2]) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

SCRIPTS: dict[str, str] = {"bars": BARS, "latest": LATEST, "chart_put": CHART_PUT}
