"""The stream services started by ``stockpulse worker NAME``: each its own Faust app and consumer group."""

from __future__ import annotations

import importlib

import faust

from streams.config import get_settings

#: service name -> module with ``build(settings) -> faust.App``
SERVICES = {
    "price": "streams.apps.price",
    "signal": "streams.apps.signal",
    "order": "streams.apps.order",
    "sink": "streams.apps.sink",
}


def build_service(name: str) -> faust.App:
    module = importlib.import_module(SERVICES[name])
    app: faust.App = module.build(get_settings())
    return app


def run_service(name: str) -> None:
    """Run one service until SIGTERM/SIGINT (Faust's worker handles the signals and a clean shutdown)."""
    from streams.metrics import serve_metrics

    settings = get_settings()
    serve_metrics(settings.metrics_port)
    app = build_service(name)
    level = settings.log_level
    worker = faust.Worker(app, loglevel=level, quiet=True)
    worker.execute_from_commandline()
