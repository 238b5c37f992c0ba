"""Column layouts of the ClickHouse history tables and how records map onto them (record field -> column).

Stage timestamps go in as integer microseconds (clickhouse-connect writes Python ints into DateTime64(6) as
raw ticks) and come back as ``*_us`` integers through :func:`select_list`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BAR_COLUMNS",
    "KEYS",
    "SIGNAL_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "TICK_COLUMNS",
    "as_list",
    "select_list",
]

BAR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bar_id", "bar_id"),
    ("symbol", "symbol"),
    ("timeframe", "timeframe"),
    ("start", "start_us"),
    ("open", "open"),
    ("high", "high"),
    ("low", "low"),
    ("close", "close"),
    ("volume", "volume"),
    ("vwap", "vwap"),
    ("trades", "trades"),
    ("first_seq", "first_seq"),
    ("last_seq", "last_seq"),
    ("ingest_at", "ingest_us"),
    ("closed_at", "close_us"),
)
_INDICATORS = (
    "ema_fast",
    "ema_slow",
    "rsi",
    "stochrsi_k",
    "stochrsi_d",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
    "vwap",
)
SNAPSHOT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("snapshot_id", "snapshot_id"),
    ("symbol", "symbol"),
    ("timeframe", "timeframe"),
    ("start", "start_us"),
    ("close", "close"),
    ("volume", "volume"),
    *((f, f) for f in _INDICATORS),
    ("returns", "returns"),
    ("bars_seen", "bars_seen"),
    ("ingest_at", "ingest_us"),
    ("closed_at", "close_us"),
    ("indicator_at", "indicator_us"),
)
SIGNAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("signal_id", "signal_id"),
    ("symbol", "symbol"),
    ("timeframe", "timeframe"),
    ("start", "start_us"),
    ("action", "action"),
    ("score", "score"),
    ("price", "price"),
    ("model_version", "model_version"),
    ("inference_path", "inference_path"),
    ("ingest_at", "ingest_us"),
    ("closed_at", "close_us"),
    ("indicator_at", "indicator_us"),
    ("inference_at", "inference_us"),
    ("publish_at", "publish_us"),
)
TICK_COLUMNS = ("symbol", "ts", "price", "size", "seq")


def select_list(columns: Sequence[tuple[str, str]]) -> str:
    """Columns as the record fields: DateTime64 columns back to integer microseconds."""
    out = []
    for col, field in columns:
        if col == "start" or col.endswith("_at"):
            out.append(f"toUnixTimestamp64Micro({col}) AS {field}")
        else:
            out.append(col if col == field else f"{col} AS {field}")
    return ", ".join(out)


def as_list(values: Any) -> list[Any]:
    """Python values of a record's array (numpy arrays become lists of Python numbers)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


# (table, expression of the distinct natural key) for counts().
KEYS = {
    "ticks": "uniqExact(symbol, seq)",
    "bars": "uniqExact(bar_id)",
    "indicators": "uniqExact(snapshot_id)",
    "signals": "uniqExact(signal_id)",
}
