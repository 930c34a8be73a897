"""The registry: what has been applied, per-view watermarks, and the audit trail.

`Registry` is what the rest of featurestore uses; it stores through a `RegistryStore` backend
(`featurestore.registry_store`, the contract; `featurestore.registry_sqlite`, one SQLite file), so
no caller holds a connection or writes SQL. Every write is one transaction, so a failed apply leaves
the registry as it was. The model registry and saved training sets use `Registry.backend`.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RegistryError
from .registry_sqlite import SQLiteRegistryStore
from .registry_store import MaterializationRun, RegistryStore, unreadable_error

if TYPE_CHECKING:
    from .config import RepoConfig

__all__ = ["Registry", "RegistryError", "current_user", "open_registry", "utcnow"]


def open_registry(config: RepoConfig) -> Registry:
    """The registry `config` names: PostgreSQL when `[registry] url` is set (it wins over `path`),
    else the SQLite file at `[registry] path`."""
    if config.registry_url is not None:
        from .registry_postgres import PostgresRegistryStore

        return Registry(config.registry_path, backend=PostgresRegistryStore(config.registry_url))
    return Registry(config.registry_path)


def current_user() -> str:
    """Who is acting: $FS_USER, else the OS user."""
    try:
        return os.environ.get("FS_USER") or getpass.getuser()
    except Exception:
        return "unknown"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _merged(spans: Any) -> list[tuple[datetime, datetime]]:
    """Inclusive (start, end) ranges, overlapping or touching ones merged, oldest first."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class Registry:
    """The registry file. Safe to share between threads; each call is its own short transaction."""

    def __init__(self, path: str | os.PathLike[str], backend: RegistryStore | None = None):
        self.path = Path(path)
        self.backend: RegistryStore = backend if backend is not None else SQLiteRegistryStore(self.path)

    def close(self) -> None:
        """Release this thread's connection to the registry."""
        self.backend.close()

    def unreadable(self, problem: str) -> RegistryError:
        """The error for a registry whose contents cannot be read: names it, suggests a restore."""
        return unreadable_error(self.backend.location, problem)

    def backup(self, destination: str | os.PathLike[str], force: bool = False) -> Path:
        """Copy the registry to `destination` while other processes keep using it; returns the path.

        An existing file is refused unless `force`. The copy is written beside the destination and
        moved into place whole, so a failed backup leaves nothing (or the old file) there."""
        target = Path(destination)
        if target.is_dir():
            raise RegistryError(f"backup destination {target} is a folder: name the file to write")
        # (On a PostgreSQL registry the SQLite path is unused and may not exist.)
        if target.exists() and os.path.exists(self.path) and os.path.samefile(target, self.path):
            raise RegistryError(f"backup destination {target} is the registry itself: name another file")
        if target.exists() and not force:
            raise RegistryError(f"backup destination {target} already exists: pass --force to overwrite it")
        if not target.parent.is_dir():
            raise RegistryError(f"backup destination folder {target.parent} does not exist")
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            self.backend.backup(tmp)
            if force:
                os.replace(tmp, target)
            else:
                try:
                    os.link(tmp, target)  # fails, rather than overwrite, if the file appeared meanwhile
                except FileExistsError:
                    raise RegistryError(
                        f"backup destination {target} already exists: pass --force to overwrite it"
                    ) from None
                except OSError:  # a filesystem without hard links: checked above, so replace
                    os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # -- applied definitions ---------------------------------------------------------------------

    def specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self.backend.specs()

    def objects(self) -> list[dict[str, Any]]:
        """Every applied object (kind, name, version, spec, applied_by, applied_at, location)."""
        return self.backend.objects()

    def locations(self) -> dict[tuple[str, str], str]:
        """(kind, name) -> where the applied object is defined ("features.py:12"), when known."""
        return {(o["kind"], o["name"]): o["location"] for o in self.backend.objects() if o["location"]}

    def versions(self) -> dict[tuple[str, str], int]:
        return self.backend.versions()

    def generation(self) -> int:
        """A number that grows with every apply: cheap to poll for 'did the definitions change?'."""
        return self.backend.generation()

    def apply(
        self,
        changes: list[tuple[str, str, str, dict[str, Any] | None]],
        actor: str | None = None,
        stale_views: Sequence[str] = (),
        locations: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        """Apply (action, kind, name, spec) changes in one transaction; action is add, change or remove.

        `stale_views` (`Plan.stale`) are reset in the same transaction: their watermark dropped, their
        runs so far no longer counted as covering anything (see `materialized_intervals`).
        `locations` records where each object is defined; it is not part of any spec, so a moved
        definition is no change."""
        return self.backend.apply(changes, actor or current_user(), stale_views, locations)

    # -- watermarks and materialization runs ---------------------------------------------------

    def watermark(self, view: str) -> datetime | None:
        return self.backend.watermark(view)

    def watermarks(self) -> dict[str, datetime]:
        return self.backend.watermarks()

    def record_materialization(
        self,
        view: str,
        start: datetime,
        end: datetime,
        rows: int,
        online_rows: int,
        advance_watermark: bool,
        generation: int | None = None,
        online_store: str | None = None,
        source_fingerprint: str | None = None,
        stats: dict[str, Any] | None = None,
    ) -> bool:
        """Record a finished run; the watermark only moves forward, and only when asked.

        `stats`: the feature statistics of the rows the run wrote (`featurestore.monitoring.stats`).

        `source_fingerprint`: what the run read (`featurestore.offline.fingerprint`), so that its
        range is seen as stale once the source's files change (`materialized_coverage`).

        `online_store`: the identity of the online store the run filled (`OnlineStore.identity`):
        the view's online watermark for that store moves forward with the run.

        `generation`: the registry's generation when the run read the definitions. A run that read them
        before the apply that last reset the view wrote rows of the old definition: it is not recorded
        (False), so those rows count for nothing."""
        run = MaterializationRun(view, start, end, rows, online_rows, utcnow(), source_fingerprint, stats)
        return self.backend.record_materialization(run, advance_watermark, generation, online_store)

    def online_watermarks(self, online_store: str) -> dict[str, datetime]:
        """view -> how far the online store of identity `online_store` holds its rows."""
        return self.backend.online_watermarks(online_store)

    def tracks_online_stores(self) -> bool:
        """Whether online stores are tracked: an online watermark is recorded for some view and store.

        Not so in a registry written before online watermarks existed (upgraded), until the first
        materialization that fills an online store."""
        return self.backend.tracks_online_stores()

    def runs(self, view: str | None = None, limit: int | None = None) -> list[MaterializationRun]:
        """Every materialization run recorded (for `view`), including those a reset no longer counts,
        oldest first; with `limit`, only the newest `limit` of them (still oldest first)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, got {limit}")
        return self.backend.runs(view, limit)

    def materialized_intervals(self, view: str) -> list[tuple[datetime, datetime]]:
        """The event-time ranges materialization has covered for a view since its last reset, merged,
        oldest first."""
        return _merged((r.start, r.end) for r in self.backend.current_runs(view))

    def materialized_coverage(
        self, view: str, source_fingerprint: str | None
    ) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
        """(current, stale): the materialized event-time ranges of a view (merged, oldest first) that
        offline storage still answers for, and those whose source changed since they were stored.

        A range is current where a run that read the source as it is now (`source_fingerprint`)
        covered it; runs without a fingerprint (an in-memory source, or recorded before there were
        fingerprints), and every run when `source_fingerprint` is None, count as current. Stale ranges
        are what the other runs covered beyond that, with closed ends: `fs materialize START END` of
        each stores it again. Retrieval reads the source for every time outside the current ranges."""
        runs = self.backend.current_runs(view)
        current = _merged(
            (r.start, r.end)
            for r in runs
            if source_fingerprint is None
            or r.source_fingerprint is None
            or r.source_fingerprint == source_fingerprint
        )
        stale: list[tuple[datetime, datetime]] = []
        for start, end in _merged((r.start, r.end) for r in runs):
            cut = False
            for a, b in current:  # both merged and sorted: cut the current ranges out
                if b < start or a > end:
                    continue
                if a > start:
                    stale.append((start, a))
                start, cut = max(start, b), True
            if start < end or not cut:
                stale.append((start, end))
        return current, stale

    def last_materialization(self, view: str) -> dict[str, Any] | None:
        """The latest-finished run since the view's last reset, with ISO times, or None."""
        runs = self.backend.current_runs(view)
        if not runs:
            return None
        last = max(runs, key=lambda r: r.finished_at)
        return {
            "start": _iso(last.start),
            "end": _iso(last.end),
            "rows": last.rows,
            "online_rows": last.online_rows,
            "finished_at": _iso(last.finished_at),
        }

    # -- audit trail -----------------------------------------------------------------------------

    def audit(
        self, action: str, target: str, detail: dict[str, Any] | None = None, actor: str | None = None
    ) -> None:
        """Append one entry to the audit trail."""
        self.backend.audit(actor or current_user(), action, target, detail or {})

    def audit_log(self, action: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest audit entries (of `action`), newest first."""
        return self.backend.audit_log(action, limit)
