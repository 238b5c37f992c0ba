"""The OpenAPI document as the API really answers.

FastAPI documents a ``422`` with its ``HTTPValidationError`` body on every route that takes input, but this
API answers malformed input with ``400`` and the :class:`~streams.api.models.ErrorBody` shape
(:mod:`streams.api.errors`), and uses ``422`` only for orders rejected by the risk checks. :func:`install`
replaces those entries (keeping a route's own ``422``) and drops the unused schemas.

>>> doc = {"paths": {"/a": {"get": {"responses": {"422": _fastapi_422()}}}},
...        "components": {"schemas": {"HTTPValidationError": {}, "ValidationError": {}, "ErrorBody": {}}}}
>>> fixed = correct(doc)
>>> sorted(fixed["paths"]["/a"]["get"]["responses"]), sorted(fixed["components"]["schemas"])
(['400'], ['ErrorBody'])
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

_ERROR_REF = "#/components/schemas/ErrorBody"
_FASTAPI_REF = "#/components/schemas/HTTPValidationError"


def _fastapi_422() -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": _FASTAPI_REF}}}}


def correct(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with FastAPI's generic 422 entries turned into this API's 400 (see the module docstring)."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            generic = (
                responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            )
            if generic.get("$ref") != _FASTAPI_REF:
                continue
            del responses["422"]
            responses.setdefault(
                "400",
                {
                    "description": "invalid input: `error` says what and how to fix it, `errors` lists each "
                    "problem",
                    "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                },
            )
    schemas = doc.get("components", {}).get("schemas", {})
    text = json.dumps(doc.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}" not in text and name in schemas:
            del schemas[name]
    return doc


def install(app: FastAPI) -> None:
    """Serve the corrected document at ``app.openapi_url`` (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = correct(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
