"""Manual orders: idempotency, risk checks with the order service's limits, and the Avro ``Order`` message.

Flow of ``POST /api/orders`` (``OrderDesk.place``):

1. The idempotency key is the ``Idempotency-Key`` header, or a new UUID returned to the client. The order id
   is derived from it alone (``api-`` + UUIDv5), so a retried request can never create a second order, and
   the downstream stores (keyed by order id) keep one row whatever is re-sent.
2. The key is reserved in Redis (``SET NX``, ``P:api:order:{<order id>}``, ``api.idempotency_ttl_s``). A key
   that is already there answers the stored response (``replayed: true``), or 409 while the first request is
   still being processed or when the same key comes with a different order body.
3. Risk checks (:func:`processors.risk.pre_trade`, the checks the order stage applies to signal orders, limits
   from ``STOCKPULSE_ORDER__*``): kill switch (the setting, or engaged at run time with ``stockpulse
   kill-switch on``: read from Redis with each order), a reference price must exist (the newest stored bar
   close of the symbol), rate limit per symbol (accepted API orders per wall-clock minute, counted in Redis
   so that every API process shares it), position limit (the symbol's net position, the sum of its
   per-timeframe books after their newest paper fills, from Redis, plus this order), notional limit
   (position after x reference price).
4. The order (ACCEPTED, or REJECTED with the reason: the orders topic keeps both, as the order service does)
   is produced to the orders topic keyed by symbol, ``source="api"``, and the broker's acknowledgement is
   awaited. Accepted: 201; rejected: 422 with the reason. No acknowledgement: 503 and the key is released.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from processors.risk import engaged, pre_trade
from schemas.serde import AvroSerde
from sinks.base import SinkError
from streams.api.backends import Backends
from streams.api.errors import ApiError
from streams.api.metrics import API_ORDERS
from streams.api.models import OrderRequest
from streams.api.order_producer import BrokerUnavailable, OrderProducer
from streams.config import Settings
from streams.risk import KILL_SWITCH_SETTING, risk_limits

ORDER_NAMESPACE = uuid.UUID("5f1c7a52-3b0e-4d8e-9a51-6c2f0b7d4e10")
PENDING_TTL_S = 60
_REDIS_HINT = (
    "is the Redis Cluster up (`stockpulse stack status`)? Retry with the same Idempotency-Key: "
    "a retry can never "
    "create a second order"
)


def order_id_for(idempotency_key: str) -> str:
    """The order id of an idempotency key (deterministic).

    >>> order_id_for("abc") == order_id_for("abc") != order_id_for("abd")
    True
    >>> order_id_for("abc")[:4]
    'api-'
    """
    return "api-" + uuid.uuid5(ORDER_NAMESPACE, idempotency_key).hex


def fingerprint(req: OrderRequest) -> str:
    """A hash of the order body: the same key with a different body is a client error (409)."""
    return hashlib.sha256(json.dumps(req.model_dump(), sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Placed:
    """The HTTP status and body of a placed (or replayed) order."""

    status_code: int
    body: dict[str, Any]


class OrderDesk:
    """Places API orders (see the module docstring)."""

    def __init__(self, settings: Settings, backends: Backends, producer: OrderProducer) -> None:
        self.settings = settings
        self.backends = backends
        self.producer = producer
        self.limits = risk_limits(settings)  # the kill switch in Redis is read with each order
        self.serde = AvroSerde.for_record("Order")
        self.prefix = settings.redis.key_prefix

    def _idem_key(self, order_id: str) -> str:
        return f"{self.prefix}:api:order:{{{order_id}}}"

    def _rate_key(self, symbol: str, minute: int) -> str:
        return f"{self.prefix}:api:rate:{{{symbol}}}:{minute}"

    async def place(self, req: OrderRequest, idempotency_key: str | None) -> Placed:
        key = idempotency_key or uuid.uuid4().hex
        order_id = order_id_for(key)
        fp = fingerprint(req)
        redis = await self.backends.redis()
        client = redis.client
        idem = self._idem_key(order_id)
        try:
            reserved = await client.set(
                idem, json.dumps({"state": "pending", "fp": fp}), nx=True, ex=PENDING_TTL_S
            )
            if not reserved:
                return await self._replay(client, idem, key, fp)
            try:
                placed = await self._decide_and_send(req, key, order_id)
            except BaseException:
                await client.delete(idem)
                raise
            stored = {"state": "done", "fp": fp, "status_code": placed.status_code, "body": placed.body}
            await client.set(idem, json.dumps(stored), ex=self.settings.api.idempotency_ttl_s)
        except (RedisError, RedisClusterException) as exc:
            raise ApiError(
                503, f"redis is unavailable: {type(exc).__name__}: {exc}; check: {_REDIS_HINT}"
            ) from exc
        return placed

    async def _replay(self, client: Any, idem: str, key: str, fp: str) -> Placed:
        raw = await client.get(idem)
        if raw is None:  # expired between SET NX and GET: treat as in progress, the client retries
            raw = json.dumps({"state": "pending", "fp": fp})
        stored = json.loads(raw)
        if stored.get("fp") != fp:
            raise ApiError(
                409,
                f"Idempotency-Key {key!r} was already used for a different order; use a new key for a new "
                "order (the same key is only for retrying the same request)",
            )
        if stored.get("state") != "done":
            raise ApiError(
                409,
                f"an order with Idempotency-Key {key!r} is still being processed; retry in a second with the "
                "same key to get its result",
            )
        return Placed(int(stored["status_code"]), {**stored["body"], "replayed": True})

    async def _reference(self, symbol: str) -> tuple[float | None, float]:
        """(newest stored bar close or None, the symbol's net position: the sum of its books, one per signal
        timeframe, after their newest paper fills)."""
        redis = await self.backends.redis()
        newest: tuple[int, float] | None = None
        try:  # one round trip: the newest bar of every timeframe and the position, concurrently
            per_tf, pos = await asyncio.gather(
                asyncio.gather(*(redis.bars(symbol, tf, 1) for tf in self.settings.topics.timeframes)),
                redis.net_position(symbol, self.settings.signal.timeframes),
            )
            for bars in per_tf:
                if bars and (newest is None or int(bars[-1]["start_us"]) > newest[0]):
                    newest = (int(bars[-1]["start_us"]), float(bars[-1]["close"]))
        except SinkError as exc:
            raise ApiError(503, f"redis is unavailable: {exc.detail}; check: {_REDIS_HINT}") from exc
        return (newest[1] if newest else None), pos

    async def _decide_and_send(self, req: OrderRequest, key: str, order_id: str) -> Placed:
        price, position = await self._reference(req.symbol)
        signed = req.quantity if req.side == "BUY" else -req.quantity
        redis = await self.backends.redis()
        client = redis.client
        rate_key = self._rate_key(req.symbol, int(time.time() // 60))
        accepted = int(await client.get(rate_key) or 0)
        try:
            limits = engaged(self.limits, await redis.kill_switch(), KILL_SWITCH_SETTING)
        except SinkError as exc:
            raise ApiError(503, f"redis is unavailable: {exc.detail}; check: {_REDIS_HINT}") from exc
        after = position + signed
        reason = pre_trade(limits, req.symbol, after, price, accepted)
        if not reason:
            count = int(await client.incr(rate_key))
            if count == 1:
                await client.expire(rate_key, 120)
            if count > limits.max_orders_per_minute:  # another request took the last slot meanwhile
                await client.decr(rate_key)
                reason = pre_trade(limits, req.symbol, after, price, count - 1)
        now = int(time.time() * 1_000_000)
        order = {
            "order_id": order_id,
            "signal_id": "",
            "symbol": req.symbol,
            "side": req.side,
            "quantity": float(req.quantity),
            "ref_price": float(price) if price is not None else 0.0,
            "status": "REJECTED" if reason else "ACCEPTED",
            "reason": reason,
            "source": "api",
            "ts_us": now,
            "ingest_us": now,
            "signal_us": 0,
        }
        topic = self.settings.topics.orders
        try:
            await self.producer.send(topic, req.symbol.encode(), self.serde.encode(order))
        except BrokerUnavailable as exc:
            if not reason:
                await client.decr(rate_key)
            raise ApiError(503, f"the order was not placed: {exc}", order_id=order_id) from exc
        API_ORDERS.labels(order["status"]).inc()
        body: dict[str, Any] = {
            "order_id": order_id,
            "idempotency_key": key,
            "status": order["status"],
            "reason": reason,
            "symbol": req.symbol,
            "side": req.side,
            "quantity": order["quantity"],
            "ref_price": order["ref_price"],
            "ts_us": now,
            "topic": topic,
            "replayed": False,
        }
        if reason:
            body["error"] = f"order rejected by the risk checks: {reason}"
            return Placed(422, body)
        return Placed(201, body)
