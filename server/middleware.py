"""The app's one middleware: metrics, the error catch-all, the body limit and the fast lane, in one layer.

Every request crosses it, so it is one pure-ASGI layer rather than four (each layer costs a
coroutine, often a `send` wrapper, per request). In order, for an HTTP request:

1. metrics: times the request and counts its answer by route template (`featurestore.server.metrics`);
2. catch-all: any exception no handler took is logged with its traceback and answered with a
   generic 500 (or, once the answer has started, re-raised so the server drops the connection);
   a middleware rather than an `Exception` handler, which Starlette re-raises to the server after
   answering (and uvicorn would log the traceback a second time);
3. body limit: 413 for a body over `max_bytes`, by Content-Length before reading, or while reading;
4. fast lane: the eligible routes answered directly (`featurestore.server.fastlane`); other requests go on to
   the app's routing.

The app (`featurestore.server.app.FeatureServerApp`) also calls `serve` itself, before FastAPI's own layers, for
the requests of the fast lane: the same four steps, without the three layers FastAPI and Starlette
put around every middleware (error page, telemetry, body limit), which a fast-lane request never needs.
`fs serve`'s protocol calls `serve_bytes` for a fast-lane request it read whole: the same steps
with the body in hand and the answer as bytes (`featurestore.server.protocol`).
"""

from __future__ import annotations

import logging
import time

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response, internal_error
from .fastlane import FastLane, Lane
from .metrics import Metrics

log = logging.getLogger("featurestore.server")

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class ServerMiddleware:
    """See the module docstring."""

    def __init__(
        self, app: ASGIApp | None, metrics: Metrics, max_body_bytes: int, fast_lane: FastLane
    ) -> None:
        self.app = app  # the rest of the app (its routing); None until `around` gives it
        self.metrics = metrics
        self.max_bytes = max_body_bytes
        self.fast_lane = fast_lane

    def around(self, app: ASGIApp) -> ServerMiddleware:
        """This layer around `app`: what `app.add_middleware(layer.around)` calls when FastAPI builds its stack."""
        self.app = app
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.serve(scope, receive, send, self.fast_lane.match(scope))

    async def serve(self, scope: Scope, receive: Receive, send: Send, lane: Lane | None) -> None:
        """Steps 1-4 for one HTTP request: `lane` answers it, or (None) the app's routing."""
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
            if lane is None:
                await self.app(scope, limited_receive, send_and_note_status)
            else:
                response = await lane.answer(scope, limited_receive)
                status = response.status_code  # a Response sends its start first: no `send` wrapper needed
                await response(scope, limited_receive, send)
        except Exception as exc:
            log.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            if status:  # too late for an error answer: let the server drop the connection
                raise
            await internal_error()(scope, receive, send_and_note_status)
        finally:
            self._observe(scope, status or 500, start)

    async def serve_bytes(
        self, scope: Scope, body: bytes, lane: Lane
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Steps 1-3 for a request read whole, answered by a lane with a bytes answer (`Lane.answer_bytes`,
        for `fs serve`'s protocol): (status, headers, body) of the answer."""
        start = time.perf_counter()
        status = 500
        try:
            if len(body) > self.max_bytes:
                response = error_response(413, self._too_large())
                status, headers, answer = 413, response.raw_headers, response.body
            else:
                status, headers, answer = await lane.answer_bytes(scope, body)
            return status, headers, answer
        except Exception as exc:
            log.error("unexpected error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            response = internal_error()
            return 500, response.raw_headers, response.body
        finally:
            self._observe(scope, status, start)

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        """Step 1's count and latency of an answered request, labelled by its route template."""
        route = scope.get("route")  # set by the router (or the fast lane) once a route matched
        method = scope["method"]
        self.metrics.observe(
            method if method in _METHODS else "OTHER",
            getattr(route, "path", None) or "<unmatched>",
            status,
            time.perf_counter() - start,
        )

    def _too_large(self) -> str:
        return f"request body over {self.max_bytes} bytes: send smaller batches"
