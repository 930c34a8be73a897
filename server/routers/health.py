"""`GET /health` (liveness), `GET /ready` (readiness: online store reachable) and `GET /metrics`.

`/health` and `/ready` are open (probes carry no keys); `/metrics` needs the `read` role when keys
are configured.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Response
from starlette.concurrency import run_in_threadpool

from featurestore.errors import FeatureStoreError

from ..auth import require
from ..errors import error_response
from ..schemas import ERRORS, ErrorBody, Health, Ready
from ..state import State

router = APIRouter(tags=["health"])
log = logging.getLogger("featurestore.server")

READY_PROBE_KEY = b"__ready_probe__"


@router.get("/health", response_model=Health, summary="Liveness: the process answers (no I/O)")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Ready,
    summary="Readiness: definitions applied and online store reachable",
    responses={
        503: {"model": ErrorBody, "description": "Not ready: online store unreachable or nothing applied"}
    },
)
async def ready(state: State) -> Ready | Response:
    store = state.store
    try:
        views = await run_in_threadpool(lambda: len(store.catalog.views))
        online = await run_in_threadpool(lambda: store.online_store)
        # One read of a key that never exists: a real round trip through the backend's read path.
        await asyncio.wait_for(online.read_async([online.key_prefix + READY_PROBE_KEY]), state.lookup_timeout)
    except asyncio.TimeoutError:
        state.metrics.online_store_errors.labels("timeout").inc()
        return error_response(
            503, f"not ready: the online store did not answer within {state.lookup_timeout:g}s"
        )
    except FeatureStoreError as e:
        return error_response(503, f"not ready: {e}")
    except Exception as e:  # a probe answers "not ready", whatever went wrong; details go to the log
        log.error("readiness check failed", exc_info=e)
        return error_response(503, "not ready: the online store check failed (see the server log)")
    return Ready(status="ready", online_store=store.config.online.type, feature_views=views)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format)",
    dependencies=[Depends(require("read"))],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"},
        **ERRORS(401, 403),
    },
)
async def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
