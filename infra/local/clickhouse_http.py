"""The parts of ClickHouse's HTTP protocol the local server speaks, as pure functions.

What clickhouse-connect (and curl users) send: the SQL in the ``query`` URL parameter and/or the
request body (the body is appended to the parameter, after a newline); ``param_<name>`` values for
``{name:Type}`` placeholders; ``database``, ``session_id``, ``query_id``, ``default_format`` and a
few more transport parameters; every other URL parameter is a ClickHouse setting for that query.
An ``INSERT ... FORMAT <fmt>`` is followed by its data, possibly compressed (``Content-Encoding``),
possibly in HTTP/1.1 chunks.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

# URL parameters that steer the HTTP layer and are never engine settings.
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "quota_key",
        "user",
        "password",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_response_buffer_size",
        "add_http_cors_header",
    }
)

DEFAULT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT = 60.0

_LEADING_NOISE = re.compile(rb"\A(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_INSERT_FORMAT = re.compile(
    rb"\A(INSERT\s+INTO\s.*?)\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)", re.DOTALL | re.IGNORECASE
)
_SETTINGS_CLAUSE = re.compile(r"\s+SETTINGS\s+(.*)\Z", re.DOTALL | re.IGNORECASE)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*\Z", re.IGNORECASE)
_CODE = re.compile(r"Code:\s*(\d+)")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*(?:\(version [^)]*\))?\s*\Z")


class ProtocolError(Exception):
    """A request the server refuses, with the ClickHouse error code and HTTP status to answer with."""

    def __init__(
        self, message: str, code: int = 48, name: str = "NOT_IMPLEMENTED", status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.status = status

    def clickhouse_message(self) -> str:
        return f"Code: {self.code}. DB::Exception: {self} ({self.name})"


@dataclass
class HttpQuery:
    """One request, split into what the engine needs."""

    sql: bytes
    data: bytes | None = None
    insert_head: str | None = None
    insert_format: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    bind: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    default_format: str = DEFAULT_FORMAT
    session_id: str | None = None
    session_timeout: float = DEFAULT_SESSION_TIMEOUT
    query_id: str | None = None

    @property
    def is_insert_with_data(self) -> bool:
        return self.insert_head is not None


def strip_leading(sql: bytes) -> bytes:
    """``sql`` without leading whitespace and comments."""
    match = _LEADING_NOISE.match(sql)
    return sql[match.end() :] if match else sql


def statement_kind(sql: bytes) -> str:
    """The first keyword of a statement, upper-cased (``SELECT``, ``SET``, ``USE``, ``INSERT``...)."""
    head = strip_leading(sql)[:16].split(None, 1)
    return head[0].decode(errors="replace").upper() if head else ""


def use_target(sql: bytes) -> str:
    """The database named by ``USE db`` (quotes removed)."""
    name = strip_leading(sql)[3:].strip().rstrip(b";").strip().decode()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in '`"':
        name = name[1:-1]
    return name


def split_insert(sql: bytes) -> tuple[str, str, bytes] | None:
    """For ``INSERT INTO t [(cols)] [SETTINGS ...] FORMAT fmt<data>``: (statement head, fmt, data).

    As ClickHouse does, the data starts after the newline that follows the format name, or after the
    spaces when there is no newline. Returns None for any other statement (``INSERT ... VALUES``,
    ``INSERT ... SELECT``, ``SELECT``...), which runs as plain SQL.
    """
    body = strip_leading(sql)
    match = _INSERT_FORMAT.match(body)
    if match is None:
        return None
    rest = body[match.end() :]
    spaces = len(rest) - len(rest.lstrip(b" \t"))
    if rest[spaces : spaces + 2] == b"\r\n":
        data = rest[spaces + 2 :]
    elif rest[spaces : spaces + 1] == b"\n":
        data = rest[spaces + 1 :]
    else:
        data = rest[spaces:]
    return match.group(1).decode().strip(), match.group(2).decode(), data


def infile_insert(head: str, fmt: str, path: str) -> str:
    """``INSERT ... FROM INFILE 'path' [SETTINGS ...] FORMAT fmt`` from a split insert's head."""
    settings = ""
    match = _SETTINGS_CLAUSE.search(head)
    if match is not None:
        settings = f" SETTINGS {match.group(1).strip()}"
        head = head[: match.start()]
    quoted = path.replace("\\", "\\\\").replace("'", "\\'")
    return f"{head} FROM INFILE '{quoted}'{settings} FORMAT {fmt}"


def trailing_format(sql: str) -> str | None:
    """The format named by a trailing ``FORMAT x`` clause, if any."""
    match = _TRAILING_FORMAT.search(sql)
    return match.group(1) if match else None


def _lz4_frames(data: bytes) -> bytes:
    import lz4.frame

    out = bytearray()
    while data:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        out += decompressor.decompress(data)
        data = decompressor.unused_data if decompressor.eof else b""
    return bytes(out)


def _zstd(data: bytes) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef,unused-ignore]
    return bytes(zstd.decompress(data))


def _brotli(data: bytes) -> bytes:
    import brotli  # type: ignore[import-not-found,unused-ignore]

    return bytes(brotli.decompress(data))


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "lz4": _lz4_frames,
    "zstd": _zstd,
    "gzip": gzip.decompress,
    "x-gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": _brotli,
}


def decompress_body(data: bytes, encoding: str | None) -> bytes:
    """Undo ``Content-Encoding`` (lz4 frames, zstd, gzip, deflate, br) of a request body."""
    if not encoding or encoding.lower() == "identity" or not data:
        return data
    decoder = _DECODERS.get(encoding.lower())
    if decoder is None:
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r}", 48, "NOT_IMPLEMENTED", 400)
    try:
        return decoder(data)
    except ImportError as ex:
        raise ProtocolError(f"Content-Encoding {encoding!r} needs a missing module: {ex}") from ex
    except Exception as ex:
        raise ProtocolError(
            f"cannot decompress the {encoding} request body: {ex}", 271, "CANNOT_DECOMPRESS"
        ) from ex


def read_chunked(readline: Callable[[int], bytes], read: Callable[[int], bytes]) -> bytes:
    """Read an HTTP/1.1 ``Transfer-Encoding: chunked`` body."""
    out = bytearray()
    while True:
        line = readline(65537)
        if not line:
            raise ProtocolError("the connection closed inside a chunked body", 1000, "POCO_EXCEPTION")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(out)
        out += read(size)
        read(2)  # CRLF after each chunk


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body (clickhouse-connect's form-encoded queries)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename():
            raise ProtocolError("external data (file parts) is not supported by the local ClickHouse server")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = payload if isinstance(payload, bytes) else b""
    return fields


def build_query(params: Mapping[str, str], body: bytes, form: Mapping[str, bytes] | None = None) -> HttpQuery:
    """Split URL parameters (and form fields) plus the decoded body into an HttpQuery."""
    merged: dict[str, str] = dict(params)
    query_param = merged.get("query", "").encode()
    if form:
        for key, value in form.items():
            if key == "query":
                query_param = value
            else:
                merged[key] = value.decode()
        body = b""
    if merged.get("decompress") in ("1", "true"):
        raise ProtocolError(
            "decompress=1 (ClickHouse's native block compression) is not supported; send plain data"
        )
    head: str | None = None
    fmt: str | None = None
    data: bytes | None = None
    if query_param and body:
        parts = split_insert(query_param)
        if parts is not None and not parts[2].strip():
            sql = query_param
            head, fmt, data = parts[0], parts[1], body
        else:
            sql = query_param + b"\n" + body
    else:
        sql = query_param or body
    if head is None:
        split = split_insert(sql)
        if split is not None:
            head, fmt, data = split
    if not strip_leading(sql):
        raise ProtocolError("Empty query", 62, "SYNTAX_ERROR", 400)
    bind = {k[6:]: v for k, v in merged.items() if k.startswith("param_")}
    settings = {k: v for k, v in merged.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
    try:
        timeout = float(merged.get("session_timeout") or DEFAULT_SESSION_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_SESSION_TIMEOUT
    return HttpQuery(
        sql=sql,
        data=data,
        insert_head=head,
        insert_format=fmt,
        settings=settings,
        bind=bind,
        database=merged.get("database") or None,
        default_format=merged.get("default_format") or DEFAULT_FORMAT,
        session_id=merged.get("session_id") or None,
        session_timeout=timeout,
        query_id=merged.get("query_id") or None,
    )


def error_code(message: str) -> int:
    """The ClickHouse error code in an exception message (``Code: 60. DB::Exception: ...``)."""
    match = _CODE.search(message)
    return int(match.group(1)) if match else 1001


def error_name(message: str) -> str:
    match = _NAME.search(message.strip())
    return match.group(1) if match else "STD_EXCEPTION"


_STATUS = {
    62: 400,  # SYNTAX_ERROR
    27: 400,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    36: 400,  # BAD_ARGUMENTS
    47: 404,  # UNKNOWN_IDENTIFIER
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
    115: 400,  # UNKNOWN_SETTING
    373: 400,  # SESSION_IS_LOCKED
    456: 400,  # UNKNOWN_QUERY_PARAMETER
    516: 401,  # AUTHENTICATION_FAILED
}


def http_status(code: int) -> int:
    """The HTTP status ClickHouse answers an error code with (500 unless it is the caller's fault)."""
    return _STATUS.get(code, 500)
