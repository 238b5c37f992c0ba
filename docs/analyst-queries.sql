-- Example analyst queries over the StockPulse history in ClickHouse.
--
-- Run them while the pipeline runs (locally the queries go to the process that owns the embedded engine;
-- in production to the ClickHouse server; the command is the same):
--
--     stockpulse sql --file docs/analyst-queries.sql            # every query below, one table each
--     stockpulse sql "SELECT count() FROM ticks FINAL"           # one query
--     stockpulse sql --format csv "SELECT * FROM ohlcv_1h"       # CSV / TSV / JSON lines for tools
--
-- Tables: ticks, bars (1s and 1m, from the price service), indicators, signals; rollups from ticks:
-- ohlcv_1m, ohlcv_1h, ohlcv_1d; daily signal statistics: signal_stats_1d. Read the ReplacingMergeTree
-- tables with FINAL to see exactly one copy of each record before background merges happen.
-- The test suite runs every statement of this file against a real pipeline run (tests/integration).

-- 1. How much history is stored per symbol: ticks, first and last tick, days covered.
SELECT symbol, count() AS ticks, min(ts) AS first_tick, max(ts) AS last_tick, uniqExact(toDate(ts)) AS days
FROM ticks FINAL
GROUP BY symbol
ORDER BY ticks DESC;

-- 2. Hourly OHLCV and VWAP of every symbol, rolled up from ticks by a materialized view.
SELECT symbol, start, open, high, low, close, volume, vwap, trades
FROM ohlcv_1h
ORDER BY symbol, start
LIMIT 48 BY symbol;

-- 3. The newest 1-minute bars next to their indicators (one row per bar).
SELECT b.symbol, b.start, b.close, round(i.ema_fast, 6) AS ema_fast, round(i.rsi, 2) AS rsi,
       round(i.macd_hist, 6) AS macd_hist, round(i.atr, 6) AS atr
FROM bars AS b FINAL
INNER JOIN indicators AS i FINAL ON i.symbol = b.symbol AND i.timeframe = b.timeframe AND i.start = b.start
WHERE b.timeframe = '1m'
ORDER BY b.start DESC
LIMIT 20;

-- 4. Realized volatility per symbol and day: standard deviation of 1-minute log returns, annualized
--    with 1,440 minutes a day and 365 days a year (crypto trades every day; scale FX by 252 instead).
SELECT symbol, day, count() AS minutes, round(stddevSamp(r) * sqrt(1440 * 365), 4) AS annualized_vol
FROM
(
    SELECT symbol, toDate(start) AS day, log(close / lagInFrame(close) OVER w) AS r
    FROM bars FINAL
    WHERE timeframe = '1m'
    WINDOW w AS (PARTITION BY symbol ORDER BY start ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
WHERE isFinite(r) AND r != 0
GROUP BY symbol, day
ORDER BY symbol, day;

-- 5. Signals per symbol and day by action, with the mean model score (materialized view).
SELECT symbol, day, signals, buys, sells, holds, round(mean_score, 4) AS mean_score
FROM signal_stats_1d
ORDER BY symbol, day;

-- 6. How often each model version answered from Triton vs the in-process fallback.
SELECT model_version, inference_path, count() AS signals
FROM signals FINAL
GROUP BY model_version, inference_path
ORDER BY model_version, inference_path;

-- 7. Stage latencies of the signals, from the timestamps carried in the messages (milliseconds).
SELECT
    quantileExact(0.5)(dateDiff('microsecond', ingest_at, publish_at)) / 1000 AS tick_to_signal_p50_ms,
    quantileExact(0.99)(dateDiff('microsecond', ingest_at, publish_at)) / 1000 AS tick_to_signal_p99_ms,
    quantileExact(0.5)(dateDiff('microsecond', indicator_at, inference_at)) / 1000 AS inference_p50_ms
FROM signals FINAL;

-- 8. Forward returns after BUY and SELL signals: did the close k = 5 bars later move the signalled way?
SELECT s.symbol, toString(s.action) AS action, count() AS signals,
       round(avg(if(s.action = 'BUY', 1, -1) * (f.close / s.price - 1)) * 10000, 2) AS mean_edge_bps,
       round(avg(if(s.action = 'BUY', f.close > s.price, f.close < s.price)), 3) AS hit_rate
FROM signals AS s FINAL
INNER JOIN bars AS f FINAL
    ON f.symbol = s.symbol AND f.timeframe = s.timeframe AND f.start = s.start + toIntervalMinute(5)
WHERE s.action != 'HOLD'
GROUP BY s.symbol, action
ORDER BY s.symbol, action;
