"""Push: applications send fresh rows to a PushSource; they land in its feature views.

    store.push("driver_stats_push", df, to="online")    # "online", "offline" or "both"

Every row is checked against the schema of every view fed by the source BEFORE anything is
written: a missing column, a value of the wrong type, a null join key or a bad timestamp refuses
the whole batch with a PushError naming the column and the row. Join keys are checked like
features, against their declared type or, undeclared, their type in the view's source (or in its
offline storage: `featurestore.keys.key_types`); only lossless casts are made (int32 -> int64,
1001.0 -> 1001), never text to numbers or numbers to text, so a pushed row cannot change the type
of a stored column. Then `to="offline"` appends the rows to offline storage, `"online"` writes
them to the online store (newest event time wins), and `"both"` does offline first, then online.

Timestamps: the source's `timestamp_field` is required (timestamps, dates or ISO 8601 strings;
naive = UTC). The source's `created_timestamp_field`, when it has one, is optional: rows without it
are stamped with the time of the push. Columns the views do not use are ignored.

Rows written online may not be from the future (more than a minute, the clock skew materialization
allows, after the push): the online store keeps the newest row per entity, so such a row would
hide every real update of its entity until its time came (a timestamp in milliseconds read as
seconds is the usual cause). Offline-only pushes may hold future rows.

Events pushed online to an aggregating view are merged into its tiles at once: pushing the same
event twice counts it twice online, until materializing its period rebuilds the tiles from offline
storage (where an event pushed with to="both" is kept, once per push).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .definitions import FeatureView, PushSource, to_arrow_table
from .errors import DefinitionError, PushError
from .keys import DECLARED, KeyType, key_types
from .materialize import CLOCK_SKEW
from .offline.features import CREATED_TS, EVENT_TS
from .types import ValueType

TARGETS = ("online", "offline", "both")
_UTC_US = pa.timestamp("us", tz="UTC")


def push(store: Any, source_name: str, df: Any, to: str = "online") -> int:
    """Validate `df` against the views of PushSource `source_name` and write it; returns the rows pushed.

    Raises PushError (nothing written) for a bad batch, UnknownNameError for an unknown source.
    """
    if to not in TARGETS:
        raise PushError(f"push to={to!r} is not one of {list(TARGETS)}")
    catalog = store.catalog
    source = catalog.push_source(source_name)
    views = catalog.views_of_source(source_name)
    if not views:
        raise PushError(
            f"push source '{source_name}' feeds no feature view: define a view with source={source_name}"
        )
    if to == "online" and not any(v.online for v in views):
        raise PushError(
            f"no view of push source '{source_name}' is served online (online=False): push to='offline'"
        )
    try:
        table = to_arrow_table(df, f"push to '{source_name}'")
    except DefinitionError as e:
        raise PushError(str(e)) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # a pandas column of mixed types: [3, "abc"]
        raise PushError(f"push to '{source_name}': {_mixed_column(df, e)}") from None
    pushed_at = datetime.now(timezone.utc)
    prepared = [  # validate all first
        (view, feature_rows(view, source, table, pushed_at, key_types(store, view))) for view in views
    ]
    if to in ("online", "both"):
        for view, rows in prepared:
            if view.online:
                _check_not_future(rows.column(EVENT_TS), pushed_at, source, view)
    if table.num_rows == 0:  # checked after the columns: an empty batch of the wrong shape is still refused
        return 0
    merged = set()  # aggregating views whose tiles took the rows while their storage was locked
    if to in ("offline", "both"):
        for view, rows in prepared:
            then = None
            if to == "both" and view.online and view.is_aggregating:
                # Stored and merged under one lock: a materialization rebuilding tiles from storage
                # in between would count them, then the merge again.
                then = functools.partial(_merge_events, store, view, rows)
                merged.add(view.name)
            store.offline_storage.append(view, rows, then=then)
        from .online.lookup import forget_incomplete_plans

        forget_incomplete_plans(store)  # the rows stored may fix a join key's type
    if to in ("online", "both"):
        for view, rows in prepared:
            if view.online and view.is_aggregating:  # merged into its tiles at once (online/tile_writer.py)
                if view.name not in merged:
                    _merge_events(store, view, rows)
            elif view.online:
                store.online_store.write(view, rows.drop_columns([CREATED_TS]))
    return int(table.num_rows)


def _merge_events(store: Any, view: FeatureView, rows: pa.Table) -> None:
    from .online.tile_writer import push_events

    push_events(store.online_store, view, rows)


def feature_rows(
    view: FeatureView,
    source: PushSource,
    table: pa.Table,
    pushed_at: datetime,
    keys: Mapping[str, KeyType] | None = None,
) -> pa.Table:
    """The pushed rows in the internal feature-row shape of `view`, or a PushError naming column and row.

    `keys`: the known type of each join key (`featurestore.keys.key_types`); default: the declared ones."""
    where = f"push to '{source.name}' (feature view '{view.name}')"
    names = table.column_names

    def column(name: str, what: str) -> pa.ChunkedArray:
        if name not in names:
            raise PushError(f"{where}: column '{name}' ({what}) is missing; the batch has {names}")
        return table.column(name)

    out: dict[str, pa.ChunkedArray] = {}
    if keys is None:
        keys = {k: KeyType(t, DECLARED) for k, t in view.key_fields.items()}
    for key in view.join_keys:
        col = column(key, "a join key")
        if col.null_count:
            raise PushError(
                f"{where}: join key '{key}' is null in row {_first_null(col)}; every row needs a key"
            )
        if key in keys:
            col = _cast(col, keys[key].dtype, where, key, keys[key].origin)
        elif pa.types.is_integer(col.type):
            col = col.cast(pa.int64())
        elif pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        out[key] = col
    for f in view.row_fields:
        out[f.name] = _cast(column(f.name, f"feature {f.dtype!r}"), f.dtype, where, f.name)
    ts_name = source.timestamp_field
    out[EVENT_TS] = _timestamps(column(ts_name, "the event timestamp"), where, ts_name, required=True)
    created_name = source.created_timestamp_field
    if created_name and created_name in names:
        created = _timestamps(table.column(created_name), where, created_name, required=False)
        created = pc.fill_null(created, pa.scalar(pushed_at, _UTC_US))
    else:
        created = pa.chunked_array([pa.array([pushed_at] * table.num_rows, _UTC_US)])
    out[CREATED_TS] = created
    return pa.table(out)


def _check_not_future(
    times: pa.ChunkedArray, pushed_at: datetime, source: PushSource, view: FeatureView
) -> None:
    limit = pa.scalar(pushed_at + CLOCK_SKEW, _UTC_US)
    later = pc.greater(times, limit)
    if pc.any(later).as_py():
        row = pc.index(later, True).as_py()
        try:
            when = times[row].as_py().isoformat()
        except (OverflowError, ValueError):  # past year 9999: seconds that were milliseconds, say
            when = f"{times.cast(pa.int64())[row].as_py()} us after 1970 (past year 9999)"
        raise PushError(
            f"push to '{source.name}' (feature view '{view.name}'): '{source.timestamp_field}' row {row} is "
            f"{when}, after the push ({pushed_at.isoformat(timespec='seconds')}): online, "
            "a row from the future would hide every newer row of its entity until then; push it when it "
            "happens, or to='offline' (timestamps in milliseconds read as seconds?)"
        )


def _mixed_column(df: Any, error: Exception) -> str:
    """Which column of a pandas DataFrame holds values of more than one type, and the first odd row."""
    for name in getattr(df, "columns", ()):
        values = list(df[name])
        kinds = [type(v) for v in values if _present(v)]
        if kinds and any(k is not kinds[0] for k in kinds):
            row = next(i for i, v in enumerate(values) if _present(v) and type(v) is not kinds[0])
            return (
                f"column '{name}' row {row}: {values[row]!r} is a {type(values[row]).__name__}, but the column "
                f"holds {kinds[0].__name__} values; give each column one type"
            )
    return f"the batch cannot be read as typed columns ({error}); give each column one type"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value)


def _first_null(col: pa.ChunkedArray) -> int:
    return int(pc.index(pc.is_null(col), True).as_py())


def _cast(
    col: pa.ChunkedArray, dtype: ValueType, where: str, name: str, origin: str = DECLARED
) -> pa.ChunkedArray:
    target = dtype.to_arrow()
    if col.type == target:
        return col
    if dtype.name == "UnixTimestamp" and not pa.types.is_integer(col.type):
        return _timestamps(col, where, name, required=False)  # also ISO 8601 strings, e.g. from JSON
    integer_from_float = dtype.name in ("Int32", "Int64") and pa.types.is_floating(
        col.type
    )  # pandas ints with NaN
    if not (pa.types.is_null(col.type) or dtype.accepts(col.type) or integer_from_float):
        shown = ""
        if col.null_count < len(col):
            row = int(pc.index(pc.is_valid(col), True).as_py())
            shown = f" (row {row}: {col[row].as_py()!r})"
        declares = (
            f"the view declares it {dtype!r}"
            if origin == DECLARED
            else f"the view reads it as {dtype!r}, its type {origin}"
        )
        raise PushError(
            f"{where}: column '{name}' has type {col.type}, but {declares}{shown}; "
            "a push converts only without loss (int32 -> int64, 3.0 -> 3)"
        )
    try:
        return col.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        row = _first_bad_row(col, target)
        raise PushError(
            f"{where}: column '{name}' row {row}: value {col[row].as_py()!r} is not a valid {dtype!r} ({e})"
        ) from None


def _first_bad_row(col: pa.ChunkedArray, target: pa.DataType) -> int:
    for i, value in enumerate(col):
        try:
            pa.array([value.as_py()], type=col.type).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return i
    return 0


def _timestamps(col: pa.ChunkedArray, where: str, name: str, required: bool) -> pa.ChunkedArray:
    """A timestamp column (timestamps, dates, or ISO 8601 strings; naive = UTC) as timestamp[us, UTC]."""
    if required and col.null_count:
        raise PushError(f"{where}: timestamp column '{name}' is null in row {_first_null(col)}")
    t = col.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            col = col.cast(pa.timestamp(t.unit, tz="UTC"))
        return col.cast(_UTC_US, safe=False)
    if pa.types.is_date(t):
        return col.cast(pa.timestamp("us")).cast(_UTC_US)
    if pa.types.is_null(t):
        return col.cast(_UTC_US)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        parsed: list[datetime | None] = []
        for i, text in enumerate(col.to_pylist()):
            if text is None:
                parsed.append(None)
                continue
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
            except ValueError:
                raise PushError(
                    f"{where}: timestamp column '{name}' row {i}: {text!r} is not an ISO 8601 "
                    "date-time (e.g. 2026-01-31T12:00:00+00:00)"
                ) from None
            parsed.append(dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc))
        return pa.chunked_array([pa.array(parsed, _UTC_US)])
    raise PushError(
        f"{where}: timestamp column '{name}' has type {t}; use timestamps, dates or ISO 8601 strings"
    )
