"""Reading the prediction log (and the feedback log) for monitoring, one model version and window at a time.

The prediction log (`featurestore.models.prediction_log`) is Parquet under

    <log_path>/<model>/date=YYYY-MM-DD/part-v<version>-<time>-<id>.parquet

so a window reads only its days' folders and a version only its own files (files written before the
version was in the name are read too, and filtered by their `model_version` column). Labels fed
back later (`featurestore.monitoring.performance`) live beside it, under `<log_path>/.feedback/`
(a model name cannot start with a dot).

`[monitoring] log_path` may be object storage (`s3://bucket/prefix`): the log root is then an
`ObjectStore` (`LogRoot`), listed as the local folder is read: the model's `date=` folders (one
LIST of their names), then only those of the window's days; DuckDB reads the files through the
file system `prediction_relation` registers on its connection.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MonitoringError
from ..locations import ObjectStore
from ..offline.features import ts_literal
from ..offline.sources import quote_ident

if TYPE_CHECKING:
    from ..config import RepoConfig

FEEDBACK_FOLDER = ".feedback"
_DAY = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_VERSIONED = re.compile(r"part-v(\d+)-")

#: where the log lives: a local folder, or a location on object storage
LogRoot = Path | ObjectStore


def log_root(config: RepoConfig) -> LogRoot:
    """The log root of a repo's `[monitoring] log_path`: its folder, or its object storage location
    (with `[offline] storage_options`)."""
    monitor = config.monitor
    if monitor.log_url is not None:
        return ObjectStore(monitor.log_url, config.offline.storage_options, "[monitoring] log_path")
    return Path(monitor.log_path)


def _in_days(root: LogRoot, folder: str, start: datetime | None, end: datetime | None) -> list[str]:
    """The `part-*.parquet` files of `<root>/<folder>/date=*/` whose day can hold a time in
    [start, end], in day then name order."""
    if isinstance(root, Path):
        return [
            str(f) for d in day_folders(root / folder, start, end) for f in sorted(d.glob("part-*.parquet"))
        ]
    days = [name for name in root.folders(root.url(folder)) if _in_window(name, start, end)]
    return [url for name in days for url in root.glob(root.url(folder, name, "part-*.parquet"))]


def _in_window(name: str, start: datetime | None, end: datetime | None) -> bool:
    """Whether a folder name is `date=YYYY-MM-DD` of a day that can hold a time in [start, end]."""
    m = _DAY.fullmatch(name)
    if m is None:
        return False
    try:
        day = date.fromisoformat(m.group(1))
    except ValueError:
        return False
    first = start.astimezone(timezone.utc).date() if start is not None else date.min
    last = end.astimezone(timezone.utc).date() if end is not None else date.max
    return first <= day <= last


def day_folders(root: Path, start: datetime | None, end: datetime | None) -> list[Path]:
    """The `date=YYYY-MM-DD` folders under `root` whose day can hold a time in [start, end]."""
    if not root.is_dir():
        return []
    return [f for f in sorted(root.iterdir()) if _in_window(f.name, start, end) and f.is_dir()]


def prediction_files(
    log_path: LogRoot,
    model: str,
    version: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[str]:
    """The Parquet files of the prediction log that can hold rows of `model` (`version`) in [start, end]."""
    files = []
    for file in _in_days(log_path, model, start, end):
        m = _VERSIONED.match(file.rsplit("/", 1)[-1])
        if version is None or m is None or int(m.group(1)) == version:
            files.append(file)
    return files


def feedback_files(
    log_path: LogRoot, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """The Parquet files of the feedback log written in days that can hold labels of [start, end].

    Labels arrive after their predictions: every day from `start` on is read (not only up to `end`)."""
    return _in_days(log_path, FEEDBACK_FOLDER, start, None)


def files_literal(files: list[str]) -> str:
    """A DuckDB list literal of file paths, for read_parquet([...])."""
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def prediction_relation(
    con: Any,
    log_path: LogRoot,
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
    if isinstance(log_path, ObjectStore):
        log_path.register(con)  # so read_parquet('s3://...') below (and the feedback files) read through it
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


def read_error(what: str, files: list[str], error: Exception, root: LogRoot | None = None) -> MonitoringError:
    """The MonitoringError of a failed read of log `files`: names the ones that are not Parquet
    (each opened on its own) and says how to recover. `root`: the log's, for files on object storage."""
    import pyarrow.parquet as pq

    filesystem = root.fs if isinstance(root, ObjectStore) else None
    bad = []
    for f in files:
        try:
            pq.read_schema(f, filesystem=filesystem)
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
