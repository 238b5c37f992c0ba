"""Store adapter configurations from the settings (``sinks`` takes plain values; this maps them)."""

from __future__ import annotations

from sinks.clickhouse_history import ClickHouseConfig, ClickHouseHistory
from sinks.postgres_orders import PostgresConfig, PostgresOrders
from sinks.redis_cache import CachePolicy
from sinks.redis_state import RedisConfig, RedisHotState
from streams.config import Settings


def redis_config(settings: Settings) -> RedisConfig:
    r = settings.redis
    return RedisConfig(
        nodes=tuple(r.nodes),
        username=r.username,
        password=r.password.get_secret_value() if r.password else None,
        ssl=r.ssl,
        key_prefix=r.key_prefix,
        max_bars=settings.sink.redis_max_bars,
        cache=CachePolicy(**r.cache.model_dump(exclude={"warm_bars"})),
        warm_bars=r.cache.warm_bars,
    )


def clickhouse_config(settings: Settings) -> ClickHouseConfig:
    c = settings.clickhouse
    return ClickHouseConfig(
        url=c.url,
        database=c.database,
        username=c.username,
        password=c.password.get_secret_value() if c.password else None,
        ticks_ttl_days=settings.sink.ticks_ttl_days,
    )


def postgres_config(settings: Settings) -> PostgresConfig:
    p = settings.postgres
    return PostgresConfig(
        dsn=p.dsn.get_secret_value(), replica_dsn=p.replica_dsn.get_secret_value(), schema=p.schema_name
    )


def redis_state(settings: Settings) -> RedisHotState:
    return RedisHotState(redis_config(settings))


def clickhouse_history(settings: Settings) -> ClickHouseHistory:
    return ClickHouseHistory(clickhouse_config(settings))


def postgres_orders(settings: Settings) -> PostgresOrders:
    return PostgresOrders(postgres_config(settings))
