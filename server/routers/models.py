"""Model endpoints (SPEC §9): predictions, the models catalog, alias moves and registration.

    POST /models/eta@production/predict          (or /models/eta/predict?alias=production, ?version=3;
    {"entities": [{"driver_id": 1001}],           plain /models/eta/predict = its production alias,
     "return_features": true}                     else its latest version)
    -> {"model": "eta", "version": 3, "request_id": "...", "predictions": [12.5],
        "features": {"conv_rate": [0.42], ...}, "missing": [[]]}

    GET    /catalog/models, /catalog/models/{name}          read
    GET    /models/pending[?model=eta]                      read: candidates awaiting approval
    PUT    /models/{name}/aliases/{alias}  {"version": 3}   models (a protected alias: approver)
    DELETE /models/{name}/aliases/{alias}                   models (a protected alias: approver)
    POST   /models/{name}/versions?feature_service=...      models; body: a .skops or .onnx file
    POST   /models/{name}/versions/{v}/approve  {"reason": "..."} (optional)   approver
    POST   /models/{name}/versions/{v}/reject   {"reason": "..."} (optional)   approver

Predict needs `read`. Roles hold permissions (server/auth.py): `models` admits models, approver and
admin. Beyond the route's role, the core's governance check (featurestore.governance) runs with the
key's role, so HTTP, CLI and Python share one rule: a `models` key moving the protected `production`
alias gets 403 saying the alias is protected. Approve / reject of a version no pipeline run left
pending (never, or already decided) is a 409 (NoPendingApprovalError): the request is well formed,
the run's state is what refuses it; an unknown model or version is a 404.

The business logic lives in `featurestore.models.serving.ModelServer` (one per app, created on first
use, closed with the app): this module parses, calls, encodes.
Registration over HTTP takes only formats that run no code when read: skops files holding types skops
trusts by default, and ONNX. Pickled models are registered from Python or `fs models register`.
Uploads are untrusted: a file that does not parse or load, or an ONNX model whose tensors keep their
data in other files (external data), is refused with a 422 naming the problem. A model that does not
answer one prediction per row is a 500 with `"code": "model_error"` (and nothing is logged).
"""

from __future__ import annotations

import asyncio
import io
import threading
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from featurestore.compat import timeout
from featurestore.errors import ModelRegistryError
from featurestore.models.registry import MAX_VERSION, NoPendingApprovalError
from featurestore.models.serving import ModelOutputError, ModelServer, ModelUnavailable

from .. import audit
from ..auth import Principal, require
from ..encoding import JSONBytesResponse, dumps, finite
from ..errors import ERROR_CODE, ERROR_STATUS, error_response
from ..schemas import ERRORS, Entities, ErrorBody, parse_body, parse_json, request_body
from ..state import ServerState, State
from .features import check_batch

# Most specific first: a model that cannot be loaded, or answers the wrong number of predictions, is
# the server's trouble, not the client's.
for _entry in (
    (ModelRegistryError, 422),
    (NoPendingApprovalError, 409),
    (ModelUnavailable, 503),
    (ModelOutputError, 500),
):  # inserted in front: ends up in this order reversed
    if _entry not in ERROR_STATUS:
        ERROR_STATUS.insert(0, _entry)
if (ModelOutputError, "model_error") not in ERROR_CODE:
    ERROR_CODE.insert(0, (ModelOutputError, "model_error"))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    server = getattr(app.state, "model_server", None)
    if server is not None:
        await run_in_threadpool(server.close)  # flushes the prediction log


router = APIRouter(tags=["models"], lifespan=_lifespan)
_create_lock = threading.Lock()


def model_server(request: Request) -> ModelServer:
    """The app's ModelServer, created on first use."""
    server = getattr(request.app.state, "model_server", None)
    if server is None:
        with _create_lock:
            server = getattr(request.app.state, "model_server", None)
            if server is None:
                state: ServerState = request.app.state.fs
                server = request.app.state.model_server = ModelServer(state.store)
    return server


# -- predict ---------------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    """Entity rows to predict for, with any request-time values the model takes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"entities": [{"driver_id": 1001}, {"driver_id": 1002}]},
                {"entities": {"driver_id": [1001], "distance": [12.5]}, "return_features": True},
            ]
        },
    )

    entities: Entities = Field(description="Join keys (and request-time values): rows or columns")
    return_features: bool = Field(False, description="Add the feature values the model was given")
    probabilities: bool = Field(False, description="Add predict_proba (classifiers)")
    request_id: str | None = Field(
        None, max_length=200, description="Your id for this request (logged); default: a new one"
    )


class PredictResponse(BaseModel):
    model: str
    version: int
    request_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    features: dict[str, list[Any]] | None = Field(
        None, description="Input column -> values, in the model's order"
    )
    missing: list[list[str]] | None = Field(
        None, description="Per row: inputs that were missing and got a default/null"
    )


async def _bounded(coro: Any, seconds: float) -> Any:
    async with timeout(seconds):
        return await coro


_PREDICT_PARAMETERS = [
    {
        "name": "ref",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 300},
        "description": "`name`, `name@alias` or `name@3` (plain `name`: its production alias, else its latest version)",
    },
    {
        "name": "version",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
        "description": "A version number",
    },
    {
        "name": "alias",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 100},
        "description": "An alias, e.g. production",
    },
]


def _selector(request: Request) -> tuple[str, int | None, str | None]:
    """The model reference of a predict request: path `ref`, query `version` / `alias` (422 when malformed)."""
    ref = request.path_params["ref"]
    query = request.query_params
    version, alias = query.get("version"), query.get("alias")
    if len(ref) > 300 or (alias is not None and not 0 < len(alias) <= 100):
        raise HTTPException(422, "model reference too long (name@alias: at most 300 characters, alias 100)")
    if version is not None:
        if not version.isdigit() or not 1 <= int(version) <= MAX_VERSION:
            raise HTTPException(
                422,
                f"query parameter version must be a whole number from 1 to {MAX_VERSION}, got {version!r}",
            )
        return ref, int(version), alias
    return ref, None, alias


@router.post(
    "/models/{ref}/predict",
    response_model=PredictResponse,
    summary="Predict with a model",
    dependencies=[Depends(require("read"))],
    responses=ERRORS(401, 403, 404, 413, 422, 500, 503),
    openapi_extra={**request_body(PredictRequest), "parameters": _PREDICT_PARAMETERS},
)
async def predict(request: Request) -> Response:
    # The hot path, written like POST /features/online: the endpoint takes only the request (FastAPI's
    # per-parameter work costs more than the model server itself), the body is parsed from bytes.
    ref, version, alias = _selector(request)
    body = await parse_body(request, PredictRequest)
    state: ServerState = request.app.state.fs
    server = model_server(request)
    check_batch(body.entities, state.max_batch_rows, "entity")
    if (
        server.cached(ref, version, alias) is None
    ):  # first use: load the model before the lookup's clock starts
        await run_in_threadpool(server.get, ref, version, alias)
    try:
        out = await _bounded(
            server.predict_async(
                ref,
                body.entities,
                version=version,
                alias=alias,
                return_features=body.return_features,
                probabilities=body.probabilities,
                request_id=body.request_id,
            ),
            state.lookup_timeout,
        )
    except (asyncio.TimeoutError, TimeoutError):
        state.metrics.online_store_errors.labels("timeout").inc()
        return error_response(
            503, f"the online store did not answer within {state.lookup_timeout:g}s; retry later"
        )
    out["predictions"] = finite(out["predictions"])
    if "features" in out:
        out["features"] = {k: finite(v) for k, v in out["features"].items()}
    return JSONBytesResponse(dumps(out))


# -- catalog ---------------------------------------------------------------------------------------


class ModelSummary(BaseModel):
    name: str
    latest_version: int
    versions: int
    feature_service: str
    description: str
    aliases: dict[str, int]
    registered_by: str
    registered_at: str


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelInputInfo(BaseModel):
    name: str
    ref: str | None = Field(description="view:feature, or null for a request-time value")


class ModelVersionInfo(BaseModel):
    name: str
    version: int
    flavor: str
    format: str
    sha256: str
    size: int
    feature_service: str
    inputs: list[ModelInputInfo]
    full_feature_names: bool
    training_set: str | None
    training_fingerprint: str | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, str]
    description: str
    missing_policy: dict[str, Any]
    registered_by: str
    registered_at: str
    aliases: list[str]


class ModelDetail(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[ModelVersionInfo]


def _info(mv: Any) -> ModelVersionInfo:
    d = mv.to_dict()
    d.pop("artifact")
    return ModelVersionInfo(**d)


@router.get(
    "/catalog/models",
    response_model=ModelList,
    summary="Registered models",
    tags=["catalog"],
    dependencies=[Depends(require("read"))],
    responses=ERRORS(401, 403),
)
def list_models(state: State) -> ModelList:
    return ModelList(models=[ModelSummary(**m) for m in state.store.models.list()])


@router.get(
    "/catalog/models/{name}",
    response_model=ModelDetail,
    summary="One model, its versions and aliases",
    tags=["catalog"],
    dependencies=[Depends(require("read"))],
    responses=ERRORS(401, 403, 404, 422),
)
def get_model(name: Annotated[str, Path(max_length=200)], state: State) -> ModelDetail:
    models = state.store.models
    return ModelDetail(
        name=name, versions=[_info(v) for v in models.versions(name)], aliases=models.aliases(name)
    )


# -- managing models ---------------------------------------------------------------------------------


class AliasRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=MAX_VERSION, description="The version the alias points at from now on")


@router.put(
    "/models/{name}/aliases/{alias}",
    response_model=ModelVersionInfo,
    summary="Point an alias at a version",
    dependencies=[Depends(require("models"))],
    responses=ERRORS(401, 403, 404, 422),
    openapi_extra=request_body(AliasRequest),
)
async def set_alias(
    name: Annotated[str, Path(max_length=200)],
    alias: Annotated[str, Path(max_length=100)],
    request: Request,
    state: State,
    principal: Annotated[Principal, Depends(require("models"))],
) -> ModelVersionInfo:
    body = await parse_body(request, AliasRequest)  # bad JSON is a 422 like every other body
    # the app's model server hears of the move and loads the new version before this returns
    mv = await run_in_threadpool(
        state.store.models.set_alias, name, alias, body.version, principal.name, principal.role
    )
    return _info(mv)


@router.delete(
    "/models/{name}/aliases/{alias}",
    status_code=204,
    summary="Remove an alias",
    dependencies=[Depends(require("models"))],
    responses=ERRORS(401, 403, 404, 422),
)
async def delete_alias(
    name: Annotated[str, Path(max_length=200)],
    alias: Annotated[str, Path(max_length=100)],
    state: State,
    principal: Annotated[Principal, Depends(require("models"))],
) -> Response:
    await run_in_threadpool(state.store.models.delete_alias, name, alias, principal.name, principal.role)
    return Response(status_code=204)


# -- approvals (SPEC §13) ------------------------------------------------------------------------------


class ReviewRequest(BaseModel):
    """Why the candidate is approved or rejected (optional; recorded in the run and the audit trail)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000, description="Why, in a sentence")


def _review_body() -> dict[str, Any]:
    extra = request_body(ReviewRequest)
    extra["requestBody"]["required"] = False
    return extra


async def _review(request: Request) -> ReviewRequest:
    data = await request.body()
    return parse_json(data, ReviewRequest) if data.strip() else ReviewRequest(reason="")


_REVIEW_ERRORS = {
    **ERRORS(401, 403, 404, 422),
    409: {"model": ErrorBody, "description": "No pipeline run left this version pending (or it was decided)"},
}


class PendingApproval(BaseModel):
    run: int
    model: str
    version: int | None
    alias: str | None
    candidate: dict[str, Any] = Field(description="{version, metrics} of the candidate")
    champion: dict[str, Any] = Field(description="{version, metrics} of the model it would replace")
    reasons: list[str]
    requested_at: str
    requested_by: str | None


class PendingList(BaseModel):
    pending: list[PendingApproval]


@router.post(
    "/models/{name}/versions/{version}/approve",
    response_model=ModelVersionInfo,
    summary="Approve a candidate a pipeline left pending: its alias moves to it",
    dependencies=[Depends(require("approver"))],
    responses=_REVIEW_ERRORS,
    openapi_extra=_review_body(),
)
async def approve(
    name: Annotated[str, Path(max_length=200)],
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    request: Request,
    state: State,
    principal: Annotated[Principal, Depends(require("approver"))],
) -> ModelVersionInfo:
    body = await _review(request)
    # the alias moves in the run's transaction; the app's model server hears of it before this returns
    mv = await run_in_threadpool(
        state.store.models.approve, name, version, body.reason, principal.name, principal.role
    )
    return _info(mv)


@router.post(
    "/models/{name}/versions/{version}/reject",
    summary="Reject a candidate a pipeline left pending: the alias stays; returns the run",
    dependencies=[Depends(require("approver"))],
    responses=_REVIEW_ERRORS,
    openapi_extra=_review_body(),
)
async def reject(
    name: Annotated[str, Path(max_length=200)],
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
    request: Request,
    state: State,
    principal: Annotated[Principal, Depends(require("approver"))],
) -> Response:
    body = await _review(request)
    run = await run_in_threadpool(
        state.store.models.reject, name, version, body.reason, principal.name, principal.role
    )
    return JSONBytesResponse(dumps(run))


@router.get(
    "/models/pending",
    response_model=PendingList,
    summary="Candidates awaiting approval (of one model with ?model=)",
    tags=["catalog"],
    dependencies=[Depends(require("read"))],
    responses=ERRORS(401, 403, 404, 422),
)
def pending(
    state: State,
    model: Annotated[str | None, Query(max_length=200, description="Only this model's")] = None,
) -> PendingList:
    return PendingList.model_validate({"pending": state.store.models.pending(model)})


@router.post(
    "/models/{name}/versions",
    response_model=ModelVersionInfo,
    status_code=201,
    summary="Register a new version from a .skops or .onnx file (request body)",
    dependencies=[Depends(require("models"))],
    responses=ERRORS(401, 403, 404, 413, 422),
)
async def register(
    name: Annotated[str, Path(max_length=200)],
    request: Request,
    state: State,
    principal: Annotated[Principal, Depends(require("models"))],
    feature_service: Annotated[str, Query(max_length=200, description="The feature service the model reads")],
    format: Annotated[Literal["skops", "onnx"], Query(description="The body's format")] = "skops",
    training_set: Annotated[str | None, Query(max_length=200)] = None,
    description: Annotated[str, Query(max_length=2000)] = "",
    missing_policy: Annotated[Literal["fail", "null"], Query()] = "fail",
    request_features: Annotated[list[str], Query(description="Inputs sent with each entity row")] = [],  # noqa: B006
) -> ModelVersionInfo:
    data = await request.body()
    if not data:
        raise HTTPException(422, f"the request body must be the model file ({format})")
    mv = await run_in_threadpool(
        _register,
        state,
        name,
        data,
        format,
        feature_service,
        training_set,
        description,
        missing_policy,
        request_features,
        principal,
    )
    await audit.record(
        request, "model_register_http", f"model:{name}", {"version": mv.version, "format": format}
    )
    return _info(mv)


# A skops file is a zip archive: what it unpacks to is bounded before skops reads any of it.
MAX_UNPACKED_BYTES = 1 << 30


def _check_unpacked_size(data: bytes) -> None:
    """Refuse a zip archive whose members would unpack to more than MAX_UNPACKED_BYTES (a zip bomb:
    deflate reaches about 1000:1). Python's zipfile reads a member up to its recorded size only."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ModelRegistryError(
            f"the request body is not a readable skops file (a zip archive): {e}"
        ) from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelRegistryError(
            f"the skops file unpacks to {unpacked} bytes, over the {MAX_UNPACKED_BYTES} this server reads: "
            "register a model this large from Python (store.models.register)"
        )


def _register(
    state: ServerState,
    name: str,
    data: bytes,
    fmt: str,
    feature_service: str,
    training_set: str | None,
    description: str,
    missing_policy: str,
    request_features: list[str],
    principal: Principal,
) -> Any:
    if fmt == "skops":
        import skops.io as sio

        try:
            _check_unpacked_size(data)
            untrusted = sio.get_untrusted_types(data=data)
            if untrusted:
                raise ModelRegistryError(
                    f"the skops file holds types skops does not trust by default {untrusted}: register it from "
                    "Python (store.models.register) where you can decide to trust them"
                )
            model = sio.loads(data, trusted=[])
        except ModelRegistryError:
            raise
        except Exception as e:
            raise ModelRegistryError(f"the request body is not a readable skops file: {e}") from None
    else:
        model = data
    return state.store.models.register(
        name,
        model,
        feature_service=feature_service,
        training_set=training_set,
        description=description,
        missing_policy=missing_policy,
        request_features=request_features,
        actor=principal.name,
        role=principal.role,
    )
