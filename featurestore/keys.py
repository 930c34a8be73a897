"""Join-key values: the one rule of which values a key accepts, and the type of each view's keys.

Every road a key comes in by follows this rule: `get_online_features` / `start_online_lookup`, the
HTTP lookup and predict bodies, `fs online-features -e`, and the entity_df of
`get_historical_features`. What it accepts is the same key everywhere; what it refuses is a
RetrievalError naming the key, the row and the value, never a silent NOT_FOUND or empty join.

- An **integer key** (Int32, Int64) takes integers (not booleans), floats with an integral value
  (1001.0: pandas makes floats of an integer column with gaps) and decimal digit strings with an
  optional minus sign ("1001", "-7", "007": query strings, the CLI, CSV files), within the range of
  its type. 1001, 1001.0 and "1001" are one key.
- A **string key** takes strings only. A number is refused rather than rendered as text: the text
  a number stands for is not unique ("7", "07", "7.0" are three keys), so any guess answers
  NOT_FOUND for some key that exists. The message shows the string to send instead.
- A null (None, NaN, pandas NA) matches nothing, for every key type.
- Keys of other types (Bool, Bytes, UnixTimestamp, floats) and keys whose type cannot be known are
  taken as given.

A key's type: the view's schema field named like it (a declared key), else its type in the view's
source (a push source's batch source), else its type in the view's offline storage (rows pushed
earlier). Pushes are writes, not lookups: they take lossless casts only (see `featurestore.push`).

    canonical("1001", "Int64") == 1001; canonical(5, "String") raises KeyValueError
"""

from __future__ import annotations

import math
import re
import weakref
from typing import Any, NamedTuple

import pyarrow as pa

from .definitions import FeatureView, PushSource
from .errors import DefinitionError, RetrievalError
from .types import ValueType, value_type_of

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
BOUNDS = {"Int32": (-(2**31), 2**31 - 1), "Int64": (INT64_MIN, INT64_MAX)}
# ASCII digits only: int() would also take "+7", " 7 ", "1_000" and other scripts' digits.
_DIGITS = re.compile(r"-?[0-9]+")
_DIGITS_REGEX = r"^-?[0-9]+$"
_TAKES = "keys take integers, whole-number floats and digit strings"


DECLARED = "declared in its schema"
FROM_STORAGE = "in its offline storage (rows pushed before)"


class KeyType(NamedTuple):
    """The type of a view's join key and where it was found (for messages)."""

    dtype: ValueType
    origin: str  # DECLARED, "in source 'trips'", "in its offline storage (rows pushed before)"


class KeyValueError(ValueError):
    """A join-key value the rule refuses; the message says why (callers add the key and row)."""


def rule_of(dtype: ValueType | None) -> str | None:
    """The rule a key type follows: the integer type's name, "String", or None (taken as given)."""
    if dtype is None or dtype.is_list:
        return None
    if dtype.name in BOUNDS or dtype.name == "String":
        return dtype.name
    return None


def canonical(value: Any, rule: str | None) -> Any:
    """`value` as the key it stands for under `rule` (`rule_of` a key type): an int for integer keys, a
    str for string keys, None for a null, anything else as given. KeyValueError when refused."""
    if value is None or rule is None:
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if rule == "String":
        if isinstance(value, str):
            return value
        shown = value.item() if hasattr(value, "item") else value
        hint = f"; send the string '{shown}' if that is the key" if isinstance(shown, (int, float)) else ""
        raise KeyValueError(
            f"{shown!r} ({type(value).__name__}) is not a string: String keys take strings only{hint}"
        )
    lo, hi = BOUNDS[rule]
    number: int
    if isinstance(value, bool) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "b"):
        raise KeyValueError(f"{value!r} is a boolean, not an integer: {rule} {_TAKES}")
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise KeyValueError(f"{value!r} is not an integer: {rule} {_TAKES}")
        number = int(value)
    elif hasattr(value, "__index__"):  # int, numpy integers
        number = value.__index__()
    elif isinstance(value, float) or hasattr(value, "is_integer"):  # float, numpy floats
        f = float(value)
        if math.isnan(f):
            return None
        if not f.is_integer():
            raise KeyValueError(f"{f!r} is not a whole number: {rule} {_TAKES}")
        number = int(f)
    else:
        raise KeyValueError(f"{value!r} ({type(value).__name__}) is not an integer: {rule} {_TAKES}")
    if not lo <= number <= hi:
        raise KeyValueError(f"{number} is outside the {rule} range ({lo} .. {hi})")
    return number


def refused(key: str, row: int, where: str, view: str, error: KeyValueError) -> RetrievalError:
    """The error for a key value the rule refuses: names the key, the row and the view."""
    return RetrievalError(f"{where} row {row}: join key '{key}' of feature view '{view}': {error}")


def canonical_column(values: list[Any], rule: str | None, key: str, view: str, where: str) -> list[Any]:
    """`canonical` for every value of a column of Python values, or a RetrievalError naming the row."""
    if rule is None:
        return values
    out = []
    for i, v in enumerate(values):
        try:
            out.append(canonical(v, rule))
        except KeyValueError as e:
            raise refused(key, i, where, view, e) from None
    return out


def arrow_key_column(col: pa.ChunkedArray, rule: str | None, key: str, view: str) -> pa.ChunkedArray:
    """An entity_df key column under the rule: int64 for integer keys (from integers, integral floats,
    digit strings), strings for string keys; a RetrievalError naming the first refused row."""
    import pyarrow.compute as pc  # offline only: kept out of `import featurestore`

    t = col.type
    if rule is None or pa.types.is_null(t) or col.null_count == len(col):
        return col
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    stringy = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
    if rule == "String":
        if stringy:
            return col
        return _refuse_first(col, rule, key, view, pc.is_valid(col))
    lo, hi = BOUNDS[rule]
    if pa.types.is_integer(t):
        out = col
    elif pa.types.is_floating(t):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, t), col)
        within = pc.and_(pc.greater_equal(col, float(lo)), pc.less(col, float(hi + 1)))  # powers of 2: exact
        ok = pc.and_(pc.equal(pc.floor(col), col), within)
        _check(col, ok, rule, key, view)
        out = col.cast(pa.int64(), safe=False)
    elif stringy:
        ok = pc.match_substring_regex(col, _DIGITS_REGEX)
        _check(col, ok, rule, key, view)
        try:
            out = col.cast(pa.int64())
        except pa.ArrowInvalid:  # beyond 64 bits
            return _refuse_first(col, rule, key, view, pc.is_valid(col))
    else:
        return _refuse_first(col, rule, key, view, pc.is_valid(col))
    mm = pc.min_max(out)
    if mm["min"].as_py() is not None and (mm["min"].as_py() < lo or mm["max"].as_py() > hi):
        in_range = pc.and_(pc.greater_equal(out, lo), pc.less_equal(out, hi))
        _check(out, in_range, rule, key, view)
    return out.cast(pa.int64()) if out.type != pa.int64() else out


def _check(col: pa.ChunkedArray, ok: Any, rule: str, key: str, view: str) -> None:
    import pyarrow.compute as pc  # offline only: kept out of `import featurestore`

    bad = pc.and_(pc.is_valid(col), pc.invert(pc.fill_null(ok, True)))
    if pc.any(bad).as_py():
        _refuse_first(col, rule, key, view, bad)


def _refuse_first(col: pa.ChunkedArray, rule: str, key: str, view: str, bad: Any) -> pa.ChunkedArray:
    """Raise the rule's error for the first value of `bad` the rule refuses (`canonical`, the one rule)."""
    import pyarrow.compute as pc  # offline only: kept out of `import featurestore`

    start = pc.index(bad, True).as_py() if pc.any(bad).as_py() else 0
    for row in range(max(start, 0), len(col)):
        try:
            canonical(col[row].as_py(), rule)
        except KeyValueError as e:
            raise refused(key, row, "entity_df", view, e) from None
    raise RetrievalError(f"entity_df: join key '{key}' of feature view '{view}' is not a valid {rule} column")


# -- the type of each key -------------------------------------------------------------------------


def arrow_value_type(t: pa.DataType) -> ValueType | None:
    """The value type a source column of Arrow type `t` holds, for keys without a declared type."""
    if pa.types.is_decimal(t):
        return None
    found = value_type_of(t)
    return None if found is None or found.is_list else found


_found: weakref.WeakKeyDictionary[Any, tuple[Any, dict[str, dict[str, KeyType]]]] = (
    weakref.WeakKeyDictionary()
)


def key_types(store: Any, view: FeatureView) -> dict[str, KeyType]:
    """The known type of each join key of `view` (keys of unknown type are left out).

    Found once per store and applied catalog: reading a source's schema is I/O. A view whose keys are
    not all known yet (a push source without a batch source, nothing pushed) is looked at again next time.
    """
    catalog = store.catalog
    cached = _found.get(store)
    if cached is None or cached[0] is not catalog:
        cached = (catalog, {})
        _found[store] = cached
    known = cached[1].get(view.name)
    if known is not None:
        return known
    known = {k: KeyType(t, DECLARED) for k, t in view.key_fields.items()}
    missing = [k for k in view.join_keys if k not in known]
    if missing:
        known.update(_from_source(store, catalog, view, missing))
        missing = [k for k in missing if k not in known]
    if missing:
        known.update(_from_storage(store, view, missing))
    if len(known) == len(view.join_keys):
        cached[1][view.name] = known
    return known


def file_key_types(store: Any, view: FeatureView) -> dict[str, ValueType]:
    """The key types a stored day file of `view` must hold: declared or from the source, never the type
    taken from storage (a file is not judged by itself). See `featurestore.offline.storage.file_problem`."""
    return {k: t.dtype for k, t in key_types(store, view).items() if t.origin != FROM_STORAGE}


def _from_source(store: Any, catalog: Any, view: FeatureView, keys: list[str]) -> dict[str, KeyType]:
    from .offline.sources import SourceReader, duckdb_connection

    source = view.source
    if isinstance(source, PushSource):
        if source.batch_source is None:
            return {}
        source = source.batch_source
    con = duckdb_connection()
    try:
        schema = SourceReader(con, store.repo_path, catalog.sources).schema(source)
    except (DefinitionError, OSError):
        return {}  # a serving host without the source's files: storage may still tell
    finally:
        con.close()
    return _typed(schema, keys, f"in source '{source.name}'")


def _from_storage(store: Any, view: FeatureView, keys: list[str]) -> dict[str, KeyType]:
    files = store.offline_storage.files(view.name)
    if not files:
        return {}
    try:
        schema = store.offline_storage.schema(files[-1])
    except (OSError, pa.ArrowException):
        return {}
    return _typed(schema, keys, FROM_STORAGE)


def _typed(schema: pa.Schema, keys: list[str], origin: str) -> dict[str, KeyType]:
    out = {}
    for key in keys:
        if key in schema.names:
            dtype = arrow_value_type(schema.field(key).type)
            if dtype is not None:
                out[key] = KeyType(dtype, origin)
    return out
