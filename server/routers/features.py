"""`POST /features/online`: the latest feature values for entity rows (SPEC §7). Needs the `read` role.

    POST /features/online
    {"features": ["driver_hourly_stats:conv_rate"], "entities": [{"driver_id": 1001}],
     "include_status": true}
    -> {"values": {"driver_id": [1001], "conv_rate": [0.42]}, "statuses": {"conv_rate": ["PRESENT"]}}

The handler begins the async lookup (`FeatureStore.start_online_lookup`) before it validates the
body, so the validation runs during the round trip to the online store, which never blocks the
event loop (`_begun`: the early lookup is used only for the request as validated). A hung store
cannot hold requests: the app's `lookup_timeout` answers 503, by its own timer, or by the store's
when the store's async reads give up by themselves within it (`OnlineStore.async_read_bound`:
Redis, after about twice its `timeout_seconds`). The answer is encoded straight to JSON bytes with
orjson (see `featurestore.server.encoding` for NaN, timestamps and bytes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response

from featurestore.compat import timeout
from featurestore.online.lookup import PendingLookup

from ..auth import require
from ..encoding import JSONBytesResponse, dumps, finite
from ..schemas import (
    ERRORS,
    OnlineFeaturesRequest,
    OnlineFeaturesResponse,
    parse_json,
    request_body,
)
from ..state import ServerState

router = APIRouter(tags=["features"])


def check_batch(rows: list[Any] | dict[str, list[Any]], limit: int, what: str) -> int:
    """The number of rows of a rows-or-columns body; 413 over `limit`, 422 for ragged columns."""
    if isinstance(rows, list):
        n = len(rows)
    else:
        lengths = {name: len(values) for name, values in rows.items()}
        n = max(lengths.values(), default=0)
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"'{k}' has {v}" for k, v in lengths.items())
            raise HTTPException(422, f"{what} columns must have the same length: {detail}")
    if n > limit:
        raise HTTPException(
            413, f"{n} {what} rows in one request; the limit is {limit} (max_batch_rows): split the batch"
        )
    return n


async def lookup_answer(state: ServerState, body: bytes) -> bytes:
    """The JSON answer to the JSON `body` of a lookup request. Raises what the app's error handlers
    answer: RequestValidationError (422), HTTPException (413, 503), featurestore errors (404, 422, 503)."""
    early = _begun(state, body)
    try:
        request = parse_json(body, OnlineFeaturesRequest)
        check_batch(request.entities, state.max_batch_rows, "entity")
    except BaseException:
        if early is not None:
            early[1].discard()
        raise
    if early is not None and early[0] == (request.features, request.entities, request.full_feature_names):
        lookup: Awaitable[Any] = early[1]
    else:
        if early is not None:
            early[1].discard()
        lookup = state.store.get_online_features_async(
            request.features, request.entities, full_feature_names=request.full_feature_names
        )
    bound = state.store.online_store.async_read_bound
    if bound is not None and bound <= state.lookup_timeout:  # it answers (or raises a 503) in time by itself
        response = await lookup
    else:
        response = await _within(state, lookup)
    values = {k: finite(v) for k, v in response.entity_columns.items()}
    values.update({k: finite(v) for k, v in response.feature_columns.items()})
    content: dict[str, Any] = {"values": values}
    if request.include_status:
        content["statuses"] = response.statuses
    if request.include_event_timestamps:
        content["event_timestamps"] = response.event_timestamps
    return dumps(content)


def _begun(state: ServerState, body: bytes) -> tuple[tuple[Any, Any, Any], PendingLookup] | None:
    """The lookup of `body` begun before the body is validated, so the online store's round trip
    overlaps the validation: ((features, entities, full_feature_names) as read, the pending lookup),
    when the body is plainly a lookup of at most max_batch_rows rows; else None. `lookup_answer` uses
    it only when the validated request has those same values, and discards it otherwise."""
    try:
        quick = orjson.loads(body)
        features, entities = quick["features"], quick["entities"]
        full = quick.get("full_feature_names", False)
        n = len(entities) if type(entities) is list else max(map(len, entities.values()), default=0)
        if not 0 < n <= state.max_batch_rows:
            return None
        return (features, entities, full), state.store.start_online_lookup(features, entities, full)
    except Exception:  # anything unusual takes the validated road, which names what is wrong
        return None


async def _within(state: ServerState, lookup: Awaitable[Any]) -> Any:
    """`await lookup`, or a 503 after the app's lookup_timeout (for stores whose reads have no bound)."""
    try:
        async with timeout(state.lookup_timeout):
            return await lookup
    except asyncio.TimeoutError:
        state.metrics.online_store_errors.labels("timeout").inc()
        raise HTTPException(
            503, f"the online store did not answer within {state.lookup_timeout:g}s; retry later"
        ) from None


@router.post(
    "/features/online",
    response_model=OnlineFeaturesResponse,
    summary="Look up the latest feature values",
    dependencies=[Depends(require("read"))],
    responses=ERRORS(401, 403, 404, 413, 422, 503),
    openapi_extra=request_body(OnlineFeaturesRequest),
)
async def online_features(request: Request) -> Response:
    # The hot path: the endpoint takes only the request (FastAPI's per-parameter work would cost more
    # than the validation), the body is parsed by pydantic-core straight from bytes.
    return JSONBytesResponse(await lookup_answer(request.app.state.fs, await request.body()))
