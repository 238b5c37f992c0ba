"""The in-process fallback equals scikit-learn on held-out real data, and the client's batching, timeouts and
breaker work without any server (a fake Triton, a dead port, a socket that never answers)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from processors.features import N_FEATURES
from streams.circuit import BreakerState
from streams.config import Settings, TritonSettings
from streams.inference import DEFAULT_MODEL_PATH, ModelFileError, OnnxModel, SignalModelClient
from triton_models import train

METRICS = json.loads((DEFAULT_MODEL_PATH.parent.parent / "metrics.json").read_text())


@pytest.fixture(scope="module")
def refit() -> tuple[object, np.ndarray, list[train.Instrument]]:
    """The committed model's recipe re-run: fit on train + validation with the committed C; test rows."""
    data_dir = Path(Settings().data_dir)
    if not (data_dir / train.DATASETS["BTC-PERP"]).is_file():
        pytest.skip(f"real data absent in {data_dir} (see ../shared/data/README.md)")
    instruments = train.load_all(data_dir)
    model = train.fit_final(instruments, float(METRICS["model"]["C"]))
    X_test = np.vstack([i.X[i.test] for i in instruments])
    return model, X_test, instruments


def test_fallback_equals_sklearn_on_held_out_rows(
    refit: tuple[object, np.ndarray, list[train.Instrument]],
) -> None:
    model, X_test, _ = refit
    assert len(X_test) > 10_000
    p_ort = OnnxModel().predict(X_test)
    p_sk = train.predict(model, X_test)
    np.testing.assert_allclose(p_ort, p_sk, rtol=0, atol=1e-5)
    assert not np.array_equal(p_ort.round(2), np.full_like(p_ort, 0.5).round(2))  # not a constant model


def test_training_is_reproducible(refit: tuple[object, np.ndarray, list[train.Instrument]]) -> None:
    """Re-fitting gives the committed version string (a hash of data, features and coefficients) and bytes."""
    model, _, instruments = refit
    version = train.model_version(model, instruments, train.HORIZON)
    assert version == METRICS["model_version"] == OnnxModel().version
    assert train.to_onnx(model, version) == DEFAULT_MODEL_PATH.read_bytes(), (
        "the committed model.onnx differs from a re-export: re-run `python -m triton_models.train`"
    )


def test_fallback_is_deterministic_and_batch_invariant(
    refit: tuple[object, np.ndarray, list[train.Instrument]],
) -> None:
    _, X_test, _ = refit
    X = X_test[:500]
    m = OnnxModel()
    batched = m.predict(X)
    assert np.array_equal(batched, m.predict(X))
    assert np.array_equal(batched, OnnxModel().predict(X))
    # onnxruntime's GEMM may sum in another order for another batch size: float32 ulps, far below 1e-6.
    one_by_one = np.concatenate([m.predict(X[i : i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-6)


def test_missing_model_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"python -m triton_models\.train"):
        OnnxModel(tmp_path / "model.onnx")


# ---- the client without a server ------------------------------------------------------------------------


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, N_FEATURES)) * 0.01).astype(np.float32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeTriton:
    """Stands in for SignalModelClient._triton: answers each row with its first feature (so the order of the
    answers is checked exactly) and records the batch sizes."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[int] = []

    async def __call__(self, X: np.ndarray) -> np.ndarray:
        self.batches.append(X.shape[0])
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("fake Triton is down")
        return X[:, 0].astype(np.float64)


def _client(**overrides: object) -> SignalModelClient:
    settings = TritonSettings(**{"max_batch": 64, "max_wait_us": 2000, **overrides})  # type: ignore[arg-type]
    return SignalModelClient(settings)


async def test_concurrent_callers_are_micro_batched_in_order() -> None:
    client = _client()
    fake = FakeTriton()
    client._triton = fake  # type: ignore[method-assign]
    X = _rows(1000)
    preds = await asyncio.gather(*(client.predict(X[i : i + 1]) for i in range(len(X))))
    await client.close()
    assert all(p.path == "triton" and p.model_version == client.model_version for p in preds)
    np.testing.assert_array_equal(np.concatenate([p.probabilities for p in preds]), X[:, 0])
    assert sum(fake.batches) == 1000
    assert max(fake.batches) <= 64
    assert len(fake.batches) <= 1000 // 64 + 2


async def test_multi_row_requests_are_kept_whole_and_big_ones_chunked() -> None:
    client = _client()
    fake = FakeTriton()
    client._triton = fake  # type: ignore[method-assign]
    X = _rows(300)
    small, big = await asyncio.gather(client.predict(X[:40]), client.predict(X))
    await client.close()
    np.testing.assert_array_equal(small.probabilities, X[:40, 0])
    np.testing.assert_array_equal(big.probabilities, X[:, 0])
    assert big.path == small.path == "triton"
    assert max(fake.batches) <= 64 and sum(fake.batches) == 340


async def test_failures_fall_back_and_open_the_breaker() -> None:
    client = _client(breaker_failures=3, breaker_cooldown_ms=60_000)
    fake = FakeTriton(fail=True)
    client._triton = fake  # type: ignore[method-assign]
    X = _rows(10)
    for i in range(10):
        p = await client.predict(X[i : i + 1])
        assert p.path == "fallback" and p.model_version == client.model_version
        np.testing.assert_array_equal(p.probabilities, client.fallback.predict(X[i : i + 1]))
    await client.close()
    assert len(fake.batches) == 3  # no Triton call once the breaker is open
    assert client.breaker_state is BreakerState.OPEN
    assert client.stats.fallback_rows == 10 and "fake Triton is down" in client.stats.last_error


async def test_breaker_probes_and_closes_when_triton_is_back() -> None:
    client = _client(breaker_failures=1, breaker_cooldown_ms=0)
    fake = FakeTriton(fail=True)
    client._triton = fake  # type: ignore[method-assign]
    X = _rows(1)
    assert (await client.predict(X)).path == "fallback"
    assert client.breaker_state is BreakerState.OPEN
    fake.fail = False
    assert (await client.predict(X)).path == "triton"  # the half-open probe
    assert client.breaker_state is BreakerState.CLOSED
    await client.close()


async def test_dead_port_falls_back_and_opens_the_breaker() -> None:
    client = _client(grpc_url=f"127.0.0.1:{_free_port()}", breaker_failures=2, timeout_ms=2000)
    X = _rows(5)
    preds = [await client.predict(X[i : i + 1]) for i in range(5)]
    await client.close()
    assert [p.path for p in preds] == ["fallback"] * 5
    assert client.breaker_state is BreakerState.OPEN
    assert client.stats.triton_failures == 2


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: every gRPC call runs into its deadline."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


async def test_a_slow_server_times_out_into_the_fallback(silent_server: int) -> None:
    client = _client(grpc_url=f"127.0.0.1:{silent_server}", timeout_ms=50, breaker_failures=2)
    X = _rows(3)
    preds = [await client.predict(X[i : i + 1]) for i in range(3)]
    await client.close()
    assert [p.path for p in preds] == ["fallback"] * 3
    assert client.breaker_state is BreakerState.OPEN
    assert client.stats.triton_failures == 2


async def test_bad_inputs_are_refused_with_the_fix() -> None:
    client = _client()
    with pytest.raises(ValueError, match=r"shape \[n, 20\]"):
        await client.predict(np.zeros((2, 3), dtype=np.float32))
    bad = _rows(3)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"warm-up.*HOLD"):
        await client.predict(bad)
    empty = await client.predict(np.zeros((0, N_FEATURES), dtype=np.float32))
    assert empty.probabilities.shape == (0,)
    one = await client.predict(_rows(1)[0])  # a single row as a 1-D array
    assert one.probabilities.shape == (1,)
    await client.close()
