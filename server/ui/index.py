"""The registry index of the UI: every model version, alias, saved training set and the run that
made it, read once per change of the registry and shared by the pages (`registry_index(request)`).

The catalog is already held in memory by the store; this is the same for the model side, so a page
that shows who uses a view, a service or a training set, the models list, the home page's counts or
the lineage graph reads no registry table per request. The index is rebuilt when its key changes:
the catalog object, `store.models.generation()` (registrations and alias moves, approvals
included), the training sets' names and newest save in the audit trail, and the newest pipeline
run. The key is polled at most every `POLL_SECONDS` per app, and at once after a model change made
in this process (the registry's change notification), so a burst of page views costs one poll.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import Request

from featurestore import FeatureStore
from featurestore.catalog import Catalog
from featurestore.definitions import DataSource, PushSource
from featurestore.errors import NotAppliedError
from featurestore.models.lineage import TrainingSet
from featurestore.models.registry import ModelVersion
from featurestore.on_demand import RequestSource

from .graph import Graph, Node

POLL_SECONDS = 1.0  # as the store's CATALOG_POLL_SECONDS
ALL_RUNS = 10**9  # the run records read (once per change) for the sets they made: all of them

COLUMNS = (
    ("source", "Sources"),
    ("view", "Feature views"),
    ("on_demand", "On-demand views"),
    ("service", "Feature services"),
    ("training_set", "Training sets"),
    ("version", "Model versions"),
    ("alias", "Aliases"),
)


def when(value: Any) -> datetime | None:
    """An ISO time (or a datetime) as an aware datetime; None when missing or not a time."""
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, str) and value:
        try:
            found = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return found if found.tzinfo else found.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Spine:
    """Where a training set's entity rows came from and the time they span (None when unknown)."""

    start: datetime | None
    end: datetime | None
    run: int | None = None  # the pipeline run that made the set
    model: str | None = None
    split_at: datetime | None = None
    train_rows: int | None = None
    valid_rows: int | None = None
    column: str | None = None  # the timestamp column the range is of, when read from the file
    source: str | None = None  # the run's spine: a source or feature view name


def file_spine(store: FeatureStore, ts: TrainingSet) -> Spine | None:
    """The time range of the entity rows' timestamp column, from its Parquet statistics (metadata
    only; None for sets kept on object storage or without statistics)."""
    sets = store.training_sets
    if sets.objects is not None:
        return None
    try:
        meta = pq.ParquetFile(sets.root / ts.entity_path)
    except (OSError, pa.ArrowException):
        return None
    schema = meta.schema_arrow
    for i, f in enumerate(schema):
        if not pa.types.is_timestamp(f.type):
            continue
        lows, highs = [], []
        for g in range(meta.metadata.num_row_groups):
            stats = meta.metadata.row_group(g).column(i).statistics
            if stats is None or not stats.has_min_max:
                return None
            lows.append(stats.min)
            highs.append(stats.max)
        if lows:
            return Spine(when(min(lows)), when(max(highs)), column=f.name)
    return None


@dataclass(frozen=True)
class VersionSummary:
    """What the pages show of a model version without reading it (its record: `store.models.get`)."""

    name: str
    version: int
    flavor: str
    training_set: str | None
    training_fingerprint: str | None
    feature_service: str
    feature_refs: tuple[str, ...]  # "view:feature" of its inputs looked up online
    metrics: dict[str, Any]
    registered_at: str
    registered_by: str
    description: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class TrainingSetSummary:
    """A saved training set as the lists show it; `spine` from the run that made it, else from
    its entity rows' Parquet statistics (None when neither says)."""

    name: str
    fingerprint: str
    rows: int
    created_at: str
    created_by: str
    description: str
    feature_refs: tuple[str, ...]
    entity_columns: tuple[str, ...]
    spine: Spine | None


def _q(name: str) -> str:
    return quote(name, safe="")


class RegistryIndex:
    """Model versions, aliases and training sets of one state of the registry (read-only)."""

    def __init__(
        self,
        catalog: Catalog | NotAppliedError,
        versions: list[VersionSummary],
        training_sets: dict[str, TrainingSetSummary],
    ):
        self.catalog = catalog  # (why there is none: models can be registered before an apply)
        self.training_sets = training_sets
        by_model: dict[str, list[VersionSummary]] = defaultdict(list)
        for v in sorted(versions, key=lambda v: (v.name, -v.version)):
            by_model[v.name].append(v)
        self._by_model = dict(by_model)
        self.model_names = sorted(self._by_model)
        self._by_view: dict[str, list[VersionSummary]] = defaultdict(list)
        self._by_service: dict[str, list[VersionSummary]] = defaultdict(list)
        self._by_set: dict[str, list[VersionSummary]] = defaultdict(list)
        for name in self.model_names:
            for v in self._by_model[name]:
                for view in dict.fromkeys(ref.partition(":")[0] for ref in v.feature_refs):
                    self._by_view[view].append(v)
                self._by_service[v.feature_service].append(v)
                if v.training_set:
                    self._by_set[v.training_set].append(v)
        self._lock = threading.Lock()
        self._graph: Graph | None = None
        self._extra: list[tuple[str, str]] = []

    def versions_of(self, model: str) -> list[VersionSummary]:
        """Every version of `model`, newest first (empty for an unknown model)."""
        return list(self._by_model.get(model, ()))

    def latest(self, model: str) -> VersionSummary | None:
        found = self._by_model.get(model)
        return found[0] if found else None

    def using_view(self, view: str) -> list[VersionSummary]:
        """The versions with an input of `view` (a feature view or an on-demand view)."""
        return list(self._by_view.get(view, ()))

    def using_service(self, service: str) -> list[VersionSummary]:
        return list(self._by_service.get(service, ()))

    def using_training_set(self, name: str) -> list[VersionSummary]:
        return list(self._by_set.get(name, ()))

    def lineage(self) -> Graph:
        """The whole lineage graph, built once per index (callers must not change it)."""
        with self._lock:
            if self._graph is None:
                self._graph = self._lineage()
            return self._graph

    @property
    def extra_edges(self) -> list[tuple[str, str]]:
        """The links the graph's columns cannot hold (node ids of the lineage graph): a push
        source's batch source -> the push source, both sources."""
        self.lineage()
        return self._extra

    def _lineage(self) -> Graph:
        """Every applied source, view, on-demand view and service, saved training set, model
        version and alias, linked upstream -> downstream."""
        catalog = self.catalog
        if isinstance(catalog, NotAppliedError):
            raise catalog
        g = Graph(COLUMNS)
        extra: list[tuple[str, str]] = []

        def source(s: DataSource) -> str:
            kind = s.source_type
            if isinstance(s, PushSource) and s.batch_source is not None:
                kind += f"; batch source {s.batch_source.name}"
            node = g.add(
                Node(
                    f"source:{s.name}",
                    "source",
                    s.name,
                    f"/ui/sources/{_q(s.name)}",
                    f"source {s.name} ({kind})",
                )
            )
            if isinstance(s, PushSource) and s.batch_source is not None:
                # both are sources (one column): the graph cannot draw it; the links table lists it
                edge = (source(s.batch_source), node.id)
                if edge not in extra:
                    extra.append(edge)
            return node.id

        for s in catalog.sources.values():
            source(s)
        for v in catalog.views.values():
            g.add(Node(f"view:{v.name}", "view", v.name, f"/ui/views/{_q(v.name)}", f"feature view {v.name}"))
            g.link(source(v.source), f"view:{v.name}")
        for od in catalog.on_demand.values():
            node = g.add(
                Node(
                    f"view:{od.name}",
                    "on_demand",
                    od.name,
                    f"/ui/views/{_q(od.name)}",
                    f"on-demand view {od.name}",
                )
            )
            for inp in od.sources:
                if isinstance(inp, RequestSource):
                    g.link(source(inp), node.id)
                elif f"view:{inp.view_name}" in g.nodes:
                    g.link(f"view:{inp.view_name}", node.id)
        for svc in catalog.services.values():
            node = g.add(
                Node(
                    f"service:{svc.name}",
                    "service",
                    svc.name,
                    f"/ui/services/{_q(svc.name)}",
                    f"feature service {svc.name}",
                )
            )
            for p in svc.features:
                if f"view:{p.view_name}" in g.nodes:
                    g.link(f"view:{p.view_name}", node.id)
        services = {frozenset(svc.refs): svc.name for svc in catalog.services.values()}
        for ts in self.training_sets.values():
            node = g.add(
                Node(
                    f"training_set:{ts.name}",
                    "training_set",
                    ts.name,
                    f"/ui/training-sets/{_q(ts.name)}",
                    f"training set {ts.name} ({ts.rows:,} rows, fingerprint {ts.fingerprint[:12]})",
                )
            )
            spine = ts.spine.source if ts.spine is not None else None
            for upstream in (f"source:{spine}", f"view:{spine}") if spine else ():
                if upstream in g.nodes and g.nodes[upstream].kind in ("source", "view"):
                    g.link(upstream, node.id)  # the entity rows of the run that made it
                    break
            # A training set records its features, not the service it was asked for: one whose
            # features are exactly a service's came from that service; any other, from its views.
            service = services.get(frozenset(ts.feature_refs))
            if service is not None:
                g.link(f"service:{service}", node.id)
                continue
            for view in dict.fromkeys(ref.split(":", 1)[0] for ref in ts.feature_refs):
                if f"view:{view}" in g.nodes:
                    g.link(f"view:{view}", node.id)
        for model in self.model_names:
            for mv in reversed(self._by_model[model]):  # oldest first
                node = g.add(
                    Node(
                        f"version:{model}@{mv.version}",
                        "version",
                        f"{model} v{mv.version}",
                        f"/ui/models/{_q(model)}/versions/{mv.version}",
                        f"model {model} version {mv.version}",
                    )
                )
                for upstream in (f"service:{mv.feature_service}", f"training_set:{mv.training_set}"):
                    if upstream in g.nodes:
                        g.link(upstream, node.id)
                for alias in mv.aliases:
                    alias_node = g.add(
                        Node(
                            f"alias:{model}@{alias}",
                            "alias",
                            f"{model}@{alias}",
                            f"/ui/models/{_q(model)}",
                            f"alias {alias} of model {model}: version {mv.version}",
                        )
                    )
                    g.link(node.id, alias_node.id)
        self._extra = extra
        return g


def _version(mv: ModelVersion) -> VersionSummary:
    """The summary of one model version."""
    return VersionSummary(
        name=mv.name,
        version=mv.version,
        flavor=mv.flavor,
        training_set=mv.training_set,
        training_fingerprint=mv.training_fingerprint,
        feature_service=mv.feature_service,
        feature_refs=tuple(mv.feature_refs),
        metrics=dict(mv.metrics or {}),
        registered_at=mv.registered_at,
        registered_by=mv.registered_by,
        description=mv.description or "",
        aliases=tuple(sorted(mv.aliases)),
    )


def run_spines(store: FeatureStore) -> dict[str, Spine]:
    """The spine of each training set a recorded pipeline run made (the newest run's), by set name:
    every run record, read once per change of the index."""
    found: dict[str, Spine] = {}
    for run in store.pipelines.runs(None, limit=ALL_RUNS):  # newest first
        name = run.record.get("training_set")
        if not isinstance(name, str) or name in found:
            continue
        spine = run.record.get("spine_range") or {}
        source = (run.record.get("inputs") or {}).get("spine")
        found[name] = Spine(
            start=when(spine.get("start")),
            end=when(spine.get("end")),
            run=run.id,
            model=run.model,
            split_at=when(spine.get("split_at")),
            train_rows=spine.get("train_rows"),
            valid_rows=spine.get("valid_rows"),
            source=source if isinstance(source, str) else None,
        )
    return found


def _catalog(store: FeatureStore) -> Catalog | NotAppliedError:
    try:
        return store.catalog
    except NotAppliedError as e:
        return e


def build_index(store: FeatureStore) -> RegistryIndex:
    """The index of the registry as it is now: one read of every model version, one of the
    aliases, one of every run record, and each training set's record."""
    catalog = _catalog(store)
    versions = [_version(mv) for mv in store.models.all_versions()]
    spines = run_spines(store)
    sets: dict[str, TrainingSetSummary] = {}
    for ts in store.training_sets.list():
        sets[ts.name] = TrainingSetSummary(
            name=ts.name,
            fingerprint=ts.fingerprint,
            rows=ts.rows,
            created_at=ts.created_at,
            created_by=ts.created_by,
            description=ts.description,
            feature_refs=tuple(ts.feature_refs),
            entity_columns=tuple(ts.entity_rows.get("columns") or ()),
            spine=spines.get(ts.name) or file_spine(store, ts),
        )
    return RegistryIndex(catalog, versions, sets)


def index_key(store: FeatureStore) -> tuple[Hashable, ...]:
    """What the index depends on, in a few small reads: the catalog object, the models' generation,
    the training sets' names and newest save, the newest pipeline run and its last step."""
    catalog = _catalog(store)
    newest = store.pipelines.runs(None, limit=1)
    saved = store.registry.audit_log(action="training_set_save", limit=1)
    return (
        None if isinstance(catalog, NotAppliedError) else id(catalog),
        store.models.generation(),
        tuple(store.training_sets.names()),
        (saved[0]["at"], saved[0]["target"]) if saved else None,
        (newest[0].id, newest[0].updated_at, newest[0].step) if newest else None,
    )


class IndexHolder:
    """The registry index of one app and store (`app.state.ui_index`): polled at most every
    `poll_seconds`, rebuilt when its key changed; `builds` counts the rebuilds."""

    def __init__(self, store: FeatureStore, poll_seconds: float = POLL_SECONDS):
        self.store = store
        self.poll_seconds = poll_seconds
        self.builds = 0
        self._lock = threading.Lock()
        self._index: RegistryIndex | None = None
        self._key: tuple[Hashable, ...] | None = None
        self._checked_at = 0.0
        self._changed = False
        store.models.subscribe(self._model_changed)

    def _model_changed(self, _name: str) -> None:  # a change made in this process: poll at once
        self._changed = True

    def close(self) -> None:
        """Stop hearing of the store's model changes (the app's store was replaced)."""
        self.store.models.unsubscribe(self._model_changed)

    def invalidate(self) -> None:
        """Poll the key on the next `get` (a change the registry does not notify of)."""
        self._changed = True

    def get(self) -> RegistryIndex:
        with self._lock:  # one build at a time: a second viewer waits for the first one's index
            now = time.monotonic()
            if self._index is None or self._changed or now - self._checked_at > self.poll_seconds:
                self._changed = False
                key = index_key(self.store)
                self._checked_at = now
                if self._index is None or key != self._key:
                    self._index = build_index(self.store)
                    self._key = key
                    self.builds += 1
            return self._index


def index_holder(request: Request) -> IndexHolder:
    """The app's IndexHolder, made anew when the app's store was replaced."""
    state = request.app.state
    store: FeatureStore = state.fs.store
    holder = getattr(state, "ui_index", None)
    if not isinstance(holder, IndexHolder) or holder.store is not store:
        if isinstance(holder, IndexHolder):
            holder.close()
        holder = state.ui_index = IndexHolder(store)
    return holder


def registry_index(request: Request) -> RegistryIndex:
    """The registry index of the app of `request` (made on first use, rebuilt on a change)."""
    return index_holder(request).get()


__all__ = [
    "COLUMNS",
    "IndexHolder",
    "RegistryIndex",
    "Spine",
    "TrainingSetSummary",
    "VersionSummary",
    "build_index",
    "file_spine",
    "registry_index",
    "when",
]
