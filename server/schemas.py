"""Request and response bodies of the feature server (pydantic), as the OpenAPI document shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetPydanticSchema,
    Tag,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import core_schema

# -- shared ---------------------------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SCALAR_SCHEMA = [
    {"type": "string"},
    {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
    {"type": "number"},
    {"type": "boolean"},
    {"type": "null"},
]


# Integers are taken whole, of any size: a bounded integer member would hand an integer beyond 64
# bits to the float member, which takes it as an approximation (99999999999999999999999 -> 1e+23)
# and looks another key up. Whole, it is refused by what reads it, naming field and row: the key
# rule (featurestore.keys) for join keys, the column's type for pushed values.
_SCALARS = [
    core_schema.bool_schema(strict=True),
    core_schema.int_schema(strict=True),
    core_schema.float_schema(strict=True),
    core_schema.str_schema(strict=True),
    core_schema.none_schema(),
]


def _one_of(choices: list[core_schema.CoreSchema], message: str) -> GetPydanticSchema:
    """A union validated in pydantic-core that fails with ONE plain message, not one error per member."""
    return GetPydanticSchema(
        lambda _type, _handler: core_schema.union_schema(
            list(choices), custom_error_type="invalid_value", custom_error_message=message
        )
    )


# One custom check per field, so an error names the field once, plainly; the JSON schema still
# documents every accepted form. Join keys try the usual key types first: the members are strict, so
# no value matches two of them and the order changes only the speed (halves it for 100 integer keys).
_KEY_SCALARS = [
    _SCALARS[1],
    _SCALARS[3],
    _SCALARS[2],
    _SCALARS[0],
    _SCALARS[4],
]  # int, str, float, bool, null
KeyValue = Annotated[
    Any,
    _one_of(_KEY_SCALARS, "must be a string, a 64-bit integer, a number, a boolean or null"),
    WithJsonSchema({"anyOf": _SCALAR_SCHEMA}),
]
PushValue = Annotated[
    Any,
    _one_of(
        [*_SCALARS, core_schema.list_schema(core_schema.union_schema(_SCALARS))],
        "must be a string, a 64-bit integer, a number, a boolean, null, or a list of those",
    ),
    WithJsonSchema({"anyOf": [*_SCALAR_SCHEMA, {"type": "array", "items": {"anyOf": _SCALAR_SCHEMA}}]}),
]
Features = Annotated[
    Any,
    _one_of(
        [
            core_schema.list_schema(core_schema.str_schema(strict=True, min_length=1), min_length=1),
            core_schema.str_schema(strict=True, min_length=1),
        ],
        "must be a non-empty list of feature references ('view:feature') or a feature service name",
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                {"type": "string", "minLength": 1},
            ]
        }
    ),
]


def _rows_or_columns(value: Any) -> str | None:
    if isinstance(value, list):
        return "<rows>"
    if isinstance(value, dict):
        return "<columns>"
    return None


class ErrorDetail(BaseModel):
    field: str = Field(description="Where in the request: `body.entities.0.driver_id`")
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="What is wrong, and what to do about it")
    code: str | None = Field(
        None, description="A stable name of the error, for the errors that have one: `model_error`"
    )
    detail: list[ErrorDetail] | None = Field(None, description="Each problem of an invalid request")


_ERROR_TEXT = {
    401: "Missing or unknown API key",
    403: "The API key's role is too low for this endpoint",
    404: "Unknown feature, view, service or source (with a suggestion)",
    413: "Too many rows in one request (max_batch_rows) or body too large",
    422: "Invalid request: the message names the field",
    503: "Online store unreachable or too slow, or nothing applied; retry later",
    500: "A fault of the server: a model that did not answer one prediction per row (`code`: `model_error`)",
}


def ERRORS(*codes: int) -> dict[int | str, dict[str, Any]]:  # noqa: N802 - reads like a constant table
    """The `responses=` entries of these error statuses, for the OpenAPI document."""
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT[code]} for code in codes}


# -- online features ------------------------------------------------------------------------------

EntityRows = Annotated[list[dict[str, KeyValue]], Tag("<rows>")]
EntityColumns = Annotated[dict[str, list[KeyValue]], Tag("<columns>")]
Entities = Annotated[
    EntityRows | EntityColumns,
    Discriminator(
        _rows_or_columns,
        custom_error_type="entities_shape",
        custom_error_message="must be a list of rows (objects) or an object of columns (lists)",
    ),
]


class OnlineFeaturesRequest(BaseModel):
    """Which features, for which entities."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "features": ["driver_hourly_stats:conv_rate", "driver_hourly_stats:acc_rate"],
                    "entities": [{"driver_id": 1001}, {"driver_id": 1002}],
                },
                {
                    "features": "driver_activity",
                    "entities": {"driver_id": [1001, 1002]},
                    "include_status": True,
                },
            ]
        },
    )

    features: Features = Field(
        description="Feature references (`view:feature`), or the name of a feature service"
    )
    entities: Entities = Field(
        description='Join-key values: rows (`[{"driver_id": 1}, ...]`) or columns (`{"driver_id": [1, ...]}`)'
    )
    full_feature_names: bool = Field(False, description="Name features `view__feature` instead of `feature`")
    include_status: bool = Field(
        False, description="Add a status per value: PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE"
    )
    include_event_timestamps: bool = Field(False, description="Add the event time of each value")


Status = Literal["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]


class OnlineFeaturesResponse(BaseModel):
    """Columns, in request order: the join keys, then the features. One entry per entity row."""

    values: dict[str, list[Any]] = Field(description="Column name -> values (join keys first)")
    statuses: dict[str, list[Status]] | None = Field(None, description="Feature -> status per value")
    event_timestamps: dict[str, list[datetime | None]] | None = Field(
        None, description="Feature -> event time per value (RFC 3339, UTC)"
    )


# -- push -------------------------------------------------------------------------------------------

PushRows = Annotated[list[dict[str, PushValue]], Tag("<rows>")]
PushColumns = Annotated[dict[str, list[PushValue]], Tag("<columns>")]


class PushRequest(BaseModel):
    """Rows for the feature views of a push source."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {"driver_id": 1001, "conv_rate": 0.5, "event_timestamp": "2026-01-07T10:00:00Z"}
                    ],
                    "to": "online",
                }
            ]
        },
    )

    rows: Annotated[
        PushRows | PushColumns,
        Discriminator(
            _rows_or_columns,
            custom_error_type="rows_shape",
            custom_error_message="must be a list of rows (objects) or an object of columns (lists)",
        ),
    ] = Field(
        description='Rows (`[{...}, ...]`) or columns (`{"col": [...]}`): join keys, features and the '
        "source's timestamp column (RFC 3339 string or epoch seconds); bytes as base64, "
        'NaN as "NaN"'
    )
    to: Literal["online", "offline", "both"] = Field("online", description="Where to write the rows")


class PushResponse(BaseModel):
    source: str
    to: str
    rows: int = Field(description="Rows accepted")


# -- catalog ----------------------------------------------------------------------------------------


class EntityInfo(BaseModel):
    name: str
    join_keys: list[str]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = {}


class FieldInfo(BaseModel):
    name: str
    dtype: str = Field(description="Value type: Int64, Float64, String, Array(Int64), ...")


class MaterializationInfo(BaseModel):
    start: datetime
    end: datetime
    rows: int
    online_rows: int
    finished_at: datetime


class Freshness(BaseModel):
    watermark: datetime | None = Field(None, description="Materialized up to this event time")
    last_materialization: MaterializationInfo | None = None


class ViewInfo(BaseModel):
    name: str
    entities: list[str]
    join_keys: list[str]
    features: list[FieldInfo]
    source: str
    push: bool = Field(description="Whether rows can be pushed to it (its source is a push source)")
    ttl_seconds: float | None
    online: bool
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = {}
    freshness: Freshness


class ServiceInfo(BaseModel):
    name: str
    features: list[str] = Field(description="Feature references, view:feature")
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = {}


class RequestFieldInfo(BaseModel):
    name: str
    dtype: str
    source: str = Field(description="The request source that declares it")


class OnDemandViewInfo(BaseModel):
    name: str
    inputs: list[str] = Field(description="Features of other views it reads, view:feature")
    request_fields: list[RequestFieldInfo] = Field(description="Values each entity row must carry")
    features: list[FieldInfo] = Field(description="What its function computes")
    mode: str = Field(description="python, or the vectorized form's mode (arrow, pandas) used offline")
    module: str = Field(description="The repo file it is defined in")
    function: str
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = {}


class OnDemandViewList(BaseModel):
    on_demand_views: list[OnDemandViewInfo]


class EntityList(BaseModel):
    entities: list[EntityInfo]


class ViewList(BaseModel):
    views: list[ViewInfo]


class ServiceList(BaseModel):
    services: list[ServiceInfo]


# -- health -----------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    online_store: str = Field(description="Backend type: sqlite or redis")
    feature_views: int


# -- admin ------------------------------------------------------------------------------------------


class AuditEntry(BaseModel):
    at: datetime
    actor: str = Field(description="API key name (never the key), or the OS user for CLI actions")
    action: str
    target: str
    detail: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditEntry]


# -- reading bodies ---------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    """The JSON body of `request` as `model`, parsed and validated in one pass by pydantic-core.

    Faster than a FastAPI body parameter (no `json.loads` then validation of Python objects, no
    dependency resolution); errors are the same RequestValidationError, with `body.` locations.
    Declare the body for the OpenAPI document with `openapi_extra=request_body(model)`.
    """
    return parse_json(await request.body(), model)


def parse_json(body: bytes, model: type[M]) -> M:
    """JSON `body` as `model` (pydantic-core, one pass); a RequestValidationError with `body.` locations."""
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(
            [
                {**err, "loc": ("body", *err["loc"])}
                for err in e.errors(include_url=False, include_input=False)
            ]
        ) from None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` that documents `model` as a route's JSON request body."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    if "$defs" in schema:  # pragma: no cover - keep body models flat, or hoist $defs into components
        raise TypeError(f"{model.__name__}: request bodies read with parse_body must not nest models")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
