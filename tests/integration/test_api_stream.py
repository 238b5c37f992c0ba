"""``POST /api/orders`` and ``WS /ws/stream`` against the real local stack: orders are read back from the
run's orders topic with confluent-kafka, and bars and signals produced to the run's topics must reach the
WebSocket client. Real FTX BTC-PERP 1m bars in Redis; the API under a real uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from confluent_kafka import Producer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.api_data import ApiServer, DataMissing, Placement, ftx_bars, seeded, signal_for
from processors.risk import kill_switch_reason
from schemas.serde import AvroSerde
from streams.api.orders import order_id_for
from streams.config import Settings
from streams.stores import redis_state
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration

LAYOUT = {
    "BTC-PERP": Placement(200, redis=200, signal=True),
    "XRP/USD": Placement(80, redis=80, offset=20_000),
    "ETH-CH": Placement(60, redis=60, offset=5_000),
}
RATE = 3  # accepted API orders per symbol and minute in this module
SNAPSHOT = 50

Env = tuple[Settings, dict[str, list[dict[str, Any]]], ApiServer]


@pytest.fixture(scope="module")
def env(stack_settings: Settings) -> Iterator[Env]:
    base = stack_settings.model_copy(
        update={
            "order": stack_settings.order.model_copy(update={"max_orders_per_minute": RATE}),
            "api": stack_settings.api.model_copy(update={"ws_snapshot_bars": SNAPSHOT}),
        }
    )
    try:
        with seeded(base, "apistream", LAYOUT) as (settings, data), ApiServer(settings) as server:
            yield settings, data, server
    except DataMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def client(env: Env) -> Any:
    async with httpx.AsyncClient(base_url=env[2].base_url, timeout=10) as c:
        yield c


def _orders(settings: Settings, wanted: set[str], timeout: float = 20.0) -> list[dict[str, Any]]:
    """The orders topic's records whose order id is in ``wanted``, once every one of them is there."""
    serde = AvroSerde.for_record("Order")

    def found(values: list[dict[str, Any]]) -> bool:
        return wanted <= {v["order_id"] for v in values}

    values = read_topic(settings, settings.topics.orders, found, timeout, serde.decode)
    return [v for v in values if v["order_id"] in wanted]


async def test_accepted_order_is_produced_and_a_retry_replays_it(client: httpx.AsyncClient, env: Env) -> None:
    settings, data, _ = env
    key = f"test-{uuid.uuid4()}"
    order = {"symbol": "BTC-PERP", "side": "BUY", "quantity": 0.5}
    first = await client.post("/api/orders", json=order, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["order_id"] == order_id_for(key) and body["idempotency_key"] == key
    assert body["status"] == "ACCEPTED" and body["reason"] == "" and body["replayed"] is False
    assert body["ref_price"] == data["BTC-PERP"][-1]["close"], "the newest stored close is the reference"
    assert body["topic"] == settings.topics.orders
    retry = await client.post("/api/orders", json=order, headers={"Idempotency-Key": key})
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == {**body, "replayed": True}
    other = await client.post(
        "/api/orders", json={**order, "quantity": 0.25}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 409 and "already used for a different order" in other.json()["error"]
    (record,) = await asyncio.to_thread(_orders, settings, {body["order_id"]})
    assert {
        k: record[k] for k in ("symbol", "side", "quantity", "ref_price", "status", "reason", "source")
    } == {
        "symbol": "BTC-PERP",
        "side": "BUY",
        "quantity": 0.5,
        "ref_price": body["ref_price"],
        "status": "ACCEPTED",
        "reason": "",
        "source": "api",
    }
    assert record["ts_us"] == body["ts_us"]


async def test_rejected_orders_say_why_and_are_produced_too(client: httpx.AsyncClient, env: Env) -> None:
    settings = env[0]
    big = await client.post("/api/orders", json={"symbol": "BTC-PERP", "side": "SELL", "quantity": 5})
    assert big.status_code == 422, big.text
    assert big.json()["status"] == "REJECTED" and big.json()["reason"] == "position limit: |-5| > 1"
    assert big.json()["error"] == "order rejected by the risk checks: position limit: |-5| > 1"
    assert len(big.json()["idempotency_key"]) == 32, "without a header a key is generated and returned"
    unknown = await client.post("/api/orders", json={"symbol": "NOPX-1", "side": "BUY", "quantity": 1})
    assert unknown.status_code == 422
    assert unknown.json()["reason"].startswith("no reference price for NOPX-1")
    records = await asyncio.to_thread(_orders, settings, {big.json()["order_id"], unknown.json()["order_id"]})
    by_symbol = {r["symbol"]: r for r in records}
    assert by_symbol["BTC-PERP"]["status"] == by_symbol["NOPX-1"]["status"] == "REJECTED"
    assert by_symbol["BTC-PERP"]["reason"] == big.json()["reason"]
    assert by_symbol["NOPX-1"]["reason"] == unknown.json()["reason"] and by_symbol["NOPX-1"]["ref_price"] == 0


async def test_rate_limit_per_symbol_and_minute(client: httpx.AsyncClient) -> None:
    if time.time() % 60 > 55:  # the counter is per wall-clock minute: start inside one
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    order = {"symbol": "XRP/USD", "side": "BUY", "quantity": 0.1}
    statuses = [(await client.post("/api/orders", json=order)).status_code for _ in range(RATE)]
    assert statuses == [201] * RATE
    over = await client.post("/api/orders", json=order)
    assert over.status_code == 422
    assert over.json()["reason"] == f"rate limit: {RATE} orders per minute for XRP/USD reached"


async def test_the_run_time_kill_switch_stops_api_orders_as_it_stops_signal_orders(
    client: httpx.AsyncClient, env: Env
) -> None:
    """`stockpulse kill-switch on` writes the switch to Redis; the API reads it with each order."""
    redis = await redis_state(env[0]).open()
    order = {"symbol": "ETH-CH", "side": "BUY", "quantity": 0.1}
    try:
        await redis.set_kill_switch("desk halt")
        halted = await client.post("/api/orders", json=order)
    finally:
        await redis.set_kill_switch(None)
        await redis.close()
    assert halted.status_code == 422, halted.text
    assert halted.json()["reason"] == kill_switch_reason("desk halt")  # the signal orders' wording
    resumed = await client.post("/api/orders", json=order)
    assert resumed.status_code == 201, resumed.text


@pytest.mark.parametrize(
    ("body", "headers", "text"),
    [
        ({"symbol": "BTC-PERP", "side": "HOLD", "quantity": 1}, {}, "body field 'side'"),
        ({"symbol": "BTC-PERP", "side": "BUY", "quantity": 0}, {}, "body field 'quantity'"),
        ({"symbol": "BTC-PERP", "side": "BUY", "quantity": "1e999"}, {}, "body field 'quantity'"),
        ({"symbol": "btc perp", "side": "BUY", "quantity": 1}, {}, "body field 'symbol'"),
        ({"symbol": "BTC-PERP", "side": "BUY", "quantity": 1, "px": 3}, {}, "body field 'px'"),
        ({"symbol": "BTC-PERP", "side": "BUY"}, {}, "body field 'quantity': is required but missing"),
        ({"symbol": "BTC-PERP", "side": "BUY", "quantity": 1}, {"Idempotency-Key": "a b"}, "Idempotency-Key"),
    ],
)
async def test_malformed_orders_get_400(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], text: str
) -> None:
    resp = await client.post("/api/orders", json=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert text in resp.json()["error"]


# ---- WebSocket --------------------------------------------------------------------------------------------


def _produce(settings: Settings, messages: list[tuple[str, str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 1})
    for topic, key, value in messages:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(10) == 0


async def _recv(ws: ClientConnection, timeout: float = 15.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


def _url(env: Env, query: str) -> str:
    return f"{env[2].ws_url}/ws/stream?{query}"


async def test_snapshot_then_live_bars_and_signals(env: Env) -> None:
    settings, data, _ = env
    batch = AvroSerde.for_record("BarBatch")
    async with connect(_url(env, f"symbols=BTC-PERP,{quote('XRP/USD', safe='')}&timeframe=1m")) as ws:
        snap = await _recv(ws)
        assert snap["type"] == "snapshot" and snap["timeframe"] == "1m"
        assert list(snap["symbols"]) == ["BTC-PERP", "XRP/USD"]
        btc = snap["symbols"]["BTC-PERP"]
        assert btc["source"] == "redis" and len(btc["bars"]) == SNAPSHOT
        assert [b["close"] for b in btc["bars"]] == [b["close"] for b in data["BTC-PERP"][-SNAPSHOT:]]
        assert btc["signal"]["start_us"] == data["BTC-PERP"][-1]["start_us"]
        assert snap["symbols"]["XRP/USD"]["signal"] is None

        # The next real bar of BTC-PERP and its signal, plus two messages this client must not get.
        new = ftx_bars(settings.data_dir, "BTC-PERP", 201)[-1]
        sig = signal_for(new, data["BTC-PERP"][-1]["close"])
        other = ftx_bars(settings.data_dir, "ETH-CH", 61, 5_000)[-1]
        one_s = {**new, "timeframe": "1s", "bar_id": new["bar_id"].replace("|1m|", "|1s|")}
        t = settings.topics
        await asyncio.to_thread(
            _produce,
            settings,
            [
                (t.bars("1m"), "ETH-CH", batch.encode({"bars": [other]})),
                (t.bars("1s"), "BTC-PERP", batch.encode({"bars": [one_s]})),
                (t.bars("1m"), "BTC-PERP", batch.encode({"bars": [new]})),
                (t.signals, "BTC-PERP", AvroSerde.for_record("Signal").encode(sig)),
            ],
        )
        received: list[dict[str, Any]] = []
        while {m["type"] for m in received} != {"bar", "signal"}:
            received.append(await _recv(ws))
        assert len(received) == 2, f"only the BTC-PERP 1m bar and signal were due, got {received}"
        got = {m["type"]: m for m in received}
        assert got["bar"]["bar"] == {k: new[k] for k in got["bar"]["bar"]}
        assert set(got["bar"]["bar"]) == {"symbol", "timeframe", "start_us", "open", "high", "low", "close",
                                          "volume", "vwap", "trades"}  # fmt: skip
        assert got["signal"]["signal"]["signal_id"] == sig["signal_id"]
        assert got["signal"]["signal"]["action"] == sig["action"]
        await ws.send(json.dumps({"type": "ping"}))
        assert await _recv(ws, 5) == {"type": "pong"}, "nothing else (ETH-CH, 1s bars) reached this client"


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("", "symbols: give at least one symbol"),
        ("symbols=btc", "'btc' is not a valid symbol"),
        ("symbols=BTC-PERP&timeframe=5m", "timeframe: '5m' is not stored; use one of 1s, 1m"),
        ("symbols=" + ",".join(f"S{i}" for i in range(60)), "at most 50 are accepted"),
    ],
)
async def test_bad_stream_queries_are_refused_with_the_reason(env: Env, query: str, text: str) -> None:
    async with connect(_url(env, query)) as ws:
        msg = await _recv(ws)
        assert msg["type"] == "error" and text in msg["error"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_healthz_reports_the_stream_clients(client: httpx.AsyncClient, env: Env) -> None:
    async with connect(_url(env, "symbols=BTC-PERP")) as ws:
        await _recv(ws)
        health = (await client.get("/healthz")).json()
        assert "1 clients" in health["checks"]["broker"]["detail"]
    assert "partitions assigned" in health["checks"]["broker"]["detail"]
