"""Shadow comparison: production against its challenger on the same requests and rows.

    report = store.monitor.shadow("trip_eta", start="2026-11-24")
    report.rows, report.agreement, report.mean_abs_diff      # compared rows; how alike they answer
    report.production_live, report.challenger_live           # the live metric of both, same labels

The challenger (`featurestore.models.shadow`) scores production's requests in the background and
logs its predictions with `variant="shadow"` under its own version, with production's request id
and row, and the primary row's `ts`. This report pairs, over a window, the production version's
primary rows with the challenger version's shadow rows on (request_id, row, ts): a reused request
id pairs each request with its own shadow rows only (a later request that was not shadowed pairs
with nothing), and gives:

- agreement: for labels (string, boolean or integer predictions) the share of equal predictions;
  for numbers (floating-point predictions) the mean absolute difference;
- where labels were fed back: the live metric of both versions (production's metric, see
  `performance.metric_of`), on the same labelled pairs, overall and per UTC day. The labels are
  joined by `performance`'s own code, so the two reports agree on which label a row has: a label
  belongs to the newest prediction of its (request_id, row), so a pair is labelled only when both
  of its rows are the newest of their version for that key.

Monitoring a version otherwise counts its shadow rows as its own: `drift`, `performance` and
`skew` of the challenger version read them (they are its predictions on real traffic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from ..errors import MonitoringError
from ..offline.sources import arrow_table, duckdb_connection
from .log import prediction_files, prediction_relation, read_error

if TYPE_CHECKING:
    from rich.table import Table

    from ..models.registry import ModelVersion
    from . import Monitor, Window


@dataclass(frozen=True)
class ShadowDay:
    """The comparison over the pairs of one UTC day (of the production row's `ts`)."""

    day: date
    rows: int
    agreement: float | None
    mean_abs_diff: float | None
    labelled: int = 0
    production_live: float | None = None
    challenger_live: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for `--json`."""
        return {
            "day": self.day.isoformat(),
            "rows": self.rows,
            "agreement": _finite(self.agreement),
            "mean_abs_diff": _finite(self.mean_abs_diff),
            "labelled": self.labelled,
            "production_live": _finite(self.production_live),
            "challenger_live": _finite(self.challenger_live),
        }


@dataclass(frozen=True)
class ShadowReport:
    """Production version `production` against challenger version `challenger` over a window.

    `kind` is "label" (agreement = share of equal predictions) or "number" (mean_abs_diff), None
    when nothing was compared. `labelled`: the compared pairs with a label fed back, on which both
    live metrics are computed."""

    model: str
    production: int
    challenger: int
    start: datetime | None
    end: datetime | None
    rows: int  # (request_id, row) pairs compared
    shadow_rows: int  # the challenger's shadow rows in the window (paired or not)
    kind: str | None
    agreement: float | None
    mean_abs_diff: float | None
    metric: str | None
    labelled: int
    production_live: float | None
    challenger_live: float | None
    days: list[ShadowDay] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for `--json`."""
        return {
            "model": self.model,
            "production": self.production,
            "challenger": self.challenger,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "rows": self.rows,
            "shadow_rows": self.shadow_rows,
            "kind": self.kind,
            "agreement": _finite(self.agreement),
            "mean_abs_diff": _finite(self.mean_abs_diff),
            "metric": self.metric,
            "labelled": self.labelled,
            "production_live": _finite(self.production_live),
            "challenger_live": _finite(self.challenger_live),
            "days": [d.to_dict() for d in self.days],
        }

    def table(self) -> Table:
        """A rich table: one line per day, then the whole window."""
        from rich.markup import escape
        from rich.table import Table

        title = (
            f"shadow of {escape(self.model)}: production v{self.production} vs challenger v{self.challenger}"
            f", {self.rows:,} rows compared"
        )
        table = Table(title=title)
        likeness = "agreement" if self.kind != "number" else "mean |diff|"
        metric = escape(self.metric or "metric")
        for header in ("day", "rows", likeness, "labelled", f"{metric} production", f"{metric} challenger"):
            table.add_column(header, justify="left" if header == "day" else "right")
        for d in self.days:
            table.add_row(d.day.isoformat(), *self._cells(d.rows, d.agreement, d.mean_abs_diff, d))
        table.add_section()
        table.add_row("all", *self._cells(self.rows, self.agreement, self.mean_abs_diff, self))
        return table

    def _cells(self, rows: int, agreement: Any, diff: Any, of: ShadowDay | ShadowReport) -> list[str]:
        like = f"{agreement:.2%}" if agreement is not None else _num(diff)
        return [f"{rows:,}", like, f"{of.labelled:,}", _num(of.production_live), _num(of.challenger_live)]


def shadow(
    monitor: Monitor, production: ModelVersion, challenger: ModelVersion, window: Window
) -> ShadowReport:
    """Compare the primary rows of `production` with the shadow rows of `challenger` in `window`."""
    from .performance import metric_of

    pairs, shadow_rows = _pairs(monitor, production, challenger, window)
    kind, agreement, diff = _likeness(pairs)
    metric = metric_of(production, monitor.thresholds(production.name).metric)
    labelled, prod_live, ch_live, per_day = _live(monitor, production, challenger, window, pairs, metric)
    days = []
    day_of = pairs.column("day").to_pylist()
    for d in sorted(set(day_of)):
        pick = pa.array([x == d for x in day_of])
        _, a, m = _likeness(pairs.filter(pick))
        n, p, c = per_day.get(d, (0, None, None))
        days.append(ShadowDay(d, sum(x == d for x in day_of), a, m, n, p, c))
    return ShadowReport(
        model=production.name,
        production=production.version,
        challenger=challenger.version,
        start=window.start,
        end=window.end,
        rows=pairs.num_rows,
        shadow_rows=shadow_rows,
        kind=kind,
        agreement=agreement,
        mean_abs_diff=diff,
        metric=metric,
        labelled=labelled,
        production_live=prod_live,
        challenger_live=ch_live,
        days=days,
    )


def _pairs(
    monitor: Monitor, production: ModelVersion, challenger: ModelVersion, window: Window
) -> tuple[pa.Table, int]:
    """(day, request_id, row, production, challenger, current) per compared pair, and the shadow rows
    counted. `current`: both rows are their version's newest prediction of (request_id, row), the
    ones `performance` joins a label to."""
    empty = pa.table(
        {
            "day": pa.array([], pa.date32()),
            "request_id": pa.array([], pa.string()),
            "row": pa.array([], pa.int64()),
            "production": pa.array([], pa.float64()),
            "challenger": pa.array([], pa.float64()),
            "current": pa.array([], pa.bool_()),
        }
    )
    con = duckdb_connection()
    name = production.name
    files = prediction_files(monitor.log_path, name, None, window.start, window.end)
    try:
        args = (con, monitor.log_path, name)
        if not prediction_relation(*args, challenger.version, window.start, window.end, name="__fs_ch"):
            return empty, 0
        if not _has_variant(con, "__fs_ch"):
            return empty, 0  # written before shadow scoring: no shadow rows
        shadow_rows = int(
            con.execute("""SELECT count(*) FROM "__fs_ch" WHERE variant = 'shadow'""").fetchall()[0][0]
        )
        if not prediction_relation(*args, production.version, window.start, window.end, name="__fs_prod"):
            return empty, shadow_rows
        primary = "variant IS NULL OR variant = 'primary'" if _has_variant(con, "__fs_prod") else "TRUE"
        columns = 'ts, request_id, "row", prediction' + (", variant" if primary != "TRUE" else "")
        table = arrow_table(
            con,
            f"""
            WITH p AS (
                SELECT * FROM (SELECT {columns}, {_NEWEST} FROM "__fs_prod") WHERE {primary}
                QUALIFY row_number() OVER (PARTITION BY request_id, "row", ts) = 1
            ),
            s AS (
                SELECT * FROM (SELECT {columns}, variant, {_NEWEST} FROM "__fs_ch") WHERE variant = 'shadow'
                QUALIFY row_number() OVER (PARTITION BY request_id, "row", ts) = 1
            )
            SELECT CAST(p.ts AS DATE) AS day, p.request_id, p."row", p.prediction AS production,
                   s.prediction AS challenger, coalesce(p.__fs_newest AND s.__fs_newest, FALSE) AS current
            FROM p JOIN s ON p.request_id = s.request_id AND p."row" = s."row" AND p.ts = s.ts
            ORDER BY day, p.request_id, p."row", p.ts
            """,
        )
        return table, shadow_rows
    except duckdb.Error as e:
        raise read_error(f"prediction log of model {name}", files, e, monitor.log_path) from None
    finally:
        con.close()


# Whether a row is its version's newest prediction of (request_id, row), over the rows
# `performance.labelled_predictions` picks from (any variant, a prediction): the one a label is joined to.
_NEWEST = (
    'ts = max(ts) FILTER (WHERE prediction IS NOT NULL) OVER (PARTITION BY request_id, "row") AS __fs_newest'
)


def _has_variant(con: Any, view: str) -> bool:
    return any(r[0] == "variant" for r in con.execute(f'DESCRIBE "{view}"').fetchall())


def _likeness(pairs: pa.Table) -> tuple[str | None, float | None, float | None]:
    """(kind, agreement, mean_abs_diff): labels are compared for equality, numbers by distance."""
    if pairs.num_rows == 0:
        return None, None, None
    prod, ch = pairs.column("production"), pairs.column("challenger")
    if pa.types.is_floating(prod.type) or pa.types.is_floating(ch.type):
        import numpy as np

        a = np.asarray(prod.to_pylist(), dtype=np.float64)
        b = np.asarray(ch.to_pylist(), dtype=np.float64)
        both = ~(np.isnan(a) | np.isnan(b))
        return "number", None, float(np.abs(a[both] - b[both]).mean()) if both.any() else None
    same = sum(x == y for x, y in zip(prod.to_pylist(), ch.to_pylist()))
    return "label", same / pairs.num_rows, None


def _live(
    monitor: Monitor,
    production: ModelVersion,
    challenger: ModelVersion,
    window: Window,
    pairs: pa.Table,
    metric: str | None,
) -> tuple[int, float | None, float | None, dict[date, tuple[int, float | None, float | None]]]:
    """(labelled pairs, production's live metric, the challenger's, per day: (n, production,
    challenger)), on the compared pairs both have a usable label for (`performance`'s joins)."""
    from .performance import (
        daily_metrics,
        label_arrays,
        labelled_predictions,
        metric_or_reason,
        usable_labels,
    )

    if metric is None or pairs.num_rows == 0:
        return 0, None, None, {}
    compared = set(_keys(pairs.filter(pairs.column("current"))))
    tables = [
        usable_labels(labelled_predictions(monitor, mv, window)[1])[0] for mv in (production, challenger)
    ]
    both = compared & set(_keys(tables[0])) & set(_keys(tables[1]))
    out: list[tuple[float | None, list[Any]]] = []
    for mv, table in zip((production, challenger), tables):
        table = table.filter(pa.array([k in both for k in _keys(table)], pa.bool_()))
        if table.num_rows == 0:
            out.append((None, []))
            continue
        y_true, y_pred = label_arrays(table, metric, mv)
        out.append(
            (metric_or_reason(metric, y_true, y_pred)[0], daily_metrics(metric, table, y_true, y_pred))
        )
    (prod_live, prod_days), (ch_live, ch_days) = out
    per_day: dict[date, tuple[int, float | None, float | None]] = {}
    challenger_by_day = {d.day: d.value for d in ch_days}
    for d in prod_days:
        per_day[d.day] = (d.n, d.value, challenger_by_day.get(d.day))
    return len(both), prod_live, ch_live, per_day


def _keys(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table.column("request_id").to_pylist(), table.column("row").to_pylist()))


def challenger_of(monitor: Monitor, model: str, challenger: int | None = None) -> tuple[Any, Any]:
    """(production version, challenger version) of `model` (a name or "name@alias": the name counts):
    its `production` and `challenger` aliases now, or challenger version `challenger`."""
    from ..errors import UnknownNameError

    models = monitor.store.models
    name = model.partition("@")[0]
    try:
        production = models.get(name, alias="production")
    except UnknownNameError as e:
        raise MonitoringError(
            f"model {name} has no production alias to compare a challenger with: {e}"
        ) from None
    if challenger is not None:
        return production, models.get(name, version=challenger)
    try:
        return production, models.get(name, alias="challenger")
    except UnknownNameError:
        raise MonitoringError(
            f"model {name} has no challenger alias: set one (fs models alias {name} challenger VERSION) "
            "or pass the challenger version"
        ) from None


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


__all__ = ["ShadowDay", "ShadowReport", "challenger_of", "shadow"]
