"""Risk checks and paper execution, per (symbol, signal timeframe) book, decided in event time (pure code).

Each (symbol, timeframe) is its own book (one strategy): its own position, pending signals, rate limit and
re-delivery guard, so the signals of several timeframes never interfere and the outcome does not depend on
how their topics interleave. A BUY signal targets a long position of ``order_quantity`` in its book, a SELL
signal a short one of the same size; the order is the difference to the book's position. The order is
executed on paper at the *next tick*: the first tick received in the first bar interval of its timeframe that
starts at or after the end of the signal's bar (so the book keeps one tick per bar interval, not every tick).
Everything is decided when that tick is known, so the outcome depends only on the two input streams'
contents, never on how the signal and tick topics interleave on arrival (for ticks that arrive in time order,
as the feed delivers them per symbol). Every BUY/SELL signal gets exactly one decision (the pre-trade checks
from kill switch to notional limit are :func:`processors.risk.pre_trade`, shared with the API's orders):

* no next tick: the symbol's input ended (end of stream), or, for a live symbol, the feed's watermark passed
  the bar end by ``max_staleness_us`` without a tick -> REJECTED (at the bar end, at the bar's close);
* stale price: the next tick came more than ``max_staleness_us`` after the bar end -> REJECTED;
* kill switch engaged -> REJECTED;
* rate limit: more than ``max_orders_per_minute`` accepted orders of the book within 60 s of event time
  -> REJECTED;
* position limit: ``|position after| > max_position`` -> REJECTED;
* notional limit: ``|position after| * price > max_notional`` -> REJECTED;
* already at the target position: nothing to trade -> REJECTED;
* otherwise ACCEPTED, and filled at the next tick's price; the book's position, average price and realized
  PnL follow.

Ids are deterministic: order id ``o-<signal id>``, fill id ``f-<signal id>``.

>>> book = OrderBook(RiskLimits(order_quantity=1.0), timeframes_us=(60,))
>>> book.on_signal({"signal_id": "s1", "symbol": "A", "action": "BUY", "start_us": 0}, 60)
([], [])
>>> book.pending_count()   # the bar ends at 60: waiting for the next tick
1
>>> orders, fills = book.on_ticks("A", [(50, 9.0, 1), (100, 10.0, 2)])
>>> [(o["status"], o["side"], o["ref_price"]) for o in orders], [(f["price"], f["position"]) for f in fills]
([('ACCEPTED', 'BUY', 10.0)], [(10.0, 1.0)])
>>> orders, fills = book.on_signal({"signal_id": "s2", "symbol": "A", "action": "SELL", "start_us": 60}, 60)
>>> book.on_ticks("A", [(130, 12.0, 3)])[1][0]["realized_pnl"]  # sold 2 at 12: long closed (+2), now short
2.0
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from processors.event_time import EventTimePolicy
from processors.risk import MINUTE_US, RiskLimits, pre_trade

__all__ = ["MINUTE_US", "OrderBook", "RiskLimits"]

_MAGIC = b"SPOB"
_VERSION = 2


@dataclass(slots=True)
class Position:
    quantity: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0

    def apply(self, signed_qty: float, price: float) -> None:
        """Apply a fill of ``signed_qty`` (+ buy, - sell) at ``price``: average price and realized PnL."""
        q = self.quantity
        if q == 0.0 or (q > 0) == (signed_qty > 0):
            new = q + signed_qty
            self.avg_price = (self.avg_price * abs(q) + price * abs(signed_qty)) / abs(new)
            self.quantity = new
            return
        closing = min(abs(q), abs(signed_qty))
        direction = 1.0 if q > 0 else -1.0
        self.realized_pnl += (price - self.avg_price) * closing * direction
        new = q + signed_qty
        if new == 0.0:
            self.avg_price = 0.0
        elif (new > 0) != (q > 0):
            self.avg_price = price  # flipped: the remainder opened at this price
        self.quantity = new


@dataclass(slots=True)
class _Book:
    """One (symbol, timeframe) strategy: its position, pending signals and accepted-order times."""

    position: Position = field(default_factory=Position)
    pending: deque[tuple[dict[str, Any], int]] = field(default_factory=deque)  # (signal, bar end)
    accepted_at: deque[int] = field(default_factory=deque)  # event times of accepted orders
    last_signal_start: int = -(2**62)

    def dump(self) -> tuple[Any, ...]:
        p = self.position
        return ((p.quantity, p.avg_price, p.realized_pnl), list(self.pending), list(self.accepted_at),
                self.last_signal_start)  # fmt: skip

    @classmethod
    def load(cls, data: tuple[Any, ...]) -> _Book:
        pos, pending, accepted, last_start = data
        return cls(Position(*pos), deque(pending), deque(accepted), last_start)


@dataclass(slots=True)
class _Symbol:
    opens: dict[int, deque[tuple[int, int, float]]] = field(default_factory=dict)  # tf -> (bucket, ts, price)
    last_seq: int = 0
    books: dict[int, _Book] = field(default_factory=dict)  # tf -> book
    live: bool = False  # its ticks follow the wall clock: the feed's watermarks expire its signals
    ended: bool = False  # its input ended (EndOfStream) after its last tick


class OrderBook:
    """Recent ticks of the symbols of one partition and their (symbol, timeframe) books."""

    MAX_BUFFERED_BARS = 100_000

    def __init__(
        self,
        limits: RiskLimits | None = None,
        timeframes_us: tuple[int, ...] = (MINUTE_US,),
        policy: EventTimePolicy | None = None,
    ) -> None:
        self.limits = limits or RiskLimits()
        self.timeframes_us = timeframes_us
        self.policy = policy or EventTimePolicy()
        self.symbols: dict[str, _Symbol] = {}

    def _sym(self, symbol: str) -> _Symbol:
        s = self.symbols.get(symbol)
        if s is None:
            s = self.symbols[symbol] = _Symbol()
            s.opens = {tf: deque() for tf in self.timeframes_us}
            s.books = {tf: _Book() for tf in self.timeframes_us}
        return s

    def pending_count(self) -> int:
        return sum(len(b.pending) for s in self.symbols.values() for b in s.books.values())

    def position(self, symbol: str, timeframe_us: int) -> float:
        """The position of one book (0 when it has none)."""
        s = self.symbols.get(symbol)
        return s.books[timeframe_us].position.quantity if s is not None and timeframe_us in s.books else 0.0

    def on_ticks(
        self, symbol: str, ticks: list[tuple[int, float, int]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Add ticks (ts_us, price, seq) of a symbol in feed order; resolve the orders they complete."""
        s = self._sym(symbol)
        for ts, price, seq in ticks:
            if seq <= s.last_seq:
                continue  # re-delivered tick
            s.last_seq = seq
            s.ended = False
            for tf, opens in s.opens.items():
                bucket = ts - ts % tf
                if not opens or bucket > opens[-1][0]:
                    opens.append((bucket, ts, price))
                    if len(opens) > self.MAX_BUFFERED_BARS:
                        opens.popleft()
        return self._resolve(symbol, s)

    def on_tick_batch(
        self,
        symbols: Sequence[str],
        symbol_index: npt.ArrayLike,
        ts_us: npt.ArrayLike,
        price: npt.ArrayLike,
        seq: npt.ArrayLike,
        ingest_us: int | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """:meth:`on_ticks` for a whole columnar TickBatch at once (numpy per symbol, not Python per tick):
        the same bucket opens, the same orders and fills, in symbol order of first appearance. With the
        batch's ``ingest_us`` each symbol's liveness is decided as the price service does."""
        idx = np.asarray(symbol_index, dtype=np.int64)
        if not idx.size:
            return [], []
        ts = np.asarray(ts_us, dtype=np.int64)
        px = np.asarray(price, dtype=np.float64)
        sq = np.asarray(seq, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        bounds = np.flatnonzero(np.diff(idx[order])) + 1
        orders: list[dict[str, Any]] = []
        fills: list[dict[str, Any]] = []
        groups = np.split(order, bounds)
        for rows in sorted(groups, key=lambda r: int(r[0])):  # symbols in order of first appearance
            name = symbols[int(idx[rows[0]])]
            s = self._sym(name)
            fresh = rows[sq[rows] > s.last_seq]
            if fresh.size and not bool(np.all(np.diff(sq[fresh]) > 0)):
                o, f = self.on_ticks(
                    name, list(zip(ts[rows].tolist(), px[rows].tolist(), sq[rows].tolist(), strict=True))
                )
                orders += o
                fills += f
                continue  # out-of-order sequence numbers: the per-tick path keeps its exact semantics
            if fresh.size:
                s.last_seq = int(sq[fresh[-1]])
                t, p = ts[fresh], px[fresh]
                s.ended = False
                if ingest_us is not None:
                    s.live = self.policy.is_live(int(t.max()), ingest_us)
                for tf, opens in s.opens.items():
                    buckets = t - t % tf
                    last = opens[-1][0] if opens else np.iinfo(np.int64).min
                    running = np.maximum.accumulate(np.concatenate(([last], buckets)))
                    new = np.flatnonzero(buckets > running[:-1])
                    for j in new.tolist():
                        opens.append((int(buckets[j]), int(t[j]), float(p[j])))
                    while len(opens) > self.MAX_BUFFERED_BARS:
                        opens.popleft()
            if any(b.pending for b in s.books.values()):
                o, f = self._resolve(name, s)
                orders += o
                fills += f
        return orders, fills

    def on_signal(
        self, signal: dict[str, Any], timeframe_us: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Queue a BUY/SELL signal in its (symbol, timeframe) book (HOLD only advances time); resolve what
        the buffered ticks allow. A signal for a bar at or before the book's last one is a re-delivery."""
        if timeframe_us not in self.timeframes_us:
            raise ValueError(
                f"signal timeframe of {timeframe_us} us is not one of the order book's {self.timeframes_us}; "
                "add it to STOCKPULSE_SIGNAL__TIMEFRAMES"
            )
        s = self._sym(signal["symbol"])
        book = s.books[timeframe_us]
        if signal["start_us"] <= book.last_signal_start:
            return [], []  # re-delivered signal
        book.last_signal_start = signal["start_us"]
        bar_end = signal["start_us"] + timeframe_us
        if signal["action"] in ("BUY", "SELL"):
            book.pending.append((signal, bar_end))
        elif not book.pending:
            self._trim(s, bar_end, timeframe_us)
        return self._resolve(signal["symbol"], s)

    def on_progress(
        self, watermark_us: int = 0, closed_symbols: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Event-time progress without a tick: the input of ``closed_symbols`` ended, so their pending
        signals (and later ones with no tick after their bar) are rejected; a watermark rejects the pending
        signals of live symbols whose bar ended more than ``max_staleness_us`` before it (no tick came)."""
        orders: list[dict[str, Any]] = []
        fills: list[dict[str, Any]] = []
        for name in closed_symbols:
            s = self._sym(name)
            s.ended = True
            o, f = self._resolve(name, s)
            orders += o
            fills += f
        if watermark_us:
            limit = self.limits.max_staleness_us
            for name, s in self.symbols.items():
                if s.live and any(b.pending for b in s.books.values()):
                    o, f = self._resolve(name, s, stale_before=watermark_us - limit)
                    orders += o
                    fills += f
        return orders, fills

    @staticmethod
    def _trim(s: _Symbol, before_ts: int, timeframe_us: int) -> None:
        """Drop bar opens that no later signal can use (signals of a book come in bar order)."""
        opens = s.opens[timeframe_us]
        while opens and opens[0][0] < before_ts:
            opens.popleft()

    def _resolve(
        self, symbol: str, s: _Symbol, stale_before: int | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Decide the pending signals whose next tick is known, in bar order per book; with no next tick:
        when the symbol's input ended, or when the bar ended before ``stale_before`` (a watermark)."""
        orders: list[dict[str, Any]] = []
        fills: list[dict[str, Any]] = []
        lim_s = self.limits.max_staleness_us / 1e6
        for tf, book in s.books.items():
            opens = s.opens[tf]
            while book.pending:
                signal, bar_end = book.pending[0]
                tick = next(((ts, price) for bucket, ts, price in opens if bucket >= bar_end), None)
                why = ""
                if tick is None and s.ended:
                    why = f"no tick after the bar end: the input of {symbol} ended (end of stream)"
                elif tick is None and stale_before is not None and bar_end < stale_before:
                    why = f"stale price: no tick of {symbol} within {lim_s:g}s after the bar end"
                elif tick is None:
                    break
                book.pending.popleft()
                order, fill = self._execute(symbol, book, signal, bar_end, tick, why)
                orders.append(order)
                if fill is not None:
                    fills.append(fill)
                self._trim(s, bar_end, tf)
        return orders, fills

    def _execute(
        self,
        symbol: str,
        book: _Book,
        signal: dict[str, Any],
        bar_end: int,
        tick: tuple[int, float] | None,
        no_tick: str = "",
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Decide the signal at its next ``tick``; with none (``no_tick`` says why) it is rejected, at its bar
        end and its bar's close."""
        lim = self.limits
        ts, price = tick or (bar_end, float(signal.get("price", 0.0)))
        target = lim.order_quantity if signal["action"] == "BUY" else -lim.order_quantity
        qty = target - book.position.quantity
        side = "BUY" if qty > 0 else "SELL"
        while book.accepted_at and book.accepted_at[0] <= ts - MINUTE_US:
            book.accepted_at.popleft()
        timeframe = str(signal.get("timeframe", ""))
        reason = ""
        if no_tick:
            reason = no_tick
        elif qty == 0.0:
            reason = f"already at the target position {target:g}: nothing to trade"
        elif ts - bar_end > lim.max_staleness_us:
            reason = (
                f"stale price: the next tick came {(ts - bar_end) / 1e6:.1f}s after the bar end "
                f"(limit {lim.max_staleness_us / 1e6:g}s)"
            )
        else:
            reason = pre_trade(lim, f"{symbol} {timeframe}", target, price, len(book.accepted_at))
        base_id = signal["signal_id"]
        order = {
            "order_id": f"o-{base_id}",
            "signal_id": base_id,
            "symbol": symbol,
            "side": side,
            "quantity": abs(qty),
            "ref_price": price,
            "status": "REJECTED" if reason else "ACCEPTED",
            "reason": reason,
            "source": "signal",
            "ts_us": ts,
            "ingest_us": int(signal.get("ingest_us", 0)),
            "signal_us": int(signal.get("publish_us", 0)),
            "timeframe": timeframe,
        }
        if reason:
            return order, None
        book.accepted_at.append(ts)
        book.position.apply(qty, price)
        fill = {
            "fill_id": f"f-{base_id}",
            "order_id": order["order_id"],
            "symbol": symbol,
            "side": side,
            "quantity": abs(qty),
            "price": price,
            "ts_us": ts,
            "position": book.position.quantity,
            "avg_price": book.position.avg_price,
            "realized_pnl": book.position.realized_pnl,
            "timeframe": timeframe,
        }
        return order, fill

    def to_bytes(self) -> bytes:
        """Checkpoint bytes (a versioned pickle of plain containers: our own data, never untrusted input)."""
        payload = {
            name: (
                s.last_seq,
                {tf: list(q) for tf, q in s.opens.items()},
                {tf: book.dump() for tf, book in s.books.items()},
                (s.live, s.ended),
            )
            for name, s in self.symbols.items()
        }
        return _MAGIC + _VERSION.to_bytes(2, "little") + pickle.dumps(payload, protocol=5)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        limits: RiskLimits | None = None,
        timeframes_us: tuple[int, ...] = (MINUTE_US,),
        policy: EventTimePolicy | None = None,
    ) -> OrderBook:
        """Rebuild from :meth:`to_bytes` (this version, or version 1 with one book per symbol: its position
        goes to the book of the shortest timeframe, its pending signals to their own timeframe's book)."""
        if data[:4] != _MAGIC:
            raise ValueError("not an order-book checkpoint (bad magic)")
        version = int.from_bytes(data[4:6], "little")
        if version not in (1, _VERSION):
            raise ValueError(f"unsupported order-book checkpoint version {version} (reads 1 and {_VERSION})")
        book = cls(limits, timeframes_us, policy)
        for name, saved in pickle.loads(data[6:]).items():
            sym = book._sym(name)
            if version == 1:
                pos, opens, last_seq, pending, accepted, last_start = saved
                books: dict[int, tuple[Any, ...]] = {
                    tf: ((0.0, 0.0, 0.0), [], [], last_start) for tf in timeframes_us
                }
                first = min(timeframes_us)
                books[first] = (pos, [], accepted, last_start)
                for signal, bar_end, tf in pending:
                    books.setdefault(tf, ((0.0, 0.0, 0.0), [], [], last_start))[1].append((signal, bar_end))
            else:
                last_seq, opens, books, (sym.live, sym.ended) = saved
            sym.last_seq = last_seq
            sym.opens.update({tf: deque(q) for tf, q in opens.items()})
            sym.books.update({tf: _Book.load(b) for tf, b in books.items()})
        return book
