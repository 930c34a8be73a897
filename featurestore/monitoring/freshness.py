"""Freshness: how old is the newest event each feature view holds online?

    report = store.monitor.freshness()          # FreshnessReport
    report.breaches                             # views older than their `freshness`

The online store keeps, per view, the newest event time ever written to it (`OnlineStore.newest_events`:
rows materialized or pushed, tiles of aggregating views rebuilt or merged). A view's age is now minus
that time; it breaches when the view declares `freshness=timedelta(...)` and the age exceeds it. A
view served online that nothing was written to yet is `never` (not a breach: there is no age), one
not served online is `offline`. One read of the online store answers for every view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import FeatureStore

OK, BREACH, NEVER, OFFLINE = "ok", "breach", "never", "offline"


@dataclass(frozen=True)
class ViewFreshness:
    """One view: its newest online event time, its age and limit (seconds), and its status."""

    view: str
    online: bool
    newest_event: datetime | None
    age_seconds: float | None
    freshness_seconds: float | None
    status: str  # ok | breach | never (online, nothing written) | offline (not served online)

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "online": self.online,
            "newest_event": None if self.newest_event is None else self.newest_event.isoformat(),
            "age_seconds": self.age_seconds,
            "freshness_seconds": self.freshness_seconds,
            "status": self.status,
        }


@dataclass(frozen=True)
class FreshnessReport:
    """Every feature view of the store, by name, at `now`."""

    now: datetime
    views: list[ViewFreshness]

    @property
    def breaches(self) -> list[ViewFreshness]:
        """The views whose newest online event is older than their `freshness`."""
        return [v for v in self.views if v.status == BREACH]

    @property
    def breach(self) -> bool:
        """Whether any view breaches (`fs monitor freshness` exits 1)."""
        return bool(self.breaches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "breach": self.breach,
            "views": [v.to_dict() for v in self.views],
        }


def freshness(store: FeatureStore, now: datetime | None = None) -> FreshnessReport:
    """The freshness of every feature view of `store` at `now` (default: the current time)."""
    now = _utc(now) if now is not None else datetime.now(timezone.utc)
    views = sorted(store.catalog.views.values(), key=lambda v: v.name)
    newest = store.online_store.newest_events() if any(v.online for v in views) else {}
    out = []
    for v in views:
        limit = v.freshness.total_seconds() if v.freshness is not None else None
        if not v.online:
            out.append(ViewFreshness(v.name, False, None, None, limit, OFFLINE))
            continue
        last = newest.get(v.name)
        if last is None:
            out.append(ViewFreshness(v.name, True, None, None, limit, NEVER))
            continue
        age = (now - last).total_seconds()
        status = BREACH if limit is not None and age > limit else OK
        out.append(ViewFreshness(v.name, True, last, age, limit, status))
    return FreshnessReport(now, out)


def staleness(store: FeatureStore, now: datetime | None = None) -> dict[str, float]:
    """view -> seconds since its newest online event, for the online views written to (`/metrics`)."""
    report = freshness(store, now)
    return {v.view: v.age_seconds for v in report.views if v.age_seconds is not None}


def _utc(value: Any) -> datetime:
    """`now` (a datetime, naive is UTC, a date or an ISO string) in UTC; else a MonitoringError."""
    from . import _time

    out = _time(value, "now")
    assert out is not None  # called for a given `now` only
    return out
