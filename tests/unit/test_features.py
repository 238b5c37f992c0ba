"""Features: the snapshot path (what the signal service computes) equals the batch path (training's)."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from processors.features import (
    FEATURE_NAMES,
    INDICATOR_PARAMS,
    N_FEATURES,
    N_RETURNS,
    SNAPSHOT_FIELDS,
    feature_matrix,
    features_from_snapshot,
    is_valid,
    log_return,
    log_returns,
    snapshot_columns,
)
from streams.config import Settings

FILES = ("ftx_btc-perp_2022-01_1m.csv", "fxcm_gbpusd_2012_m1_bid.csv")
FIRST_VALID = 33  # the MACD signal line (26 + 9 - 2) is the last to warm up


def _bars(name: str, limit: int | None = None) -> dict[str, np.ndarray]:
    path = Path(Settings().data_dir) / name
    if not path.is_file():
        pytest.skip(f"real data {path} is absent (see ../shared/data/README.md)")
    df = pd.read_csv(path, nrows=limit)
    out = {c: df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close")}
    out["volume"] = df["volume"].to_numpy(np.float64) if "volume" in df else np.zeros(len(df))
    return out


def _args(b: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return b["open"], b["high"], b["low"], b["close"], b["volume"]


def test_feature_names_are_unique_and_match_the_width() -> None:
    assert len(set(FEATURE_NAMES)) == N_FEATURES == 12 + N_RETURNS
    X, valid = feature_matrix(*_args(_bars(FILES[0], 200)))
    assert X.dtype == np.float32 and X.shape == (200, N_FEATURES)
    assert valid.dtype == np.bool_ and valid.shape == (200,)


@pytest.mark.parametrize("name", FILES)
def test_snapshot_rows_equal_batch_rows_bit_for_bit(name: str) -> None:
    """Snapshot dicts built row by row from the batch indicator arrays give exactly feature_matrix's rows."""
    b = _bars(name)
    X, valid = feature_matrix(*_args(b))
    cols = snapshot_columns(*_args(b))
    lr = log_returns(b["close"])
    rows = np.r_[np.arange(0, 200), np.arange(200, len(X), 97), len(X) - 1]
    for i in rows:
        snap = {k: float(v[i]) for k, v in cols.items()}
        x = features_from_snapshot(snap, lr[max(1, i - 20) : i + 1].tolist())
        assert x.tobytes() == X[i].tobytes(), f"row {i}: {x} != {X[i]}"
        assert bool(is_valid(x)) == bool(valid[i])


def test_indicatorset_stream_gives_the_training_features() -> None:
    """Bars fed one by one through IndicatorSet (as the service does) give exactly feature_matrix's rows."""
    try:
        from processors.indicators import IndicatorSet
    except ImportError:
        pytest.skip("processors.indicators.IndicatorSet does not exist yet: this test runs once it does")
    for name in FILES:
        b = _bars(name, 6000)
        X, _ = feature_matrix(*_args(b))
        ind = IndicatorSet()
        returns: deque[float] = deque(maxlen=N_RETURNS)
        prev = math.nan
        for i in range(len(X)):
            o, h, lo, c, v = (float(b[k][i]) for k in ("open", "high", "low", "close", "volume"))
            snap = ind.update(o, h, lo, c, v)
            if i > 0:
                returns.append(log_return(prev, c))
            prev = c
            x = features_from_snapshot({**snap, "close": c}, returns)
            assert x.tobytes() == X[i].tobytes(), f"{name} bar {i}: {x} != {X[i]}"


def test_indicator_parameters_are_the_indicatorset_defaults() -> None:
    try:
        from processors.indicators import IndicatorConfig
    except ImportError:
        pytest.skip("processors.indicators.IndicatorConfig does not exist yet")
    defaults = IndicatorConfig()
    assert {k: getattr(defaults, k) for k in INDICATOR_PARAMS} == INDICATOR_PARAMS


def test_warm_up_rows_are_invalid_and_then_all_rows_are_valid() -> None:
    X, valid = feature_matrix(*_args(_bars(FILES[0], 3000)))
    assert not valid[:FIRST_VALID].any()
    assert valid[FIRST_VALID:].all()
    assert np.isfinite(X[valid]).all()


def test_gbpusd_without_volume_is_predictable() -> None:
    """Volume is not a feature: bars without volume (FX) have valid features after warm-up."""
    b = _bars(FILES[1], 500)
    assert not b["volume"].any()
    _, valid = feature_matrix(*_args(b))
    assert valid[FIRST_VALID:].all()


def test_too_few_returns_means_hold() -> None:
    snap = dict.fromkeys(SNAPSHOT_FIELDS, 100.0)
    assert is_valid(features_from_snapshot(snap, [0.001] * N_RETURNS))
    assert not is_valid(features_from_snapshot(snap, [0.001] * (N_RETURNS - 1)))
    # Only the newest N_RETURNS are used, newest first.
    x = features_from_snapshot(snap, [9.0, *range(N_RETURNS)])
    assert x[FEATURE_NAMES.index("ret_1")] == N_RETURNS - 1
    assert x[FEATURE_NAMES.index(f"ret_{N_RETURNS}")] == 0


def test_nan_indicator_or_bad_close_means_hold() -> None:
    snap = dict.fromkeys(SNAPSHOT_FIELDS, 100.0)
    assert not is_valid(features_from_snapshot({**snap, "stochrsi_d": math.nan}, [0.0] * N_RETURNS))
    assert not is_valid(features_from_snapshot({**snap, "close": 0.0}, [0.0] * N_RETURNS))
    assert not is_valid(features_from_snapshot({**snap, "close": -1.0}, [0.0] * N_RETURNS))


def test_features_are_scale_free() -> None:
    """The same bars at 1000x the price give the same features (up to float rounding)."""
    b = _bars(FILES[1], 2000)
    X1, v1 = feature_matrix(*_args(b))
    scaled = {k: (v * 1000.0 if k != "volume" else v) for k, v in b.items()}
    X2, v2 = feature_matrix(*_args(scaled))
    assert (v1 == v2).all()
    np.testing.assert_allclose(X2[v1], X1[v1], rtol=1e-4, atol=1e-6)


def test_snapshot_missing_fields_are_named() -> None:
    with pytest.raises(KeyError, match="atr"):
        features_from_snapshot({k: 1.0 for k in SNAPSHOT_FIELDS if k != "atr"}, [])


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        feature_matrix([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0], [0.0, 0.0])
