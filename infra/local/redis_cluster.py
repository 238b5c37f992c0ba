"""Redis Cluster: 3 primaries + 3 replicas of Debian's ``redis-server`` on consecutive loopback ports.

The cluster holds no persistent data (no RDB/AOF): every start makes a fresh cluster, which is
faster and sturdier than reviving an old ``nodes.conf``. Debian's own redis service (port 6379,
``/etc/redis``) is neither read nor touched.
"""

from __future__ import annotations

import shutil
import subprocess

from infra.local.packages import ensure_binaries
from infra.local.ports import is_listening
from infra.local.process import spawn, wait_until
from infra.local.service import PortSpec, Service, ServiceStatus

NODES = 6
PRIMARIES = 3
SLOTS = 16384
BUS_OFFSET = 10000


def parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines of INFO / CLUSTER INFO output."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


class RedisCluster(Service):
    name = "redis"
    stop_timeout = 5.0
    start_timeout = 30.0

    @property
    def node_ports(self) -> list[int]:
        base = self.settings.stack.redis_base_port
        return [base + i for i in range(NODES)]

    @property
    def address(self) -> str:
        ports = self.node_ports
        return f"{self.host}:{ports[0]}-{ports[-1]}"

    def ports(self) -> list[PortSpec]:
        setting = "STOCKPULSE_STACK__REDIS_BASE_PORT"
        return [PortSpec(p, setting) for p in self.node_ports] + [
            PortSpec(p + BUS_OFFSET, setting) for p in self.node_ports
        ]

    def process_names(self) -> list[str]:
        return [f"redis-{p}" for p in self.node_ports]

    def _binaries(self) -> dict[str, str]:
        return ensure_binaries(["redis-server", "redis-cli"], ["redis-server", "redis-tools"])

    def install(self) -> None:
        self._binaries()

    def start(self) -> None:
        binaries = self._binaries()
        for port in self.node_ports:
            data = self.stack_dir / "redis" / str(port)
            if data.exists():
                shutil.rmtree(data)
            data.mkdir(parents=True)
            argv = [
                binaries["redis-server"],
                "--port", str(port),
                "--bind", self.host,
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
                "--dir", str(data),
                "--daemonize", "no",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
                "--logfile", "",
                "--loglevel", "warning",
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            spawn(argv, pid_file=self.pid_file(f"redis-{port}"), log_file=self.log_path(f"redis-{port}"))
        for port in self.node_ports:
            if not wait_until(lambda p=port: is_listening(self.host, p), 10):  # type: ignore[misc]
                raise self.start_error(f"redis-server did not listen on {self.host}:{port}", f"redis-{port}")
        argv = [binaries["redis-cli"], "--cluster", "create"]
        argv += [f"{self.host}:{p}" for p in self.node_ports]
        argv += ["--cluster-replicas", "1", "--cluster-yes"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        with open(self.log_path(f"redis-{self.node_ports[0]}"), "a") as log:
            log.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise self.start_error(f"`redis-cli --cluster create` failed (exit {proc.returncode})")
        if not wait_until(lambda: self.check().healthy, self.start_timeout, 0.1):
            raise self.start_error(f"the Redis cluster did not reach cluster_state:ok: {self.check().detail}")

    def check(self) -> ServiceStatus:
        import redis

        version = ""
        primaries = replicas = 0
        for port in self.node_ports:
            if not is_listening(self.host, port):
                return ServiceStatus(self.name, self.address, False, version, f"{port} not listening")
            try:
                with redis.Redis(self.host, port, socket_timeout=2, socket_connect_timeout=1) as client:
                    raw = client.execute_command("CLUSTER INFO")
                    info = raw if isinstance(raw, dict) else parse_info(raw.decode())
                    if not version:
                        version = f"redis {client.info('server')['redis_version']}"
                    replication = client.info("replication")
            except Exception as ex:
                return ServiceStatus(self.name, self.address, False, version, f"{port}: {ex}")
            if str(info.get("cluster_state")) != "ok" or str(info.get("cluster_slots_ok")) != str(SLOTS):
                state, ok = info.get("cluster_state"), info.get("cluster_slots_ok")
                return ServiceStatus(
                    self.name, self.address, False, version, f"{port}: cluster_state {state}, slots ok {ok}"
                )
            if replication.get("role") == "master":
                primaries += 1
            elif replication.get("master_link_status") == "up":
                replicas += 1
        healthy = primaries == PRIMARIES and replicas == NODES - PRIMARIES
        detail = f"{primaries} primaries, {replicas} replicas in sync, {SLOTS} slots"
        return ServiceStatus(self.name, self.address, healthy, version, detail)
