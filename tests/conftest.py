"""Shared fixtures. Integration tests use the real local stack (started by `make test`, or here on demand)."""

from __future__ import annotations

import os

import pytest

from streams.config import Settings


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Settings of a running stack. The local stack is started if needed (idempotent); with
    STOCKPULSE_TEST_EXTERNAL_STACK=1 the tests use what the STOCKPULSE_ settings point at (compose, cloud)."""
    settings = Settings()
    if os.environ.get("STOCKPULSE_TEST_EXTERNAL_STACK") != "1":
        from infra.local import stack

        stack.up(settings)
    return settings
