"""`POST /features/online`: the latest feature values for entity rows (SPEC §7). Needs the `read` role.

    POST /features/online
    {"features": ["driver_hourly_stats:conv_rate"], "entities": [{"driver_id": 1001}],
     "include_status": true}
    -> {"values": {"driver_id": [1001], "conv_rate": [0.42]}, "statuses": {"conv_rate": ["PRESENT"]}}

The handler calls the async lookup (`FeatureStore.get_online_features_async`): the round trip to the online
store never blocks the event loop. A lookup that takes longer than the app's `lookup_timeout`
answers 503, so a hung store cannot hold requests. The answer is encoded straight to JSON bytes
with orjson (see `server.encoding` for NaN, timestamps and bytes).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response

from ..auth import require
from ..encoding import JSONBytesResponse, dumps, finite
from ..errors import error_response
from ..schemas import ERRORS, OnlineFeaturesRequest, OnlineFeaturesResponse, parse_body, request_body
from ..state import ServerState

router = APIRouter(tags=["features"])

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    class _timeout:  # noqa: N801 - stands in for asyncio.timeout
        def __init__(self, seconds: float):
            self.seconds = seconds

        async def __aenter__(self) -> None:
            task = asyncio.current_task()
            self.handle = asyncio.get_running_loop().call_later(self.seconds, task.cancel)

        async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            self.handle.cancel()
            if exc_type is asyncio.CancelledError:
                raise asyncio.TimeoutError from exc


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
        raise HTTPException(413, f"{n} {what} rows in one request; the limit is {limit} (max_batch_rows): "
                                 "split the batch")
    return n


@router.post(
    "/features/online", response_model=OnlineFeaturesResponse, summary="Look up the latest feature values",
    dependencies=[Depends(require("read"))], responses=ERRORS(401, 403, 404, 413, 422, 503),
    openapi_extra=request_body(OnlineFeaturesRequest))
async def online_features(request: Request) -> Response:
    # The hot path: the body is parsed by pydantic-core straight from bytes, state read off the app.
    body = await parse_body(request, OnlineFeaturesRequest)
    state: ServerState = request.app.state.fs
    check_batch(body.entities, state.max_batch_rows, "entity")
    try:
        async with _timeout(state.lookup_timeout):
            response = await state.store.get_online_features_async(body.features, body.entities,
                                                                   full_feature_names=body.full_feature_names)
    except asyncio.TimeoutError:
        return _too_slow(state)
    values = {k: finite(v) for k, v in response.entity_columns.items()}
    values.update({k: finite(v) for k, v in response.feature_columns.items()})
    content: dict[str, Any] = {"values": values}
    if body.include_status:
        content["statuses"] = response.statuses
    if body.include_event_timestamps:
        content["event_timestamps"] = response.event_timestamps
    return JSONBytesResponse(dumps(content))


def _too_slow(state: ServerState) -> Response:
    state.metrics.online_store_errors.labels("timeout").inc()
    return error_response(503, f"the online store did not answer within {state.lookup_timeout:g}s; retry later")
