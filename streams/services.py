"""The worker processes started by ``stockpulse worker NAME``: each its own Faust app and consumer group.

Which names exist depends on the topology (``STOCKPULSE_TOPOLOGY``, :mod:`streams.topology`): ``engine``
and ``sink`` when chained, ``price``, ``signal``, ``order`` and ``sink`` when split.
"""

from __future__ import annotations

import importlib

import faust

from streams.config import Settings, get_settings
from streams.topology import process_named

#: worker process name -> module with ``build(settings) -> faust.App``
MODULES = {
    "engine": "streams.apps.engine",
    "price": "streams.apps.price",
    "signal": "streams.apps.signal",
    "order": "streams.apps.order",
    "sink": "streams.apps.sink",
}


def build_service(name: str, settings: Settings | None = None) -> faust.App:
    """The Faust app of worker ``name``; raises ValueError for a name the topology does not have."""
    settings = settings or get_settings()
    process_named(name, settings.topology)  # refuse a worker of the other topology, naming the setting
    if name not in MODULES:
        raise ValueError(f"{name!r} is not a worker process (the feed runs with `stockpulse feed`)")
    module = importlib.import_module(MODULES[name])
    app: faust.App = module.build(settings)
    return app


def run_service(name: str) -> None:
    """Run one worker until SIGTERM/SIGINT (Faust's worker handles the signals and a clean shutdown)."""
    from streams.metrics import serve_metrics

    settings = get_settings()
    app = build_service(name, settings)
    serve_metrics(settings.metrics_port)
    make_worker(app, settings).execute_from_commandline()


def make_worker(app: faust.App, settings: Settings) -> faust.Worker:
    """Faust's worker at ``settings.log_level``, without its terminal spinner: to spin on every log record
    the spinner sets the root logger to DEBUG at levels >= WARN, so every aiokafka and Faust debug call built
    a LogRecord (measured: ~4% of the engine's and ~12% of the sink's CPU under load)."""
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.spinner = None
    return worker
