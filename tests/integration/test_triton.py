"""The signal model on the real Triton server of the local stack (``stockpulse stack up``).

The session fixture ``stack_settings`` starts the stack when needed. ``signal_triton`` then makes sure Triton
serves the committed ``triton_models/signal`` (a server started before the model existed, or before the model
was retrained, is restarted once; never with STOCKPULSE_TEST_EXTERNAL_STACK=1).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient

from processors.features import N_FEATURES, feature_matrix
from streams.circuit import BreakerState
from streams.config import Settings, TritonSettings
from streams.inference import DEFAULT_MODEL_PATH, OnnxModel, SignalModelClient
from tests.support.net import TcpProxy
from tests.support.net import free_port as _free_port

pytestmark = pytest.mark.integration

MODEL = "signal"
FILES = ("ftx_btc-perp_2022-01_1m.csv", "fxcm_gbpusd_2012_m1_bid.csv")


def _real_features(settings: Settings, per_file: int = 3000) -> np.ndarray:
    out = []
    for name in FILES:
        path = Path(settings.data_dir) / name
        if not path.is_file():
            pytest.skip(f"real data {path} is absent (see ../shared/data/README.md)")
        df = pd.read_csv(path).tail(per_file + 100)
        vol = df["volume"].to_numpy(float) if "volume" in df else np.zeros(len(df))
        X, valid = feature_matrix(*(df[c].to_numpy(float) for c in ("open", "high", "low", "close")), vol)
        out.append(X[valid][-per_file:])
    return np.vstack(out)


def _triton_matches_fallback(url: str) -> bool:
    probe = np.random.default_rng(1).standard_normal((64, N_FEATURES)).astype(np.float32) * 0.01
    local = OnnxModel()
    with grpcclient.InferenceServerClient(url) as c:
        if not c.is_model_ready(MODEL):
            return False
        params = c.get_model_config(MODEL).config.parameters
        if "model_version" not in params or params["model_version"].string_value != local.version:
            return False
        inp = grpcclient.InferInput("features", list(probe.shape), "FP32")
        inp.set_data_from_numpy(probe)
        served = c.infer(MODEL, [inp]).as_numpy("probability").reshape(-1)
    return bool(np.max(np.abs(served - local.predict(probe))) <= 1e-6)


@pytest.fixture(scope="session")
def signal_triton(stack_settings: Settings) -> TritonSettings:
    """Triton settings of the stack, with ``signal`` loaded from the committed files."""
    url = stack_settings.triton.grpc_url
    if os.environ.get("STOCKPULSE_TEST_EXTERNAL_STACK") != "1":
        from infra.local import stack

        # Earlier tests stop and start Triton; tritonserver 2.51 has been seen to die (SIGSEGV) when a client
        # disconnects. Start it again if it is not up (a no-op when it is), and show why it was down.
        (status,) = stack.status(stack_settings, ["triton"])
        if not status.healthy:
            print(
                "local Triton was down; its log ends:",
                *stack.logs(stack_settings, "triton", 15).get("triton", []),
            )
            stack.up(stack_settings, ["triton"])
    if _triton_matches_fallback(url):
        return stack_settings.triton
    if os.environ.get("STOCKPULSE_TEST_EXTERNAL_STACK") == "1":
        pytest.fail(
            f"Triton at {url} does not serve the committed '{MODEL}' model: deploy triton_models/signal"
        )
    # The local Triton loads its repository at start (model control mode NONE): a restart picks the model up.
    from infra.local import stack

    stack.down(stack_settings, ["triton"])
    stack.up(stack_settings, ["triton"])
    if not _triton_matches_fallback(url):
        logs = "\n".join(stack.logs(stack_settings, "triton", 30).get("triton", []))
        pytest.fail(f"Triton at {url} still does not serve '{MODEL}' after a restart; its log ends:\n{logs}")
    return stack_settings.triton


def _settings(base: TritonSettings, **overrides: object) -> TritonSettings:
    # A generous deadline: these tests check paths and batching, not latency, on a shared 2-core machine.
    return base.model_copy(update={"timeout_ms": 10_000, **overrides})


def test_triton_serves_signal_and_is_ready(signal_triton: TritonSettings) -> None:
    with grpcclient.InferenceServerClient(signal_triton.grpc_url) as c:
        assert c.is_server_live() and c.is_server_ready()
        assert c.is_model_ready(MODEL)
        meta = c.get_model_metadata(MODEL)
        assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
            ("features", "FP32", [-1, N_FEATURES])
        ]
        assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == [
            ("probability", "FP32", [-1, 1])
        ]
        config = c.get_model_config(MODEL).config
        assert config.backend == "python" and config.HasField("dynamic_batching")
        assert config.parameters["model_version"].string_value == OnnxModel().version


async def test_triton_equals_fallback_on_real_features(
    signal_triton: TritonSettings, stack_settings: Settings
) -> None:
    X = _real_features(stack_settings)
    async with SignalModelClient(_settings(signal_triton)) as client:
        batched = await client.predict(X)  # chunked into max_batch requests
        singles = await asyncio.gather(*(client.predict(X[i : i + 1]) for i in range(0, len(X), 7)))
        local = client.fallback.predict(X)
        version = client.model_version
    assert batched.path == "triton" and batched.model_version == version
    np.testing.assert_allclose(batched.probabilities, local, rtol=0, atol=1e-6)
    assert {p.path for p in singles} == {"triton"}
    np.testing.assert_allclose(
        np.concatenate([p.probabilities for p in singles]), local[::7], rtol=0, atol=1e-6
    )


def _counts(url: str) -> tuple[int, int]:
    with grpcclient.InferenceServerClient(url) as c:
        (stats,) = c.get_inference_statistics(MODEL).model_stats
    return int(stats.inference_count), int(stats.execution_count)


async def test_concurrent_callers_are_batched(
    signal_triton: TritonSettings, stack_settings: Settings
) -> None:
    X = _real_features(stack_settings, per_file=1000)
    inferences0, executions0 = _counts(signal_triton.grpc_url)
    async with SignalModelClient(_settings(signal_triton)) as client:
        preds = await asyncio.gather(*(client.predict(X[i : i + 1]) for i in range(len(X))))
        stats = client.stats
    inferences, executions = (
        a - b for a, b in zip(_counts(signal_triton.grpc_url), (inferences0, executions0), strict=True)
    )
    assert len(preds) == 2000 and {p.path for p in preds} == {"triton"}
    assert stats.triton_rows == 2000
    assert stats.triton_requests <= 2000 / 10, f"{stats.triton_requests} gRPC requests for 2,000 calls"
    assert inferences >= 2000  # other users of the shared server may add to both counters
    assert inferences / executions >= 10, f"{inferences} inferences in {executions} executions"


async def test_dead_port_falls_back_and_opens_the_breaker(signal_triton: TritonSettings) -> None:
    settings = _settings(signal_triton, grpc_url=f"127.0.0.1:{_free_port()}", breaker_failures=3)
    X = np.random.default_rng(2).standard_normal((10, N_FEATURES)).astype(np.float32) * 0.01
    async with SignalModelClient(settings) as client:
        preds = [await client.predict(X[i : i + 1]) for i in range(len(X))]
        assert client.breaker_state is BreakerState.OPEN
        assert client.stats.triton_failures == 3
    assert {p.path for p in preds} == {"fallback"}
    assert {p.model_version for p in preds} == {client.model_version}
    np.testing.assert_allclose(
        np.concatenate([p.probabilities for p in preds]), client.fallback.predict(X), rtol=0, atol=1e-6
    )


async def test_a_server_with_another_model_version_is_not_used(
    signal_triton: TritonSettings, tmp_path: Path
) -> None:
    """A fallback model of another version than Triton's: the client refuses Triton's answers."""
    model = onnx.load(str(DEFAULT_MODEL_PATH))
    for prop in model.metadata_props:
        if prop.key == "model_version":
            prop.value = "logreg-k5-other"
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    X = np.random.default_rng(4).standard_normal((3, N_FEATURES)).astype(np.float32) * 0.01
    async with SignalModelClient(_settings(signal_triton, fallback_model=path, breaker_failures=2)) as client:
        preds = [await client.predict(X[i : i + 1]) for i in range(len(X))]
        assert client.breaker_state is BreakerState.OPEN
        assert "ModelVersionMismatch" in client.stats.last_error
    assert {p.path for p in preds} == {"fallback"}
    assert {p.model_version for p in preds} == {"logreg-k5-other"}


@pytest.fixture
async def proxy(signal_triton: TritonSettings) -> AsyncIterator[TcpProxy]:
    p = TcpProxy(signal_triton.grpc_url)
    await p.up()
    yield p
    await p.down()


async def test_breaker_opens_when_triton_goes_away_and_closes_when_it_is_back(
    signal_triton: TritonSettings, proxy: TcpProxy
) -> None:
    settings = _settings(
        signal_triton, grpc_url=f"127.0.0.1:{proxy.port}", breaker_failures=2, breaker_cooldown_ms=200
    )
    X = np.random.default_rng(3).standard_normal((1, N_FEATURES)).astype(np.float32) * 0.01
    async with SignalModelClient(settings) as client:
        assert (await client.predict(X)).path == "triton"

        await proxy.down()
        down = [await client.predict(X) for _ in range(5)]
        assert {p.path for p in down} == {"fallback"}
        assert client.breaker_state is not BreakerState.CLOSED
        assert client.breaker.times_opened >= 1

        await proxy.up()
        deadline = time.monotonic() + 60  # a bound, not a latency assertion: probes wait out the cool-down
        path = "fallback"
        while path != "triton" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            path = (await client.predict(X)).path
        assert path == "triton", f"Triton never answered through the proxy again: {client.stats.last_error}"
        assert client.breaker_state is BreakerState.CLOSED
