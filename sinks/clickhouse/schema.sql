-- StockPulse history in ClickHouse. Applied by sinks.clickhouse_history.apply_schema (idempotent: every
-- statement is IF NOT EXISTS). Names are unqualified: the client is bound to the target database
-- (default `stockpulse`), created first with CREATE DATABASE IF NOT EXISTS. ${ticks_ttl} is replaced by
-- a TTL clause (`TTL inserted_at + INTERVAL N DAY`) or by nothing when the tick TTL is off.
--
-- Idempotency: records carry deterministic ids, and every table is a ReplacingMergeTree whose sorting key
-- is the record's natural key, so a re-inserted record collapses into one row on merge; read with FINAL
-- (or uniqExact of the key) to see exactly one copy before merges happen. non_replicated_deduplication_window
-- drops a retried insert of an identical block at once. Stage timestamps (`*_at`) are DateTime64(6, 'UTC');
-- the adapter returns them as `*_us` integers like the Avro records.

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
PARTITION BY toYYYYMM(ts)
ORDER BY (symbol, seq)
${ticks_ttl}
SETTINGS non_replicated_deduplication_window = 100;

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
PARTITION BY toYYYYMM(start)
ORDER BY (symbol, timeframe, start)
SETTINGS non_replicated_deduplication_window = 100;

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
PARTITION BY toYYYYMM(start)
ORDER BY (symbol, timeframe, start)
SETTINGS non_replicated_deduplication_window = 100;

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
PARTITION BY toYYYYMM(start)
ORDER BY (symbol, timeframe, start, model_version)
SETTINGS non_replicated_deduplication_window = 100;

-- Hourly OHLCV from 1m bars, kept up to date on insert. Duplicate-safe: every aggregate is idempotent
-- (argMin/argMax by start, max, min, and per-minute maxMap of volume, volume*vwap and trades), so a 1m bar
-- inserted twice (a retry, a re-processed batch) is not counted twice. Query the `bars_1h` view.
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
PARTITION BY toYYYYMM(hour)
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
