"""Running the API with uvicorn: ``stockpulse api`` (:func:`api_command`) or ``python -m streams.api``.

uvicorn picks uvloop and httptools when they are installed (``uvicorn[standard]``). One process by default
(``STOCKPULSE_API__WORKERS``); with more, uvicorn starts that many worker processes on the same socket, each
building its own app (:func:`app_factory`), and Prometheus runs in multiprocess mode over a temporary
directory so that ``/metrics`` adds all workers up.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile

import uvicorn
from fastapi import FastAPI

from streams.config import Settings, get_settings

log = logging.getLogger("stockpulse.api")


def app_factory() -> FastAPI:
    """The app of the process settings (uvicorn's ``factory=True`` target in worker processes)."""
    from streams.api.app import create_app

    return create_app(get_settings())


def _log_level(settings: Settings) -> str:
    return "warning" if settings.log_level == "warn" else settings.log_level


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, workers: int | None = None
) -> None:
    """Run the API until interrupted (SIGINT/SIGTERM shut it down gracefully)."""
    api = settings.api
    host = host or api.host
    port = port or api.port
    workers = workers or api.workers
    level = _log_level(settings)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if workers == 1:
        from streams.api.app import create_app

        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=level,
            access_log=api.access_log,
            proxy_headers=False,
        )
        return
    # Worker processes read the settings from the environment: pass the overrides along.
    os.environ.update({"STOCKPULSE_API__HOST": host, "STOCKPULSE_API__PORT": str(port)})
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stockpulse-api-metrics-")
    try:
        uvicorn.run(
            "streams.api.server:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=level,
            access_log=api.access_log,
            proxy_headers=False,
        )
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)


def api_command(host: str | None = None, port: int | None = None) -> None:
    """``stockpulse api [--host H] [--port P]``: serve the API and the dashboard (defaults from
    ``STOCKPULSE_API__HOST`` / ``STOCKPULSE_API__PORT``, 127.0.0.1:8080)."""
    serve(get_settings(), host, port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.api", description="Serve the StockPulse API.")
    parser.add_argument("--host", default=None, help="listen address (default STOCKPULSE_API__HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default STOCKPULSE_API__PORT, 8080)")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default STOCKPULSE_API__WORKERS)"
    )
    args = parser.parse_args(argv)
    serve(get_settings(), args.host, args.port, args.workers)
    return 0
