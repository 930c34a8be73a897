"""UI page: the lineage graph (`/ui/lineage`, `?focus=kind:name`): source -> feature view (and
on-demand view) -> feature service -> training set -> model version -> alias.

The whole graph is the app's registry index's (`index.py`: built once per change of the registry);
`graph.py` lays it out and draws it. With a focus the page shows only what is upstream and
downstream of that object; without one, a graph too big to read (more than `MAX_NODES`) gives way
to a list of objects to focus on. That list shows `PICKER_SHOWN` objects of each kind; a search
(`?find=`) or all of one kind (`?kind=`, a page at a time) reaches the others. Under the graph the
same edges are a table, for screen readers and the browser's search; it also lists the links the
graph's columns cannot draw (a push source's batch source).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import HTMLResponse

from featurestore.errors import unknown

from .access import Reader
from .graph import Graph, Node, draw, layout
from .index import COLUMNS, registry_index
from .render import page

router = APIRouter(include_in_schema=False)

MAX_NODES = 150  # beyond this, the whole graph is a picture nobody can read: pick a focus
PICKER_SHOWN = 20  # objects of each kind listed to focus on; a search or "all of a kind" finds the rest
PICKER_PAGE = 200  # objects of one kind per page of "all of a kind"

# What `?focus=` names (kind:name); an on-demand view is a "view", as its page is /ui/views/{name}.
FOCUS_KINDS = ("source", "view", "service", "training_set", "model", "version")
KIND_WORDS = {
    "source": "source",
    "view": "feature view",
    "on_demand": "on-demand view",
    "service": "feature service",
    "training_set": "training set",
    "version": "model version",
    "alias": "alias",
}


def focus_seeds(graph: Graph, focus: str) -> tuple[list[str], str]:
    """The nodes `focus` ("kind:name") names and the object in words; an unknown one raises
    UnknownNameError (a 404 page that names it), a malformed one HTTPException 400."""
    kind, sep, name = focus.partition(":")
    if not sep or kind not in FOCUS_KINDS or not name:
        raise HTTPException(
            400, f"focus {focus!r} is not kind:name with kind one of {', '.join(FOCUS_KINDS)}"
        )
    if kind == "model":
        seeds = [
            i
            for i, n in graph.nodes.items()
            if n.kind == "version" and i.rpartition("@")[0] == f"version:{name}"
        ]
        if not seeds:
            models = {
                i.split(":", 1)[1].rpartition("@")[0] for i, n in graph.nodes.items() if n.kind == "version"
            }
            raise unknown("model", name, models)
        return seeds, f"model {name}"
    if kind == "version":
        model, at, number = name.rpartition("@")
        if not at:
            model, _, number = name.rpartition("/")
        node_id = f"version:{model}@{number.lstrip('v')}"
        words = f"model {model} version {number.lstrip('v')}"
    else:
        node_id = f"{kind}:{name}"
        words = ""
    if node_id not in graph.nodes:
        known = [i.split(":", 1)[1] for i in graph.nodes if i.startswith(f"{kind}:")]
        raise unknown(KIND_WORDS.get(kind, kind), name, known)
    node = graph.nodes[node_id]
    return [node_id], words or f"{KIND_WORDS[node.kind]} {name}"


def focus_ref(node: Node) -> str:
    """The `?focus=` value of a node (an alias's: its model)."""
    kind, _, name = node.id.partition(":")
    return f"model:{name.rpartition('@')[0]}" if kind == "alias" else f"{kind}:{name}"


def _picker(whole: Graph, find: str, kind: str | None, page_no: int) -> tuple[list[dict[str, Any]], int, int]:
    """The groups of objects to focus on (those whose label holds `find`), each cut to
    PICKER_SHOWN, or with `kind` that one group's page `page_no` of PICKER_PAGE; and how many
    objects match and the number of pages."""
    needle = find.lower()
    matched = 0
    groups = []
    pages = 1
    for k, header in COLUMNS:
        if kind is not None and k != kind:
            continue
        nodes = sorted(
            (n for n in whole.nodes.values() if n.kind == k and needle in n.label.lower()),
            key=lambda n: n.label,
        )
        if not nodes:
            continue
        matched += len(nodes)
        if kind is not None:
            pages = max(1, -(-len(nodes) // PICKER_PAGE))
            start = (min(page_no, pages) - 1) * PICKER_PAGE
            cut = nodes[start : start + PICKER_PAGE]
        else:
            cut = nodes[:PICKER_SHOWN]
        groups.append(
            {
                "kind": k,
                "header": header,
                "count": len(nodes),
                "nodes": [{"node": n, "focus": focus_ref(n)} for n in cut],
            }
        )
    return groups, matched, pages


def _around(whole: Graph, seeds: list[str], extra: list[tuple[str, str]]) -> Graph:
    """`whole.around(seeds)` with the same-column links too: a push source's batch source is
    upstream of it (and what the push source feeds is downstream of a focused batch source)."""
    pushed = [p for b, p in extra if b in seeds and p not in seeds]
    shown = whole.around([*seeds, *pushed])
    for b, p in extra:
        if p in shown.nodes and b not in shown.nodes:
            shown.add(whole.nodes[b])
    return shown


@router.get("/ui/lineage")
def lineage_page(
    request: Request,
    viewer: Reader,
    focus: Annotated[str | None, Query(max_length=500)] = None,
    find: Annotated[str, Query(max_length=200)] = "",
    kind: Annotated[str | None, Query(max_length=40)] = None,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """GET /ui/lineage: the lineage graph, whole or around `?focus=kind:name`."""
    index = registry_index(request)
    whole = index.lineage()  # built once per change of the registry; never changed here
    extra = index.extra_edges
    focus = (focus or "").strip() or None
    kind = kind if kind in KIND_WORDS else None
    seeds: list[str] = []
    focus_words = ""
    if focus is not None:
        seeds, focus_words = focus_seeds(whole, focus)
        shown = _around(whole, seeds, extra)
    else:
        shown = whole
    too_big = focus is None and len(whole.nodes) > MAX_NODES
    drawing = None
    edges = []
    if not too_big:
        placed = layout(shown)
        drawing = draw(placed, seeds, title=f"Lineage of {focus_words}" if focus_words else "Lineage graph")
        links = [*shown.edges, *((b, p) for b, p in extra if b in shown.nodes and p in shown.nodes)]
        edges = [(shown.nodes[a], shown.nodes[b]) for a, b in links]
    find = find.strip()
    picker, matched, pages = _picker(whole, find, kind, page_no)
    return page(
        request,
        viewer,
        "lineage.html.j2",
        title=f"Lineage of {focus_words}" if focus_words else "Lineage",
        nav="lineage",
        focus=focus,
        focus_words=focus_words,
        total=len(whole.nodes),
        shown=len(shown.nodes),
        too_big=too_big,
        max_nodes=MAX_NODES,
        drawing=drawing,
        edges=edges,
        kind_words=KIND_WORDS,
        picker=picker,
        picker_open=bool(find or kind),
        matched=matched,
        listed=sum(len(group["nodes"]) for group in picker),
        find=find,
        kind=kind,
        page_no=min(page_no, pages),
        pages=pages,
        picker_shown=PICKER_SHOWN,
    )
