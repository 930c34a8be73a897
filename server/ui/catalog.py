"""UI pages: the catalog (`/ui/catalog`) and one page per definition: `/ui/views/{name}` (feature
views and on-demand views), `/ui/entities/{name}`, `/ui/services/{name}`, `/ui/sources/{name}`.

The catalog lists the applied objects from the store's in-memory catalog; its rows, and where each
object is defined, are worked out once per applied catalog (`CatalogRows`), and a request adds only
the watermarks (one registry query). `?q=` keeps the rows holding every word (`matches`), so a search
works without the script and can be shared. A small catalog (no section over ROWS_SHOWN rows) sends
every row with its search text (`data-search`) and `static/ui.js` filters it as you type; a larger
one sends at most ROWS_SHOWN rows per section, and the script asks `/ui/catalog/results?q=` (the
same sections, rendered by the same template) as you type, so the page stays small at any size.
A detail page reads only its own object: statistics, runs and rows online of that one view.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.responses import HTMLResponse

from featurestore import FeatureStore
from featurestore.catalog import Catalog
from featurestore.definitions import DataSource, FeatureView, PushSource
from featurestore.errors import FeatureStoreError, NotAppliedError, unknown
from featurestore.monitoring.formats import utc
from featurestore.monitoring.svg import distribution
from featurestore.on_demand import OnDemandFeatureView, RequestSource

from .access import Reader
from .index import RegistryIndex, registry_index
from .render import app_part, page, renderer, store_of
from .render import partial as fragment

router = APIRouter(include_in_schema=False)

RUNS_SHOWN = 10
ROWS_SHOWN = 100  # rows per catalog section at most: beyond, the server searches as you type


def words(q: str) -> list[str]:
    """The words of a search, lowercased (as ui.js splits them)."""
    return q.lower().split()


def matches(search: str, wanted: list[str]) -> bool:
    """Whether every wanted word is part of a row's (lowercased) search text: ui.js's rule."""
    return all(w in search for w in wanted)


def _tags(tags: dict[str, str]) -> list[str]:
    return [f"{k}={v}" if v else k for k, v in sorted(tags.items())]


def _search(*parts: Any) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, Iterable):
            out.extend(str(x) for x in p)
        elif p is not None:
            out.append(str(p))
    return " ".join(x for x in out if x).lower()


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def _batch_name(source: DataSource) -> str | None:
    """The batch source's name of a push source (None for other sources)."""
    if isinstance(source, PushSource) and source.batch_source is not None:
        return source.batch_source.name
    return None


def where(source: DataSource) -> str:
    """Where a source's rows come from, in one line: its path, table or query."""
    if isinstance(source, PushSource):
        batch = source.batch_source
        return f"pushed; batch source {batch.name}" if batch is not None else "pushed"
    if isinstance(source, RequestSource):
        return "sent with each request"
    for attr in ("path", "table", "query"):
        value = getattr(source, attr, None)
        if value:
            return str(value)
    return ""


WATERMARK = "<!--watermark-->"  # where a view's row shows its watermark (escaped text has no "<")
SECTIONS = ("entities", "views", "on_demand", "features", "services", "sources")
# the macro of templates/catalog_rows.html.j2 that renders a row of each section
_MACROS = {
    "entities": "entity",
    "views": "view",
    "on_demand": "on_demand",
    "features": "feature",
    "services": "service",
    "sources": "source",
}


RowData = Callable[[], dict[str, Any]]  # one row's fields, as its macro takes them, when asked


class Row:
    """One catalog row of a section: its fields and search text worked out when first asked, its
    HTML rendered when a page first shows it, split where the page adds things (` hidden` after the
    head; a view's watermark between body and tail). Two threads may both work out a row once: the
    same result either way."""

    __slots__ = ("_make", "_macro", "_bare", "_data", "_html")

    def __init__(self, make: RowData, macro: Any, bare: bool):
        self._make = make
        self._macro = macro
        self._bare = bare  # no search text in the HTML: the server searches this catalog
        self._data: dict[str, Any] | None = None
        self._html: tuple[str, str, str] | None = None

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._make()
        return self._data

    @property
    def search(self) -> str:
        text: str = self.data["search"]
        return text

    def html(self) -> tuple[str, str, str]:
        """(head, body, tail) of the row's `<tr>`."""
        if self._html is None:
            data = self.data
            html = str(self._macro(dict(data, search="") if self._bare else data))
            cut = html.index(">")  # the end of the opening <tr ...>
            body, _, tail = html[cut:].partition(WATERMARK)
            self._html = (html[:cut], body, tail)
        return self._html


@dataclass(frozen=True)
class Rows:
    """The rows of one applied catalog per section. `server_search`: some section has more than
    ROWS_SHOWN rows, so the page shows at most ROWS_SHOWN per section and the server searches."""

    sections: dict[str, list[Row]]
    server_search: bool


@dataclass(frozen=True)
class Section:
    """One table of the catalog page for one request: its rows' HTML, how many rows it shows, how
    many the search matched (all of them, shown or not) and how many it has."""

    key: str
    html: Markup
    shown: int
    matched: int
    total: int


def catalog_rows(catalog: Catalog, locations: dict[tuple[str, str], str]) -> dict[str, list[RowData]]:
    """The catalog's rows per section, in order: each worked out (with its "search" text) only when a
    page shows it or a search reads it."""
    views = sorted(catalog.views.values(), key=lambda v: v.name)
    on_demand = sorted(catalog.on_demand.values(), key=lambda v: v.name)
    features: list[RowData] = []
    for v in views:
        location = locations.get(("feature_view", v.name), "")
        features.extend(partial(_feature_row, v.name, f, v.owner, location) for f in v.features)
    for odv in on_demand:
        location = locations.get(("on_demand_feature_view", odv.name), "")
        features.extend(partial(_feature_row, odv.name, f, odv.owner, location) for f in odv.features)
    readers: dict[str, int] = {}
    for v in catalog.views.values():
        readers[v.source.name] = readers.get(v.source.name, 0) + 1
        batch = _batch_name(v.source)
        if batch is not None:
            readers[batch] = readers.get(batch, 0) + 1
    return {
        "entities": [
            partial(_entity_row, e) for e in sorted(catalog.entities.values(), key=lambda e: e.name)
        ],
        "views": [partial(_view_row, v) for v in views],
        "on_demand": [partial(_on_demand_row, v) for v in on_demand],
        "features": features,
        "services": [
            partial(_service_row, s) for s in sorted(catalog.services.values(), key=lambda s: s.name)
        ],
        "sources": [
            partial(_source_row, s, readers.get(s.name, 0))
            for s in sorted(catalog.sources.values(), key=lambda s: s.name)
        ],
    }


def _entity_row(e: Any) -> dict[str, Any]:
    return {
        "name": e.name,
        "join_keys": ", ".join(e.join_keys),
        "owner": e.owner,
        "description": e.description,
        "tags": _tags(e.tags),
        "search": _search("entity", e.name, e.join_keys, e.owner, _tags(e.tags), e.description),
    }


def _view_row(v: FeatureView) -> dict[str, Any]:
    tags = _tags(v.tags)
    entity_names = [e.name for e in v.entities]
    return {
        "name": v.name,
        "entities": entity_names,
        "features": len(v.features),
        "source": v.source.name,
        "ttl": _seconds(v.ttl),
        "online": v.online,
        "owner": v.owner,
        "tags": tags,
        "search": _search("view", v.name, entity_names, v.source.name, v.owner, tags, v.description),
    }


def _on_demand_row(odv: OnDemandFeatureView) -> dict[str, Any]:
    tags = _tags(odv.tags)
    inputs = [p.view_name for p in odv.projections]
    requests = [f.name for r in odv.request_sources for f in r.schema]
    return {
        "name": odv.name,
        "inputs": inputs,
        "requests": requests,
        "features": len(odv.features),
        "mode": odv.mode,
        "owner": odv.owner,
        "tags": tags,
        "description": odv.description,
        "search": _search("on-demand", odv.name, inputs, requests, odv.owner, tags, odv.description),
    }


def _service_row(s: Any) -> dict[str, Any]:
    views = [p.view_name for p in s.features]
    return {
        "name": s.name,
        "features": len(s.refs),
        "views": views,
        "owner": s.owner,
        "tags": _tags(s.tags),
        "description": s.description,
        "search": _search("service", s.name, views, s.owner, _tags(s.tags), s.description),
    }


def _source_row(s: DataSource, readers: int) -> dict[str, Any]:
    return {
        "name": s.name,
        "kind": s.source_type,
        "where": where(s),
        "timestamp": s.timestamp_field if not isinstance(s, RequestSource) else "",
        "views": readers,
        "owner": s.owner,
        "description": s.description,
        "search": _search("source", s.name, s.source_type, where(s), s.owner, _tags(s.tags), s.description),
    }


def _feature_row(view: str, f: Any, owner: str, location: str) -> dict[str, Any]:
    tags = _tags(f.tags)
    dtype = str(f.dtype)
    return {
        "view": view,
        "name": f.name,
        "type": dtype,
        "owner": owner,
        "tags": tags,
        "description": f.description,
        "location": location,
        "search": _search("feature", f"{view}:{f.name}", dtype, owner, tags, f.description),
    }


class CatalogRows:
    """What the catalog pages take from one applied catalog, worked out once (`app.state.ui_catalog`).

    Definitions, and where each is defined, change only with an apply (a new catalog object), so
    the locations and the rows' search text are kept until then, and a row's HTML once rendered; a
    request adds what changes without an apply (the watermarks) and picks the rows its search keeps.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._locations: dict[tuple[str, str], str] | None = None
        self._rows: Rows | None = None

    def _of(self, store: FeatureStore, catalog: Catalog) -> dict[tuple[str, str], str]:
        """The locations of `catalog` (read now if not yet); the caller holds the lock."""
        if self._catalog is not catalog:
            self._catalog, self._locations, self._rows = catalog, None, None
        if self._locations is None:
            self._locations = store.registry.locations()
        return self._locations

    def location(self, store: FeatureStore, kind: str, name: str) -> str | None:
        """Where the applied object (kind, name) is defined ("features.py:12"), if known."""
        catalog = store.catalog
        with self._lock:
            return self._of(store, catalog).get((kind, name))

    def rows(self, store: FeatureStore, env: jinja2.Environment) -> Rows:
        catalog = store.catalog
        with self._lock:
            locations = self._of(store, catalog)
            if self._rows is None:
                self._rows = self._build(catalog, locations, env)
            return self._rows

    @staticmethod
    def _build(catalog: Catalog, locations: dict[tuple[str, str], str], env: jinja2.Environment) -> Rows:
        data = catalog_rows(catalog, locations)
        server_search = any(len(rows) > ROWS_SHOWN for rows in data.values())
        macros = env.get_template("catalog_rows.html.j2").module
        sections = {
            key: [Row(make, getattr(macros, _MACROS[key]), server_search) for make in rows]
            for key, rows in data.items()
        }
        return Rows(sections, server_search)


def catalog_cache(request: Request) -> CatalogRows:
    """The app's CatalogRows (made on first use)."""
    return app_part(request, "ui_catalog", CatalogRows)


def catalog_sections(rows: Rows, watermarks: dict[str, datetime], wanted: list[str]) -> list[Section]:
    """Each section's HTML for one request, with the current watermarks. A small catalog sends every
    row, those the search leaves out hidden (the script filters them as you type); a large one sends
    only the first ROWS_SHOWN rows the search keeps, and counts them all."""
    limit = ROWS_SHOWN if rows.server_search else None
    out = []
    for key in SECTIONS:
        section = rows.sections.get(key, [])
        parts: list[str] = []
        shown = matched = 0
        for row in section:
            ok = not wanted or matches(row.search, wanted)
            matched += ok
            if limit is not None and (not ok or shown >= limit):
                continue
            shown += ok
            head, body, tail = row.html()
            parts.append(head if ok else head + " hidden")
            parts.append(body)
            if key == "views":
                mark = watermarks.get(row.data["name"])
                parts.append(utc(mark) if mark is not None else "not materialized")
                parts.append(tail)
        out.append(Section(key, Markup("".join(parts)), shown, matched, len(section)))
    return out


def _results(request: Request, q: str) -> dict[str, Any]:
    """What templates/catalog_results.html.j2 shows for search `q`: the page's and the fragment's."""
    store = store_of(request)
    try:
        rows: Rows | None = catalog_cache(request).rows(store, renderer(request).env)
    except NotAppliedError:
        rows = None
    sections = catalog_sections(rows, store.registry.watermarks(), words(q)) if rows is not None else []
    return {
        "q": q,
        "empty": rows is None,
        "server_search": rows is not None and rows.server_search,
        "sections": {s.key: s for s in sections},
        "shown": sum(s.shown for s in sections),
        "matched": sum(s.matched for s in sections),
        "total": sum(s.total for s in sections),
    }


@router.get("/ui/catalog")
def catalog_page(
    request: Request, viewer: Reader, q: Annotated[str, Query(max_length=500)] = ""
) -> HTMLResponse:
    """GET /ui/catalog: every section of the catalog, searched by `?q=`."""
    return page(request, viewer, "catalog.html.j2", title="Catalog", nav="catalog", **_results(request, q))


@router.get("/ui/catalog/results")
def catalog_results(
    request: Request, viewer: Reader, q: Annotated[str, Query(max_length=500)] = ""
) -> HTMLResponse:
    """The catalog page's results for `?q=` alone (a fragment): ui.js puts it in place as you type."""
    response = fragment(request, viewer, "catalog_results.html.j2", **_results(request, q))
    started = request.scope.get("state", {}).get("ui_started")
    if started is not None:
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return response


# -- detail pages ------------------------------------------------------------------------------------


def _users_of_view(store: FeatureStore, index: RegistryIndex, name: str) -> dict[str, list[Any]]:
    """What reads view `name`: services, on-demand views and model versions (by their inputs, from
    the registry index)."""
    catalog = store.catalog
    services = sorted(
        s.name for s in catalog.services.values() if any(p.view_name == name for p in s.features)
    )
    on_demand = sorted(
        v.name for v in catalog.on_demand.values() if any(p.view_name == name for p in v.projections)
    )
    return {"services": services, "on_demand": on_demand, "versions": index.using_view(name)}


def _bin_label(lo: float, hi: float) -> str:
    return f"{lo:.3g}–{hi:.3g}"


def feature_stats(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each feature's statistics of a view's summary (None: not materialized), with a histogram
    chart for numeric ones."""
    out = []
    for name, col in (summary or {}).get("columns", {}).items():
        chart = None
        hist = col.get("histogram")
        if col.get("kind") == "numeric" and hist and hist.get("counts"):
            counts = hist["counts"]
            edges = hist["edges"]
            total = sum(counts) or 1
            labels = [_bin_label(edges[i], edges[i + 1]) for i in range(len(counts))]
            chart = distribution(name, labels, [c / total for c in counts])
        out.append({"name": name, "col": col, "chart": chart})
    return out


def _view_freshness(store: FeatureStore, name: str) -> Any:
    for v in store.monitor.freshness().views:
        if v.view == name:
            return v
    return None


def _view_page(request: Request, viewer: Any, store: FeatureStore, view: FeatureView) -> HTMLResponse:
    name = view.name
    registry = store.registry
    notes: list[str] = []
    try:
        freshness = _view_freshness(store, name)
    except FeatureStoreError as e:
        freshness = None
        notes.append(f"Freshness unknown: {e}")
    rows_online = None
    if view.online:
        try:
            rows_online = store.online_store.count_rows(name)
        except FeatureStoreError as e:
            notes.append(f"Rows online unknown: {e}")
    try:
        stats = feature_stats(store.monitor.stats(name).summary)
    except FeatureStoreError as e:
        stats = []
        notes.append(f"No statistics: {e}")
    return page(
        request,
        viewer,
        "catalog_view.html.j2",
        title=f"View {name}",
        nav="catalog",
        view=view,
        ttl=_seconds(view.ttl),
        freshness_limit=_seconds(view.freshness),
        location=catalog_cache(request).location(store, "feature_view", name),
        watermark=registry.watermarks().get(name),
        fresh=freshness,
        rows_online=rows_online,
        runs=list(reversed(registry.runs(name, limit=RUNS_SHOWN))),
        runs_shown=RUNS_SHOWN,
        users=_users_of_view(store, registry_index(request), name),
        stats=stats,
        notes=notes,
        where=where,
        tags=_tags,
    )


def _on_demand_page(
    request: Request, viewer: Any, store: FeatureStore, view: OnDemandFeatureView
) -> HTMLResponse:
    catalog = store.catalog
    services = sorted(
        s.name for s in catalog.services.values() if any(p.view_name == view.name for p in s.features)
    )
    versions = registry_index(request).using_view(view.name)
    return page(
        request,
        viewer,
        "catalog_on_demand.html.j2",
        title=f"On-demand view {view.name}",
        nav="catalog",
        view=view,
        location=catalog_cache(request).location(store, "on_demand_feature_view", view.name),
        services=services,
        versions=versions,
        tags=_tags,
    )


@router.get("/ui/views/{name}")
def view_page(request: Request, viewer: Reader, name: str) -> HTMLResponse:
    """GET /ui/views/{name}: a feature view or an on-demand view."""
    store = store_of(request)
    catalog = store.catalog
    if name in catalog.on_demand:
        return _on_demand_page(request, viewer, store, catalog.on_demand[name])
    return _view_page(request, viewer, store, catalog.view(name))  # unknown: 404, "did you mean"


@router.get("/ui/entities/{name}")
def entity_page(request: Request, viewer: Reader, name: str) -> HTMLResponse:
    """GET /ui/entities/{name}: an entity and the views keyed by it."""
    store = store_of(request)
    catalog = store.catalog
    if name not in catalog.entities:
        raise unknown("entity", name, catalog.entities)
    entity = catalog.entities[name]
    views = sorted(v.name for v in catalog.views.values() if any(e.name == name for e in v.entities))
    return page(
        request,
        viewer,
        "catalog_entity.html.j2",
        title=f"Entity {name}",
        nav="catalog",
        entity=entity,
        views=views,
        location=catalog_cache(request).location(store, "entity", name),
        tags=_tags,
    )


@router.get("/ui/services/{name}")
def service_page(request: Request, viewer: Reader, name: str) -> HTMLResponse:
    """GET /ui/services/{name}: a feature service, its features and the models using it."""
    store = store_of(request)
    service = store.catalog.service(name)  # unknown: 404
    on_demand = store.catalog.on_demand
    index = registry_index(request)
    models = []
    for model in sorted({v.name for v in index.using_service(name)}):
        versions = index.versions_of(model)  # newest first
        if versions[0].feature_service != name:  # the models whose latest version reads it
            continue
        aliases = {a: v.version for v in versions for a in v.aliases}
        models.append({"name": model, "versions": len(versions), "aliases": aliases})
    return page(
        request,
        viewer,
        "catalog_service.html.j2",
        title=f"Service {name}",
        nav="catalog",
        service=service,
        on_demand=set(on_demand),
        models=models,
        location=catalog_cache(request).location(store, "feature_service", name),
        tags=_tags,
    )


@router.get("/ui/sources/{name}")
def source_page(request: Request, viewer: Reader, name: str) -> HTMLResponse:
    """GET /ui/sources/{name}: a source and what reads it."""
    store = store_of(request)
    catalog = store.catalog
    source = catalog.source(name)  # unknown: 404
    views = sorted(
        {v.name for v in catalog.views_of_source(name)}
        | {v.name for v in catalog.views.values() if _batch_name(v.source) == name}
    )
    on_demand = sorted(
        v.name for v in catalog.on_demand.values() if any(r.name == name for r in v.request_sources)
    )
    pushed_by = sorted(s.name for s in catalog.sources.values() if _batch_name(s) == name)
    return page(
        request,
        viewer,
        "catalog_source.html.j2",
        title=f"Source {name}",
        nav="catalog",
        source=source,
        where=where(source),
        fields=list(getattr(source, "schema", ()) or ()),
        batch=getattr(source, "batch_source", None),
        pushed_by=pushed_by,
        views=views,
        on_demand=on_demand,
        location=catalog_cache(request).location(store, "source", name),
        tags=_tags,
    )
