"""Faults for the chaos suite, injected into the real local stack and pipeline processes.

Each fault returns a short outcome string (what happened, how long recovery took). Processes of the stack
are restarted from their own pid files' argv, so they come back exactly as ``stockpulse stack up`` started
them (a Redis node rejoins the cluster from its nodes.conf as a replica of the promoted one).
"""

from __future__ import annotations

import os
import signal
import time

import redis

from infra.local import stack
from infra.local.process import PidFile, pid_alive, spawn, wait_until
from streams.config import Settings
from tests.support.pipeline import PipelineRun


def _pid_file(settings: Settings, process: str) -> PidFile:
    return PidFile(settings.stack.dir / "run" / f"{process}.pid")


def _kill_and_respawn(settings: Settings, process: str, down_s: float, user: str | None = None) -> float:
    """SIGKILL one stack process, wait ``down_s``, start it again with its own argv; returns the pid."""
    pid_file = _pid_file(settings, process)
    record = pid_file.read()
    assert record is not None, f"no pid file for {process}"
    os.kill(record.pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(record.pid), 10)
    time.sleep(down_s)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    log = settings.stack.dir / "logs" / f"{process}.log"
    return spawn(record.argv, pid_file=pid_file, log_file=log, env=env, user=user).pid


def kill_service(run: PipelineRun, name: str) -> str:
    run.kill(name)
    run.start(name)
    return f"{name}: SIGKILL, restarted"


def redis_primary_failover(settings: Settings) -> str:
    """SIGKILL a Redis primary; its replica is promoted (node timeout 5 s); restart the node as a replica."""
    host = settings.stack.host
    ports = range(settings.stack.redis_base_port, settings.stack.redis_base_port + 6)
    primary = next(p for p in ports if redis.Redis(host, p).info("replication")["role"] == "master")
    began = time.monotonic()
    _kill_and_respawn(settings, f"redis-{primary}", down_s=12.0)  # > node timeout: the replica takes over
    healthy = wait_until(lambda: stack.status(settings, ["redis"])[0].healthy, 60, 0.5)
    role = redis.Redis(host, primary).info("replication")["role"]
    return f"redis {primary}: killed, failover, back as {role} ({'healthy' if healthy else 'NOT healthy'} " \
           f"after {time.monotonic() - began:.0f} s)"  # fmt: skip


def postgres_replica_restart(settings: Settings) -> str:
    began = time.monotonic()
    user = "postgres" if os.geteuid() == 0 else None
    _kill_and_respawn(settings, "postgres-replica", down_s=3.0, user=user)
    healthy = wait_until(lambda: stack.status(settings, ["postgres"])[0].healthy, 60, 0.5)
    return f"postgres replica: killed, restarted, streaming={healthy} after {time.monotonic() - began:.0f} s"


def postgres_primary_restart(settings: Settings, down_s: float = 5.0) -> str:
    """SIGKILL the PostgreSQL primary (every checkpoint, order and fill lives there), keep it down ``down_s``,
    start it again: the services wait (checkpoint saves and store writes are retried) and resume."""
    began = time.monotonic()
    user = "postgres" if os.geteuid() == 0 else None
    _kill_and_respawn(settings, "postgres-primary", down_s=down_s, user=user)
    healthy = wait_until(lambda: stack.status(settings, ["postgres"])[0].healthy, 60, 0.5)
    took = time.monotonic() - began
    return f"postgres primary: killed, down {down_s:g} s, healthy={healthy} after {took:.0f} s"


def stack_restart(settings: Settings, service: str, down_s: float = 3.0) -> str:
    """Stop one service of the local stack (``triton``, or ``clickhouse``: the process that owns the
    embedded engine's data directory, whose data stays on disk), wait ``down_s``, start it again."""
    began = time.monotonic()
    stack.down(settings, [service])
    time.sleep(down_s)
    stack.up(settings, [service])
    return f"{service}: stopped {down_s:g} s, back after {time.monotonic() - began:.0f} s"
