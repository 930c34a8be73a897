"""uvicorn's HTTP protocol, with the fast lane answered from the protocol: what `fs serve` runs.

uvicorn hands every request to the ASGI app through its own layers: the proxy-headers middleware,
an exception wrapper per request (`run_asgi`), then the app's `__call__`. For the requests of the
fast lane (`server.fastlane`: the online lookup and predictions), `FastLaneProtocol` calls the
app's one layer (`ServerMiddleware.serve`: metrics, catch-all, body limit, the lane) directly with
uvicorn's own `receive` and `send` for the request. Everything else is uvicorn's, unchanged:
parsing, keep-alive, pipelining, flow control, `Expect: 100-continue`, graceful shutdown, and
every other request, which takes the ordinary road.

What the fast lane does not get from the skipped layers: `X-Forwarded-For`/`X-Forwarded-Proto`
rewriting of the client address and scheme (no fast-lane route reads them) and uvicorn's
"Exception in ASGI application" log (the middleware's catch-all logs unexpected errors itself).

It hooks one method of uvicorn's `HttpToolsProtocol` (`_start_asgi_task`, where uvicorn starts the
task of a request whose headers are in, queued behind earlier pipelined requests if any), so it is
tested against the uvicorn versions the project allows (see pyproject.toml). Without httptools,
`fs serve` runs uvicorn's own protocol and the app's `__call__` still takes the fast lane, one
layer later.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .app import FeatureServerApp

log = logging.getLogger("featurestore.server")


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
        self.fs_app: FeatureServerApp | None = found

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        fs_app = self.fs_app
        # `app` is the server's app unless uvicorn swapped in its 503 for limit_concurrency.
        if fs_app is not None and app is self.app:
            lane = fs_app.fast_lane_of(cycle.scope)
            if lane is not None:
                task = self.loop.create_task(self._answer(cycle, fs_app, lane))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)

    async def _answer(self, cycle: RequestResponseCycle, fs_app: FeatureServerApp, lane: Any) -> None:
        # What uvicorn's `run_asgi` does around an app, for the layer (which answers every error it can).
        try:
            await fs_app.layer.serve(cycle.scope, cycle.receive, cycle.send, lane)
        except BaseException as exc:  # the answer broke midway (the layer logged errors), or cancelled
            if not isinstance(exc, Exception):
                log.error("request cancelled: %s %s", cycle.scope["method"], cycle.scope["path"])
            cycle.transport.close()
        else:
            if not cycle.response_complete and not cycle.disconnected:
                log.error("no complete answer to %s %s", cycle.scope["method"], cycle.scope["path"])
                cycle.transport.close()
        finally:
            cycle.on_response = lambda: None  # as uvicorn: nothing more to start once this request is over
