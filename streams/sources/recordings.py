"""Readers for the real market recordings in ``../shared/data`` (see its README).

Each reader returns a ``TickArrays`` (symbol, ts_us, price, size) in event-time order:
- quote CSVs (EUR/USD, TrueFX USD/JPY): one tick per quote at the mid price ``(bid + ask) / 2``, size 0;
- the Binance trades parquet: one tick per trade (price, quantity);
- 1-minute bar CSVs (FTX BTC-PERP, FXCM GBP/USD): one tick per bar at its close time and close price
  (timestamp + 1 minute - 1 us, so it falls in the bar's own minute), size = volume (0 when absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MINUTE_US = 60_000_000


@dataclass(frozen=True)
class TickArrays:
    symbol: str
    ts_us: np.ndarray
    price: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_us)


KNOWN = {
    "eurusd_2020-01-01_quotes.csv": "EURUSD",
    "truefx_usdjpy_2013-01_quotes.csv": "USDJPY",
    "binance_btcusdt_trades.parquet": "BTCUSDT",
    "ftx_btc-perp_2022-01_1m.csv": "BTC-PERP",
    "fxcm_gbpusd_2012_m1_bid.csv": "GBPUSD",
}


class RecordingError(ValueError):
    pass


def _to_us(ts: pd.Series) -> np.ndarray:
    parsed = pd.to_datetime(ts, utc=True, format="mixed")
    return np.asarray(parsed.astype("datetime64[us, UTC]").astype("int64"), dtype=np.int64)


def load_recording(path: Path, symbol: str | None = None) -> TickArrays:
    """Read one recording as ticks; ``symbol`` overrides the file's default symbol."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(f"{path} does not exist; the recordings live in ../shared/data (see its README)")
    name = path.name
    sym = symbol or KNOWN.get(name) or path.stem.split("_")[0].upper()
    if name.endswith(".parquet"):
        df = pd.read_parquet(path)
        ts = _to_us(df["timestamp"])
        price = df["price"].to_numpy(np.float64)
        size = df["quantity"].to_numpy(np.float64)
    elif "quotes" in name:
        first = path.open().readline()
        if first.startswith("timestamp"):
            df = pd.read_csv(path)
            ts = _to_us(df["timestamp"])
        else:
            df = pd.read_csv(
                path, header=None, names=["timestamp", "bid", "ask", "_"], dtype={"timestamp": str}
            )
            ts = _to_us(pd.Series(pd.to_datetime(df["timestamp"], format="%Y%m%d %H%M%S%f")))
        price = ((df["bid"] + df["ask"]) / 2).to_numpy(np.float64)
        size = np.zeros(len(df))
    elif "_1m" in name or "_m1" in name:
        df = pd.read_csv(path)
        ts = _to_us(df["timestamp"]) + MINUTE_US - 1
        price = df["close"].to_numpy(np.float64)
        size = df["volume"].to_numpy(np.float64) if "volume" in df else np.zeros(len(df))
    else:
        raise RecordingError(
            f"{name}: unknown recording kind; expected a quotes CSV, a trades parquet or a 1m bar CSV"
        )
    order = np.argsort(ts, kind="stable")
    return TickArrays(sym, ts[order], price[order], size[order])
