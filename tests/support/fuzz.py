"""Generated bad messages for ``ticks.raw``, each with the dead-letter reason the pipeline must give it.

Seeded (numpy), so a failing run can be replayed. Kinds: corrupt bytes, empty messages, truncated Avro,
Avro with trailing bytes, unknown schema ids, valid Avro of another record (a Bar on the ticks topic),
Avro ticks with NaN / +-inf / negative / zero / 1e308 prices, negative or NaN sizes, timestamps in 1970 and
2100, a ~900 KB symbol, malformed symbols, unknown symbols (an allowlist is configured), broken JSON, JSON
without the required fields, JSON of the wrong shape, and out-of-order ticks (valid for the feed, older
than the open bar at the price service: dead-lettered there as ``late_tick``, once per timeframe).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from schemas.serde import AvroSerde

LATE_SYMBOL = "FUZZLATE"
UNKNOWN_SYMBOL = "ZZFUZZ"
BASE_TS = 1_610_064_000_000_000  # 2021-01-08, inside the replayed recordings' range


@dataclass
class BadTraffic:
    """Messages (value, key) in send order and the dead letters they must produce (reason -> count)."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    expected: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, value: bytes, reason: str, key: bytes = b"EURUSD", letters: int = 1) -> None:
        self.messages.append((value, key))
        self.expected[reason] += letters
        self.kinds[kind] += 1


def _tick(serde: AvroSerde, symbol: str, ts: int, price: float, size: float) -> bytes:
    return serde.encode({"symbol": symbol, "ts_us": ts, "price": price, "size": size, "source": "fuzz"})


def bad_traffic(n: int, seed: int, timeframes: int = 2) -> BadTraffic:
    """``n`` bad messages (plus the valid first tick of every late pair, which is not bad)."""
    rng = np.random.default_rng(seed)
    tick = AvroSerde.for_record("Tick")
    bar = AvroSerde.for_record("Bar")
    out = BadTraffic()
    good = _tick(tick, "EURUSD", BASE_TS, 1.1, 1.0)
    prices = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e308]
    kinds = 16
    late_pairs = 0
    for i in range(n):
        k = i % kinds
        ts = BASE_TS + int(rng.integers(0, 10**9))
        if k == 0:
            raw = rng.integers(1, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
            if raw[:1] in (b"\x00", b"{"):
                raw = b"\x01" + raw[1:]
            out.add("corrupt bytes", raw, "corrupt_payload")
        elif k == 1:
            out.add("empty message", b"", "corrupt_payload")
        elif k == 2:
            cut = int(rng.integers(6, len(good)))
            out.add("truncated Avro", good[:cut], "corrupt_payload")
        elif k == 3:
            out.add("trailing bytes", good + rng.bytes(int(rng.integers(1, 9))), "corrupt_payload")
        elif k == 4:
            sid = int(rng.integers(100_000, 2**31 - 1))
            out.add("unknown schema id", b"\x00" + sid.to_bytes(4, "big") + good[5:], "unknown_schema_id")
        elif k == 5:
            record = {"bar_id": "x", "symbol": "EURUSD", "timeframe": "1s", "start_us": ts, "open": 1.0,
                      "high": 1.0, "low": 1.0, "close": 1.0, "volume": 0.0, "vwap": 1.0, "trades": 1,
                      "first_seq": 1, "last_seq": 1, "ingest_us": 0, "close_us": 0}  # fmt: skip
            out.add("a Bar on ticks.raw", bar.encode(record), "wrong_schema")
        elif k == 6:
            price = prices[int(rng.integers(0, len(prices)))]
            out.add(f"price {price}", _tick(tick, "EURUSD", ts, price, 1.0), "invalid_price")
        elif k == 7:
            size = [-1.0, math.nan, -math.inf][int(rng.integers(0, 3))]
            out.add(f"size {size}", _tick(tick, "EURUSD", ts, 1.1, size), "invalid_size")
        elif k == 8:
            when = [0, 86_400_000_000, 4_102_444_800_000_000, 4_200_000_000_000_000][int(rng.integers(0, 4))]
            out.add("timestamp 1970/2100", _tick(tick, "EURUSD", when, 1.1, 1.0), "invalid_timestamp")
        elif k == 9 and i < kinds * 5:  # a few ~900 KB messages (the broker's default limit is 1 MB)
            huge = "A" * 900_000
            out.add("900 KB symbol", _tick(tick, huge, ts, 1.1, 1.0), "invalid_symbol", key=b"HUGE")
        elif k in (9, 10):
            sym = ["eurusd", "EUR USD", "-X", "BTC$", "", "A" * 40][int(rng.integers(0, 6))]
            out.add("malformed symbol", _tick(tick, sym, ts, 1.1, 1.0), "invalid_symbol")
        elif k == 11:
            out.add("unknown symbol", _tick(tick, UNKNOWN_SYMBOL, ts, 1.1, 1.0), "unknown_symbol")
        elif k == 12:
            text = ['{"symbol": "EURUSD", "ts_us": ', "{{{", '{"a": 1,,}'][int(rng.integers(0, 3))]
            out.add("broken JSON", text.encode(), "corrupt_payload")
        elif k == 13:
            body = [{"symbol": "EURUSD"}, {"price": 1.0, "ts_us": ts}, {}][int(rng.integers(0, 3))]
            out.add("JSON without fields", json.dumps(body).encode(), "missing_field")
        elif k == 14:
            body = {"symbol": "EURUSD", "ts_us": ts, "price": ["1.1", None, True][int(rng.integers(0, 3))]}
            out.add("JSON with a wrong type", json.dumps(body).encode(), "invalid_price")
        else:  # an out-of-order pair: a tick at t, then one a minute older (late at the price service)
            t = BASE_TS + 3_600_000_000 * (1 + late_pairs)
            late_pairs += 1
            out.messages.append((_tick(tick, LATE_SYMBOL, t, 50.0, 1.0), LATE_SYMBOL.encode()))
            out.add("out-of-order tick", _tick(tick, LATE_SYMBOL, t - 61_000_000, 50.0, 1.0), "late_tick",
                    key=LATE_SYMBOL.encode(), letters=timeframes)  # fmt: skip
    return out
