"""Monitoring (SPEC §12): are the features fresh, has what a model sees drifted from what it was
trained on, do served values match a training set's, and is the model still right?

    store.monitor.stats("driver_hourly_stats")                  # per-feature statistics of the runs
    store.monitor.drift("trip_completion@production")           # DriftReport: PSI / JS / Wasserstein
    store.monitor.skew("trip_completion@production", start, end)  # served vs point-in-time recomputed
    store.monitor.freshness()                                   # newest online event time per view
    store.monitor.log_feedback([{"request_id": ..., "row": 0, "label": 1}])
    store.monitor.performance("trip_completion@production")     # live metric per day
    store.monitor.shadow("trip_completion")                     # production vs its challenger
    store.monitor.report("trip_completion@production", "report.html")
    store.monitor.check()                                       # every check, for cron and CI

`Monitor` is the facade; each question has its own module: `stats` (profiles of materialized
rows and training sets), `drift`, `skew`, `freshness`, `performance` (feedback and live
metrics), `shadow` (production against its challenger), `report` (the HTML file), `checks`
(`fs monitor check`, log retention). The prediction log is read through `log`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Thresholds
from ..errors import MaterializationError, MonitoringError

if TYPE_CHECKING:
    from ..models.registry import ModelVersion
    from ..store import FeatureStore
    from .checks import CheckResult
    from .drift import DailyDrift, DriftReport
    from .freshness import FreshnessReport
    from .log import LogRoot
    from .performance import PerformanceReport
    from .shadow import ShadowReport
    from .skew import SkewReport
    from .stats import ViewStats


class Monitor:
    """The monitoring questions of one store; get it as `store.monitor`."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self.config = store.config.monitor

    @cached_property
    def log_path(self) -> LogRoot:
        """Where the prediction log (and the feedback log) live: `[monitoring] log_path`, a folder
        or (s3://...) a location on object storage."""
        from .log import log_root

        return log_root(self.store.config)

    def version(self, model: str) -> ModelVersion:
        """The model version a reference ("name@alias", "name@3", "name") points at now."""
        return self.store.models.get(model)

    def thresholds(self, model: str) -> Thresholds:
        """`[monitoring.models.NAME]` for model `model` (a name or reference), else `[monitoring]`."""
        return self.config.thresholds(model.partition("@")[0])

    # -- the questions --------------------------------------------------------------------------------

    def stats(self, view: str) -> ViewStats:
        """The statistics of `view`'s materialized rows, per run and merged (see `stats`)."""
        from ..errors import UnknownNameError
        from .stats import view_stats

        try:
            return view_stats(self.store, view)
        except UnknownNameError as e:
            if view in self.store.training_sets.names():
                raise UnknownNameError(
                    f"{e}; '{view}' is a saved training set: `fs stats {view} --training-set` "
                    f"(store.monitor.training_set_stats('{view}'))"
                ) from None
            raise

    def training_set_stats(self, name: str) -> dict[str, Any]:
        """The statistics of a saved training set's columns (kept when it was saved), summarized."""
        from .stats import summarize

        profile = self.store.training_sets.get(name).extra.get("profile")
        if not profile:
            raise MonitoringError(
                f"training set '{name}' was saved before statistics were kept: save it again "
                f"(store.training_sets.regenerate('{name}').save('{name}', overwrite=True))"
            )
        return summarize(profile)

    def drift(self, model: str, start: Any = None, end: Any = None) -> DriftReport:
        """What the model version served in [start, end] (default: everything) against its training set."""
        from .drift import drift

        return drift(self, self.version(model), window(start, end))

    def drift_by_day(self, model: str, start: Any = None, end: Any = None) -> list[DailyDrift]:
        """`drift` per UTC day of the window, oldest first (days with no predictions left out)."""
        from .drift import drift_by_day

        return drift_by_day(self, self.version(model), window(start, end))

    def skew(self, model: str, start: Any = None, end: Any = None, examples: int = 5) -> SkewReport:
        """The served feature vectors of [start, end] against a point-in-time recomputation of each."""
        from .skew import skew

        return skew(self, self.version(model), window(start, end), examples=examples)

    def freshness(self, now: datetime | None = None) -> FreshnessReport:
        """Each online view's newest event time, its age and whether it breaches its `freshness`."""
        from .freshness import freshness

        return freshness(self.store, now=now)

    def log_feedback(self, rows: Any, model: str | None = None) -> int:
        """Record labels for served predictions: rows of request_id, row (index within the request)
        and label. Returns how many were recorded."""
        from .performance import log_feedback

        return log_feedback(self, rows, model=model)

    def performance(self, model: str, start: Any = None, end: Any = None) -> PerformanceReport:
        """The live metric of the model version per day, from the labels fed back, against its
        validation metric recorded at registration."""
        from .performance import performance

        return performance(self, self.version(model), window(start, end))

    def shadow(
        self, model: str, start: Any = None, end: Any = None, challenger: int | None = None
    ) -> ShadowReport:
        """Production's answers against its challenger's shadow predictions on the same requests
        and rows in [start, end]: agreement, and the live metric of both where labels were fed
        back. `challenger`: a version number, else the `challenger` alias."""
        from .shadow import challenger_of, shadow

        production, other = challenger_of(self, model, challenger)
        return shadow(self, production, other, window(start, end))

    def report(self, model: str, out: str | Path, start: Any = None, end: Any = None) -> Path:
        """Write the self-contained HTML monitoring report of a model to `out`; returns its path."""
        from .report import write_report

        return write_report(self, self.version(model), Path(out), window(start, end))

    def check(
        self,
        since: timedelta = timedelta(days=1),
        now: datetime | None = None,
        enforce_retention: bool = True,
    ) -> CheckResult:
        """Freshness of every view, drift and performance of every aliased model version over the
        last `since`; also deletes log days older than `retention_days` (unless
        `enforce_retention=False`)."""
        from .checks import check

        return check(self, since=since, now=now, enforce_retention=enforce_retention)


class Window:
    """A closed time window [start, end] in UTC; either end may be open (None)."""

    __slots__ = ("end", "start")

    def __init__(self, start: datetime | None, end: datetime | None):
        if start is not None and end is not None and start > end:
            raise MonitoringError(f"start {start.isoformat()} is after end {end.isoformat()}")
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Window({self.start}, {self.end})"


def window(start: Any, end: Any) -> Window:
    """`start` / `end` (datetimes, dates or ISO strings; naive is UTC; None: open) as a Window."""
    return Window(_time(start, "start"), _time(end, "end"))


def _time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, float) or type(value).__name__ == "NaTType":  # NaN, pandas NaT: not a time
        raise MonitoringError(
            f"{what} {value!r} is not a time: give a datetime, a date, an ISO string or None"
        )
    from ..materialize import parse_time

    try:
        return parse_time(value, what)
    except MaterializationError as e:
        raise MonitoringError(str(e)) from None


__all__ = ["Monitor", "Window", "window"]
