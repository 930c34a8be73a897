"""uvicorn's HTTP protocol, with the fast lane answered from the protocol: what `fs serve` runs.

uvicorn hands every request to the ASGI app through its own machinery: a request cycle with an
event for the body, the proxy-headers middleware, an exception wrapper per request (`run_asgi`),
then the app's `__call__`, and writes the answer's head and body separately. For the requests of
the fast lane (`featurestore.server.fastlane`: the online lookup and predictions), `FastLaneProtocol` calls the
app's one layer (`ServerMiddleware.serve`: metrics, catch-all, body limit, auth, the handler)
directly, on one of two roads:

- whole: the common case, a `POST` with a `Content-Length` of at most `WHOLE_BODY_LIMIT` (1 MiB), from
  a caller the route admits (checked from the headers, so a refused caller is answered before its body
  is read), on a connection with nothing else in flight and no `Expect: 100-continue`. The protocol
  reads the body itself, hands it to the layer whole, and writes the answer in one write, then does
  what uvicorn does when a response is complete (keep-alive timer, next pipelined request,
  `Connection: close`).
- hook: anything else (chunked or large bodies, pipelined requests queued behind others, `Expect`,
  refused callers): uvicorn's request cycle as usual, and at the point where uvicorn starts the app
  (`_start_asgi_task`) the layer is called instead, with the cycle's own `receive` and `send`.

Every other request is uvicorn's, unchanged, as are parsing, flow control and graceful shutdown
(a request read whole stands in for uvicorn's cycle as `protocol.cycle`, with the attributes
uvicorn's connection and shutdown handling read).

What the fast lane does not get from the skipped layers: `X-Forwarded-For`/`X-Forwarded-Proto`
rewriting of the client address and scheme (no fast-lane route reads them) and uvicorn's
"Exception in ASGI application" log (the layer's catch-all logs unexpected errors itself).

It overrides uvicorn's parser callbacks and `_start_asgi_task`, so it is tested against the uvicorn
the project installs (tests/server/test_protocol.py, raw sockets). Without httptools, or on a
uvicorn without that method, `fs serve` runs uvicorn's own protocol, and the app's `__call__` still
takes the fast lane, a few layers later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from .app import FeatureServerApp
from .errors import internal_error

log = logging.getLogger("featurestore.server")

# Bodies up to this size are read whole by the protocol; larger ones go through uvicorn's cycle and
# its flow control (lookup bodies are a few KB: 1,000 entity keys are ~10 KB of JSON).
WHOLE_BODY_LIMIT = 1 << 20


def hooks_uvicorn() -> bool:
    """Whether this uvicorn has the method FastLaneProtocol hooks (else `fs serve` runs uvicorn's own)."""
    return callable(getattr(HttpToolsProtocol, "_start_asgi_task", None))


def _feature_server_app(app: Any) -> FeatureServerApp | None:
    """The FeatureServerApp inside uvicorn's wrapping middlewares (each keeps the next as `.app`)."""
    for _ in range(8):
        if isinstance(app, FeatureServerApp):
            return app
        app = getattr(app, "app", None)
    return None


class _Signal:
    """What uvicorn's `connection_lost` sets on the current request (`cycle.message_event`)."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Whole:
    """A fast-lane request whose whole body the protocol reads before answering it in one write;
    it stands in for uvicorn's RequestResponseCycle as `protocol.cycle` (same attributes uvicorn reads)."""

    __slots__ = (
        "scope",
        "lane",
        "keep_alive",
        "chunks",
        "complete",
        "response_complete",
        "disconnected",
        "message_event",
    )

    def __init__(self, scope: dict[str, Any], lane: Any, keep_alive: bool) -> None:
        self.scope, self.lane, self.keep_alive = scope, lane, keep_alive
        self.chunks: list[bytes] = []
        self.complete = False  # the body is all in
        self.response_complete = False
        self.disconnected = False
        self.message_event = _Signal()


class FastLaneProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that answers fast-lane requests with the app's layer directly (see the module
    docstring). Pass the class as uvicorn's `http` setting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.config
        # Found once per server (config.loaded_app is the same for every connection).
        found = config.__dict__.get("_fs_app", False)
        if found is False:
            found = config.__dict__["_fs_app"] = _feature_server_app(self.app)
        if getattr(config, "reset_contextvars", False):
            found = None  # uvicorn's opt-in fresh context per request: its own road does that
        self.fs_app: FeatureServerApp | None = found

    # -- the common case, answered whole: a plain POST with a Content-Length on an idle connection --

    def on_headers_complete(self) -> None:
        whole = self._whole()
        if whole is None:
            super().on_headers_complete()
        else:
            self.cycle = whole  # type: ignore[assignment]  # what uvicorn's other methods look at

    def _whole(self) -> _Whole | None:
        """The request as a _Whole when it is the common case (else uvicorn's own road, below)."""
        fs_app, parser = self.fs_app, self.parser
        if fs_app is None or self.pipeline or self.expect_100_continue or self.limit_concurrency is not None:
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # an earlier request is still being answered: uvicorn queues this one
        if parser.get_method() != b"POST" or parser.get_http_version() != "1.1" or parser.should_upgrade():
            return None
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                return None
        if length is None or not 0 <= length <= WHOLE_BODY_LIMIT:
            return None  # uvicorn reads chunked and large bodies, with its flow control
        url = httptools.parse_url(self.url)
        if b"%" in url.path:
            return None
        scope = self.scope
        path = url.path.decode("ascii")
        scope["method"] = "POST"
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + url.path
        scope["query_string"] = url.query or b""
        lane = fs_app.fast_lane_of(scope)
        if lane is None or not lane.admits(scope):
            return None  # refused callers are answered by the hook road, before their body is read
        return _Whole(scope, lane, parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        whole = self.cycle
        if type(whole) is _Whole:
            whole.chunks.append(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        whole = self.cycle
        if type(whole) is _Whole and not whole.complete:
            whole.complete = True
            self._start(self._answer_whole(whole))
        else:
            super().on_message_complete()

    async def _answer_whole(self, whole: _Whole) -> None:
        body = whole.chunks[0] if len(whole.chunks) == 1 else b"".join(whole.chunks)
        whole.chunks = []
        layer = self.fs_app.layer  # type: ignore[union-attr]
        try:
            if whole.lane.bytes_answer is not None:  # the lookup: bytes in, bytes out, no ASGI on the way
                status, headers, answer = await layer.serve_bytes(whole.scope, body, whole.lane)
                await self._write(whole, status, headers, answer)
            else:
                await self._serve_asgi(whole, body)
        except BaseException as exc:  # cancelled (shutdown ran out of time), or the answer broke midway
            await self._give_up(whole, exc)
            return
        if not whole.response_complete and not whole.disconnected:
            log.error("no complete answer to %s %s", whole.scope["method"], whole.scope["path"])
            self.transport.close()

    async def _serve_asgi(self, whole: _Whole, body: bytes) -> None:
        """The layer's ASGI `serve` for a lane without a bytes answer, its body in hand, its answer in one write."""
        given = False
        start: dict[str, Any] | None = None

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            if not whole.disconnected and not whole.response_complete:  # as uvicorn: wait for the end
                whole.message_event.waiter = self.loop.create_future()
                await whole.message_event.waiter
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and start is None:
                start = message
            elif (
                message["type"] == "http.response.body" and start is not None and not whole.response_complete
            ):
                if message.get("more_body", False):
                    raise RuntimeError("the fast lane answers whole bodies only")
                await self._write(whole, start["status"], start.get("headers", ()), message.get("body", b""))
            else:
                raise RuntimeError(f"unexpected ASGI message {message['type']!r}")

        await self.fs_app.layer.serve(whole.scope, receive, send, whole.lane)  # type: ignore[union-attr]

    async def _give_up(self, whole: _Whole, exc: BaseException) -> None:
        """What uvicorn's run_asgi does when the app raises: log it, answer 500 if nothing was sent, close."""
        if not isinstance(exc, Exception):  # the layer logs the errors it catches; not cancellations
            log.error("request cancelled: %s %s", whole.scope["method"], whole.scope["path"])
        if not whole.response_complete and not whole.disconnected:
            whole.keep_alive = False
            response = internal_error()
            try:
                await self._write(whole, 500, response.raw_headers, response.body)
            except BaseException:  # noqa: BLE001 - cancelled again: just close
                pass
        self.transport.close()

    async def _write(
        self, whole: _Whole, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """The answer in one write, then what uvicorn does once a response is complete."""
        if self.flow.write_paused and not whole.disconnected:
            await self.flow.drain()
        whole.response_complete = True
        whole.message_event.set()
        if whole.disconnected:
            return
        parts = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        has_length = False
        for name, value in headers:
            if name == b"content-length":
                has_length = True
            elif name == b"connection" and b"close" in value.lower():
                whole.keep_alive = False
                continue  # written once, below
            parts += (name, b": ", value, b"\r\n")
        if not has_length:
            parts += (b"content-length: ", b"%d" % len(body), b"\r\n")
        if not whole.keep_alive:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        self.transport.write(b"".join(parts))
        if self.access_log:
            scope = whole.scope
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                status,
            )
        if not whole.keep_alive:
            self.transport.close()
        self.on_response_complete()

    # -- everything else: uvicorn's road, with the fast lane still answered by the layer directly --

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        fs_app = self.fs_app
        # `app` is the server's app unless uvicorn swapped in its 503 for limit_concurrency.
        if fs_app is not None and app is self.app:
            lane = fs_app.fast_lane_of(cycle.scope)
            if lane is not None:
                self._start(self._answer(cycle, fs_app, lane))
                return
        super()._start_asgi_task(cycle, app)

    def _start(self, answer: Coroutine[Any, Any, None]) -> None:
        """Run a request's answer as a task the server tracks (it waits for them at shutdown), as uvicorn does."""
        task = self.loop.create_task(answer)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, cycle: RequestResponseCycle, fs_app: FeatureServerApp, lane: Any) -> None:
        # What uvicorn's `run_asgi` does around an app, for the layer (which answers every error it can).
        try:
            await fs_app.layer.serve(cycle.scope, cycle.receive, cycle.send, lane)
        except BaseException as exc:  # the answer broke midway (the layer logged errors), or cancelled
            if not isinstance(exc, Exception):
                log.error("request cancelled: %s %s", cycle.scope["method"], cycle.scope["path"])
            if not cycle.response_started:
                try:
                    await cycle.send_500_response()
                except BaseException:  # noqa: BLE001 - cancelled again: just close
                    pass
            cycle.transport.close()
        else:
            if not cycle.response_complete and not cycle.disconnected:
                log.error("no complete answer to %s %s", cycle.scope["method"], cycle.scope["path"])
                cycle.transport.close()
        finally:
            cycle.on_response = lambda: None  # as uvicorn: nothing more to start once this request is over
