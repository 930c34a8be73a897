"""Cheap fingerprints of the files a source reads, to see that a materialized range went stale.

Materialization records `source_fingerprint` with each run; retrieval compares it with the one of
now, and reads the source (not offline storage) for the ranges of runs whose files changed since,
so a late row appended inside a materialized range (without a created timestamp, which
`materialize-incremental` would pick up) is in the next training set. `fs status` lists those
ranges until `fs materialize START END` stores them again.

A fingerprint hashes the path, size and modification time of every file the source reads, never
their contents: Parquet and CSV files matched by the path (globs included), a DuckDB database file
(and its WAL), the files a DuckDB query names in quotes, and, transitively, the sources a query
names (the same rule as `featurestore.plan.stale_views`); a push source's batch source. A
DataFrameSource lives in memory: it has no fingerprint (None) and its ranges are never stale; nor
are those of a source with a created timestamp (see `view_fingerprint`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..definitions import (
    CsvSource,
    DataFrameSource,
    DataSource,
    DuckDBSource,
    FeatureView,
    ParquetSource,
    PushSource,
    names_source,
)

_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def view_fingerprint(repo_path: Path, sources: Mapping[str, DataSource], view: FeatureView) -> str | None:
    """The fingerprint that decides whether the view's stored ranges are current, or None (never
    stale): a source with a created timestamp has its late rows picked up by
    `materialize-incremental` (rows created after the watermark, whatever their event time), so a
    changed file there is new rows on their way, not a stale range."""
    if view.source.created_timestamp_field:
        return None
    return source_fingerprint(repo_path, sources, view.source)


def source_fingerprint(repo_path: Path, sources: Mapping[str, DataSource], source: DataSource) -> str | None:
    """A hash of the path, size and mtime of each file `source` reads, or None when it reads none
    that can be checked (an in-memory DataFrameSource, a push source without a batch source)."""
    stamps: set[str] = set()
    if not _collect(Path(repo_path), sources, source, stamps, set()):
        return None
    digest = hashlib.sha256()
    for stamp in sorted(stamps):
        digest.update(stamp.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:32]


def _collect(
    repo: Path, sources: Mapping[str, DataSource], source: DataSource, stamps: set[str], seen: set[str]
) -> bool:
    """Add the stamps of what `source` reads; False when it reads nothing that can be checked."""
    if source.name in seen:
        return False
    seen.add(source.name)
    if isinstance(source, PushSource):
        return source.batch_source is not None and _collect(repo, sources, source.batch_source, stamps, seen)
    if isinstance(source, (ParquetSource, CsvSource)):
        _glob(repo, source.path, stamps)
        return True
    if isinstance(source, DuckDBSource):
        if source.database:
            db = Path(source.database)
            db = db if db.is_absolute() else repo / db
            _stamp(str(db), stamps)
            _stamp(f"{db}.wal", stamps, missing=False)
        text = source.query if source.query is not None else (source.table or "")
        checked = bool(source.database)
        if source.query is not None:
            for literal in _QUOTED.findall(source.query):  # read_parquet('data/x/*.parquet'), ...
                path = literal.replace("''", "'")
                if path and any(c in path for c in "/\\.") and _glob(repo, path, stamps, only_matches=True):
                    checked = True
        for name, other in sources.items():
            if name != source.name and names_source(text, name):
                checked = _collect(repo, sources, other, stamps, seen) or checked
        return checked
    if isinstance(source, DataFrameSource):
        return False
    return False  # a DataFrameSource read back in another process, or a type this module does not know


def _glob(repo: Path, path: str, stamps: set[str], only_matches: bool = False) -> bool:
    pattern = Path(path)
    if not pattern.is_absolute():
        pattern = repo / pattern
    matches = glob.glob(str(pattern), recursive=True)
    if not matches:
        if not only_matches:
            stamps.add(f"none\0{pattern}")
        return False
    for match in matches:
        _stamp(match, stamps)
    return True


def _stamp(path: str, stamps: set[str], missing: bool = True) -> None:
    try:
        st = os.stat(path)
    except OSError:
        if missing:
            stamps.add(f"none\0{path}")
        return
    stamps.add(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
