"""`fs monitor check`: every monitoring check at once, for cron and CI, and log retention.

    result = store.monitor.check(since=timedelta(days=1))
    result.ok                    # False on any breach
    [b.target for b in result.breaches]     # e.g. ["driver_stats", "trip_eta@production (v3)"]

Checked: the freshness of every view; for every model version an alias points at (each version
once, however many aliases share it), drift and live performance over [now - since, now]. A breach
is a view past its `freshness`, a drift report with status "drift" ("warn" is shown, not a breach)
or a live metric worse than validation by more than the tolerance. A model version whose drift or
performance cannot be computed (no training set, no metric) gets a note, not a breach; one whose
check fails (an unreadable log file, a training set gone) gets an error, and the other checks still
run. Then the prediction-log and feedback files of the days older than `[monitoring] retention_days`
are deleted (`enforce_retention`), so a corrupt file ages out too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FeatureStoreError, MonitoringError
from ..locations import ObjectStore
from .log import FEEDBACK_FOLDER, LogRoot, day_folders

if TYPE_CHECKING:
    from ..models.registry import ModelVersion
    from . import Monitor
    from .drift import DriftReport
    from .freshness import FreshnessReport
    from .performance import PerformanceReport


@dataclass(frozen=True)
class Breach:
    """One failed check: which (freshness, drift, performance), of what, and why in one sentence."""

    check: str
    target: str  # a view name, or "model@alias (vN)"
    detail: str
    value: float | None = None  # the age in seconds, the worst PSI, the live metric

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "target": self.target, "detail": self.detail, "value": self.value}


@dataclass(frozen=True)
class CheckError:
    """A check that could not run: of what ("freshness", "model@alias (vN)", "log retention") and why."""

    target: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """Everything `check` looked at, its breaches, and what retention deleted.

    `drift` and `performance` are keyed by "model@alias" (aliases of one version share its report);
    `notes` say what is not checked and why (not breaches); `errors` the checks that failed (exit 2
    of `fs monitor check` when there is no breach)."""

    now: datetime
    since: timedelta
    breaches: list[Breach]
    freshness: FreshnessReport
    drift: dict[str, DriftReport]
    performance: dict[str, PerformanceReport]
    deleted_log_days: int
    notes: list[str] = field(default_factory=list)
    errors: list[CheckError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No breach (errors are not breaches: see `errors`)."""
        return not self.breaches

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            # what the exit code says: "breach" (1), "error" (2: a check could not run), "ok" (0)
            "status": "breach" if self.breaches else "error" if self.errors else "ok",
            "now": self.now.isoformat(),
            "since_seconds": self.since.total_seconds(),
            "breaches": [b.to_dict() for b in self.breaches],
            "freshness": self.freshness.to_dict(),
            "drift": {k: r.to_dict() for k, r in self.drift.items()},
            "performance": {k: r.to_dict() for k, r in self.performance.items()},
            "deleted_log_days": self.deleted_log_days,
            "notes": list(self.notes),
            "errors": [e.to_dict() for e in self.errors],
        }


def check(
    monitor: Monitor,
    since: timedelta = timedelta(days=1),
    now: Any = None,
    enforce_retention: bool = True,
) -> CheckResult:
    """Run freshness, drift and performance checks, then enforce log retention (see the module doc).

    `since`: a timedelta; `now`: a datetime (naive is UTC) or an ISO string, default the current time;
    `enforce_retention=False` deletes nothing (deleted_log_days is 0), for a reader such as the UI."""
    from . import Window, _time
    from .scorers import scorer

    now = _time(now, "now") or datetime.now(timezone.utc)
    if isinstance(since, bool) or not isinstance(since, timedelta):
        raise MonitoringError(f"since must be a timedelta (e.g. timedelta(days=1)), got {since!r}")
    if since <= timedelta(0):
        raise MonitoringError(f"since must be a positive duration, got {since}")
    try:
        start = now - since
    except OverflowError:
        raise MonitoringError(f"since {since} reaches back before the year 1") from None
    sections = {"[monitoring]": monitor.config.defaults}
    sections.update({f"[monitoring.models.{name}]": t for name, t in monitor.config.models.items()})
    for section, thresholds in sections.items():  # a misconfigured metric is an error, not a note
        if thresholds.metric is not None:
            try:
                scorer(thresholds.metric)
            except MonitoringError as e:
                raise MonitoringError(f"featurestore.toml {section}: {e}") from None
    window = Window(start, now)
    breaches: list[Breach] = []
    notes: list[str] = []
    errors: list[CheckError] = []

    try:
        fresh = monitor.freshness(now)
    except FeatureStoreError as e:  # e.g. the online store is down: still check the models
        errors.append(CheckError("freshness", str(e)))
        fresh = _no_freshness(now)
    breaches += [_freshness_breach(v) for v in fresh.breaches]

    drift: dict[str, DriftReport] = {}
    perf: dict[str, PerformanceReport] = {}
    for mv, aliases in aliased_versions(monitor):
        target = f"{mv.name}@{', '.join(aliases)} (v{mv.version})"
        keys = [f"{mv.name}@{a}" for a in aliases]
        report = _drift(monitor, mv, window, target, notes, errors)
        if report is not None:
            drift.update(dict.fromkeys(keys, report))
            if report.breach:
                breaches.append(_drift_breach(target, report))
        live = _performance(monitor, mv, window, target, notes, errors)
        if live is not None:
            perf.update(dict.fromkeys(keys, live))
            if live.breach:
                breaches.append(Breach("performance", target, live.detail, live.live))

    deleted = 0
    if enforce_retention:
        try:
            deleted = expire_logs(monitor.log_path, monitor.config.retention_days, now)
        except MonitoringError as e:
            errors.append(CheckError("log retention", str(e)))
    return CheckResult(
        now=now,
        since=since,
        breaches=breaches,
        freshness=fresh,
        drift=drift,
        performance=perf,
        deleted_log_days=deleted,
        notes=notes,
        errors=errors,
    )


def _no_freshness(now: datetime) -> FreshnessReport:
    from .freshness import FreshnessReport

    return FreshnessReport(now, [])


def aliased_versions(monitor: Monitor) -> list[tuple[ModelVersion, list[str]]]:
    """Every model version an alias points at, once, with its aliases (sorted), by model name."""
    models = monitor.store.models
    out = []
    for summary in models.list():
        by_version: dict[int, list[str]] = {}
        for alias, version in sorted(summary["aliases"].items()):
            by_version.setdefault(version, []).append(alias)
        for version, aliases in sorted(by_version.items()):
            out.append((models.get(summary["name"], version=version), aliases))
    return out


def _drift(
    monitor: Monitor, mv: ModelVersion, window: Any, target: str, notes: list[str], errors: list[CheckError]
) -> DriftReport | None:
    from .drift import drift

    if mv.training_set is None:
        notes.append(f"{target}: drift not checked: the version has no training set to compare with")
        return None
    try:
        return drift(monitor, mv, window)
    except FeatureStoreError as e:  # e.g. an unreadable log file: the other checks still run
        errors.append(CheckError(target, f"drift: {e}"))
        return None


def _performance(
    monitor: Monitor, mv: ModelVersion, window: Any, target: str, notes: list[str], errors: list[CheckError]
) -> PerformanceReport | None:
    from .performance import performance

    try:
        report = performance(monitor, mv, window)
    except FeatureStoreError as e:
        errors.append(CheckError(target, f"performance: {e}"))
        return None
    if report.status == "not_configured":
        notes.append(f"{target}: performance not checked: {report.detail}")
    return report


def _freshness_breach(view: Any) -> Breach:
    if view.newest_event is None:
        detail = "nothing has been written online yet"
    else:
        detail = (
            f"newest online event {view.newest_event.isoformat()} is {_duration(view.age_seconds)} old, "
            f"over its freshness of {_duration(view.freshness_seconds)}"
        )
    return Breach("freshness", view.view, detail, view.age_seconds)


def _drift_breach(target: str, report: DriftReport) -> Breach:
    drifted = {name: f for name, f in report.features.items() if f.status == "drift"}
    if report.prediction is not None and report.prediction.status == "drift":
        drifted["prediction"] = report.prediction
    worst = max((f.psi for f in drifted.values() if f.psi is not None), default=None)
    listed = ", ".join(
        f"{name} (psi {f.psi:.3g})" if f.psi is not None else name
        for name, f in sorted(drifted.items(), key=lambda kv: -(kv[1].psi or 0))
    )
    return Breach("drift", target, f"drifted from the training set: {listed or 'see the report'}", worst)


def _duration(seconds: float | None) -> str:
    from ..plan import format_duration

    return "?" if seconds is None else format_duration(round(seconds))


def enforce_retention(log_path: LogRoot, retention_days: int, now: datetime) -> int:
    """Delete the prediction-log and feedback-log files of the days wholly more than `retention_days`
    before `now`; returns how many day folders were cleared.

    Only the log's own files are touched, so other data under `log_path` loses nothing: in the
    children of `log_path` named like a model (or `.feedback`), in their `date=YYYY-MM-DD` folders,
    the files `part-*.parquet` and the writers' temporary `.part-*.tmp`; a day folder is then removed
    if empty. Symbolic links are never followed nor deleted. A file that cannot be deleted is a
    MonitoringError naming it. On object storage the same files are deleted (there are no folders)."""
    # a day D is kept while D >= (now - retention).date(): its last moment is within the period
    last_expired = now.astimezone(timezone.utc) - timedelta(days=retention_days + 1)
    if isinstance(log_path, ObjectStore):
        return _expire_objects(log_path, last_expired)
    root = Path(log_path)
    if not root.is_dir():
        return 0
    from ..models.registry import _MODEL_NAME

    deleted = 0
    for child in _entries(root):
        if child.name != FEEDBACK_FOLDER and not _MODEL_NAME.fullmatch(child.name):
            continue
        if child.is_symlink() or not child.is_dir():
            continue
        try:
            folders = day_folders(child, None, last_expired)
        except OSError as e:
            raise MonitoringError(f"log retention: cannot list {child}: {e.strerror or e}") from None
        for folder in folders:
            if not folder.is_symlink():
                deleted += _clear_day(folder)
    return deleted


# Exactly the names the log writers give their files (prediction_log.py, performance.py): part-,
# the version (prediction log; none in older files and in the feedback log), the time to the
# microsecond and 8 hex digits; their temporary names are the same with a dot before and .tmp
# after. A Spark or Hive data set (part-00000-<uuid>.snappy.parquet) beside the log is not ours.
_LOG_FILE = re.compile(r"\.?part-(?:v\d+-)?\d{8}T\d{12}-[0-9a-f]{8}\.parquet(?:\.tmp)?")


expire_logs = enforce_retention  # check()'s keyword of the same name hides the function there


def _clear_day(folder: Path) -> int:
    """Delete the log files of one day folder, and the folder if it is then empty; 1 if anything went."""
    files = [
        f
        for f in _entries(folder)
        if _LOG_FILE.fullmatch(f.name)
        and (f.name.startswith(".") == f.name.endswith(".tmp"))
        and f.is_file()
        and not f.is_symlink()
    ]
    try:
        for f in files:
            f.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
            return 1
    except OSError as e:
        raise MonitoringError(
            f"log retention: cannot delete {e.filename or folder}: {e.strerror or e}"
        ) from None
    return 1 if files else 0


def _expire_objects(root: ObjectStore, last_expired: datetime) -> int:
    """`enforce_retention` on object storage: delete the log's own objects of the days up to
    `last_expired`; returns how many day prefixes were cleared."""
    from ..models.registry import _MODEL_NAME

    days: set[str] = set()
    try:
        for url in root.glob(root.url("*", "date=*", "*")):
            owner, day_folder, name = url.rsplit("/", 3)[-3:]
            if owner != FEEDBACK_FOLDER and not _MODEL_NAME.fullmatch(owner):
                continue
            if not _LOG_FILE.fullmatch(name) or name.startswith(".") or name.endswith(".tmp"):
                continue
            if _on_or_before(day_folder, last_expired):
                root.delete(url)
                days.add(f"{owner}/{day_folder}")
    except OSError as e:
        raise MonitoringError(f"log retention: cannot list or delete under {root.root}: {e}") from None
    return len(days)


def _on_or_before(name: str, last: datetime) -> bool:
    """Whether a `date=YYYY-MM-DD` name is of a day on or before `last`'s."""
    try:
        return name.startswith("date=") and date.fromisoformat(name[5:]) <= last.date()
    except ValueError:
        return False


def _entries(root: Path) -> list[Path]:
    try:
        return sorted(root.iterdir())
    except OSError as e:
        raise MonitoringError(f"log retention: cannot list {root}: {e.strerror or e}") from None
