"""The bins drift compares in: fixed once from a reference (a saved training set), then filled from
any sample, in numpy (the reference, tests) or in DuckDB (the prediction log) with the same result.

A column's *reference profile* (JSON-able; stored in the training set's record) is one of

    {"kind": "numeric", "edges": [e0, ..., ek], "counts": [...], "sums": [...], "nulls": 3, "n": 10000, "std": 0.1}
    {"kind": "categorical", "type": "string", "values": ["a", "b"], "counts": [...], "nulls": 0, "n": 10000}
    {"kind": "unsupported", "type": "timestamp[us]", "n": 10000}

Numeric bins: the edges are the exact (linearly interpolated) reference quantiles at 0, 0.1, ...,
1.0 of the finite values, duplicates merged; the bins are the lower tail (< e0), [e0, e1), ...,
[e(k-1), ek] (the last one closed, so the maximum is inside), the upper tail (> ek); a constant
reference has the single interior bin "= e0". Categorical (strings, booleans, integers with at most
20 distinct reference values): the 20 most frequent reference values (ties by value), then "other".
Every column ends with a "null" bin (NaN counts as null), so a feature that stops arriving drifts.
`counts` / `sums` hold the non-null bins (`sums` only for numeric: the bins' means place them for
Wasserstein); infinities fall in the tails. A reference with no finite value is categorical with
no values (everything served is "other").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..offline.sources import DUCKDB_FLOATS, DUCKDB_INTEGERS, quote_literal

QUANTILES = 10  # reference-quantile bins between the tails
TOP_VALUES = 20  # categories kept by name; the rest is "other"
MAX_BINS = TOP_VALUES + 2  # the most bins a column has: values, "other", "null"


# -- the reference -------------------------------------------------------------------------------------


def reference_profile(table: pa.Table, columns: list[str]) -> dict[str, Any]:
    """{column: reference profile} of `columns` of `table` (see the module doc)."""
    return {c: column_profile(table.column(c)) for c in columns}


def column_profile(column: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    """The reference profile of one column."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    t, n = arr.type, len(arr)
    if pa.types.is_boolean(t):
        return _categorical(arr, "boolean")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _categorical(arr, "string")
    if pa.types.is_null(t):
        return {"kind": "categorical", "type": "string", "values": [], "counts": [0], "nulls": n, "n": n}
    if pa.types.is_integer(t) and pc.count_distinct(arr).as_py() <= TOP_VALUES:
        return _categorical(arr.cast(pa.int64()), "integer")
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _numeric(_floats(arr))
    return {"kind": "unsupported", "type": str(t), "n": n}


def _floats(arr: pa.Array) -> np.ndarray:
    """float64 values, nulls as NaN."""
    return np.asarray(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _numeric(values: np.ndarray) -> dict[str, Any]:
    n = len(values)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        nulls = int(np.isnan(values).sum())
        return {
            "kind": "categorical",
            "type": "number",
            "values": [],
            "counts": [n - nulls],
            "nulls": nulls,
            "n": n,
        }
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, QUANTILES + 1)))
    profile: dict[str, Any] = {"kind": "numeric", "edges": [float(e) for e in edges]}
    counts, sums = numeric_bins(profile["edges"], values)
    profile.update(
        counts=[int(c) for c in counts[:-1]],
        sums=[float(s) for s in sums[:-1]],
        nulls=int(counts[-1]),
        n=n,
        std=float(np.std(finite)),
    )
    return profile


def _categorical(arr: pa.Array, type_name: str) -> dict[str, Any]:
    n = len(arr)
    nulls = arr.null_count
    pairs = [(v["values"], v["counts"]) for v in pc.value_counts(arr.drop_null()).to_pylist()]
    pairs.sort(key=lambda p: (-p[1], p[0]))
    top = pairs[:TOP_VALUES]
    other = n - nulls - sum(c for _, c in top)
    return {
        "kind": "categorical",
        "type": type_name,
        "values": [v for v, _ in top],
        "counts": [c for _, c in top] + [other],
        "nulls": nulls,
        "n": n,
    }


# -- reading a profile -----------------------------------------------------------------------------------


def interior_bins(edges: list[float]) -> int:
    """How many bins lie between the tails: k for k+1 distinct edges, 1 for a constant."""
    return max(len(edges) - 1, 1)


def labels(profile: dict[str, Any]) -> list[str]:
    """The bins' names, in order, "null" last."""
    if profile["kind"] == "numeric":
        e = [f"{x:.4g}" for x in profile["edges"]]
        if len(e) == 1:
            inner = [f"= {e[0]}"]
        else:
            inner = [f"[{a}, {b})" for a, b in zip(e[:-2], e[1:-1])] + [f"[{e[-2]}, {e[-1]}]"]
        return [f"< {e[0]}", *inner, f"> {e[-1]}", "null"]
    if profile["kind"] == "categorical":
        return [_text(v) for v in profile["values"]] + ["other", "null"]
    return []


def counts(profile: dict[str, Any]) -> list[int]:
    """The reference counts of every bin, "null" last."""
    return [*profile["counts"], profile["nulls"]]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# -- filling the bins of a sample in numpy ---------------------------------------------------------------


def numeric_bins(edges: list[float], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(count, sum) per bin of float `values` (NaN: null) on `edges`: the tails, the interior bins,
    "null" last."""
    e = np.asarray(edges, dtype=np.float64)
    inner = interior_bins(edges)
    nulls = np.isnan(values)
    v = values[~nulls]
    # searchsorted "right": 0 below e0, j for e(j-1) <= v < ej, k+1 from ek on; the last bin is closed
    idx = np.where(v > e[-1], inner + 1, np.minimum(np.searchsorted(e, v, side="right"), inner))
    size = inner + 2
    count = np.bincount(idx, minlength=size).astype(np.int64)
    total = np.bincount(idx, weights=v, minlength=size) if len(v) else np.zeros(size)
    return np.append(count, nulls.sum()), np.append(total, 0.0)


def bin_sample(
    profile: dict[str, Any], column: pa.ChunkedArray | pa.Array
) -> tuple[np.ndarray, np.ndarray | None]:
    """(count per bin, sum per bin or None for categorical) of a sample on a reference's bins, in
    numpy: the oracle the SQL binning is tested against, and fast enough for simulations."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if profile["kind"] == "numeric":
        return numeric_bins(profile["edges"], _floats(arr))
    values = profile["values"]
    m = len(values)
    if pa.types.is_floating(arr.type):  # NaN is null here too
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    nulls = arr.null_count
    if m:
        target = {"boolean": pa.bool_(), "integer": pa.int64()}.get(profile["type"], pa.string())
        idx = pc.index_in(arr.cast(target), value_set=pa.array(values, target))
        found = idx.drop_null().to_numpy(zero_copy_only=False)
        per_value = np.bincount(found, minlength=m)
    else:
        per_value = np.zeros(0, dtype=np.int64)
    other = len(arr) - nulls - int(per_value.sum())
    return np.array([*per_value, other, nulls], dtype=np.int64), None


# -- filling the bins in DuckDB --------------------------------------------------------------------------

_FLOATS = DUCKDB_FLOATS
_INTEGERS = DUCKDB_INTEGERS | {"HUGEINT"}


def sql_bin(profile: dict[str, Any], expr: str, sql_type: str) -> str:
    """A DuckDB expression giving the bin index (as in `labels`) of `expr`, a value of type `sql_type`
    (the column's type in the log: values are compared as the reference's type)."""
    kind = profile["kind"]
    if kind == "numeric":
        x = expr if sql_type in _FLOATS else f"TRY_CAST({expr} AS DOUBLE)"
        edges = profile["edges"]
        inner = interior_bins(edges)
        whens = [f"WHEN {_null_or_nan(x)} THEN {inner + 2}", f"WHEN {x} < {_double(edges[0])} THEN 0"]
        whens += [f"WHEN {x} < {_double(e)} THEN {j}" for j, e in enumerate(edges[1:-1], start=1)]
        whens.append(f"WHEN {x} <= {_double(edges[-1])} THEN {inner}")
        return f"CASE {' '.join(whens)} ELSE {inner + 1} END"
    values = profile["values"]
    m = len(values)
    x, literal, is_float = _categorical_sql(profile["type"], expr, sql_type)
    null = _null_or_nan(x) if is_float else f"{x} IS NULL"
    whens = [f"WHEN {null} THEN {m + 1}"] + [
        f"WHEN {x} = {literal(v)} THEN {i}" for i, v in enumerate(values)
    ]
    return f"CASE {' '.join(whens)} ELSE {m} END"


def sql_value(profile: dict[str, Any], expr: str, sql_type: str) -> str:
    """A DOUBLE expression to sum per bin (the bins' means): the value for numeric, NULL otherwise."""
    if profile["kind"] != "numeric":
        return "NULL::DOUBLE"
    return expr if sql_type in _FLOATS else f"TRY_CAST({expr} AS DOUBLE)"


def _categorical_sql(type_name: str, expr: str, sql_type: str) -> tuple[str, Any, bool]:
    """(the value as the reference's type, its literal maker, whether it is a float: NaN is null)."""
    if type_name == "boolean":
        x = expr if sql_type == "BOOLEAN" else f"TRY_CAST({expr} AS BOOLEAN)"
        return x, lambda v: "TRUE" if v else "FALSE", False
    if type_name in ("integer", "number"):  # an integer log column compares as is; 3.0 = 3 for floats
        if sql_type in _INTEGERS:
            return expr, lambda v: str(int(v)), False
        return (expr if sql_type in _FLOATS else f"TRY_CAST({expr} AS DOUBLE)"), lambda v: str(int(v)), True
    x = expr if sql_type == "VARCHAR" else f"CAST({expr} AS VARCHAR)"
    return x, lambda v: quote_literal(str(v)), False


def _null_or_nan(x: str) -> str:
    # NaN as "neither finite nor infinite": DuckDB folds isnan() to false where a Parquet file's
    # statistics show no NaN (they never count NaN), but not isfinite/isinf (see docs/decisions.md)
    return f"{x} IS NULL OR NOT (isfinite({x}) OR isinf({x}))"


def _double(value: float) -> str:
    """A DOUBLE literal that is exactly `value` (a bare 0.1 would be a DECIMAL in DuckDB)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"
