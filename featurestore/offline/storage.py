"""Offline storage: a view's feature rows as Parquet, one file per UTC day of event time.

    <offline path>/<view>/date=YYYY-MM-DD/data.parquet

Rows have the shape of `featurestore.offline.features` (join keys, features, __event_ts,
__created_ts), every column nullable and cast to its declared type, sorted by every column (event
time, keys, created time, then the features), and written by one ordered, single-stream COPY: the
same rows always give the same file, byte for byte (with the same DuckDB version, which the file's
`created_by` names), whatever the order they arrived in or the path they took.

Writes are "replace what matches": `commit(con, view, staging, predicate)` swaps, in every day it
touches, the stored rows matching `predicate` for the staged rows. Each day's file is rewritten to a
temporary name and renamed over the old one, so a reader or a crash sees either the old day or the
new day, never half of one; re-running the same write gives the same files.

A day file that cannot be read (truncated, garbage bytes, a schema that is not the view's: keys of
another type than the declared or source one) raises
`CorruptOfflineFileError` naming it. A materialization touching that day rebuilds the whole day from
the source without reading the file (`commit(..., rebuild=...)`). A damaged day of pushed rows, which
no source can rebuild, is moved aside to `<offline path>/__quarantine/<view>/pushed/date=.../` (never
deleted; `quarantined()` lists them) and the error says where.

An offline path on object storage (`s3://bucket/prefix`) is `ObjectOfflineStorage`
(`featurestore.offline.object_storage`): the same rows, files and guarantees, with a manifest
swap in place of the rename. The methods marked "hook" below are where the two differ.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..definitions import FeatureView
from ..errors import CorruptOfflineFileError, PushError
from ..types import ValueType
from .features import CREATED_TS, EVENT_TS, feature_columns
from .sources import arrow_table, quote_ident, quote_literal

DATA_FILE = "data.parquet"
# Materialization replaces rows of the MATERIALIZED area only; pushed rows live apart, in PUSHED
# (<view>/pushed/date=.../), so re-materializing a range never deletes what applications pushed.
MATERIALIZED = ""
PUSHED = "pushed"
# Unreadable pushed days are moved here (<root>/__quarantine/<view>/<area>/date=.../); no view can be
# named so (names starting with "__" are reserved), so deleting a view never deletes its quarantine.
QUARANTINE = "__quarantine"
REASON_SUFFIX = ".reason.txt"

#: a stored day file: a local Path, or the URL of an object (ObjectOfflineStorage)
StoredFile = Path | str

log = logging.getLogger("featurestore.offline")


@dataclass(frozen=True)
class QuarantinedFile:
    """A stored day file that could not be read and was moved aside: what it held, where it is, why."""

    view: str
    area: str  # PUSHED ("pushed") or MATERIALIZED ("")
    day: date
    path: StoredFile
    reason: str


class OfflineStorage:
    """The Parquet files materialization writes and the point-in-time join reads."""

    def __init__(
        self,
        root: Path,
        key_types: Callable[[FeatureView], Mapping[str, ValueType]] | None = None,
        *,
        lock: Callable[[str], AbstractContextManager[bool] | None] | None = None,
    ):
        """`key_types`: the type each key of a view must have in its files, when not declared (the
        source's, `featurestore.keys.file_key_types`), so a file holding keys of another type is damaged.
        `lock`: the registry's cross-machine lock (`RegistryStore.exclusive_lock`); when it gives one,
        a view's writer lock is `view:<name>` there instead of the flock on the view's `.lock` file."""
        self.root = Path(root)
        self._key_types = key_types
        self._lock = lock
        self._held = threading.local()  # view name -> the registry lock this thread holds for it

    def problem(self, view: FeatureView, path: StoredFile, deep: bool = False) -> str | None:
        """`file_problem` for a day file of this storage, with the view's known key types."""
        keys = self._key_types(view) if self._key_types is not None else None
        return file_problem(view, path, deep=deep, key_types=keys, filesystem=self.filesystem)

    # -- hooks: what object storage does differently (featurestore.offline.object_storage) ----------

    #: the fsspec file system pyarrow reads stored files through (None: the local one)
    filesystem: Any = None

    def schema(self, path: StoredFile) -> pa.Schema:
        """The Arrow schema of a stored day file (its footer)."""
        return pq.read_schema(path, filesystem=self.filesystem)

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let `con` read this storage's files (hook: nothing to do for local files)."""

    def _exists(self, path: StoredFile) -> bool:
        return Path(path).exists()

    def _work_dir(self, view_name: str) -> Path:
        """The local folder of a view's staging folders (hook: the view's own folder here)."""
        return self.view_dir(view_name)

    def _lock_file(self, view_name: str) -> Path:
        """The local file `locked()` flocks (hook: in the view's folder here)."""
        return self.view_dir(view_name) / ".lock"

    def view_dir(self, view_name: str, area: str = MATERIALIZED) -> Path:
        return self.root / view_name / area if area else self.root / view_name

    def files(self, view_name: str, area: str | None = None) -> Sequence[StoredFile]:
        """Stored day files of a view: of one area, or (None) of both."""
        areas = (MATERIALIZED, PUSHED) if area is None else (area,)
        return sorted(f for a in areas for f in self.view_dir(view_name, a).glob(f"date=*/{DATA_FILE}"))

    def has_data(self, view_name: str) -> bool:
        return bool(self.files(view_name))

    def days(self, view_name: str, area: str = MATERIALIZED) -> list[date]:
        return [date.fromisoformat(day_of(p)) for p in self.files(view_name, area)]

    def rows_sql(self, view: FeatureView, area: str = MATERIALIZED) -> str | None:
        """SELECT of the stored feature rows of one area, in the view's current shape (None: none stored).

        Files written before a feature was added lack its column: it reads as NULL there (pushed rows;
        materialized days are not read until rebuilt, as apply resets the view: `featurestore.plan`);
        columns are cast to the declared types."""
        files = self.files(view.name, area)
        if not files:
            return None
        for f in files:
            problem = self.problem(view, f)
            if problem is not None:
                raise self.unreadable(view, f, problem, area)
        return _projected(view, files, self.schema)

    def check(self, view: FeatureView, area: str | None = None) -> None:
        """Read every page of the view's stored files; raise `CorruptOfflineFileError` for the first that
        cannot be read (after moving it aside when it holds pushed rows). For a query over storage that
        failed: the footers were fine, so a data page may be damaged."""
        for a in (MATERIALIZED, PUSHED) if area is None else (area,):
            for f in self.files(view.name, a):
                problem = self.problem(view, f, deep=True)
                if problem is not None:
                    raise self.unreadable(view, f, problem, a)

    def unreadable(
        self, view: FeatureView, path: StoredFile, problem: str, area: str
    ) -> CorruptOfflineFileError:
        """The error for a stored day file that cannot be read; a file of pushed rows is first moved to
        the quarantine (under the view's lock, and only if it is still the damaged one)."""
        day = day_of(path)
        where = f"offline storage of feature view '{view.name}': {path} cannot be read ({problem})"
        if area != PUSHED:
            return CorruptOfflineFileError(
                f"{where}. It holds the rows materialized for {day}, which the source can rebuild: run "
                f"`fs materialize {day} {day}` (or store.materialize('{day}', '{day}')); a materialization "
                "touching that day rebuilds all of it from the source without reading the damaged file",
                view.name,
                str(path),
                day,
            )
        moved: StoredFile | None = None
        with self.locked(view.name):
            if self._exists(path) and self.problem(view, path, deep=True) is not None:
                moved = self._quarantine(view.name, path, problem, area)
        if moved is None:  # a concurrent writer replaced or quarantined it meanwhile
            return CorruptOfflineFileError(
                f"{where}; it has been replaced since: run the query again", view.name, str(path), day
            )
        return CorruptOfflineFileError(
            f"{where}. It held rows pushed for {day}, which no source can rebuild: it was moved to {moved} "
            "(kept, not deleted), and training sets leave those rows out from now on. Repair the file and "
            "move it back, or push those rows again. Run the query again to build it without them.",
            view.name,
            str(path),
            day,
            str(moved),
        )

    def quarantined(self, view_name: str | None = None) -> list[QuarantinedFile]:
        """Day files moved aside because they could not be read (of one view, or of all), oldest first.

        >>> for q in store.offline_storage.quarantined(): print(q.view, q.day, q.path, q.reason)"""
        base = self.root / QUARANTINE
        found = []
        for path in base.glob(f"{view_name or '*'}/*/date=*/*.parquet"):
            reason_file = path.with_name(path.name + REASON_SUFFIX)
            reason = reason_file.read_text().strip() if reason_file.exists() else ""
            found.append(
                QuarantinedFile(
                    view=path.parents[2].name,
                    area=PUSHED if path.parents[1].name == PUSHED else MATERIALIZED,
                    day=date.fromisoformat(path.parent.name[len("date=") :]),
                    path=path,
                    reason=reason,
                )
            )
        return sorted(found, key=lambda q: (str(q.path).rsplit("/", 1)[-1], q.view, q.day))

    def _quarantine(self, view_name: str, path: StoredFile, reason: str, area: str) -> StoredFile:
        """Move an unreadable day file aside (call with the view locked); returns where it went."""
        path = Path(path)
        folder = self.root / QUARANTINE / view_name / (area or "materialized") / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        dest = folder / f"{stamp}-{path.name}"
        dest.with_name(dest.name + REASON_SUFFIX).write_text(reason + "\n")
        os.replace(path, dest)  # one rename on one file system: the file is never lost nor copied half
        log.warning("feature view '%s': %s cannot be read (%s); moved to %s", view_name, path, reason, dest)
        return dest

    @contextmanager
    def locked(self, view_name: str) -> Iterator[None]:
        """One writer per view at a time (across processes, and machines when the registry has a
        lock of its own: PostgreSQL's advisory locks), so concurrent writes never lose rows."""
        shared = self._lock(f"view:{view_name}") if self._lock is not None else None
        if shared is not None:
            held: dict[str, Any] = self._held.__dict__.setdefault("locks", {})
            with shared:
                held[view_name] = shared
                try:
                    yield
                finally:
                    held.pop(view_name, None)
            return
        lock_file = self._lock_file(view_name)
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_file, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def check_lock(self, view_name: str) -> None:
        """Raise (RegistryError) when the registry lock this thread holds for the view has been lost
        (PostgreSQL's lock has `check()`: its connection dropped), before files are swapped in that
        another writer may be writing too. A flock cannot be lost."""
        lock = self._held.__dict__.get("locks", {}).get(view_name)
        check = getattr(lock, "check", None)
        if check is not None:
            check()

    def stage(self, con: duckdb.DuckDBPyConnection, view: FeatureView, rows_sql: str) -> Path:
        """Write feature rows to a staging folder, split by day; call with the view locked."""
        directory = self._work_dir(view.name)
        for old in directory.glob(".staging-*"):  # left by a run that was killed
            shutil.rmtree(old, ignore_errors=True)
        staging = directory / f".staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        cols = ", ".join(quote_ident(c) for c in feature_columns(view))
        con.execute(
            f"COPY (SELECT {cols}, strftime({EVENT_TS}, '%Y-%m-%d') AS date FROM ({rows_sql}) "
            f"WHERE {EVENT_TS} IS NOT NULL) TO {quote_literal(str(staging))} "
            "(FORMAT parquet, PARTITION_BY (date), OVERWRITE_OR_IGNORE true, COMPRESSION snappy)"
        )
        return staging

    @staticmethod
    def staged_relation(staging: Path) -> str:
        return (
            f"read_parquet({quote_literal(str(staging / 'date=*' / '*.parquet'))}, hive_partitioning = false)"
        )

    @staticmethod
    def staged_days(staging: Path) -> set[date]:
        return {date.fromisoformat(p.name[5:]) for p in staging.glob("date=*") if any(p.glob("*.parquet"))}

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
        """Merge staged rows into storage: in each staged day and each day of `days`, stored rows matching
        `predicate` are replaced by the staged ones. Returns the number of rows now stored in those days.
        With cleanup=False the staging folder is left for the caller to read and remove.

        A stored day that cannot be read is never read: with `rebuild` (day -> SELECT of all that day's
        feature rows from the source) the whole day is written anew from it; otherwise (pushed rows)
        the file is moved to the quarantine and the day keeps the staged rows."""
        touched = sorted(self.staged_days(staging) | (set(days) & set(self.days(view.name, area))))
        cols = ", ".join(quote_ident(c) for c in feature_columns(view))
        stored_rows = 0
        for day in touched:
            target_dir = self.view_dir(view.name, area) / f"date={day.isoformat()}"
            target = target_dir / DATA_FILE
            new_dir = staging / f"date={day.isoformat()}"
            added = (
                f"SELECT {cols} FROM read_parquet({quote_literal(str(new_dir / '*.parquet'))})"
                if new_dir.exists()
                else None
            )
            kept = None
            if target.exists():
                problem = self.problem(view, target)
                if problem is None:
                    kept = (
                        f"SELECT * FROM ({_projected(view, [target], self.schema)}) WHERE NOT ({predicate})"
                    )
                else:
                    added = self._unreadable_day(view, target, problem, area, day, added, rebuild)
            self.check_lock(view.name)
            try:
                count = self._write_day(con, view, target, kept, added)
            except duckdb.Error:
                problem = self.problem(view, target, deep=True) if kept is not None else None
                if problem is None:
                    raise
                # A damaged data page behind a sound footer: replace the day without reading it.
                added = self._unreadable_day(view, target, problem, area, day, added, rebuild)
                count = self._write_day(con, view, target, None, added)
            stored_rows += count
        if cleanup:
            shutil.rmtree(staging, ignore_errors=True)
        return stored_rows

    def _unreadable_day(
        self,
        view: FeatureView,
        target: Path,
        problem: str,
        area: str,
        day: date,
        added: str | None,
        rebuild: Callable[[date], str] | None,
    ) -> str | None:
        """The rows that replace a day whose file cannot be read: all of the day from the source
        (`rebuild`), or, with no source to rebuild it from, the new rows, after moving the file aside."""
        if rebuild is not None and area == MATERIALIZED:
            log.warning(
                "feature view '%s': %s cannot be read (%s); rebuilding %s from the source",
                view.name,
                target,
                problem,
                day,
            )
            return rebuild(day)
        self._quarantine(view.name, target, problem, area)
        return added

    def _write_day(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        target: Path,
        kept: str | None,
        added: str | None,
    ) -> int:
        """Write a day's file from its kept and added rows (replacing it; none: deleting it); returns its rows."""
        if kept is None and added is None:
            target.unlink(missing_ok=True)
            return 0
        # Always the same query shape (kept UNION ALL added, cast, ordered by every column), so the same
        # rows give the same file bytes, whether they were kept or added, from storage or from a source.
        parts = [
            kept or f"SELECT * FROM ({added}) WHERE FALSE",
            added or f"SELECT * FROM ({kept}) WHERE FALSE",
        ]
        union = " UNION ALL ".join(f"({p})" for p in parts)
        count = int(arrow_table(con, f"SELECT count(*) AS n FROM ({union})").column(0)[0].as_py())
        if count == 0:
            target.unlink(missing_ok=True)
            return 0
        order = ", ".join(
            [
                EVENT_TS,
                *(quote_ident(k) for k in view.join_keys),
                f"{CREATED_TS} NULLS FIRST",
                *(f"{quote_ident(f.name)} NULLS FIRST" for f in view.row_fields),
            ]
        )
        # DuckDB writes a column as "required" when the statistics it propagates say it holds no null,
        # which depends on where the rows came from (a source, a staged file, a stored one): a CASE
        # it cannot see through makes every column "optional", always.
        nullable = ", ".join(
            f"CASE WHEN {c} IS NULL THEN NULL ELSE {c} END AS {c}"
            for c in (quote_ident(name) for name in feature_columns(view))
        )
        cast = f"SELECT {_casts(view, set(feature_columns(view)))} FROM ({union})"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}.parquet"
        try:
            con.execute(
                f"COPY (SELECT {nullable} FROM ({cast}) ORDER BY {order}) "
                f"TO {quote_literal(str(tmp))} (FORMAT parquet, COMPRESSION snappy)"
            )
            _fsync(tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return count

    def append(self, view: FeatureView, rows: pa.Table, then: Callable[[], object] | None = None) -> int:
        """Add feature rows (e.g. pushed ones, in the feature-row shape) to storage, replacing nothing;
        `then()` runs after, still holding the view's writer lock (a push merging the same rows into
        online tiles, so a materialization cannot rebuild them from storage in between).

        Returns the number of rows added."""
        from .sources import duckdb_connection

        con = duckdb_connection()
        with self.locked(view.name):
            # A damaged day file sets no type (commit quarantines it when the rows go to its day).
            sound = [f for f in self._files_for(view, rows, PUSHED) if self.problem(view, f) is None]
            stored = _stored_types(view, rows, sound, self.schema)
            con.register("__append_rows", stored)
            staging = self.stage(con, view, "SELECT * FROM __append_rows")
            self.commit(con, view, staging, predicate="FALSE", area=PUSHED)
            if then is not None:
                then()
        return int(stored.num_rows)

    def delete_view(self, view_name: str) -> None:
        shutil.rmtree(self.view_dir(view_name), ignore_errors=True)

    def _files_for(self, view: FeatureView, rows: pa.Table, area: str) -> list[StoredFile]:
        """The stored day files `rows` would be merged into, else the newest day file (the area's types)."""
        existing = list(self.files(view.name, area))
        if not existing or rows.num_rows == 0:
            return existing[-1:]
        days = {d.isoformat() for d in pc.unique(rows.column(EVENT_TS).cast(pa.date32())).to_pylist() if d}
        touched = [f for f in existing if day_of(f) in days]
        return touched or existing[-1:]


# -- the type guard of appends: no write changes the type of a stored column --------------------------


def _stored_types(
    view: FeatureView, rows: pa.Table, files: list[StoredFile], read_schema: Callable[[StoredFile], pa.Schema]
) -> pa.Table:
    """`rows` with each column in the type the stored files give it (a lossless cast: int32 -> int64),
    or a PushError naming the file and the column. Merging rows of another type into a day file would
    rewrite the whole day in a common type (integer keys as strings), which later reads cannot join."""
    for path in files:
        try:
            stored = read_schema(path)
        except (OSError, pa.ArrowException):
            continue  # an unreadable day file is the corrupt-file handling's (commit reports it)
        for name in rows.column_names:
            if name not in stored.names:
                continue
            want, have = stored.field(name).type, rows.schema.field(name).type
            if want == have:
                continue
            col = rows.column(name)
            if pa.types.is_null(have) or _same_family(want, have):
                try:
                    rows = rows.set_column(rows.schema.get_field_index(name), name, col.cast(want))
                    continue
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    pass
            raise PushError(
                f"feature view '{view.name}': column '{name}' is {want} in offline storage ({path}) but "
                f"{have} in the rows to add; a write never changes the type of a stored column: "
                f"send {want} values"
            )
    return rows


def _same_family(a: pa.DataType, b: pa.DataType) -> bool:
    for test in (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_timestamp,
        lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
        lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t),
    ):
        if test(a) and test(b):
            return True
    return bool(pa.types.is_list(a) and pa.types.is_list(b) and _same_family(a.value_type, b.value_type))


def _projected(
    view: FeatureView, files: Sequence[StoredFile], read_schema: Callable[[StoredFile], pa.Schema]
) -> str:
    """SELECT over Parquet files yielding exactly the view's feature-row columns, cast to their types;
    a column missing from every file (a feature added since) is NULL."""
    present: set[str] = set()
    for f in files:
        present.update(read_schema(f).names)
    paths = ", ".join(quote_literal(str(f)) for f in files)
    return f"SELECT {_casts(view, present)} FROM read_parquet([{paths}], union_by_name = true)"


def _casts(view: FeatureView, present: set[str]) -> str:
    """The view's feature-row columns, each cast to its type (NULL when not `present`)."""
    declared = {**view.key_fields, **{f.name: f.dtype for f in view.row_fields}}
    cols = []
    for c in feature_columns(view):
        kind = (
            "TIMESTAMPTZ"
            if c in (EVENT_TS, CREATED_TS)
            else (declared[c].to_duckdb() if c in declared else None)
        )
        expr = quote_ident(c) if c in present else "NULL"
        cols.append(f"CAST({expr} AS {kind}) AS {quote_ident(c)}" if kind else f"{expr} AS {quote_ident(c)}")
    return ", ".join(cols)


def file_problem(
    view: FeatureView,
    path: StoredFile,
    deep: bool = False,
    key_types: Mapping[str, ValueType] | None = None,
    filesystem: Any = None,
    read_schema: Callable[[StoredFile], pa.Schema] | None = None,
) -> str | None:
    """Why a stored day file cannot be read as the view's feature rows, or None when it can.

    The footer (schema) is always read; `deep=True` also reads every data page. A file of another
    shape (no join key or event time, a column of a type the view's cannot be read from, a key of a
    type its `key_types` (declared, else the source's) cannot be read from) is as unreadable as a
    truncated one. A missing or forbidden file raises (that is not the file's fault). `filesystem`:
    the fsspec file system of an object URL; `read_schema`: how to read the footer when not `deep`
    (object storage keeps the footers of its immutable objects, so each is fetched once)."""
    try:
        if deep:
            reader = pq.ParquetFile(path, filesystem=filesystem)
            schema = reader.schema_arrow
            for _ in reader.iter_batches(batch_size=65_536):
                pass
        elif read_schema is not None:
            schema = read_schema(path)
        else:
            schema = pq.read_schema(path, filesystem=filesystem)
    except (FileNotFoundError, PermissionError):
        raise
    except (pa.ArrowException, OSError) as e:  # not Parquet, truncated, a bad page (pyarrow: OSError)
        text = str(e).strip()
        return (text.splitlines()[0].rstrip(".") if text else type(e).__name__) or "unreadable"
    names = schema.names
    missing = [c for c in (*view.join_keys, EVENT_TS) if c not in names]
    if missing:
        shown = ", ".join(repr(c) for c in names) or "none"
        return (
            f"it is not a file of this view: no column {', '.join(map(repr, missing))} (its columns: {shown})"
        )
    declared = {**(key_types or {}), **view.key_fields, **{f.name: f.dtype for f in view.row_fields}}
    for name in names:
        t = schema.field(name).type
        if pa.types.is_null(t):
            continue
        if name in (EVENT_TS, CREATED_TS):
            ok = pa.types.is_timestamp(t)
            wanted = "a timestamp"
        elif name in declared:
            ok = declared[name].accepts(t)
            wanted = repr(declared[name])
        else:
            continue
        if not ok:
            return f"column '{name}' is {t}, which the view's {wanted} cannot be read from"
    return None


def day_of(path: StoredFile) -> str:
    """The day ("YYYY-MM-DD") of a stored day file, from its `date=YYYY-MM-DD` folder."""
    return str(path).rsplit("/", 2)[-2][len("date=") :]


def days_between(start: datetime, end: datetime) -> list[date]:
    """Every UTC day from start's to end's, inclusive."""
    first = start.astimezone(timezone.utc).date()
    last = end.astimezone(timezone.utc).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
