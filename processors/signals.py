"""Signal decisions with hysteresis, per symbol and timeframe (pure code).

The model's probability ``p`` that the close k bars ahead is higher drives a regime per symbol: it turns long
(action BUY) when ``p >= buy_above`` and short (action SELL) when ``p <= sell_below``; between the two
thresholds the regime holds and the action is HOLD. A probability wobbling around one threshold therefore
cannot flap BUY/SELL/BUY: the regime flips only when ``p`` crosses the *other* threshold.

Snapshots older than or equal to the last decided bar are duplicates (re-delivery after a restart) and are
not decided again.

>>> state = SignalState(SignalPolicy(buy_above=0.55, sell_below=0.45))
>>> [state.decide("A", "1m", t, p) for t, p in enumerate([0.5, 0.56, 0.54, 0.56, 0.50, 0.44, 0.46, 0.44])]
['HOLD', 'BUY', 'HOLD', 'HOLD', 'HOLD', 'SELL', 'HOLD', 'HOLD']
>>> state.decide("A", "1m", 3, 0.9) is None  # an old bar again: duplicate
True
>>> SignalState.from_bytes(state.to_bytes()).decide("A", "1m", 8, 0.6)
'BUY'
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

NEUTRAL, LONG, SHORT = 0, 1, -1
_MAGIC = b"SPSG"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    buy_above: float = 0.53
    sell_below: float = 0.47

    def __post_init__(self) -> None:
        if not 0.0 <= self.sell_below < self.buy_above <= 1.0:
            raise ValueError(
                f"need 0 <= sell_below < buy_above <= 1, got sell_below={self.sell_below}, "
                f"buy_above={self.buy_above}"
            )


def signal_id(symbol: str, timeframe: str, start_us: int, model_version: str) -> str:
    """Deterministic id: the same bar and model give the same id after any re-processing.

    >>> signal_id("BTCUSDT", "1m", 0, "v1") == signal_id("BTCUSDT", "1m", 0, "v1")
    True
    """
    raw = f"{symbol}|{timeframe}|{start_us}|{model_version}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


class SignalState:
    """Regime and last decided bar per (symbol, timeframe); serializes for checkpoints."""

    __slots__ = ("policy", "series")

    def __init__(self, policy: SignalPolicy | None = None) -> None:
        self.policy = policy or SignalPolicy()
        self.series: dict[tuple[str, str], tuple[int, int]] = {}  # -> (regime, last start_us)

    def seen(self, symbol: str, timeframe: str, start_us: int) -> bool:
        last = self.series.get((symbol, timeframe))
        return last is not None and start_us <= last[1]

    def skip(self, symbol: str, timeframe: str, start_us: int) -> None:
        """Record a bar that gets no decision (e.g. still warming up) so its re-delivery is a duplicate."""
        regime, last = self.series.get((symbol, timeframe), (NEUTRAL, -(2**62)))
        if start_us > last:
            self.series[(symbol, timeframe)] = (regime, start_us)

    def decide(self, symbol: str, timeframe: str, start_us: int, probability: float) -> str | None:
        """BUY, SELL or HOLD for this bar; None when the bar was already decided."""
        key = (symbol, timeframe)
        regime, last = self.series.get(key, (NEUTRAL, -(2**62)))
        if start_us <= last:
            return None
        action = "HOLD"
        if probability >= self.policy.buy_above and regime != LONG:
            regime, action = LONG, "BUY"
        elif probability <= self.policy.sell_below and regime != SHORT:
            regime, action = SHORT, "SELL"
        self.series[key] = (regime, start_us)
        return action

    def to_bytes(self) -> bytes:
        parts = [_MAGIC, struct.pack("<HI", _VERSION, len(self.series))]
        for (sym, tf), (regime, last) in self.series.items():
            s, t = sym.encode(), tf.encode()
            parts.append(struct.pack("<HHbq", len(s), len(t), regime, last) + s + t)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes, policy: SignalPolicy | None = None) -> SignalState:
        if data[:4] != _MAGIC:
            raise ValueError("not a signal-state checkpoint (bad magic)")
        version, n = struct.unpack_from("<HI", data, 4)
        if version != _VERSION:
            raise ValueError(f"unsupported signal-state checkpoint version {version} (reads {_VERSION})")
        pos = 10
        state = cls(policy)
        for _ in range(n):
            ls, lt, regime, last = struct.unpack_from("<HHbq", data, pos)
            pos += 13
            sym = data[pos : pos + ls].decode()
            pos += ls
            tf = data[pos : pos + lt].decode()
            pos += lt
            state.series[(sym, tf)] = (regime, last)
        return state
