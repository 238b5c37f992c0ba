"""Detached service processes: spawn with a pid file and a log file, check, and stop for good.

A pid file holds the pid and the kernel start time of the process, so a recycled pid is never
mistaken for ours. Processes run in their own session (``start_new_session``), so they outlive
the command that started them, and their whole process group can be stopped at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds."""

    pid: int
    start_time: int
    argv: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "start_time": self.start_time, "argv": list(self.argv)})

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        data = json.loads(text)
        return cls(int(data["pid"]), int(data["start_time"]), tuple(data.get("argv", ())))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time_of(pid: int) -> int | None:
    """The kernel start time (clock ticks since boot) of ``pid``; None when it does not exist."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    _reap(pid)
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")  # type: ignore[index]


def record_alive(record: ProcessRecord) -> bool:
    """True when the process of the record is still the same, running process."""
    return pid_alive(record.pid) and start_time_of(record.pid) == record.start_time


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children that called setsid, like PostgreSQL's, included)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def _alive_of(pids: dict[int, int | None]) -> list[int]:
    return [p for p, start in pids.items() if pid_alive(p) and start_time_of(p) == start]


def holders_of_files_under(path: Path) -> dict[int, str]:
    """Processes with a file under ``path`` open (pid -> command line), read from /proc."""
    prefix = str(path.resolve()) + os.sep
    found: dict[int, str] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(entry / "fd" / fd)
            except OSError:
                continue
            if target.startswith(prefix):
                raw = (entry / "cmdline").read_bytes() if (entry / "cmdline").exists() else b""
                found[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                break
    return found


class PidFile:
    """One service process's pid file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> ProcessRecord | None:
        try:
            return ProcessRecord.from_json(self.path.read_text())
        except (OSError, ValueError, KeyError):
            return None

    def write(self, record: ProcessRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(record.to_json())
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def live_record(self) -> ProcessRecord | None:
        """The record when its process is still running, else None (and a stale file is removed)."""
        record = self.read()
        if record is None:
            return None
        if record_alive(record):
            return record
        self.remove()
        return None


def spawn(
    argv: Sequence[str],
    *,
    pid_file: PidFile,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached (own session, stdin closed, output appended to ``log_file``)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            user=user,
        )
    start = start_time_of(proc.pid) or 0
    record = ProcessRecord(proc.pid, start, tuple(argv))
    pid_file.write(record)
    return record


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_record(record: ProcessRecord, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a process, its process group and its descendants: ``sig``, wait, then SIGKILL.

    The leader gets ``sig`` first (so it can shut its children down itself); whatever is left of
    the group or of its children after it exits, or after ``timeout``, is killed.
    """
    if not record_alive(record):
        leftovers = {p: start_time_of(p) for p in group_members(record.pid)}
    else:
        leftovers = {p: start_time_of(p) for p in descendants(record.pid)}
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, sig)
        if not wait_until(lambda: not pid_alive(record.pid), timeout):
            _signal_group(record.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(record.pid), 5.0)
        leftovers.update({p: start_time_of(p) for p in group_members(record.pid)})
    # Children get a moment to notice their parent is gone, then are ended.
    if wait_until(lambda: not _alive_of(leftovers), 3.0):
        return
    for pid in _alive_of(leftovers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not _alive_of(leftovers), 3.0):
        return
    for pid in _alive_of(leftovers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _alive_of(leftovers), 3.0)


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (empty when it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block = min(size, max(4096, lines * 400))
            f.seek(size - block)
            data = f.read()
    except OSError:
        return []
    text = data.decode(errors="replace").splitlines()
    return text[-lines:] if lines > 0 else []
