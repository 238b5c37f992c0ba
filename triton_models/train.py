"""Train, evaluate and export the signal model: P(close ``HORIZON`` bars ahead > close now).

Usage::

    python -m triton_models.train          # C search on validation; writes triton_models/signal/1/model.onnx
                                           # and triton_models/signal/metrics.json
    python -m triton_models.train --quick  # fixed C; writes to a temporary directory unless --out DIR
    python -m triton_models.train --out DIR --data-dir ../shared/data

Data: the real 1-minute bars in ``../shared/data`` (:data:`DATASETS`). Features: :mod:`processors.features`
(the batch path, identical to what the service computes from snapshots). Per instrument, rows are split by
time into train / validation / test (:data:`SPLIT`), with a gap of ``HORIZON`` bars before each boundary so no
label looks into the next split; warm-up rows (any NaN feature) are dropped. No shuffling across time.

Model: standardized logistic regression (scikit-learn), one model for all instruments (the features are
scale-free). ``C`` is chosen on validation AUC (mean over instruments) with a model fit on train; the final
model is fit on train + validation and evaluated once on test. Training runs with one BLAS thread, so a re-run
with the same library versions gives the same coefficients and the same ONNX bytes.

Export: skl2onnx, then a ``Slice`` so the graph has one input ``features`` float32 ``[-1, F]`` and one output
``probability`` float32 ``[-1, 1]`` (probability of "up"). The ONNX metadata carries ``model_version``,
``feature_names`` and ``horizon``; the version string is ``logreg-k<HORIZON>-<12 hex>``, a hash of the
training data, features and coefficients.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from processors.features import FEATURE_NAMES, N_FEATURES, feature_matrix

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
MODEL_DIR = Path(__file__).resolve().parent / "signal"

#: Instrument name -> 1-minute bar file in the data directory.
DATASETS: dict[str, str] = {
    "BTC-PERP": "ftx_btc-perp_2022-01_1m.csv",
    "GBPUSD": "fxcm_gbpusd_2012_m1_bid.csv",
}
#: Bars ahead: the label is ``close[t + HORIZON] > close[t]`` (a tie counts as "not up").
HORIZON = 5
#: Fractions of each instrument's bars, by time: train, validation; the rest is test.
SPLIT = (0.70, 0.15)
#: Inverse L2 regularization strengths tried on validation, and the one ``--quick`` uses.
C_GRID = (0.001, 0.01, 0.1, 1.0)
DEFAULT_C = 0.01
SEED = 0
INPUT_NAME = "features"
OUTPUT_NAME = "probability"
ONNX_OPSET = 17

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]
Idx = npt.NDArray[np.intp]


class TrainingDataError(ValueError):
    """The training data is missing or malformed."""


@dataclass(frozen=True)
class Instrument:
    """One instrument's features, labels and time splits (row indices into ``X``; warm-up rows excluded)."""

    name: str
    X: F32
    y: I8
    moved: npt.NDArray[np.bool_]  # close[t + HORIZON] != close[t]
    train: Idx
    val: Idx
    test: Idx
    sha256: str
    rows: int


def load_bars(path: Path) -> dict[str, npt.NDArray[np.float64]]:
    """Read a 1-minute bar CSV (timestamp, open, high, low, close[, volume]); volume 0 when absent."""
    if not path.is_file():
        raise TrainingDataError(
            f"{path} does not exist: the training data are the real recordings in ../shared/data "
            "(see its README); pass --data-dir to point elsewhere"
        )
    df = pd.read_csv(path)
    missing = [c for c in ("timestamp", "open", "high", "low", "close") if c not in df.columns]
    if missing:
        raise TrainingDataError(
            f"{path} lacks the column(s) {', '.join(missing)}: expected 1-minute OHLC bars"
        )
    df = df.sort_values("timestamp", kind="stable")
    out = {c: df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close")}
    out["volume"] = df["volume"].to_numpy(np.float64) if "volume" in df.columns else np.zeros(len(df))
    return out


def labels(close: npt.NDArray[np.float64], horizon: int = HORIZON) -> tuple[I8, npt.NDArray[np.bool_]]:
    """``(y, moved)``: ``y[t] = close[t + horizon] > close[t]``; the last ``horizon`` rows have no label (0).

    >>> y, moved = labels(np.array([1.0, 2.0, 2.0, 1.0]), horizon=1)
    >>> y.tolist(), moved.tolist()
    ([1, 0, 0, 0], [True, False, True, False])
    """
    n = close.shape[0]
    y = np.zeros(n, dtype=np.int8)
    moved = np.zeros(n, dtype=bool)
    y[: n - horizon] = close[horizon:] > close[: n - horizon]
    moved[: n - horizon] = close[horizon:] != close[: n - horizon]
    return y, moved


def time_splits(n: int, horizon: int = HORIZON, split: tuple[float, float] = SPLIT) -> tuple[Idx, Idx, Idx]:
    """Row indices of train, validation and test, in time order, each ending ``horizon`` rows before the next
    split starts (and before the end), so every label lies inside its own split.

    >>> [s.tolist() for s in time_splits(20, horizon=2, split=(0.5, 0.25))]
    [[0, 1, 2, 3, 4, 5, 6, 7], [10, 11, 12], [15, 16, 17]]
    """
    a = int(n * split[0])
    b = int(n * (split[0] + split[1]))
    return np.arange(0, a - horizon), np.arange(a, b - horizon), np.arange(b, n - horizon)


def load_instrument(name: str, path: Path, horizon: int = HORIZON) -> Instrument:
    bars = load_bars(path)
    X, valid = feature_matrix(bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"])
    y, moved = labels(bars["close"], horizon)
    train, val, test = (s[valid[s]] for s in time_splits(len(y), horizon))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Instrument(name, X, y, moved, train, val, test, digest, len(y))


def load_all(data_dir: Path, horizon: int = HORIZON) -> list[Instrument]:
    return [load_instrument(name, data_dir / file, horizon) for name, file in DATASETS.items()]


def fit(X: F32, y: I8, c: float) -> Any:
    """A standardized logistic regression, fit with one BLAS thread (bit-reproducible)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=c, tol=1e-10, max_iter=10_000, random_state=SEED)),
        ]
    )
    with threadpool_limits(limits=1):
        model.fit(X, y)
    return model


def predict(model: Any, X: F32) -> npt.NDArray[np.float64]:
    """P(up) from the scikit-learn model, float64 ``[n]``."""
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


def evaluate(
    p: npt.NDArray[np.float64],
    y: I8,
    moved: npt.NDArray[np.bool_],
    majority: int,
    confident: float,
) -> dict[str, Any]:
    """Out-of-sample metrics of probabilities ``p`` against labels ``y``.

    - ``auc``: ROC AUC, with a 95% moving-block bootstrap interval ``auc_ci95`` (:func:`auc_ci95`);
      ``accuracy``: ``(p > 0.5) == y``;
    - ``baseline_accuracy``: always predicting ``majority`` (the fitting rows' majority class);
      ``best_constant_accuracy``: the better constant chosen in hindsight on these rows (a stricter bar);
    - ``hit_rate``: direction calls (up when p > 0.5, down otherwise) that were right, over the rows where the
      price moved (ties are neither right nor wrong);
    - ``hit_rate_confident`` / ``coverage_confident``: the same over the rows with ``|p - 0.5| >= confident``
      (the validation split's 90th percentile), and the share of rows that qualify.
    """
    from sklearn.metrics import roc_auc_score

    up = p > 0.5
    conf = np.abs(p - 0.5) >= confident
    lo, hi = auc_ci95(p, y)
    moved_conf = moved & conf
    return {
        "n": int(y.shape[0]),
        "positive_rate": float(y.mean()),
        "auc": float(roc_auc_score(y, p)),
        "auc_ci95": [lo, hi],
        "accuracy": float(np.mean(up == (y == 1))),
        "baseline_accuracy": float(np.mean(y == majority)),
        "best_constant_accuracy": float(max(y.mean(), 1.0 - y.mean())),
        "hit_rate": float(np.mean(up[moved] == (y[moved] == 1))),
        "hit_rate_confident": (
            float(np.mean(up[moved_conf] == (y[moved_conf] == 1))) if moved_conf.any() else None
        ),
        "coverage_confident": float(conf.mean()),
    }


def auc_ci95(
    p: npt.NDArray[np.float64], y: I8, block: int = 60, rounds: int = 200, seed: int = SEED
) -> tuple[float, float]:
    """95% interval of the AUC from a moving-block bootstrap (blocks of ``block`` consecutive rows, so the
    overlap of neighbouring ``HORIZON``-bar labels stays inside blocks). Seeded: the same interval every run.
    """
    from sklearn.metrics import roc_auc_score

    n = y.shape[0]
    if n < 2 * block:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(rounds, -(-n // block)))
    aucs = []
    for row in starts:
        idx = (row[:, None] + np.arange(block)[None, :]).ravel()[:n]
        if 0 < y[idx].sum() < n:
            aucs.append(roc_auc_score(y[idx], p[idx]))
    lo, hi = np.quantile(aucs, [0.025, 0.975])
    return (round(float(lo), 4), round(float(hi), 4))


def _stack(instruments: Sequence[Instrument], *splits: str) -> tuple[F32, I8]:
    """The rows of the named splits, instrument by instrument, each in time order."""
    rows = [np.concatenate([getattr(i, s) for s in splits]) for i in instruments]
    X = np.vstack([i.X[r] for i, r in zip(instruments, rows, strict=True)])
    y = np.concatenate([i.y[r] for i, r in zip(instruments, rows, strict=True)])
    return X, y


def fit_final(instruments: Sequence[Instrument], c: float) -> Any:
    """The deployed model: fit on the train and validation rows of every instrument."""
    X, y = _stack(instruments, "train", "val")
    return fit(X, y, c)


def model_version(model: Any, instruments: Sequence[Instrument], horizon: int) -> str:
    h = hashlib.sha256()
    for inst in instruments:
        h.update(inst.sha256.encode())
    h.update(",".join(FEATURE_NAMES).encode())
    h.update(str(horizon).encode())
    for step in ("scale", "clf"):
        est = model.named_steps[step]
        for attr in ("mean_", "scale_", "coef_", "intercept_"):
            if hasattr(est, attr):
                h.update(np.ascontiguousarray(getattr(est, attr), dtype=np.float64).tobytes())
    return f"logreg-k{horizon}-{h.hexdigest()[:12]}"


def to_onnx(model: Any, version: str, horizon: int = HORIZON) -> bytes:
    """The fitted pipeline as ONNX bytes: ``features`` float32 [-1, F] -> ``probability`` float32 [-1, 1]."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    clf = model.named_steps["clf"]
    onx = convert_sklearn(
        model,
        name="signal",
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": 1},
    )
    graph = onx.graph
    probs = next(o.name for o in graph.output if o.name == "probabilities")
    graph.initializer.extend(
        [
            helper.make_tensor("up_start", TensorProto.INT64, [1], [1]),
            helper.make_tensor("up_end", TensorProto.INT64, [1], [2]),
            helper.make_tensor("up_axis", TensorProto.INT64, [1], [1]),
        ]
    )
    graph.node.append(
        helper.make_node("Slice", [probs, "up_start", "up_end", "up_axis"], [OUTPUT_NAME], name="take_up")
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1]))
    # skl2onnx may list the default domain twice; keep one entry per domain.
    seen: dict[str, int] = {}
    for op in onx.opset_import:
        seen[op.domain] = max(seen.get(op.domain, 0), op.version)
    del onx.opset_import[:]
    for domain, ver in sorted(seen.items()):
        onx.opset_import.append(helper.make_opsetid(domain, ver))
    onx.doc_string = f"P(close {horizon} bars ahead > close) from processors.features; {version}"
    del onx.metadata_props[:]
    for key, value in (
        ("model_version", version),
        ("feature_names", ",".join(FEATURE_NAMES)),
        ("horizon", str(horizon)),
    ):
        onx.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(onx, full_check=True)
    return bytes(onx.SerializeToString())


def onnx_predict(onnx_bytes: bytes, X: F32) -> npt.NDArray[np.float32]:
    """Run the exported model with onnxruntime (one thread): float32 ``[n]``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    out = sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class TrainResult:
    model: Any
    onnx: bytes
    metrics: dict[str, Any]
    instruments: list[Instrument]


def train(
    data_dir: Path = DEFAULT_DATA_DIR, quick: bool = False, horizon: int = HORIZON, log: Any = None
) -> TrainResult:
    """Select C on validation (or take ``DEFAULT_C`` when ``quick``), fit on train + validation, test once."""
    say = log or (lambda _msg: None)
    began = time.perf_counter()
    instruments = load_all(Path(data_dir), horizon)
    X_tr, y_tr = _stack(instruments, "train")
    majority = int(y_tr.mean() > 0.5)

    search: dict[str, float] = {}
    for c in (DEFAULT_C,) if quick else C_GRID:
        m = fit(X_tr, y_tr, c)
        aucs = [
            evaluate(predict(m, i.X[i.val]), i.y[i.val], i.moved[i.val], majority, 1.0)["auc"]
            for i in instruments
        ]
        search[str(c)] = float(np.mean(aucs))
        say(f"C={c}: validation AUC {search[str(c)]:.4f} ({', '.join(f'{a:.4f}' for a in aucs)})")
    best_c = float(max(search, key=lambda k: search[k]))

    # Validation metrics of the train-only model with the chosen C; the confidence threshold comes from here.
    m_tr = fit(X_tr, y_tr, best_c)
    X_va, y_va = _stack(instruments, "val")
    confident = float(np.quantile(np.abs(predict(m_tr, X_va) - 0.5), 0.9))
    validation = {
        i.name: evaluate(predict(m_tr, i.X[i.val]), i.y[i.val], i.moved[i.val], majority, confident)
        for i in instruments
    }

    # Final model: train + validation. Test is touched only here.
    model = fit_final(instruments, best_c)
    majority_fit = int(np.concatenate([y_tr, y_va]).mean() > 0.5)
    version = model_version(model, instruments, horizon)
    onnx_bytes = to_onnx(model, version, horizon)

    test: dict[str, Any] = {}
    for i in instruments:
        test[i.name] = evaluate(
            predict(model, i.X[i.test]), i.y[i.test], i.moved[i.test], majority_fit, confident
        )
    X_te = np.vstack([i.X[i.test] for i in instruments])
    y_te = np.concatenate([i.y[i.test] for i in instruments])
    moved_te = np.concatenate([i.moved[i.test] for i in instruments])
    test["all"] = evaluate(predict(model, X_te), y_te, moved_te, majority_fit, confident)
    p_sk = predict(model, X_te)
    onnx_max_diff = float(np.max(np.abs(onnx_predict(onnx_bytes, X_te) - p_sk)))

    clf = model.named_steps["clf"]
    metrics: dict[str, Any] = {
        "model_version": version,
        "model": {
            "family": "logistic regression (StandardScaler + LogisticRegression, lbfgs, L2)",
            "C": best_c,
            "coefficients": dict(
                zip(
                    FEATURE_NAMES,
                    (float(x) for x in clf.coef_[0] / model.named_steps["scale"].scale_),
                    strict=True,
                )
            ),
            "sklearn_onnx_max_abs_diff_test": onnx_max_diff,
        },
        "target": f"close[t+{horizon}] > close[t] (1-minute bars; a tie is 'not up')",
        "horizon_bars": horizon,
        "feature_names": list(FEATURE_NAMES),
        "split": {
            "fractions": {"train": SPLIT[0], "validation": SPLIT[1], "test": round(1 - sum(SPLIT), 10)},
            "gap_bars": horizon,
            "per_instrument": {
                i.name: {"bars": i.rows, "train": len(i.train), "validation": len(i.val), "test": len(i.test)}
                for i in instruments
            },
            "final_fit_on": "train + validation",
        },
        "c_search_validation_auc": search,
        "confident_threshold_abs_p_minus_half": confident,
        "baseline": "always predict the majority class of the fitting rows "
        f"({'up' if majority_fit else 'not up'})",
        "validation": validation,
        "test": test,
        "data": {
            "files": {i.name: {"file": DATASETS[i.name], "sha256": i.sha256} for i in instruments},
            "sha256": hashlib.sha256("".join(i.sha256 for i in instruments).encode()).hexdigest(),
        },
        "train_seconds": round(time.perf_counter() - began, 2),
        "quick": quick,
    }
    return TrainResult(model, onnx_bytes, metrics, instruments)


_VERSION_PARAM = re.compile(r'parameters \{ key: "model_version" value: \{ string_value: "[^"]*" \} \}')


def stamp_config(path: Path, version: str) -> None:
    """Set the ``model_version`` parameter of a Triton config file (added at the end if absent).

    Triton reports it in the model config; the client compares it with its fallback's version, and the CPU
    deployment's ``model.py`` refuses to load a ``model.onnx`` of another version.
    """
    line = f'parameters {{ key: "model_version" value: {{ string_value: "{version}" }} }}'
    text = path.read_text()
    if _VERSION_PARAM.search(text):
        text = _VERSION_PARAM.sub(line, text)
    else:
        note = "# Set by triton_models/train.py: the version of 1/model.onnx."
        text = f"{text.rstrip()}\n{note}\n{line}\n"
    path.write_text(text)


def write(result: TrainResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<out>/1/model.onnx`` and ``<out>/metrics.json``; stamp the version into the Triton configs
    that exist there (``config.pbtxt``, ``configs/cpu.pbtxt``)."""
    onnx_path = out_dir / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path.write_bytes(result.onnx)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(result.metrics, indent=2, sort_keys=True) + "\n")
    for config in (out_dir / "config.pbtxt", out_dir / "configs" / "cpu.pbtxt"):
        if config.is_file():
            stamp_config(config, result.metrics["model_version"])
    return onnx_path, metrics_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m triton_models.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="no C search; writes to a temporary directory unless --out is given",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="directory of the bar CSVs")
    parser.add_argument("--out", type=Path, default=None, help=f"model directory (default {MODEL_DIR})")
    args = parser.parse_args(argv)
    try:
        result = train(args.data_dir, quick=args.quick, log=lambda msg: print(msg, file=sys.stderr))
    except TrainingDataError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    out = args.out or (None if args.quick else MODEL_DIR)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="signal-quick-"))
    onnx_path, metrics_path = write(result, out)
    m = result.metrics
    print(f"model {m['model_version']} (C={m['model']['C']}) in {m['train_seconds']} s")
    print(f"  wrote {onnx_path} and {metrics_path}")
    for name, r in m["test"].items():
        print(
            f"  test {name:9s} n={r['n']:6d} AUC {r['auc']:.4f}  accuracy {r['accuracy']:.4f} "
            f"(majority {r['baseline_accuracy']:.4f}, best constant {r['best_constant_accuracy']:.4f})  "
            f"hit rate {r['hit_rate']:.4f}  "
            f"confident {r['hit_rate_confident']:.4f} @ {r['coverage_confident']:.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
