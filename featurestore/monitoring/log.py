"""Reading the prediction log (and the feedback log) for monitoring, one model version and window at a time.

The prediction log (`featurestore.models.prediction_log`) is Parquet under

    <log_path>/<model>/date=YYYY-MM-DD/part-v<version>-<time>-<id>.parquet

so a window reads only its days' folders and a version only its own files (files written before the
version was in the name are read too, and filtered by their `model_version` column). Labels fed
back later (`featurestore.monitoring.performance`) live beside it, under `<log_path>/.feedback/`
(a model name cannot start with a dot).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import MonitoringError
from ..offline.features import ts_literal
from ..offline.sources import quote_ident

FEEDBACK_FOLDER = ".feedback"
_DAY = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_VERSIONED = re.compile(r"part-v(\d+)-")


def day_folders(root: Path, start: datetime | None, end: datetime | None) -> list[Path]:
    """The `date=YYYY-MM-DD` folders under `root` whose day can hold a time in [start, end]."""
    if not root.is_dir():
        return []
    first = start.astimezone(timezone.utc).date() if start is not None else date.min
    last = end.astimezone(timezone.utc).date() if end is not None else date.max
    out = []
    for folder in sorted(root.iterdir()):
        m = _DAY.fullmatch(folder.name)
        if m is None or not folder.is_dir():
            continue
        try:
            day = date.fromisoformat(m.group(1))
        except ValueError:
            continue
        if first <= day <= last:
            out.append(folder)
    return out


def prediction_files(
    log_path: Path,
    model: str,
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[str]:
    """The Parquet files of the prediction log that can hold rows of `model` (`version`) in [start, end]."""
    files = []
    for folder in day_folders(Path(log_path) / model, start, end):
        for file in sorted(folder.glob("part-*.parquet")):
            m = _VERSIONED.match(file.name)
            if version is None or m is None or int(m.group(1)) == version:
                files.append(str(file))
    return files


def feedback_files(log_path: Path, start: datetime | None = None, end: datetime | None = None) -> list[str]:
    """The Parquet files of the feedback log written in days that can hold labels of [start, end].

    Labels arrive after their predictions: every day from `start` on is read (not only up to `end`)."""
    return [
        str(f)
        for folder in day_folders(Path(log_path) / FEEDBACK_FOLDER, start, None)
        for f in sorted(folder.glob("part-*.parquet"))
    ]


def files_literal(files: list[str]) -> str:
    """A DuckDB list literal of file paths, for read_parquet([...])."""
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def prediction_relation(
    con: Any,
    log_path: Path,
    model: str,
    version: int,
    start: datetime | None = None,
    end: datetime | None = None,
    name: str = "__fs_log",
) -> int:
    """Create the temp view `name` over the rows `model` version `version` served with start <= ts <= end.

    Returns the number of files read (0: the view is not created; nothing was logged)."""
    files = prediction_files(log_path, model, version, start, end)
    if not files:
        return 0
    where = [f"model_version = {int(version)}"]
    if start is not None:
        where.append(f"ts >= {ts_literal(start)}")
    if end is not None:
        where.append(f"ts <= {ts_literal(end)}")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS SELECT * FROM read_parquet("
        f"{files_literal(files)}, union_by_name = true, hive_partitioning = false) WHERE {' AND '.join(where)}"
    )
    return len(files)


def read_error(what: str, files: list[str], error: Exception) -> MonitoringError:
    """The MonitoringError of a failed read of log `files`: names the ones that are not Parquet
    (each opened on its own) and says how to recover."""
    import pyarrow.parquet as pq

    bad = []
    for f in files:
        try:
            pq.read_schema(f)
        except Exception:  # any failure to open it makes it the culprit
            bad.append(f)
    named = (
        ", ".join(bad)
        if bad
        else f"one of {len(files)} files ({', '.join(files[:3])}{', ...' * (len(files) > 3)})"
    )
    reason = str(error).strip().split("\n")[0]
    return MonitoringError(
        f"cannot read the {what} {named}: {reason}; move the damaged file out of the log folder "
        "(it is not repaired, and retention deletes it only when its day expires) and run again"
    )


def parse_since(text: str) -> timedelta:
    """ "7d", "12h", "30m", "90s" (or a plain number of days) -> a timedelta, reaching back no
    earlier than the year 1."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if m is None:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h or 30m")
    amount, unit = float(m.group(1)), m.group(2) or "d"
    try:
        span = timedelta(seconds=amount * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit])
        datetime.now(timezone.utc) - span
    except OverflowError:
        raise ValueError(f"{text!r} reaches back before the year 1; give a shorter duration") from None
    return span
