"""The skew audit: do the feature vectors a model was served match what a training set would hold?

    report = store.monitor.skew("trip_eta@production", start, end)
    report.features["conv_rate"].match_rate

The served vectors are the prediction log's (`features`, by input name; `missing` names the inputs
served NOT_FOUND / OUTSIDE_MAX_AGE). Each logged row becomes an entity row (its join keys and
request values, event time = the time it was served) of ONE point-in-time join of the model
version's features, bitemporal: only feature rows created at or before the served time count, so
the recomputation sees what offline storage could have known then. DuckDB then compares the two,
column against column (no Python per row). Per feature and logged row:

- matched: equal (floats within 1e-9 relative), or missing on both sides (a null value on both too);
- differed: both have a value and they differ (numbers: |served - offline| is reported);
- missing_online: served missing (or null) while the recomputation has a value;
- missing_offline: served a value while the recomputation has none.

An on-demand feature that reads request values is recomputed only on the rows that logged them
(logs written before request values were logged lack them): the others are counted per feature as
`not_recomputable` (left out of `total`, with a `note`); when no row can be, a MonitoringError.

Each mismatch gets the likely cause, from what the registry knows, first that applies:
"on-demand function changed" (an on-demand view applied after the served time), "materialization
lag" (the entity has an offline row, created by the served time, newer than what the view's
materialization runs finished by then had covered), "ttl" (a value missing on one side only, of a
view with a ttl, for an entity with an offline row older than the ttl at the served time: what an
online OUTSIDE_MAX_AGE was about, or the two age checks disagreeing at the edge), else "online-only
write or offline data changed" (a row written online only, or offline rows that arrived late or
were rewritten after serving). Causes are likely, not certain: the log does not say which row the
online store served.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..definitions import FeatureView, PushSource, parse_ref
from ..errors import MonitoringError
from ..models.prediction_log import LOG_COLUMNS
from ..offline.features import CREATED_TS, EVENT_TS
from ..offline.sources import arrow_table, quote_ident, quote_literal
from .log import prediction_relation

if TYPE_CHECKING:
    import duckdb

    from ..models.registry import ModelVersion
    from . import Monitor, Window

MATCHED, DIFFERED, MISSING_ONLINE, MISSING_OFFLINE = (
    "matched",
    "differed",
    "missing_online",
    "missing_offline",
)
LAG, TTL, ON_DEMAND, OTHER = (
    "materialization lag",
    "ttl",
    "on-demand function changed",
    "online-only write or offline data changed",
)
REL_TOLERANCE = 1e-9
_CODE = {MATCHED: 0, DIFFERED: 1, MISSING_ONLINE: 2, MISSING_OFFLINE: 3}  # status codes in the SQL
_STATUS = {code: status for status, code in _CODE.items()}


@dataclass(frozen=True)
class FeatureSkew:
    """One model input: how its served values compare with the point-in-time recomputation."""

    name: str
    total: int
    matched: int
    differed: int
    missing_online: int
    missing_offline: int
    match_rate: float | None
    mean_abs_diff: float | None
    max_abs_diff: float | None
    causes: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    # logged rows left out of `total`: an on-demand feature whose request values the row lacks (logs
    # written before request values were logged); `note` says which
    not_recomputable: int = 0
    note: str | None = None

    @property
    def mismatched(self) -> int:
        """Served values that did not match: differed or missing on one side."""
        return self.differed + self.missing_online + self.missing_offline

    @property
    def top_cause(self) -> str | None:
        """The most frequent likely cause of the mismatches (None: none)."""
        return max(self.causes, key=lambda c: self.causes[c]) if self.causes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total": self.total,
            "matched": self.matched,
            "differed": self.differed,
            "missing_online": self.missing_online,
            "missing_offline": self.missing_offline,
            "match_rate": _number(self.match_rate),
            "mean_abs_diff": _number(self.mean_abs_diff),
            "max_abs_diff": _number(self.max_abs_diff),
            "causes": dict(self.causes),
            "examples": [{k: _plain(v) for k, v in e.items()} for e in self.examples],
            "not_recomputable": self.not_recomputable,
            "note": self.note,
        }


@dataclass(frozen=True)
class SkewReport:
    """The skew audit of one model version over [start, end]: `rows` logged rows, per feature."""

    model: str
    version: int
    start: datetime | None
    end: datetime | None
    rows: int
    features: dict[str, FeatureSkew]

    @property
    def mismatched(self) -> int:
        """Mismatched (row, feature) pairs over every feature."""
        return sum(f.mismatched for f in self.features.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "rows": self.rows,
            "features": {n: f.to_dict() for n, f in self.features.items()},
        }


@dataclass(frozen=True)
class _Input:
    """One feature input of the model: its name in the log, the result column, where it comes from."""

    name: str
    ref: str
    column: str  # the recomputed value's column in the comparison table
    view: FeatureView | None  # None: an on-demand view's feature
    applied_at: datetime | None  # on-demand: when its view was last applied
    numeric: bool
    floating: bool


def skew(monitor: Monitor, mv: ModelVersion, window: Window, examples: int = 5) -> SkewReport:
    """Replay what `mv` served in `window` against a point-in-time recomputation; see the module docstring."""
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
        raise MonitoringError(f"examples must be a whole number, 0 or more, got {examples!r}")
    from .drift import reading_log

    store = monitor.store
    feature_inputs = [i for i in mv.inputs if i.ref is not None]
    con = _connection(store)
    try:
        with reading_log(monitor, mv, window):
            found = prediction_relation(con, monitor.log_path, mv.name, mv.version, window.start, window.end)
            if not found:
                return _report(mv, window, 0, {i.name: _empty(i.name) for i in feature_inputs})
            log = arrow_table(con, "SELECT * EXCLUDE (model, model_version, prediction) FROM __fs_log")
        fields = _request_fields(store, mv)
        entity_cols = _entity_columns(
            [c for c in log.column_names if c not in LOG_COLUMNS], mv, store, fields
        )
        if log.num_rows == 0 or not feature_inputs:
            return _report(mv, window, log.num_rows, {i.name: _empty(i.name) for i in feature_inputs})
        recomputed, rows_of = _recompute(store, mv, log, entity_cols, fields)
        inputs = _inputs(store, mv, feature_inputs, recomputed, log)
        cmp = pa.table(
            {
                "__i": pa.array(np.arange(log.num_rows, dtype=np.int64)),
                **{
                    c: log.column(c) for c in ("request_id", "row", "ts", "features", "missing", *entity_cols)
                },
                **{i.column: recomputed[i.name] for i in inputs},
                **{f"__r{k}": rows_of[i.name] for k, i in enumerate(inputs)},
            }
        )
        con.register("__fs_cmp", cmp)
        skipped = {i.name: log.num_rows - _count_true(rows_of[i.name]) for i in inputs}
        if all(skipped[i.name] == log.num_rows for i in inputs):
            needed = sorted({f for i in inputs for f in fields.get(parse_ref(i.ref)[0], ())})
            raise MonitoringError(
                f"model {mv.ref}: none of the {log.num_rows} logged rows in the window can be recomputed: "
                f"they lack request value(s) {', '.join(needed)}, which its on-demand features read (rows "
                "logged before request values were logged); audit a window starting after the upgrade "
                "that logs them (--since / start=)"
            )
        notes = {i.name: _note(i.ref, fields, skipped[i.name]) for i in inputs if skipped[i.name]}
        return _compare(con, store, mv, window, log.num_rows, inputs, entity_cols, examples, skipped, notes)
    finally:
        con.close()


def _count_true(mask: pa.ChunkedArray) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0)


def _request_fields(store: Any, mv: ModelVersion) -> dict[str, tuple[str, ...]]:
    """{on-demand view: the request-source fields it reads} of the model's on-demand inputs."""
    from ..on_demand import RequestSource

    catalog = store.catalog
    out: dict[str, tuple[str, ...]] = {}
    for r in catalog.resolve(mv.feature_refs) if mv.feature_refs else []:
        sources = getattr(r.view, "request_sources", ())
        if not sources:
            continue
        names: list[str] = []
        for source in sources:
            src = catalog.sources.get(source.name, source)
            if isinstance(src, RequestSource):
                names += [f.name for f in src.schema if f.name not in names]
        out[r.view.name] = tuple(names)
    return out


def _entity_columns(
    columns: list[str], mv: ModelVersion, store: Any, fields: dict[str, tuple[str, ...]]
) -> dict[str, str]:
    """{log column: the join key or request value it holds}. Serving logs a key named like one of
    the log's own columns as `entity_<key>`; only that rename is undone (a key may be named
    `entity_ts` itself)."""
    own = set(mv.request_features) | {f for names in fields.values() for f in names}
    for r in store.catalog.resolve(mv.feature_refs) if mv.feature_refs else []:
        own |= set(getattr(r.view, "join_keys", ()))
        for p in getattr(r.view, "projections", ()):
            own |= set(store.catalog.view(p.view_name).join_keys)
    out = {}
    for c in columns:
        bare = c[len("entity_") :]
        renamed = c.startswith("entity_") and bare in LOG_COLUMNS and c not in own
        out[c] = bare if renamed else c
    return out


def _recompute(
    store: Any,
    mv: ModelVersion,
    log: pa.Table,
    entity_cols: dict[str, str],
    fields: dict[str, tuple[str, ...]],
) -> tuple[dict[str, pa.ChunkedArray], dict[str, pa.ChunkedArray]]:
    """({input: its point-in-time recomputed value per logged row}, {input: which rows could be
    recomputed}): ONE bitemporal join of the model's features for the plain views (and on-demand
    views without request values) over every row, and one per set of request fields over the rows
    that have every one of them (logs written before request values were logged lack them)."""
    import pyarrow.compute as pc

    n = log.num_rows
    by_name = {name: c for c, name in entity_cols.items()}
    every = {f for names in fields.values() for f in names} | set(mv.request_features)
    groups: dict[tuple[str, ...], list[Any]] = {}
    for inp in mv.inputs:
        if inp.ref is not None:
            groups.setdefault(fields.get(parse_ref(inp.ref)[0], ()), []).append(inp)
    values: dict[str, pa.ChunkedArray] = {}
    rows_of: dict[str, pa.ChunkedArray] = {}
    for needed, group in groups.items():
        mask = pa.chunked_array([pa.array(np.ones(n, dtype=bool))])
        for f in needed:
            column = by_name.get(f)
            mask = (
                pc.and_(mask, pc.is_valid(log.column(column)))
                if column
                else pa.chunked_array([pa.array(np.zeros(n, dtype=bool))])
            )
        keep = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        for inp in group:
            rows_of[inp.name] = mask
        if len(keep) == 0:
            for inp in group:
                values[inp.name] = pa.chunked_array([pa.nulls(n)])
            continue
        entity = {
            name: log.column(c).take(pa.array(keep))
            for c, name in entity_cols.items()
            if name not in every or name in needed
        }
        entity["event_timestamp"] = log.column("ts").take(pa.array(keep))
        offline = store.get_historical_features(
            pa.table(entity),
            features=[i.ref for i in group],
            full_feature_names=mv.full_feature_names,
            bitemporal=True,
        ).to_arrow()
        position = np.full(n, -1, dtype=np.int64)
        position[keep] = np.arange(len(keep))
        back = pa.array(position, mask=position < 0)  # each logged row's row in `offline` (null: none)
        for inp in group:
            column = offline.column(_result_column(mv, inp.name, inp.ref, offline))
            values[inp.name] = column if len(keep) == n else column.take(back)
    return values, rows_of


def _note(ref: str, fields: dict[str, tuple[str, ...]], skipped: int) -> str:
    """Why `skipped` logged rows could not recompute on-demand feature `ref`."""
    view = parse_ref(ref)[0]
    return (
        f"{skipped} logged row(s) lack request value(s) {', '.join(fields.get(view, ()))} that on-demand "
        f"view '{view}' reads (logged before request values were logged): not recomputable, left out of total"
    )


def _connection(store: Any) -> duckdb.DuckDBPyConnection:
    """A cursor on the process's DuckDB database, as retrieval takes (opening one costs more than the
    comparison), or a database of its own when a source ATTACHes files."""
    from ..definitions import DuckDBSource
    from ..offline.retrieval import _connection as connection

    attaches = any(isinstance(s, DuckDBSource) and s.database for s in store.catalog.sources.values())
    return connection(private=attaches)


def _compare(
    con: duckdb.DuckDBPyConnection,
    store: Any,
    mv: ModelVersion,
    window: Window,
    n: int,
    inputs: list[_Input],
    entity_cols: dict[str, str],
    examples: int,
    skipped: dict[str, int],
    notes: dict[str, str],
) -> SkewReport:
    # One pass: a status code and a |diff| per feature and row, aggregated; the mismatched rows' codes
    # come back as lists (they become the small table `__fs_status` the cause queries read).
    inner = ["__i"]
    cols = ["__i"]
    for k, i in enumerate(inputs):
        served, gone = f"struct_extract(features, {quote_literal(i.name)})", quote_literal(i.name)
        cast = "DOUBLE" if i.floating else None  # integers compare exactly, other values as they are
        inner += [
            f"{served if cast is None else f'CAST({served} AS {cast})'} AS __s{k}",
            f"{quote_ident(i.column) if cast is None else f'CAST({quote_ident(i.column)} AS {cast})'} AS __o{k}",
            f"coalesce(list_contains(missing, {gone}), false) OR {served} IS NULL AS __g{k}",
        ]
        inner.append(f"__r{k}")
        status, diff = _status_sql(i, k)
        cols += [f"{status} AS __st{k}", f"{diff} AS __d{k}"]
    aggs = []
    for k in range(len(inputs)):
        aggs += [
            *(f"CAST(coalesce(count_if(__st{k} = {_CODE[s]}), 0) AS BIGINT)" for s in _CODE),
            f"CAST(avg(__d{k}) AS DOUBLE)",
            f"CAST(max(__d{k}) AS DOUBLE)",
        ]
    codes = [f"__st{k}" for k in range(len(inputs))]
    mismatch = " OR ".join(f"{c} <> {_CODE[MATCHED]}" for c in codes)
    row = ", ".join(f"{quote_literal(c)}: {c}" for c in ["__i", *codes])
    result = arrow_table(
        con,
        f"SELECT {', '.join(aggs)}, list({{{row}}}) FILTER (WHERE {mismatch}) AS __mismatched FROM "
        f"(SELECT {', '.join(cols)} FROM (SELECT {', '.join(inner)} FROM __fs_cmp))",
    )
    values = [result.column(j)[0].as_py() for j in range(6 * len(inputs))]
    mismatched = result.column("__mismatched").combine_chunks()
    flat = mismatched.flatten() if mismatched[0].is_valid else None
    con.register(
        "__fs_status",
        pa.table(
            {c: flat.field(c) if flat is not None else pa.array([], pa.int64()) for c in ["__i", *codes]}
        ),
    )
    causes = _causes(con, store, inputs, entity_cols)
    shown = _examples(con, inputs, entity_cols, examples, causes) if examples else {}
    features = {}
    for k, i in enumerate(inputs):
        matched, differed, m_on, m_off, mean, top = values[6 * k : 6 * k + 6]
        counts: dict[str, int] = {}
        for cause in causes.get(k, {}).values():
            counts[cause] = counts.get(cause, 0) + 1
        total = n - skipped[i.name]
        features[i.name] = FeatureSkew(
            name=i.name,
            total=total,
            matched=int(matched),
            differed=int(differed),
            missing_online=int(m_on),
            missing_offline=int(m_off),
            match_rate=int(matched) / total if total else None,
            mean_abs_diff=None if mean is None else float(mean),
            max_abs_diff=None if top is None else float(top),
            causes=dict(sorted(counts.items(), key=lambda kv: -kv[1])),
            examples=shown.get(k, []),
            not_recomputable=skipped[i.name],
            note=notes.get(i.name),
        )
    return _report(mv, window, n, features)


def _status_sql(i: _Input, k: int) -> tuple[str, str]:
    """SQL of the status code of input `i` (the k-th) on one row, over the columns __s (served), __o
    (recomputed), __g (served missing or null) and __r (recomputable: NULL status and diff when
    not); and of |served - offline| (numbers that differ)."""
    s, o, g, r = f"__s{k}", f"__o{k}", f"__g{k}", f"__r{k}"
    if i.floating:
        equal = f"({s} = {o} OR (isnan({s}) AND isnan({o})) OR abs({s} - {o}) <= {REL_TOLERANCE} * greatest(abs({s}), abs({o})))"
    elif i.numeric:
        equal = f"({s} = {o})"
    else:
        equal = f"(CAST({s} AS VARCHAR) = CAST({o} AS VARCHAR))"
    status = (
        f"CAST(CASE WHEN NOT {r} THEN NULL WHEN {g} AND {o} IS NULL THEN {_CODE[MATCHED]} WHEN {g} THEN {_CODE[MISSING_ONLINE]} "
        f"WHEN {o} IS NULL THEN {_CODE[MISSING_OFFLINE]} WHEN {equal} THEN {_CODE[MATCHED]} "
        f"ELSE {_CODE[DIFFERED]} END AS TINYINT)"
    )
    if not i.numeric:
        return status, "CAST(NULL AS DOUBLE)"
    diff = f"CASE WHEN {r} AND NOT {g} AND {o} IS NOT NULL AND NOT {equal} THEN abs(CAST({s} AS DOUBLE) - CAST({o} AS DOUBLE)) END"
    return status, diff


def _causes(
    con: duckdb.DuckDBPyConnection, store: Any, inputs: list[_Input], entity_cols: dict[str, str]
) -> dict[int, dict[int, str]]:
    """feature index -> {row index: likely cause} for every mismatched row (module docstring)."""
    mismatched: dict[int, dict[int, str]] = {}
    codes = [f"__st{k}" for k in range(len(inputs))]
    any_mismatch = " OR ".join(f"{c} <> {_CODE[MATCHED]}" for c in codes)
    found = arrow_table(con, f"SELECT __i, {', '.join(codes)} FROM __fs_status WHERE {any_mismatch}")
    rows = found.column("__i").to_pylist()
    for k, c in enumerate(codes):
        statuses = {r: _STATUS[code] for r, code in zip(rows, found.column(c).to_pylist()) if code}
        if statuses:
            mismatched[k] = statuses
    if not mismatched:
        return {}
    lagging: dict[str, set[int]] = {}
    aged: dict[str, set[int]] = {}
    views = {v.name: v for k in mismatched if (v := inputs[k].view) is not None}
    for view in views.values():
        rows = sorted({r for k, m in mismatched.items() if inputs[k].view is view for r in m})
        lagging[view.name], aged[view.name] = _offline_rows(con, store, view, rows, entity_cols)
    out: dict[int, dict[int, str]] = {}
    for k, statuses in mismatched.items():
        i = inputs[k]
        ts = _times(con, list(statuses)) if i.applied_at is not None else {}
        causes = {}
        for r, st in statuses.items():
            if i.applied_at is not None and ts[r] < i.applied_at:
                causes[r] = ON_DEMAND
            elif i.view is not None and r in lagging.get(i.view.name, ()):
                causes[r] = LAG
            elif i.view is not None and st in (MISSING_ONLINE, MISSING_OFFLINE) and r in aged[i.view.name]:
                causes[r] = TTL
            else:
                causes[r] = OTHER
        out[k] = causes
    return out


def _offline_rows(
    con: duckdb.DuckDBPyConnection,
    store: Any,
    view: FeatureView,
    rows: list[int],
    entity_cols: dict[str, str],
) -> tuple[set[int], set[int]]:
    """Of the logged rows `rows`, (lagging, aged): those whose entity has an offline row, created by the
    served time, newer than what the view's runs finished by then had materialized (not for a view fed
    by push only: its online rows arrive as pushed); and, for a view with a ttl, those whose entity has
    an offline row older than the ttl at the served time (what an online OUTSIDE_MAX_AGE was about)."""
    fed_by_runs = not (isinstance(view.source, PushSource) and view.source.batch_source is None)
    if not fed_by_runs and view.ttl is None:
        return set(), set()
    from ..offline.retrieval import feature_rows_sql
    from ..offline.sources import SourceReader

    runs = [(r.end, r.finished_at) for r in store.registry.runs(view.name)]
    con.register(
        "__fs_runs",
        pa.table(
            {
                "end": pa.array([e for e, _ in runs], pa.timestamp("us", tz="UTC")),
                "finished_at": pa.array([f for _, f in runs], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    con.register("__fs_rows", pa.table({"__i": pa.array(rows, pa.int64())}))
    by_name = {name: c for c, name in entity_cols.items()}
    missing = [k for k in view.join_keys if k not in by_name]
    if missing:
        return set(), set()  # the log lacks a key: no entity to look up
    keys = ", ".join(f"c.{quote_ident(by_name[k])} AS {quote_ident(k)}" for k in view.join_keys)
    reader = SourceReader(con, store.repo_path, store.catalog.sources)
    features, _ = feature_rows_sql(store, reader, view)
    on = " AND ".join(f"f.{quote_ident(k)} = m.{quote_ident(k)}" for k in view.join_keys)
    lag = f"f.{EVENT_TS} > cov.covered OR cov.covered IS NULL" if fed_by_runs else "false"
    ttl_us = view.ttl // timedelta(microseconds=1) if view.ttl is not None else None
    aged = f"f.{EVENT_TS} < m.ts - to_microseconds({ttl_us})" if ttl_us is not None else "false"
    sql = (
        f"WITH m AS (SELECT s.__i, c.ts, {keys} FROM __fs_status s JOIN __fs_rows USING (__i) "
        "JOIN __fs_cmp c USING (__i)), "
        'cov AS (SELECT m.__i, max(r."end") AS covered FROM m LEFT JOIN __fs_runs r ON r.finished_at <= m.ts '
        "GROUP BY m.__i) "
        f"SELECT m.__i, bool_or({lag}) AS lag, bool_or({aged}) AS aged "
        f"FROM m JOIN cov USING (__i) JOIN ({features}) f ON {on} "
        f"AND f.{EVENT_TS} <= m.ts AND coalesce(f.{CREATED_TS}, f.{EVENT_TS}) <= m.ts GROUP BY m.__i"
    )
    try:
        found = arrow_table(con, sql).to_pylist()
        return {r["__i"] for r in found if r["lag"]}, {r["__i"] for r in found if r["aged"]}
    finally:
        con.unregister("__fs_runs")
        con.unregister("__fs_rows")


def _times(con: duckdb.DuckDBPyConnection, rows: list[int]) -> dict[int, datetime]:
    con.register("__fs_rows", pa.table({"__i": pa.array(rows, pa.int64())}))
    try:
        found = arrow_table(con, "SELECT __i, ts FROM __fs_cmp JOIN __fs_rows USING (__i)")
    finally:
        con.unregister("__fs_rows")
    return dict(zip(found.column(0).to_pylist(), found.column(1).to_pylist()))


def _examples(
    con: duckdb.DuckDBPyConnection,
    inputs: list[_Input],
    entity_cols: dict[str, str],
    limit: int,
    causes: dict[int, dict[int, str]],
) -> dict[int, list[dict[str, Any]]]:
    """Up to `limit` mismatched rows per feature, oldest first: ids, keys, time, both values, cause."""
    out: dict[int, list[dict[str, Any]]] = {}
    keys = ", ".join(f"c.{quote_ident(c)}" for c in entity_cols)
    for k, i in enumerate(inputs):
        if not causes.get(k):
            continue
        sql = (
            f"SELECT c.request_id, c.row, c.ts, {keys + ', ' if keys else ''}"
            f"struct_extract(c.features, {quote_literal(i.name)}) AS __served, c.{quote_ident(i.column)} AS __offline, "
            f"s.__st{k} AS __status, s.__i FROM __fs_status s "
            "JOIN __fs_cmp c USING (__i) "
            f"WHERE s.__st{k} <> {_CODE[MATCHED]} ORDER BY c.ts, c.request_id, c.row LIMIT {int(limit)}"
        )
        shown = []
        for r in arrow_table(con, sql).to_pylist():
            shown.append(
                {
                    "request_id": r["request_id"],
                    "row": r["row"],
                    "keys": {name: r[c] for c, name in entity_cols.items()},
                    "ts": r["ts"],
                    "served": r["__served"],
                    "offline": r["__offline"],
                    "status": _STATUS[r["__status"]],
                    "cause": causes[k].get(r["__i"], OTHER),
                }
            )
        out[k] = shown
    return out


def _inputs(
    store: Any,
    mv: ModelVersion,
    feature_inputs: list[Any],
    recomputed: dict[str, pa.ChunkedArray],
    log: pa.Table,
) -> list[_Input]:
    catalog = store.catalog
    applied: dict[str, str] = {}
    if any(parse_ref(i.ref)[0] not in catalog.views for i in feature_inputs):  # on-demand inputs
        applied = {
            o["name"]: o["applied_at"]
            for o in store.registry.objects()
            if o["kind"] == "on_demand_feature_view"
        }
    served = log.column("features").type
    names = {served.field(j).name for j in range(served.num_fields)} if pa.types.is_struct(served) else set()
    out = []
    for k, inp in enumerate(feature_inputs):
        if inp.name not in names:
            raise MonitoringError(
                f"model {mv.ref}: the prediction log's `features` lack input '{inp.name}' ({inp.ref}); "
                "it was logged by another version of the model?"
            )
        view_name, _ = parse_ref(inp.ref)
        column = recomputed[inp.name].type
        view = catalog.views.get(view_name)
        when = applied.get(view_name) if view is None else None
        out.append(
            _Input(
                name=inp.name,
                ref=inp.ref,
                column=f"__o{k}",
                view=view,
                applied_at=_parse_time(when) if when else None,
                numeric=_is_number(column),
                floating=pa.types.is_floating(column),
            )
        )
    return out


def _result_column(mv: ModelVersion, name: str, ref: str, offline: pa.Table) -> str:
    """The recomputed column of one input (`view__feature` with full feature names, else `feature`)."""
    view, feature = parse_ref(ref)
    for candidate in (f"{view}__{feature}" if mv.full_feature_names else feature, name):
        if candidate in offline.column_names:
            return candidate
    raise MonitoringError(f"model {mv.ref}: the point-in-time join gave no column for input '{name}' ({ref})")


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _parse_time(text: str) -> datetime:
    from ..materialize import parse_time

    return parse_time(text, "applied_at")


def _empty(name: str) -> FeatureSkew:
    return FeatureSkew(name, 0, 0, 0, 0, 0, None, None, None)


def _report(mv: ModelVersion, window: Window, n: int, features: dict[str, FeatureSkew]) -> SkewReport:
    return SkewReport(mv.name, mv.version, window.start, window.end, n, features)


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _plain(value: Any) -> Any:
    """A value of an example as JSON-able data."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
