"""Loopback port checks: is a port listening, and which process holds it (read from /proc)."""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from infra.local.errors import PortInUseError

_LISTEN = "0A"


@dataclass(frozen=True)
class PortHolder:
    pid: int
    cmdline: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.cmdline})"


def is_listening(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listen_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def cmdline_of(pid: int, proc: Path = Path("/proc")) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def port_holders(port: int, proc: Path = Path("/proc")) -> list[PortHolder]:
    """The processes with a listening socket on ``port`` (any address), found through /proc."""
    inodes = _listen_inodes(port, proc)
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    holders: list[PortHolder] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        fd_dir = entry / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd_dir / fd) in wanted:
                    holders.append(PortHolder(int(entry.name), cmdline_of(int(entry.name), proc)))
                    break
    return holders


def port_in_use_error(port: int, setting: str, holders: list[PortHolder]) -> PortInUseError:
    """The error for a port held by a process that is not part of the stack."""
    who = ", ".join(h.describe() for h in holders) if holders else "a process this user cannot see"
    return PortInUseError(
        f"port {port} is already in use by {who}, which is not part of the local stack",
        f"stop that process, or move the stack with {setting}=<free port> "
        f"(and point the clients at it too, e.g. STOCKPULSE_KAFKA__BOOTSTRAP_SERVERS for the broker)",
    )


def ensure_free(host: str, port: int, setting: str, own_pids: set[int]) -> None:
    """Raise PortInUseError when ``port`` is listened on by a process outside ``own_pids``."""
    holders = port_holders(port)
    foreign = [h for h in holders if h.pid not in own_pids]
    if foreign:
        raise port_in_use_error(port, setting, foreign)
    if not holders and is_listening(host, port):
        raise port_in_use_error(port, setting, [])
