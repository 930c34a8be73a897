"""`POST /push/{source}`: rows for the feature views of a push source (SPEC §5). Needs the `write` role.

    POST /push/driver_stats_push
    {"rows": [{"driver_id": 1001, "conv_rate": 0.5, "event_timestamp": "2026-01-07T10:00:00Z"}],
     "to": "online"}
    -> {"source": "driver_stats_push", "to": "online", "rows": 1}

Rows come as a list of objects or as an object of columns. JSON values are typed by the views fed
by the source (see `featurestore.server.encoding.decode_column`: timestamps as RFC 3339 or epoch seconds, bytes
as base64, "NaN"/"Infinity"), then `store.push` validates the whole batch before writing anything:
a bad batch gets 422 naming the column and row, and nothing is written. Columns no view uses are
ignored. Every push, accepted or refused, is recorded in the audit trail (who, source, rows, result).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from featurestore import FeatureStore
from featurestore.errors import FeatureStoreError, PushError
from featurestore.keys import key_types
from featurestore.types import UnixTimestamp, ValueType

from .. import audit
from ..auth import require
from ..encoding import DecodeError, decode_column
from ..schemas import ERRORS, PushRequest, PushResponse, parse_body, request_body
from ..state import State
from .features import check_batch

router = APIRouter(tags=["push"])


def column_types(store: FeatureStore, source_name: str) -> dict[str, ValueType]:
    """The type of every column the views of a push source read (404/422 for unknown or non-push sources)."""
    catalog = store.catalog
    source = catalog.push_source(source_name)
    types: dict[str, ValueType] = {}
    for view in catalog.views_of_source(source_name):
        for name, key in key_types(store, view).items():  # declared, else from the source or storage
            types.setdefault(name, key.dtype)
        for field in view.row_fields:
            types.setdefault(field.name, field.dtype)
    for column in (source.timestamp_field, source.created_timestamp_field):
        if column:
            types[column] = UnixTimestamp
    return types


def to_table(
    rows: list[dict[str, Any]] | dict[str, list[Any]],
    types: dict[str, ValueType],
    keys: Collection[str] = (),
) -> pa.Table:
    """Rows or columns of JSON values as an Arrow table of the columns the views use (`keys` of unknown
    type as given)."""
    if isinstance(rows, list):
        names = list(dict.fromkeys(k for row in rows for k in row))
        columns = {name: [row.get(name) for row in rows] for name in names}
    else:
        columns = rows
    arrays = {}
    for name, values in columns.items():
        dtype = types.get(name)
        if dtype is not None:
            arrays[name] = decode_column(name, values, dtype)
        else:  # a join key of a type not known yet (nothing to read it from), or a column no view uses
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as e:
                if name in keys:
                    raise DecodeError(f"column '{name}' (a join key) cannot be read: {e}") from None
                continue  # not used by any view
    return pa.table(arrays)


def _push(store: FeatureStore, source: str, rows: Any, to: str) -> int:
    keys = {k for view in store.catalog.views_of_source(source) for k in view.join_keys}
    return store.push(source, to_table(rows, column_types(store, source), keys), to=to)


@router.post(
    "/push/{source}",
    response_model=PushResponse,
    summary="Push rows to a push source's feature views",
    dependencies=[Depends(require("write"))],
    responses=ERRORS(401, 403, 404, 413, 422, 503),
    openapi_extra=request_body(PushRequest),
)
async def push(source: Annotated[str, Path(max_length=200)], request: Request, state: State) -> PushResponse:
    body = await parse_body(request, PushRequest)  # one pass in pydantic-core; bad UTF-8 or JSON is a 422
    n = check_batch(body.rows, state.max_batch_rows, "pushed")
    try:
        rows = await run_in_threadpool(_push, state.store, source, body.rows, body.to)
    except DecodeError as e:
        await audit.record(request, "push", source, {"to": body.to, "rows": n, "result": f"refused: {e}"})
        raise PushError(f"push to '{source}': {e}") from None
    except FeatureStoreError as e:
        await audit.record(request, "push", source, {"to": body.to, "rows": n, "result": f"refused: {e}"})
        raise
    await audit.record(request, "push", source, {"to": body.to, "rows": rows, "result": "ok"})
    state.metrics.pushed_rows.labels(source, body.to).inc(rows)
    return PushResponse(source=source, to=body.to, rows=rows)
