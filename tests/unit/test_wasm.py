"""wasm/indicators.wasm: reproducible build, ABI, and bit-for-bit equality with processors.indicators.

The module is run with the ``wasmtime`` package (bench/wasm_runner.py); the browser path is tested
in tests/integration/test_wasm_browser.py. Equality is on the float64 bit patterns: NaN in the same places,
warm-up NaNs exactly 0x7ff8000000000000, NaNs computed from overflowing inputs compared as NaN (their sign
is unspecified in WebAssembly, as on x86).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.wasm_runner import (
    ERROR_CODES,
    WASM_PATH,
    WasmCallError,
    WasmIndicators,
    assert_bit_equal,
    reference,
)

F64 = npt.NDArray[np.float64]
ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
REAL_FILES = ("ftx_btc-perp_2022-01_1m.csv", "fxcm_gbpusd_2012_m1_bid.csv")
EXPORTS = {"memory", "alloc", "reset", "ema", "rsi", "stochrsi", "macd", "bbands"}


def _load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wasm_build", ROOT / "wasm" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def warmups(name: str, params: list[Any]) -> list[int]:
    """Documented warm-up lengths (leading NaNs) of each output of ``name``."""
    if name == "ema":
        return [params[0] - 1]
    if name == "rsi":
        return [params[0]]
    if name == "stochrsi":
        p, sp, k, d = params
        return [p + sp + k - 2, p + sp + k + d - 3]
    if name == "macd":
        _, slow, sig = params
        return [slow - 1, slow + sig - 2, slow + sig - 2]
    return [params[0] - 1] * 3  # bbands


def check_same(w: WasmIndicators, name: str, x: F64, params: list[Any], what: str = "") -> None:
    ours = getattr(w, name)(x, *params)
    ours = ours if isinstance(ours, tuple) else (ours,)
    ref = reference(name, x, params)
    assert len(ours) == len(ref)
    for i, (a, b, warm) in enumerate(zip(ours, ref, warmups(name, params), strict=True)):
        assert_bit_equal(a, b, f"{what}{name}{tuple(params)} output {i}", warmup=warm)


@pytest.fixture(scope="module")
def wasm() -> WasmIndicators:
    pytest.importorskip(
        "wasmtime", reason="wasmtime is not installed: pip install wasmtime==50.0.1 (a dev dependency)"
    )
    return WasmIndicators()


# -- build ----------------------------------------------------------------------------------------------


def test_committed_wasm_matches_a_fresh_build(tmp_path: Path) -> None:
    if importlib.util.find_spec("ziglang") is None:
        pytest.skip(
            "ziglang is not installed, so the committed wasm/indicators.wasm cannot be rebuilt and compared: "
            "pip install ziglang==0.17.1 (a dev dependency)"
        )
    build = _load_build_module()
    fresh = build.build(tmp_path / "indicators.wasm").read_bytes()
    assert fresh == WASM_PATH.read_bytes(), (
        "wasm/indicators.wasm differs from a fresh build of wasm/indicators.c: "
        "rebuild with `make wasm-update` and commit wasm/indicators.wasm"
    )


# -- ABI ------------------------------------------------------------------------------------------------


def test_module_exports_exactly_the_abi_and_imports_nothing(wasm: WasmIndicators) -> None:
    assert {e.name for e in wasm.module.exports} == EXPORTS
    assert list(wasm.module.imports) == []


def test_alloc_is_8_aligned_grows_memory_and_reset_frees(wasm: WasmIndicators) -> None:
    wasm.reset()
    a = wasm.alloc(1)
    b = wasm.alloc(3)
    c = wasm.alloc(0)
    assert a % 8 == 0 and b % 8 == 0 and c % 8 == 0
    assert a < b < c and b - a == 8
    size = wasm.memory_size()
    big = wasm.alloc(size + 123_456)
    assert wasm.memory_size() >= big + size + 123_456
    wasm.reset()
    assert wasm.alloc(8) == a
    assert wasm.call("alloc", 0xFFFF_FFF0 - 1) == 0  # past 4 GiB: 0, nothing allocated
    wasm.reset()


def test_bad_arguments_return_error_codes_before_writing(wasm: WasmIndicators) -> None:
    n = 16
    src = wasm.put(np.arange(1.0, n + 1.0))
    dst = wasm.put(np.full(n, 7.0))
    dst2 = wasm.put(np.full(n, 7.0))
    try:
        codes = {
            "period 0": wasm.call("ema", src, n, 0, dst),
            "period too big": wasm.call("rsi", src, n, 100_001, dst),
            "rsi period 1": wasm.call("rsi", src, n, 1, dst),
            "negative n": wasm.call("ema", src, -1, 3, dst),
            "null pointer": wasm.call("ema", 0, n, 3, dst),
            "misaligned": wasm.call("ema", src + 4, n - 1, 3, dst),
            "past memory": wasm.call("ema", src, 1 << 28, 3, dst),
            "in place": wasm.call("ema", src, n, 3, src),
            "outputs overlap": wasm.call("stochrsi", src, n, 3, 3, 1, 1, dst, dst + 8),
            "k 0": wasm.call("stochrsi", src, n, 3, 3, 0, 1, dst, dst2),
            "fast >= slow": wasm.call("macd", src, 4, 3, 3, 1, dst, dst2, dst2 + 32),
            "nbdev nan": wasm.call("bbands", src, 4, 3, math.nan, dst, dst2, dst2 + 32),
            "nbdev -1": wasm.call("bbands", src, 4, 3, -1.0, dst, dst2, dst2 + 32),
        }
        assert {k: ERROR_CODES[v] for k, v in codes.items()} == {
            "period 0": "ERR_PERIOD",
            "period too big": "ERR_PERIOD",
            "rsi period 1": "ERR_PERIOD",
            "negative n": "ERR_LENGTH",
            "null pointer": "ERR_POINTER",
            "misaligned": "ERR_POINTER",
            "past memory": "ERR_POINTER",
            "in place": "ERR_OVERLAP",
            "outputs overlap": "ERR_OVERLAP",
            "k 0": "ERR_K",
            "fast >= slow": "ERR_FAST_GE_SLOW",
            "nbdev nan": "ERR_NBDEV",
            "nbdev -1": "ERR_NBDEV",
        }
        assert (wasm.get(dst, n) == 7.0).all() and (wasm.get(dst2, n) == 7.0).all()
    finally:
        wasm.reset()


def test_stochrsi_scratch_is_released_and_may_grow_memory(wasm: WasmIndicators) -> None:
    """stochrsi takes n + k + d doubles of scratch past the caller's blocks and gives them back."""
    wasm.reset()
    x = 100.0 + np.cumsum(np.random.default_rng(5).normal(size=50))
    src = wasm.put(x)
    k, d = wasm.alloc(8 * 50), wasm.alloc(8 * 50)
    before = wasm.memory_size()
    assert wasm.call("stochrsi", src, 50, 14, 14, 100_000, 100_000, k, d) == 0  # 1.6 MB of rings
    assert wasm.memory_size() > before
    assert np.isnan(wasm.get(k, 50)).all()
    assert wasm.alloc(8) == d + 8 * 50
    wasm.reset()


# -- parity on real data --------------------------------------------------------------------------------

REAL_CASES: list[tuple[str, list[Any]]] = [
    ("ema", [1]),
    ("ema", [12]),
    ("ema", [26]),
    ("ema", [200]),
    ("rsi", [2]),
    ("rsi", [14]),
    ("stochrsi", [14, 14, 3, 3]),
    ("stochrsi", [5, 3, 1, 1]),
    ("stochrsi", [2, 60, 7, 4]),
    ("macd", [12, 26, 9]),
    ("macd", [2, 3, 1]),
    ("macd", [19, 39, 9]),
    ("bbands", [20, 2.0]),
    ("bbands", [2, 0.0]),
    ("bbands", [50, 2.5]),
]


@pytest.fixture(scope="module", params=REAL_FILES)
def real_close(request: pytest.FixtureRequest) -> F64:
    path = DATA_DIR / request.param
    if not path.exists():
        pytest.skip(
            f"real market data not found at {path} (expected ../shared/data next to the project root)"
        )
    import pandas as pd

    return np.ascontiguousarray(pd.read_csv(path)["close"].to_numpy(dtype=np.float64))


@pytest.mark.parametrize(("name", "params"), REAL_CASES, ids=[f"{n}{tuple(p)}" for n, p in REAL_CASES])
def test_bit_exact_on_real_closes(
    wasm: WasmIndicators, real_close: F64, name: str, params: list[Any]
) -> None:
    assert real_close.shape[0] > 30_000
    check_same(wasm, name, real_close, params, "real closes: ")


# -- parity on generated series -------------------------------------------------------------------------


@st.composite
def series(draw: st.DrawFn) -> F64:
    """Random walks, constants, tiny and huge magnitudes, flat runs, and arbitrary finite doubles."""
    kind = draw(st.sampled_from(["walk", "constant", "tiny", "huge", "runs", "raw", "integers"]))
    n = draw(st.integers(0, 160))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "walk":
        x = draw(st.floats(1e-3, 1e6)) * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    elif kind == "constant":
        x = np.full(n, draw(st.floats(allow_nan=False, allow_infinity=False)))
    elif kind == "tiny":
        x = rng.normal(0.0, 1.0, n) * draw(st.sampled_from([1e-300, 5e-324, 1e-310, 1e-20]))
    elif kind == "huge":
        x = rng.uniform(-1.0, 1.0, n) * draw(st.sampled_from([1e300, 1e154, 1e200, 1.7e308]))
    elif kind == "runs":
        values = rng.normal(100.0, 1.0, max(n, 1)).round(1)
        x = np.repeat(values, rng.integers(1, 12, max(n, 1)))[:n]
    elif kind == "integers":
        x = rng.integers(-5, 5, n).astype(np.float64)
    else:
        x = np.array(draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=n)))
    return np.ascontiguousarray(x, dtype=np.float64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=series(),
    p=st.integers(2, 30),
    sp=st.integers(1, 12),
    k=st.integers(1, 6),
    d=st.integers(1, 6),
    fast=st.integers(2, 12),
    extra=st.integers(1, 20),
    nbdev=st.sampled_from([0.0, 1.0, 2.0, 2.5, 1e-3, 1e10]),
)
def test_bit_exact_on_generated_series(
    wasm: WasmIndicators, x: F64, p: int, sp: int, k: int, d: int, fast: int, extra: int, nbdev: float
) -> None:
    check_same(wasm, "ema", x, [p - 1])
    check_same(wasm, "ema", x, [p])
    check_same(wasm, "rsi", x, [p])
    check_same(wasm, "stochrsi", x, [p, sp, k, d])
    check_same(wasm, "macd", x, [fast, fast + extra, k])
    check_same(wasm, "bbands", x, [p, nbdev])


def test_signed_zeros_and_overflowing_changes(wasm: WasmIndicators) -> None:
    """RSI's up/dn are sign-bit masks in C: equal to the reference's selects for d = +-0.0 and d = +-inf."""
    zeros = np.array([0.0, -0.0, 0.0, -0.0, -0.0, 0.0, 0.0, -0.0] * 4)
    huge = np.array([1.7e308, -1.7e308, 1.7e308, 1.0, -1.7e308, 1.7e308] * 5)
    for x in (zeros, huge, np.concatenate([zeros, huge, zeros])):
        for p in (2, 3, 5):
            check_same(wasm, "rsi", x, [p])
            check_same(wasm, "stochrsi", x, [p, 2, 2, 2])
            check_same(wasm, "bbands", x, [p, 2.0])
            check_same(wasm, "macd", x, [p, p + 1, 2])
            check_same(wasm, "ema", x, [p])


# -- invalid input: same errors as processors.indicators ------------------------------------------------

INVALID: list[tuple[str, list[Any], str]] = [
    ("ema", [0], "ERR_PERIOD"),
    ("ema", [100_001], "ERR_PERIOD"),
    ("rsi", [1], "ERR_PERIOD"),
    ("rsi", [-3], "ERR_PERIOD"),
    ("stochrsi", [1, 14, 3, 3], "ERR_PERIOD"),
    ("stochrsi", [14, 0, 3, 3], "ERR_STOCH_PERIOD"),
    ("stochrsi", [14, 14, 0, 3], "ERR_K"),
    ("stochrsi", [14, 14, 3, 100_001], "ERR_D"),
    ("macd", [1, 26, 9], "ERR_FAST"),
    ("macd", [12, 100_001, 9], "ERR_SLOW"),
    ("macd", [12, 26, 0], "ERR_SIGNAL"),
    ("macd", [26, 26, 9], "ERR_FAST_GE_SLOW"),
    ("macd", [30, 26, 9], "ERR_FAST_GE_SLOW"),
    ("bbands", [1, 2.0], "ERR_PERIOD"),
    ("bbands", [20, -0.5], "ERR_NBDEV"),
    ("bbands", [20, math.inf], "ERR_NBDEV"),
    ("bbands", [20, math.nan], "ERR_NBDEV"),
]


@pytest.mark.parametrize(("name", "params", "code"), INVALID, ids=[f"{n}{tuple(p)}" for n, p, _ in INVALID])
def test_invalid_parameters_give_the_reference_error(
    wasm: WasmIndicators, name: str, params: list[Any], code: str
) -> None:
    x = 100.0 + np.arange(40.0)
    with pytest.raises(ValueError) as ref:
        reference(name, x, params)
    with pytest.raises(WasmCallError) as ours:
        getattr(wasm, name)(x, *params)
    assert ERROR_CODES[ours.value.code] == code
    assert str(ours.value) == str(ref.value)


@pytest.mark.parametrize("name", ["ema", "rsi", "stochrsi", "macd", "bbands"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", [0, 1, 7, 39])
def test_non_finite_input_gives_the_reference_error(
    wasm: WasmIndicators, name: str, bad: float, where: int
) -> None:
    params: dict[str, list[Any]] = {
        "ema": [3],
        "rsi": [3],
        "stochrsi": [3, 3, 2, 2],
        "macd": [2, 3, 2],
        "bbands": [3, 2.0],
    }
    x = 100.0 + np.arange(40.0)
    x[where] = bad
    with pytest.raises(ValueError) as ref:
        reference(name, x, params[name])
    with pytest.raises(WasmCallError) as ours:
        getattr(wasm, name)(x, *params[name])
    assert ERROR_CODES[ours.value.code] == "ERR_NONFINITE"
    assert str(ours.value) == str(ref.value)
