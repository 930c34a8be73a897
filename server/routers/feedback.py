"""`POST /models/{ref}/feedback`: labels for served predictions (SPEC §12). Needs the `write` role.

    POST /models/trip_eta@production/feedback
    {"feedback": [{"request_id": "9f1c...", "row": 0, "label": 12.5}]}
    -> {"model": "trip_eta", "recorded": 1}

`request_id` is the one a predict answer returned, `row` the entity row's index within that request,
`label` a number, boolean or string. The labels are matched to the predictions of the model named by
`ref` (its alias or version does not matter: the request id says which version served it). The whole
batch is checked before anything is written: a bad row is a 422 naming it (`body.feedback.3.row`).
A feedback log that cannot be written (`[monitoring] log_path` not a writable folder, disk full) is
a 503 naming the path: the server's trouble, not the request's.
The work is `featurestore.monitoring.performance.log_feedback`'s; every batch is in the audit trail.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, GetPydanticSchema, WithJsonSchema
from pydantic_core import core_schema
from starlette.concurrency import run_in_threadpool

from featurestore.errors import LogWriteError, MonitoringError
from featurestore.monitoring.performance import MAX_REQUEST_ID, MAX_ROW

from .. import audit
from ..auth import require
from ..errors import ERROR_STATUS
from ..schemas import ERRORS, parse_body, request_body
from ..state import ServerState, State
from .features import check_batch

if (LogWriteError, 503) not in ERROR_STATUS:
    ERROR_STATUS.insert(
        0, (LogWriteError, 503)
    )  # before MonitoringError, its base class: the first match wins
if (MonitoringError, 422) not in ERROR_STATUS:
    ERROR_STATUS.append((MonitoringError, 422))

router = APIRouter(tags=["models"])

_LABEL = core_schema.union_schema(
    [
        core_schema.bool_schema(strict=True),
        core_schema.int_schema(strict=True),
        core_schema.float_schema(strict=True, allow_inf_nan=False),
        core_schema.str_schema(strict=True),
    ],
    custom_error_type="invalid_label",
    custom_error_message="must be a number, a boolean or a string",
)
# A typed dict checked in pydantic-core (errors located at body.feedback.<i>.<field>), not a nested
# model: request bodies read with parse_body stay flat (server/schemas.py: request_body).
FeedbackRow = Annotated[
    dict[str, Any],
    GetPydanticSchema(
        lambda _type, _handler: core_schema.typed_dict_schema(
            {
                "request_id": core_schema.typed_dict_field(
                    core_schema.str_schema(strict=True, min_length=1, max_length=MAX_REQUEST_ID)
                ),
                "row": core_schema.typed_dict_field(core_schema.int_schema(strict=True, ge=0, le=MAX_ROW)),
                "label": core_schema.typed_dict_field(_LABEL),
            },
            extra_behavior="forbid",
        )
    ),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "request_id": {"type": "string", "minLength": 1, "maxLength": MAX_REQUEST_ID},
                "row": {"type": "integer", "minimum": 0, "maximum": MAX_ROW},
                "label": {"anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}]},
            },
            "required": ["request_id", "row", "label"],
            "additionalProperties": False,
        }
    ),
]


class FeedbackRequest(BaseModel):
    """Labels for served predictions, by request id and row."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"feedback": [{"request_id": "9f1c2a", "row": 0, "label": 12.5}]}]},
    )

    feedback: list[FeedbackRow] = Field(
        description="One object per labelled prediction: request_id (from the predict answer), row "
        "(the entity row's index in that request), label"
    )


class FeedbackResponse(BaseModel):
    """How many labels were recorded for which model."""

    model: str
    recorded: int


def _record(state: ServerState, ref: str, rows: list[dict[str, Any]]) -> tuple[str, int]:
    name = state.store.models.resolve(ref)[0]  # 404 for an unknown model, before anything is written
    return name, state.store.monitor.log_feedback(rows, model=name)


@router.post(
    "/models/{ref}/feedback",
    response_model=FeedbackResponse,
    summary="Labels for served predictions (live performance)",
    dependencies=[Depends(require("write"))],
    responses=ERRORS(401, 403, 404, 413, 422, 503),
    openapi_extra=request_body(FeedbackRequest),
)
async def feedback(
    ref: Annotated[str, Path(max_length=300)], request: Request, state: State
) -> FeedbackResponse:
    body = await parse_body(request, FeedbackRequest)
    n = check_batch(body.feedback, state.max_batch_rows, "feedback")
    name, recorded = await run_in_threadpool(_record, state, ref, body.feedback)
    await audit.record(request, "feedback", f"model:{name}", {"rows": n})
    return FeedbackResponse(model=name, recorded=recorded)
