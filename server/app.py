"""The app factory: `create_app(store)` builds the FastAPI app of the feature server.

    from featurestore import FeatureStore
    from featurestore.server import create_app
    app = create_app(FeatureStore("definitions"))      # then: uvicorn, or `fs serve`

The app is a list of routers (`ROUTERS`, one module per area under `server/routers/`) around a small
shared state (`featurestore.server.state.ServerState`): the store, the API-key checker, metrics and limits.
Routers hold no business logic: they parse, call `FeatureStore`, and encode.

Adding a router (e.g. model predictions): write `server/routers/models.py` with
`router = APIRouter(tags=["models"])`, guard its endpoints with `Depends(require("read"))` (or
"admin"), reach the store with `Depends(get_state)`, and add the module's router to `ROUTERS`
below (or pass it as `create_app(store, routers=[router])`). Error handling, auth, metrics and
audit come with the app.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from featurestore import FeatureStore
from featurestore.config import ApiKey

from . import docs, ui
from .auth import Authenticator
from .errors import install_error_handlers
from .metrics import PUBLISH_SECONDS, Metrics
from .middleware import ServerMiddleware
from .routers import admin, catalog, features, feedback, health, models, push
from .routing import DirectRoute
from .state import ServerState

log = logging.getLogger("featurestore.server")

# Order matters for speed: FastAPI tries routes in order (about 10 us each), so probes and the
# per-request endpoints (the lookup, predictions) come first.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    features.router,
    models.router,
    push.router,
    feedback.router,
    catalog.router,
    admin.router,
)

# The per-request endpoints, answered as plain Starlette routes ahead of FastAPI's (server/routing.py).
DIRECT_ENDPOINTS = (features.online_features, models.predict)

DESCRIPTION = """
Online feature lookups, pushes and the catalog of a featurestore repo.

**Auth.** When API keys are configured, send `Authorization: Bearer <key>` or `X-API-Key: <key>`.
Roles: `read` (lookups, catalog, metrics), `write` (push, model feedback, + read), `admin` (everything, e.g. the\naudit trail at `/admin/audit`).
A missing or unknown key gets 401, a role too low 403. `/health`, `/ready`, `/docs` and
`/openapi.json` are open. Without configured keys the whole server is open.

**JSON.** NaN and infinities are written as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`;
timestamps as RFC 3339 UTC strings (`2026-01-02T03:04:05Z`); bytes as base64 strings.
Errors are `{"error": "...", "detail": [...]}`.
"""


def create_app(
    store: FeatureStore,
    *,
    api_keys: Sequence[ApiKey] | None = None,
    max_batch_rows: int | None = None,
    lookup_timeout: float | None = None,
    max_body_bytes: int = 64 * 1024 * 1024,
    routers: Iterable[APIRouter] = (),
    metrics_dir: str | Path | None = None,
) -> FastAPI:
    """The feature server app for `store`.

    - `api_keys`: defaults to `store.config.server.api_keys`; empty = open server (a warning is logged).
    - `max_batch_rows`: most entity rows (or pushed rows) per request, else 413; defaults to
      `store.config.server.max_batch_rows`.
    - `lookup_timeout`: seconds after which a lookup answers 503; defaults to
      `2 * [online] timeout_seconds + 1`, a bound over the backend's own socket timeout.
    - `max_body_bytes`: larger request bodies get 413 before they are read.
    - `routers`: more routers to mount (after `ROUTERS`).
    - `metrics_dir`: the folder the worker processes of one server share, so that `/metrics` on any
      of them counts the requests of all (`featurestore.server.metrics`; `fs serve --workers N` makes one).
    """
    config = store.config
    keys = tuple(config.server.api_keys if api_keys is None else api_keys)
    state = ServerState(
        store=store,
        auth=Authenticator(keys),
        metrics=Metrics(metrics_dir),
        max_batch_rows=max_batch_rows or config.server.max_batch_rows,
        lookup_timeout=lookup_timeout or 2 * config.online.timeout_seconds + 1.0,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.auth.open:
            log.warning(
                "no API keys configured: every endpoint of this server is open to anyone who can "
                "reach it (configure [[server.api_keys]] or FS_API_KEYS)"
            )
        await run_in_threadpool(_warm_up, store)
        publisher = (
            asyncio.create_task(_publish_metrics(state.metrics)) if state.metrics.shared is not None else None
        )
        yield
        if publisher is not None:
            publisher.cancel()
            with suppress(asyncio.CancelledError):
                await publisher
            state.metrics.publish()  # the final counts of this worker
        online = store.__dict__.get("online_store")  # only if it was opened
        if online is not None and hasattr(online, "aclose"):
            await online.aclose()  # connections bound to this event loop

    app = FastAPI(
        title="featurestore feature server",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from server/docs.py, with their assets from the package
        redoc_url=None,
    )
    app.state.fs = state
    install_error_handlers(app)
    for router in (*ROUTERS, *routers, docs.router):
        app.include_router(router)
    ui.install(app, store)  # the web UI under /ui (server/ui/)
    direct = [
        r
        for router in ROUTERS
        for r in router.routes
        if isinstance(r, APIRoute) and r.endpoint in DIRECT_ENDPOINTS
    ]
    app.router.routes[:0] = [DirectRoute(route) for route in direct]  # ahead of FastAPI's (server/routing.py)
    # Metrics, the 500 catch-all and the body limit, as one layer (server/middleware.py). Middleware a
    # user adds later wraps this one, so it sees every request, lookups and predictions included.
    app.add_middleware(ServerMiddleware, metrics=state.metrics, max_body_bytes=max_body_bytes)
    return app


def _version() -> str:
    from featurestore import __version__

    return __version__


async def _publish_metrics(metrics: Metrics) -> None:
    """Write this worker's metrics snapshot every PUBLISH_SECONDS (a multi-worker server's scrapes sum them)."""
    while True:
        metrics.publish()
        await asyncio.sleep(PUBLISH_SECONDS)


def _warm_up(store: FeatureStore) -> None:
    """Read the definitions, import the on-demand views' functions and open the online store before the
    first request (failures are not fatal: the server starts anyway, answers 503 while the store is
    away, 409 for a function whose files changed, and /ready says so)."""
    from featurestore.on_demand_code import verify_functions

    try:
        verify_functions(store.catalog, store.repo_path)  # loads and caches the applied definitions
    except Exception as e:  # noqa: BLE001
        log.warning("warm-up: %s", e)
    try:
        store.online_store  # noqa: B018 - connects lazily; building it is what we want here
    except Exception as e:  # noqa: BLE001
        log.warning("warm-up: %s", e)
