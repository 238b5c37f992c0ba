"""Signal model inference: Triton over gRPC with micro-batching, a circuit breaker and an in-process fallback.

:class:`SignalModelClient` is what the signal service calls::

    client = SignalModelClient(settings.triton)
    prediction = await client.predict(X)          # X: float32 [n, F] from processors.features
    prediction.probabilities, prediction.path, prediction.model_version

- **Micro-batching.** Concurrent ``predict`` calls are queued and sent as one Triton request of up to
  ``max_batch`` rows. While earlier requests are in flight, the first queued row waits at most
  ``max_wait_us`` for company; when none is, the batch leaves as soon as the callers that are ready to run
  have queued their rows (no added latency for a lone caller). At most ``max_inflight`` requests are in
  flight; Triton's dynamic batcher merges concurrent requests further.
- **Timeouts and the breaker.** Every Triton request has a deadline of ``timeout_ms``. A failure or timeout
  answers that batch from the fallback and counts towards the :class:`~streams.circuit.CircuitBreaker`;
  ``breaker_failures`` in a row open it, and while it is open no Triton call is made. After
  ``breaker_cooldown_ms`` one batch probes Triton again; its success closes the breaker.
- **Fallback.** :class:`OnnxModel` runs the same ``model.onnx`` in process with onnxruntime (one thread).
  Triton's CPU deployment runs that file with onnxruntime too, so both paths give the same probabilities.
- **Provenance.** Every :class:`Prediction` says which path produced it and the model version (the ONNX
  metadata ``model_version`` written by ``triton_models/train.py``, also in ``metrics.json``). Before its
  first request on a connection the client checks that Triton's model config carries the same version
  (``parameters.model_version``); a server with another version is treated like a failing one.

Rows with non-finite features (indicator warm-up) are refused: drop them with
:func:`processors.features.is_valid` and answer HOLD for them without calling the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streams.circuit import BreakerState, CircuitBreaker
from streams.config import PROJECT_ROOT, TritonSettings

log = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = PROJECT_ROOT / "triton_models" / "signal" / "1" / "model.onnx"
INPUT_NAME = "features"
OUTPUT_NAME = "probability"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Path_ = Literal["triton", "fallback"]

# Reconnect quickly once Triton is back (gRPC's default backoff grows to 120 s).
_CHANNEL_ARGS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", 2**26),
    ("grpc.max_receive_message_length", 2**26),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


@dataclass(frozen=True)
class Prediction:
    """P(up) per input row, float64 ``[n]``; the path that produced them; the model version."""

    probabilities: F64
    path: Path_
    model_version: str


class ModelFileError(FileNotFoundError):
    """The fallback's model.onnx is missing or unusable."""


class ModelVersionMismatch(RuntimeError):
    """Triton serves another version of the model than the in-process fallback holds."""


class OnnxModel:
    """The signal model run in process with onnxruntime (one intra-op thread): the fallback path.

    >>> m = OnnxModel()
    >>> m.version.startswith("logreg-"), m.n_features
    (True, 20)
    >>> m.predict(np.zeros((2, m.n_features), dtype=np.float32)).shape
    (2,)
    """

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path or DEFAULT_MODEL_PATH)
        if not self.path.is_file():
            raise ModelFileError(
                f"signal model {self.path} does not exist: train it with `python -m triton_models.train`, "
                "or point STOCKPULSE_TRITON__FALLBACK_MODEL at a model.onnx"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as ex:
            raise ModelFileError(
                f"onnxruntime cannot load {self.path} ({ex}): "
                "re-create it with `python -m triton_models.train`"
            ) from ex
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise ModelFileError(
                f"{self.path} must have the input '{INPUT_NAME}' and the output '{OUTPUT_NAME}', got inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}: re-export it with "
                "`python -m triton_models.train`"
            )
        self.n_features = int(inputs[0].shape[1])
        meta = self._session.get_modelmeta().custom_metadata_map
        self.version: str = meta.get("model_version", f"unversioned:{self.path.name}")

    def predict(self, X: F32) -> F64:
        """P(up) for each row of a float32 ``[n, F]`` array."""
        out = self._session.run([OUTPUT_NAME], {INPUT_NAME: X})[0]
        return np.asarray(out, dtype=np.float64).reshape(-1)


@dataclass
class ClientStats:
    """Counters of one client (for tests, benchmarks and metrics)."""

    triton_requests: int = 0
    triton_rows: int = 0
    triton_failures: int = 0
    fallback_rows: int = 0
    last_error: str = ""


@dataclass
class _Pending:
    X: F32
    future: asyncio.Future[tuple[F64, Path_]] = field(repr=False)


class SignalModelClient:
    """Predicts P(up) for feature rows via Triton (micro-batched) or, when Triton cannot answer, in process.

    Use one client per process and event loop; ``await client.close()`` (or ``async with``) when done.
    """

    def __init__(
        self,
        settings: TritonSettings | None = None,
        *,
        fallback: OnnxModel | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.settings = settings or TritonSettings()
        self.fallback = fallback or OnnxModel(self.settings.fallback_model)
        self.model_version = self.fallback.version
        self.n_features = self.fallback.n_features
        self.breaker = breaker or CircuitBreaker(
            self.settings.breaker_failures, self.settings.breaker_cooldown_ms / 1000.0
        )
        self.stats = ClientStats()
        self._grpc: Any = None
        self._served_version: str | None = None  # checked once per connection
        self._pending: list[_Pending] = []
        self._pending_rows = 0
        self._timer: asyncio.Handle | None = None
        self._inflight: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0  # batches sent and not answered yet
        self._closed = False

    # ---- public -----------------------------------------------------------------------------------------

    async def predict(self, features: npt.ArrayLike) -> Prediction:
        """P(up) for each row of ``features`` (``[n, F]``, or ``[F]`` for one row), in input order.

        Zero rows give an empty result without calling either path. Raises ValueError for a wrong shape or
        non-finite rows (warm-up: answer HOLD for them instead).
        """
        X = self._validate(features)
        if self._closed:
            raise RuntimeError("SignalModelClient is closed: create a new client")
        if X.shape[0] == 0:
            return Prediction(np.zeros(0), "fallback", self.model_version)
        if X.shape[0] >= self.settings.max_batch:
            probs, path = await self._predict_large(X)
        else:
            probs, path = await self._enqueue(X)
        return Prediction(probs, path, self.model_version)

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    async def close(self) -> None:
        """Send what is queued, wait for the requests in flight, close the gRPC channel."""
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        if self._grpc is not None:
            with contextlib.suppress(Exception):
                await self._grpc.close()
            self._grpc = None

    async def __aenter__(self) -> SignalModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- batching ---------------------------------------------------------------------------------------

    def _validate(self, features: npt.ArrayLike) -> F32:
        X = np.asarray(features, dtype=np.float32)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"features must have shape [n, {self.n_features}] (processors.features.FEATURE_NAMES), "
                f"got {np.shape(features)}: build them with processors.features.features_from_snapshot"
            )
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise ValueError(
                f"{int(bad.sum())} feature row(s) are not finite (e.g. rows {rows}): these bars are still in "
                "warm-up; drop them with processors.features.is_valid and answer HOLD"
            )
        return np.ascontiguousarray(X)

    async def _enqueue(self, X: F32) -> tuple[F64, Path_]:
        loop = asyncio.get_running_loop()
        if not self.breaker.allow():  # open, or half-open with its probe out
            return self._fallback(X)
        # allow() may just have handed out the half-open probe: the batch this row joins is the probe.
        if self._pending_rows + X.shape[0] > self.settings.max_batch:
            self._flush()
        future: asyncio.Future[tuple[F64, Path_]] = loop.create_future()
        self._pending.append(_Pending(X, future))
        self._pending_rows += X.shape[0]
        if self._pending_rows >= self.settings.max_batch:
            self._flush()
        elif self._timer is None:
            if self._busy:  # Triton is busy with earlier batches: wait up to max_wait_us for more rows
                self._timer = loop.call_later(self.settings.max_wait_us / 1e6, self._flush)
            else:  # idle: send once the callers that are ready to run have queued their rows
                self._timer = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending, self._pending_rows = self._pending, [], 0
        self._busy += 1
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        X = batch[0].X if len(batch) == 1 else np.concatenate([p.X for p in batch])
        try:
            probs, path = await self._dispatch(X)
        except asyncio.CancelledError:  # the loop shuts down: callers must not hang
            for p in batch:
                p.future.cancel()
            raise
        except Exception as ex:  # the fallback itself failed: every caller of the batch gets the error
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(ex)
            return
        finally:
            self._busy -= 1
        start = 0
        for p in batch:
            n = p.X.shape[0]
            if not p.future.done():  # the caller may have been cancelled
                p.future.set_result((probs[start : start + n], path))
            start += n

    async def _predict_large(self, X: F32) -> tuple[F64, Path_]:
        """``max_batch`` rows or more, sent in ``max_batch``-row chunks; all Triton or all fallback."""
        step = self.settings.max_batch
        if not self.breaker.allow():
            return self._fallback(X)
        results = await asyncio.gather(*(self._dispatch(X[i : i + step]) for i in range(0, X.shape[0], step)))
        if all(path == "triton" for _, path in results):
            return np.concatenate([p for p, _ in results]), "triton"
        return self._fallback(X)

    # ---- the two paths ----------------------------------------------------------------------------------

    async def _dispatch(self, X: F32) -> tuple[F64, Path_]:
        if self._inflight is None:
            self._inflight = asyncio.Semaphore(self.settings.max_inflight)
        async with self._inflight:
            if self.breaker.state is BreakerState.OPEN:  # opened while this batch was waiting
                return self._fallback(X)
            try:
                probs = await self._triton(X)
            except asyncio.CancelledError:
                raise
            except Exception as ex:
                self._served_version = (
                    None  # check it again once Triton answers (it may have been redeployed)
                )
                self.breaker.record_failure()
                self.stats.triton_failures += 1
                self.stats.last_error = f"{type(ex).__name__}: {ex}"
                if self.stats.triton_failures == 1 or self.breaker.state is BreakerState.OPEN:
                    log.warning(
                        "Triton %s at %s failed (%s); breaker %s; answering from the in-process fallback",
                        self.settings.model_name,
                        self.settings.grpc_url,
                        self.stats.last_error,
                        self.breaker.state.value,
                    )
                return self._fallback(X)
        self.breaker.record_success()
        self.stats.triton_requests += 1
        self.stats.triton_rows += X.shape[0]
        return probs, "triton"

    async def _triton(self, X: F32) -> F64:
        import tritonclient.grpc.aio as grpcclient

        if self._grpc is None:
            self._grpc = grpcclient.InferenceServerClient(self.settings.grpc_url, channel_args=_CHANNEL_ARGS)
        if self._served_version != self.model_version:
            await self._check_version()
        inp = grpcclient.InferInput(INPUT_NAME, list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        result = await self._grpc.infer(
            self.settings.model_name,
            [inp],
            outputs=[grpcclient.InferRequestedOutput(OUTPUT_NAME)],
            client_timeout=self.settings.timeout_ms / 1000.0,
        )
        out = result.as_numpy(OUTPUT_NAME)
        if out is None or out.size != X.shape[0]:
            raise RuntimeError(
                f"Triton model '{self.settings.model_name}' answered {None if out is None else out.shape} "
                f"for {X.shape[0]} rows: check that it serves triton_models/signal "
                f"(output '{OUTPUT_NAME}' [-1, 1])"
            )
        return np.asarray(out, dtype=np.float64).reshape(-1)

    async def _check_version(self) -> None:
        """Triton's model config must carry our version (``parameters.model_version``, set by training)."""
        response = await self._grpc.get_model_config(
            self.settings.model_name, client_timeout=self.settings.timeout_ms / 1000.0
        )
        params = response.config.parameters
        served = params["model_version"].string_value if "model_version" in params else ""
        if served != self.model_version:
            raise ModelVersionMismatch(
                f"Triton at {self.settings.grpc_url} serves '{self.settings.model_name}' version "
                f"{served or '(none)'}, the fallback {self.fallback.path} is {self.model_version}: deploy "
                "the same triton_models/signal to both (`python -m triton_models.train` writes both, then "
                "restart Triton)"
            )
        self._served_version = served

    def _fallback(self, X: F32) -> tuple[F64, Path_]:
        self.stats.fallback_rows += X.shape[0]
        return self.fallback.predict(X), "fallback"
