"""Drift: has what a model version serves moved away from what it was trained on?

    report = store.monitor.drift("trip_eta@production", start="2026-11-01")
    report.status                        # "ok" | "insufficient" | "warn" | "drift": the worst column's
    report.features["conv_rate"].psi     # also .js, .wasserstein, .null_rate_ref / .null_rate_cur
    report.prediction                    # the same for the model's output
    store.monitor.drift_by_day("trip_eta@production")   # [DailyDrift(day, n, status, psi, worst)]

Reference: the version's saved training set (its lineage): the feature columns' profiles kept in
the training set's record (`bins.reference_profile`), and the profile of the model's own
predictions on that training set (computed once per version and kept in the registry). Current:
what the version served in the window, from the prediction log, binned on the reference's bins in
ONE DuckDB scan (`bins.sql_bin`). Per column:

- PSI = sum((c - r) ln(c / r)) over the bins' proportions, each floored at PSI_EPSILON so that an
  empty bin (a tail, "null") gives a finite value; it decides the status (`Thresholds.psi_warn`,
  `psi_drift`) once both sides have enough rows (`min_reference_rows`, `min_current_rows`).
- Jensen-Shannon distance (base 2, 0..1, no floor needed) and, for numeric columns, the Wasserstein
  distance between the binned distributions (each bin placed at its mean) over the reference's
  std: reported beside PSI. No p-values: on large samples they flag differences of no consequence.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..config import Thresholds
from ..errors import MonitoringError, UnknownNameError
from ..offline.sources import duckdb_connection, quote_ident, quote_literal
from . import bins
from .bins import reference_profile
from .log import prediction_files, prediction_relation, read_error

if TYPE_CHECKING:
    from rich.table import Table

    from ..models.registry import ModelVersion
    from ..store import FeatureStore
    from . import Monitor, Window

PSI_EPSILON = 1e-4  # the floor of a bin's proportion in PSI: an empty bin costs at most ~ c ln(c / 1e-4)
PREDICTION = "prediction"
# The model's output among the compared columns: a key no input name can be (inputs are identifiers),
# so that an input named "prediction" stays a feature of its own.
OUTPUT = "\x00prediction"
STATUSES = ("ok", "insufficient", "warn", "drift")  # from best to worst
_STRIDE = 32  # bin keys of column i are i * _STRIDE + bin; more than any column's bins
_VIEW = "__fs_log"
_LOG_COLUMN = "features"
_MISSING_COLUMN = "missing"  # the log's list of the inputs served NOT_FOUND / OUTSIDE_MAX_AGE
_MISSING = "\x00missing"  # its type's key in `_log_types` (not an input name)


# -- the distances -----------------------------------------------------------------------------------------


def psi(ref: Any, cur: Any, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two histograms (counts per bin, the same bins)."""
    r = np.maximum(_proportions(ref), epsilon)
    c = np.maximum(_proportions(cur), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(ref: Any, cur: Any) -> float:
    """Jensen-Shannon distance, base 2 (0: the same, 1: disjoint), of two histograms."""
    p, q = _proportions(ref), _proportions(cur)
    m = (p + q) / 2
    divergence = (_relative_entropy(p, m) + _relative_entropy(q, m)) / 2 / math.log(2)
    return math.sqrt(max(divergence, 0.0))


def wasserstein(ref_counts: Any, ref_sums: Any, cur_counts: Any, cur_sums: Any) -> float | None:
    """The Wasserstein (earth mover's) distance between two binned distributions, each bin placed at
    its own mean (sum / count); bins with no (finite) values drop out. None when a side is empty."""
    u, u_w = _positions(ref_counts, ref_sums)
    v, v_w = _positions(cur_counts, cur_sums)
    if len(u) == 0 or len(v) == 0:
        return None
    u_order, v_order = np.argsort(u), np.argsort(v)
    u, u_w, v, v_w = u[u_order], u_w[u_order], v[v_order], v_w[v_order]
    everything = np.sort(np.concatenate([u, v]), kind="mergesort")
    deltas = np.diff(everything)
    u_cdf = np.concatenate([[0.0], np.cumsum(u_w)])[np.searchsorted(u, everything[:-1], "right")] / u_w.sum()
    v_cdf = np.concatenate([[0.0], np.cumsum(v_w)])[np.searchsorted(v, everything[:-1], "right")] / v_w.sum()
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))


def _proportions(counts: Any) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else c


def _relative_entropy(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def _positions(counts: Any, sums: Any) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(counts, dtype=np.float64)
    s = np.asarray(sums, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = s / c
    keep = (c > 0) & np.isfinite(means)
    return means[keep], c[keep]


# -- the reports -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """One column (a feature, or the prediction): reference against current."""

    name: str
    kind: str  # "numeric" | "categorical"
    status: str  # "ok" | "warn" | "drift" | "insufficient"
    psi: float | None  # None: a side has no rows
    js: float | None
    wasserstein: float | None  # over the reference std; None for categorical (or a constant reference)
    null_rate_ref: float | None
    null_rate_cur: float | None
    n_ref: int
    n_cur: int
    bins: list[str]  # labels: the tails, "other" and "null" included
    ref: list[float]  # proportion per bin
    cur: list[float]

    def to_dict(self) -> dict[str, Any]:
        keys = ("status", "psi", "js", "wasserstein", "null_rate_ref", "null_rate_cur", "n_ref", "n_cur")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class DriftReport:
    """What a model version served in [start, end] against its training set; see the module doc."""

    model: str
    version: int
    start: datetime | None
    end: datetime | None
    status: str  # the worst of the features' and the prediction's
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    thresholds: Thresholds

    @property
    def breach(self) -> bool:
        """Only `drift` is a breach (`fs monitor check`, retraining); `warn` is shown."""
        return self.status == "drift"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
        }

    def table(self) -> Table:
        """A rich table: the features by PSI (highest first), then the prediction."""
        from rich.markup import escape
        from rich.table import Table

        span = f"{_when(self.start)} .. {_when(self.end)}"
        title = f"drift of {escape(self.model)} v{self.version} ({span}): {_styled(self.status)}"
        table = Table(title=title)
        for header in (
            "feature",
            "status",
            "PSI",
            "JS",
            "Wasserstein",
            "null rate ref -> cur",
            "n cur / ref",
        ):
            table.add_column(header, justify="left" if header in ("feature", "status") else "right")
        ordered = sorted(self.features.values(), key=lambda f: -1.0 if f.psi is None else f.psi, reverse=True)
        for f in ordered:
            table.add_row(*_cells(f))
        if self.prediction is not None:
            table.add_section()
            table.add_row(*_cells(self.prediction))
        return table

    def __str__(self) -> str:
        from rich.console import Console

        out = io.StringIO()
        Console(file=out, width=160, no_color=True, highlight=False).print(self.table())
        return out.getvalue()


@dataclass(frozen=True)
class DailyDrift:
    """Drift of one UTC day of the window: its rows, status, PSI per model input (`psi`, by input
    name) and of the model's output (`prediction_psi`), kept apart so that an input may be named
    "prediction"."""

    day: date
    n: int
    status: str
    psi: dict[str, float | None]  # the inputs only
    worst: float | None  # the largest PSI, the prediction's included
    prediction_psi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "n": self.n,
            "status": self.status,
            "psi": self.psi,
            "prediction_psi": self.prediction_psi,
            "worst": self.worst,
        }


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "*"


def _styled(status: str) -> str:
    color = {"ok": "green", "warn": "yellow", "drift": "bold red", "insufficient": "dim"}[status]
    return f"[{color}]{status}[/]"


def _cells(f: FeatureDrift) -> list[str]:
    """One row of the table; the name escaped (a feature may be named like rich markup, "[/]")."""
    from rich.markup import escape

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    def rate(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    return [
        escape(f.name),
        _styled(f.status),
        num(f.psi),
        num(f.js),
        num(f.wasserstein),
        f"{rate(f.null_rate_ref)} -> {rate(f.null_rate_cur)}",
        f"{f.n_cur:,} / {f.n_ref:,}",
    ]


def worst(statuses: Any) -> str:
    """The worst of some statuses (ok < insufficient < warn < drift); "ok" for none."""
    return max(statuses, key=STATUSES.index, default="ok")


def compare(
    name: str, profile: dict[str, Any], cur_counts: Any, cur_sums: Any, thresholds: Thresholds
) -> FeatureDrift:
    """The drift of one column: its reference profile against the current counts (and sums) per bin."""
    ref_counts = np.asarray(bins.counts(profile), dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    n_ref, n_cur = int(profile["n"]), int(cur.sum())
    both = n_ref > 0 and n_cur > 0
    value_psi = psi(ref_counts, cur) if both else None
    w = None
    if profile["kind"] == "numeric" and both and cur_sums is not None:
        raw = wasserstein(ref_counts[:-1], profile["sums"], cur[:-1], np.asarray(cur_sums)[:-1])
        std = profile["std"]
        w = raw / std if raw is not None and std > 0 and math.isfinite(raw / std) else None
    if n_ref < thresholds.min_reference_rows or n_cur < thresholds.min_current_rows or value_psi is None:
        status = "insufficient"
    elif value_psi >= thresholds.psi_drift:
        status = "drift"
    elif value_psi >= thresholds.psi_warn:
        status = "warn"
    else:
        status = "ok"
    return FeatureDrift(
        name=name,
        kind=profile["kind"],
        status=status,
        psi=value_psi,
        js=js_distance(ref_counts, cur) if both else None,
        wasserstein=w,
        null_rate_ref=profile["nulls"] / n_ref if n_ref else None,
        null_rate_cur=float(cur[-1]) / n_cur if n_cur else None,
        n_ref=n_ref,
        n_cur=n_cur,
        bins=bins.labels(profile),
        ref=[float(x) for x in _proportions(ref_counts)],
        cur=[float(x) for x in _proportions(cur)],
    )


# -- drift of a model version ------------------------------------------------------------------------------


def drift(monitor: Monitor, mv: ModelVersion, window: Window) -> DriftReport:
    """The DriftReport of `mv` over `window` (see the module doc)."""
    columns = _columns(model_reference(monitor.store, mv), mv)
    current = _scan(monitor, mv, window, columns, by_day=False).get(None, {})
    return _report(mv, window, columns, current, monitor.thresholds(mv.name))


def drift_by_day(monitor: Monitor, mv: ModelVersion, window: Window) -> list[DailyDrift]:
    """Drift per UTC day of `window` (one scan grouped by day), oldest first; days with no rows left out."""
    return drift_with_days(monitor, mv, window)[1]


def drift_with_days(
    monitor: Monitor, mv: ModelVersion, window: Window
) -> tuple[DriftReport, list[DailyDrift]]:
    """`drift` and `drift_by_day` from ONE scan grouped by day: the window's counts and sums per bin
    are the days' added up (the report needs both, and the scan is the cost)."""
    thresholds = monitor.thresholds(mv.name)
    columns = _columns(model_reference(monitor.store, mv), mv)
    per_day = _scan(monitor, mv, window, columns, by_day=True)
    total = {name: _empty(profile) for name, profile in columns.items()}
    for current in per_day.values():
        for name, (counts, sums) in current.items():
            total[name][0][:] += counts
            total[name][1][:] += sums
    report = _report(mv, window, columns, total, thresholds)
    return report, [_daily(day, current, columns, thresholds) for day, current in sorted(per_day.items())]


def _report(
    mv: ModelVersion,
    window: Window,
    columns: dict[str, dict[str, Any]],
    current: dict[str, tuple[np.ndarray, np.ndarray]],
    thresholds: Thresholds,
) -> DriftReport:
    found = {
        name: compare(_shown(name), profile, *current.get(name, _empty(profile)), thresholds)
        for name, profile in columns.items()
    }
    prediction = found.pop(OUTPUT, None)
    features = {i.name: found[i.name] for i in mv.inputs if i.name in found}
    everything = [*features.values(), *([prediction] if prediction else [])]
    return DriftReport(
        model=mv.name,
        version=mv.version,
        start=window.start,
        end=window.end,
        status=worst(f.status for f in everything),
        features=features,
        prediction=prediction,
        thresholds=thresholds,
    )


def _daily(
    day: date | None,
    current: dict[str, tuple[np.ndarray, np.ndarray]],
    columns: dict[str, dict[str, Any]],
    thresholds: Thresholds,
) -> DailyDrift:
    found = {
        name: compare(_shown(name), profile, *current[name], thresholds) for name, profile in columns.items()
    }
    n = next(iter(found.values())).n_cur
    output = found.pop(OUTPUT, None)
    known = [f.psi for f in (*found.values(), output) if f is not None and f.psi is not None]
    assert isinstance(day, date)
    return DailyDrift(
        day=day,
        n=n,
        status=worst(f.status for f in (*found.values(), output) if f is not None),
        psi={name: f.psi for name, f in found.items()},
        worst=max(known) if known else None,
        prediction_psi=None if output is None else output.psi,
    )


def _columns(reference: dict[str, Any], mv: ModelVersion) -> dict[str, dict[str, Any]]:
    """{column: profile} of what can be compared: the model's inputs in order (by name), then the
    model's output (key `OUTPUT`)."""
    profiles = {i.name: reference["features"][i.name] for i in mv.inputs}
    profiles[OUTPUT] = reference["prediction"]
    columns = {name: p for name, p in profiles.items() if p["kind"] != "unsupported"}
    if not columns:
        raise MonitoringError(
            f"model {mv.ref}: none of its inputs nor its prediction is a number, string or boolean"
        )
    return columns


def _shown(column: str) -> str:
    """The name a compared column is reported by ("prediction" for the model's output)."""
    return PREDICTION if column == OUTPUT else column


def _empty(profile: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    size = len(bins.counts(profile))
    return np.zeros(size), np.zeros(size)


def _scan(
    monitor: Monitor, mv: ModelVersion, window: Window, columns: dict[str, dict[str, Any]], by_day: bool
) -> dict[date | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """`histograms` of what `mv` served in `window` ({} when nothing was logged)."""
    con = duckdb_connection()
    try:
        with reading_log(monitor, mv, window):
            if not prediction_relation(
                con, monitor.log_path, mv.name, mv.version, window.start, window.end, _VIEW
            ):
                return {}
            defaulted = (mv.missing_policy.get("defaults") or {}).keys()
            return histograms(con, _VIEW, columns, by_day, defaulted=frozenset(defaulted))
    finally:
        con.close()


@contextmanager
def reading_log(monitor: Monitor, mv: ModelVersion, window: Window) -> Iterator[None]:
    """Turn a DuckDB error while reading `mv`'s prediction log over `window` (a corrupt or truncated
    file, say) into the MonitoringError of `log.read_error`: the files at fault, how to recover."""
    import duckdb

    try:
        yield
    except duckdb.Error as e:
        files = prediction_files(monitor.log_path, mv.name, mv.version, window.start, window.end)
        raise read_error(f"prediction log of model {mv.ref}", files, e, monitor.log_path) from None


def histograms(
    con: Any,
    view: str,
    columns: dict[str, dict[str, Any]],
    by_day: bool = False,
    defaulted: frozenset[str] = frozenset(),
) -> dict[date | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{day (None unless by_day): {column: (count per bin, sum per bin)}} of the rows of `view` (the
    prediction log's layout) on the columns' reference bins: ONE scan, every column's bin key
    (column index * _STRIDE + bin) and value unnested side by side and grouped. A feature missing
    from the log counts as null, and so does an input of `defaulted` (those the model's
    missing_policy gives a default) that the row lists in `missing` (served NOT_FOUND /
    OUTSIDE_MAX_AGE: the log holds the default value, where the training set holds a null; other
    missing inputs are logged as nulls already, so only these pay for the list lookup); key
    `OUTPUT` is the log's prediction column."""
    types = _log_types(con, view, [n for n in columns if n != OUTPUT])
    keys, values = [], []
    for i, (name, profile) in enumerate(columns.items()):
        if name == OUTPUT:
            expr, sql_type = quote_ident(PREDICTION), types.get(None, "NULL")
        elif name in types:
            expr, sql_type = f"{quote_ident(_LOG_COLUMN)}.{quote_ident(name)}", types[name]
            if name in defaulted and types.get(_MISSING, "").endswith("[]"):
                gone = (
                    f"coalesce(list_contains({quote_ident(_MISSING_COLUMN)}, {quote_literal(name)}), false)"
                )
                expr = f"(CASE WHEN {gone} THEN NULL ELSE {expr} END)"
        else:
            expr, sql_type = "NULL", "NULL"
        keys.append(f"{bins.sql_bin(profile, expr, sql_type)} + {i * _STRIDE}")
        values.append(bins.sql_value(profile, expr, sql_type))
    day, group = ("(ts AT TIME ZONE 'UTC')::DATE AS day, ", "day, k") if by_day else ("", "k")
    rows = con.execute(
        f"SELECT {'day' if by_day else 'NULL'}, k, count(*), sum(v) FROM (SELECT {day}unnest([{', '.join(keys)}]) "
        f"AS k, unnest([{', '.join(values)}]) AS v FROM {quote_ident(view)}) GROUP BY {group}"
    ).fetchall()
    names = list(columns)
    out: dict[date | None, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for day_value, key, count, total in rows:
        per_day = out.get(day_value)
        if per_day is None:
            per_day = out[day_value] = {n: _empty(p) for n, p in columns.items()}
        name = names[key // _STRIDE]
        per_day[name][0][key % _STRIDE] = count
        per_day[name][1][key % _STRIDE] = 0.0 if total is None else total
    return out


def _log_types(con: Any, view: str, features: list[str]) -> dict[str | None, str]:
    """The DuckDB type of each logged feature (those in the log) and of the prediction (key None)."""
    described = {row[0]: row[1] for row in con.execute(f"DESCRIBE {quote_ident(view)}").fetchall()}
    types: dict[str | None, str] = {
        None: described.get(PREDICTION, "NULL"),
        _MISSING: described.get(_MISSING_COLUMN, ""),
    }
    if str(described.get(_LOG_COLUMN, "")).startswith("STRUCT"):
        fields = con.execute(
            f"DESCRIBE SELECT {quote_ident(_LOG_COLUMN)}.* FROM {quote_ident(view)}"
        ).fetchall()
        types.update({row[0]: row[1] for row in fields if row[0] in set(features)})
    return types


# -- the reference ---------------------------------------------------------------------------------------


def model_reference(store: FeatureStore, mv: ModelVersion) -> dict[str, Any]:
    """{"features": {input: profile}, "prediction": profile} of `mv`'s training set.

    The features' profiles come from the training set's record; the prediction's (the model's
    predictions on the training set), and those of inputs the record lacks (request values,
    training sets saved before profiles were kept), are computed once and kept in the registry
    under "prediction:<model>:<version>" (again when the training set is saved anew)."""
    if mv.training_set is None:
        raise MonitoringError(
            f"model {mv.ref} was registered without a training set, and drift compares what it serves with "
            f"one: register it with training_set=... (store.models.register('{mv.name}', model, ..., "
            "training_set='<saved training set>'))"
        )
    try:
        ts = store.training_sets.get(mv.training_set)
    except UnknownNameError:
        raise MonitoringError(
            f"model {mv.ref} was trained on training set '{mv.training_set}', which is no longer in the registry"
        ) from None
    if mv.training_fingerprint is not None and ts.fingerprint != mv.training_fingerprint:
        raise MonitoringError(
            f"training set '{ts.name}' was overwritten since {mv.name} v{mv.version} was registered on it "
            f"(fingerprint {mv.training_fingerprint[:12]} then, {ts.fingerprint[:12]} now): it is no longer "
            f"what the model was trained on. Retrain and register the model with the new set, or save the new "
            f"rows under another name"
        )
    recorded: dict[str, Any] = ts.extra.get("reference") or {}
    key = f"{PREDICTION}:{mv.name}:{mv.version}"
    backend = store.registry.backend
    cached = backend.monitor_profile(key)
    if cached is None or cached.get("fingerprint") != ts.fingerprint:
        table = store.training_sets.result(ts.name)
        if table is None:
            table = store.training_sets.regenerate(ts.name).to_arrow()
        absent = [c for c in mv.columns if c not in table.column_names]
        if absent:
            raise MonitoringError(
                f"training set '{ts.name}' has no column {absent[0]!r}, which model {mv.ref} takes as an input"
            )
        cached = {
            "fingerprint": ts.fingerprint,
            "prediction": bins.column_profile(_predict(store, mv, table)),
            "features": reference_profile(table, [c for c in mv.columns if c not in recorded]),
        }
        backend.save_monitor_profile(key, cached)
    return {"features": {**recorded, **cached["features"]}, "prediction": cached["prediction"]}


def _predict(store: FeatureStore, mv: ModelVersion, table: pa.Table) -> pa.Array:
    """The model's predictions on the rows of a training set, its inputs given as serving gives them.

    A model that refuses nulls (serving could not have answered for those rows either) is scored on
    the rows with every input present."""
    import pyarrow.compute as pc

    from ..models.serving import model_input

    model = store.models.load_version(mv)
    frame = getattr(model, "feature_names_in_", None) is not None
    defaults = mv.missing_policy.get("defaults", {}) or {}
    columns = {}
    for name in mv.columns:
        column = table.column(name)
        if name in defaults:
            column = pc.fill_null(column, pa.scalar(defaults[name]).cast(column.type))
        columns[name] = column

    def run(cols: dict[str, Any]) -> Any:
        n = len(next(iter(cols.values())))
        values = {c: v.to_numpy(zero_copy_only=False) for c, v in cols.items()}
        if not frame:
            return model.predict(model_input(values, mv.columns, n, None))
        import pandas as pd

        return model.predict(model_input(values, mv.columns, n, pd.Index(mv.columns)))

    try:
        raw = run(columns)
    except Exception:
        mask = None  # the rows with every input present (NaN is null)
        for c in columns.values():
            valid = pc.is_valid(c)
            if pa.types.is_floating(c.type):
                valid = pc.and_(valid, pc.invert(pc.is_nan(pc.fill_null(c, 0.0))))
            mask = valid if mask is None else pc.and_(mask, valid)
        try:
            raw = run({c: v.filter(mask) for c, v in columns.items()})
        except Exception as e:
            raise MonitoringError(
                f"model {mv.ref} could not predict its training set '{mv.training_set}' (for the reference "
                f"of its predictions): {type(e).__name__}: {e}"
            ) from e
    out = np.asarray(raw)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1:
        return pa.array([None] * len(out), pa.list_(pa.float64()))  # several outputs: not compared
    return pa.array(out.tolist() if out.dtype == object else out)


__all__ = [
    "OUTPUT",
    "DailyDrift",
    "DriftReport",
    "FeatureDrift",
    "compare",
    "drift",
    "drift_by_day",
    "js_distance",
    "model_reference",
    "psi",
    "reference_profile",
    "wasserstein",
]
