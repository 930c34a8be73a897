"""`GET /catalog/entities|views|on-demand-views|services` (and one object by name): the applied definitions.

Views come with their freshness: the watermark (materialized up to) and the last materialization
run. Needs the `read` role. Handlers are plain functions: FastAPI runs them in the threadpool, so
the registry's SQLite reads never block the event loop.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends

from featurestore.catalog import Catalog
from featurestore.definitions import Entity, FeatureService, FeatureView, PushSource
from featurestore.errors import NotAppliedError, UnknownNameError, unknown
from featurestore.on_demand import OnDemandFeatureView
from featurestore.registry import Registry

from ..auth import require
from ..schemas import (
    ERRORS,
    EntityInfo,
    EntityList,
    FieldInfo,
    Freshness,
    MaterializationInfo,
    OnDemandViewInfo,
    OnDemandViewList,
    RequestFieldInfo,
    ServiceInfo,
    ServiceList,
    ViewInfo,
    ViewList,
)
from ..state import ServerState, State

router = APIRouter(
    prefix="/catalog", tags=["catalog"], dependencies=[Depends(require("read"))], responses=ERRORS(401, 403)
)


def _catalog(state: ServerState) -> Catalog:
    try:
        return state.store.catalog
    except NotAppliedError:
        return Catalog()  # nothing applied yet: an empty catalog, not an error


def _entity(entity: Entity) -> EntityInfo:
    return EntityInfo(
        name=entity.name,
        join_keys=list(entity.join_keys),
        description=entity.description,
        owner=entity.owner,
        tags=dict(entity.tags),
    )


def _view(view: FeatureView, registry: Registry, watermarks: dict[str, datetime]) -> ViewInfo:
    last = registry.last_materialization(view.name)
    return ViewInfo(
        name=view.name,
        entities=[e.name for e in view.entities],
        join_keys=list(view.join_keys),
        features=[FieldInfo(name=f.name, dtype=f.dtype.to_spec()) for f in view.features],
        source=view.source.name,
        push=isinstance(view.source, PushSource),
        ttl_seconds=view.ttl.total_seconds() if view.ttl is not None else None,
        online=view.online,
        description=view.description,
        owner=view.owner,
        tags=dict(view.tags),
        freshness=Freshness(
            watermark=watermarks.get(view.name),
            last_materialization=MaterializationInfo(**last) if last else None,
        ),
    )


def _on_demand(view: OnDemandFeatureView) -> OnDemandViewInfo:
    return OnDemandViewInfo(
        name=view.name,
        inputs=[f"{p.view_name}:{f}" for p in view.projections for f in p.features],
        request_fields=[
            RequestFieldInfo(name=f.name, dtype=f.dtype.to_spec(), source=s.name)
            for s in view.request_sources
            for f in s.schema
        ],
        features=[FieldInfo(name=f.name, dtype=f.dtype.to_spec()) for f in view.schema],
        mode=view.mode,
        module=view.module,
        function=view.function,
        description=view.description,
        owner=view.owner,
        tags=dict(view.tags),
    )


def _service(service: FeatureService) -> ServiceInfo:
    return ServiceInfo(
        name=service.name,
        features=service.refs,
        description=service.description,
        owner=service.owner,
        tags=dict(service.tags),
    )


@router.get("/entities", response_model=EntityList, summary="Entities and their join keys")
def entities(state: State) -> EntityList:
    return EntityList(entities=[_entity(e) for _, e in sorted(_catalog(state).entities.items())])


@router.get("/entities/{name}", response_model=EntityInfo, summary="One entity", responses=ERRORS(404))
def entity(name: str, state: State) -> EntityInfo:
    catalog = _catalog(state)
    if name not in catalog.entities:
        raise unknown("entity", name, catalog.entities)
    return _entity(catalog.entities[name])


@router.get("/views", response_model=ViewList, summary="Feature views with their freshness")
def views(state: State) -> ViewList:
    registry = state.store.registry
    watermarks = registry.watermarks()
    return ViewList(views=[_view(v, registry, watermarks) for _, v in sorted(_catalog(state).views.items())])


@router.get(
    "/views/{name}",
    response_model=ViewInfo,
    summary="One feature view with its freshness",
    responses=ERRORS(404),
)
def view(name: str, state: State) -> ViewInfo:
    registry = state.store.registry
    return _view(_catalog(state).view(name), registry, registry.watermarks())


@router.get(
    "/on-demand-views",
    response_model=OnDemandViewList,
    summary="On-demand feature views: inputs, request fields, outputs",
)
def on_demand_views(state: State) -> OnDemandViewList:
    return OnDemandViewList(
        on_demand_views=[_on_demand(v) for _, v in sorted(_catalog(state).on_demand.items())]
    )


@router.get(
    "/on-demand-views/{name}",
    response_model=OnDemandViewInfo,
    summary="One on-demand feature view",
    responses=ERRORS(404),
)
def on_demand_view(name: str, state: State) -> OnDemandViewInfo:
    catalog = _catalog(state)
    if name not in catalog.on_demand:
        if name in catalog.views:
            raise UnknownNameError(
                f"'{name}' is a feature view, not an on-demand one: see /catalog/views/{name}"
            )
        raise unknown("on-demand feature view", name, catalog.on_demand)
    return _on_demand(catalog.on_demand[name])


@router.get("/services", response_model=ServiceList, summary="Feature services and their features")
def services(state: State) -> ServiceList:
    return ServiceList(services=[_service(s) for _, s in sorted(_catalog(state).services.items())])


@router.get(
    "/services/{name}", response_model=ServiceInfo, summary="One feature service", responses=ERRORS(404)
)
def service(name: str, state: State) -> ServiceInfo:
    return _service(_catalog(state).service(name))
