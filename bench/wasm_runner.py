"""Run ``wasm/indicators.wasm`` from Python with the ``wasmtime`` package (tests and ``bench/wasm.py`` only).

The product's consumer of the module is the browser (``wasm/indicators.js``); this is the same ABI driven from
Python so that the outputs can be compared with :mod:`processors.indicators` bit for bit. Each call copies the
input into linear memory, runs the export, copies the outputs out and calls ``reset()``; error codes become
``ValueError`` with the same wording as the Python functions.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

WASM_PATH = Path(__file__).resolve().parents[1] / "wasm" / "indicators.wasm"
MAX_PERIOD = 100_000
I32_MIN, I32_MAX = -(2**31), 2**31 - 1

#: Error codes returned by the exports (see wasm/indicators.c and wasm/README.md).
ERROR_CODES: dict[int, str] = {
    -1: "ERR_PERIOD",
    -2: "ERR_STOCH_PERIOD",
    -3: "ERR_K",
    -4: "ERR_D",
    -5: "ERR_FAST",
    -6: "ERR_SLOW",
    -7: "ERR_SIGNAL",
    -8: "ERR_FAST_GE_SLOW",
    -9: "ERR_NBDEV",
    -10: "ERR_LENGTH",
    -11: "ERR_POINTER",
    -12: "ERR_OVERLAP",
    -13: "ERR_NONFINITE",
    -14: "ERR_NO_MEMORY",
}
#: Which argument each parameter error code is about, and its minimum.
_PARAM_ERRORS: dict[int, tuple[str, int]] = {
    -1: ("period", 1),
    -2: ("stoch_period", 1),
    -3: ("k", 1),
    -4: ("d", 1),
    -5: ("fast", 2),
    -6: ("slow", 2),
    -7: ("signal", 1),
}


class WasmCallError(ValueError):
    """An export returned a negative error code; ``code`` is it, the message says what to fix."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class StochRSI(NamedTuple):
    k: F64
    d: F64


class Macd(NamedTuple):
    macd: F64
    signal: F64
    hist: F64


class BBands(NamedTuple):
    upper: F64
    middle: F64
    lower: F64


def require_wasmtime() -> Any:
    """Import ``wasmtime`` or raise ImportError saying how to install it."""
    try:
        import wasmtime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the wasmtime package is needed to run wasm/indicators.wasm from Python: "
            "pip install wasmtime==50.0.1 (it is a dev dependency of the project)"
        ) from exc
    return wasmtime


class WasmIndicators:
    """One instance of indicators.wasm (its own store and linear memory). Not thread safe."""

    def __init__(self, path: Path = WASM_PATH) -> None:
        wasmtime = require_wasmtime()
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: build it with `make wasm-update`")
        self.engine = wasmtime.Engine()
        self.store = wasmtime.Store(self.engine)
        self.module = wasmtime.Module.from_file(self.engine, str(path))
        if list(self.module.imports):
            raise RuntimeError(f"{path} must not import anything, it imports {list(self.module.imports)}")
        self.instance = wasmtime.Instance(self.store, self.module, [])
        exports = self.instance.exports(self.store)
        self.memory = exports["memory"]
        self.fns: dict[str, Any] = {
            name: exports[name] for name in ("alloc", "reset", "ema", "rsi", "stochrsi", "macd", "bbands")
        }

    # -- memory ---------------------------------------------------------------------------------------
    def _base(self) -> int:
        """Host address of linear memory byte 0 (changes when the memory grows)."""
        return ctypes.addressof(self.memory.data_ptr(self.store).contents)

    def memory_size(self) -> int:
        return int(self.memory.data_len(self.store))

    def alloc(self, nbytes: int) -> int:
        ptr = int(self.fns["alloc"](self.store, nbytes))
        if ptr == 0:
            raise MemoryError(f"alloc({nbytes}) failed: the wasm memory cannot grow that far (4 GiB max)")
        return ptr

    def reset(self) -> None:
        self.fns["reset"](self.store)

    def put(self, x: F64) -> int:
        """Allocate ``len(x)`` doubles and copy ``x`` in; returns the pointer."""
        ptr = self.alloc(8 * x.shape[0])
        if x.shape[0]:
            ctypes.memmove(self._base() + ptr, x.ctypes.data, 8 * x.shape[0])
        return ptr

    def get(self, ptr: int, n: int) -> F64:
        """Copy ``n`` doubles at ``ptr`` out of linear memory."""
        out = np.empty(n, dtype=np.float64)
        if n:
            ctypes.memmove(out.ctypes.data, self._base() + ptr, 8 * n)
        return out

    def call(self, name: str, *args: Any) -> int:
        """Call an export with raw arguments (pointers, ints, floats); returns its status code."""
        return int(self.fns[name](self.store, *args))

    # -- indicators -----------------------------------------------------------------------------------
    def _run(
        self, name: str, close: npt.ArrayLike, params: Sequence[int | float], n_out: int
    ) -> tuple[F64, ...]:
        x = np.ascontiguousarray(close, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"close must be a 1-D array, got shape {x.shape}")
        for p in params:
            if isinstance(p, int) and not I32_MIN <= p <= I32_MAX:
                raise ValueError(f"{name} parameters must fit in an i32, got {p}")
        n = x.shape[0]
        try:
            src = self.put(x)
            outs = [self.alloc(8 * n) for _ in range(n_out)]
            code = self.call(name, src, n, *params, *outs)
            if code != 0:
                raise WasmCallError(code, self._message(code, name, x, params))
            return tuple(self.get(p, n) for p in outs)
        finally:
            self.reset()

    def ema(self, close: npt.ArrayLike, period: int) -> F64:
        return self._run("ema", close, [period], 1)[0]

    def rsi(self, close: npt.ArrayLike, period: int = 14) -> F64:
        return self._run("rsi", close, [period], 1)[0]

    def stochrsi(
        self, close: npt.ArrayLike, period: int = 14, stoch_period: int = 14, k: int = 3, d: int = 3
    ) -> StochRSI:
        return StochRSI(*self._run("stochrsi", close, [period, stoch_period, k, d], 2))

    def macd(self, close: npt.ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
        return Macd(*self._run("macd", close, [fast, slow, signal], 3))

    def bbands(self, close: npt.ArrayLike, period: int = 20, nbdev: float = 2.0) -> BBands:
        return BBands(*self._run("bbands", close, [period, float(nbdev)], 3))

    # -- errors ---------------------------------------------------------------------------------------
    @staticmethod
    def _message(code: int, name: str, x: F64, params: Sequence[int | float]) -> str:
        if code in _PARAM_ERRORS:
            arg, minimum = _PARAM_ERRORS[code]
            if name in ("rsi", "stochrsi", "bbands") and arg == "period":
                minimum = 2
            value = dict(zip(PARAM_NAMES[name], params, strict=True)).get(arg)
            return f"{arg} must be an integer in [{minimum}, {MAX_PERIOD}], got {value!r}"
        if code == -8:
            fast, slow = params[0], params[1]
            return f"fast must be smaller than slow, got fast={fast}, slow={slow}"
        if code == -9:
            return f"nbdev must be a finite number >= 0, got {params[1]!r}"
        if code == -13:
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            return (
                f"close[{bad}] is {float(x[bad])!r}: inputs must be finite numbers; "
                "drop or fill NaN/inf values before calling"
            )
        return f"{name} failed with {ERROR_CODES.get(code, 'unknown error')} ({code})"


#: Parameter names of each export after ``(src, n)``, before the output pointers.
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "ema": ("period",),
    "rsi": ("period",),
    "stochrsi": ("period", "stoch_period", "k", "d"),
    "macd": ("fast", "slow", "signal"),
    "bbands": ("period", "nbdev"),
}

CANONICAL_NAN = np.uint64(0x7FF8000000000000)


def canonical_bits(a: F64) -> npt.NDArray[np.uint64]:
    """The float64 bit patterns of ``a`` with every NaN replaced by numpy's quiet NaN 0x7ff8000000000000.

    WebAssembly (like x86) leaves the sign and payload of a NaN *computed* by arithmetic (e.g. inf - inf on
    overflowing inputs) unspecified, so those are compared as "NaN"; warm-up NaNs are written as constants
    and compared exactly by :func:`assert_bit_equal`.
    """
    bits = np.ascontiguousarray(a, dtype=np.float64).view(np.uint64).copy()
    bits[np.isnan(a)] = CANONICAL_NAN
    return bits


def assert_bit_equal(ours: F64, ref: F64, what: str, warmup: int | None = None) -> None:
    """Assert ``ours`` equals ``ref`` bit for bit (NaN in the same places) and, if given, that the first
    ``warmup`` values of ``ours`` are exactly 0x7ff8000000000000."""
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    a, b = canonical_bits(ours), canonical_bits(ref)
    diff = np.flatnonzero(a != b)
    if diff.size:
        i = int(diff[0])
        raise AssertionError(
            f"{what}: {diff.size} of {a.size} values differ, first at [{i}]: wasm {ours[i]!r} "
            f"(0x{int(a[i]):016x}) vs reference {ref[i]!r} (0x{int(b[i]):016x})"
        )
    if warmup is not None:
        head = ours[: min(warmup, ours.shape[0])].view(np.uint64)
        assert (head == CANONICAL_NAN).all(), (
            f"{what}: warm-up values are not the quiet NaN 0x7ff8000000000000"
        )


def sha256_le(a: F64) -> str:
    """SHA-256 of the little-endian float64 bytes of ``a`` with canonical NaNs (what test.html reports)."""
    import hashlib

    return hashlib.sha256(canonical_bits(a).astype("<u8").tobytes()).hexdigest()


def reference(name: str, close: F64, params: Sequence[int | float]) -> tuple[F64, ...]:
    """The processors.indicators result of indicator ``name`` as a tuple of arrays."""
    from processors.indicators import bbands, ema, macd, rsi, stochrsi

    fns: dict[str, Callable[..., Any]] = {
        "ema": ema,
        "rsi": rsi,
        "stochrsi": stochrsi,
        "macd": macd,
        "bbands": bbands,
    }
    out = fns[name](close, *params)
    return tuple(out) if isinstance(out, tuple) else (out,)


def json_floats(a: F64) -> list[float | None]:
    """JSON-ready list: NaN (and any other non-finite value) as None, the fallback endpoint's encoding."""
    return [float(v) if math.isfinite(v) else None for v in a.tolist()]


# -- the server side of indicators.js's fallback ----------------------------------------------------------

#: Parameters (in call order) and output keys of each indicator, as in indicators.js's contract.
ENDPOINT_SPEC: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ema": (("period",), ("ema",)),
    "rsi": (("period",), ("rsi",)),
    "stochrsi": (("period", "stoch_period", "k", "d"), ("k", "d")),
    "macd": (("fast", "slow", "signal"), ("macd", "signal", "hist")),
    "bbands": (("period", "nbdev"), ("upper", "middle", "lower")),
}


def compute_endpoint(body: object) -> tuple[int, dict[str, Any]]:
    """``POST /api/indicators/compute`` as specified at the top of wasm/indicators.js, computed with
    processors.indicators: returns (HTTP status, JSON body)."""
    if not isinstance(body, dict):
        return 400, {
            "error": 'the body must be a JSON object {"indicator": ..., "values": [...], "params": {}}'
        }
    name = body.get("indicator")
    if name not in ENDPOINT_SPEC:
        return 400, {"error": f"indicator must be one of {sorted(ENDPOINT_SPEC)}, got {name!r}"}
    names, outputs = ENDPOINT_SPEC[name]
    values = body.get("values")
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        bad = next((i for i, v in enumerate(values) if v is None), None) if isinstance(values, list) else None
        where = f" (values[{bad}] is null: NaN/inf cannot be sent as JSON)" if bad is not None else ""
        return 400, {"error": f"values must be a JSON array of finite numbers{where}"}
    params = body.get("params")
    if not isinstance(params, dict) or set(params) != set(names):
        return 400, {"error": f"params for {name} must be an object with exactly the keys {list(names)}"}
    try:
        arrays = reference(name, np.asarray(values, dtype=np.float64), [params[k] for k in names])
    except ValueError as exc:
        return 400, {"error": str(exc)}
    return 200, {key: json_floats(arr) for key, arr in zip(outputs, arrays, strict=True)}


class IndicatorServer:
    """A local ``http.server`` on 127.0.0.1 (free port) for the browser test and the benchmark.

    Serves the files of ``root`` (``.wasm`` as ``wasm_mime``), in-memory JSON documents at the paths given in
    ``documents``, and ``POST /api/indicators/compute`` (:func:`compute_endpoint`). ``requests`` records
    ``(method, path)`` of every request. Use as a context manager.
    """

    def __init__(
        self,
        root: Path,
        documents: dict[str, object] | None = None,
        wasm_mime: str = "application/wasm",
        quiet: bool = True,
    ) -> None:
        import http.server
        import json
        import threading

        self.root = root
        self.documents = {k: json.dumps(v, allow_nan=False).encode() for k, v in (documents or {}).items()}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the benchmark measures requests, not TCP handshakes
            # Headers and body are two writes: with Nagle on, the body waits for the client's delayed ACK
            # (40 ms on Linux). Any production HTTP server sets TCP_NODELAY.
            disable_nagle_algorithm = True
            extensions_map = {  # noqa: RUF012 - the stdlib's own class attribute
                ".wasm": wasm_mime,
                ".js": "text/javascript",
                ".html": "text/html; charset=utf-8",
                ".json": "application/json",
            }

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(server.root), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                if not quiet:
                    super().log_message(format, *args)

            def end_headers(self) -> None:
                self.send_header("Cache-Control", "no-store")  # every fetch reaches the server (and its log)
                super().end_headers()

            def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append(("GET", path))
                if path in server.documents:
                    self._send(200, server.documents[path])
                else:
                    super().do_GET()

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append(("POST", path))
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if path != "/api/indicators/compute":
                    self._send(404, json.dumps({"error": f"no such endpoint: POST {path}"}).encode())
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    status, out = 400, {"error": "the request body is not valid JSON"}
                else:
                    status, out = compute_endpoint(body)
                self._send(status, json.dumps(out, allow_nan=False).encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="indicator-server", daemon=True)

    def __enter__(self) -> IndicatorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
