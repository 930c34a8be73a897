"""Feature statistics (SPEC §12): a mergeable profile of each column of some rows.

    profile = profile_relation(con, "read_parquet('staged/*.parquet')", ["conv_rate", "city"])
    profile_table(arrow_table, ["conv_rate", "city"])        # the same for an Arrow table
    merge_profiles(profile_a, profile_b)                     # == the profile of both sets of rows
    store.monitor.stats("driver_hourly_stats").to_dict()     # per run and merged (`view_stats`)

A profile is JSON (it is stored with each materialization run and each saved training set):
`{"version": 1, "of": "features", "rows": n, "columns": {name: {...}}}`. Per column:

- exact and mergeable, from one DuckDB aggregate query over all columns: `count` (non-null
  values), `nulls`, `nan` (how many of the nulls were a float NaN: a NaN is a null, as the
  aggregations treat it), `min`, `max` (numbers, strings, timestamps as ISO text), `true` /
  `false` (booleans); `mean` and `m2` (the sum of squared deviations) of numbers come from the
  scan that feeds their quantile sketches (two passes over each batch, batches merged with
  Chan's formula, as profiles merge), over the finite values only: `inf` counts the values that
  are +-infinity (they are in `count`, `min`, `max` and the quantiles, not in the mean and std);
- sketches (Apache DataSketches, base64 in the JSON), merged by the library's own merge:
  `kll` (quantiles of numbers; fed from Arrow batches, one numpy array per call),
  `frequent` (top values of strings; fed one weighted update per distinct value, from a GROUP BY),
  `distinct`: an HLL fed one update per distinct value (from one GROUPING SETS query), when the
  run's column has at most DISTINCT_CAP distinct values; above that a per-value Python call would
  cost more than the materialization, so the column keeps DuckDB's `approx_count_distinct` of the
  run, which does not merge: a merged profile then only bounds the distinct count (the largest
  run's count <= distinct <= the sum of the runs' counts).

A string column with more than TOP_FEED distinct values feeds only its TOP_FEED most frequent
values to the frequent-items sketch; `unfed` is the count of the most frequent value left out,
an upper bound on what any value's count may lack (merged profiles add them up).
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import MonitoringError, unknown
from ..offline.sources import DUCKDB_FLOATS, DUCKDB_INTEGERS, DUCKDB_WIDE_INTEGERS

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    from numpy.typing import NDArray

    from ..definitions import FeatureView
    from ..store import FeatureStore

log = logging.getLogger("featurestore.monitoring")

VERSION = 1
KLL_K = 200  # normalized rank error about 1.3% (kll_doubles_sketch.get_normalized_rank_error)
HLL_LG_K = 12  # relative standard error about 1.6%
FREQUENT_LG_MAX = 10  # 768 values tracked exactly; beyond, error <= 0.0034 x the total weight
DISTINCT_CAP = 100_000  # distinct values per run fed to the HLL; above: DuckDB's per-run estimate
TOP_FEED = 10_000  # the most frequent values of a high-cardinality string column fed per run
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS = 20
TOP = 10
BATCH_ROWS = 262_144

_INTEGERS = DUCKDB_INTEGERS | DUCKDB_WIDE_INTEGERS
_WIDE_INTEGERS = {"UBIGINT", *DUCKDB_WIDE_INTEGERS}  # beyond int64: read as doubles
_FLOATS = DUCKDB_FLOATS
_TIMESTAMPS = {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- computing a profile ---------------------------------------------------------------------------


def profile_table(table: pa.Table, columns: list[str], of: str = "rows") -> dict[str, Any]:
    """The profile of `columns` of an in-memory Arrow table (a saved training set)."""
    from ..offline.sources import duckdb_connection

    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise MonitoringError(f"cannot profile columns {missing}: the table has {table.column_names}")
    con = duckdb_connection()
    try:
        con.register("__fs_profiled", table)
        return profile_relation(con, "__fs_profiled", columns, of=of, tables={"__fs_profiled": table})
    finally:
        con.close()


def profile_relation(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[str],
    of: str = "rows",
    tables: Mapping[str, pa.Table] | None = None,
) -> dict[str, Any]:
    """The profile of `columns` of `relation` (a table or a `read_parquet(...)` expression):
    one aggregate query for the exact fields of every column, then one GROUPING SETS query for
    the distinct values of the columns with few of them (and the top values of strings), both on
    a cursor of `con` in a worker thread (DuckDB lets go of the GIL), while this thread feeds the
    quantile sketches of the numeric columns from one Arrow scan (and sums their mean and m2).

    A cursor does not see `con`'s temporary views and registered tables: `tables` names the
    Arrow tables `relation` reads, registered on the cursor too."""
    from concurrent.futures import ThreadPoolExecutor

    from ..offline.sources import quote_ident

    if not columns:
        ((rows,),) = con.execute(f"SELECT count(*) FROM {relation}").fetchall()
        return {"version": VERSION, "of": of, "rows": int(rows), "columns": {}}
    types = con.sql(f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM {relation}").types
    kinds = {c: _kind(str(t)) for c, t in zip(columns, types, strict=True)}
    exprs = {c: _value_sql(quote_ident(c), str(t), kinds[c]) for c, t in zip(columns, types, strict=True)}
    cols: dict[str, dict[str, Any]] = {}
    numeric = [c for c in columns if kinds[c] == "numeric"]
    cursor = con.cursor()
    try:
        for name, table in (tables or {}).items():
            cursor.register(name, table)
        with ThreadPoolExecutor(1) as pool:
            exact = pool.submit(_exact_and_distinct, cursor, relation, columns, kinds, exprs, cols)
            scanned = _numeric_scan(con, relation, numeric, exprs) if numeric else {}
            rows = exact.result()
    finally:
        cursor.close()
    for c in numeric:
        col, scan = cols[c], scanned[c]
        if scan["count"] != col["count"]:  # the same rows, read twice: a bug if they differ
            raise MonitoringError(f"column '{c}': {scan['count']} values scanned, {col['count']} counted")
        col["inf"] = scan["inf"]
        if col["count"]:
            col.update(kll=scan["kll"])
        finite = col["count"] > scan["inf"]
        col.update(mean=scan["mean"] if finite else None, m2=scan["m2"] if finite else None)
    return {"version": VERSION, "of": of, "rows": rows, "columns": cols}


def _exact_and_distinct(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[str],
    kinds: dict[str, str],
    exprs: dict[str, str],
    out: dict[str, dict[str, Any]],
) -> int:
    """The exact fields, then the distinct values and top values; fills `out`, returns the rows."""
    rows = _exact(con, relation, columns, kinds, exprs, out)
    counted = [c for c in columns if kinds[c] in ("numeric", "string") and out[c]["count"]]
    few = [c for c in counted if out[c]["distinct"]["upper"] <= DISTINCT_CAP]
    if few:
        _distinct_values(con, relation, few, kinds, exprs, out)
    for c in counted:
        if kinds[c] == "string" and c not in few:
            _top_values(con, relation, c, exprs[c], out[c])
    return rows


def _kind(duckdb_type: str) -> str:
    if duckdb_type in _INTEGERS or duckdb_type in _FLOATS or duckdb_type.startswith("DECIMAL"):
        return "numeric"
    if duckdb_type == "VARCHAR" or duckdb_type.startswith("ENUM"):
        return "string"
    if duckdb_type == "BOOLEAN":
        return "bool"
    if duckdb_type in _TIMESTAMPS:
        return "timestamp"
    return "other"


def _value_sql(column: str, duckdb_type: str, kind: str) -> str:
    """A column's value as statistics see it: a float NaN is a null (as aggregations see it), a
    decimal or an integer wider than int64 a double, an enum its text, a date its midnight."""
    from ..offline.aggregate import value_sql
    from ..types import Float64

    if duckdb_type in _FLOATS:
        return value_sql(column, Float64)
    if duckdb_type.startswith("DECIMAL") or duckdb_type in _WIDE_INTEGERS:
        return f"CAST({column} AS DOUBLE)"
    if kind == "string" and duckdb_type != "VARCHAR":
        return f"CAST({column} AS VARCHAR)"
    if duckdb_type == "DATE":
        return f"CAST({column} AS TIMESTAMP)"
    return column


def _exact(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[str],
    kinds: dict[str, str],
    exprs: dict[str, str],
    out: dict[str, dict[str, Any]],
) -> int:
    """The exact fields of every column (but the mean and m2 of numbers) in one aggregate query;
    fills `out`, returns the rows."""
    from ..offline.sources import quote_ident

    select = ["count(*)"]
    fields: list[tuple[str, list[str]]] = []
    for c in columns:
        v, kind = exprs[c], kinds[c]
        names = ["count", "raw"]
        select += [f"count({v})", f"count({quote_ident(c)})"]
        if kind == "numeric":  # mean and m2: `_numeric_scan`
            names += ["min", "max", "approx"]
            select += [f"min({v})", f"max({v})", f"approx_count_distinct({v})"]
        elif kind == "string":
            names += ["min", "max", "approx"]
            select += [f"min({v})", f"max({v})", f"approx_count_distinct({v})"]
        elif kind == "bool":
            names += ["true"]
            select += [f"coalesce(count_if({v}), 0)"]
        elif kind == "timestamp":
            names += ["min", "max"]
            select += [f"epoch_us(min({v}))", f"epoch_us(max({v}))"]
        fields.append((c, names))
    (row,) = con.execute(f"SELECT {', '.join(select)} FROM {relation}").fetchall()
    rows = int(row[0])
    values = iter(row[1:])
    for c, names in fields:
        got = dict(zip(names, values, strict=False))
        count = int(got["count"])
        col: dict[str, Any] = {
            "kind": kinds[c],
            "count": count,
            "nulls": rows - count,
            "nan": int(got["raw"]) - count,
        }
        if kinds[c] == "numeric":
            col.update(min=got["min"], max=got["max"])
        elif kinds[c] == "string":
            col.update(min=got["min"], max=got["max"])
        elif kinds[c] == "bool":
            col.update(true=int(got["true"]), false=count - int(got["true"]))
        elif kinds[c] == "timestamp":
            col.update(min=_iso(got["min"]), max=_iso(got["max"]))
        if "approx" in got:
            col["distinct"] = {"lower": int(got["approx"]), "upper": int(got["approx"])}
        out[c] = col
    return rows


def _numeric_scan(
    con: duckdb.DuckDBPyConnection, relation: str, columns: list[str], exprs: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per numeric column, from one Arrow scan: a KLL sketch (fed one numpy array per batch), and
    the count, mean and m2 (exact: two passes over each batch in memory, batches merged with
    Chan's formula; cheaper than DuckDB's var_pop, which costs as much as the rest of the exact
    query), over the finite values (`inf`: how many were +-infinity). Nulls (and NaN) left out."""
    import numpy as np
    from datasketches import kll_doubles_sketch

    from ..offline.sources import arrow_batches

    sketches = [kll_doubles_sketch(KLL_K) for _ in columns]
    moments = [(0, 0.0, 0.0) for _ in columns]
    counts = [0 for _ in columns]
    infinite = [0 for _ in columns]
    # Doubles from DuckDB (its threads convert integers faster than numpy here)
    select = ", ".join(f"CAST({exprs[c]} AS DOUBLE)" for c in columns)
    for batch in arrow_batches(con, f"SELECT {select} FROM {relation}", BATCH_ROWS):
        for i, array in enumerate(batch.columns):
            if array.null_count:
                array = array.drop_null()
            if not len(array):
                continue
            values = _doubles(array)
            sketches[i].update(values)
            counts[i] += len(values)
            finite = np.isfinite(values)
            if not finite.all():
                infinite[i] += int(len(values) - finite.sum())
                values = values[finite]
                if not len(values):
                    continue
            mean = float(values.mean())
            deviations = values - mean  # squared with numpy, not BLAS: its threads would spin
            m2 = float(np.square(deviations, out=deviations).sum())
            moments[i] = _chan(*moments[i], len(values), mean, m2)
    return {
        c: {"kll": _b64(sketch.serialize()), "count": count, "inf": inf, "mean": mean, "m2": m2}
        for c, sketch, count, inf, (_, mean, m2) in zip(
            columns, sketches, counts, infinite, moments, strict=True
        )
    }


def _doubles(array: pa.Array) -> NDArray[np.float64]:
    """A double array without nulls as a writable numpy copy (the sketch takes only a writable
    array), from its data buffer: pyarrow's own conversion (`to_numpy`, `np.asarray`) imports
    pandas, which the rest of a materialization never loads."""
    import numpy as np

    if array.type != pa.float64() or array.null_count:
        raise MonitoringError(
            f"numeric scan: expected doubles without nulls, got {array.type} with {array.null_count} nulls"
        )
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=np.float64, count=len(array), offset=array.offset * 8).copy()


def _chan(na: int, ma: float, m2a: float, nb: int, mb: float, m2b: float) -> tuple[int, float, float]:
    """(count, mean, m2) of two sets of values from each one's (Chan et al.'s parallel variance)."""
    if not na:
        return nb, mb, m2b
    if not nb:
        return na, ma, m2a
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n


def _distinct_values(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    columns: list[str],
    kinds: dict[str, str],
    exprs: dict[str, str],
    out: dict[str, dict[str, Any]],
) -> None:
    """Every distinct value and its count, for the columns with few of them, in one GROUPING SETS
    query: an HLL per column (one update per distinct value), a frequent-items sketch per string."""
    import pyarrow.compute as pc
    from datasketches import frequent_strings_sketch, hll_sketch, tgt_hll_type

    from ..offline.sources import arrow_table

    names = [f"__v{i}" for i in range(len(columns))]
    inner = ", ".join(f"{exprs[c]} AS {n}" for c, n in zip(columns, names, strict=True))
    grouped = ", ".join(f"GROUPING({n}) AS __g{i}" for i, n in enumerate(names))
    sets = ", ".join(f"({n})" for n in names)
    table = arrow_table(
        con,
        f"SELECT {', '.join(names)}, {grouped}, count(*) AS __n FROM (SELECT {inner} FROM {relation}) "
        f"GROUP BY GROUPING SETS ({sets})",
    )
    for i, c in enumerate(columns):
        # GROUPING() is 0 in the rows of this column's set (no Python scalar: converting one
        # imports pandas, which the rest of a materialization never loads)
        grouping = pc.cast(table[f"__g{i}"], pa.bool_())
        mine = table.filter(pc.and_(pc.invert(grouping), pc.is_valid(table[names[i]])))
        values = mine[names[i]].to_pylist()
        hll = hll_sketch(HLL_LG_K, tgt_hll_type.HLL_4)
        for v in values:
            hll.update(v)
        out[c]["distinct"] = {"hll": _b64(hll.serialize_compact())}
        if kinds[c] == "string":
            frequent = frequent_strings_sketch(FREQUENT_LG_MAX)
            for v, n in zip(values, mine["__n"].to_pylist(), strict=True):
                frequent.update(v, n)
            out[c].update(frequent=_b64(frequent.serialize()), unfed=0)


def _top_values(
    con: duckdb.DuckDBPyConnection, relation: str, column: str, expr: str, out: dict[str, Any]
) -> None:
    """The frequent-items sketch of a string column with many distinct values: its TOP_FEED most
    frequent values only; `unfed` is the count of the next one (what any value may lack)."""
    from datasketches import frequent_strings_sketch

    from ..offline.sources import arrow_table

    top = arrow_table(
        con,
        f"SELECT v, count(*) AS n FROM (SELECT {expr} AS v FROM {relation}) WHERE v IS NOT NULL "
        f"GROUP BY v ORDER BY n DESC LIMIT {TOP_FEED + 1}",
    )
    values, counts = top["v"].to_pylist(), top["n"].to_pylist()
    frequent = frequent_strings_sketch(FREQUENT_LG_MAX)
    for v, n in zip(values[:TOP_FEED], counts[:TOP_FEED], strict=True):
        frequent.update(v, n)
    out.update(frequent=_b64(frequent.serialize()), unfed=counts[TOP_FEED] if len(counts) > TOP_FEED else 0)


def view_profile(con: duckdb.DuckDBPyConnection, view: FeatureView, relation: str) -> dict[str, Any]:
    """The profile of a view's rows in `relation` (staged or stored feature rows): its features,
    or for an aggregating view the aggregated input columns (its events, "of": "events")."""
    columns = [f.name for f in view.row_fields]
    return profile_relation(con, relation, columns, of="events" if view.is_aggregating else "features")


def run_profile(
    con: duckdb.DuckDBPyConnection, view: FeatureView, relation: str
) -> tuple[dict[str, Any] | None, float]:
    """For materialization: (the profile of the run's rows, the seconds it took). A profile that
    fails is logged (with its traceback) and gives None: statistics describe the rows, they never
    decide whether the rows are written."""
    began = time.perf_counter()
    try:
        profile: dict[str, Any] | None = view_profile(con, view, relation)
    except Exception:
        log.warning(
            "view '%s': computing the statistics of the run failed; run recorded without them",
            view.name,
            exc_info=True,
        )
        profile = None
    return profile, time.perf_counter() - began


# -- merging ---------------------------------------------------------------------------------------


def merge_profiles(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The profile of the rows of `a` and of `b` together: exact fields exactly (mean and m2 to
    float rounding), sketches by their library's merge. A column only one side has counts as all
    null on the other side's rows."""
    for p in (a, b):
        if p.get("version") != VERSION:
            raise MonitoringError(
                f"a statistics profile has version {p.get('version')!r}; this featurestore reads {VERSION}"
            )
    if a.get("of") != b.get("of"):
        raise MonitoringError(f"cannot merge a profile of {a.get('of')} with one of {b.get('of')}")
    columns: dict[str, dict[str, Any]] = {}
    for name in [*a["columns"], *(c for c in b["columns"] if c not in a["columns"])]:
        ca = a["columns"].get(name) or _all_null(b["columns"][name]["kind"], a["rows"])
        cb = b["columns"].get(name) or _all_null(ca["kind"], b["rows"])
        columns[name] = _merge_column(name, ca, cb)
    return {"version": VERSION, "of": a.get("of"), "rows": a["rows"] + b["rows"], "columns": columns}


def merge_all(profiles: list[dict[str, Any]]) -> dict[str, Any] | None:
    """All of `profiles` merged, oldest first (None: none)."""
    merged: dict[str, Any] | None = None
    for p in profiles:
        merged = p if merged is None else merge_profiles(merged, p)
    return merged


def _all_null(kind: str, rows: int) -> dict[str, Any]:
    return {"kind": kind, "count": 0, "nulls": rows, "nan": 0}


def _merge_column(name: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if a["kind"] != b["kind"]:
        raise MonitoringError(f"column '{name}': cannot merge {a['kind']} statistics with {b['kind']} ones")
    if not a["count"] or not b["count"]:  # one side has no values: its nulls add, the rest is the other's
        full, empty = (b, a) if not a["count"] else (a, b)
        return {**full, "nulls": full["nulls"] + empty["nulls"], "nan": full["nan"] + empty["nan"]}
    kind = a["kind"]
    out: dict[str, Any] = {"kind": kind}
    for key in ("count", "nulls", "nan", "inf", "true", "false", "unfed"):
        if key in a or key in b:
            out[key] = a.get(key, 0) + b.get(key, 0)
    if "min" in a:
        less = _parse_time if kind == "timestamp" else _same
        out["min"] = min(a["min"], b["min"], key=less)
        out["max"] = max(a["max"], b["max"], key=less)
    if kind == "numeric":  # the finite values' moments
        na, nb = a["count"] - a.get("inf", 0), b["count"] - b.get("inf", 0)
        if not na or not nb:
            out["mean"], out["m2"] = (a["mean"], a["m2"]) if na else (b["mean"], b["m2"])
        else:
            _, out["mean"], out["m2"] = _chan(na, a["mean"], a["m2"], nb, b["mean"], b["m2"])
    if "kll" in a:
        out["kll"] = _merge_kll(a["kll"], b["kll"])
    if "frequent" in a:
        out["frequent"] = _merge_frequent(a["frequent"], b["frequent"])
    if "distinct" in a:
        out["distinct"] = _merge_distinct(a["distinct"], b["distinct"])
    return out


def _same(v: Any) -> Any:
    return v


def _merge_kll(a: str, b: str) -> str:
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch.deserialize(_bytes(a))
    sketch.merge(kll_doubles_sketch.deserialize(_bytes(b)))
    return _b64(sketch.serialize())


def _merge_frequent(a: str, b: str) -> str:
    from datasketches import frequent_strings_sketch

    sketch = frequent_strings_sketch.deserialize(_bytes(a))
    sketch.merge(frequent_strings_sketch.deserialize(_bytes(b)))
    return _b64(sketch.serialize())


def _merge_distinct(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    from datasketches import hll_sketch, hll_union, tgt_hll_type

    if "hll" in a and "hll" in b:
        union = hll_union(HLL_LG_K)
        union.update(hll_sketch.deserialize(_bytes(a["hll"])))
        union.update(hll_sketch.deserialize(_bytes(b["hll"])))
        return {"hll": _b64(union.get_result(tgt_hll_type.HLL_4).serialize_compact())}
    (la, ua), (lb, ub) = _distinct_range(a), _distinct_range(b)
    return {"lower": max(la, lb), "upper": ua + ub}


def _distinct_range(d: dict[str, Any]) -> tuple[int, int]:
    if "hll" in d:
        from datasketches import hll_sketch

        estimate = round(hll_sketch.deserialize(_bytes(d["hll"])).get_estimate())
        return estimate, estimate
    return int(d["lower"]), int(d["upper"])


# -- summaries -------------------------------------------------------------------------------------


def summarize(profile: dict[str, Any]) -> dict[str, Any]:
    """What a profile says, without its sketch bytes: per column the exact fields, std (the sample
    standard deviation, as pandas), the null rate, the distinct count (estimate and bounds),
    quantiles and a 20-bin histogram (numbers), the top values (strings)."""
    return {
        "of": profile.get("of"),
        "rows": profile["rows"],
        "columns": {name: summarize_column(col, profile["rows"]) for name, col in profile["columns"].items()},
    }


def summarize_column(col: dict[str, Any], rows: int) -> dict[str, Any]:
    """One column's summary (see `summarize`)."""
    count = col["count"]
    out: dict[str, Any] = {
        "kind": col["kind"],
        "rows": rows,
        "count": count,
        "nulls": col["nulls"],
        "null_rate": col["nulls"] / rows if rows else None,
        "nan": col["nan"],
    }
    kind = col["kind"]
    if "min" in col:
        out.update(min=col.get("min"), max=col.get("max"))
    if kind == "numeric":  # of the finite values
        m2, finite = col.get("m2"), count - col.get("inf", 0)
        out["inf"] = col.get("inf", 0)
        out["mean"] = col.get("mean")
        out["std"] = math.sqrt(max(m2, 0.0) / (finite - 1)) if m2 is not None and finite > 1 else None
    if kind == "bool":
        out.update(true=col.get("true", 0), false=col.get("false", 0))
        out["true_rate"] = out["true"] / count if count else None
        out["distinct"] = {"estimate": (out["true"] > 0) + (out["false"] > 0), "mergeable": True}
    if "distinct" in col:
        out["distinct"] = _distinct_summary(col["distinct"], count)
    if "kll" in col:
        out.update(_quantile_summary(col))
    if "frequent" in col:
        out["top"], out["top_error"] = _top_summary(col)
    return out


def _distinct_summary(d: dict[str, Any], count: int) -> dict[str, Any]:
    """The distinct count of a column of `count` values: estimates and bounds never above it."""
    if "hll" in d:
        from datasketches import hll_sketch

        sketch = hll_sketch.deserialize(_bytes(d["hll"]))
        return {
            "estimate": min(sketch.get_estimate(), count),
            "lower": min(sketch.get_lower_bound(2), count),  # about 95% bounds
            "upper": min(sketch.get_upper_bound(2), count),
            "mergeable": True,
        }
    lower, upper = min(int(d["lower"]), count), min(int(d["upper"]), count)
    return {"estimate": lower if lower == upper else None, "lower": lower, "upper": upper, "mergeable": False}


def _quantile_summary(col: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch.deserialize(_bytes(col["kll"]))
    values = sketch.get_quantiles(list(QUANTILES))
    out: dict[str, Any] = {
        "quantiles": {f"p{round(q * 100):02d}": v for q, v in zip(QUANTILES, values, strict=True)},
        "rank_error": sketch.normalized_rank_error(False),
    }
    low, high = float(col["min"]), float(col["max"])
    if math.isfinite(low) and math.isfinite(high) and high > low:
        edges = np.linspace(low, high, BINS + 1)
        masses = sketch.get_pmf(list(edges[1:-1]))
        out["histogram"] = {"edges": edges.tolist(), "counts": [round(m * sketch.n) for m in masses]}
    elif math.isfinite(low) and high == low:
        out["histogram"] = {"edges": [low, high], "counts": [sketch.n]}
    return out


def _top_summary(col: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    from datasketches import frequent_items_error_type, frequent_strings_sketch

    sketch = frequent_strings_sketch.deserialize(_bytes(col["frequent"]))
    unfed = int(col.get("unfed", 0))
    items = sorted(
        sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_POSITIVES), key=lambda i: (-i[1], i[0])
    )
    top = [{"value": v, "count": est, "lower": lo, "upper": hi + unfed} for v, est, lo, hi in items[:TOP]]
    error = max((hi - lo for _, _, lo, hi in items), default=0) + unfed
    return top, error


# -- per view --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStats:
    """The statistics of one materialization run (profile None: none were computed)."""

    start: datetime
    end: datetime
    finished_at: datetime
    rows: int
    profile: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "rows": self.rows,
            "stats": None if self.profile is None else summarize(self.profile),
        }


@dataclass(frozen=True)
class ViewStats:
    """A view's statistics: per run since its last reset, oldest first, and merged over them.

    A run whose [start, end] lies inside a later run's was replaced by it (materializing a range
    again rewrites its rows): it is left out (`replaced_runs` counts them). Runs that overlap only
    in part are kept, and counted in `overlapping_runs`: the rows of the shared time were profiled
    by both, so the merged profile counts them twice."""

    view: str
    runs: list[RunStats]  # those merged: the replaced runs left out
    profile: dict[str, Any] | None  # every run's profile merged; None: no run has statistics
    replaced_runs: int = 0
    overlapping_runs: int = 0

    @property
    def summary(self) -> dict[str, Any] | None:
        """The merged profile's summary (`summarize`)."""
        return None if self.profile is None else summarize(self.profile)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: per run and merged summaries, without sketch bytes."""
        return {
            "view": self.view,
            "runs": [r.to_dict() for r in self.runs],
            "runs_with_stats": sum(r.profile is not None for r in self.runs),
            "replaced_runs": self.replaced_runs,
            "overlapping_runs": self.overlapping_runs,
            "merged": self.summary,
        }


def view_stats(store: FeatureStore, view: str) -> ViewStats:
    """The statistics of `view`'s current runs (since its last reset) and their merge."""
    views = store.catalog.views
    if view not in views:
        raise unknown("feature view", view, views)
    # The registry keeps JSON with sorted keys: put the columns back in the view's order.
    order = [f.name for f in views[view].row_fields]
    every = [
        RunStats(
            r.start, r.end, r.finished_at, r.rows, None if r.stats is None else _in_order(r.stats, order)
        )
        for r in store.registry.backend.current_runs(view)
    ]
    runs = [
        r
        for i, r in enumerate(every)
        if not any(later.start <= r.start and r.end <= later.end for later in every[i + 1 :])
    ]
    # Runs that share time and both profiled rows (touching at one end, as incremental runs do, or
    # a run that wrote nothing, shares no rows)
    profiled = [r for r in runs if r.profile is not None and r.rows]
    overlapping = sum(
        any(o is not r and o.start < r.end and r.start < o.end for o in profiled) for r in profiled
    )
    try:
        merged = merge_all([r.profile for r in runs if r.profile is not None])
    except MonitoringError as e:
        raise MonitoringError(f"view '{view}': {e}") from None
    return ViewStats(view, runs, merged, replaced_runs=len(every) - len(runs), overlapping_runs=overlapping)


def _in_order(profile: dict[str, Any], order: list[str]) -> dict[str, Any]:
    rank = {name: i for i, name in enumerate(order)}
    columns = sorted(profile["columns"].items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    return {**profile, "columns": dict(columns)}


# -- encoding --------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(text: str) -> bytes:
    return base64.b64decode(text)


def _iso(epoch_us: int | None) -> str | None:
    return None if epoch_us is None else (_EPOCH + timedelta(microseconds=epoch_us)).isoformat()


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)
