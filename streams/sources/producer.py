"""Produce tick arrays to ``ticks.raw`` as single-tick messages (Avro Tick or JSON), paced or full speed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from schemas.serde import AvroSerde
from streams import kafka
from streams.config import Settings


@dataclass
class ProduceResult:
    sent: int
    seconds: float
    by_symbol: dict[str, int]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float("inf")


class TickProducer:
    """Sends ticks keyed by symbol (murmur2 partitioner) in the chosen format."""

    def __init__(self, settings: Settings, fmt: str = "avro", topic: str | None = None) -> None:
        if fmt not in ("avro", "json"):
            raise ValueError(f"format {fmt!r} is not supported; use avro or json")
        self.settings = settings
        self.topic = topic or settings.topics.ticks_raw
        self.fmt = fmt
        self._serde = AvroSerde.for_record("Tick")
        self._eos = AvroSerde.for_record("EndOfStream")
        self._producer = kafka.producer(settings)

    def encode(self, symbol: str, ts_us: int, price: float, size: float) -> bytes:
        if self.fmt == "avro":
            return self._serde.encode(
                {"symbol": symbol, "ts_us": ts_us, "price": price, "size": size, "source": ""}
            )
        return json.dumps({"symbol": symbol, "ts_us": ts_us, "price": price, "size": size}).encode()

    def send_raw(self, value: bytes, key: bytes | None = None) -> None:
        self._produce(value, key)

    def _produce(self, value: bytes, key: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(self.topic, value, key=key)
                return
            except BufferError:
                self._producer.poll(0.01)

    def send(
        self,
        symbols: Sequence[str],
        symbol_index: np.ndarray,
        ts_us: np.ndarray,
        price: np.ndarray,
        size: np.ndarray,
        speed: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ProduceResult:
        """Send every tick; ``speed`` paces event time (1.0 = real time, None = as fast as possible)."""
        n = len(ts_us)
        keys = [s.encode() for s in symbols]
        by_symbol: dict[str, int] = {}
        counts = np.bincount(symbol_index, minlength=len(symbols))
        for i, s in enumerate(symbols):
            if counts[i]:
                by_symbol[s] = int(counts[i])
        ts_list = ts_us.tolist()
        px = price.tolist()
        sz = size.tolist()
        idx = symbol_index.tolist()
        t0 = time.perf_counter()
        ts0 = ts_list[0] if n else 0
        chunk = 2000
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            if speed is not None:
                due = t0 + (ts_list[start] - ts0) / 1e6 / speed
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            for i in range(start, stop):
                j = idx[i]
                self._produce(self.encode(symbols[j], ts_list[i], px[i], sz[i]), keys[j])
            self._producer.poll(0)
            if progress is not None:
                progress(stop - start)
        self._producer.flush(60)
        return ProduceResult(n, time.perf_counter() - t0, by_symbol)

    def end_of_stream(self, symbols: Sequence[str]) -> None:
        """Tell the pipeline these symbols' input has ended (after their last tick, e.g. at the end of a
        replay): their open bars close now instead of at their next tick. Flushes the producer."""
        now = time.time_ns() // 1000
        for s in symbols:
            if self.fmt == "avro":
                value = self._eos.encode({"symbol": s, "ts_us": now})
            else:
                value = json.dumps({"symbol": s, "end_of_stream": True}).encode()
            self._produce(value, s.encode())
        self.flush()

    def flush(self) -> None:
        self._producer.flush(60)
