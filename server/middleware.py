"""The app's own middleware: metrics, the error catch-all and the body limit, in one pure-ASGI layer.

Every request crosses it, so it is one layer rather than three (each costs a coroutine and often a
`send` wrapper per request). It sits inside any middleware a user adds (`app.add_middleware(...)`
wraps the app from outside), so a user's host check, CORS, auth or tracing sees every request,
the lookup and predictions included. In order, for an HTTP request:

1. metrics: times the request and counts its answer by route template (`featurestore.server.metrics`);
2. catch-all: any exception no handler took is logged with its traceback and answered with a
   generic 500 (or, once the answer has started, re-raised so the server drops the connection);
   a client gone before its body arrived is no error: counted as 499, nothing answered;
   a middleware rather than an `Exception` handler, which Starlette re-raises to the server after
   answering (and uvicorn would log the traceback a second time);
3. body limit: 413 for a body over `max_body_bytes`, by Content-Length before reading, or while reading.
"""

from __future__ import annotations

import logging
import time

from fastapi import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response, internal_error
from .metrics import Metrics

log = logging.getLogger("featurestore.server")

CLIENT_GONE = 499  # the status counted for a request whose client left before it was read (as nginx)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class ServerMiddleware:
    """See the module docstring. Added by `create_app` as `app.add_middleware(ServerMiddleware, ...)`."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0  # of the answer once it started; 0 before

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        max_bytes = self.max_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise HTTPException(413, self._too_large())
            return message

        try:
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > max_bytes:
                        await error_response(413, self._too_large())(scope, receive, send_and_note_status)
                        return
                    break
            await self.app(scope, limited_receive, send_and_note_status)
        except ClientDisconnect:  # gone before its body was read whole: nobody to answer
            status = status or CLIENT_GONE
        except Exception as exc:
            log.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if status:  # too late for an error answer: let the server drop the connection
                raise
            await internal_error()(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")  # set by the router once a route matched
            method = scope["method"]
            self.metrics.observe(
                method if method in _METHODS else "OTHER",
                getattr(route, "path", None) or "<unmatched>",
                status or 500,
                time.perf_counter() - start,
            )

    def _too_large(self) -> str:
        return f"request body over {self.max_bytes} bytes: send smaller batches"
