"""Writing the online tiles of aggregating views (tiles.py): by materialization and by push.

    periods = rebuild_periods(con, view, staged, start, end)     # before offline storage commits
    write_tiles(online_store, con, view, rows_sql, periods)      # after: tiles from stored events
    push_events(online_store, view, feature_rows)                # pushed events, merged at once

Materialization widens its range to period edges (`hop * k`, tiles.py) and, for every entity with
events in the rebuilt periods, replaces its tiles there with tiles DuckDB computes (GROUP BY keys
and tile; no Python loop per event), keeping its tiles elsewhere: re-running replaces, never adds.
The events are the view's offline storage (the rows materialized, and those pushed offline), read
after the run committed its own: the tiles then hold exactly the events a training set aggregates.
Late rows of an incremental run (created after the watermark, older event time) rebuild the periods
they fall in. The lifetime partial of an entity whose rebuilt periods reach before the edge is
recomputed from all its stored events before it.

A push merges its events into the stored tiles (`OnlineStore.update`): pushing the same event twice
counts it twice online until its period is materialized again.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb
import pyarrow as pa

from ..definitions import FeatureView
from ..offline.aggregate import value_sql
from ..offline.features import CREATED_TS, EVENT_TS, ts_literal
from ..offline.sources import arrow_batches, arrow_table, quote_ident
from . import tiles
from .base import OnlineStore
from .encoding import _key_texts, _python_values, _timestamp_micros, view_prefix
from .tiles import LEAST, Partial, Tiles, TileSpec, spec_of

ENTITIES_PER_UPDATE = 1_000
_LEAST_SQL = "(-9223372036854775807 - 1)"
_FLOATS = ("Float32", "Float64")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _us(dt: datetime) -> int:
    return (dt.astimezone(timezone.utc) - _EPOCH) // _MICRO


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def _floor(expr: str, size: int) -> str:
    """SQL rounding the integer `expr` down to a multiple of `size` (a floor, also before 1970)."""
    return f"(({expr}) - ((({expr}) % {size}) + {size}) % {size})"


@dataclass(frozen=True)
class Periods:
    """The periods a materialization rebuilds: [lo, hi) and the periods of its late rows."""

    lo: int
    hi: int
    late: frozenset[int]

    def __call__(self, start: int) -> bool:
        return self.lo <= start < self.hi or start in self.late

    def sql(self, column: str) -> str:
        cond = f"({column} >= {self.lo} AND {column} < {self.hi})"
        if self.late:
            cond = f"({cond} OR {column} IN ({', '.join(str(p) for p in sorted(self.late))}))"
        return cond


def rebuild_periods(
    con: duckdb.DuckDBPyConnection, view: FeatureView, staged: str | None, start: datetime, end: datetime
) -> Periods:
    """The periods of [start, end] (widened to period edges) and of the staged rows before `start`."""
    spec = spec_of(view)
    lo = spec.period_of(_us(start))
    hi = spec.period_of(_us(end)) + spec.period
    late: frozenset[int] = frozenset()
    if staged is not None:
        p = _floor(f"epoch_us({EVENT_TS})", spec.period)
        found = arrow_table(
            con, f"SELECT DISTINCT {p} AS p FROM {staged} WHERE epoch_us({EVENT_TS}) < {lo}"
        ).column(0)
        late = frozenset(v for v in found.to_pylist() if v is not None)
    return Periods(lo, hi, late)


# -- materialization -------------------------------------------------------------------------------


def _slot_sql(view: FeatureView, spec: TileSpec) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Aggregate expressions of every slot (over events with __v<i>, __e, __c, and __m<i>: the group's
    mean of column i, for m2), and per slot (kind, output column names)."""
    exprs: list[str] = []
    slots: list[tuple[str, list[str]]] = []
    for n, (col, kind) in enumerate(spec.slots):
        v = f"__v{col}"
        dtype = view.input_type(spec.columns[col])
        name = f"__s{n}"
        if kind == "count":
            exprs.append(f"count({v}) AS {name}")
        elif kind == "sum":
            agg = f"fsum({v})" if dtype.name in _FLOATS else f"CAST(sum({v}) AS BIGINT)"
            exprs.append(f"{agg} AS {name}")
        elif kind in ("min", "max"):
            exprs.append(f"{kind}({v}) AS {name}")
        elif kind == "m2":
            # Two passes: the sum of squared deviations from the group's own mean, never sums of squares.
            exprs += [
                f"count({v}) AS {name}n",
                f"fsum({v}) / count({v}) AS {name}m",
                f"fsum(({v} - __m{col}) * ({v} - __m{col})) AS {name}q",
            ]
            slots.append((kind, [f"{name}n", f"{name}m", f"{name}q"]))
            continue
        elif kind in ("first", "last"):
            fn = "min" if kind == "first" else "max"
            exprs.append(f"{fn}({{'e': __e, 'c': __c, 'v': {v}}}) FILTER (WHERE {v} IS NOT NULL) AS {name}")
        else:  # distinct
            exprs.append(f"list(DISTINCT {v}) FILTER (WHERE {v} IS NOT NULL) AS {name}")
        slots.append((kind, [name]))
    return exprs, slots


def _time_range(lo_us: int, hi_us: int) -> str | None:
    """A condition on the stored event time for lo_us <= event us < hi_us (None: not expressible)."""
    try:
        lo = ts_literal(_EPOCH + lo_us * _MICRO)
        hi = ts_literal(_EPOCH + hi_us * _MICRO)
    except OverflowError:
        return None
    return f"{EVENT_TS} >= {lo} AND {EVENT_TS} < {hi}"


def _events_sql(view: FeatureView, spec: TileSpec, rows_sql: str, where: str | None = None) -> str:
    """The stored events, narrowed to the keys, times and aggregated columns (values as tiles hold them)."""
    cols = [quote_ident(k) for k in view.join_keys]
    cols.append(f"epoch_us({EVENT_TS}) AS __e")
    cols.append(f"coalesce(epoch_us({CREATED_TS}), {_LEAST_SQL}) AS __c")
    for i, c in enumerate(spec.columns):
        dtype = view.input_type(c)
        expr = quote_ident(c)
        if dtype.name == "UnixTimestamp":
            expr = f"epoch_us({expr})"
        elif dtype.name == "Float32":
            expr = f"CAST({expr} AS DOUBLE)"
        if dtype.name in ("Float32", "Float64"):
            expr = value_sql(expr, dtype)  # a NaN is a null, as in training sets
        cols.append(f"{expr} AS __v{i}")
    not_null = " AND ".join(f"{quote_ident(k)} IS NOT NULL" for k in view.join_keys)
    inner = f"SELECT {', '.join(cols)} FROM ({rows_sql}) WHERE {not_null} AND {EVENT_TS} IS NOT NULL"
    if where:
        inner += f" AND {where}"
    return (
        f"SELECT *, {_floor('__e', spec.hop)} AS __tile, {_floor('__e', spec.period)} AS __p FROM ({inner})"
    )


def _with_means(spec: TileSpec, relation: str, partition: str) -> str:
    """`relation` with __m<i>, the mean of column i over `partition`, for the columns of m2 slots."""
    cols = sorted({col for col, kind in spec.slots if kind == "m2"})
    if not cols:
        return relation
    means = ", ".join(
        f"fsum(__v{c}) OVER (PARTITION BY {partition}) / count(__v{c}) OVER (PARTITION BY {partition}) AS __m{c}"
        for c in cols
    )
    return f"(SELECT *, {means} FROM {relation})"


def tiles_sql(view: FeatureView, spec: TileSpec, rows_sql: str, periods: Periods, clock: int) -> str:
    """One stream ordered by entity, then kind: its lifetime partial (kind 0, when recomputed), its
    sealed tiles in the rebuilt periods (kind 1, one row per tile, in time order) and its open events
    there (kind 2, one row per event: __e, __c, __v<i>). Slots are columns __s<n> (see _slot_sql)."""
    keys = ", ".join(quote_ident(k) for k in view.join_keys)
    edge = spec.edge(clock)
    exprs, _ = _slot_sql(view, spec)
    ev = f"({_events_sql(view, spec, rows_sql)})"
    low = min(periods.lo, *periods.late) if periods.late else periods.lo
    recent = f"({_events_sql(view, spec, rows_sql, _time_range(low, periods.hi))})"  # lets Parquet skip
    rebuilt = periods.sql("__p")
    sealed = f"(SELECT * FROM {recent} WHERE {rebuilt} AND __p >= {edge} AND __tile + {spec.hop} <= {clock})"
    raw = ", ".join(["__e", "__c", *(f"__v{i}" for i in range(len(spec.columns)))])
    parts = [
        f"SELECT {keys}, 1 AS __kind, __tile, {_floor('__tile', spec.period)} AS __period, "
        f"max(__e) AS __newest, {', '.join(exprs)} "
        f"FROM {_with_means(spec, sealed, f'{keys}, __tile')} GROUP BY {keys}, __tile",
        f"SELECT {keys}, 2 AS __kind, __tile, __e AS __newest, {raw} "
        f"FROM {recent} WHERE {rebuilt} AND __tile + {spec.hop} > {clock}",
    ]
    if spec.lifetime and (periods.lo < edge or any(p < edge for p in periods.late)):
        touched = f"SELECT DISTINCT {keys} FROM {recent} WHERE {rebuilt} AND __p < {edge}"
        old = f"(SELECT * FROM {ev} SEMI JOIN ({touched}) AS __touched USING ({keys}) WHERE __e < {edge})"
        parts.insert(
            0,
            f"SELECT {keys}, 0 AS __kind, NULL AS __tile, max(__e) AS __newest, {', '.join(exprs)} "
            f"FROM {_with_means(spec, old, keys)} GROUP BY {keys}",
        )
    union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
    return f"SELECT * FROM ({union}) ORDER BY {keys}, __kind, __tile, __newest"


def _slot_values(kind: str, column: Any, names: list[str], batch: pa.RecordBatch) -> list[Any]:
    """One slot's values in a batch of tiles_sql, as partials hold them."""
    if kind == "m2":
        n, m, q = (batch.column(c).to_pylist() for c in names)
        return [[a, b, c] if a else None for a, b, c in zip(n, m, q)]
    if kind in ("first", "last"):
        e, c, v = (column.field(f).to_pylist() for f in ("e", "c", "v"))
        valid = column.is_valid().to_pylist()
        return [[a, b, x] if ok else None for ok, a, b, x in zip(valid, e, c, v)]
    values = column.to_pylist()
    if kind == "distinct":
        return [[] if x is None else x for x in values]
    if kind == "count":
        return [0 if x is None else x for x in values]
    return values  # type: ignore[no-any-return]


@dataclass
class _Entity:
    key: bytes
    newest: int | None
    lifetime: Partial | None
    periods: list[int]  # of each sealed tile, in time order
    tiles: list[int]  # its start
    partials: list[Partial]  # its partial
    open: list[list[Any]]


def _entities(
    view: FeatureView,
    spec: TileSpec,
    batches: Iterator[pa.RecordBatch],
    slots: list[tuple[str, list[str]]],
    prefix: bytes,
) -> Iterator[_Entity]:
    """The rows of tiles_sql as one _Entity per entity (its rows are consecutive, tiles in order)."""
    current: _Entity | None = None
    text_of_current: str | None = None
    raw_names = ["__e", "__c", *(f"__v{i}" for i in range(len(spec.columns)))]
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        texts = _key_texts([batch.column(k) for k in view.join_keys])
        kinds = batch.column("__kind").to_pylist()
        newest = batch.column("__newest").to_pylist()
        slot_cols = [_slot_values(kind, batch.column(names[0]), names, batch) for kind, names in slots]
        period_col = batch.column("__period").to_pylist()
        tile_col = batch.column("__tile").to_pylist()
        partials = list(map(list, zip(*slot_cols)))
        raw: list[list[Any]] | None = None
        # runs of equal entity text: where each starts
        bounds = [0, *(i for i in range(1, n) if texts[i] != texts[i - 1]), n]
        for a, b in zip(bounds, bounds[1:]):
            text = texts[a]
            if text is None:
                continue
            if text != text_of_current:
                if current is not None:
                    yield current
                text_of_current = text
                current = _Entity(prefix + text.encode("utf-8", "surrogatepass"), None, None, [], [], [], [])
            assert current is not None
            top = max((t for t in newest[a:b] if t is not None), default=None)
            if top is not None and (current.newest is None or top > current.newest):
                current.newest = top
            if kinds[a] == 1 and kinds[b - 1] == 1:  # (rows are ordered by kind within an entity)
                current.periods.extend(period_col[a:b])
                current.tiles.extend(tile_col[a:b])
                current.partials.extend(partials[a:b])
                continue
            for r in range(a, b):
                kind = kinds[r]
                if kind == 1:
                    current.periods.append(period_col[r])
                    current.tiles.append(tile_col[r])
                    current.partials.append(partials[r])
                elif kind == 2:
                    if raw is None:
                        raw = [batch.column(c).to_pylist() for c in raw_names]
                    current.open.append([col[r] for col in raw])
                else:
                    current.lifetime = partials[r]
    if current is not None:
        yield current


def write_tiles(
    online: OnlineStore,
    con: duckdb.DuckDBPyConnection,
    view: FeatureView,
    rows_sql: str | None,
    periods: Periods,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuild the tiles of `periods` from the stored events `rows_sql` (None: none); returns the
    number of entity blobs written or deleted."""
    if rows_sql is None:
        return 0
    spec = spec_of(view)
    clock = tiles.now_us()
    sql = tiles_sql(view, spec, rows_sql, periods, clock)
    _, slots = _slot_sql(view, spec)
    prefix = view_prefix(online.key_prefix, view.name)
    written = 0
    newest: int | None = None  # the newest event of the rebuilt tiles: the view's newest-event mark
    pending: list[_Entity] = []

    def flush(batch: list[_Entity]) -> int:
        by_key = {e.key: e for e in batch}

        def fn(keys: list[bytes], old: list[bytes | None]) -> list[bytes | None]:
            out = []
            for key, blob in zip(keys, old):
                ent = by_key[key]
                t = Tiles.decode(spec, blob)
                t.replace(
                    periods, (ent.periods, ent.tiles, ent.partials), ent.open, ent.lifetime, clock, ent.newest
                )
                out.append(t.encode(clock))
            return out

        n = online.update([e.key for e in batch], fn)
        if progress is not None:
            progress(len(batch))
        return n

    # Millions of small lists, none in a cycle: the cyclic garbage collector, run every few hundred
    # allocations, would scan them again and again (it tripled the time of this loop).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for entity in _entities(view, spec, iter(arrow_batches(con, sql)), slots, prefix):
            if entity.newest is not None and (newest is None or entity.newest > newest):
                newest = entity.newest
            pending.append(entity)
            if len(pending) >= ENTITIES_PER_UPDATE:
                written += flush(pending)
                pending = []
        if pending:
            written += flush(pending)
    finally:
        if collecting:
            gc.enable()
    if newest is not None:
        online.mark_newest({view.name: _EPOCH + newest * _MICRO})
    return written


# -- push ------------------------------------------------------------------------------------------


def push_events(online: OnlineStore, view: FeatureView, rows: pa.Table) -> int:
    """Merge pushed feature rows (keys, aggregated columns, __event_ts, __created_ts) into the tiles
    of their entities at once; returns the number of entity blobs written."""
    if rows.num_rows == 0:
        return 0
    spec = spec_of(view)
    clock = tiles.now_us()
    prefix = view_prefix(online.key_prefix, view.name)
    texts = _key_texts([rows.column(k) for k in view.join_keys])
    times = _timestamp_micros(rows.column(EVENT_TS)).to_pylist()
    created = (
        _timestamp_micros(rows.column(CREATED_TS)).to_pylist()
        if CREATED_TS in rows.column_names
        else [None] * rows.num_rows
    )
    values = [_python_values(rows.column(c), view.input_type(c), view.name, c) for c in spec.columns]
    for i, column in enumerate(spec.columns):
        if view.input_type(column).name in ("Float32", "Float64"):  # a NaN is a null, as in training sets
            values[i] = [None if v is not None and v != v else v for v in values[i]]
    by_key: dict[bytes, list[list[Any]]] = {}
    for r, text in enumerate(texts):
        if text is None or times[r] is None:
            continue
        c = created[r]
        event = [times[r], LEAST if c is None else c, *(col[r] for col in values)]
        by_key.setdefault(prefix + text.encode("utf-8", "surrogatepass"), []).append(event)
    keys = list(by_key)

    def fn(keys: list[bytes], old: list[bytes | None]) -> list[bytes | None]:
        out = []
        for key, blob in zip(keys, old):
            t = Tiles.decode(spec, blob)
            t.add(by_key[key], clock)
            out.append(t.encode(clock))
        return out

    written = online.update(keys, fn)
    newest = max((t for t in times if t is not None), default=None)
    if newest is not None:
        online.mark_newest({view.name: _EPOCH + newest * _MICRO})
    return written
