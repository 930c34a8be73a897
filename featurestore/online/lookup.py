"""Online lookups: `get_online_features`, its async twin, and `start_online_lookup` (the twin begun at once).

    resp = store.get_online_features(["driver_hourly_stats:conv_rate"], [{"driver_id": 1001}])
    resp.to_dict()        # {"driver_id": [1001], "conv_rate": [0.42]}; see response.py

The road of a request is short on purpose: the requested features are resolved once into a
`LookupPlan` (cached per online store, per feature list, per applied catalog), then each request
only builds row keys, makes ONE `OnlineStore.read`, and decodes the row blobs into columns.
"""

from __future__ import annotations

import asyncio
import struct
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import msgpack
import pyarrow as pa

from ..catalog import Catalog
from ..definitions import FeatureView
from ..errors import RetrievalError
from ..keys import BOUNDS, KeyType, KeyValueError, canonical, canonical_column, key_types, rule_of
from ..on_demand_plan import OnDemandPlan, expand
from ..types import ValueType
from . import tile_schedule, tiles
from .base import OnlineStore
from .encoding import HEADER, Layout, entity_text, value_decoder, view_prefix
from .response import NOT_FOUND, OUTSIDE_MAX_AGE, PRESENT, Block, OnlineResponse
from .tiles import TileSpec

__all__ = [
    "NOT_FOUND",
    "OUTSIDE_MAX_AGE",
    "PRESENT",
    "LookupPlan",
    "OnlineResponse",
    "PendingLookup",
    "get_online_features",
    "get_online_features_async",
    "lookup_plan",
    "start_online_lookup",
]

_HEADER_SIZE = HEADER.size
_unpack_fast = tiles.FAST.unpack_from
_StructError = struct.error
_TILES_PREFIX = tiles.PREFIX
_SCHEDULE_POINTS = tile_schedule.POINTS
_unpack_row = tile_schedule.ROW.unpack_from
_unpack_header = HEADER.unpack_from
_unpackb = msgpack.unpackb
_layouts: dict[int, Layout] = {}  # layouts seen, by id (ids are content hashes, so valid for every store)


# -- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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
    empty: tuple[None, ...]  # the values of a row that was not found
    tiles: TileSpec | None = None  # an aggregating view: its blobs are tiles (tiles.py)


@dataclass(frozen=True)
class LookupPlan:
    """What a lookup of a given feature list needs, computed once: keys to build, blobs to decode."""

    views: tuple[_ViewPlan, ...]
    key_groups: tuple[tuple[str, ...], ...]  # distinct join-key tuples, each encoded once per row
    entity_columns: tuple[str, ...]  # join keys of every view, first-seen order
    needed_by: dict[str, str]  # join key -> a view that needs it (for error messages)
    dtypes: dict[str, ValueType]  # output feature column -> type
    has_ttl: bool
    prefixes: tuple[tuple[bytes, int], ...]  # (row key prefix, key group) per view
    # The rule (featurestore.keys) each join key's values follow: "Int64", "Int32", "String", None = as given
    key_rules: dict[str, str | None]
    # False while some join key's type is unknown (found later, by a push): the plan is kept briefly
    keys_known: bool = True
    built_at: float = 0.0  # time.monotonic() when built
    on_demand: OnDemandPlan | None = None  # the on-demand views asked for, computed after decoding

    @staticmethod
    def build(
        catalog: Catalog,
        features: Any,
        full_feature_names: bool,
        namespace: bytes,
        key_types: Callable[[FeatureView], Mapping[str, KeyType]] | None = None,
        repo_path: Path = Path("."),
    ) -> LookupPlan:
        """The plan of a lookup; `key_types` gives each view's known join-key types (none: all as given).
        On-demand views are expanded into the views they read (`repo_path`: where their functions are)."""
        requests, names, on_demand = expand(catalog, catalog.resolve(features), full_feature_names, repo_path)
        groups: dict[tuple[str, ...], int] = {}
        entity_columns: list[str] = []
        needed_by: dict[str, str] = {}
        views = []
        dtypes: dict[str, ValueType] = {}
        key_rules: dict[str, str | None] = {}
        keys_known = True
        for request, columns in zip(requests, names):
            view = request.view
            known = key_types(view) if key_types is not None and view.online else {}
            keys_known = keys_known and all(key in known for key in view.join_keys)
            for key in view.join_keys:
                if key_rules.get(key) is None:
                    key_rules[key] = rule_of(known[key].dtype) if key in known else None
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
            views.append(
                _ViewPlan(
                    view.name,
                    view_prefix(namespace, view.name),
                    group,
                    layout,
                    positions,
                    positions == tuple(range(len(layout.names))),
                    tuple(decoders),
                    tuple(columns),
                    ttl_us,
                    (None,) * len(layout.names),
                    TileSpec.of(view) if view.is_aggregating else None,
                )
            )
        clash = set(dtypes) & set(entity_columns)
        if clash:
            name = sorted(clash)[0]
            raise RetrievalError(f"feature '{name}' has the name of a join key: pass full_feature_names=True")
        return LookupPlan(
            tuple(views),
            tuple(groups),
            tuple(entity_columns),
            needed_by,
            dtypes,
            any(v.ttl_us is not None for v in views),
            tuple((v.prefix, v.group) for v in views),
            key_rules,
            keys_known,
            time.monotonic(),
            on_demand,
        )

    # -- one request ---------------------------------------------------------------------------

    def entity_values(self, entity_rows: Any) -> dict[str, list[Any]]:
        """The join-key columns of the request: {join key: values}, all of one length (and the
        request values of on-demand views, which `respond` takes out again)."""
        if self.on_demand is not None:
            return self.on_demand.request_values(entity_rows, self._entity_values(entity_rows))
        return self._entity_values(entity_rows)

    def _entity_values(self, entity_rows: Any) -> dict[str, list[Any]]:
        if type(entity_rows) is list:
            return self._from_rows(entity_rows)
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
        return self._from_rows(entity_rows)

    def _from_rows(self, entity_rows: list[Any] | tuple[Any, ...]) -> dict[str, list[Any]]:
        out = {}
        for key in self.entity_columns:
            try:
                out[key] = [row[key] for row in entity_rows]
            except (KeyError, TypeError):
                for i, row in enumerate(entity_rows):
                    if not isinstance(row, Mapping):
                        raise RetrievalError(
                            f"entity row {i} is a {type(row).__name__}, not a dict of join keys like "
                            f"{{'{key}': ...}}"
                        ) from None
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
                values = (
                    values.tolist()
                    if hasattr(values, "tolist")
                    else (values.to_pylist() if hasattr(values, "to_pylist") else list(values))
                )
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise RetrievalError(
                    f"entity_rows columns differ in length: '{self.entity_columns[0]}' has {length} values, "
                    f"'{key}' has {len(values)}"
                )
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
        rules = self.key_rules
        for group in self.key_groups:
            if len(group) == 1:
                key = group[0]
                values = entity[key]
                rule = rules.get(key)
                if rule is None:
                    texts.append([str(v).encode() if type(v) is int else _key_bytes((v,)) for v in values])
                    continue
                try:
                    if rule == "String":
                        texts.append(
                            [
                                v.encode("utf-8", "surrogatepass") if type(v) is str else _ruled(v, rule)
                                for v in values
                            ]
                        )
                    else:
                        lo, hi = BOUNDS[rule]
                        texts.append(
                            [
                                str(v).encode() if type(v) is int and lo <= v <= hi else _ruled(v, rule)
                                for v in values
                            ]
                        )
                except KeyValueError:  # find the row, for the message
                    canonical_column(values, rule, key, self.needed_by[key], "entity")
                    raise
            else:
                columns = [
                    canonical_column(entity[k], rules.get(k), k, self.needed_by[k], "entity") for k in group
                ]
                texts.append([_key_bytes(vals) for vals in zip(*columns)])
        keys: list[bytes] = []
        for prefix, index in self.prefixes:
            group_texts = texts[index]
            if None in group_texts:
                keys += [prefix + t for t in group_texts if t is not None]
            else:  # no None in it: the test per key is saved
                keys += [prefix + t for t in cast("list[bytes]", group_texts)]
        return keys, texts

    def respond(
        self,
        store: OnlineStore,
        entity: dict[str, list[Any]],
        texts: list[list[bytes | None]],
        blobs: list[bytes | None],
    ) -> OnlineResponse:
        """Decode the blobs `read` returned into an OnlineResponse.

        The hot loop of every lookup: one pass per view, no attribute lookups or calls it can avoid.
        """
        now_us = time.time_ns() // 1000 if self.has_ttl else 0
        columns: dict[str, list[Any]] = {}
        blocks: list[Block] = []
        start = 0
        for vp in self.views:
            group, layout, empty, ttl_us, names = vp.group, vp.layout, vp.empty, vp.ttl_us, vp.columns
            group_texts = texts[group]
            n = len(group_texts)
            if None in group_texts:  # null keys were not read: put a "no row" back in their place
                found = iter(blobs[start:])
                view_blobs = [None if t is None else next(found) for t in group_texts]
                start += n - group_texts.count(None)
            else:
                view_blobs = blobs[start : start + n]
                start += n
            if vp.tiles is not None:  # an aggregating view: values of its tiles at the read clock
                agg_cols, agg_status, agg_ts = _aggregates(vp, vp.tiles, view_blobs)
                columns.update(zip(names, agg_cols))
                blocks.append((names, agg_status, agg_ts, None))
                continue
            cutoff = None if ttl_us is None else now_us - ttl_us
            layout_id = layout.id
            rows: list[Any] = []
            row_status: list[str] = []
            row_ts: list[int | None] = []
            add_row, add_status, add_ts = rows.append, row_status.append, row_ts.append
            partial: list[tuple[int, list[int]]] | None = None  # rows written with another layout
            for blob in view_blobs:
                if blob is None:
                    add_row(empty)
                    add_status(NOT_FOUND)
                    add_ts(None)
                    continue
                ts, blob_layout = _unpack_header(blob)
                add_ts(ts)
                if cutoff is not None and ts < cutoff:
                    add_row(empty)
                    add_status(OUTSIDE_MAX_AGE)
                    continue
                if blob_layout == layout_id:
                    values = _unpackb(blob[_HEADER_SIZE:])
                else:
                    values, missing = _remap(store, blob_layout, layout, blob)
                    if missing:
                        partial = partial or []
                        partial.append((len(rows), missing))
                add_row(values)
                add_status(PRESENT)
            if not rows:
                cols: list[list[Any]] = [[] for _ in names]
            elif vp.identity:
                cols = list(map(list, zip(*rows)))
            else:
                transposed = list(zip(*rows))
                cols = [list(transposed[p]) for p in vp.positions]
            for i, dec in vp.decoders:
                cols[i] = [None if v is None else dec(v) for v in cols[i]]
            columns.update(zip(names, cols))
            statuses = _feature_statuses(vp, row_status, partial) if partial else None
            blocks.append((names, row_status, row_ts, statuses))
        if self.on_demand is not None:
            return self.on_demand.respond(entity, columns, blocks, self.dtypes, self.entity_columns)
        return OnlineResponse(entity, columns, blocks, self.dtypes)


def _aggregates(
    vp: _ViewPlan, spec: TileSpec, view_blobs: list[bytes | None]
) -> tuple[list[list[Any]], list[str], list[int | None]]:
    """Columns, statuses (always PRESENT: a 0 count is a value) and newest event times of an
    aggregating view's blobs, read at `tiles.now_us()`: from a blob's value schedule while it holds
    (the common case: a bisect and one small msgpack decode), else merged from its tiles."""
    t = tiles.now_us()
    rows: list[Any] = []
    row_ts: list[int | None] = []
    statuses: list[str] | None = None  # all PRESENT unless a blob holds another definition's tiles
    add_row, add_ts = rows.append, row_ts.append
    empty = spec.empty_values
    layout_id = spec.layout_id
    start = _TILES_PREFIX
    for blob in view_blobs:
        if blob is None:
            add_row(empty)
            add_ts(None)
            continue
        try:
            ts, blob_layout, valid_from, valid_until, _, changes = _unpack_fast(blob)
        except _StructError:
            blob_layout = -1  # shorter than a tiles header: a plain row
        if blob_layout != layout_id:
            # Written under another definition (a changed window, a view that was plain): not a value
            # of this one until materialized again.
            statuses = statuses or [PRESENT] * len(view_blobs)
            statuses[len(rows)] = NOT_FOUND
            add_row(empty)
            add_ts(None)
            continue
        add_ts(ts)
        if valid_from <= t < valid_until:  # from the value schedule (tile_schedule.row_at, inlined)
            i = bisect_right(_SCHEDULE_POINTS[changes].unpack_from(blob, start), t)
            lo, hi = _unpack_row(blob, start + 8 * changes + 4 * i)
            rows_at = start + 12 * changes + 8
            add_row(_unpackb(blob[rows_at + lo : rows_at + hi]))
        else:
            add_row(tiles.read_values(spec, blob, t))
    if not rows:
        cols: list[list[Any]] = [[] for _ in vp.columns]
    elif vp.identity:
        cols = list(map(list, zip(*rows)))
    else:
        transposed = list(zip(*rows))
        cols = [list(transposed[p]) for p in vp.positions]
    for i, dec in vp.decoders:
        cols[i] = [None if v is None else dec(v) for v in cols[i]]
    return cols, statuses or [PRESENT] * len(rows), row_ts


def _feature_statuses(
    vp: _ViewPlan, row_status: list[str], partial: list[tuple[int, list[int]]]
) -> dict[str, list[str]]:
    """Statuses of the features that some rows (written under an older layout) do not have."""
    out: dict[str, list[str]] = {}
    for row, missing in partial:
        for i, p in enumerate(vp.positions):
            if p in missing:
                out.setdefault(vp.columns[i], list(row_status))[row] = NOT_FOUND
    return out


def _ruled(value: Any, rule: str) -> bytes | None:
    """The row-key text of a key value off the fast path: converted by the rule, or KeyValueError."""
    value = canonical(value, rule)
    if value is None:
        return None
    return str(value).encode() if type(value) is int else _key_bytes((value,))


def _key_bytes(values: tuple[Any, ...]) -> bytes | None:
    text = entity_text(values)
    return None if text is None else text.encode("utf-8", "surrogatepass")


def _remap(store: OnlineStore, layout_id: int, current: Layout, blob: bytes) -> tuple[list[Any], list[int]]:
    """A row written under another layout, as the current layout's values (matched by name and type).
    A blob that is no row (the tiles of a view that aggregated under this name) has none of them."""
    try:
        values = _unpackb(blob[_HEADER_SIZE:])
    except (ValueError, msgpack.UnpackException):
        values = []
    if not isinstance(values, list):
        values = []
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

# Definitions applied by another process are noticed within this many seconds; an apply() in this
# process is noticed at once. Polling the registry on every lookup would cost more than the lookup.
_MAX_PLANS = 1024


class _PlanCache:
    """Plans of one FeatureStore, for one applied catalog.

    `current` = (catalog, {request key: plan}) is replaced as a whole when the catalog changes, so a
    plan is only ever filed under the catalog it was built from, whatever threads interleave.
    """

    __slots__ = ("current", "__weakref__")

    def __init__(self) -> None:
        self.current: tuple[Catalog | None, dict[Any, LookupPlan]] = (None, {})


_plan_caches: weakref.WeakKeyDictionary[Any, _PlanCache] = weakref.WeakKeyDictionary()


def _features_key(features: Any) -> Any:
    if isinstance(features, str):
        return features
    if isinstance(features, list):
        try:
            key = tuple(features)
            hash(key)
            return key
        except TypeError:
            return None
    try:
        hash(features)
    except TypeError:
        return None
    return features


_RECHECK_UNKNOWN_KEYS = 1.0  # seconds a plan with a join key of unknown type is used before rebuilt


def forget_incomplete_plans(store: Any) -> None:
    """Drop `store`'s plans that have a join key of unknown type: a push to offline storage may have
    just fixed it."""
    cache = _plan_caches.get(store)
    if cache is None:
        return
    plans = cache.current[1]
    for key, plan in list(plans.items()):
        if not plan.keys_known:
            plans.pop(key, None)


def lookup_plan(store: Any, features: Any, full_feature_names: bool = False) -> LookupPlan:
    """The plan for `features` on `store`, built once per feature list and applied catalog.

    A plan with a join key of still unknown type (a push source without a batch source, nothing
    pushed to offline storage yet) is built again after `_RECHECK_UNKNOWN_KEYS` seconds, and at once
    after a push to offline storage in this process (`forget_incomplete_plans`): the key rule a push
    fixes applies as in a new FeatureStore, at most that long after a push by another process."""
    online = store.online_store
    cache = _plan_caches.get(store)
    if cache is None:
        cache = _plan_caches.setdefault(store, _PlanCache())
    fresh = store.catalog  # cached by the store; it polls the registry generation at most once a second
    catalog, plans = cache.current
    if fresh is not catalog:
        catalog, plans = cache.current = (fresh, {})
    key = (_features_key(features), full_feature_names)
    plan = plans.get(key) if key[0] is not None else None
    if plan is not None and not plan.keys_known and time.monotonic() - plan.built_at >= _RECHECK_UNKNOWN_KEYS:
        plan = None
    if plan is None:
        plan = LookupPlan.build(
            catalog,
            features,
            full_feature_names,
            online.key_prefix,
            lambda view: key_types(store, view),
            store.repo_path,
        )
        if key[0] is not None:
            if len(plans) >= _MAX_PLANS:
                plans.clear()
            plans[key] = plan
    return plan


def get_online_features(
    store: Any, features: Any, entity_rows: Any, full_feature_names: bool = False
) -> OnlineResponse:
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


async def get_online_features_async(
    store: Any, features: Any, entity_rows: Any, full_feature_names: bool = False
) -> OnlineResponse:
    """`get_online_features` for asyncio code: the round trip to the store does not block the loop.

    (Reading the registry generation, at most once a second, and the first read of a row written
    under an older schema, once per layout, are short blocking reads.)
    """
    return await start_online_lookup(store, features, entity_rows, full_feature_names)


def start_online_lookup(
    store: Any, features: Any, entity_rows: Any, full_feature_names: bool = False
) -> PendingLookup:
    """`get_online_features_async`, begun now: the store read is sent before this returns where the
    store can (`OnlineStore.start_read`), so the caller can do other work during the round trip (the
    server validates the request meanwhile). Call it from a coroutine; `await` the result for the
    OnlineResponse, or `discard()` it. Errors in the request (unknown names, missing join keys) raise
    here; errors of the store when awaited.
    """
    plan = lookup_plan(store, features, full_feature_names)
    online = store.online_store
    entity = plan.entity_values(entity_rows)
    keys, texts = plan.row_keys(entity)
    return PendingLookup(plan, online, entity, texts, online.start_read(keys))


_discarded: set[Any] = set()  # reads left to finish in the background (the loop keeps tasks weakly)


class PendingLookup:
    """A lookup whose store read is under way (`start_online_lookup`): awaiting it gives the OnlineResponse."""

    __slots__ = ("plan", "online", "entity", "texts", "read")

    def __init__(
        self,
        plan: LookupPlan,
        online: OnlineStore,
        entity: dict[str, list[Any]],
        texts: list[list[bytes | None]],
        read: Any,
    ) -> None:
        self.plan, self.online, self.entity, self.texts, self.read = plan, online, entity, texts, read

    def __await__(self) -> Generator[Any, Any, OnlineResponse]:
        blobs = yield from self.read.__await__()
        return self.plan.respond(self.online, self.entity, self.texts, blobs)

    def discard(self) -> None:
        """The answer is not wanted: the read finishes in the background (its connection stays
        usable), its result and errors are dropped."""
        task = asyncio.ensure_future(self.read)
        _discarded.add(task)
        task.add_done_callback(_forget)


def _forget(task: asyncio.Future[Any]) -> None:
    _discarded.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning
