"""Time-window aggregations for training sets (SPEC §11), as DuckDB SQL.

For an entity row (keys, time `t`) and an aggregation of column `c` with window `w` over a view
with tile size `hop`, the value aggregates the non-null `c` of the view's events with equal keys and

    align(t - w) <= event time < t        (lifetime, w = None: event time < t)

where `align` rounds down to a multiple of `hop` since the Unix epoch; with `bitemporal=True` also
`coalesce(created, event time) <= t`. No value: `count` and `count_distinct` give 0, the others
NULL (an unknown entity and a null key included). A float NaN counts as a null (`value_sql`).

The query is one range join: each entity row meets its entity's events in the longest requested
window (a hash join on the keys, the times as residual conditions), then one GROUP BY per entity
row computes every requested aggregate, each with a FILTER for its own window. Times are compared
as integer microseconds. Its cost grows with the events each entity row meets: fine for windows
of days over typical entities, heavy for lifetime aggregates over entities with long histories
and many entity rows (a tiled form, as online, would bound it). Choices that make it exact:

- `align` is a floor (DuckDB's `%` truncates toward zero, which would round times before 1970 up);
- float sums and means use `fsum` (compensated); integer sums stay integers;
- `var`/`std` are two-pass: the window's mean first (a window function over the entity row's
  events), then the sum of squared deviations. DuckDB's `var_samp` is streaming (Welford), which
  loses precision when the values are large beside their spread (tests use values near 1e9);
- `first`/`last` order by (event time, created time with null lowest, value): `arg_min`/`arg_max`
  over a row of the three, a null created time replaced by the least BIGINT (DuckDB ranks a null
  inside a row above every value).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from .features import CREATED_TS, EVENT_TS, ts_literal
from .sources import quote_ident

if TYPE_CHECKING:
    from ..types import ValueType
    from .pit import PitView

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LEAST_BIGINT = "(-9223372036854775807 - 1)"  # a null created time ranks below every real one
_FLOATS = ("Float32", "Float64")


def aggregate_sql(
    entity: str,
    view: PitView,
    row_id: str,
    entity_ts: str,
    bitemporal: bool,
    ts_range: tuple[datetime, datetime] | None,
) -> str:
    """SELECT `row_id` and the view's requested aggregates (named by `output_names`), one row per row of
    `entity` (a relation with `row_id`, the join keys and `entity_ts`), in no particular order."""
    aggs = view.aggregations
    windows = sorted({a.window_us for a in aggs if a.window_us is not None})
    lifetime = any(a.window_us is None for a in aggs)
    hop = view.hop_us
    keys = view.join_keys
    columns = list(dict.fromkeys(a.column for a in aggs))
    needs_created = bitemporal or any(a.function in ("first", "last") for a in aggs)

    # The events, narrowed to the columns used and to the times some entity row can use.
    ev_cols = [*(quote_ident(k) for k in keys), f"epoch_us({EVENT_TS}) AS __e"]
    if needs_created:
        ev_cols.append(f"coalesce(epoch_us({CREATED_TS}), {_LEAST_BIGINT}) AS __c")
    if bitemporal:
        ev_cols.append(f"epoch_us(coalesce({CREATED_TS}, {EVENT_TS})) AS __k")
    types = {a.column: t for a, t in zip(aggs, view.input_types)}
    ev_cols += [f"{value_sql(quote_ident(c), types[c])} AS __v{i}" for i, c in enumerate(columns)]
    events = f"SELECT {', '.join(ev_cols)} FROM ({view.rows_sql})"
    prune = _prune(ts_range, None if lifetime or not windows else windows[-1], hop)
    if prune:
        events += f" WHERE {prune}"

    # The entity rows with the start of each window.
    en_cols = [row_id, *(quote_ident(k) for k in keys), f"epoch_us({entity_ts}) AS __t"]
    en_cols += [f"{_align(f'epoch_us({entity_ts}) - {w}', hop)} AS __lo{w}" for w in windows]
    on = [f"ev.{quote_ident(k)} = en.{quote_ident(k)}" for k in keys]  # a null key matches nothing
    on.append("ev.__e < en.__t")  # the end is exact and excludes t
    if not lifetime and windows:
        on.append(f"ev.__e >= en.__lo{windows[-1]}")
    if bitemporal:
        on.append("ev.__k <= en.__t")
    pair_cols = [f"en.{row_id}", *(f"en.__lo{w}" for w in windows), "ev.__e"]
    if needs_created:
        pair_cols.append("ev.__c")
    pair_cols += [f"ev.__v{i}" for i in range(len(columns))]
    pairs = (
        f"SELECT {', '.join(pair_cols)}\n"
        f"  FROM (SELECT {', '.join(en_cols)} FROM {entity}) AS en\n"
        f"  LEFT JOIN ({events}) AS ev ON {' AND '.join(on)}"
    )

    def value(column: str) -> str:
        return f"__v{columns.index(column)}"

    def where(column: str, window_us: int | None) -> str:
        cond = f"{value(column)} IS NOT NULL"
        if window_us is not None:
            cond += f" AND __e >= __lo{window_us}"
        return f"FILTER (WHERE {cond})"

    # var/std: each (column, window)'s mean beside every event of the entity row (the first pass).
    spreads = list(dict.fromkeys((a.column, a.window_us) for a in aggs if a.function in ("var", "std")))
    if spreads:
        means = ", ".join(
            f"fsum({value(c)}) {where(c, w)} OVER (PARTITION BY {row_id}) "
            f"/ count({value(c)}) {where(c, w)} OVER (PARTITION BY {row_id}) AS __m{i}"
            for i, (c, w) in enumerate(spreads)
        )
        pairs = f"SELECT *, {means} FROM ({pairs})"

    selected = []
    for a, dtype, out in zip(aggs, view.input_types, view.output_names):
        v, f, fn = value(a.column), where(a.column, a.window_us), a.function
        if fn == "count":
            expr = f"count({v}) {f}"
        elif fn == "count_distinct":
            expr = f"count(DISTINCT {v}) {f}"
        elif fn == "sum":
            expr = f"fsum({v}) {f}" if dtype.name in _FLOATS else f"CAST(sum({v}) {f} AS BIGINT)"
        elif fn == "mean":
            expr = f"fsum({v}) {f} / count({v}) {f}" if dtype.name in _FLOATS else f"avg({v}) {f}"
        elif fn in ("min", "max"):
            expr = f"{fn}({v}) {f}"
        elif fn in ("var", "std"):
            m = f"__m{spreads.index((a.column, a.window_us))}"
            n = f"count({v}) {f}"
            expr = f"CASE WHEN {n} >= 2 THEN fsum(({v} - {m}) * ({v} - {m})) {f} / ({n} - 1) END"
            if fn == "std":
                expr = f"sqrt({expr})"
        elif fn in ("first", "last"):
            expr = f"{'arg_min' if fn == 'first' else 'arg_max'}({v}, (__e, __c, {v})) {f}"
        else:  # definitions.FUNCTIONS is checked at definition time
            raise ValueError(f"aggregation '{a.feature_name}': unknown function {fn!r}")
        selected.append(f"{expr} AS {quote_ident(out)}")
    return f"SELECT {row_id}, {', '.join(selected)}\nFROM ({pairs})\nGROUP BY {row_id}"


def value_sql(column: str, dtype: ValueType) -> str:
    """An aggregated column's value as aggregations see it: a float NaN is a null (skipped), as pandas
    users read it, so no aggregate depends on how NaN orders or propagates; online tiles do the same."""
    if dtype.name in _FLOATS:
        # Not `isnan(x)`: DuckDB 2.0 folds it to false when a Parquet file's statistics show no NaN,
        # which NaN values do not enter; isfinite/isinf are not folded (tests read NaN from Parquet).
        return f"CASE WHEN isfinite({column}) OR isinf({column}) THEN {column} END"
    return column


def _align(expr: str, hop_us: int) -> str:
    """SQL rounding the integer `expr` down to a multiple of `hop_us` (a floor, also below zero)."""
    return f"(({expr}) - ((({expr}) % {hop_us}) + {hop_us}) % {hop_us})"


def align_us(us: int, hop_us: int) -> int:
    """`us` rounded down to a multiple of `hop_us` (Python's // is a floor)."""
    return (us // hop_us) * hop_us


def _prune(ts_range: tuple[datetime, datetime] | None, longest_us: int | None, hop_us: int) -> str:
    """A condition on the event time keeping the events some entity row in `ts_range` can use (lets
    Parquet skip row groups): before the latest time, and, unless a lifetime aggregate is asked
    (`longest_us` None), from the start of the earliest row's longest window."""
    if ts_range is None:
        return ""
    low, high = ts_range
    cond = f"{EVENT_TS} < {ts_literal(high)}"
    if longest_us is not None:
        start_us = align_us(_epoch_us(low) - longest_us, hop_us)
        try:
            start = _EPOCH + timedelta(microseconds=start_us)
        except OverflowError:  # before year 1: nothing to prune
            return cond
        cond += f" AND {EVENT_TS} >= {ts_literal(start)}"
    return cond


def _epoch_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1)
