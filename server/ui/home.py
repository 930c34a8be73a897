"""UI pages: the home page (`/ui/`) and its failing-checks part (`/ui/partials/checks`).

The home page shows what is cheap to know: the project, how many of each definition, each online
view's freshness (one read of the online store's newest events, one of the watermarks), pending
approvals and the latest pipeline runs. The monitoring checks (drift and live performance of every
aliased model) take longer, so the page loads them afterwards as a partial; their result is kept
per app for `ChecksCache.ttl` seconds, and the partial never enforces log retention (a GET deletes
nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from featurestore import FeatureStore
from featurestore.errors import FeatureStoreError, NotAppliedError
from featurestore.monitoring.checks import CheckResult
from featurestore.status import ViewStatus, online_marks

from .access import Reader
from .cache import TTLCache
from .index import RegistryIndex, registry_index
from .render import app_part, page, partial, store_of
from .runs import RunRow

router = APIRouter(include_in_schema=False)

FRESHNESS_SHOWN = 20  # views on the home page: the least fresh first; the catalog lists them all
RUNS_SHOWN = 5
CHECK_WINDOW = timedelta(days=1)
# A freshness status, in the order the home page lists views (worst first), and its badge.
_FRESHNESS = {"breach": (0, "status-breach"), "never": (1, "status-warn"), "ok": (2, "status-ok")}


@dataclass(frozen=True)
class Checked:
    """One run of the monitoring checks: its result, or why it could not run, and when."""

    at: datetime
    result: CheckResult | None
    error: str | None


class ChecksCache:
    """The latest monitoring check of one app, reused for `ttl` seconds (`app.state.ui_checks`)."""

    def __init__(self, ttl: float = 60.0):
        self._cache: TTLCache[Checked] = TTLCache(ttl)

    @property
    def ttl(self) -> float:
        return self._cache.ttl

    @ttl.setter
    def ttl(self, seconds: float) -> None:
        self._cache.ttl = seconds

    def get(self, store: FeatureStore) -> Checked:
        # one check at a time: a second viewer waits for the first one's result
        return self._cache.get("checks", lambda: self._run(store))

    @staticmethod
    def _run(store: FeatureStore) -> Checked:
        now = datetime.now(timezone.utc)
        try:
            result = store.monitor.check(since=CHECK_WINDOW, now=now, enforce_retention=False)
        except FeatureStoreError as e:  # e.g. a misconfigured [monitoring] metric
            return Checked(now, None, str(e))
        return Checked(now, result, None)


def checks_cache(request: Request) -> ChecksCache:
    """The app's ChecksCache (made on first use)."""
    return app_part(request, "ui_checks", ChecksCache)


def counts(store: FeatureStore, index: RegistryIndex) -> list[tuple[str, int, str]]:
    """(label, how many, link) of each kind of object the registry holds."""
    catalog = store.catalog
    features = sum(len(v.features) for v in catalog.views.values()) + sum(
        len(v.features) for v in catalog.on_demand.values()
    )
    return [
        ("entities", len(catalog.entities), "/ui/catalog#cat-entities"),
        ("feature views", len(catalog.views), "/ui/catalog#cat-views"),
        ("on-demand views", len(catalog.on_demand), "/ui/catalog#cat-on-demand"),
        ("features", features, "/ui/catalog#cat-features"),
        ("feature services", len(catalog.services), "/ui/catalog#cat-services"),
        ("sources", len(catalog.sources), "/ui/catalog#cat-sources"),
        ("models", len(index.model_names), "/ui/models"),
        ("training sets", len(index.training_sets), "/ui/training-sets"),
        ("pipelines", len(catalog.pipelines), "/ui/runs"),
    ]


def freshness_rows(store: FeatureStore) -> tuple[list[dict[str, Any]], int]:
    """The online views' freshness, least fresh first (at most FRESHNESS_SHOWN), and how many there are."""
    catalog = store.catalog
    report = store.monitor.freshness()
    offline = store.registry.watermarks()
    _, marks = online_marks(store) if any(v.online for v in catalog.views.values()) else (None, {})
    rows: list[dict[str, Any]] = []
    for f in report.views:
        if not f.online:
            continue
        mark = offline.get(f.view)
        status = ViewStatus(f.view, True, mark, marks.get(f.view), None, None, None)
        order, badge = _FRESHNESS.get(f.status, (1, "status-none"))
        rows.append(
            {
                "view": f.view,
                "newest": f.newest_event,
                "age": f.age_seconds,
                "limit": f.freshness_seconds,
                "status": f.status,
                "badge": badge,
                "order": order,
                "watermark": mark,
                "behind": status.online_behind,
            }
        )
    rows.sort(key=lambda r: (r["order"], -(r["age"] or 0.0), r["view"]))
    return rows[:FRESHNESS_SHOWN], len(rows)


@router.get("/ui/")
def home_page(request: Request, viewer: Reader) -> HTMLResponse:
    """GET /ui/: counts, freshness, approvals and runs; the checks come as a partial."""
    store = store_of(request)
    try:
        store.catalog  # noqa: B018 - raises NotAppliedError when nothing is applied
    except NotAppliedError:
        return page(
            request, viewer, "home.html.j2", title="Home", nav="home", empty=True, repo=str(store.repo_path)
        )
    notes: list[str] = []
    fresh: list[dict[str, Any]] = []
    online_views = 0
    try:
        fresh, online_views = freshness_rows(store)
    except FeatureStoreError as e:  # e.g. the online store is down: the rest still shows
        notes.append(f"Freshness unknown: {e}")
    return page(
        request,
        viewer,
        "home.html.j2",
        title="Home",
        nav="home",
        empty=False,
        counts=counts(store, registry_index(request)),
        fresh=fresh,
        online_views=online_views,
        fresh_shown=FRESHNESS_SHOWN,
        pending=store.models.pending(),
        runs=[RunRow.of(r) for r in store.pipelines.runs(None, limit=RUNS_SHOWN)],
        notes=notes,
        repo=str(store.repo_path),
    )


@router.get("/ui/partials/checks")
def checks_partial(request: Request, viewer: Reader) -> HTMLResponse:
    """GET /ui/partials/checks: the failing monitoring checks (no log retention)."""
    checked = checks_cache(request).get(store_of(request))
    return partial(
        request,
        viewer,
        "home_checks.html.j2",
        checked=checked,
        window=CHECK_WINDOW.total_seconds(),
    )
