"""Request and response bodies of the API (pydantic), as published in the OpenAPI document.

Requests are validated strictly (unknown fields are errors, numbers must be finite). Responses of the hot
endpoints are encoded by :mod:`streams.api.jsonresp` directly; these models document their shape.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from streams.api.validation import SYMBOL_PATTERN

MAX_PERIOD = 100_000
Period1 = Annotated[int, Field(ge=1, le=MAX_PERIOD, strict=True)]
Period2 = Annotated[int, Field(ge=2, le=MAX_PERIOD, strict=True)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every error: ``error`` says what was wrong and how to fix it; ``errors`` lists each input problem."""

    error: str
    errors: list[dict[str, str]] | None = None


# ---- history ---------------------------------------------------------------------------------------------


class BarOut(BaseModel):
    """One OHLCV bar; ``start_us`` is the bucket start in UTC microseconds."""

    start_us: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    trades: int


class ChartData(BaseModel):
    """The newest bars of a symbol, oldest first, and which store served them."""

    symbol: str
    timeframe: str
    source: Literal["redis", "clickhouse", "postgres"] = Field(
        description="redis = hot cache hit; clickhouse / postgres (replica) = fallbacks on a miss"
    )
    count: int
    bars: list[BarOut]


class SymbolList(BaseModel):
    symbols: list[str]
    timeframes: list[str]


# ---- signals ---------------------------------------------------------------------------------------------


class SignalOut(BaseModel):
    """The newest ML signal of a symbol."""

    signal_id: str
    symbol: str
    timeframe: str
    start_us: int
    action: Literal["HOLD", "BUY", "SELL"]
    score: float | None
    price: float | None
    model_version: str
    inference_path: str
    publish_us: int


class SignalList(BaseModel):
    count: int
    signals: list[SignalOut]


# ---- orders ----------------------------------------------------------------------------------------------


class OrderRequest(_Strict):
    """A manual order. Send an ``Idempotency-Key`` header to make retries safe (same key, same order id)."""

    symbol: str = Field(pattern=SYMBOL_PATTERN, examples=["BTC-PERP"])
    side: Literal["BUY", "SELL"]
    quantity: FiniteFloat = Field(gt=0, le=1e9, description="units to buy or sell (> 0)")


class OrderResult(BaseModel):
    """The order as produced to the orders topic, with the broker's acknowledgement."""

    order_id: str = Field(description="deterministic: derived from the Idempotency-Key")
    idempotency_key: str
    status: Literal["ACCEPTED", "REJECTED"]
    reason: str = Field(description="why it was rejected; empty when accepted")
    symbol: str
    side: Literal["BUY", "SELL"]
    quantity: float
    ref_price: float = Field(
        description="price the risk checks used: the newest stored bar close (0 if none)"
    )
    ts_us: int
    topic: str
    replayed: bool = Field(
        description="true when this answers a retry of an earlier request with the same key"
    )


class RejectedOrder(OrderResult):
    """A rejected order (422): ``error`` repeats the reason."""

    error: str


# ---- indicators ------------------------------------------------------------------------------------------


class EmaParams(_Strict):
    period: Period1


class RsiParams(_Strict):
    period: Period2


class StochRsiParams(_Strict):
    period: Period2
    stoch_period: Period1
    k: Period1
    d: Period1


class MacdParams(_Strict):
    fast: Period2
    slow: Period2
    signal: Period1


class BBandsParams(_Strict):
    period: Period2
    nbdev: FiniteFloat = Field(ge=0, le=1e6)


class _Compute(_Strict):
    values: list[FiniteFloat] = Field(max_length=100_000, description="at most 100000 finite numbers")


class EmaCompute(_Compute):
    indicator: Literal["ema"]
    params: EmaParams


class RsiCompute(_Compute):
    indicator: Literal["rsi"]
    params: RsiParams


class StochRsiCompute(_Compute):
    indicator: Literal["stochrsi"]
    params: StochRsiParams


class MacdCompute(_Compute):
    indicator: Literal["macd"]
    params: MacdParams


class BBandsCompute(_Compute):
    indicator: Literal["bbands"]
    params: BBandsParams


ComputeRequest = Annotated[
    EmaCompute | RsiCompute | StochRsiCompute | MacdCompute | BBandsCompute, Field(discriminator="indicator")
]

Series = list[float | None]


class ComputeResult(BaseModel):
    """The named output arrays of the indicator (as long as ``values``; warm-up NaN as null): ``ema`` |
    ``rsi`` | ``k``, ``d`` | ``macd``, ``signal``, ``hist`` | ``upper``, ``middle``, ``lower``."""

    model_config = ConfigDict(extra="allow")


class IndicatorSeries(BaseModel):
    """An indicator over the stored bars: ``values`` holds the named outputs aligned with ``start_us``."""

    symbol: str
    timeframe: str
    indicator: Literal["ema", "rsi", "stochrsi", "macd", "bbands"]
    params: dict[str, float]
    source: Literal["redis", "clickhouse", "postgres"]
    count: int
    start_us: list[int]
    close: list[float]
    values: dict[str, Series]


# ---- operations ------------------------------------------------------------------------------------------


class CheckOut(BaseModel):
    ok: bool
    detail: str
    latency_ms: float


class HealthOut(BaseModel):
    status: Literal["ok", "down"]
    down: list[str]
    checks: dict[str, CheckOut]
