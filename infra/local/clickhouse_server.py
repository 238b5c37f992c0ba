"""The ClickHouse-owning process: opens the chdb data directory and serves ClickHouse's HTTP interface.

chdb lets one process own a data directory. This process is that owner; every other process (sink
service, API, tests, analysts) talks to it with the same client code as to a real ClickHouse server::

    clickhouse_connect.get_client(host="127.0.0.1", port=18123, interface="http")

Run: ``python -m infra.local.clickhouse_server --path .stack/clickhouse --port 18123``
(``stockpulse stack up`` does). Supported: queries in any output format, DDL, ``INSERT ... FORMAT
<fmt>`` with the data in the body (compressed with lz4/zstd/gzip/deflate/br or not, chunked or
not), ``param_<name>`` parameters, settings as URL parameters, sessions, ``/ping``, multipart form
queries. Not supported: external data (file parts), ``decompress=1``, progress headers, and
authentication (any user is accepted: bind it to loopback only).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.local.clickhouse_engine import Engine, Result
from infra.local.clickhouse_http import (
    ProtocolError,
    build_query,
    decompress_body,
    error_code,
    error_name,
    http_status,
    parse_multipart,
    read_chunked,
)

log = logging.getLogger("stockpulse.clickhouse_server")

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "JSON": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
}


class ClickHouseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stockpulse-chdb"
    server: ClickHouseHttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # ---- routing ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._reply(200, b"", {"Content-Type": "text/plain; charset=UTF-8"})

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except ProtocolError as ex:
            self._error(ex.clickhouse_message(), ex.code, ex.status)
            self.close_connection = True
            return
        if url.path in ("/ping", "/replicas_status"):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        if url.path not in ("/", ""):
            self._error(f"Code: 1000. DB::Exception: no handler for {url.path} (NOT_FOUND)", 1000, 404)
            return
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            content_type = self.headers.get("Content-Type", "")
            form = None
            if content_type.startswith("multipart/form-data"):
                form = parse_multipart(content_type, body)
            else:
                body = decompress_body(body, self.headers.get("Content-Encoding"))
            query = build_query(params, body, form)
            result = self.server.engine.execute(query)
        except ProtocolError as ex:
            self._error(ex.clickhouse_message(), ex.code, ex.status, query_id)
            return
        except Exception as ex:
            message = str(ex).strip()
            code = error_code(message)
            if "Code:" not in message:
                message = f"Code: {code}. DB::Exception: {message} ({error_name(message)})"
            log.info("query %s failed: %s", query_id, message.splitlines()[0] if message else "")
            self._error(message, code, http_status(code), query_id)
            return
        self._result(result, query_id)

    # ---- I/O ----------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return read_chunked(self.rfile.readline, self.rfile.read)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _result(self, result: Result, query_id: str) -> None:
        headers = {
            "Content-Type": _CONTENT_TYPES.get(result.fmt, "application/octet-stream"),
            "X-ClickHouse-Format": result.fmt,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.server.engine.timezone,
            "X-ClickHouse-Summary": json.dumps(result.summary, separators=(",", ":")),
        }
        self._reply(200, result.body, headers)

    def _error(self, message: str, code: int, status: int, query_id: str | None = None) -> None:
        body = f"{message} (version {self.server.engine.version})\n".encode()
        headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(code)}
        if query_id:
            headers["X-ClickHouse-Query-Id"] = query_id
        self._reply(status, body, headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers = {**headers, "X-ClickHouse-Server-Display-Name": "stockpulse-chdb"}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Keep-Alive", "timeout=10")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class ClickHouseHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        self.engine = engine
        super().__init__(address, ClickHouseHandler)


def serve(path: Path, host: str, port: int, tmp_dir: Path) -> None:
    """Open the engine on ``path`` and serve until SIGTERM/SIGINT; the engine is closed cleanly."""
    engine = Engine(path, tmp_dir)
    server = ClickHouseHttpServer((host, port), engine)

    def stop(signum: int, _frame: Any) -> None:
        log.warning("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.warning("chdb %s on %s: ClickHouse HTTP on http://%s:%d", engine.version, path, host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.close()
        log.warning("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", type=Path, required=True, help="the chdb data directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18123)
    parser.add_argument("--tmp-dir", type=Path, help="where insert payloads are staged (default: <path>-tmp)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tmp_dir = args.tmp_dir or args.path.with_name(args.path.name + "-tmp")
    serve(args.path.resolve(), args.host, args.port, tmp_dir)


if __name__ == "__main__":
    main()
