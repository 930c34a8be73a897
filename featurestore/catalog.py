"""`Catalog`: one consistent set of definitions (a repo's, or the registry's) and name resolution.

Everything that turns user-facing names ("view:feature", a service name) into definitions goes
through here, so offline retrieval, online lookups and the server resolve names the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .definitions import (
    DataSource,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    PushSource,
    parse_ref,
)
from .errors import DefinitionError, RetrievalError, UnknownNameError, unknown
from .on_demand import OnDemandFeatureView  # also registers the "request" source type
from .pipelines.definition import TrainingPipeline

KINDS = (
    "entity",
    "source",
    "feature_view",
    "on_demand_feature_view",
    "feature_service",
    "training_pipeline",
)


@dataclass(frozen=True)
class ViewRequest:
    """Some features of one view, as one retrieval asks for them."""

    view: FeatureView
    features: tuple[str, ...]


@dataclass(frozen=True)
class OnDemandRequest:
    """Some features of an on-demand view: the lookup and retrieval plans expand it into the views
    it reads (`featurestore.on_demand_plan.expand`)."""

    view: OnDemandFeatureView
    features: tuple[str, ...]


Requested = ViewRequest | OnDemandRequest


@dataclass
class Catalog:
    """Entities, sources, feature views and services by name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, DataSource] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    on_demand: dict[str, OnDemandFeatureView] = field(default_factory=dict)
    pipelines: dict[str, TrainingPipeline] = field(default_factory=dict)  # by model name
    # (kind, name) -> where it is defined ("features.py:12"), for a catalog loaded from a repo; not part
    # of any spec (apply records it beside the spec, so moving a definition is no change).
    locations: dict[tuple[str, str], str] = field(default_factory=dict, compare=False)

    def by_kind(self, kind: str) -> dict[str, Any]:
        kinds: dict[str, dict[str, Any]] = {
            "entity": self.entities,
            "source": self.sources,
            "feature_view": self.views,
            "on_demand_feature_view": self.on_demand,
            "feature_service": self.services,
            "training_pipeline": self.pipelines,
        }
        return kinds[kind]

    def objects(self) -> Iterable[tuple[str, str, Any]]:
        for kind in KINDS:
            for name, obj in sorted(self.by_kind(kind).items()):
                yield kind, name, obj

    def specs(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(kind, name) -> the JSON-able spec the registry stores."""
        return {(kind, name): obj.to_spec() for kind, name, obj in self.objects()}

    @classmethod
    def from_specs(cls, specs: dict[tuple[str, str], dict[str, Any]]) -> Catalog:
        """Rebuild a catalog from registry specs (sources first, then views, then services)."""
        cat = cls()
        for (kind, name), spec in specs.items():
            if kind == "entity":
                cat.entities[name] = Entity.from_spec(spec)
            elif kind == "source":
                cat.sources[name] = DataSource.from_spec(spec)
        for (kind, name), spec in specs.items():
            if kind == "feature_view":
                cat.views[name] = FeatureView.from_spec(spec, cat.entities, cat.sources)
        for (kind, name), spec in specs.items():
            if kind == "on_demand_feature_view":
                cat.on_demand[name] = OnDemandFeatureView.from_spec(spec, cat.views, cat.sources)
        for (kind, name), spec in specs.items():
            if kind == "feature_service":
                cat.services[name] = FeatureService.from_spec(spec, cat.views)
            elif kind == "training_pipeline":
                cat.pipelines[name] = TrainingPipeline.from_spec(spec)
        return cat

    @property
    def is_empty(self) -> bool:
        return not (
            self.entities or self.sources or self.views or self.services or self.on_demand or self.pipelines
        )

    def pipeline(self, model: str) -> TrainingPipeline:
        """The training pipeline of model `model`."""
        try:
            return self.pipelines[model]
        except KeyError:
            raise unknown("training pipeline of model", model, self.pipelines) from None

    # -- lookups with helpful errors ------------------------------------------------------------

    def view(self, name: str) -> FeatureView:
        try:
            return self.views[name]
        except KeyError:
            if name in self.on_demand:
                raise UnknownNameError(
                    f"'{name}' is an on-demand feature view, not a feature view: it computes its features at "
                    f"request time and stores none (ask for them as '{name}:feature')"
                ) from None
            raise unknown("feature view", name, [*self.views, *self.on_demand]) from None

    def service(self, name: str) -> FeatureService:
        try:
            return self.services[name]
        except KeyError:
            raise unknown("feature service", name, self.services) from None

    def source(self, name: str) -> DataSource:
        try:
            return self.sources[name]
        except KeyError:
            raise unknown("source", name, self.sources) from None

    def views_of_source(self, source_name: str) -> list[FeatureView]:
        """The views that read a source (directly, or a push source's batch source)."""
        return [v for v in self.views.values() if v.source.name == source_name]

    def push_source(self, name: str) -> PushSource:
        src = self.source(name)
        if not isinstance(src, PushSource):
            pushable = [n for n, s in self.sources.items() if isinstance(s, PushSource)]
            raise DefinitionError(f"source '{name}' is not a PushSource; push sources: {pushable or 'none'}")
        return src

    def resolve(self, features: Any) -> list[Requested]:
        """Feature refs, a FeatureService (or its name) -> one ViewRequest per view, in first-seen order.

        Accepts: ["view:feature", ...], a FeatureService, a service name, a FeatureView, projections.
        """
        items: Sequence[Any]
        if isinstance(features, FeatureService):
            items = features.features
        elif isinstance(features, str):
            if ":" in features:
                items = [features]
            else:
                items = self.service(features).features
        elif isinstance(features, (FeatureView, FeatureViewProjection, OnDemandFeatureView)):
            items = [features]
        else:
            items = list(features or [])
        if not items:
            raise RetrievalError(
                "no features requested: pass feature refs ('view:feature') or a feature service"
            )
        wanted: dict[str, list[str]] = {}
        for item in items:
            if isinstance(item, FeatureView):
                pairs = self._all_features(item.name, [f.name for f in item.schema])
            elif isinstance(item, OnDemandFeatureView):
                pairs = [(item.name, f) for f in item.feature_names]
            elif isinstance(item, FeatureViewProjection):
                if item.whole_view and item.view_name not in self.on_demand:
                    pairs = self._all_features(item.view_name, item.features)
                else:
                    pairs = [(item.view_name, f) for f in item.features]
            elif isinstance(item, str):
                pairs = [parse_ref(item)]
            else:
                raise RetrievalError(
                    f"cannot read {item!r} as a feature: use 'view:feature' strings or a feature service"
                )
            for view_name, feature in pairs:
                if view_name in self.on_demand:
                    computed = self.on_demand[view_name]
                    if feature not in computed.feature_names:
                        raise unknown(
                            f"feature of on-demand view '{view_name}':", feature, computed.feature_names
                        )
                    names = wanted.setdefault(view_name, [])
                    if feature not in names:
                        names.append(feature)
                    continue
                view = self.view(view_name)
                if feature in view.join_keys:
                    raise UnknownNameError(
                        f"'{feature}' is a join key of feature view '{view_name}', not a feature: entity rows "
                        f"carry it (its features: {', '.join(view.feature_names)})"
                    )
                if feature not in view.feature_names:
                    # The applied view was checked against its source at apply, so its field is the
                    # right spelling and suggesting it is safe here.
                    raise unknown(f"feature of view '{view_name}':", feature, view.feature_names)
                names = wanted.setdefault(view_name, [])
                if feature not in names:
                    names.append(feature)
        return [
            ViewRequest(self.views[v], tuple(fs))
            if v in self.views
            else OnDemandRequest(self.on_demand[v], tuple(fs))
            for v, fs in wanted.items()
        ]

    def _all_features(self, view_name: str, fields: Sequence[str]) -> list[tuple[str, str]]:
        """A whole view's fields as (view, feature) pairs, without its join keys as this catalog
        knows them: a view object held by the caller may name its entities by string, and then
        only the applied view knows which of its fields are keys."""
        keys = set(self.view(view_name).join_keys)
        return [(view_name, f) for f in fields if f not in keys]


def output_names(requests: Sequence[Requested], full_feature_names: bool) -> list[list[str]]:
    """Column names of the requested features; refuses collisions when names are not prefixed."""
    names = [[f"{r.view.name}__{f}" if full_feature_names else f for f in r.features] for r in requests]
    seen: dict[str, str] = {}
    for r, cols in zip(requests, names):
        for col in cols:
            if col in seen:
                raise RetrievalError(
                    f"feature name '{col}' is requested from both '{seen[col]}' and '{r.view.name}': "
                    "pass full_feature_names=True to prefix each feature with its view"
                )
            seen[col] = r.view.name
    return names
