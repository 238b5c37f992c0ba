"""The chdb engine behind the local ClickHouse HTTP server: connection handles, sessions, settings.

chdb hosts one engine per process over one data directory; any number of connection handles can
share it, each with its own session state (current database, ``SET`` values). The server keeps:

* one anchor handle, open for the server's lifetime (closing the last handle stops the engine);
* a pool of anonymous handles for requests without ``session_id``: ``SET``/``USE`` in them have no
  lasting effect, as in ClickHouse;
* one handle per ``session_id``, dropped after ``session_timeout`` seconds idle; ``SET``/``USE``
  persist in it, and a second concurrent request in the same session fails (SESSION_IS_LOCKED).

URL settings apply to one query: they are set on the handle with ``SET`` and left there while the
next request on that handle asks for the same values (clickhouse-connect sends the same ones every
time), so the steady state costs no extra statements.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.clickhouse_http import (
    HttpQuery,
    ProtocolError,
    infile_insert,
    statement_kind,
    trailing_format,
    use_target,
)

_SETTING_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_IDLE_HANDLES = 8


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _setting_name(name: str) -> str:
    if not _SETTING_NAME.match(name):
        raise ProtocolError(f"invalid setting name {name!r}", 115, "UNKNOWN_SETTING", 400)
    return name


@dataclass
class Result:
    body: bytes
    fmt: str
    summary: dict[str, str]


@dataclass
class Handle:
    """One chdb connection and the session state this server tracks for it."""

    conn: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    session_db: str = "default"
    current_db: str = "default"
    applied: dict[str, str] = field(default_factory=dict)
    base: dict[str, tuple[str, bool]] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    timeout: float = 60.0
    broken: bool = False  # a setting could not be restored: never hand this connection out again

    def run(self, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> Any:
        return self.conn.query(sql, fmt, params=params or {})

    # ---- per-query settings ---------------------------------------------------------------------

    def _snapshot(self, names: list[str]) -> None:
        wanted = ", ".join(_quote(n) for n in names)
        rows = self.run(
            f"SELECT name, value, changed FROM system.settings WHERE name IN ({wanted})", "JSONEachRow"
        )
        for line in rows.bytes().splitlines():
            row = json.loads(line)
            self.base[row["name"]] = (row["value"], bool(row["changed"]))
        for name in names:
            self.base.setdefault(name, ("", False))

    def _restore(self, name: str) -> None:
        value, changed = self.base.pop(name, ("", False))
        self.applied.pop(name, None)
        try:
            if changed:
                literal = value if len(value) >= 2 and value[0] == value[-1] == "'" else _quote(value)
                self.run(f"SET {name} = {literal}")
            else:
                self.run(f"SET {name} = DEFAULT")
        except Exception:
            self.broken = True  # e.g. readonly=1 forbids every later SET, including its own reset
            raise

    @property
    def reusable(self) -> bool:
        """A pooled connection goes back to the pool only without settings that outlive a query's reset
        (``readonly`` cannot be reset from inside read-only mode)."""
        return not self.broken and "readonly" not in self.applied

    def apply_settings(self, settings: dict[str, str]) -> None:
        """Make exactly ``settings`` the per-query settings on top of the session's own values."""
        for name in [n for n in self.applied if n not in settings]:
            self._restore(name)
        changed = {n: v for n, v in settings.items() if self.applied.get(n) != v}
        if not changed:
            return
        new = [_setting_name(n) for n in changed if n not in self.base]
        if new:
            self._snapshot(new)
        for name, value in changed.items():
            try:
                self.run(f"SET {_setting_name(name)} = {_quote(value)}")
            except Exception:
                self.base.pop(name, None)
                raise
            self.applied[name] = value

    def reset_settings(self) -> None:
        for name in list(self.applied):
            self._restore(name)

    def use(self, database: str) -> None:
        if database != self.current_db:
            self.run(f"USE {_ident(database)}")
            self.current_db = database


class Engine:
    """Runs HttpQuery requests on a chdb data directory."""

    def __init__(self, path: Path, tmp_dir: Path) -> None:
        import chdb

        self._chdb = chdb
        self.path = path
        self.tmp_dir = tmp_dir
        path.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self._connect_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[Handle] = []
        self._sessions: dict[str, Handle] = {}
        self.anchor = self._new_handle()
        row = self.anchor.run("SELECT version(), timezone()").bytes().decode().strip().split("\t")
        self.version, self.timezone = row[0], row[1]

    def _new_handle(self) -> Handle:
        with self._connect_lock:
            return Handle(self._chdb.connect(str(self.path)))

    # ---- handles ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _handle_for(self, query: HttpQuery) -> Iterator[Handle]:
        self._expire_sessions()
        if query.session_id is None:
            with self._pool_lock:
                handle = self._idle.pop() if self._idle else None
            if handle is None:
                handle = self._new_handle()
            try:
                with handle.lock:
                    yield handle
            finally:
                handle.last_used = time.monotonic()
                with self._pool_lock:
                    keep = len(self._idle) < MAX_IDLE_HANDLES and handle.reusable
                    if keep:
                        self._idle.append(handle)
                if not keep:
                    with contextlib.suppress(Exception):
                        handle.conn.close()
            return
        with self._pool_lock:
            session = self._sessions.get(query.session_id)
            if session is None:
                session = self._sessions[query.session_id] = self._new_handle()
        if not session.lock.acquire(timeout=0.5):
            raise ProtocolError(
                f"Session {query.session_id} is locked by a concurrent client", 373, "SESSION_IS_LOCKED", 400
            )
        try:
            session.timeout = query.session_timeout
            yield session
        finally:
            session.last_used = time.monotonic()
            session.lock.release()

    def _expire_sessions(self) -> None:
        now = time.monotonic()
        expired: list[Handle] = []
        with self._pool_lock:
            for sid, handle in list(self._sessions.items()):
                if now - handle.last_used > handle.timeout and not handle.lock.locked():
                    expired.append(self._sessions.pop(sid))
        for handle in expired:
            with contextlib.suppress(Exception):
                handle.conn.close()

    def close(self) -> None:
        with self._pool_lock:
            handles = self._idle + list(self._sessions.values())
            self._idle, self._sessions = [], {}
        for handle in handles:
            with contextlib.suppress(Exception):
                handle.conn.close()
        with contextlib.suppress(Exception):
            self.anchor.conn.close()

    # ---- queries ----------------------------------------------------------------------------------

    def execute(self, query: HttpQuery) -> Result:
        kind = statement_kind(query.sql)
        in_session = query.session_id is not None
        if kind in ("SET", "USE") and not in_session:
            return Result(b"", query.default_format, {})  # no session: nothing would outlive the query
        with self._handle_for(query) as handle:
            if kind == "SET":
                handle.reset_settings()
                handle.use(handle.session_db)
                handle.run(query.sql.decode())
                return Result(b"", query.default_format, {})
            if kind == "USE":
                target = use_target(query.sql)
                handle.use(target)
                handle.session_db = target
                return Result(b"", query.default_format, {})
            handle.use(query.database or handle.session_db)
            handle.apply_settings(query.settings)
            if query.is_insert_with_data:
                return self._insert(handle, query)
            sql = query.sql.decode()
            fmt = query.default_format
            result = handle.run(sql, fmt, query.bind)
            return Result(bytes(result.bytes()), trailing_format(sql) or fmt, _summary(result, written=False))

    def _insert(self, handle: Handle, query: HttpQuery) -> Result:
        assert query.insert_head is not None and query.insert_format is not None
        fd, name = tempfile.mkstemp(prefix="insert-", suffix=".bin", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(query.data or b"")
            sql = infile_insert(query.insert_head, query.insert_format, name)
            result = handle.run(sql, "TabSeparated", query.bind)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
        return Result(b"", query.default_format, _summary(result, written=True))


def _summary(result: Any, written: bool) -> dict[str, str]:
    try:
        rows, size, elapsed = int(result.rows_read()), int(result.bytes_read()), float(result.elapsed())
    except Exception:
        return {}
    summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0"}
    if written:
        summary.update(written_rows=str(rows), written_bytes=str(size))
    else:
        summary.update(read_rows=str(rows), read_bytes=str(size), result_rows=str(rows))
    summary["elapsed_ns"] = str(int(elapsed * 1e9))
    return summary
