"""UI pages: saved training sets (`/ui/training-sets`) and one training set
(`/ui/training-sets/{name}`): fingerprint, features, entity rows and their time range, result
hashes, definitions, column statistics and the model versions trained on it.

The list is the app's registry index's (`index.py`: every set's record, the run that made it and
the versions trained on it, read once per change of the registry); the detail page reads its one
record (`store.training_sets.get`), never the data. The time range of the entity rows comes from
the pipeline run that made the set (its `spine_range`) or, for a set saved by hand, from the
Parquet statistics of its entity rows file. Column statistics are those kept when the set was
saved (`store.monitor.training_set_stats`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from featurestore.errors import FeatureStoreError

from .access import Reader
from .catalog import feature_stats
from .index import file_spine, registry_index, when
from .render import page, store_of

router = APIRouter(include_in_schema=False)


def refs_by_view(refs: tuple[str, ...] | list[str]) -> list[tuple[str, list[str]]]:
    """("view:feature", ...) grouped by view, in their order."""
    out: dict[str, list[str]] = {}
    for ref in refs:
        view, _, feature = ref.partition(":")
        out.setdefault(view, []).append(feature)
    return list(out.items())


@router.get("/ui/training-sets")
def training_sets_page(request: Request, viewer: Reader) -> HTMLResponse:
    """GET /ui/training-sets: every saved training set."""
    index = registry_index(request)
    rows = [
        {
            "ts": ts,
            "created": when(ts.created_at),
            "spine": ts.spine,
            "versions": index.using_training_set(ts.name),
            "views": len(refs_by_view(ts.feature_refs)),
        }
        for ts in sorted(index.training_sets.values(), key=lambda t: t.created_at, reverse=True)
    ]
    return page(
        request, viewer, "training_sets.html.j2", title="Training sets", nav="training-sets", rows=rows
    )


@router.get("/ui/training-sets/{name}")
def training_set_page(request: Request, viewer: Reader, name: str) -> HTMLResponse:
    """GET /ui/training-sets/{name}: one training set."""
    store = store_of(request)
    ts = store.training_sets.get(name)  # unknown: UnknownNameError -> a 404 page naming it
    index = registry_index(request)
    known = index.training_sets.get(name)
    # the index's spine is of the record it read: a set saved again since is read from its file
    same = known is not None and known.fingerprint == ts.fingerprint and known.created_at == ts.created_at
    spine = known.spine if same and known is not None else file_spine(store, ts)
    try:
        stats = feature_stats(store.monitor.training_set_stats(name))
        stats_note = None
    except FeatureStoreError as e:  # saved before statistics were kept
        stats, stats_note = [], str(e)
    entity_columns = list(ts.entity_rows.get("columns") or [])
    result_columns = dict(ts.result.get("columns") or {})
    return page(
        request,
        viewer,
        "training_set.html.j2",
        title=f"Training set {name}",
        nav="training-sets",
        ts=ts,
        created=when(ts.created_at),
        spine=spine,
        views=refs_by_view(ts.feature_refs),
        applied=set(store.catalog.views) | set(store.catalog.on_demand),
        entity_columns=entity_columns,
        result_columns=[(c, h, c in entity_columns) for c, h in result_columns.items()],
        definitions=sorted(ts.definitions.items()),
        versions=index.using_training_set(name),
        stats=stats,
        stats_note=stats_note,
    )
