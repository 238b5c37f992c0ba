"""The API's REST endpoints against the real local stack, over real connections (uvicorn on a loopback port).

The namespace of this module (its own Redis prefix, ClickHouse database, PostgreSQL schema and topics) holds
real FTX BTC-PERP 1m bars written through the sink adapters, placed so that each store answers for one
symbol: BTC-PERP in all three (Redis with only the newest 400), ETH-CH in ClickHouse and PostgreSQL,
SOL-PG in PostgreSQL only (read from the replica), XRP/USD in Redis only.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.api_data import ApiServer, DataMissing, Placement, closes, ftx_bars, seeded
from processors import indicators as ind
from sinks.redis_state import RedisHotState
from streams.config import Settings
from streams.stores import redis_config

pytestmark = pytest.mark.integration

BAR_KEYS = ("start_us", "open", "high", "low", "close", "volume", "vwap", "trades")
LAYOUT = {
    "BTC-PERP": Placement(600, redis=400, clickhouse=True, postgres=True, signal=True),
    "ETH-CH": Placement(300, clickhouse=True, postgres=True, offset=5_000),
    "SOL-PG": Placement(200, postgres=True, offset=10_000),
    "XRP/USD": Placement(120, redis=120, offset=20_000, signal=True),
    "ADA-USD": Placement(100, redis=100, offset=30_000),
}

Data = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def env(stack_settings: Settings) -> Iterator[tuple[Settings, Data, ApiServer]]:
    try:
        with seeded(stack_settings, "apitest", LAYOUT) as (settings, data), ApiServer(settings) as server:
            yield settings, data, server
    except DataMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def client(env: tuple[Settings, Data, ApiServer]) -> Any:
    async with httpx.AsyncClient(base_url=env[2].base_url, timeout=10) as c:
        yield c


def _bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in BAR_KEYS} for r in rows]


def _nan_to_none(values: Any) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


async def _redis_bars(settings: Settings, symbol: str, n: int, wait_s: float = 10.0) -> int:
    """How many bars Redis holds for ``symbol`` once it has ``n`` (or after ``wait_s``)."""
    redis = await RedisHotState(redis_config(settings)).open()
    try:
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            count = int(await redis.client.zcard(redis.bars_key(symbol, "1m")))
            if count >= n or asyncio.get_running_loop().time() >= deadline:
                return count
            await asyncio.sleep(0.1)
    finally:
        await redis.close()


async def test_chart_data_from_redis(
    client: httpx.AsyncClient, env: tuple[Settings, Data, ApiServer]
) -> None:
    _, data, _ = env
    resp = await client.get("/api/historical/chart-data/BTC-PERP", params={"limit": 100, "timeframe": "1m"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["source"] == "redis" and resp.headers["x-source"] == "redis"
    assert body["symbol"] == "BTC-PERP" and body["timeframe"] == "1m" and body["count"] == 100
    assert body["bars"] == _bars(data["BTC-PERP"][-100:])
    slash = await client.get("/api/historical/chart-data/XRP%2FUSD", params={"limit": 50})
    assert slash.status_code == 200 and slash.json()["bars"] == _bars(data["XRP/USD"][-50:])
    raw_slash = await client.get("/api/historical/chart-data/XRP/USD", params={"limit": 50})
    assert raw_slash.json() == slash.json()


async def test_chart_responses_are_cached_until_a_new_bar_is_written(
    client: httpx.AsyncClient, env: tuple[Settings, Data, ApiServer]
) -> None:
    settings, data, _ = env
    bars = data["ADA-USD"]
    url, query = "/api/historical/chart-data/ADA-USD", {"limit": 60}
    first = await client.get(url, params=query)
    second = await client.get(url, params=query)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert second.content == first.content and second.json()["bars"] == _bars(bars[-60:])
    other_limit = await client.get(url, params={"limit": 30})
    assert other_limit.headers["x-cache"] == "miss" and other_limit.json()["bars"] == _bars(bars[-30:])
    new = ftx_bars(settings.data_dir, "ADA-USD", 101, 30_000)[-1]  # the next real bar closes
    redis = await RedisHotState(redis_config(settings)).open()
    try:
        await redis.write_bars([new])  # what the sink service does with it
    finally:
        await redis.close()
    third = await client.get(url, params=query)
    assert third.headers["x-cache"] == "miss", "writing a bar must drop the cached responses"
    assert third.json()["bars"] == _bars([*bars[-59:], new])


async def test_more_than_redis_holds_is_served_by_clickhouse(
    client: httpx.AsyncClient, env: tuple[Settings, Data, ApiServer]
) -> None:
    _, data, _ = env
    resp = await client.get("/api/historical/chart-data/BTC-PERP", params={"limit": 550})
    assert resp.status_code == 200
    assert resp.json()["source"] == "clickhouse"
    assert resp.json()["bars"] == _bars(data["BTC-PERP"][-550:])


@pytest.mark.parametrize(("symbol", "store"), [("ETH-CH", "clickhouse"), ("SOL-PG", "postgres")])
async def test_a_redis_miss_falls_back_and_warms_redis(
    client: httpx.AsyncClient, env: tuple[Settings, Data, ApiServer], symbol: str, store: str
) -> None:
    settings, data, _ = env
    n = len(data[symbol])
    assert await _redis_bars(settings, symbol, 1, wait_s=0) == 0, "the symbol must start cold"
    first = await client.get(f"/api/historical/chart-data/{symbol}", params={"limit": n})
    assert first.status_code == 200, first.text
    assert first.json()["source"] == store and first.headers["x-source"] == store
    assert first.json()["bars"] == _bars(data[symbol])
    assert await _redis_bars(settings, symbol, n) == n, "the fallback's bars are written back to Redis"
    second = await client.get(f"/api/historical/chart-data/{symbol}", params={"limit": n})
    assert second.json()["source"] == "redis"
    assert second.json()["bars"] == first.json()["bars"]


async def test_a_burst_of_concurrent_requests_is_served(
    env: tuple[Settings, Data, ApiServer],
) -> None:
    """Hundreds of requests in flight at once each hold a Redis connection: none may fail (503)."""
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=env[2].base_url, timeout=30, limits=limits) as c:
        charts = [c.get("/api/historical/chart-data/BTC-PERP", params={"limit": 300}) for _ in range(200)]
        signals = [c.get("/api/signals/current", params={"symbols": "BTC-PERP,XRP/USD"}) for _ in range(200)]
        answers = await asyncio.gather(*charts, *signals)
    failed = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
    assert failed == [], failed[:3]
    assert {r.json().get("source") for r in answers[:200]} == {"redis"}


async def test_unknown_symbol_is_404_naming_the_stores(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/historical/chart-data/NOPE-42")
    assert resp.status_code == 404
    assert "no 1m bars for symbol 'NOPE-42' in Redis, ClickHouse or PostgreSQL" in resp.json()["error"]


async def test_current_signals(client: httpx.AsyncClient, env: tuple[Settings, Data, ApiServer]) -> None:
    _, data, _ = env
    resp = await client.get("/api/signals/current")
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == 2
    assert [s["symbol"] for s in body["signals"]] == ["BTC-PERP", "XRP/USD"]
    btc = body["signals"][0]
    last, prev = data["BTC-PERP"][-1], data["BTC-PERP"][-2]
    assert btc["start_us"] == last["start_us"] and btc["price"] == last["close"]
    assert btc["action"] == ("BUY" if last["close"] > prev["close"] else "SELL")
    assert set(btc) == {"signal_id", "symbol", "timeframe", "start_us", "action", "score", "price",
                        "model_version", "inference_path", "publish_us"}  # fmt: skip
    one = await client.get("/api/signals/current", params={"symbols": "XRP/USD,ETH-CH"})
    assert [s["symbol"] for s in one.json()["signals"]] == ["XRP/USD"]
    bad = await client.get("/api/signals/current", params={"symbols": "BTC-PERP,btc"})
    assert bad.status_code == 400 and "'btc' is not a valid symbol" in bad.json()["error"]


PARAMS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("ema", {"period": 12}, ("ema",)),
    ("rsi", {"period": 14}, ("rsi",)),
    ("stochrsi", {"period": 14, "stoch_period": 14, "k": 3, "d": 3}, ("k", "d")),
    ("macd", {"fast": 12, "slow": 26, "signal": 9}, ("macd", "signal", "hist")),
    ("bbands", {"period": 20, "nbdev": 2.0}, ("upper", "middle", "lower")),
]


def _reference(indicator: str, values: list[float], params: dict[str, Any]) -> list[Any]:
    out = getattr(ind, indicator)(np.asarray(values, dtype=np.float64), *params.values())
    return [_nan_to_none(a) for a in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize(("indicator", "params", "outputs"), PARAMS)
async def test_indicator_series_equals_processors_indicators(
    client: httpx.AsyncClient,
    env: tuple[Settings, Data, ApiServer],
    indicator: str,
    params: dict[str, Any],
    outputs: tuple[str, ...],
) -> None:
    _, data, _ = env
    query = {"indicator": indicator, "limit": 300, **params}
    resp = await client.get("/api/indicators/BTC-PERP", params=query)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    bars = data["BTC-PERP"][-300:]
    assert body["start_us"] == [b["start_us"] for b in bars] and body["close"] == closes(bars)
    assert body["params"] == params and body["source"] == "redis" and body["count"] == 300
    assert list(body["values"]) == list(outputs)
    assert [body["values"][o] for o in outputs] == _reference(indicator, closes(bars), params)


@pytest.mark.parametrize(("indicator", "params", "outputs"), PARAMS)
async def test_compute_endpoint_equals_processors_indicators(
    client: httpx.AsyncClient,
    env: tuple[Settings, Data, ApiServer],
    indicator: str,
    params: dict[str, Any],
    outputs: tuple[str, ...],
) -> None:
    values = closes(env[1]["BTC-PERP"])
    resp = await client.post(
        "/api/indicators/compute", json={"indicator": indicator, "values": values, "params": params}
    )
    assert resp.status_code == 200, resp.text
    assert [resp.json()[o] for o in outputs] == _reference(indicator, values, params)


async def test_defaults_take_the_pipeline_parameters(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/indicators/BTC-PERP", params={"indicator": "stochrsi", "limit": 50})
    assert resp.json()["params"] == {"period": 14, "stoch_period": 14, "k": 3, "d": 3}


BAD_GETS: list[tuple[str, dict[str, Any], int, str]] = [
    ("/api/historical/chart-data/btc", {}, 400, "path parameter 'symbol'"),
    ("/api/historical/chart-data/BTC-PERP", {"limit": 0}, 400, "query parameter 'limit'"),
    ("/api/historical/chart-data/BTC-PERP", {"limit": "many"}, 400, "use an integer from 1 to 5000"),
    ("/api/historical/chart-data/BTC-PERP", {"limit": 5001}, 400, "less than or equal to 5000"),
    (
        "/api/historical/chart-data/BTC-PERP",
        {"timeframe": "5m"},
        400,
        "'5m' is not stored; use one of 1s, 1m",
    ),
    ("/api/historical/chart-data/BTC-PERP", {"timeframe": "1 m"}, 400, "query parameter 'timeframe'"),
    ("/api/indicators/BTC-PERP", {"indicator": "wma"}, 400, "use one of ema, rsi, stochrsi, macd, bbands"),
    ("/api/indicators/BTC-PERP", {"indicator": "ema", "fast": 3}, 400, "fast does not apply to ema"),
    ("/api/indicators/BTC-PERP", {"indicator": "macd", "fast": 26, "slow": 12}, 400, "macd: "),
    ("/api/indicators/BTC-PERP", {"nbdev": "inf"}, 400, "query parameter 'nbdev'"),
    ("/api/nothing", {}, 404, "no such endpoint: GET /api/nothing"),
]


@pytest.mark.parametrize(("path", "params", "status", "text"), BAD_GETS)
async def test_bad_input_gets_a_clear_4xx(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], status: int, text: str
) -> None:
    resp = await client.get(path, params=params)
    assert resp.status_code == status, resp.text
    assert text in resp.json()["error"]


BAD_COMPUTE: list[tuple[Any, str]] = [
    ({"indicator": "ema", "values": [1.0, 2.0], "params": {"period": 0}}, "body field 'params.period'"),
    ({"indicator": "ema", "values": [1.0, "x"], "params": {"period": 2}}, "body field 'values.1'"),
    (
        {"indicator": "sma", "values": [1.0], "params": {}},
        "body field 'indicator': 'sma' is not an indicator",
    ),
    ({"values": [1.0], "params": {}}, "body field 'indicator': is required but missing"),
    ([1.0, 2.0], "request body: must be a JSON object, got list"),
    ({"indicator": "rsi", "values": [1.0], "params": {"period": 14, "k": 3}}, "'params.k'"),
    ({"indicator": "macd", "values": [1.0, 2.0], "params": {"fast": 9, "slow": 3, "signal": 2}}, "macd: "),
    ({"indicator": "ema", "values": [1.0] * 100_001, "params": {"period": 2}}, "at most 100000"),
]


@pytest.mark.parametrize(("body", "text"), BAD_COMPUTE)
async def test_bad_compute_bodies_get_400(client: httpx.AsyncClient, body: Any, text: str) -> None:
    resp = await client.post("/api/indicators/compute", json=body)
    assert resp.status_code == 400, resp.text
    assert text in resp.json()["error"], resp.json()["error"]


async def test_malformed_requests(client: httpx.AsyncClient) -> None:
    not_json = await client.post(
        "/api/indicators/compute", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith(
        "request body: is not valid JSON (decoding failed at character 1)"
    )
    assert "send a JSON object with Content-Type: application/json" in not_json.json()["error"]
    as_text = await client.post("/api/orders", content=b"{}", headers={"Content-Type": "text/plain"})
    assert as_text.status_code == 400
    assert (
        "request body: was not sent as JSON (Content-Type is not application/json)" in as_text.json()["error"]
    )
    wrong_method = await client.delete("/api/orders")
    assert wrong_method.status_code == 405 and "DELETE is not allowed" in wrong_method.json()["error"]
    huge = b'{"indicator":"ema","params":{"period":2},"values":[' + b"1.0," * 1_200_000 + b"1.0]}"
    too_big = await client.post(
        "/api/indicators/compute", content=huge, headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413 and "too large" in too_big.json()["error"]

    async def chunks() -> Any:  # no Content-Length: the limit applies while the body streams in
        for i in range(0, len(huge), 65_536):
            yield huge[i : i + 65_536]

    streamed = await client.post(
        "/api/indicators/compute", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and "STOCKPULSE_API__MAX_BODY_BYTES" in streamed.json()["error"]


async def test_healthz_names_every_dependency(
    client: httpx.AsyncClient, env: tuple[Settings, Data, ApiServer]
) -> None:
    settings = env[0]
    resp = await client.get("/healthz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"redis", "clickhouse", "postgres", "broker"}
    assert all(c["ok"] for c in body["checks"].values())
    assert settings.clickhouse.database in body["checks"]["clickhouse"]["detail"]
    assert settings.postgres.schema_name in body["checks"]["postgres"]["detail"]
    assert settings.topics.orders in body["checks"]["broker"]["detail"]


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_count_requests_by_route_and_cache_hits(client: httpx.AsyncClient) -> None:
    route = "/api/historical/chart-data/{symbol:path}"
    before = (await client.get("/metrics")).text
    for _ in range(3):
        assert (
            await client.get("/api/historical/chart-data/BTC-PERP", params={"limit": 10})
        ).status_code == 200
    after = (await client.get("/metrics")).text
    name = "stockpulse_http_requests_total"
    assert (
        _metric(after, name, route=route, status="200") - _metric(before, name, route=route, status="200")
        == 3
    )
    hits = "stockpulse_cache_requests_total"
    assert _metric(after, hits, result="hit") - _metric(before, hits, result="hit") == 3
    assert 'route="/api/historical/chart-data/BTC-PERP"' not in after, "raw paths must not become labels"


async def test_openapi_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    assert spec["info"]["title"] == "StockPulse Stream API"
    paths = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    for expected in [
        ("/api/historical/chart-data/{symbol}", "get"),
        ("/api/symbols", "get"),
        ("/api/signals/current", "get"),
        ("/api/orders", "post"),
        ("/api/indicators/{symbol}", "get"),
        ("/api/indicators/compute", "post"),
        ("/healthz", "get"),
        ("/metrics", "get"),
    ]:
        assert expected in paths, expected
    limit = next(
        p
        for p in spec["paths"]["/api/historical/chart-data/{symbol}"]["get"]["parameters"]
        if p["name"] == "limit"
    )
    assert limit["schema"]["maximum"] == 5000 and limit["schema"]["minimum"] == 1
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text, "malformed input is answered 400 with ErrorBody, never 422"
    chart = spec["paths"]["/api/historical/chart-data/{symbol}"]["get"]["responses"]
    assert chart["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChartData"}
    assert chart["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    order = spec["paths"]["/api/orders"]["post"]["responses"]
    assert order["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RejectedOrder"
    }


async def test_symbols_lists_what_redis_holds(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/symbols")
    assert resp.status_code == 200
    assert {"BTC-PERP", "XRP/USD", "ADA-USD"} <= set(resp.json()["symbols"])
    assert resp.json()["timeframes"] == ["1s", "1m"]
    only = await client.get("/api/symbols", params={"prefix": "XRP"})
    assert only.json()["symbols"] == ["XRP/USD"]
