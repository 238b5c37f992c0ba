"""The small interface every local-stack service implements, and the status it reports."""

from __future__ import annotations

import abc
import signal
from dataclasses import dataclass
from pathlib import Path

from infra.local.errors import ServiceStartError
from infra.local.ports import ensure_free
from infra.local.process import PidFile, ProcessRecord, stop_record, tail
from streams.config import Settings


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``stockpulse stack status``."""

    service: str
    address: str
    healthy: bool
    version: str = ""
    detail: str = ""


@dataclass(frozen=True)
class PortSpec:
    """A port a service listens on, and the setting that moves it."""

    port: int
    setting: str


class Service(abc.ABC):
    """A local service: installed on demand, started detached, health-checked over a real connection.

    Subclasses name their processes (``process_names``); each process has a pid file
    ``<stack>/run/<name>.pid`` and a log ``<stack>/logs/<name>.log``.
    """

    name: str = ""
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    start_timeout: float = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def stack_dir(self) -> Path:
        return self.settings.stack.dir

    @property
    def host(self) -> str:
        return self.settings.stack.host

    # ---- what a service says about itself ---------------------------------------------------

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where clients connect, as shown by ``status``."""

    @abc.abstractmethod
    def ports(self) -> list[PortSpec]:
        """Every port the service listens on."""

    @abc.abstractmethod
    def process_names(self) -> list[str]:
        """The names of its processes (pid file and log names), in start order."""

    # ---- lifecycle ----------------------------------------------------------------------------

    def install(self) -> None:  # noqa: B027 - optional hook
        """Make sure binaries/packages are present (may install them). Default: nothing to do."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the processes (ports are already checked) and wait until healthy."""

    @abc.abstractmethod
    def check(self) -> ServiceStatus:
        """Health over a real client connection, with the version. Never raises."""

    def stop(self) -> None:
        """Stop every process of the service (reverse start order) and remove their pid files."""
        for name in reversed(self.process_names()):
            pid_file = self.pid_file(name)
            record = pid_file.read()
            if record is not None:
                stop_record(record, sig=self.stop_signal, timeout=self.stop_timeout)
            pid_file.remove()

    # ---- helpers --------------------------------------------------------------------------------

    def pid_file(self, process: str) -> PidFile:
        return PidFile(self.stack_dir / "run" / f"{process}.pid")

    def log_path(self, process: str) -> Path:
        return self.stack_dir / "logs" / f"{process}.log"

    def records(self) -> list[ProcessRecord]:
        """Live process records of this service."""
        out = []
        for name in self.process_names():
            record = self.pid_file(name).live_record()
            if record is not None:
                out.append(record)
        return out

    def own_pids(self) -> set[int]:
        return {r.pid for r in self.records()}

    def is_running(self) -> bool:
        """Every process of the service is alive (health aside)."""
        return len(self.records()) == len(self.process_names())

    def check_ports(self) -> None:
        """Raise PortInUseError when a port of this service is held by something not ours."""
        own = self.own_pids()
        for spec in self.ports():
            ensure_free(self.host, spec.port, spec.setting, own)

    def start_error(self, problem: str, process: str | None = None) -> ServiceStartError:
        """A ServiceStartError quoting the end of the process's log."""
        name = process or self.process_names()[0]
        log = self.log_path(name)
        last = "\n    ".join(tail(log, 15))
        return ServiceStartError(
            f"{problem}\n  last lines of {log}:\n    {last}",
            f"read {log} (`stockpulse stack logs {self.name}`), fix the cause, "
            "then run `stockpulse stack up` again",
        )
