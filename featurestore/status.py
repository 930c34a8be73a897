"""How current each view is, offline and in the online store in use: what `fs status`, `/ready` and
`/metrics` report.

The offline watermark belongs to the repo (SPEC §8); the online watermark belongs to one online
store, named by the identity marker the store itself holds (`OnlineStore.identity`), so a new or
emptied store (no marker, or a marker the registry has no watermark for) is seen to be behind.

A materialized range whose source files changed since it was stored (a late row appended inside
it, `featurestore.offline.fingerprint`) is stale: training sets read the source for it, and
`fs materialize START END` stores it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .offline.fingerprint import view_fingerprint

if TYPE_CHECKING:
    from .config import RepoConfig
    from .store import FeatureStore


def registry_summary(config: RepoConfig) -> dict[str, Any]:
    """Which registry the repo uses: backend, location (no secrets) and, when `[registry] url` and
    `path` are both set, the path it does not use (the url wins)."""
    if config.registry_url is None:
        return {"backend": "sqlite", "location": str(config.registry_path), "unused_path": None}
    unused = str(config.registry_path) if config.registry_path_set else None
    return {"backend": "postgresql", "location": config.registry_location, "unused_path": unused}


def registry_line(config: RepoConfig) -> str:
    """`registry_summary` in words, for `fs status`."""
    summary = registry_summary(config)
    if summary["backend"] == "sqlite":
        return f"Registry: SQLite file {summary['location']}"
    line = f"Registry: PostgreSQL {summary['location']}"
    if summary["unused_path"]:
        line += f" ([registry] url wins over path: {summary['unused_path']} is not used)"
    return line


@dataclass(frozen=True)
class ViewStatus:
    """One view: its watermarks, rows online, last run and staleness (seconds since its watermark)."""

    view: str
    online: bool  # served online
    offline_watermark: datetime | None
    online_watermark: datetime | None  # of the online store in use; None: it holds none of this view
    rows_online: int | None  # None: not served online
    last_run: str | None  # when the last counted materialization run finished (ISO)
    staleness_seconds: float | None  # now - offline watermark
    # Materialized ranges (start, end) whose source changed since: read from the source until
    # `fs materialize START END` stores them again.
    stale_ranges: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def online_behind(self) -> bool:
        """The online store holds less than offline storage (run `fs materialize-incremental`)."""
        if not self.online or self.offline_watermark is None:
            return False
        return self.online_watermark is None or self.online_watermark < self.offline_watermark

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("offline_watermark", "online_watermark"):
            d[k] = d[k].isoformat() if d[k] is not None else None
        d["online_behind"] = self.online_behind
        d["stale_ranges"] = [
            {"start": a.isoformat(), "end": b.isoformat(), "repair": repair_command(self.view, a, b)}
            for a, b in self.stale_ranges
        ]
        return d


def repair_command(view: str, start: datetime, end: datetime) -> str:
    """The command that stores a stale range of `view` again from its source."""
    return f"fs materialize {start.isoformat()} {end.isoformat()} --views {view}"


def online_marks(store: FeatureStore) -> tuple[str | None, dict[str, datetime]]:
    """The online store's identity (None: it holds no marker) and its watermarks per view."""
    identity = store.online_store.identity()
    return identity, store.registry.online_watermarks(identity) if identity is not None else {}


def view_statuses(store: FeatureStore, count_rows: bool = True) -> list[ViewStatus]:
    """Every applied view's status, by name. `count_rows=False` skips counting rows online (a scan)."""
    catalog = store.catalog
    offline = store.registry.watermarks()
    online_views = [v for v in catalog.views.values() if v.online]
    _, marks = online_marks(store) if online_views else (None, {})
    now = datetime.now(timezone.utc)
    out = []
    for name, view in sorted(catalog.views.items()):
        mark = offline.get(name)
        last = store.registry.last_materialization(name)
        rows = store.online_store.count_rows(name) if view.online and count_rows else None
        stale: list[tuple[datetime, datetime]] = []
        if last is not None:  # materialized: are its ranges still what the source holds?
            fingerprint = view_fingerprint(store.repo_path, catalog.sources, view)
            stale = store.registry.materialized_coverage(name, fingerprint)[1]
        out.append(
            ViewStatus(
                view=name,
                online=view.online,
                offline_watermark=mark,
                online_watermark=marks.get(name) if view.online else None,
                rows_online=rows,
                last_run=last["finished_at"] if last else None,
                staleness_seconds=(now - mark).total_seconds() if mark is not None else None,
                stale_ranges=tuple(stale),
            )
        )
    return out


def online_not_ready(store: FeatureStore) -> str | None:
    """Why the online store cannot answer for what has been materialized, or None.

    Not ready: views served online have been materialized (they have an offline watermark) and the
    store holds no identity marker, so it is new or lost its data since (a Redis restart without
    persistence). Being behind (a marker, older watermarks) is not unready: lookups answer, older."""
    catalog = store.catalog
    materialized = store.registry.watermarks()
    expected = sorted(n for n, v in catalog.views.items() if v.online and n in materialized)
    if not expected:
        return None
    if store.online_store.identity() is None:
        return (
            f"the online store holds no featurestore marker: it is new or was emptied, and the views "
            f"{', '.join(expected)} were materialized: run `fs materialize-incremental` to fill it"
        )
    return None
