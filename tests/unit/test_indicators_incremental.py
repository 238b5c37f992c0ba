"""IndicatorSet: bit-for-bit equal to the batch functions, resumable from checkpoints, strict about inputs."""

from __future__ import annotations

import math
import types
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.indicators import (
    SNAPSHOT_KEYS,
    IndicatorConfig,
    IndicatorSet,
    atr,
    bbands,
    ema,
    macd,
    rsi,
    stochrsi,
    typical_price,
    vwap,
)

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
F64 = npt.NDArray[np.float64]
Ohlcv = tuple[F64, F64, F64, F64, F64]
HYPO = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def batch_reference(cfg: IndicatorConfig, o: F64, h: F64, lo: F64, c: F64, v: F64) -> dict[str, F64]:
    """The snapshot series computed with the public batch functions."""
    s = stochrsi(c, cfg.rsi_period, cfg.stoch_period, cfg.stoch_k, cfg.stoch_d)
    m = macd(c, cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
    b = bbands(c, cfg.bb_period, cfg.bb_nbdev)
    return {
        "ema_fast": ema(c, cfg.ema_fast),
        "ema_slow": ema(c, cfg.ema_slow),
        "rsi": rsi(c, cfg.rsi_period),
        "stochrsi_k": s.k,
        "stochrsi_d": s.d,
        "macd": m.macd,
        "macd_signal": m.signal,
        "macd_hist": m.hist,
        "bb_upper": b.upper,
        "bb_middle": b.middle,
        "bb_lower": b.lower,
        "atr": atr(h, lo, c, cfg.atr_period),
        "vwap": vwap(typical_price(h, lo, c), v),
    }


def bits(x: F64) -> npt.NDArray[np.int64]:
    return np.ascontiguousarray(x, dtype=np.float64).view(np.int64)


def assert_bitwise(actual: dict[str, F64], expected: dict[str, F64]) -> None:
    assert list(actual) == list(SNAPSHOT_KEYS)
    for key in SNAPSHOT_KEYS:
        a, e = bits(actual[key]), bits(expected[key])
        if not np.array_equal(a, e):
            i = int(np.flatnonzero(a != e)[0])
            raise AssertionError(f"{key}[{i}]: {actual[key][i]!r} != {expected[key][i]!r}")


def run_update(ind: IndicatorSet, o: F64, h: F64, lo: F64, c: F64, v: F64) -> dict[str, F64]:
    rows = [ind.update(o[i], h[i], lo[i], c[i], v[i]) for i in range(c.shape[0])]
    return {k: np.array([r[k] for r in rows], dtype=np.float64) for k in SNAPSHOT_KEYS}


# --- real data ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc() -> Ohlcv:
    path = DATA_DIR / "ftx_btc-perp_2022-01_1m.csv"
    if not path.exists():
        pytest.skip(
            f"real market data not found at {path} (expected ../shared/data next to the project root)"
        )
    df = pd.read_csv(path).iloc[:12_000]
    o, h, lo, c, v = (df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume"))
    return o, h, lo, c, v


@pytest.fixture(scope="module")
def gbpusd() -> Ohlcv:
    path = DATA_DIR / "fxcm_gbpusd_2012_m1_bid.csv"
    if not path.exists():
        pytest.skip(
            f"real market data not found at {path} (expected ../shared/data next to the project root)"
        )
    df = pd.read_csv(path).iloc[:12_000]
    o, h, lo, c = (df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    return o, h, lo, c, np.ones_like(c)  # FX bid bars carry no volume: VWAP becomes the mean typical price


CONFIGS = [
    IndicatorConfig(),
    IndicatorConfig(
        ema_fast=1,
        ema_slow=2,
        rsi_period=2,
        stoch_period=1,
        stoch_k=1,
        stoch_d=1,
        macd_fast=2,
        macd_slow=3,
        macd_signal=1,
        bb_period=2,
        bb_nbdev=0.0,
        atr_period=1,
    ),
    IndicatorConfig(
        stoch_period=5, stoch_k=4, stoch_d=2, macd_fast=5, macd_slow=35, macd_signal=5, bb_period=7
    ),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "minimal", "mixed"])
@pytest.mark.parametrize("dataset", ["btc", "gbpusd"])
def test_real_bars_update_equals_batch_bitwise(
    cfg: IndicatorConfig, dataset: str, request: pytest.FixtureRequest
) -> None:
    o, h, lo, c, v = request.getfixturevalue(dataset)
    expected = batch_reference(cfg, o, h, lo, c, v)
    assert_bitwise(run_update(IndicatorSet(cfg), o, h, lo, c, v), expected)
    assert_bitwise(IndicatorSet(cfg).update_many(o, h, lo, c, v), expected)


def test_real_bars_checkpoint_every_bar_resumes_bitwise(btc: Ohlcv) -> None:
    o, h, lo, c, v = (a[:600] for a in btc)
    ind = IndicatorSet()
    rows = []
    for i in range(c.shape[0]):
        ind = IndicatorSet.from_bytes(ind.to_bytes())
        rows.append(ind.update(o[i], h[i], lo[i], c[i], v[i]))
    got = {k: np.array([r[k] for r in rows]) for k in SNAPSHOT_KEYS}
    assert_bitwise(got, batch_reference(IndicatorConfig(), o, h, lo, c, v))
    assert ind.bars_seen == 600


def test_warmup_matches_config(btc: Ohlcv) -> None:
    cfg = CONFIGS[2]
    out = IndicatorSet(cfg).update_many(*btc)
    for key, warm in cfg.warmup().items():
        assert np.isnan(out[key][:warm]).all(), key
        assert not np.isnan(out[key][warm:]).any(), key


# --- properties over synthetic series -------------------------------------------------------------

KINDS = ["random", "constant", "flat_runs", "tiny", "huge", "gapped", "penny"]


@st.composite
def configs(draw: st.DrawFn) -> IndicatorConfig:
    fast = draw(st.integers(2, 6))
    return IndicatorConfig(
        ema_fast=draw(st.integers(1, 10)),
        ema_slow=draw(st.integers(1, 30)),
        rsi_period=draw(st.integers(2, 10)),
        stoch_period=draw(st.integers(1, 8)),
        stoch_k=draw(st.integers(1, 4)),
        stoch_d=draw(st.integers(1, 4)),
        macd_fast=fast,
        macd_slow=draw(st.integers(fast + 1, 15)),
        macd_signal=draw(st.integers(1, 6)),
        bb_period=draw(st.integers(2, 12)),
        bb_nbdev=draw(st.sampled_from([0.0, 1.0, 2.0, 2.5])),
        atr_period=draw(st.integers(1, 10)),
    )


@st.composite
def series(draw: st.DrawFn) -> Ohlcv:
    kind = draw(st.sampled_from(KINDS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 4)) if kind == "tiny" else draw(st.integers(0, 250))
    if kind == "constant":
        c = np.full(n, draw(st.sampled_from([1.0, 46000.5, 1e-8, 0.0, -3.0])))
    elif kind == "flat_runs":
        c = np.repeat(100.0 + rng.integers(-5, 6, n).cumsum() * 0.25, rng.integers(1, 8, n))[:n]
    elif kind == "huge":
        c = 1e12 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    elif kind == "gapped":
        c = 50.0 * np.exp(
            np.cumsum(rng.normal(0.0, 0.002, n) + (rng.random(n) < 0.05) * rng.normal(0.0, 1.0, n))
        )
    elif kind == "penny":
        c = 1e-6 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    else:
        c = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    c = np.ascontiguousarray(c, dtype=np.float64)
    o = np.concatenate([c[:1], c[:-1]]) if n else c.copy()
    spread = np.abs(c) * rng.random(n) * 0.01
    h = np.maximum(o, c) + spread
    lo = np.minimum(o, c) - spread
    v = rng.random(n) * (1e12 if kind == "huge" else 10.0) * (rng.random(n) < 0.8)  # some zero volumes
    return o, h, lo, c, v


@HYPO
@given(cfg=configs(), data=series())
def test_update_equals_batch_bitwise(cfg: IndicatorConfig, data: Ohlcv) -> None:
    expected = batch_reference(cfg, *data)
    assert_bitwise(run_update(IndicatorSet(cfg), *data), expected)
    assert_bitwise(IndicatorSet(cfg).update_many(*data), expected)


@HYPO
@given(
    cfg=configs(),
    close=st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), max_size=60),
    volume=st.floats(0.0, 1e6),
)
def test_update_equals_batch_bitwise_on_arbitrary_floats(
    cfg: IndicatorConfig, close: list[float], volume: float
) -> None:
    """Raw hypothesis floats: zeros, negative prices, subnormals, repeated values."""
    c = np.array(close, dtype=np.float64)
    v = np.full_like(c, volume)
    data = (c, c, c, c, v)
    assert_bitwise(run_update(IndicatorSet(cfg), *data), batch_reference(cfg, *data))


@HYPO
@given(cfg=configs(), data=series(), cut=st.floats(0.0, 1.0), chunk=st.integers(1, 40))
def test_serialize_resume_equals_uninterrupted(
    cfg: IndicatorConfig, data: Ohlcv, cut: float, chunk: int
) -> None:
    n = data[3].shape[0]
    k = int(cut * n)
    whole = IndicatorSet(cfg)
    expected = whole.update_many(*data)

    first = IndicatorSet(cfg)
    parts = [first.update_many(*(a[:k] for a in data))]
    blob = first.to_bytes()
    resumed = IndicatorSet.from_bytes(blob)
    assert resumed.bars_seen == k and resumed.config == cfg
    for start in range(k, n, chunk):  # the rest in chunks, checkpointing between chunks
        resumed = IndicatorSet.from_bytes(resumed.to_bytes())
        parts.append(resumed.update_many(*(a[start : start + chunk] for a in data)))
    got = {key: np.concatenate([p[key] for p in parts]) for key in SNAPSHOT_KEYS}
    assert_bitwise(got, expected)
    assert resumed.to_bytes() == whole.to_bytes()
    assert repr(resumed.snapshot()) == repr(whole.snapshot())


# --- behaviour ------------------------------------------------------------------------------------


def test_snapshot_keys_and_defaults() -> None:
    ind = IndicatorSet()
    assert ind.config == IndicatorConfig()
    assert ind.bars_seen == 0
    snap = ind.snapshot()
    assert list(snap) == list(SNAPSHOT_KEYS) and all(math.isnan(x) for x in snap.values())
    out = ind.update(1, 2, 0, 1, 5)  # ints are accepted
    assert list(out) == list(SNAPSHOT_KEYS) and ind.bars_seen == 1
    assert out["vwap"] == 1.0 and repr(ind.snapshot()) == repr(out)


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_raises_and_leaves_state(field: str, bad: float) -> None:
    ind = IndicatorSet()
    ind.update(1.0, 2.0, 0.5, 1.5, 3.0)
    before = ind.to_bytes()
    bar = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.0, field: bad}
    with pytest.raises(ValueError, match=rf"^{field} is {bad!r}: .*finite.*skip or repair the bar"):
        ind.update(**bar)
    assert ind.to_bytes() == before


def test_negative_volume_and_non_numbers_raise() -> None:
    ind = IndicatorSet()
    with pytest.raises(ValueError, match=r"volume is -1.0 \(negative\)"):
        ind.update(1.0, 1.0, 1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="close is 'x', not a number"):
        ind.update(1.0, 1.0, 1.0, "x", 1.0)  # type: ignore[arg-type]
    assert ind.bars_seen == 0


@pytest.mark.parametrize("field", ["open", "high", "low", "close", "volume"])
def test_update_many_rejects_non_finite_before_applying(field: str) -> None:
    ind = IndicatorSet()
    cols = {k: np.ones(5) for k in ("open", "high", "low", "close", "volume")}
    cols[field][3] = np.nan
    with pytest.raises(ValueError, match=rf"^{field}\[3\] is nan: inputs must be finite"):
        ind.update_many(**cols)
    cols[field][3] = 1.0
    cols["volume"][2] = -0.5
    with pytest.raises(ValueError, match=r"volume\[2\] is -0.5: volumes must be >= 0"):
        ind.update_many(**cols)
    with pytest.raises(ValueError, match="same length"):
        ind.update_many(np.ones(2), np.ones(3), np.ones(3), np.ones(3), np.ones(3))
    assert ind.bars_seen == 0


def test_reset_vwap_starts_a_session() -> None:
    rng = np.random.default_rng(7)
    h = 10 + rng.random(30)
    lo = h - 1
    c = h - 0.5
    v = rng.random(30)
    ind = IndicatorSet()
    got = []
    for i in range(30):
        if i in (10, 25):
            ind.reset_vwap()
        got.append(ind.update(c[i], h[i], lo[i], c[i], v[i])["vwap"])
    session = np.searchsorted([10, 25], np.arange(30), side="right")
    assert np.array_equal(np.array(got), vwap(typical_price(h, lo, c), v, session=session))


def test_from_bytes_rejects_garbage() -> None:
    blob = IndicatorSet().to_bytes()
    with pytest.raises(ValueError, match="too short"):
        IndicatorSet.from_bytes(b"SP")
    with pytest.raises(ValueError, match="not an IndicatorSet checkpoint"):
        IndicatorSet.from_bytes(b"XXXX" + blob[4:])
    with pytest.raises(ValueError, match="unsupported IndicatorSet checkpoint version 9"):
        IndicatorSet.from_bytes(blob[:4] + (9).to_bytes(2, "little") + blob[6:])
    with pytest.raises(ValueError, match="corrupt"):
        IndicatorSet.from_bytes(blob[:-8])
    assert len(blob) < 1024  # compact


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ema_fast": 0}, r"ema_fast must be an integer in \[1, 100000\], got 0"),
        ({"rsi_period": 1}, r"rsi_period must be an integer in \[2, 100000\], got 1"),
        ({"bb_period": 2.5}, r"bb_period must be an integer"),
        ({"stoch_k": True}, r"stoch_k must be an integer"),
        ({"macd_fast": 26, "macd_slow": 26}, "macd_fast must be smaller than macd_slow"),
        ({"bb_nbdev": -1.0}, "bb_nbdev must be a finite number >= 0"),
        ({"bb_nbdev": math.nan}, "bb_nbdev must be a finite number >= 0"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndicatorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    cfg = IndicatorConfig()
    with pytest.raises(AttributeError):
        cfg.rsi_period = 3  # type: ignore[misc]
    assert IndicatorConfig(**cfg.as_dict()) == cfg  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="IndicatorConfig"):
        IndicatorSet({"rsi_period": 3})  # type: ignore[arg-type]


def test_compiled_step_equals_the_same_source_interpreted(btc: Ohlcv) -> None:
    """numba's machine code for ``step`` is bit-identical to CPython running the same source over lists:
    strict IEEE double arithmetic, no FMA contraction or reassociation. This is the contract a C port
    (-ffp-contract=off) inherits."""
    from processors.indicators import incremental as inc

    interpreted = types.FunctionType(
        inc.step.py_func.__code__,
        {**inc.step.py_func.__globals__, "_ema": inc._ema.py_func, "true_range": inc.true_range.py_func},
    )
    o, h, lo, c, v = (a[:3000].tolist() for a in btc)
    compiled = IndicatorSet(CONFIGS[2])
    reference = IndicatorSet(CONFIGS[2])
    fst, ist = reference._fst.tolist(), reference._ist.tolist()
    for i in range(len(c)):
        got = compiled.update(o[i], h[i], lo[i], c[i], v[i])
        want = interpreted(fst, ist, o[i], h[i], lo[i], c[i], v[i])
        assert repr(tuple(got.values())) == repr(want), i
    assert np.array_equal(np.array(fst).view(np.int64), compiled._fst.view(np.int64))
