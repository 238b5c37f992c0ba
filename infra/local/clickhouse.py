"""ClickHouse: the embedded engine (chdb) owned by one process that serves ClickHouse's HTTP interface.

chdb allows one process per data directory, so the stack runs ``infra.local.clickhouse_server``
as that process, and everything else connects over HTTP exactly as to a real server::

    clickhouse_connect.get_client(host="127.0.0.1", port=18123, interface="http")
"""

from __future__ import annotations

import importlib.util
import os
import sys
import urllib.error
import urllib.request

from infra.local.errors import MissingDependencyError, ServiceStartError
from infra.local.ports import is_listening
from infra.local.process import holders_of_files_under, spawn, wait_until
from infra.local.service import PortSpec, Service, ServiceStatus
from streams.config import PROJECT_ROOT


class ClickHouse(Service):
    name = "clickhouse"
    stop_timeout = 20.0  # the engine flushes its parts on shutdown
    start_timeout = 60.0

    @property
    def port(self) -> int:
        return self.settings.stack.clickhouse_http_port

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ports(self) -> list[PortSpec]:
        return [PortSpec(self.port, "STOCKPULSE_STACK__CLICKHOUSE_HTTP_PORT")]

    def process_names(self) -> list[str]:
        return ["clickhouse"]

    def install(self) -> None:
        if importlib.util.find_spec("chdb") is None:
            raise MissingDependencyError(
                f"the chdb package (the embedded ClickHouse engine) is not installed for {sys.executable}",
                "install the project's dependencies: "
                ".venv/bin/pip install 'clickhouse-connect[chdb]>=1.12,<2'",
            )

    def start(self) -> None:
        path = self.settings.clickhouse_path()
        holders = {pid: cmd for pid, cmd in holders_of_files_under(path).items() if pid != os.getpid()}
        if holders:
            who = "; ".join(f"pid {pid} ({cmd})" for pid, cmd in holders.items())
            raise ServiceStartError(
                f"the ClickHouse data directory {path} is open in another process: {who}. chdb allows one "
                "process per data directory, and the stack's ClickHouse server must be that process",
                "stop that process (connect to the stack's server over HTTP instead: "
                f"clickhouse_connect.get_client(host='{self.host}', port={self.port})), then run "
                "`stockpulse stack up` again",
            )
        argv = [sys.executable, "-m", "infra.local.clickhouse_server", "--path", str(path)]
        argv += [
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--tmp-dir",
            str(self.stack_dir / "clickhouse-tmp"),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        pid_file = self.pid_file("clickhouse")
        record = spawn(
            argv, pid_file=pid_file, log_file=self.log_path("clickhouse"), env=env, cwd=PROJECT_ROOT
        )
        ok = wait_until(
            lambda: pid_file.live_record() is None or self.check().healthy, self.start_timeout, 0.1
        )
        if not ok or pid_file.live_record() is None:
            raise self.start_error(
                f"the ClickHouse server (pid {record.pid}) did not answer on {self.address}; if the log "
                f"says the data directory {path} is locked, another process has it open with chdb: stop it"
            )
        database = self.settings.clickhouse.database
        self.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")

    def sql(self, query: str, timeout: float = 5) -> str:
        """Run one statement over HTTP; returns the TabSeparated body."""
        request = urllib.request.Request(self.address + "/", data=query.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return str(response.read().decode())

    def check(self) -> ServiceStatus:
        if not is_listening(self.host, self.port):
            return ServiceStatus(self.name, self.address, False, "", "not listening")
        try:
            version = self.sql("SELECT version()", timeout=3).strip()
        except urllib.error.HTTPError as ex:
            return ServiceStatus(self.name, self.address, False, "", f"HTTP {ex.code}: {ex.read()[:200]!r}")
        except OSError as ex:
            return ServiceStatus(self.name, self.address, False, "", str(ex))
        detail = f"chdb data dir {self.settings.clickhouse_path()}"
        return ServiceStatus(self.name, self.address, True, f"ClickHouse {version} (chdb)", detail)
