"""Offline storage: a view's feature rows as Parquet, one file per UTC day of event time.

    <offline path>/<view>/date=YYYY-MM-DD/data.parquet

Rows have the shape of `featurestore.offline.features` (join keys, features, __event_ts,
__created_ts), sorted by event time, then keys, so the same rows always give the same file.

Writes are "replace what matches": `replace(view, rows_sql, predicate)` swaps, in every day it
touches, the stored rows matching `predicate` for the new rows. Each day's file is rewritten to a
temporary name and renamed over the old one, so a reader or a crash sees either the old day or the
new day, never half of one; re-running the same write gives the same files.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..definitions import FeatureView
from .features import CREATED_TS, EVENT_TS, feature_columns
from .sources import arrow_table, quote_ident, quote_literal

DATA_FILE = "data.parquet"
# Materialization replaces rows of the MATERIALIZED area only; pushed rows live apart, in PUSHED
# (<view>/pushed/date=.../), so re-materializing a range never deletes what applications pushed.
MATERIALIZED = ""
PUSHED = "pushed"


class OfflineStorage:
    """The Parquet files materialization writes and the point-in-time join reads."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def view_dir(self, view_name: str, area: str = MATERIALIZED) -> Path:
        return self.root / view_name / area if area else self.root / view_name

    def files(self, view_name: str, area: str | None = None) -> list[Path]:
        """Stored day files of a view: of one area, or (None) of both."""
        areas = (MATERIALIZED, PUSHED) if area is None else (area,)
        return sorted(f for a in areas for f in self.view_dir(view_name, a).glob(f"date=*/{DATA_FILE}"))

    def has_data(self, view_name: str) -> bool:
        return bool(self.files(view_name))

    def days(self, view_name: str, area: str = MATERIALIZED) -> list[date]:
        return [date.fromisoformat(p.parent.name[5:]) for p in self.files(view_name, area)]

    def rows_sql(self, view: FeatureView, area: str = MATERIALIZED) -> str | None:
        """SELECT of the stored feature rows of one area, in the view's current shape (None: none stored).

        Files written before a feature was added lack its column: it reads as NULL there (pushed rows;
        materialized days are not read until rebuilt, as apply resets the view: `featurestore.plan`);
        columns are cast to the declared types."""
        files = self.files(view.name, area)
        if not files:
            return None
        return _projected(view, files)

    @contextmanager
    def locked(self, view_name: str) -> Iterator[None]:
        """One writer per view at a time (across processes), so concurrent writes never lose rows."""
        directory = self.view_dir(view_name)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def stage(self, con: duckdb.DuckDBPyConnection, view: FeatureView, rows_sql: str) -> Path:
        """Write feature rows to a staging folder, split by day; call with the view locked."""
        directory = self.view_dir(view.name)
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
    ) -> int:
        """Merge staged rows into storage: in each staged day and each day of `days`, stored rows matching
        `predicate` are replaced by the staged ones. Returns the number of rows now stored in those days.
        With cleanup=False the staging folder is left for the caller to read and remove."""
        touched = sorted(self.staged_days(staging) | (set(days) & set(self.days(view.name, area))))
        order = ", ".join([EVENT_TS, *(quote_ident(k) for k in view.join_keys), f"{CREATED_TS} NULLS FIRST"])
        cols = ", ".join(quote_ident(c) for c in feature_columns(view))
        stored_rows = 0
        for day in touched:
            target_dir = self.view_dir(view.name, area) / f"date={day.isoformat()}"
            target = target_dir / DATA_FILE
            new_dir = staging / f"date={day.isoformat()}"
            kept = (
                f"SELECT * FROM ({_projected(view, [target])}) WHERE NOT ({predicate})"
                if target.exists()
                else None
            )
            added = (
                f"SELECT {cols} FROM read_parquet({quote_literal(str(new_dir / '*.parquet'))})"
                if new_dir.exists()
                else None
            )
            if kept is None and added is None:
                continue
            # Always the same query shape (kept UNION ALL added), so the same rows give the same file bytes.
            parts = [kept or f"{added} WHERE FALSE", added or f"{kept} AND FALSE"]
            union = " UNION ALL ".join(f"({p})" for p in parts)
            count = arrow_table(con, f"SELECT count(*) AS n FROM ({union})").column(0)[0].as_py()
            if count == 0:
                target.unlink(missing_ok=True)
                continue
            target_dir.mkdir(parents=True, exist_ok=True)
            tmp = target_dir / f".tmp-{uuid.uuid4().hex}.parquet"
            con.execute(
                f"COPY (SELECT * FROM ({union}) ORDER BY {order}) TO {quote_literal(str(tmp))} "
                "(FORMAT parquet, COMPRESSION snappy)"
            )
            _fsync(tmp)
            os.replace(tmp, target)
            stored_rows += count
        if cleanup:
            shutil.rmtree(staging, ignore_errors=True)
        return stored_rows

    def append(self, view: FeatureView, rows: pa.Table) -> int:
        """Add feature rows (e.g. pushed ones, in the feature-row shape) to storage, replacing nothing.

        Returns the number of rows added."""
        from .sources import duckdb_connection

        con = duckdb_connection()
        con.register("__append_rows", rows)
        with self.locked(view.name):
            staging = self.stage(con, view, "SELECT * FROM __append_rows")
            self.commit(con, view, staging, predicate="FALSE", area=PUSHED)
        return int(rows.num_rows)

    def delete_view(self, view_name: str) -> None:
        shutil.rmtree(self.view_dir(view_name), ignore_errors=True)


def _projected(view: FeatureView, files: list[Path]) -> str:
    """SELECT over Parquet files yielding exactly the view's feature-row columns, cast to their types;
    a column missing from every file (a feature added since) is NULL."""
    present: set[str] = set()
    for f in files:
        present.update(pq.read_schema(f).names)
    declared = {**view.key_fields, **{f.name: f.dtype for f in view.features}}
    cols = []
    for c in feature_columns(view):
        kind = (
            "TIMESTAMPTZ"
            if c in (EVENT_TS, CREATED_TS)
            else (declared[c].to_duckdb() if c in declared else None)
        )
        expr = quote_ident(c) if c in present else "NULL"
        cols.append(f"CAST({expr} AS {kind}) AS {quote_ident(c)}" if kind else f"{expr} AS {quote_ident(c)}")
    paths = ", ".join(quote_literal(str(f)) for f in files)
    return f"SELECT {', '.join(cols)} FROM read_parquet([{paths}], union_by_name = true)"


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
