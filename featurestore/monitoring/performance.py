"""Live performance: labels fed back for served predictions, and the model's live metric from them.

    store.monitor.log_feedback([{"request_id": "9f1c...", "row": 0, "label": 1}])   # -> 1
    report = store.monitor.performance("trip_eta@production", start="2026-01-01")
    report.live, report.validation, report.status        # e.g. 0.91, 0.93, "ok"
    [(d.day, d.n, d.value) for d in report.days]          # the live metric per UTC day

Labels arrive after the predictions they belong to and are matched to them by request id and row
(the index of the entity row within its request); a request id reused by several requests: the
label goes to the newest prediction of that (request id, row) in the window, by `ts`. They are written at once, one Parquet file per
call, under `<log_path>/.feedback/date=<UTC day received>/`, with columns request_id, row,
label_num (numbers and booleans), label_str (strings), model (or null) and received_at. A label
given twice for the same row: the newest wins. The labels used are those of the predictions' type
(label_num for numeric or boolean predictions, label_str for string ones); the others (a "NaN"
string among numbers) are counted as `unusable`, never an error, so one bad label cannot hide a breach.

The metric is a scikit-learn scorer name (`[monitoring] metric`, else the first supported scorer
name among the metrics recorded at registration, `featurestore.monitoring.scorers`), computed on
the labelled predictions of the window, and per UTC day they were served. Scorer names are
greater-is-better, so a breach is a live value below validation - `performance_tolerance`, over at
least MIN_LABELLED_ROWS labelled predictions.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import sys
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import LogWriteError, MonitoringError
from ..locations import ObjectStore
from ..offline.sources import DUCKDB_FLOATS, DUCKDB_INTEGERS, arrow_table, duckdb_connection, quote_literal
from .log import (
    FEEDBACK_FOLDER,
    feedback_files,
    files_literal,
    prediction_files,
    prediction_relation,
    read_error,
)
from .scorers import SCORERS, metric_value, scorer

if TYPE_CHECKING:
    from ..models.registry import ModelVersion
    from . import Monitor, Window

#: Fewer labelled rows in the window than this: status "insufficient" (the metric is still shown).
MIN_LABELLED_ROWS = 30
MAX_REQUEST_ID = 200  # as for the request ids of predictions
MAX_ROW = 2**63 - 1
_EPOCH = date(1970, 1, 1)

FEEDBACK_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int64()),
        ("label_num", pa.float64()),
        ("label_str", pa.string()),
        ("model", pa.string()),
        ("received_at", pa.timestamp("us", tz="UTC")),
    ]
)


# -- the metric --------------------------------------------------------------------------------------


def metric_of(mv: ModelVersion, configured: str | None) -> str | None:
    """The metric of a model version: the configured one, else the first supported scorer name among
    the metrics recorded at registration, else None."""
    if configured is not None:
        try:
            scorer(configured)
        except MonitoringError as e:
            raise MonitoringError(f"featurestore.toml [monitoring] metric of model {mv.name}: {e}") from None
        return configured
    return next((name for name in mv.metrics if name in SCORERS), None)


# -- feedback ----------------------------------------------------------------------------------------


def log_feedback(monitor: Monitor, rows: Any, model: str | None = None) -> int:
    """Record labels of served predictions; returns how many rows were labelled.

    `rows`: a list of dicts, a pandas DataFrame or an Arrow table with `request_id` (str), `row`
    (int >= 0: the entity row's index within its request) and `label` (a number, bool or string);
    other keys or columns are ignored; a row labelled twice keeps the later label (in this call, as
    across calls: the newest wins). `model` (a name or reference) limits the labels to that
    model's predictions (for request ids shared by models). Every row is checked before anything is
    written: a bad one is a MonitoringError naming its index and field.
    """
    records = _records(rows)
    name = monitor.store.models.resolve(model)[0] if model is not None else None
    labels: dict[tuple[str, int], float | int | bool | str] = {}  # a row labelled twice: the last wins
    for i, record in enumerate(records):
        request_id, row, label = _check(i, record)
        labels[request_id, row] = label
    n = len(labels)
    if n == 0:
        return 0
    columns: dict[str, list[Any]] = {
        "request_id": [k[0] for k in labels],
        "row": [k[1] for k in labels],
        "label_num": [None if isinstance(v, str) else float(v) for v in labels.values()],
        "label_str": [v if isinstance(v, str) else None for v in labels.values()],
    }
    now = datetime.now(timezone.utc)
    table = pa.table(
        {**columns, "model": [name] * n, "received_at": [now] * n},
        schema=FEEDBACK_SCHEMA,
    )
    root = monitor.log_path
    name = f"part-{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
    if isinstance(root, ObjectStore):  # one PUT: readers see the whole object or none of it
        url = root.url(FEEDBACK_FOLDER, f"date={now.date().isoformat()}", name)
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        try:
            root.write_bytes(url, buffer.getvalue().to_pybytes())
        except OSError as e:
            raise LogWriteError(
                f"cannot write the feedback log object {url} ([monitoring] log_path): {e}; check the "
                "bucket exists and the credentials may write to it"
            ) from None
        return n
    folder = root / FEEDBACK_FOLDER / f"date={now.date().isoformat()}"
    file = folder / name
    tmp = folder / f".{file.name}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        tmp.rename(file)  # a reader never sees half a file
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise LogWriteError(
            f"cannot write the feedback log under {monitor.log_path} ([monitoring] log_path): "
            f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}; it must be a writable folder"
        ) from None
    return n


def _records(rows: Any) -> list[dict[str, Any]]:
    """Rows (dicts, a DataFrame or an Arrow table) as a list of dicts."""
    if isinstance(rows, pa.Table):
        return list(rows.to_pylist())
    pandas = sys.modules.get("pandas")  # a DataFrame can only come from an imported pandas
    if pandas is not None and isinstance(rows, pandas.DataFrame):
        return list(pa.Table.from_pandas(rows, preserve_index=False).to_pylist())
    if isinstance(rows, dict) or not isinstance(rows, (list, tuple)):
        raise MonitoringError(
            "feedback must be a list of rows (dicts of request_id, row, label), a pandas DataFrame or an "
            f"Arrow table; got {type(rows).__name__}"
        )
    return list(rows)


def _check(i: int, record: Any) -> tuple[str, int, float | int | bool | str]:
    """(request_id, row, label) of feedback row `i`, or a MonitoringError naming its field."""
    if not isinstance(record, dict):
        raise MonitoringError(
            f"feedback row {i}: must be a dict of request_id, row and label, got {record!r}"
        )
    for key in ("request_id", "row", "label"):
        if key not in record:
            raise MonitoringError(
                f"feedback row {i}: '{key}' is missing (each row needs request_id, row, label)"
            )
    request_id, row, label = record["request_id"], record["row"], record["label"]
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise MonitoringError(
            f"feedback row {i}: 'request_id' must be a non-empty string of at most {MAX_REQUEST_ID} "
            f"characters, got {request_id!r}"
        )
    if isinstance(row, bool) or not isinstance(row, numbers.Integral) or not 0 <= int(row) <= MAX_ROW:
        raise MonitoringError(
            f"feedback row {i}: 'row' must be a whole number of at least 0 (the entity row's index in "
            f"its request), got {row!r}"
        )
    if isinstance(label, (str, bool)):
        return request_id, int(row), label
    if getattr(label, "dtype", None) is not None and label.dtype.kind == "b":  # a numpy bool
        return request_id, int(row), bool(label)
    if not isinstance(label, numbers.Real) or not _finite_number(label):
        raise MonitoringError(
            f"feedback row {i}: 'label' must be a finite number, a boolean or a string, got {label!r}"
        )
    return request_id, int(row), float(label)


def _finite_number(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond a double's range
        return False


# -- the report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyMetric:
    """The live metric over the labelled predictions served on one UTC day."""

    day: date
    n: int  # labelled rows
    value: float | None  # None: the metric is not defined on that day's rows

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "n": self.n, "value": _finite(self.value)}


@dataclass(frozen=True)
class PerformanceReport:
    """A model version's live metric over a window (and per day) against its validation metric.

    status: "ok"; "breach" (live < validation - tolerance); "insufficient" (fewer than
    MIN_LABELLED_ROWS labelled rows, or the metric is not defined on them); "not_configured" (no
    metric, or no validation value recorded for it). `detail` says why, in one sentence.
    """

    model: str
    version: int
    metric: str | None
    validation: float | None
    tolerance: float
    live: float | None
    n: int
    days: list[DailyMetric]
    status: str
    start: datetime | None = None
    end: datetime | None = None
    detail: str = ""
    served: int = field(default=0)  # predictions in the window, labelled or not
    unusable: int = 0  # labels not of the predictions' type (not in n; the detail names one)

    @property
    def breach(self) -> bool:
        """The live metric is worse than validation by more than the tolerance."""
        return self.status == "breach"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "metric": self.metric,
            "validation": _finite(self.validation),
            "tolerance": self.tolerance,
            "live": _finite(self.live),
            "n": self.n,
            "served": self.served,
            "unusable": self.unusable,
            "status": self.status,
            "detail": self.detail,
            "days": [d.to_dict() for d in self.days],
        }


def performance(monitor: Monitor, mv: ModelVersion, window: Window) -> PerformanceReport:
    """The live metric of `mv` over `window` and per UTC day of serving, from the labels fed back.

    Each labelled (request id, row) counts once, joined to its newest prediction in the window (by
    `ts`: a request id reused by several requests); labels not of the predictions' type are left out
    and counted as `unusable`."""
    thresholds = monitor.thresholds(mv.name)
    metric = metric_of(mv, thresholds.metric)
    base: dict[str, Any] = {
        "model": mv.name,
        "version": mv.version,
        "metric": metric,
        "tolerance": thresholds.performance_tolerance,
        "start": window.start,
        "end": window.end,
    }
    validation = _validation(mv, metric)
    served, joined = labelled_predictions(monitor, mv, window)
    joined, unusable, example = usable_labels(joined)
    n = joined.num_rows
    base.update(validation=validation, n=n, served=served, unusable=unusable)
    aside = (
        f"; {unusable} label(s) not of the predictions' type left out (e.g. request_id "
        f"{example[0]!r} row {example[1]})"
        if example is not None
        else ""
    )
    if metric is None:
        return PerformanceReport(
            **base,
            live=None,
            days=[],
            status="not_configured",
            detail=f"no metric: set [monitoring] metric, or record a scorer metric when registering {mv.ref}",
        )
    y_true, y_pred = label_arrays(joined, metric, mv)
    days = daily_metrics(metric, joined, y_true, y_pred)
    live, why = metric_or_reason(metric, y_true, y_pred)
    if validation is None:
        status, detail = "not_configured", f"no validation {metric} recorded at registration of {mv.ref}"
    elif n < MIN_LABELLED_ROWS:
        status, detail = (
            "insufficient",
            f"{n} labelled predictions, fewer than the {MIN_LABELLED_ROWS} needed",
        )
    elif live is None:
        status, detail = "insufficient", f"{metric} is not defined on the {n} labelled predictions: {why}"
    elif live < validation - thresholds.performance_tolerance:
        status = "breach"
        detail = (
            f"live {metric} {live:.4g} is below validation {validation:.4g} by more than "
            f"{thresholds.performance_tolerance:g} (n={n})"
        )
    else:
        status, detail = "ok", f"live {metric} {live:.4g}, validation {validation:.4g} (n={n})"
    return PerformanceReport(**base, live=live, days=days, status=status, detail=detail + aside)


def _validation(mv: ModelVersion, metric: str | None) -> float | None:
    if metric is None or metric not in mv.metrics:
        return None
    value = mv.metrics[metric]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MonitoringError(f"model {mv.ref}: recorded metric {metric!r} is {value!r}, not a number")
    return float(value)


def labelled_predictions(monitor: Monitor, mv: ModelVersion, window: Window) -> tuple[int, pa.Table]:
    """(predictions served in the window, the labelled ones: day, request_id, row, label_num,
    label_str, prediction), one row per labelled (request_id, row): its newest prediction by ts."""
    empty = pa.table(
        {
            "day": pa.array([], pa.date32()),
            "request_id": pa.array([], pa.string()),
            "row": pa.array([], pa.int64()),
            "label_num": pa.array([], pa.float64()),
            "label_str": pa.array([], pa.string()),
            "prediction": pa.array([], pa.float64()),
        }
    )
    con = duckdb_connection()
    files: list[str] = []
    try:
        files = prediction_files(monitor.log_path, mv.name, mv.version, window.start, window.end)
        if not prediction_relation(con, monitor.log_path, mv.name, mv.version, window.start, window.end):
            return 0, empty
        served = int(con.execute('SELECT count(*) FROM "__fs_log"').fetchall()[0][0])
        feedback = feedback_files(monitor.log_path, window.start, None)
        labels = []
        if feedback:
            files = files + feedback
            labels.append(
                f"""SELECT request_id, "row", label_num, label_str, received_at, filename
                FROM read_parquet({files_literal(feedback)}, filename = true, union_by_name = true,
                                  hive_partitioning = false)
                WHERE model IS NULL OR model = {quote_literal(mv.name)}"""
            )
        source = monitor.thresholds(mv.name).label_source
        if source is not None:
            labels.append(_label_source_sql(monitor, con, source, mv))
        if not labels:
            return served, empty
        table = arrow_table(
            con,
            f"""
            WITH feedback AS (
                SELECT request_id, "row", label_num, label_str FROM ({" UNION ALL ".join(labels)})
                QUALIFY row_number() OVER (PARTITION BY request_id, "row"
                                           ORDER BY received_at DESC, filename DESC, label_num DESC NULLS LAST,
                                                    label_str DESC NULLS LAST) = 1
            ),
            served AS (
                SELECT ts, request_id, "row", prediction FROM "__fs_log"
                WHERE prediction IS NOT NULL
                QUALIFY row_number() OVER (PARTITION BY request_id, "row" ORDER BY ts DESC) = 1
            )
            SELECT CAST(p.ts AS DATE) AS day, p.request_id, p."row", f.label_num, f.label_str, p.prediction
            FROM served p JOIN feedback f ON p.request_id = f.request_id AND p."row" = f."row"
            ORDER BY day, p.request_id, p."row"
            """,
        )
        return served, table
    except duckdb.Error as e:
        raise read_error(
            f"prediction or feedback log of model {mv.name}", files, e, monitor.log_path
        ) from None
    finally:
        con.close()


def _label_source_sql(monitor: Monitor, con: Any, name: str, mv: ModelVersion) -> str:
    """The rows of the label source `name` (columns request_id, row, label) in the feedback log's
    columns. A source row counts as received at its timestamp (the source's timestamp_field), so
    of two rows for one (request_id, row) the newer wins, and a label fed back later corrects it;
    rows with the same time are ordered by their label, so the choice does not depend on the
    order the source returns them in."""
    from ..errors import did_you_mean
    from ..offline.sources import SourceReader, quote_ident

    store = monitor.store
    sources = store.catalog.sources
    if name not in sources:
        raise MonitoringError(
            f"model {mv.name}: label_source '{name}' (featurestore.toml [monitoring]) is not a source of the "
            f"repo{did_you_mean(name, sources)}"
        )
    source = sources[name]
    where = f"label source '{name}' of model {mv.name}"
    relation = SourceReader(con, store.repo_path, sources).relation(source)
    try:
        described = {
            r[0]: str(r[1]).upper() for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        }
    except duckdb.Error as e:
        raise MonitoringError(f"{where} cannot be read: {e}") from None
    absent = [c for c in ("request_id", "row", "label") if c not in described]
    if absent:
        raise MonitoringError(
            f"{where} has no column {absent[0]!r}: it needs request_id, row "
            f"and label (its columns: {', '.join(described)})"
        )
    if described["row"] not in DUCKDB_INTEGERS:
        raise MonitoringError(
            f"{where}: column 'row' is {described['row']}; it must hold whole numbers (the entity row's "
            "index within its request)"
        )
    label_type = described["label"]
    text = label_type in ("VARCHAR", "STRING", "TEXT") or label_type.startswith("ENUM")
    number = label_type in DUCKDB_INTEGERS | DUCKDB_FLOATS | {"HUGEINT", "BOOLEAN"} or label_type.startswith(
        "DECIMAL"
    )
    if not (text or number):
        raise MonitoringError(
            f"{where}: column 'label' is {label_type}; labels are numbers, booleans or strings"
        )
    label = quote_ident("label")
    num, string = ("NULL", f"CAST({label} AS VARCHAR)") if text else (f"CAST({label} AS DOUBLE)", "NULL")
    ts = getattr(source, "timestamp_field", None)
    received = (
        f"CAST({quote_ident(ts)} AS TIMESTAMPTZ)"
        if ts and described.get(ts, "").startswith(("TIMESTAMP", "DATE"))
        else "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
    )
    return (
        f'SELECT CAST(request_id AS VARCHAR) AS request_id, CAST("row" AS BIGINT) AS "row", '
        f"{num} AS label_num, {string} AS label_str, {received} AS received_at, "
        f"'' AS filename FROM {relation} WHERE {label} IS NOT NULL"
    )


def _numeric(prediction: pa.ChunkedArray) -> bool:
    t = prediction.type
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def usable_labels(joined: pa.Table) -> tuple[pa.Table, int, tuple[str, int] | None]:
    """(the rows whose label is of the predictions' type, how many are not, one of those as
    (request_id, row)): numeric predictions take label_num, string ones label_str."""
    import pyarrow.compute as pc

    if joined.num_rows == 0:
        return joined, 0, None
    column = "label_num" if _numeric(joined.column("prediction")) else "label_str"
    fits = pc.is_valid(joined.column(column))
    unusable = joined.num_rows - pc.sum(fits).as_py()
    if unusable == 0:
        return joined, 0, None
    first = joined.filter(pc.invert(fits)).slice(0, 1).to_pylist()[0]
    return joined.filter(fits), unusable, (first["request_id"], first["row"])


def label_arrays(joined: pa.Table, metric: str, mv: ModelVersion) -> tuple[Any, Any]:
    """(labels, predictions) as numpy arrays: numbers for numeric predictions, else strings (the rows
    left by `usable_labels`, whose labels are of the predictions' type)."""
    import numpy as np
    import pyarrow.compute as pc

    prediction = joined.column("prediction")
    if _numeric(prediction):
        y_pred = pc.cast(prediction, pa.float64()).to_numpy(zero_copy_only=False)
        return joined.column("label_num").to_numpy(zero_copy_only=False), y_pred
    if not pa.types.is_string(prediction.type) and not pa.types.is_large_string(prediction.type):
        raise MonitoringError(
            f"model {mv.ref} predicts {prediction.type}: live performance needs numbers, booleans or strings"
        )
    if scorer(metric).numeric:
        raise MonitoringError(f"metric {metric} needs numeric predictions; model {mv.ref} predicts strings")
    return np.asarray(joined.column("label_str").to_pylist(), dtype=object), np.asarray(
        prediction.to_pylist(), dtype=object
    )


def daily_metrics(metric: str, joined: pa.Table, y_true: Any, y_pred: Any) -> list[DailyMetric]:
    import numpy as np

    day = joined.column("day").cast(pa.int32()).to_numpy(zero_copy_only=False)  # days since 1970-01-01
    out = []
    for d in np.unique(day):
        pick = day == d
        value, _ = metric_or_reason(metric, y_true[pick], y_pred[pick])
        out.append(DailyMetric(day=_EPOCH + timedelta(days=int(d)), n=int(pick.sum()), value=value))
    return out


def metric_or_reason(metric: str, y_true: Any, y_pred: Any) -> tuple[float | None, str]:
    """(the metric, "") or (None, why it is not defined on these rows)."""
    if len(y_true) == 0:
        return None, "no labelled predictions"
    try:
        return metric_value(metric, y_true, y_pred), ""
    except ValueError as e:
        return None, str(e).split("\n")[0]


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


__all__ = ["MIN_LABELLED_ROWS", "DailyMetric", "PerformanceReport", "log_feedback", "performance"]
