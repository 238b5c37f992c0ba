"""PostgreSQL 15: a primary and a streaming read replica (``pg_basebackup -R``) on loopback.

Debian ships the server binaries in ``/usr/lib/postgresql/<major>/bin`` (not on PATH). initdb
refuses to run as root, so when we are root every server command runs as the ``postgres`` OS
user, and the data directories under ``<stack>/postgres`` are owned by it. Authentication is
``trust`` on loopback: this is a local development stack.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from infra.local.errors import MissingDependencyError, ServiceStartError
from infra.local.packages import ensure_binaries
from infra.local.ports import is_listening
from infra.local.process import spawn, wait_until
from infra.local.service import PortSpec, Service, ServiceStatus

PG_MAJOR = 15
SUPERUSER = "postgres"
REPLICA_NAME = "stockpulse_replica"
_BINARIES = ["initdb", "postgres", "pg_basebackup", "psql"]


def find_bin_dir(explicit: Path | None = None, root: Path = Path("/usr/lib/postgresql")) -> Path | None:
    """The bin directory of the PostgreSQL server: ``explicit`` when given, else major 15, else the newest."""
    if explicit is not None:
        return explicit if (explicit / "initdb").is_file() else None
    candidates: list[tuple[int, Path]] = []
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "initdb").is_file():
                candidates.append((int(entry.name), entry / "bin"))
    for major, path in candidates:
        if major == PG_MAJOR:
            return path
    return max(candidates)[1] if candidates else None


def dsn_names(dsn: str) -> tuple[str, str]:
    """The (user, database) of a ``postgresql://user@host:port/db`` DSN."""
    parsed = urlparse(dsn)
    user = parsed.username or "stockpulse"
    database = parsed.path.lstrip("/") or user
    return user, database


class Postgres(Service):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: do not wait for clients to disconnect
    stop_timeout = 15.0
    start_timeout = 30.0

    @property
    def primary_port(self) -> int:
        return self.settings.stack.postgres_port

    @property
    def replica_port(self) -> int:
        return self.settings.stack.postgres_replica_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.primary_port} (replica :{self.replica_port})"

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(self.primary_port, "STOCKPULSE_STACK__POSTGRES_PORT"),
            PortSpec(self.replica_port, "STOCKPULSE_STACK__POSTGRES_REPLICA_PORT"),
        ]

    def process_names(self) -> list[str]:
        return ["postgres-primary", "postgres-replica"]

    @property
    def root(self) -> Path:
        return self.stack_dir / "postgres"

    @property
    def os_user(self) -> str | None:
        """The OS user the servers run as: ``postgres`` when we are root, else ourselves."""
        return SUPERUSER if os.geteuid() == 0 else None

    # ---- binaries ---------------------------------------------------------------------------

    def bin_dir(self) -> Path:
        explicit = self.settings.stack.postgres_bin_dir
        found = find_bin_dir(explicit)
        if found is not None:
            return found
        if explicit is not None:
            raise MissingDependencyError(
                f"no initdb in STOCKPULSE_STACK__POSTGRES_BIN_DIR={explicit}",
                "point it at the server's bin directory (`dpkg -L postgresql-15 | grep bin/initdb`) "
                "or unset it",
            )
        paths = ensure_binaries(
            _BINARIES, [f"postgresql-{PG_MAJOR}"], [f"/usr/lib/postgresql/{PG_MAJOR}/bin"]
        )
        return Path(paths["initdb"]).parent

    def install(self) -> None:
        self.bin_dir()
        if self.os_user is not None:
            try:
                pwd.getpwnam(self.os_user)
            except KeyError:
                raise MissingDependencyError(
                    f"running as root, but there is no '{self.os_user}' OS user to run PostgreSQL as",
                    f"install postgresql-{PG_MAJOR} (it creates the user) "
                    "or run `stockpulse stack up` as a normal user",
                ) from None

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            argv, capture_output=True, text=True, user=self.os_user, env=_clean_env(), timeout=timeout
        )
        if proc.returncode != 0:
            out = "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise ServiceStartError(
                f"{what} failed (`{' '.join(argv)}` exited {proc.returncode}):\n    {out}",
                f"fix the cause above; to start from scratch remove {self.root} (its data is lost)",
            )
        return proc.stdout

    def psql(self, port: int, sql: str, database: str = "postgres", timeout: float = 5) -> str:
        """Run one SQL statement over TCP with psql; returns its unaligned, tuples-only output."""
        argv = [str(self.bin_dir() / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", self.host, "-p", str(port), "-U", SUPERUSER, "-d", database, "-c", sql]
        proc = subprocess.run(argv, capture_output=True, text=True, env=_clean_env(), timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip() or f"psql exited {proc.returncode}")
        return proc.stdout.strip()

    # ---- data directories ------------------------------------------------------------------

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        user = self.os_user
        if user is None:
            return
        entry = pwd.getpwnam(user)
        os.chown(self.root, entry.pw_uid, entry.pw_gid)
        for sub in self.root.iterdir():
            if sub.is_dir() and sub.stat().st_uid != entry.pw_uid:
                subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(sub)], check=True)
        probe = subprocess.run(["test", "-w", str(self.root), "-a", "-x", str(self.root)], user=user)
        if probe.returncode != 0:
            raise MissingDependencyError(
                f"the '{user}' OS user cannot write to {self.root} (a parent directory is not traversable)",
                f"let it through (`chmod o+x` on each parent of {self.root}) or move the stack elsewhere "
                "with STOCKPULSE_STACK__DIR=/path/to/dir",
            )

    def _server_argv(self, data: Path, port: int, extra: list[str]) -> list[str]:
        argv = [str(self.bin_dir() / "postgres"), "-D", str(data), "-p", str(port)]
        argv += ["-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories="]
        argv += ["-c", "wal_level=replica", "-c", "max_wal_senders=10", "-c", "hot_standby=on"]
        return argv + extra

    def _wait_accepting(self, port: int, process: str) -> None:
        pid_file = self.pid_file(process)

        def ready() -> bool:
            if pid_file.live_record() is None:
                return True
            try:
                return self.psql(port, "SELECT 1", timeout=2) == "1"
            except (RuntimeError, subprocess.TimeoutExpired):
                return False

        if not wait_until(ready, self.start_timeout, 0.1) or pid_file.live_record() is None:
            raise self.start_error(
                f"PostgreSQL ({process}) did not accept connections on port {port}", process
            )

    def start(self) -> None:
        self.install()
        self._prepare_root()
        primary = self.root / "primary"
        if not (primary / "PG_VERSION").is_file():
            if primary.exists():
                shutil.rmtree(primary)
            self._run(
                [str(self.bin_dir() / "initdb"), "-D", str(primary), "-U", SUPERUSER, "--auth=trust",
                 "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                "initdb of the primary",
            )  # fmt: skip
        spawn(
            self._server_argv(primary, self.primary_port, []),
            pid_file=self.pid_file("postgres-primary"),
            log_file=self.log_path("postgres-primary"),
            env=_clean_env(),
            user=self.os_user,
        )
        self._wait_accepting(self.primary_port, "postgres-primary")
        self._ensure_app_role()
        self._start_replica(retry=True)

    def _ensure_app_role(self) -> None:
        user, database = dsn_names(self.settings.postgres.dsn.get_secret_value())
        if self.psql(self.primary_port, f"SELECT count(*) FROM pg_roles WHERE rolname = '{user}'") == "0":
            self.psql(self.primary_port, f'CREATE ROLE "{user}" LOGIN CREATEDB')
            self.psql(self.primary_port, f'GRANT pg_monitor TO "{user}"')
        if (
            self.psql(self.primary_port, f"SELECT count(*) FROM pg_database WHERE datname = '{database}'")
            == "0"
        ):
            self.psql(self.primary_port, f'CREATE DATABASE "{database}" OWNER "{user}"')

    def _start_replica(self, retry: bool) -> None:
        replica = self.root / "replica"
        if not (replica / "standby.signal").is_file():
            if replica.exists():
                shutil.rmtree(replica)
            self._run(
                [str(self.bin_dir() / "pg_basebackup"), "-h", self.host, "-p", str(self.primary_port),
                 "-U", SUPERUSER, "-D", str(replica), "-R", "-X", "stream", "-c", "fast", "--no-sync"],
                "pg_basebackup of the replica",
            )  # fmt: skip
        conninfo = (
            f"host={self.host} port={self.primary_port} user={SUPERUSER} application_name={REPLICA_NAME}"
        )
        spawn(
            self._server_argv(replica, self.replica_port, ["-c", f"primary_conninfo={conninfo}"]),
            pid_file=self.pid_file("postgres-replica"),
            log_file=self.log_path("postgres-replica"),
            env=_clean_env(),
            user=self.os_user,
        )
        try:
            self._wait_accepting(self.replica_port, "postgres-replica")
            if not wait_until(self._streaming, self.start_timeout, 0.1):
                raise self.start_error("the replica does not stream from the primary", "postgres-replica")
        except ServiceStartError:
            if not retry:
                raise
            # A replica cloned from an earlier primary cannot follow a new one: clone it again.
            record = self.pid_file("postgres-replica").read()
            if record is not None:
                from infra.local.process import stop_record

                stop_record(record, sig=self.stop_signal, timeout=self.stop_timeout)
            self.pid_file("postgres-replica").remove()
            shutil.rmtree(replica, ignore_errors=True)
            self._start_replica(retry=False)

    def _streaming(self) -> bool:
        try:
            sql = (
                "SELECT count(*) FROM pg_stat_replication "
                f"WHERE application_name = '{REPLICA_NAME}' AND state = 'streaming'"
            )
            return (
                self.psql(self.primary_port, sql, timeout=2) == "1"
                and self.psql(self.replica_port, "SELECT pg_is_in_recovery()", timeout=2) == "t"
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def check(self) -> ServiceStatus:
        for port in (self.primary_port, self.replica_port):
            if not is_listening(self.host, port):
                return ServiceStatus(self.name, self.address, False, "", f"{port} not listening")
        try:
            version = (
                "PostgreSQL " + self.psql(self.primary_port, "SHOW server_version", timeout=3).split()[0]
            )
            sql = f"SELECT state FROM pg_stat_replication WHERE application_name = '{REPLICA_NAME}'"
            state = self.psql(self.primary_port, sql, timeout=3) or "no replica connected"
            recovery = self.psql(self.replica_port, "SELECT pg_is_in_recovery()", timeout=3)
        except (RuntimeError, subprocess.TimeoutExpired, MissingDependencyError) as ex:
            return ServiceStatus(self.name, self.address, False, "", str(ex))
        healthy = state == "streaming" and recovery == "t"
        detail = f"replication {state}, replica in recovery: {recovery == 't'}"
        return ServiceStatus(self.name, self.address, healthy, version, detail)


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables (PGDATA, PGPORT, ... would override our arguments)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LANG", "C.UTF-8")
    return env
