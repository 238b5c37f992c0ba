"""Triton Inference Server (CPU) from the ``nvidia-pytriton`` wheel, in its own venv under the stack dir.

The wheel bundles a real ``tritonserver`` 2.51 with only the python backend. pytriton needs
``numpy<2``, so it lives in ``<stack>/triton-venv``, not in the project's venv. The python backend's
stub embeds the venv's interpreter: it needs that interpreter's LIBDIR on ``LD_LIBRARY_PATH``
(plus the wheel's bundled libs), and numpy/onnxruntime from the venv on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra.local.errors import MissingDependencyError
from infra.local.ports import is_listening
from infra.local.process import spawn, wait_until
from infra.local.service import PortSpec, Service, ServiceStatus
from streams.config import PROJECT_ROOT

PYTRITON_REQUIREMENTS = ("nvidia-pytriton==0.7.0", "numpy<2", "onnxruntime>=1.20,<2")
HEALTH_MODEL = "health"
MODEL_SOURCE = PROJECT_ROOT / "triton_models"

_PROBE = (
    "import json, sys, sysconfig;"
    "print(json.dumps({'libdir': sysconfig.get_config_var('LIBDIR'),"
    " 'purelib': sysconfig.get_paths()['purelib'],"
    " 'py': f'{sys.version_info.major}.{sys.version_info.minor}'}))"
)


def model_dirs(source: Path) -> list[Path]:
    """The model directories of a repository: those with a ``config.pbtxt`` or ``configs/cpu.pbtxt``.

    Everything else (``__init__.py``, ``train.py``, ``__pycache__``) is left out of what Triton sees.
    """
    if not source.is_dir():
        return []
    return sorted(
        p
        for p in source.iterdir()
        if p.is_dir() and ((p / "config.pbtxt").is_file() or (p / "configs" / "cpu.pbtxt").is_file())
    )


def build_model_repository(source: Path, target: Path) -> list[str]:
    """(Re)create ``target`` as a repository of symlinks to the model directories of ``source``."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    names = []
    for model in model_dirs(source):
        (target / model.name).symlink_to(model.resolve(), target_is_directory=True)
        names.append(model.name)
    return names


class Triton(Service):
    name = "triton"
    stop_timeout = 15.0
    start_timeout = 60.0

    @property
    def venv(self) -> Path:
        return self.stack_dir / "triton-venv"

    @property
    def home(self) -> Path:
        return self.stack_dir / "triton"

    @property
    def address(self) -> str:
        s = self.settings.stack
        return f"grpc {self.host}:{s.triton_grpc_port} http :{s.triton_http_port}"

    def ports(self) -> list[PortSpec]:
        s = self.settings.stack
        return [
            PortSpec(s.triton_http_port, "STOCKPULSE_STACK__TRITON_HTTP_PORT"),
            PortSpec(s.triton_grpc_port, "STOCKPULSE_STACK__TRITON_GRPC_PORT"),
            PortSpec(s.triton_metrics_port, "STOCKPULSE_STACK__TRITON_METRICS_PORT"),
        ]

    def process_names(self) -> list[str]:
        return ["triton"]

    # ---- install --------------------------------------------------------------------------------

    @property
    def _marker(self) -> Path:
        return self.venv / "stockpulse-install.json"

    def _installed(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads(self._marker.read_text())
        except (OSError, ValueError):
            return None
        if info.get("requirements") != list(PYTRITON_REQUIREMENTS):
            return None
        if not Path(info.get("tritonserver", "")).is_file():
            return None
        return info

    def install(self) -> None:
        if self._installed() is not None:
            return
        python = self.venv / "bin" / "python"
        if not python.exists():
            self._run([sys.executable, "-m", "venv", "--clear", str(self.venv)], "create the Triton venv")
        self._run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *PYTRITON_REQUIREMENTS,
            ],
            "install nvidia-pytriton into the Triton venv",
        )
        probe = json.loads(self._run([str(python), "-c", _PROBE], "inspect the Triton venv's interpreter"))
        purelib = Path(probe["purelib"])
        server_root = purelib / "pytriton" / "tritonserver"
        stub = server_root / "python_backend_stubs" / probe["py"] / "triton_python_backend_stub"
        if not stub.is_file():
            raise MissingDependencyError(
                f"nvidia-pytriton has no python backend stub for Python {probe['py']} ({stub})",
                "run the project with a Python that pytriton 0.7.0 supports (3.8-3.13)",
            )
        backend = self.home / "backends" / "python"
        if backend.exists():
            shutil.rmtree(backend)
        backend.mkdir(parents=True)
        for item in (server_root / "backends" / "python").iterdir():
            if item.is_file():
                shutil.copy2(item, backend / item.name)
        shutil.copy2(stub, backend / stub.name)
        info = {
            "requirements": list(PYTRITON_REQUIREMENTS),
            "tritonserver": str(server_root / "bin" / "tritonserver"),
            "backends": str(self.home / "backends"),
            "ld_library_path": [probe["libdir"], str(purelib / "nvidia_pytriton.libs")],
        }
        self._marker.write_text(json.dumps(info, indent=2))

    def _run(self, argv: list[str], what: str) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            out = "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise MissingDependencyError(
                f"could not {what} (`{' '.join(argv)}` exited {proc.returncode}):\n    {out}",
                f"check that PyPI is reachable and that {sys.executable} has the venv module "
                f"(`apt-get install python3-venv` on Debian); or remove {self.venv} and run "
                "`stockpulse stack up` again",
            )
        return proc.stdout

    # ---- run ------------------------------------------------------------------------------------

    def start(self) -> None:
        info = self._installed()
        if info is None:
            self.install()
            info = self._installed()
            assert info is not None
        repo = self.home / "models"
        models = build_model_repository(MODEL_SOURCE, repo)
        if HEALTH_MODEL not in models:
            raise MissingDependencyError(
                f"the placeholder model {MODEL_SOURCE / HEALTH_MODEL} is missing",
                "restore triton_models/health/ from git (`git checkout -- triton_models/health`)",
            )
        s = self.settings.stack
        argv = [
            info["tritonserver"],
            "--model-repository",
            str(repo),
            "--backend-directory",
            info["backends"],
            "--model-config-name=cpu",
            "--http-address",
            self.host,
            "--http-port",
            str(s.triton_http_port),
            "--grpc-address",
            self.host,
            "--grpc-port",
            str(s.triton_grpc_port),
            "--metrics-address",
            self.host,
            "--metrics-port",
            str(s.triton_metrics_port),
            # One broken model must not take the server (and the health model) down with it.
            "--exit-on-error=false",
            "--strict-readiness=false",
        ]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*info["ld_library_path"], *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
        )
        # The stub's embedded interpreter finds its prefix through `python3` on PATH (PYTHONPATH is not
        # honoured): the venv's bin first makes it a venv interpreter, with numpy<2 and onnxruntime.
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", os.defpath)])
        env["VIRTUAL_ENV"] = str(self.venv)
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)
        pid_file = self.pid_file("triton")
        record = spawn(argv, pid_file=pid_file, log_file=self.log_path("triton"), env=env, cwd=self.home)
        ok = wait_until(
            lambda: pid_file.live_record() is None or self.check().healthy, self.start_timeout, 0.2
        )
        if not ok or pid_file.live_record() is None:
            raise self.start_error(
                f"tritonserver (pid {record.pid}) did not get the model '{HEALTH_MODEL}' ready"
            )

    # ---- health ---------------------------------------------------------------------------------

    def _get(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        url = f"http://{self.host}:{self.settings.stack.triton_http_port}{path}"
        request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as ex:
            return ex.code, ex.read()
        except OSError:
            return 0, b""

    def check(self) -> ServiceStatus:
        if not is_listening(self.host, self.settings.stack.triton_http_port):
            return ServiceStatus(self.name, self.address, False, "", "not listening")
        code, body = self._get("/v2")
        version = ""
        if code == 200:
            meta = json.loads(body)
            version = f"triton {meta.get('version', '?')}"
        live, _ = self._get("/v2/health/live")
        ready, _ = self._get(f"/v2/models/{HEALTH_MODEL}/ready")
        code, body = self._get("/v2/repository/index", method="POST")
        states = json.loads(body) if code == 200 else []
        not_ready = [f"{m.get('name')} {m.get('state', '?')}" for m in states if m.get("state") != "READY"]
        detail = ", ".join(f"{m.get('name')}" for m in states if m.get("state") == "READY")
        detail = f"ready: {detail or '-'}" + (f"; NOT ready: {', '.join(not_ready)}" if not_ready else "")
        healthy = live == 200 and ready == 200
        return ServiceStatus(self.name, self.address, healthy, version, detail)
