"""The worker's logging: at the configured level, with no DEBUG records built underneath it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from streams.config import Settings
from streams.services import make_worker


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize(("level", "debug_on"), [("warn", False), ("error", False), ("debug", True)])
def test_the_worker_logs_at_the_configured_level(restore_logging: None, level: str, debug_on: bool) -> None:
    app = faust.App("logging-test", broker="kafka://127.0.0.1:1")
    worker = make_worker(app, Settings(log_level=level))  # type: ignore[arg-type]
    worker._setup_logging()  # what the worker does when it starts
    assert logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG) is debug_on
    number = {"debug": logging.DEBUG, "warn": logging.WARNING, "error": logging.ERROR}[level]
    assert logging.getLogger("faust").isEnabledFor(number)
    assert not logging.getLogger("faust").isEnabledFor(number - 1)
