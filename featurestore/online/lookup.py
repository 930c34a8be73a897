"""Online lookups: `get_online_features` and its async twin, and the response they return.

    resp = store.get_online_features(["driver_hourly_stats:conv_rate"], [{"driver_id": 1001}])
    resp.to_dict()                      # {"driver_id": [1001], "conv_rate": [0.42]}
    resp.to_dict(include_status=True, include_event_timestamps=True)
    # ... + "conv_rate__status": ["PRESENT"], "conv_rate__event_timestamp": [datetime(...)]
    resp.statuses["conv_rate"]          # the same, as fields
    resp.to_pandas(); resp.to_arrow()

The road of a request is short on purpose: the requested features are resolved once into a
`LookupPlan` (cached per store, per feature list, per applied catalog), then each request only
builds row keys, makes ONE `OnlineStore.read`, and decodes the row blobs into columns.

Statuses per value: `PRESENT`; `NOT_FOUND` (no row for the entity key, a null key, or a feature the
stored row was written without); `OUTSIDE_MAX_AGE` (the row's event time is older than the view's
ttl at read time: the value is null). A PRESENT value may itself be null (the feature was null).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgpack
import pyarrow as pa

from ..catalog import Catalog, output_names
from ..errors import RetrievalError
from ..types import ValueType
from .base import OnlineStore
from .encoding import HEADER, Layout, _micros, entity_text, value_decoder, view_prefix

PRESENT = "PRESENT"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
STATUS_SUFFIX = "__status"
EVENT_TIMESTAMP_SUFFIX = "__event_timestamp"

__all__ = [
    "NOT_FOUND", "OUTSIDE_MAX_AGE", "PRESENT", "LookupPlan", "OnlineResponse", "get_online_features",
    "get_online_features_async", "lookup_plan",
]

_HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
_unpackb = msgpack.unpackb
_layouts: dict[int, Layout] = {}  # layouts seen, by id (ids are content hashes, so valid for every store)


# -- the response -------------------------------------------------------------------------------


class OnlineResponse:
    """The answer to one online lookup: a value, a status and an event time per (row, feature).

    - `to_dict(include_status=False, include_event_timestamps=False)`: {column: [values]} with the
      entity join keys first, then the features in request order; with the flags, each feature
      `f` is followed by `f__status` and/or `f__event_timestamp`.
    - `values`, `statuses`, `event_timestamps`: the same as fields ({feature: [...]}).
    - `to_arrow()`, `to_pandas()` (same flags). pandas cannot tell null from NaN in float columns
      (both are NaN there); to_dict and to_arrow keep them apart. Integer columns stay integers
      (nullable Int64 in pandas).
    """

    __slots__ = ("entity_columns", "feature_columns", "statuses", "_ts_us", "_event_timestamps", "_dtypes")

    def __init__(self, entity_columns: dict[str, list[Any]], feature_columns: dict[str, list[Any]],
                 statuses: dict[str, list[str]], ts_us: dict[str, list[int | None]], dtypes: dict[str, ValueType]):
        self.entity_columns = entity_columns
        self.feature_columns = feature_columns
        self.statuses = statuses
        self._ts_us = ts_us
        self._event_timestamps: dict[str, list[datetime | None]] | None = None
        self._dtypes = dtypes

    def __len__(self) -> int:
        for col in (*self.entity_columns.values(), *self.feature_columns.values()):
            return len(col)
        return 0

    def __repr__(self) -> str:
        return f"OnlineResponse({len(self)} rows, features={list(self.feature_columns)})"

    @property
    def feature_names(self) -> list[str]:
        return list(self.feature_columns)

    @property
    def values(self) -> dict[str, list[Any]]:
        """{column: values}: entity join keys, then features."""
        return {**self.entity_columns, **self.feature_columns}

    @property
    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """{feature: event time of the stored row (UTC), or None when no row was found}."""
        if self._event_timestamps is None:
            converted: dict[int, list[datetime | None]] = {}
            out = {}
            for name, stamps in self._ts_us.items():
                done = converted.get(id(stamps))  # the features of one view share one list
                if done is None:
                    done = converted[id(stamps)] = [None if t is None else _micros(t) for t in stamps]
                out[name] = done
            self._event_timestamps = out
        return self._event_timestamps

    def to_dict(self, include_status: bool = False, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        """{column: [values]}: join keys, then each feature (optionally with its status and event time)."""
        if not (include_status or include_event_timestamps):
            return {**self.entity_columns, **self.feature_columns}
        out = dict(self.entity_columns)
        stamps = self.event_timestamps if include_event_timestamps else {}
        for name, values in self.feature_columns.items():
            out[name] = values
            if include_status:
                out[name + STATUS_SUFFIX] = self.statuses[name]
            if include_event_timestamps:
                out[name + EVENT_TIMESTAMP_SUFFIX] = stamps[name]
        return out

    def to_arrow(self, include_status: bool = False, include_event_timestamps: bool = False) -> pa.Table:
        """The response as an Arrow table, features typed as their views declare them."""
        arrays = {}
        for name, values in self.to_dict(include_status, include_event_timestamps).items():
            dtype = self._dtypes.get(name)
            if dtype is not None:
                arrays[name] = pa.array(values, type=dtype.to_arrow())
            elif name.endswith(EVENT_TIMESTAMP_SUFFIX) and name[: -len(EVENT_TIMESTAMP_SUFFIX)] in self._dtypes:
                arrays[name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
            else:
                arrays[name] = pa.array(values)
        return pa.table(arrays)

    def to_pandas(self, include_status: bool = False, include_event_timestamps: bool = False) -> Any:
        """The response as a pandas DataFrame (integers as nullable Int32/Int64, booleans as boolean)."""
        import pandas as pd

        mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
        return self.to_arrow(include_status, include_event_timestamps).to_pandas(types_mapper=mapping.get)


# -- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ViewPlan:
    """How to read and decode the requested features of one view."""

    name: str
    prefix: bytes
    group: int  # index of the view's join-key tuple in LookupPlan.key_groups
    layout: Layout
    positions: tuple[int, ...]  # of the requested features in the layout
    identity: bool  # positions == every feature of the layout, in order
    decoders: tuple[tuple[int, Callable[[Any], Any]], ...]  # (output index, decoder) where needed
    columns: tuple[str, ...]  # output names
    ttl_us: int | None


@dataclass(frozen=True)
class LookupPlan:
    """What a lookup of a given feature list needs, computed once: keys to build, blobs to decode."""

    views: tuple[_ViewPlan, ...]
    key_groups: tuple[tuple[str, ...], ...]  # distinct join-key tuples, each encoded once per row
    entity_columns: tuple[str, ...]  # join keys of every view, first-seen order
    needed_by: dict[str, str]  # join key -> a view that needs it (for error messages)
    dtypes: dict[str, ValueType]  # output feature column -> type
    has_ttl: bool

    @staticmethod
    def build(catalog: Catalog, features: Any, full_feature_names: bool, namespace: bytes) -> LookupPlan:
        requests = catalog.resolve(features)
        names = output_names(requests, full_feature_names)
        groups: dict[tuple[str, ...], int] = {}
        entity_columns: list[str] = []
        needed_by: dict[str, str] = {}
        views = []
        dtypes: dict[str, ValueType] = {}
        for request, columns in zip(requests, names):
            view = request.view
            if not view.online:
                raise RetrievalError(
                    f"feature view '{view.name}' is not served online (online=False): set online=True and "
                    "apply, or read it with get_historical_features"
                )
            layout = Layout.of(view)
            _layouts[layout.id] = layout
            positions = tuple(layout.names.index(f) for f in request.features)
            decoders = []
            for i, p in enumerate(positions):
                dec = value_decoder(layout.types[p])
                if dec is not None:
                    decoders.append((i, dec))
                dtypes[columns[i]] = layout.types[p]
            group = groups.setdefault(view.join_keys, len(groups))
            for key in view.join_keys:
                if key not in needed_by:
                    entity_columns.append(key)
                    needed_by[key] = view.name
            ttl_us = None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000)
            views.append(_ViewPlan(view.name, view_prefix(namespace, view.name), group, layout, positions,
                                   positions == tuple(range(len(layout.names))), tuple(decoders), tuple(columns),
                                   ttl_us))
        clash = set(dtypes) & set(entity_columns)
        if clash:
            name = sorted(clash)[0]
            raise RetrievalError(f"feature '{name}' has the name of a join key: pass full_feature_names=True")
        return LookupPlan(tuple(views), tuple(groups), tuple(entity_columns), needed_by, dtypes,
                          any(v.ttl_us is not None for v in views))

    # -- one request ---------------------------------------------------------------------------

    def entity_values(self, entity_rows: Any) -> dict[str, list[Any]]:
        """The join-key columns of the request: {join key: values}, all of one length."""
        if isinstance(entity_rows, Mapping):
            return self._from_mapping(entity_rows)
        if hasattr(entity_rows, "iloc"):  # a pandas DataFrame
            return self._from_mapping({c: entity_rows[c] for c in entity_rows.columns})
        if isinstance(entity_rows, pa.Table):
            return self._from_mapping({c: entity_rows.column(c) for c in entity_rows.column_names})
        if not isinstance(entity_rows, (list, tuple)):
            raise RetrievalError(
                "entity_rows must be a list of dicts ([{'driver_id': 1001}, ...]) or a dict of columns "
                f"({{'driver_id': [1001, 1002]}}), got {type(entity_rows).__name__}"
            )
        out = {}
        for key in self.entity_columns:
            try:
                out[key] = [row[key] for row in entity_rows]
            except (KeyError, TypeError):
                for i, row in enumerate(entity_rows):
                    if not isinstance(row, Mapping):
                        raise RetrievalError(
                            f"entity row {i} is a {type(row).__name__}, not a dict of join keys like "
                            f"{{'{key}': ...}}") from None
                    if key not in row:
                        raise self._missing(key, f"entity row {i} has {sorted(row)}") from None
                raise
        return out

    def _from_mapping(self, columns: Mapping[str, Any]) -> dict[str, list[Any]]:
        listlike = {k: not isinstance(v, (str, bytes)) and hasattr(v, "__len__") for k, v in columns.items()}
        single_row = not any(listlike.values())
        out: dict[str, list[Any]] = {}
        length = None
        for key in self.entity_columns:
            if key not in columns:
                raise self._missing(key, f"entity_rows has columns {sorted(columns)}")
            values = columns[key]
            if single_row:
                values = [values]
            elif not listlike[key]:
                raise RetrievalError(f"entity_rows['{key}'] must be a list of values, got {values!r}")
            elif not isinstance(values, list):
                values = values.tolist() if hasattr(values, "tolist") else (
                    values.to_pylist() if hasattr(values, "to_pylist") else list(values))
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise RetrievalError(
                    f"entity_rows columns differ in length: '{self.entity_columns[0]}' has {length} values, "
                    f"'{key}' has {len(values)}")
            out[key] = values
        return out

    def _missing(self, key: str, detail: str) -> RetrievalError:
        return RetrievalError(
            f"entity rows lack join key '{key}', which feature view '{self.needed_by[key]}' needs ({detail}); "
            f"every row needs {list(self.entity_columns)}"
        )

    def row_keys(self, entity: dict[str, list[Any]]) -> tuple[list[bytes], list[list[bytes | None]]]:
        """All row keys to read (nulls left out), and per key group the encoded entity texts."""
        texts: list[list[bytes | None]] = []
        for group in self.key_groups:
            if len(group) == 1:
                out = []
                for v in entity[group[0]]:
                    t = type(v)
                    if t is int:
                        out.append(str(v).encode())
                    elif t is str:
                        out.append(v.encode("utf-8", "surrogatepass"))
                    else:
                        s = entity_text((v,))
                        out.append(None if s is None else s.encode("utf-8", "surrogatepass"))
            else:
                out = []
                for vals in zip(*(entity[k] for k in group)):
                    s = entity_text(vals)
                    out.append(None if s is None else s.encode("utf-8", "surrogatepass"))
            texts.append(out)
        keys: list[bytes] = []
        for vp in self.views:
            prefix = vp.prefix
            keys.extend([prefix + t for t in texts[vp.group] if t is not None])
        return keys, texts

    def respond(self, store: OnlineStore, entity: dict[str, list[Any]], texts: list[list[bytes | None]],
                blobs: list[bytes | None]) -> OnlineResponse:
        """Decode the blobs `read` returned into an OnlineResponse."""
        now_us = time.time_ns() // 1000 if self.has_ttl else 0
        columns: dict[str, list[Any]] = {}
        statuses: dict[str, list[str]] = {}
        stamps: dict[str, list[int | None]] = {}
        start = 0
        for vp in self.views:
            group_texts = texts[vp.group]
            n = len(group_texts)
            if None in group_texts:  # null keys were not read: put a "no row" back in their place
                found = iter(blobs[start:])
                view_blobs = [None if t is None else next(found) for t in group_texts]
                start += n - group_texts.count(None)
            else:
                view_blobs = blobs[start:start + n]
                start += n
            self._decode_view(store, vp, view_blobs, now_us, columns, statuses, stamps)
        return OnlineResponse({k: entity[k] for k in self.entity_columns}, columns, statuses, stamps, self.dtypes)

    def _decode_view(self, store: OnlineStore, vp: _ViewPlan, blobs: list[bytes | None], now_us: int,
                     columns: dict[str, list[Any]], statuses: dict[str, list[str]],
                     stamps: dict[str, list[int | None]]) -> None:
        width = len(vp.layout.names)
        empty = (None,) * width
        cutoff = None if vp.ttl_us is None else now_us - vp.ttl_us
        layout_id = vp.layout.id
        rows: list[Any] = []
        row_status: list[str] = []
        row_ts: list[int | None] = []
        partial: list[tuple[int, list[int]]] = []  # rows written with another layout: (row, missing positions)
        for blob in blobs:
            if blob is None:
                rows.append(empty)
                row_status.append(NOT_FOUND)
                row_ts.append(None)
                continue
            ts, blob_layout = _unpack_header(blob)
            row_ts.append(ts)
            if cutoff is not None and ts < cutoff:
                rows.append(empty)
                row_status.append(OUTSIDE_MAX_AGE)
                continue
            values = _unpackb(blob[_HEADER_SIZE:])
            if blob_layout != layout_id:
                values, missing = _remap(store, blob_layout, vp.layout, values)
                if missing:
                    partial.append((len(rows), missing))
            rows.append(values)
            row_status.append(PRESENT)
        if rows:
            transposed = list(zip(*rows))
        else:
            transposed = [()] * width
        if vp.identity:
            cols = [list(c) for c in transposed]
        else:
            cols = [list(transposed[p]) for p in vp.positions]
        for i, dec in vp.decoders:
            cols[i] = [None if v is None else dec(v) for v in cols[i]]
        for name, col in zip(vp.columns, cols):
            columns[name] = col
            statuses[name] = row_status
            stamps[name] = row_ts
        for row, missing in partial:
            for i, p in enumerate(vp.positions):
                if p in missing:
                    name = vp.columns[i]
                    if statuses[name] is row_status:
                        statuses[name] = list(row_status)
                    statuses[name][row] = NOT_FOUND


def _remap(store: OnlineStore, layout_id: int, current: Layout, values: list[Any]) -> tuple[list[Any], list[int]]:
    """A row written under another layout, as the current layout's values (matched by name and type)."""
    old = _layouts.get(layout_id)
    if old is None:
        encoded = store.read_layouts([layout_id]).get(layout_id)
        if encoded is not None:
            old = _layouts[layout_id] = Layout.decode(encoded)
    where = {} if old is None else {(n, t): i for i, (n, t) in enumerate(zip(old.names, old.types))}
    out: list[Any] = []
    missing: list[int] = []
    for p, field in enumerate(zip(current.names, current.types)):
        i = where.get(field)
        if i is None or i >= len(values):
            out.append(None)
            missing.append(p)
        else:
            out.append(values[i])
    return out, missing


# -- plan cache and entry points ----------------------------------------------------------------


class _PlanCache:
    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.plans: dict[Any, LookupPlan] = {}


_caches: weakref.WeakKeyDictionary[Any, _PlanCache] = weakref.WeakKeyDictionary()
_MAX_PLANS = 1024


def _features_key(features: Any) -> Any:
    if isinstance(features, str):
        return features
    if isinstance(features, list):
        try:
            return tuple(features)
        except TypeError:
            return None
    try:
        hash(features)
    except TypeError:
        return None
    return features


def lookup_plan(store: Any, features: Any, full_feature_names: bool = False) -> LookupPlan:
    """The plan for `features` on `store`, built once per feature list and applied catalog."""
    catalog = store.catalog  # re-read only when the registry generation changed
    cache = _caches.get(store)
    if cache is None:
        cache = _caches[store] = _PlanCache()
    if cache.catalog is not catalog:
        cache.catalog, cache.plans = catalog, {}
    key = _features_key(features)
    plan = cache.plans.get((key, full_feature_names)) if key is not None else None
    if plan is None:
        plan = LookupPlan.build(catalog, features, full_feature_names, store.online_store.key_prefix)
        if key is not None:
            if len(cache.plans) >= _MAX_PLANS:
                cache.plans.clear()
            cache.plans[(key, full_feature_names)] = plan
    return plan


def get_online_features(store: Any, features: Any, entity_rows: Any,
                        full_feature_names: bool = False) -> OnlineResponse:
    """The latest values of `features` for `entity_rows`, with a status per value, in one round trip.

    features: ["view:feature", ...], a FeatureService or its name. entity_rows: a list of dicts
    ([{"driver_id": 1001}]) or a dict of columns ({"driver_id": [1001, 1002]}); each row needs the
    join keys of every requested view. Raises UnknownNameError for an unknown view, feature or
    service, RetrievalError for a malformed request, OnlineStoreUnavailable when the store is down.
    """
    plan = lookup_plan(store, features, full_feature_names)
    online = store.online_store
    entity = plan.entity_values(entity_rows)
    keys, texts = plan.row_keys(entity)
    return plan.respond(online, entity, texts, online.read(keys))


async def get_online_features_async(store: Any, features: Any, entity_rows: Any,
                                    full_feature_names: bool = False) -> OnlineResponse:
    """`get_online_features` for asyncio code: the round trip to the store does not block the loop."""
    plan = lookup_plan(store, features, full_feature_names)
    online = store.online_store
    entity = plan.entity_values(entity_rows)
    keys, texts = plan.row_keys(entity)
    return plan.respond(online, entity, texts, await online.read_async(keys))
