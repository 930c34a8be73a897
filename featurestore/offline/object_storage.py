"""Offline storage on object storage (`[offline] path = "s3://bucket/prefix"`): a manifest swap per write.

The rows, the day files and their bytes are those of `featurestore.offline.storage` (the same COPY
writes them, to a local temporary file, then uploaded); what differs is how a day is replaced,
since object storage has no rename:

    <url>/<view>/date=YYYY-MM-DD/data-<uuid>.parquet          every version of a day, each a new name
    <url>/<view>/_manifest.json                               which file is each day's current one
    <url>/<view>/pushed/...                                   the same, for pushed rows

A write uploads each new day file under a new name, then replaces the manifest with one PUT, then
(only then) retires the files it replaced. Readers read the manifest and the files it names, never a
listing, so a reader sees every day of a write or none of them, and a crash before the swap leaves
new files no manifest names (orphans, deleted by a later write) and the old days intact. Retired
and orphan files are deleted by the first write after `GRACE_SECONDS`, so a reader that read the
old manifest just before a swap can still read the files it names.

S3 is strongly consistent (read-after-write for every PUT, DELETE and listing, since December
2020), so the manifest a reader gets is the newest one written. The manifest PUT is conditional
(`If-Match` on the ETag read at the start of the write; `If-None-Match: *` when there was none), so
two writers that both bypassed the per-view lock cannot silently lose one's days: the second fails
with `ManifestConflictError`. The lock itself is `OfflineStorage.locked`: a PostgreSQL advisory
lock with a PostgreSQL registry, else an flock of a file in the local working folder (so with a
SQLite registry, one machine writes a view: see docs/deploy.md).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ..definitions import FeatureView
from ..errors import FeatureStoreError
from ..locations import ObjectStore, WriteConflict
from ..types import ValueType
from .features import feature_columns
from .sources import quote_ident, quote_literal
from .storage import (
    MATERIALIZED,
    PUSHED,
    QUARANTINE,
    REASON_SUFFIX,
    OfflineStorage,
    QuarantinedFile,
    StoredFile,
    _projected,
    day_of,
    file_problem,
)

MANIFEST = "_manifest.json"
#: how many footers (schemas) of day objects a storage object keeps
SCHEMAS_KEPT = 10_000
#: how long a replaced or orphaned day file is kept, for readers of the manifest before the swap
GRACE_SECONDS = 15 * 60

log = logging.getLogger("featurestore.offline")


class ManifestConflictError(FeatureStoreError):
    """Another writer replaced a view's manifest during this write (two writers without a shared lock)."""


@dataclass
class Manifest:
    """The current file of each stored day of one view area, as read (with its ETag) at one moment."""

    url: str
    days: dict[str, str] = field(default_factory=dict)  # "YYYY-MM-DD" -> file name relative to the area
    retired: list[tuple[str, float]] = field(default_factory=list)  # (file, when it was replaced)
    etag: str | None = None  # None: there was no manifest


_FILE_NAME = re.compile(r"date=(\d{4}-\d{2}-\d{2})/[A-Za-z0-9_.-]+\.parquet")


def _check_file_name(file: str, day: str) -> None:
    """ValueError unless `file` is a day file of the manifest's own area, `date=<day>/<name>.parquet`
    (a manifest naming `../other/...` would make a write retire, then delete, another view's file)."""
    m = _FILE_NAME.fullmatch(file)
    if m is None or m.group(1) != day or ".." in file:
        raise ValueError(f"{file!r} is not a day file of {day!r} (expected 'date={day}/data-<id>.parquet')")


class ObjectOfflineStorage(OfflineStorage):
    """`OfflineStorage` whose files are objects under a URL; `work_dir` is a local folder for the
    staging folders and lock files (the rows are staged locally, then uploaded day by day)."""

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any],
        work_dir: Path,
        key_types: Callable[[FeatureView], Mapping[str, ValueType]] | None = None,
        *,
        lock: Callable[[str], AbstractContextManager[bool] | None] | None = None,
    ):
        super().__init__(work_dir, key_types, lock=lock)
        self.objects = ObjectStore(url, storage_options)
        self.url = self.objects.root
        #: footers read, by (URL, ETag): day objects never change, so each footer is fetched once
        self._schemas: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._schemas_lock = threading.Lock()

    # -- the hooks of OfflineStorage --------------------------------------------------------------

    @property
    def filesystem(self) -> Any:
        return self.objects.fs

    def schema(self, path: StoredFile) -> Any:
        """The object's footer schema: read once per object version (its ETag), then kept."""
        import pyarrow.parquet as pq

        url = str(path)
        key = (url, self.objects.version(url))
        with self._schemas_lock:
            if key in self._schemas:
                self._schemas.move_to_end(key)
                return self._schemas[key]
        schema = pq.read_schema(url, filesystem=self.objects.fs)
        with self._schemas_lock:
            self._schemas[key] = schema
            while len(self._schemas) > SCHEMAS_KEPT:
                self._schemas.popitem(last=False)
        return schema

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        self.objects.register(con)

    def problem(self, view: FeatureView, path: StoredFile, deep: bool = False) -> str | None:
        """As OfflineStorage's; an object the manifest names but the bucket lacks (deleted by hand or by
        a lifecycle rule) is unreadable like a damaged one, so it is rebuilt or quarantined too."""
        keys = self._key_types(view) if self._key_types is not None else None
        try:
            return file_problem(
                view, path, deep=deep, key_types=keys, filesystem=self.objects.fs, read_schema=self.schema
            )
        except FileNotFoundError:
            return "the object is missing (deleted outside featurestore, e.g. by a bucket lifecycle rule)"

    def _exists(self, path: StoredFile) -> bool:
        """Whether the day object is still its day's current one (the manifest names it)."""
        url = str(path)
        parts = url[len(self.url) + 1 :].split("/")
        area = PUSHED if len(parts) > 2 and parts[1] == PUSHED else MATERIALIZED
        return url in self.files(parts[0], area)

    def _work_dir(self, view_name: str) -> Path:
        return self.root / view_name

    def _lock_file(self, view_name: str) -> Path:
        return self.root / view_name / ".lock"

    # -- reading ----------------------------------------------------------------------------------

    def manifest(self, view_name: str, area: str = MATERIALIZED, for_write: bool = False) -> Manifest:
        """The view area's manifest now (empty when nothing was written); `for_write`: with its ETag,
        read before its body, so a swap based on it fails if anyone replaced it since."""
        url = self.objects.url(view_name, area, MANIFEST)
        etag = None
        try:
            if for_write:
                etag = self.objects.etag(url)
            raw = self.objects.read_bytes(url)
        except FileNotFoundError:
            return Manifest(url)
        try:
            body = json.loads(raw)
            days = {str(d): str(f) for d, f in body["days"].items()}
            retired = [(str(f), float(t)) for f, t in body.get("retired", [])]
            for day, file in days.items():
                date.fromisoformat(day)  # ValueError for a key that is not a day
                _check_file_name(file, day)
            for file, _ in retired:
                _check_file_name(file, day_of(file))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise FeatureStoreError(
                f"offline storage of feature view '{view_name}': the manifest {url} cannot be read "
                f"({type(e).__name__}: {e}); it names each day's current file. Restore it from the "
                "bucket's object versions, or delete it and materialize the view's range again"
            ) from None
        return Manifest(url, days, retired, etag)

    def files(self, view_name: str, area: str | None = None) -> Sequence[StoredFile]:
        areas = (MATERIALIZED, PUSHED) if area is None else (area,)
        found: list[StoredFile] = []
        for a in areas:
            manifest = self.manifest(view_name, a)
            found.extend(self.objects.url(view_name, a, manifest.days[d]) for d in sorted(manifest.days))
        self.objects.cache_listing(self.objects.url(view_name, area or ""), [str(f) for f in found])
        return found

    def quarantined(self, view_name: str | None = None) -> list[QuarantinedFile]:
        pattern = self.objects.url(QUARANTINE, view_name or "*", "*", "date=*", "*.parquet")
        found = []
        for url in self.objects.glob(pattern):
            try:
                reason = self.objects.read_bytes(url + REASON_SUFFIX).decode().strip()
            except FileNotFoundError:
                reason = ""
            parts = url.rsplit("/", 4)  # .../<view>/<area>/date=.../<file>
            found.append(
                QuarantinedFile(
                    view=parts[1],
                    area=PUSHED if parts[2] == PUSHED else MATERIALIZED,
                    day=date.fromisoformat(day_of(url)),
                    path=url,
                    reason=reason,
                )
            )
        return sorted(found, key=lambda q: (str(q.path).rsplit("/", 1)[-1], q.view, q.day))

    # -- writing ----------------------------------------------------------------------------------

    def stage(self, con: duckdb.DuckDBPyConnection, view: FeatureView, rows_sql: str) -> Path:
        self.attach(con)
        return super().stage(con, view, rows_sql)

    def commit(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        staging: Path,
        predicate: str,
        days: Iterable[date] = (),
        cleanup: bool = True,
        area: str = MATERIALIZED,
        rebuild: Callable[[date], str] | None = None,
    ) -> int:
        """`OfflineStorage.commit` on object storage: every touched day is written as a new object,
        then the manifest is swapped once for all of them (call with the view locked)."""
        self.attach(con)
        manifest = self.manifest(view.name, area, for_write=True)
        stored_days = {date.fromisoformat(d) for d in manifest.days}
        touched = sorted(self.staged_days(staging) | (set(days) & stored_days))
        cols = ", ".join(quote_ident(c) for c in feature_columns(view))
        changes: dict[str, str | None] = {}  # day -> its new file (None: the day now holds no rows)
        uploaded: list[str] = []
        stored_rows = 0
        try:
            for day in touched:
                name = day.isoformat()
                new_dir = staging / f"date={name}"
                added = (
                    f"SELECT {cols} FROM read_parquet({quote_literal(str(new_dir / '*.parquet'))})"
                    if new_dir.exists()
                    else None
                )
                kept = None
                current = (
                    self.objects.url(view.name, area, manifest.days[name]) if name in manifest.days else None
                )
                if current is not None:
                    problem = self.problem(view, current)
                    if problem is None:
                        kept = f"SELECT * FROM ({_projected(view, [current], self.schema)}) WHERE NOT ({predicate})"
                    else:
                        added = self._unreadable_object(view, current, problem, area, day, added, rebuild)
                try:
                    count, file = self._write_object(con, view, area, name, kept, added, staging)
                except duckdb.Error:
                    problem = self.problem(view, current, deep=True) if kept is not None and current else None
                    if problem is None or current is None:
                        raise
                    added = self._unreadable_object(view, current, problem, area, day, added, rebuild)
                    count, file = self._write_object(con, view, area, name, None, added, staging)
                if file is not None:
                    uploaded.append(file)
                if file is not None or current is not None:
                    changes[name] = file
                stored_rows += count
            self.check_lock(view.name)  # the lock still held: no other writer is swapping this manifest
            self._swap(view.name, area, manifest, changes, swapped=uploaded.clear)
        except BaseException:
            self._discard(view.name, area, uploaded)
            raise
        finally:
            if cleanup:
                shutil.rmtree(staging, ignore_errors=True)
        return stored_rows

    def _unreadable_object(
        self,
        view: FeatureView,
        url: str,
        problem: str,
        area: str,
        day: date,
        added: str | None,
        rebuild: Callable[[date], str] | None,
    ) -> str | None:
        """OfflineStorage._unreadable_day for the object `url`: the rows that replace its day (all
        of the day from the source, else the new rows after copying the object to the quarantine;
        the swap that follows drops it from the manifest)."""
        if rebuild is not None and area == MATERIALIZED:
            log.warning(
                "feature view '%s': %s cannot be read (%s); rebuilding %s from the source",
                view.name,
                url,
                problem,
                day,
            )
            return rebuild(day)
        self._copy_aside(view.name, url, problem, area)
        return added

    def _write_object(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        area: str,
        day: str,
        kept: str | None,
        added: str | None,
        staging: Path,
    ) -> tuple[int, str | None]:
        """Write one day's rows to a new object (the same bytes as a local day file); returns the
        number of rows and the new file's name under the area (None: no rows, no file)."""
        local = staging / f".day-{day}-{uuid.uuid4().hex}.parquet"
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            count = self._write_day(con, view, local, kept, added)
            if count == 0:
                return 0, None
            file = f"date={day}/data-{uuid.uuid4().hex}.parquet"
            self.objects.upload(local, self.objects.url(view.name, area, file))
            return count, file
        finally:
            local.unlink(missing_ok=True)

    def _discard(self, view_name: str, area: str, uploaded: Sequence[str]) -> None:
        """Delete the files a failed write uploaded, unless the manifest names them after all (its PUT
        landed though its answer was an error): best effort, since a file left over is an orphan a
        later write deletes, where a file deleted wrongly loses a day."""
        if not uploaded:
            return
        try:
            named = set(self.manifest(view_name, area).days.values())
            for file in uploaded:
                if file not in named:
                    self.objects.delete(self.objects.url(view_name, area, file))
        except (OSError, FeatureStoreError) as e:
            log.warning(
                "feature view '%s': could not delete the files of a failed write (%s); they are "
                "orphans, which a later write deletes",
                view_name,
                e,
            )

    def _swap(
        self,
        view_name: str,
        area: str,
        manifest: Manifest,
        changes: Mapping[str, str | None],
        swapped: Callable[[], None] | None = None,
    ) -> None:
        """Replace the manifest with `changes` applied (one conditional PUT), call `swapped`, then
        delete the files retired longer than the grace period ago, and orphans as old (best effort:
        the write is done once the PUT returned, and what is left is deleted by a later write)."""
        if not changes:
            return
        now = time.time()
        days = dict(manifest.days)
        retired = list(manifest.retired)
        for day, file in changes.items():
            if day in days:
                retired.append((days[day], now))
            if file is None:
                days.pop(day, None)
            else:
                days[day] = file
        expired = {f for f, t in retired if now - t > GRACE_SECONDS}
        retired = [(f, t) for f, t in retired if f not in expired]
        body = json.dumps({"format": 1, "days": dict(sorted(days.items())), "retired": retired}, indent=1)
        self._put_manifest(view_name, manifest, body.encode())
        if swapped is not None:
            swapped()
        try:
            for file in sorted(expired):
                self.objects.delete(self.objects.url(view_name, area, file))
            self._delete_orphans(view_name, area, set(days.values()) | {f for f, _ in retired}, now)
        except (OSError, FeatureStoreError) as e:
            log.warning(
                "feature view '%s': written, but the replaced day files under %s could not be deleted "
                "(%s); a later write deletes them",
                view_name,
                self.objects.url(view_name, area),
                e,
            )

    def _put_manifest(self, view_name: str, manifest: Manifest, body: bytes) -> None:
        """PUT the manifest if it is still the version `manifest` was read as. A refused or failed PUT
        is checked by reading the manifest back: botocore retries a PUT whose answer was lost, and the
        retry fails the condition the first attempt met, so a refusal alone does not mean another
        writer came; the manifest holding `body` means this write landed."""
        try:
            self.objects.write_if(manifest.url, body, manifest.etag)
        except (WriteConflict, FeatureStoreError) as e:
            try:
                landed = self.objects.read_bytes(manifest.url) == body
            except (OSError, FeatureStoreError):
                landed = False
            if landed:
                return
            if isinstance(e, WriteConflict):
                raise ManifestConflictError(
                    f"offline storage of feature view '{view_name}': {manifest.url} was replaced by "
                    "another writer during this write, so this write was not recorded (its new files "
                    "are deleted). Two machines wrote the view without a shared lock: use a PostgreSQL "
                    "registry (its advisory locks span machines) or one writing machine; run again"
                ) from e
            raise

    def _delete_orphans(self, view_name: str, area: str, named: set[str], now: float) -> None:
        """Delete day files no manifest names that are older than the grace period (left by a crash
        between upload and swap)."""
        area_url = self.objects.url(view_name, area)
        for url in self.objects.glob(self.objects.url(view_name, area, "date=*", "data-*.parquet")):
            file = url[len(area_url) + 1 :]
            if file not in named and now - self.objects.modified(url) > GRACE_SECONDS:
                self.objects.delete(url)

    def _copy_aside(self, view_name: str, url: str, reason: str, area: str) -> str:
        """Copy an unreadable day object to the quarantine, with its reason beside it."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        day_folder, name = url.rsplit("/", 2)[-2:]
        dest = self.objects.url(QUARANTINE, view_name, area or "materialized", day_folder, f"{stamp}-{name}")
        self.objects.write_bytes(dest + REASON_SUFFIX, (reason + "\n").encode())
        try:
            self.objects.copy(url, dest)
        except FileNotFoundError:  # nothing left to keep: the reason stays as the record
            pass
        log.warning("feature view '%s': %s cannot be read (%s); copied to %s", view_name, url, reason, dest)
        return dest

    def _quarantine(self, view_name: str, path: StoredFile, reason: str, area: str) -> StoredFile:
        """Move an unreadable day object aside: copy it to the quarantine, drop it from the manifest
        (call with the view locked); the object itself goes with the retired files."""
        url = str(path)
        dest = self._copy_aside(view_name, url, reason, area)
        manifest = self.manifest(view_name, area, for_write=True)
        day = day_of(url)
        if day in manifest.days and self.objects.url(view_name, area, manifest.days[day]) == url:
            self._swap(view_name, area, manifest, {day: None})
        return dest

    def delete_view(self, view_name: str) -> None:
        self.objects.delete_tree(self.objects.url(view_name))
        shutil.rmtree(self._work_dir(view_name), ignore_errors=True)
