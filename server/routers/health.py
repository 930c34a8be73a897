"""`GET /health` (liveness), `GET /ready` (readiness: online store reachable, and not new or emptied
while views were materialized: its identity marker is there) and `GET /metrics`.

`/health` and `/ready` are open (probes carry no keys); `/metrics` needs the `read` role when keys
are configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.concurrency import run_in_threadpool

from featurestore.errors import FeatureStoreError
from featurestore.materialize import EPOCH
from featurestore.status import online_not_ready, view_statuses
from featurestore.store import FeatureStore

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
        503: {
            "model": ErrorBody,
            "description": "Not ready: online store unreachable, new or emptied (no marker), or nothing applied",
        }
    },
)
async def ready(state: State) -> Ready | Response:
    store = state.store
    try:
        views = await run_in_threadpool(lambda: len(store.catalog.views))
        online = await run_in_threadpool(lambda: store.online_store)
        # One read of a key that never exists: a real round trip through the backend's read path.
        await asyncio.wait_for(online.read_async([online.key_prefix + READY_PROBE_KEY]), state.lookup_timeout)
        # A store that is new or lost its data (no identity marker) while views were materialized.
        empty = await run_in_threadpool(_online_not_ready, store)
        if empty is not None:
            return error_response(503, f"not ready: {empty}")
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


def _online_not_ready(store: FeatureStore) -> str | None:
    """Why the online store is not ready (`online_not_ready`), once the registry tracks online stores.

    A registry that has recorded no online watermark (written before they existed, or push-only)
    cannot tell a store that lost its data from one filled before markers existed: it stays ready,
    and the first `fs materialize-incremental` adopts the store (writes its marker, fills it)."""
    if not store.registry.tracks_online_stores():
        return None
    return online_not_ready(store)


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
    views = await run_in_threadpool(_view_gauges, state.store)
    return Response(state.metrics.render() + views, media_type=state.metrics.content_type)


def _view_gauges(store: FeatureStore) -> bytes:
    """Per view, read at scrape time (the same in every worker, so not summed across workers):
    `fs_view_staleness_seconds` (now - the newest event the view holds online; views never written
    online are absent), `fs_view_watermark_age_seconds` (now - offline watermark),
    `fs_view_online_behind` (1 when the online store in use holds less than offline storage) and
    `fs_view_online_lag_seconds` (offline - online watermark). Nothing when the registry or the
    online store cannot be read (the errors say so)."""
    from featurestore.monitoring.freshness import staleness as online_staleness

    try:
        statuses = view_statuses(store, count_rows=False)
        ages = online_staleness(store)
    except Exception as e:  # noqa: BLE001 - a scrape still answers the request metrics
        log.warning("metrics: view freshness unavailable: %s", e)
        return b""
    staleness = GaugeMetricFamily(
        "fs_view_staleness_seconds", "Seconds since the newest event the view holds online.", labels=["view"]
    )
    for view, age in sorted(ages.items()):
        staleness.add_metric([view], age)
    watermark_age = GaugeMetricFamily(
        "fs_view_watermark_age_seconds", "Seconds since the view's offline watermark.", labels=["view"]
    )
    behind = GaugeMetricFamily(
        "fs_view_online_behind",
        "1 when the online store in use holds less of the view than offline storage (new or emptied store).",
        labels=["view"],
    )
    lag = GaugeMetricFamily(
        "fs_view_online_lag_seconds",
        "Offline watermark minus the online store's watermark (its whole age when it has none).",
        labels=["view"],
    )
    for s in statuses:
        if s.staleness_seconds is not None:
            watermark_age.add_metric([s.view], s.staleness_seconds)
        if s.online and s.offline_watermark is not None:
            behind.add_metric([s.view], 1.0 if s.online_behind else 0.0)
            since = s.online_watermark or EPOCH
            lag.add_metric([s.view], max(0.0, (s.offline_watermark - since).total_seconds()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([staleness, watermark_age, behind, lag]))
    return generate_latest(registry)


class _Families:
    """A collector of ready-made metric families."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
