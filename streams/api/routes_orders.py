"""``POST /api/orders``: a risk-checked manual order, produced to the orders topic (see
:mod:`streams.api.orders`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from starlette.responses import Response

from streams.api.jsonresp import json_response
from streams.api.models import ErrorBody, OrderRequest, OrderResult, RejectedOrder
from streams.api.state import ApiState, get_state
from streams.api.validation import IDEMPOTENCY_KEY_PATTERN

router = APIRouter(tags=["orders"])


@router.post(
    "/api/orders",
    status_code=201,
    response_model=OrderResult,
    responses={
        400: {"model": ErrorBody, "description": "malformed order (symbol, side, quantity, Idempotency-Key)"},
        409: {
            "model": ErrorBody,
            "description": "the Idempotency-Key is in use by another or an unfinished request",
        },
        422: {"model": RejectedOrder, "description": "rejected by the risk checks; `reason` says why"},
        503: {
            "model": ErrorBody,
            "description": "Redis or the broker did not answer; retry with the same key",
        },
    },
    summary="Place a manual order (risk-checked, produced to the orders topic)",
)
async def place_order(
    order: OrderRequest,
    state: Annotated[ApiState, Depends(get_state)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="makes retries safe: the order id is derived from it; without it a new key is "
            "generated "
            "and returned",
        ),
    ] = None,
) -> Response:
    """201 with the order id when accepted, 422 with the reason when rejected; a retry with the same
    ``Idempotency-Key`` answers the first result again (``replayed: true``)."""
    placed = await state.orders.place(order, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if placed.body.get("replayed") else {}
    return json_response(placed.body, placed.status_code, headers)
