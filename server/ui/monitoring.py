"""UI page of a model version's monitoring (`/ui/models/{name}/monitoring?version=N&days=D`): the
content of the monitoring report (`fs monitor report`) inside the page frame. Drift per column by
PSI with its bar chart and the histogram overlays, drift and the live metric per day, the freshness
of the views the version reads; the skew audit (a point-in-time recomputation of the served rows,
the slow part) is a partial loaded after the page (`/ui/models/{name}/monitoring/skew`).

The figures come from `featurestore.monitoring.report.figures`, the report's own helper, so the
page and the HTML file show the same rows and charts. Without `version`: the one `name` resolves
to (its production alias, else the latest); `days` is the window: the last N days (7 unless
asked, so a page view never scans a log of years) or `all`, everything logged. The skew audit of a
(version, window) is kept a minute per app (`cache.py`): it is a scan of the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from starlette.responses import HTMLResponse

from featurestore import FeatureStore
from featurestore.errors import MonitoringError
from featurestore.models.registry import MAX_VERSION, ModelVersion
from featurestore.monitoring import Window, window
from featurestore.monitoring.drift import DailyDrift, DriftReport, drift_with_days
from featurestore.monitoring.freshness import ViewFreshness
from featurestore.monitoring.performance import PerformanceReport
from featurestore.monitoring.report import figures, status_class, window_text
from featurestore.monitoring.skew import SkewReport

from .access import Reader
from .cache import ttl_cache
from .render import page, partial, store_of

router = APIRouter(include_in_schema=False)

DAY_CHOICES = (1, 7, 30, 90)  # the window menu (and "all"); any ?days= from 1 to MAX_DAYS is taken
DEFAULT_DAYS = 7
EVERYTHING = "all"
MAX_DAYS = 3650
SKEW_EXAMPLES = 3
Name = Annotated[str, Path(max_length=200)]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_VERSION)]
DaysQuery = Annotated[str, Query(alias="days", max_length=10)]  # see parse_days


def parse_days(value: str) -> int | None:
    """A `?days=` value: a whole number of days from 1 to MAX_DAYS, or None for `all`; else 422."""
    if value == EVERYTHING:
        return None
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise HTTPException(422, f"days must be a whole number from 1 to {MAX_DAYS}, or '{EVERYTHING}'")
    return int(value)


def days_param(days: int | None) -> str:
    """`days` as its query value (None: everything)."""
    return EVERYTHING if days is None else str(days)


def window_of(days: int | None, now: datetime | None = None) -> Window:
    """The window of the last `days` days up to now (None: everything logged)."""
    if days is None:
        return window(None, None)
    return window((now or datetime.now(timezone.utc)) - timedelta(days=days), None)


def feature_views(mv: ModelVersion) -> set[str]:
    """The views (and on-demand views) `mv`'s inputs are looked up from."""
    return {ref.partition(":")[0] for ref in mv.feature_refs}


@dataclass
class Monitoring:
    """What the page shows of one version over one window; a part that failed holds its reason."""

    drift: DriftReport | None = None
    daily: list[DailyDrift] = field(default_factory=list)
    drift_error: str | None = None
    live: PerformanceReport | None = None
    live_error: str | None = None
    freshness: list[ViewFreshness] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)  # on-demand views: computed per request, never stale
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def logged(self) -> int:
        """Predictions logged in the window (the rows drift compared)."""
        if self.drift is None:
            return self.live.served if self.live is not None else 0
        columns = [*self.drift.features.values(), *([self.drift.prediction] if self.drift.prediction else [])]
        return max((f.n_cur for f in columns), default=0)


def monitoring(store: FeatureStore, mv: ModelVersion, win: Window) -> Monitoring:
    """Drift (one scan of the log, by day), live performance and freshness of `mv` over `win`."""
    out = Monitoring()
    try:
        out.drift, out.daily = drift_with_days(store.monitor, mv, win)
    except MonitoringError as e:  # no training set, or it changed: the rest still stands
        out.drift_error = str(e)
    try:
        out.live = store.monitor.performance(mv.ref, win.start, win.end)
    except MonitoringError as e:
        out.live_error = str(e)
    views = feature_views(mv)
    out.freshness = [v for v in store.monitor.freshness().views if v.view in views]
    out.computed = sorted(views - {v.view for v in out.freshness})
    if out.drift is not None:
        out.figures = figures(out.drift, out.daily, out.live, out.drift.thresholds)
    return out


@router.get("/ui/models/{name}/monitoring")
def monitoring_page(
    request: Request,
    viewer: Reader,
    name: Name,
    version: VersionQuery = None,
    days_query: DaysQuery = str(DEFAULT_DAYS),
) -> HTMLResponse:
    """GET /ui/models/{name}/monitoring: drift, live metric and freshness of a version."""
    days = parse_days(days_query)
    store = store_of(request)
    mv = store.models.get(name, version=version)  # None: production, else the latest; unknown -> 404
    win = window_of(days)
    found = monitoring(store, mv, win)
    return page(
        request,
        viewer,
        "monitoring.html.j2",
        title=f"Monitoring of {name} v{mv.version}",
        nav="models",
        name=name,
        mv=mv,
        versions=[(v.version, v.aliases) for v in reversed(store.models.versions(name))],
        days=days,
        day_choices=DAY_CHOICES,
        everything=EVERYTHING,
        window=window_text(win),
        m=found,
        thresholds=store.monitor.thresholds(name),
        status_class=status_class,
        skew_url=_skew_url(name, mv.version, days),
    )


def _skew_url(name: str, version: int, days: int | None) -> str:
    from .models import model_url

    query = f"version={version}&days={days_param(days)}"
    return f"{model_url(name, 'monitoring', 'skew')}?{query}"


@router.get("/ui/models/{name}/monitoring/skew")
def skew_partial(
    request: Request,
    viewer: Reader,
    name: Name,
    version: VersionQuery = None,
    days_query: DaysQuery = str(DEFAULT_DAYS),
) -> HTMLResponse:
    """GET /ui/models/{name}/monitoring/skew: the skew audit of a version, as a part."""
    days = parse_days(days_query)
    store = store_of(request)
    mv = store.models.get(name, version=version)

    def audit() -> tuple[SkewReport | None, str | None]:
        win = window_of(days)
        try:
            return store.monitor.skew(mv.ref, win.start, win.end, examples=SKEW_EXAMPLES), None
        except MonitoringError as e:
            return None, str(e)

    report, error = ttl_cache(request, "skew").get((name, mv.version, days), audit)
    return partial(request, viewer, "monitoring_skew.html.j2", mv=mv, report=report, error=error)


__all__ = ["DEFAULT_DAYS", "days_param", "feature_views", "monitoring", "parse_days", "router", "window_of"]
