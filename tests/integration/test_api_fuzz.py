"""Fuzz the API from its own OpenAPI document (schemathesis): no generated input may cause a 5xx, and every
answer must match what the document promises (status codes, response schemas, content types).

Runs against the real stores of a namespace seeded with real FTX BTC-PERP bars (served by a real uvicorn on a
loopback port); the number of examples per operation is bounded (``MAX_EXAMPLES``) so the module takes well
under a minute. Skipped when schemathesis is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.api_data import ApiServer, DataMissing, Placement, seeded
from streams.config import Settings

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed (pip install schemathesis)"
)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 60
LAYOUT = {
    "BTC-PERP": Placement(300, redis=200, clickhouse=True, postgres=True, signal=True),
    "A": Placement(40, redis=40, offset=3_000, signal=True),
}


@pytest.fixture(scope="module")
def api_schema(stack_settings: Settings) -> Iterator[Any]:
    try:
        with seeded(stack_settings, "apifuzz", LAYOUT) as (settings_, _), ApiServer(settings_) as server:
            yield schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    except DataMissing as exc:
        pytest.skip(str(exc))


def not_a_server_error(ctx: Any, response: Any, case: Any) -> bool:
    """No 5xx, with the request in the message (503 would mean a store is down: also a failure here)."""
    if response.status_code >= 500:
        raise AssertionError(
            f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:300]} -> "
            f"{response.status_code}: {response.text[:500]}"
        )
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_generated_input_causes_a_server_error(api_schema: Any, mode: str) -> None:
    """Every operation of the document, ``MAX_EXAMPLES`` inputs each: valid ones (positive) or ones that
    break the document's rules (negative, which must then be refused with a 4xx, never a 5xx)."""
    generation = schemathesis.GenerationMode(mode)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    if generation.is_negative:  # an operation without any input has no invalid input
        operations = [op for op in operations if len(op.path_parameters) + len(op.query) + len(op.body)]
    calls: dict[str, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(timeout=10)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            case.validate_response(response, checks=CHECKS)

        check()
    assert all(n > 0 for n in calls.values()) and len(calls) == len(operations), calls
