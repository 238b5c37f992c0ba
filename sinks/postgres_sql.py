"""The SQL of the PostgreSQL adapter (:mod:`sinks.postgres_orders`): staging tables, the idempotent
``INSERT … SELECT … ON CONFLICT`` moves out of them, the replica reads and the partition DDL.

Records arrive with integer-microsecond timestamps; :func:`ts_sql` turns them into exact ``timestamptz``
values and :func:`us_sql` back (``extract`` gives numeric, so no float rounding).
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "BAR_FIELDS",
    "FILL_DEFAULTS",
    "FILL_FIELDS",
    "INSERT_BARS",
    "INSERT_FILLS",
    "INSERT_ORDERS",
    "INSERT_SIGNALS",
    "ORDER_DEFAULTS",
    "ORDER_FIELDS",
    "PARTITIONED",
    "SELECT_BARS",
    "SELECT_FILLS",
    "SELECT_ORDERS",
    "SELECT_PERFORMANCE",
    "SELECT_POSITIONS",
    "SELECT_SIGNALS",
    "SIGNAL_DEFAULTS",
    "SIGNAL_FIELDS",
    "STAGING",
    "UPSERT_POSITIONS",
    "month_of",
    "partition_ddl",
    "ts_sql",
    "us_sql",
]


def ts_sql(col: str) -> str:
    """SQL turning an integer-microseconds column into an exact timestamptz."""
    return f"(timestamptz 'epoch' + {col} * interval '1 microsecond')"


def us_sql(col: str) -> str:
    """SQL turning a timestamptz column back into integer microseconds (exact: extract gives numeric)."""
    return f"(extract(epoch FROM {col}) * 1000000)::bigint"


STAGING = (
    """CREATE TEMP TABLE IF NOT EXISTS _in_signals (
        signal_id text, symbol text, timeframe text, start_us bigint, action text, score float8, price float8,
        model_version text, inference_path text, ingest_us bigint, close_us bigint, indicator_us bigint,
        inference_us bigint, publish_us bigint) ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS _in_orders (
        order_id text, signal_id text, symbol text, side text, quantity float8, ref_price float8, status text,
        reason text, source text, ts_us bigint, ingest_us bigint, signal_us bigint, timeframe text)
        ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS _in_fills (
        ord integer, fill_id text, order_id text, symbol text, side text, quantity float8, price float8,
        ts_us bigint, position float8, avg_price float8, realized_pnl float8, timeframe text)
        ON COMMIT DELETE ROWS""",
    """CREATE TEMP TABLE IF NOT EXISTS _in_bars (
        bar_id text, symbol text, timeframe text, start_us bigint, open float8, high float8, low float8,
        close float8, volume float8, vwap float8, trades integer, first_seq bigint, last_seq bigint,
        ingest_us bigint, close_us bigint) ON COMMIT DELETE ROWS""",
)

SIGNAL_FIELDS = (
    "signal_id",
    "symbol",
    "timeframe",
    "start_us",
    "action",
    "score",
    "price",
    "model_version",
    "inference_path",
    "ingest_us",
    "close_us",
    "indicator_us",
    "inference_us",
    "publish_us",
)
SIGNAL_DEFAULTS = {"ingest_us": 0, "close_us": 0, "indicator_us": 0, "inference_us": 0, "publish_us": 0}
ORDER_FIELDS = (
    "order_id",
    "signal_id",
    "symbol",
    "side",
    "quantity",
    "ref_price",
    "status",
    "reason",
    "source",
    "ts_us",
    "ingest_us",
    "signal_us",
    "timeframe",
)
ORDER_DEFAULTS = {"signal_id": "", "reason": "", "source": "signal", "ingest_us": 0, "signal_us": 0,
                  "timeframe": ""}  # fmt: skip
FILL_FIELDS = (
    "fill_id",
    "order_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "ts_us",
    "position",
    "avg_price",
    "realized_pnl",
    "timeframe",
)
FILL_DEFAULTS = {"timeframe": ""}

INSERT_SIGNALS = f"""
INSERT INTO signals (signal_id, symbol, timeframe, start, action, score, price, model_version, inference_path,
                     ingest_us, close_us, indicator_us, inference_us, publish_us)
SELECT signal_id, symbol, timeframe, {ts_sql("start_us")}, action, score, price, model_version,
       inference_path, ingest_us, close_us, indicator_us, inference_us, publish_us
FROM _in_signals
ON CONFLICT (signal_id) DO NOTHING
"""

INSERT_ORDERS = f"""
WITH new AS (
    INSERT INTO order_ids (order_id, ts)
    SELECT DISTINCT ON (order_id) order_id, {ts_sql("ts_us")} FROM _in_orders ORDER BY order_id
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id, ts
)
INSERT INTO orders (order_id, signal_id, symbol, side, quantity, ref_price, status, reason, source, ts,
                    ingest_us, signal_us, timeframe)
SELECT DISTINCT ON (i.order_id) i.order_id, i.signal_id, i.symbol, i.side, i.quantity, i.ref_price, i.status,
       i.reason, i.source, new.ts, i.ingest_us, i.signal_us, i.timeframe
FROM _in_orders i JOIN new USING (order_id)
ORDER BY i.order_id
"""

INSERT_FILLS = f"""
INSERT INTO fills (fill_id, order_id, symbol, side, quantity, price, ts, position, avg_price, realized_pnl,
                   timeframe)
SELECT fill_id, order_id, symbol, side, quantity, price, {ts_sql("ts_us")}, position, avg_price, realized_pnl,
       timeframe
FROM _in_fills
ON CONFLICT (fill_id) DO NOTHING
"""

UPSERT_POSITIONS = f"""
INSERT INTO positions AS p
    (symbol, timeframe, quantity, avg_price, realized_pnl, last_price, updated_at, fill_id, order_id)
SELECT DISTINCT ON (symbol, timeframe)
    symbol, timeframe, position, avg_price, realized_pnl, price, {ts_sql("ts_us")}, fill_id, order_id
FROM _in_fills
ORDER BY symbol, timeframe, ts_us DESC, ord DESC
ON CONFLICT (symbol, timeframe) DO UPDATE SET
    quantity = EXCLUDED.quantity, avg_price = EXCLUDED.avg_price, realized_pnl = EXCLUDED.realized_pnl,
    last_price = EXCLUDED.last_price, updated_at = EXCLUDED.updated_at, fill_id = EXCLUDED.fill_id,
    order_id = EXCLUDED.order_id
WHERE p.updated_at <= EXCLUDED.updated_at
"""

SELECT_ORDERS = (
    "SELECT order_id, signal_id, symbol, side, quantity, ref_price, status, reason, source, "
    f"{us_sql('ts')} AS ts_us, ingest_us, signal_us, timeframe FROM orders"
)
SELECT_FILLS = (
    "SELECT fill_id, order_id, symbol, side, quantity, price, "
    f"{us_sql('ts')} AS ts_us, position, avg_price, realized_pnl, timeframe FROM fills"
)
SELECT_SIGNALS = (
    "SELECT signal_id, symbol, timeframe, "
    f"{us_sql('start')} AS start_us, action, score, price, model_version, inference_path, ingest_us, "
    "close_us, indicator_us, inference_us, publish_us FROM signals"
)
SELECT_POSITIONS = (
    "SELECT symbol, timeframe, quantity, avg_price, realized_pnl, last_price, "
    f"{us_sql('updated_at')} AS ts_us, fill_id, order_id FROM positions"
)


BAR_FIELDS = (
    "bar_id",
    "symbol",
    "timeframe",
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

INSERT_BARS = f"""
INSERT INTO historical_data (bar_id, symbol, timeframe, start, open, high, low, close, volume, vwap, trades,
                             first_seq, last_seq, ingest_us, close_us)
SELECT DISTINCT ON (symbol, timeframe, start_us)
       bar_id, symbol, timeframe, {ts_sql("start_us")}, open, high, low, close, volume, vwap, trades,
       first_seq, last_seq, ingest_us, close_us
FROM _in_bars
ORDER BY symbol, timeframe, start_us
ON CONFLICT (symbol, timeframe, start) DO NOTHING
"""

SELECT_BARS = (
    "SELECT bar_id, symbol, timeframe, "
    f"{us_sql('start')} AS start_us, open, high, low, close, volume, vwap, trades, first_seq, last_seq, "
    "ingest_us, close_us FROM historical_data"
)

SELECT_PERFORMANCE = (
    "SELECT symbol, day, trades, buys, sells, closing_trades, quantity, notional, realized_pnl, "
    "avg_realized_pnl FROM daily_performance"
)

# Range-partitioned tables -> their partition column; monthly partitions <table>_yYYYYmMM.
PARTITIONED = {"orders": "ts", "historical_data": "start"}


def month_of(ts_us: int) -> tuple[int, int]:
    """(year, month) of an integer-microsecond UTC timestamp."""
    d = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ts_us)
    return d.year, d.month


def partition_ddl(year: int, month: int, table: str = "orders") -> str:
    """``CREATE TABLE IF NOT EXISTS <table>_yYYYYmMM PARTITION OF <table>`` for one UTC month."""
    if table not in PARTITIONED:
        raise ValueError(f"{table!r} is not a partitioned table: use one of {sorted(PARTITIONED)}")
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        f"CREATE TABLE IF NOT EXISTS {table}_y{year:04d}m{month:02d} PARTITION OF {table} "
        f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') TO ('{ny:04d}-{nm:02d}-01 00:00:00+00')"
    )
