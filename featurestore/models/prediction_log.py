"""The prediction log: what was served, appended to Parquet so it can be joined back to labels.

    <[monitoring] log_path>/<model>/date=YYYY-MM-DD/part-v<version>-<time>-<id>.parquet

(`log_path` defaults to `predictions/` beside the registry file; the version in the file name lets
monitoring read one version's files only: `featurestore.monitoring.log`.)

One row per predicted entity row: `request_id`, `ts` (UTC), `model`, `model_version`, the entity's
join keys (and request-time values) as their own columns, the feature values the model was given as
a struct column `features`, `missing` (the inputs that were NOT_FOUND / OUTSIDE_MAX_AGE and got a
null or a default), `prediction` and `variant`: "primary" for the answer the client got, "shadow" for
a challenger's prediction on the same row (`featurestore.models.shadow`; filed under the challenger's
version, so a version's files hold its shadow rows too). Files written before the column existed have
none: read them with `union_by_name`; a null variant is "primary". Read it with DuckDB:

    SELECT * FROM read_parquet('data/predictions/eta/*/*.parquet', union_by_name = true)

Appending only puts rows in a memory buffer (microseconds, under a lock). A background thread
writes the buffer every `flush_interval` seconds, or sooner when it holds `max_rows`; `flush()`
writes now and `close()` writes and stops. A file is written under a temporary name and renamed, so
a reader never sees half a file. If a write fails the rows are kept for the next try, up to
`max_buffered` rows; beyond that the oldest are dropped and counted in `dropped`.

On object storage (`log_path = "s3://bucket/prefix"`, an `ObjectStore` root) each file is one PUT
of the whole object, which readers see all or nothing of, so no temporary name is needed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..locations import ObjectStore, is_url, storage_options

log = logging.getLogger("featurestore.models")

#: The log's own columns; an entity key or request value named like one is logged as `entity_<name>`.
LOG_COLUMNS = frozenset(
    {"request_id", "ts", "model", "model_version", "row", "variant", "features", "missing", "prediction"}
)


class PredictionLog:
    """A buffered, background-flushed Parquet log of predictions (see the module docstring)."""

    def __init__(
        self,
        root: str | Path | ObjectStore,
        flush_interval: float = 1.0,
        max_rows: int = 10_000,
        max_buffered: int = 1_000_000,
    ):
        if isinstance(root, str) and is_url(root):  # as `[monitoring] log_path` is written
            root = ObjectStore(
                root, storage_options({}, os.environ, "PredictionLog"), "[monitoring] log_path"
            )
        self.root: Path | ObjectStore = root if isinstance(root, ObjectStore) else Path(root)
        self.flush_interval = flush_interval
        self.max_rows = max_rows
        self.max_buffered = max_buffered
        self.dropped = 0
        self.written = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PredictionLog:
        """Start the background flusher (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="featurestore-prediction-log", daemon=True
                )
                self._thread.start()
        return self

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Buffer rows (dicts with the columns above); the background thread writes them."""
        with self._lock:
            self._rows.extend(rows)
            size = len(self._rows)
            if size > self.max_buffered:
                extra = size - self.max_buffered
                del self._rows[:extra]
                self.dropped += extra
        if size >= self.max_rows:
            self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write every buffered row now; returns how many rows were written."""
        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                self._write(rows)
            except Exception:
                with self._lock:
                    self._rows[:0] = rows  # keep them for the next try
                raise
            self.written += len(rows)
            return len(rows)

    def close(self) -> None:
        """Write what is buffered and stop the background thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a full disk must not kill serving; the rows stay buffered
                log.exception("prediction log: write to %s failed; will retry", self.root)
                time.sleep(min(self.flush_interval, 1.0))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        # one file per model version and day: rows of one version share their columns
        groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[
                (row["model"], row["model_version"], row["ts"].astimezone(timezone.utc).date().isoformat())
            ].append(row)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        for (model, version, day), group in groups.items():
            name = f"part-v{version}-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
            if isinstance(self.root, ObjectStore):
                buffer = pa.BufferOutputStream()
                pq.write_table(_table(group), buffer)
                self.root.write_bytes(
                    self.root.url(model, f"date={day}", name), buffer.getvalue().to_pybytes()
                )
                continue
            folder = self.root / model / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp"
            pq.write_table(_table(group), tmp)
            tmp.rename(folder / name)

    def read(self, model: str | None = None) -> pa.Table:
        """Every logged row (of one model, or all), for tests and quick looks; use DuckDB for real queries."""
        import duckdb

        from ..monitoring.log import FEEDBACK_FOLDER, files_literal

        if isinstance(self.root, ObjectStore):
            pattern = self.root.url(model or "*", "date=*", "*.parquet")
            files = [f for f in self.root.glob(pattern) if f"/{FEEDBACK_FOLDER}/" not in f]
        else:  # Python's glob skips hidden folders (the feedback log, `.feedback/`); DuckDB's would not.
            files = [str(f) for f in sorted(self.root.glob(f"{model or '*'}/date=*/*.parquet"))]
        if not files:
            return pa.table({})
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        if isinstance(self.root, ObjectStore):
            self.root.register(con)
        rel = con.sql(
            f"SELECT * FROM read_parquet({files_literal(files)}, union_by_name = true, hive_partitioning = false) "
            "ORDER BY ts, request_id, row"
        )
        fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
        return fetch()


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows -> Arrow, with the fixed columns typed and the rest inferred."""
    table = pa.Table.from_pylist(rows)
    ts = pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC"))
    return table.set_column(table.column_names.index("ts"), "ts", ts)
