-- StockPulse history in ClickHouse. Applied by sinks.clickhouse_history.apply_schema (idempotent: every
-- statement is IF NOT EXISTS). Names are unqualified: the client is bound to the target database
-- (default `stockpulse`), created first with CREATE DATABASE IF NOT EXISTS. ${ticks_ttl} is replaced by
-- a TTL clause (`TTL inserted_at + INTERVAL N DAY`) or by nothing when the tick TTL is off.
--
-- Layout: every history table is partitioned by UTC day of its event time (toYYYYMMDD: partition ids such
-- as '20210108') and sorted by symbol, then time. A day is the unit of retention, backfill and repair
-- (ALTER TABLE ... DROP/REPLACE PARTITION), and most queries (one symbol, a time range) read a few granules
-- of a few partitions. Note: ClickHouse refuses one INSERT touching more than
-- max_partitions_per_insert_block (100) partitions, i.e. a single batch spanning more than 100 days.
--
-- Idempotency: records carry deterministic ids, and every table is a ReplacingMergeTree whose sorting key
-- is the record's natural key, so a re-inserted record collapses into one row on merge; read with FINAL
-- (or uniqExact of the key) to see exactly one copy before merges happen. non_replicated_deduplication_window
-- drops a retried insert of an identical block at once, in the table and (same window on their target
-- tables) in every materialized view fed by it. Stage timestamps (`*_at`) are DateTime64(6, 'UTC'); the
-- adapter returns them as `*_us` integers like the Avro records.

CREATE TABLE IF NOT EXISTS ticks
(
    symbol      LowCardinality(String),
    ts          DateTime64(6, 'UTC'),
    price       Float64,
    size        Float64,
    seq         UInt64,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (symbol, ts, seq)
${ticks_ttl}
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS bars
(
    bar_id      String,
    symbol      LowCardinality(String),
    timeframe   LowCardinality(String),
    start       DateTime64(6, 'UTC'),
    open        Float64,
    high        Float64,
    low         Float64,
    close       Float64,
    volume      Float64,
    vwap        Float64,
    trades      UInt32,
    first_seq   Int64,
    last_seq    Int64,
    ingest_at   DateTime64(6, 'UTC'),
    closed_at   DateTime64(6, 'UTC'),
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(start)
ORDER BY (symbol, timeframe, start)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS indicators
(
    snapshot_id  String,
    symbol       LowCardinality(String),
    timeframe    LowCardinality(String),
    start        DateTime64(6, 'UTC'),
    close        Float64,
    volume       Float64,
    ema_fast     Float64,
    ema_slow     Float64,
    rsi          Float64,
    stochrsi_k   Float64,
    stochrsi_d   Float64,
    macd         Float64,
    macd_signal  Float64,
    macd_hist    Float64,
    bb_upper     Float64,
    bb_middle    Float64,
    bb_lower     Float64,
    atr          Float64,
    vwap         Float64,
    returns      Array(Float64),
    bars_seen    UInt64,
    ingest_at    DateTime64(6, 'UTC'),
    closed_at    DateTime64(6, 'UTC'),
    indicator_at DateTime64(6, 'UTC'),
    inserted_at  DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(start)
ORDER BY (symbol, timeframe, start)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS signals
(
    signal_id      String,
    symbol         LowCardinality(String),
    timeframe      LowCardinality(String),
    start          DateTime64(6, 'UTC'),
    action         Enum8('HOLD' = 0, 'BUY' = 1, 'SELL' = 2),
    score          Float64,
    price          Float64,
    model_version  LowCardinality(String),
    inference_path Enum8('triton' = 1, 'fallback' = 2),
    ingest_at      DateTime64(6, 'UTC'),
    closed_at      DateTime64(6, 'UTC'),
    indicator_at   DateTime64(6, 'UTC'),
    inference_at   DateTime64(6, 'UTC'),
    publish_at     DateTime64(6, 'UTC'),
    inserted_at    DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(start)
ORDER BY (symbol, start, timeframe, model_version)
SETTINGS non_replicated_deduplication_window = 1000;

-- ---- OHLCV rollups from ticks: 1 minute, 1 hour, 1 day ------------------------------------------------
-- One materialized view per bucket size aggregates every insert block of `ticks` into partial states;
-- the views `ohlcv_1m`, `ohlcv_1h`, `ohlcv_1d` merge them (query those, not the *_state tables).
-- open/close: price of the first/last tick by (ts, seq); high/low: max/min price; volume: sum(size);
-- vwap: sum(price * size) / volume (nan when volume is 0, e.g. quotes); trades: number of ticks.
-- OHLC are duplicate-proof (argMin/argMax/max/min). volume/vwap/trades count every tick the view sees once:
-- an identical retried block is dropped (deduplication window on the state tables), and the sink never
-- inserts a tick twice (after an assignment it drops ticks at or below the highest stored seq of their
-- symbol). A day written otherwise is repaired by `stockpulse rollups rebuild --day D`
-- (ClickHouseHistory.rebuild_rollups(day), which recomputes the day's states from `ticks FINAL`).

CREATE TABLE IF NOT EXISTS ohlcv_1m_state
(
    symbol       LowCardinality(String),
    start        DateTime('UTC'),
    open_state   AggregateFunction(argMin, Float64, Tuple(DateTime64(6, 'UTC'), UInt64)),
    max_price    SimpleAggregateFunction(max, Float64),
    min_price    SimpleAggregateFunction(min, Float64),
    close_state  AggregateFunction(argMax, Float64, Tuple(DateTime64(6, 'UTC'), UInt64)),
    sum_size     SimpleAggregateFunction(sum, Float64),
    sum_notional SimpleAggregateFunction(sum, Float64),
    tick_count   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(start)
ORDER BY (symbol, start)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ohlcv_1h_state AS ohlcv_1m_state;

CREATE TABLE IF NOT EXISTS ohlcv_1d_state AS ohlcv_1m_state;

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1m_mv TO ohlcv_1m_state AS
SELECT
    symbol,
    toDateTime(toStartOfMinute(ts), 'UTC') AS start,
    argMinState(price, (ts, seq)) AS open_state,
    max(price) AS max_price,
    min(price) AS min_price,
    argMaxState(price, (ts, seq)) AS close_state,
    sum(size) AS sum_size,
    sum(price * size) AS sum_notional,
    count() AS tick_count
FROM ticks
GROUP BY symbol, start;

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1h_mv TO ohlcv_1h_state AS
SELECT
    symbol,
    toDateTime(toStartOfHour(ts), 'UTC') AS start,
    argMinState(price, (ts, seq)) AS open_state,
    max(price) AS max_price,
    min(price) AS min_price,
    argMaxState(price, (ts, seq)) AS close_state,
    sum(size) AS sum_size,
    sum(price * size) AS sum_notional,
    count() AS tick_count
FROM ticks
GROUP BY symbol, start;

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1d_mv TO ohlcv_1d_state AS
SELECT
    symbol,
    toDateTime(toStartOfDay(ts), 'UTC') AS start,
    argMinState(price, (ts, seq)) AS open_state,
    max(price) AS max_price,
    min(price) AS min_price,
    argMaxState(price, (ts, seq)) AS close_state,
    sum(size) AS sum_size,
    sum(price * size) AS sum_notional,
    count() AS tick_count
FROM ticks
GROUP BY symbol, start;

CREATE VIEW IF NOT EXISTS ohlcv_1m AS
SELECT
    symbol, start, argMinMerge(open_state) AS open, max(max_price) AS high, min(min_price) AS low,
    argMaxMerge(close_state) AS close, sum(sum_size) AS volume,
    if(volume > 0, sum(sum_notional) / volume, nan) AS vwap, sum(tick_count) AS trades
FROM ohlcv_1m_state
GROUP BY symbol, start;

CREATE VIEW IF NOT EXISTS ohlcv_1h AS
SELECT
    symbol, start, argMinMerge(open_state) AS open, max(max_price) AS high, min(min_price) AS low,
    argMaxMerge(close_state) AS close, sum(sum_size) AS volume,
    if(volume > 0, sum(sum_notional) / volume, nan) AS vwap, sum(tick_count) AS trades
FROM ohlcv_1h_state
GROUP BY symbol, start;

CREATE VIEW IF NOT EXISTS ohlcv_1d AS
SELECT
    symbol, start, argMinMerge(open_state) AS open, max(max_price) AS high, min(min_price) AS low,
    argMaxMerge(close_state) AS close, sum(sum_size) AS volume,
    if(volume > 0, sum(sum_notional) / volume, nan) AS vwap, sum(tick_count) AS trades
FROM ohlcv_1d_state
GROUP BY symbol, start;

-- ---- Daily signal statistics ----------------------------------------------------------------------------
-- Per symbol and UTC day: signals, counts by action, mean score. Duplicate-proof: the state keeps one entry
-- per signal (maxMap keyed by sipHash64(signal_id), values score and action code), so a signal written twice
-- is counted once. Query the view `signal_stats_1d`.
CREATE TABLE IF NOT EXISTS signal_stats_1d_state
(
    symbol      LowCardinality(String),
    day         Date,
    per_signal  AggregateFunction(maxMap, Array(UInt64), Array(Float64), Array(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (symbol, day)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS signal_stats_1d_mv TO signal_stats_1d_state AS
SELECT
    symbol,
    toDate(start, 'UTC') AS day,
    maxMapState([sipHash64(signal_id)], [score], [toFloat64(CAST(action, 'Int8'))]) AS per_signal
FROM signals
GROUP BY symbol, day;

CREATE VIEW IF NOT EXISTS signal_stats_1d AS
SELECT
    symbol,
    day,
    length(m.1) AS signals,
    arrayCount(a -> a = 1, m.3) AS buys,
    arrayCount(a -> a = 2, m.3) AS sells,
    arrayCount(a -> a = 0, m.3) AS holds,
    arrayAvg(m.2) AS mean_score,
    arrayMin(m.2) AS min_score,
    arrayMax(m.2) AS max_score
FROM
(
    SELECT symbol, day, maxMapMerge(per_signal) AS m
    FROM signal_stats_1d_state
    GROUP BY symbol, day
);

-- ---- Hourly OHLCV from 1m bars (chart reads of the API) -------------------------------------------------
-- Kept up to date on insert. Duplicate-safe: every aggregate is idempotent (argMin/argMax by start, max,
-- min, and per-minute maxMap of volume, volume*vwap and trades), so a 1m bar inserted twice (a retry, a
-- re-processed batch) is not counted twice. Query the `bars_1h` view.
CREATE TABLE IF NOT EXISTS bars_1h_state
(
    symbol  LowCardinality(String),
    hour    DateTime('UTC'),
    open    AggregateFunction(argMin, Float64, DateTime64(6, 'UTC')),
    high    SimpleAggregateFunction(max, Float64),
    low     SimpleAggregateFunction(min, Float64),
    close   AggregateFunction(argMax, Float64, DateTime64(6, 'UTC')),
    minutes AggregateFunction(maxMap, Array(UInt8), Array(Float64), Array(Float64), Array(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMMDD(hour)
ORDER BY (symbol, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h_mv TO bars_1h_state AS
SELECT
    symbol,
    toDateTime(toStartOfHour(start), 'UTC') AS hour,
    argMinState(open, start) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxState(close, start) AS close,
    maxMapState(
        [toUInt8(toMinute(start))],
        [volume],
        [if(volume > 0, volume * vwap, 0.)],
        [toFloat64(trades)]
    ) AS minutes
FROM bars
WHERE timeframe = '1m'
GROUP BY symbol, hour;

CREATE VIEW IF NOT EXISTS bars_1h AS
SELECT
    symbol,
    hour AS start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    arraySum(tupleElement(maxMapMerge(minutes), 2)) AS volume,
    if(volume > 0, arraySum(tupleElement(maxMapMerge(minutes), 3)) / volume, nan) AS vwap,
    toUInt64(arraySum(tupleElement(maxMapMerge(minutes), 4))) AS trades,
    length(tupleElement(maxMapMerge(minutes), 1)) AS bars
FROM bars_1h_state
GROUP BY symbol, hour;
