-- StockPulse orders of record in PostgreSQL. Applied by sinks.postgres_orders.apply_schema (idempotent,
-- under an advisory lock so concurrent services do not race). Names are unqualified: the adapter sets
-- search_path to its schema (default public). Timestamps are timestamptz with microsecond precision, exactly
-- the records' *_us values; reads return them as *_us integers again.

-- Signals of record: one row per deterministic signal_id.
CREATE TABLE IF NOT EXISTS signals (
    signal_id      text             PRIMARY KEY,
    symbol         text             NOT NULL,
    timeframe      text             NOT NULL,
    start          timestamptz      NOT NULL,
    action         text             NOT NULL CHECK (action IN ('HOLD', 'BUY', 'SELL')),
    score          double precision NOT NULL,
    price          double precision NOT NULL,
    model_version  text             NOT NULL,
    inference_path text             NOT NULL,
    ingest_us      bigint           NOT NULL DEFAULT 0,
    close_us       bigint           NOT NULL DEFAULT 0,
    indicator_us   bigint           NOT NULL DEFAULT 0,
    inference_us   bigint           NOT NULL DEFAULT 0,
    publish_us     bigint           NOT NULL DEFAULT 0,
    inserted_at    timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS signals_symbol_start ON signals (symbol, start DESC);

-- A partitioned table's unique keys must contain the partition key, so orders' primary key is
-- (order_id, ts). order_ids makes order_id unique across all partitions (a re-processed order whose ts
-- differs is still one order): orders are inserted only when their id is new here, in the same statement.
CREATE TABLE IF NOT EXISTS order_ids (
    order_id text        PRIMARY KEY,
    ts       timestamptz NOT NULL
);

-- Monthly range partitions (orders_yYYYYmMM) are created on demand by the adapter for every month a batch
-- touches (and for the current and next month at open). No DEFAULT partition: rows parked there would block
-- creating the month's partition later.
CREATE TABLE IF NOT EXISTS orders (
    order_id    text             NOT NULL,
    signal_id   text             NOT NULL DEFAULT '',
    symbol      text             NOT NULL,
    side        text             NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    double precision NOT NULL,
    ref_price   double precision NOT NULL,
    status      text             NOT NULL CHECK (status IN ('ACCEPTED', 'REJECTED')),
    reason      text             NOT NULL DEFAULT '',
    source      text             NOT NULL DEFAULT 'signal',
    ts          timestamptz      NOT NULL,
    ingest_us   bigint           NOT NULL DEFAULT 0,
    signal_us   bigint           NOT NULL DEFAULT 0,
    timeframe   text             NOT NULL DEFAULT '',
    inserted_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS orders_symbol_ts ON orders (symbol, ts DESC);

-- Fills: no foreign key to orders (orders and fills arrive on different topics and batches).
CREATE TABLE IF NOT EXISTS fills (
    fill_id      text             PRIMARY KEY,
    order_id     text             NOT NULL,
    symbol       text             NOT NULL,
    side         text             NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity     double precision NOT NULL,
    price        double precision NOT NULL,
    ts           timestamptz      NOT NULL,
    position     double precision NOT NULL,
    avg_price    double precision NOT NULL,
    realized_pnl double precision NOT NULL,
    timeframe    text             NOT NULL DEFAULT '',
    inserted_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fills_symbol_ts ON fills (symbol, ts DESC);
CREATE INDEX IF NOT EXISTS fills_order_id ON fills (order_id);

-- The position after the newest fill per book (symbol, signal timeframe: each timeframe trades its own book);
-- upserted only forward in time (updated_at = fill ts). A symbol's net position is the sum of its books.
CREATE TABLE IF NOT EXISTS positions (
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL DEFAULT '',
    quantity     double precision NOT NULL,
    avg_price    double precision NOT NULL,
    realized_pnl double precision NOT NULL,
    last_price   double precision NOT NULL,
    updated_at   timestamptz      NOT NULL,
    fill_id      text             NOT NULL,
    order_id     text             NOT NULL,
    CONSTRAINT positions_pkey PRIMARY KEY (symbol, timeframe)
);

-- Upgrades of a schema created before books were per (symbol, timeframe) (idempotent).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS timeframe text NOT NULL DEFAULT '';
ALTER TABLE fills ADD COLUMN IF NOT EXISTS timeframe text NOT NULL DEFAULT '';
ALTER TABLE positions ADD COLUMN IF NOT EXISTS timeframe text NOT NULL DEFAULT '';
DO $$
BEGIN
    IF (SELECT array_length(conkey, 1) FROM pg_constraint
        WHERE conrelid = 'positions'::regclass AND contype = 'p') = 1 THEN
        ALTER TABLE positions DROP CONSTRAINT positions_pkey;
        ALTER TABLE positions ADD CONSTRAINT positions_pkey PRIMARY KEY (symbol, timeframe);
    END IF;
    IF to_regclass('daily_performance') IS NOT NULL THEN  -- (nested: AND does not short-circuit here)
        IF position('timeframe' IN pg_get_viewdef(to_regclass('daily_performance'))) = 0 THEN
            DROP MATERIALIZED VIEW daily_performance;
        END IF;
    END IF;
END $$;

-- Historical bars (every closed bar of every timeframe the sink service writes), for the API's chart reads
-- on the replica when Redis misses. Range-partitioned by bar start: monthly partitions
-- (historical_data_yYYYYmMM) are created on demand by the adapter, like orders'. The primary key
-- (symbol, timeframe, start) is the composite index of chart reads ("newest N bars of a symbol and
-- timeframe before T": an index range scan on one or two partitions) and makes writes idempotent
-- (INSERT ... ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS historical_data (
    bar_id      text             NOT NULL,
    symbol      text             NOT NULL,
    timeframe   text             NOT NULL,
    start       timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL,
    vwap        double precision NOT NULL,
    trades      integer          NOT NULL,
    first_seq   bigint           NOT NULL,
    last_seq    bigint           NOT NULL,
    ingest_us   bigint           NOT NULL DEFAULT 0,
    close_us    bigint           NOT NULL DEFAULT 0,
    inserted_at timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT historical_data_pkey PRIMARY KEY (symbol, timeframe, start)
) PARTITION BY RANGE (start);

-- Realized performance per symbol and UTC day, from fills (all books of the symbol). A fill's `realized_pnl`
-- is its book's cumulative realized PnL after it, so the profit a fill realized is the change since the
-- book's previous fill (ordered by ts, fill_id; the first stored fill counts its whole realized_pnl). trades = fills;
-- closing_trades = fills that realized a non-zero profit; avg_realized_pnl = realized_pnl / trades.
-- The unique index on (symbol, day) lets `REFRESH MATERIALIZED VIEW CONCURRENTLY` run without blocking
-- readers; PostgresOrders.refresh_daily_performance() does that (the sink service at most every
-- STOCKPULSE_SINK__PERFORMANCE_REFRESH_S seconds, after new fills).
CREATE MATERIALIZED VIEW IF NOT EXISTS daily_performance AS
WITH per_fill AS (
    SELECT
        symbol,
        (ts AT TIME ZONE 'UTC')::date AS day,
        side,
        quantity,
        price,
        realized_pnl
            - coalesce(lag(realized_pnl) OVER (PARTITION BY symbol, timeframe ORDER BY ts, fill_id), 0)
            AS realized
    FROM fills
)
SELECT
    symbol,
    day,
    count(*)::bigint                               AS trades,
    count(*) FILTER (WHERE side = 'BUY')::bigint   AS buys,
    count(*) FILTER (WHERE side = 'SELL')::bigint  AS sells,
    count(*) FILTER (WHERE realized <> 0)::bigint  AS closing_trades,
    sum(quantity)                                  AS quantity,
    sum(quantity * price)                          AS notional,
    sum(realized)                                  AS realized_pnl,
    avg(realized)                                  AS avg_realized_pnl
FROM per_fill
GROUP BY symbol, day
WITH DATA;
CREATE UNIQUE INDEX IF NOT EXISTS daily_performance_symbol_day ON daily_performance (symbol, day);
