"""From exceptions to HTTP answers. Every error body is `{"error": "<what is wrong>"}`, plus `"detail"`
(a list of `{"field", "message", "type"}`) for invalid requests, plus `"code"` (a stable name a
client can branch on) for the errors that have one, e.g. `model_error`.

| exception                                   | status | meaning                                        |
|---------------------------------------------|--------|------------------------------------------------|
| request body/path/query fails validation    | 422    | names the field: `body.entities.0.driver_id`   |
| UnknownNameError (feature, view, service, …) | 404    | with a suggestion ("did you mean ...")         |
| PermissionDeniedError (governance check)    | 403    | the key's role may not do this (SPEC §13)      |
| RetrievalError, PushError, DefinitionError  | 422    | the request asks for something malformed       |
| batch over `max_batch_rows`, body too large | 413    |                                                |
| OnlineStoreUnavailable, lookup timeout      | 503    | with `Retry-After`; the next request retries   |
| NotAppliedError                             | 503    | nothing applied to the registry yet            |
| RegistryError                               | 503    | registry corrupt or busy; names the file       |
| ModelOutputError (models router)            | 500    | `"code": "model_error"`; the message is logged |
| TransformError (an on-demand function)      | 500    | `"code": "transform_error"`: view and message  |
| DefinitionsChangedError                     | 409    | an on-demand function's file changed: apply    |
| anything else                               | 500    | generic body; the traceback goes to the log    |

Clients never see a stack trace. Other routers extend `ERROR_STATUS` for their own exception classes,
and `ERROR_CODE` for those that answer a `"code"` (the models router: `ModelOutputError`, 500,
`model_error`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from featurestore.errors import (
    DefinitionError,
    DefinitionsChangedError,
    FeatureStoreError,
    NotAppliedError,
    OnlineStoreUnavailable,
    PermissionDeniedError,
    PushError,
    RegistryError,
    RetrievalError,
    TransformError,
    UnknownNameError,
)

from .encoding import JSONResponse

log = logging.getLogger("featurestore.server")

# Most specific class first; the first match wins.
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (UnknownNameError, 404),
    (PermissionDeniedError, 403),
    (DefinitionsChangedError, 409),
    (TransformError, 500),
    (OnlineStoreUnavailable, 503),
    (NotAppliedError, 503),
    (RegistryError, 503),
    (RetrievalError, 422),
    (PushError, 422),
    (DefinitionError, 422),
]
# The `"code"` of the answer, for the classes that have one; most specific first, the first match wins.
ERROR_CODE: list[tuple[type[Exception], str]] = [
    (TransformError, "transform_error"),
    (DefinitionsChangedError, "definitions_changed"),
]


def error_response(
    status: int,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    """The one shape of every error answer."""
    body: dict[str, Any] = {"error": message}
    if code is not None:
        body["code"] = code
    if detail is not None:
        body["detail"] = detail
    if status == 503:
        headers = {"Retry-After": "1", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    # Drop the tags of tagged unions (written "<rows>"): they are not part of the JSON path.
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("<")))


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    detail = []
    for e in exc.errors():
        message = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        if e.get("type") == "json_invalid":
            message = f"body is not valid JSON: {(e.get('ctx') or {}).get('error', 'decode error')}"
        detail.append({"field": _field(e.get("loc", ())), "message": message, "type": str(e.get("type", ""))})
    return detail


def _answer(
    request: Request,
    status: int,
    message: str,
    detail: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> Response:
    """`error_response`, or for a page of the web UI the same message as an HTML page."""
    from .ui.render import error_page, is_ui_request

    if is_ui_request(request):
        return error_page(request, status, message, headers=headers)
    return error_response(status, message, detail, headers=headers, code=code)


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    detail = _validation_detail(exc)
    first = detail[0] if detail else {"field": "request", "message": "invalid"}
    more = f" (and {len(detail) - 1} more problem(s), see detail)" if len(detail) > 1 else ""
    return _answer(request, 422, f"invalid request: {first['field']}: {first['message']}{more}", detail)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no endpoint {request.url.path}: see /docs for the endpoints"
        if request.url.path.startswith("/ui/"):
            message = f"no page {request.url.path}: start at /ui/"
    return _answer(request, exc.status_code, message, headers=getattr(exc, "headers", None))


async def _on_store_error(request: Request, exc: FeatureStoreError) -> Response:
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            if status == 503 and isinstance(exc, OnlineStoreUnavailable):
                request.app.state.fs.metrics.online_store_errors.labels("unavailable").inc()
            # The server's trouble (a broken model, a damaged registry), not the client's: say it in the log.
            if status == 500 or isinstance(exc, RegistryError):
                log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
            code = next((c for cls, c in ERROR_CODE if isinstance(exc, cls)), None)
            return _answer(request, status, str(exc), code=code)
    return await _on_unexpected(request, exc)


def internal_error() -> JSONResponse:
    """The generic 500 of an unexpected error (its details go to the log, never to the client)."""
    return error_response(500, "internal server error: the server logged the details")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error()


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on `app` (unexpected errors: see `featurestore.server.middleware`)."""
    # Starlette types a handler as taking any Exception, though it calls one only with the class it is
    # registered for: these narrower handlers are right, its type is too wide.
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(FeatureStoreError, _on_store_error)  # type: ignore[arg-type]
