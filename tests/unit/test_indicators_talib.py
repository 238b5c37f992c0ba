"""TA-Lib parity of the batch indicators on real 1-minute bars (../shared/data).

Wherever TA-Lib gives a value, ours must be within 1e-9 relative (scale max(1, |talib|)) and never NaN; our
NaN warm-up must be exactly the documented one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from processors.indicators import (
    IndicatorConfig,
    atr,
    bbands,
    ema,
    macd,
    rsi,
    sma,
    stochrsi,
    typical_price,
    vwap,
)

talib = pytest.importorskip("talib")

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATASETS = {"btc": "ftx_btc-perp_2022-01_1m.csv", "gbpusd": "fxcm_gbpusd_2012_m1_bid.csv"}
REL_TOL = 1e-9
F64 = npt.NDArray[np.float64]


@pytest.fixture(scope="module", params=sorted(DATASETS))
def bars(request: pytest.FixtureRequest) -> dict[str, F64]:
    path = DATA_DIR / DATASETS[request.param]
    if not path.exists():
        pytest.skip(
            f"real market data not found at {path} (expected ../shared/data next to the project root)"
        )
    df = pd.read_csv(path)
    out = {k: df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close")}
    out["volume"] = df["volume"].to_numpy(dtype=np.float64) if "volume" in df else np.ones(len(df))
    return out


def assert_matches(ours: F64, theirs: F64, warmup: int) -> None:
    """Within REL_TOL of TA-Lib wherever TA-Lib has a value; NaN exactly on our documented warm-up."""
    assert ours.shape == theirs.shape
    has = ~np.isnan(theirs)
    assert has.any(), "TA-Lib produced no value: test data too short"
    assert not np.isnan(ours[has]).any(), "NaN where TA-Lib has a value"
    err = np.abs(ours[has] - theirs[has]) / np.maximum(1.0, np.abs(theirs[has]))
    assert err.max() <= REL_TOL, (
        f"max relative error {err.max():.3g} at {np.flatnonzero(has)[np.argmax(err)]}"
    )
    assert np.isnan(ours[:warmup]).all()
    assert not np.isnan(ours[warmup:]).any()


@pytest.mark.parametrize("period", [1, 2, 3, 5, 14, 20, 50, 200])
def test_sma_is_talib_bit_for_bit(bars: dict[str, F64], period: int) -> None:
    c = bars["close"]
    ours = sma(c, period)
    assert_matches(ours, talib.SMA(c, period), period - 1)
    assert np.array_equal(ours, talib.SMA(c, period), equal_nan=True)


@pytest.mark.parametrize("period", [1, 2, 3, 5, 12, 26, 50, 200])
def test_ema_is_talib_bit_for_bit(bars: dict[str, F64], period: int) -> None:
    c = bars["close"]
    ours = ema(c, period)
    assert_matches(ours, talib.EMA(c, period), period - 1)
    assert np.array_equal(ours, talib.EMA(c, period), equal_nan=True)


@pytest.mark.parametrize("period", [2, 3, 5, 9, 14, 21, 50])
@pytest.mark.parametrize("column", ["close", "high"])
def test_rsi(bars: dict[str, F64], period: int, column: str) -> None:
    x = bars[column]
    assert_matches(rsi(x, period), talib.RSI(x, period), period)


@pytest.mark.parametrize(
    ("period", "stoch_period", "k", "d"),
    [(14, 14, 3, 3), (14, 14, 1, 1), (5, 3, 1, 1), (5, 3, 2, 4), (2, 2, 2, 2), (21, 9, 5, 4), (3, 1, 3, 3)],
)
@pytest.mark.parametrize("column", ["close", "low"])
def test_stochrsi(bars: dict[str, F64], period: int, stoch_period: int, k: int, d: int, column: str) -> None:
    x = bars[column]
    r = talib.RSI(x, period)
    v = r[period:]
    tk, td = talib.STOCH(
        v, v, v, fastk_period=stoch_period, slowk_period=k, slowk_matype=0, slowd_period=d, slowd_matype=0
    )
    lead = np.full(period, np.nan)
    out = stochrsi(x, period, stoch_period, k, d)
    warm_k = period + stoch_period + k - 2
    assert_matches(out.k, np.concatenate([lead, tk]), warm_k)
    assert_matches(out.d, np.concatenate([lead, td]), warm_k + d - 1)


@pytest.mark.parametrize(
    ("fast", "slow", "signal"), [(12, 26, 9), (2, 3, 1), (5, 35, 5), (3, 10, 16), (8, 17, 9)]
)
def test_macd(bars: dict[str, F64], fast: int, slow: int, signal: int) -> None:
    c = bars["close"]
    ours = macd(c, fast, slow, signal)
    theirs = talib.MACD(c, fastperiod=fast, slowperiod=slow, signalperiod=signal)
    assert_matches(ours.macd, theirs[0], slow - 1)  # TA-Lib hides the line until the signal exists
    assert_matches(ours.signal, theirs[1], slow + signal - 2)
    assert_matches(ours.hist, theirs[2], slow + signal - 2)


@pytest.mark.parametrize("period", [2, 3, 5, 14, 20, 50, 200])
@pytest.mark.parametrize("nbdev", [2.0, 1.0, 0.5])
@pytest.mark.parametrize("column", ["close", "open", "low"])
def test_bbands(bars: dict[str, F64], period: int, nbdev: float, column: str) -> None:
    x = bars[column]
    ours = bbands(x, period, nbdev)
    theirs = talib.BBANDS(x, timeperiod=period, nbdevup=nbdev, nbdevdn=nbdev, matype=0)
    for mine, ref in zip(ours, theirs, strict=True):
        assert_matches(mine, ref, period - 1)
    assert np.array_equal(ours.middle, talib.SMA(x, period), equal_nan=True)


@pytest.mark.parametrize("period", [1, 2, 3, 5, 14, 21, 50])
def test_atr(bars: dict[str, F64], period: int) -> None:
    h, lo, c = bars["high"], bars["low"], bars["close"]
    assert_matches(atr(h, lo, c, period), talib.ATR(h, lo, c, period), period)


def test_vwap_is_the_sequential_cumulative_ratio(bars: dict[str, F64]) -> None:
    """Independent reference: numpy's cumsum is a sequential running sum, like ours, so equality is exact."""
    tp = typical_price(bars["high"], bars["low"], bars["close"])
    v = bars["volume"]
    expected = np.cumsum(tp * v) / np.cumsum(v)
    assert np.array_equal(vwap(tp, v), expected, equal_nan=True)
    assert np.array_equal(tp, (bars["high"] + bars["low"] + bars["close"]) / 3.0)


def test_vwap_sessions_match_pandas_groupby(bars: dict[str, F64]) -> None:
    tp = typical_price(bars["high"], bars["low"], bars["close"])
    v = bars["volume"]
    session = np.arange(tp.shape[0]) // 1440  # one session per 1440 one-minute bars
    df = pd.DataFrame({"pv": tp * v, "v": v, "s": session})
    g = df.groupby("s")
    expected = (g["pv"].cumsum() / g["v"].cumsum()).to_numpy()
    np.testing.assert_allclose(vwap(tp, v, session=session), expected, rtol=1e-12)


def test_default_config_warmups_are_talibs(bars: dict[str, F64]) -> None:
    """The documented warm-ups of the default IndicatorSet config agree with TA-Lib's own lookbacks where
    TA-Lib reports the same quantity."""
    w = IndicatorConfig().warmup()
    c = bars["close"]
    assert int(np.isnan(talib.EMA(c, 12)).sum()) == w["ema_fast"]
    assert int(np.isnan(talib.RSI(c, 14)).sum()) == w["rsi"]
    assert int(np.isnan(talib.MACD(c, 12, 26, 9)[1]).sum()) == w["macd_signal"]
    assert int(np.isnan(talib.BBANDS(c, 20, 2.0, 2.0, 0)[0]).sum()) == w["bb_upper"]
    assert int(np.isnan(talib.ATR(bars["high"], bars["low"], c, 14)).sum()) == w["atr"]
