"""The lineage graph of the UI: nodes in columns by kind, a layered layout, and its drawing as SVG.

    graph = Graph([("source", "Sources"), ("view", "Feature views")])
    graph.add(Node("source:trips", "source", "trips", "/ui/sources/trips"))
    graph.add(Node("view:trip_stats", "view", "trip_stats", "/ui/views/trip_stats"))
    graph.link("source:trips", "view:trip_stats")
    html = draw(layout(graph), focus={"view:trip_stats"})

It knows nothing of the store (`lineage.py` builds a graph from it), so the layout is tested on its
own. Each kind is a column, left to right in the order given, and every edge goes from a column to a
later one. Within a column, nodes start in name order (those with no edge last) and a few barycenter sweeps (each node moved
towards the mean height of its neighbours, down the columns and back) keep the edges short; the
ordering with the shortest edges found is kept. The drawing grows with the nodes: no node is ever
shrunk or hidden, and every text is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

NODE_H = 28.0
GAP_Y = 12.0
GAP_X = 52.0
MARGIN = 16.0
HEADER = 34.0
CHAR_W = 6.8  # an average character of the 12px label font, with room to spare
PAD_X = 10.0
MIN_W = 90.0
MAX_W = 230.0
SWEEPS = 4


@dataclass(frozen=True)
class Node:
    """One object of the graph: `id` unique ("view:trips"), `kind` its column, `label` the text
    drawn, `href` its page, `title` the tooltip (the label when empty)."""

    id: str
    kind: str
    label: str
    href: str
    title: str = ""


@dataclass
class Graph:
    """Nodes and the edges between them (upstream -> downstream), in columns by kind."""

    columns: Sequence[tuple[str, str]]  # (kind, header), left to right
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rank = {kind: i for i, (kind, _) in enumerate(self.columns)}
        self._edge_set: set[tuple[str, str]] = set(self.edges)

    def add(self, node: Node) -> Node:
        """Add `node` (the one already there when its id is taken)."""
        if node.kind not in self.rank:
            raise ValueError(
                f"node {node.id!r}: kind {node.kind!r} is not one of the columns {list(self.rank)}"
            )
        return self.nodes.setdefault(node.id, node)

    def link(self, upstream: str, downstream: str) -> None:
        """An edge between two nodes of the graph, from an earlier column to a later one (once)."""
        for end in (upstream, downstream):
            if end not in self.nodes:
                raise ValueError(f"edge {upstream!r} -> {downstream!r}: no node {end!r}")
        a, b = self.nodes[upstream], self.nodes[downstream]
        if self.rank[a.kind] >= self.rank[b.kind]:
            raise ValueError(
                f"edge {upstream!r} -> {downstream!r}: a {a.kind} cannot feed a {b.kind} (columns go left to right)"
            )
        if (upstream, downstream) not in self._edge_set:
            self._edge_set.add((upstream, downstream))
            self.edges.append((upstream, downstream))

    def around(self, seeds: Iterable[str]) -> Graph:
        """The graph of `seeds` and everything upstream and downstream of them (transitively)."""
        up: dict[str, list[str]] = {}
        down: dict[str, list[str]] = {}
        for a, b in self.edges:
            down.setdefault(a, []).append(b)
            up.setdefault(b, []).append(a)
        start = [s for s in seeds if s in self.nodes]
        keep = set(start)
        for step in (up, down):
            todo = list(start)
            seen = set(start)
            while todo:
                for nxt in step.get(todo.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            keep |= seen
        sub = Graph(self.columns)
        for node_id, node in self.nodes.items():
            if node_id in keep:
                sub.add(node)
        for a, b in self.edges:
            if a in keep and b in keep:
                sub.link(a, b)
        return sub


@dataclass(frozen=True)
class Box:
    """Where a node is drawn: its top-left corner and size, and its label cut to fit."""

    node: Node
    x: float
    y: float
    w: float
    h: float
    text: str

    @property
    def mid_y(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Column:
    """One column of the layout: a kind of node, its heading, its x position and width, and the
    order of its nodes top to bottom."""

    kind: str
    header: str
    x: float
    w: float
    order: tuple[str, ...]  # node ids, top to bottom


@dataclass(frozen=True)
class Layout:
    """A placed graph: a box per node, the columns that hold any, the edges, the drawing's size."""

    boxes: dict[str, Box]
    columns: tuple[Column, ...]
    edges: tuple[tuple[str, str], ...]
    width: float
    height: float


def _fit(label: str, width: float) -> str:
    room = max(int((width - 2 * PAD_X) / CHAR_W + 1e-9), 4)  # (a label that sized its box fits it)
    return label if len(label) <= room else label[: room - 1] + "…"


def _edge_length(order: dict[str, list[str]], edges: Sequence[tuple[str, str]]) -> float:
    pos = _positions(order)
    return sum(abs(pos[a] - pos[b]) for a, b in edges)


def _positions(order: dict[str, list[str]]) -> dict[str, float]:
    """Each node's height, in node pitches, with every column centred on the same line."""
    pos: dict[str, float] = {}
    for ids in order.values():
        middle = (len(ids) - 1) / 2
        for i, node_id in enumerate(ids):
            pos[node_id] = i - middle
    return pos


def _sweep(order: dict[str, list[str]], kinds: Sequence[str], neighbours: dict[str, list[str]]) -> None:
    """Re-order each column of `kinds` (in turn) by the mean height of its nodes' `neighbours`."""
    for kind in kinds:
        pos = _positions(order)
        weight = {}
        for node_id in order[kind]:
            near = neighbours.get(node_id)
            weight[node_id] = sum(pos[n] for n in near) / len(near) if near else pos[node_id]
        # a stable sort: nodes of equal weight keep their order
        order[kind] = sorted(order[kind], key=weight.__getitem__)


def layout(graph: Graph, sweeps: int = SWEEPS) -> Layout:
    """Place every node of `graph` once: a column per kind that has nodes, no boxes overlapping."""
    kinds = [kind for kind, _ in graph.columns if any(n.kind == kind for n in graph.nodes.values())]
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for a, b in graph.edges:
        after.setdefault(a, []).append(b)
        before.setdefault(b, []).append(a)

    def start(node_id: str) -> tuple[bool, str, str]:  # name order, nodes with no edge at the end
        return (node_id not in before and node_id not in after, graph.nodes[node_id].label, node_id)

    order = {kind: sorted((i for i, n in graph.nodes.items() if n.kind == kind), key=start) for kind in kinds}
    best = {k: list(v) for k, v in order.items()}
    best_length = _edge_length(order, graph.edges)
    for _ in range(sweeps):
        _sweep(order, kinds[1:], before)
        _sweep(order, list(reversed(kinds[:-1])), after)
        length = _edge_length(order, graph.edges)
        if length < best_length:
            best, best_length = {k: list(v) for k, v in order.items()}, length
    tallest = max((len(ids) for ids in best.values()), default=0)
    pitch = NODE_H + GAP_Y
    boxes: dict[str, Box] = {}
    columns: list[Column] = []
    x = MARGIN
    for kind in kinds:
        header = dict(graph.columns)[kind]
        ids = best[kind]
        longest = max(len(graph.nodes[i].label) for i in ids)
        w = min(MAX_W, max(MIN_W, longest * CHAR_W + 2 * PAD_X, len(header) * CHAR_W))
        top = HEADER + (tallest - len(ids)) * pitch / 2
        for i, node_id in enumerate(ids):
            node = graph.nodes[node_id]
            boxes[node_id] = Box(node, x, top + i * pitch, w, NODE_H, _fit(node.label, w))
        columns.append(Column(kind, header, x, w, tuple(ids)))
        x += w + GAP_X
    width = x - GAP_X + MARGIN if columns else 2 * MARGIN
    height = HEADER + tallest * pitch - GAP_Y + MARGIN
    return Layout(boxes, tuple(columns), tuple(graph.edges), width, height)


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def draw(placed: Layout, focus: Iterable[str] = (), title: str = "Lineage graph") -> str:
    """The SVG of a placed graph: column headers, edges as curves, each node a link with a tooltip;
    `focus` nodes (and the edges that touch them) highlighted."""
    focused = set(focus)
    n_nodes, n_edges = len(placed.boxes), len(placed.edges)
    label = f"{title}: {n_nodes} object{'s' * (n_nodes != 1)}, {n_edges} link{'s' * (n_edges != 1)}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{_n(placed.width)}" '
        f'height="{_n(placed.height)}" viewBox="0 0 {_n(placed.width)} {_n(placed.height)}" '
        f'role="group" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        '<defs><marker id="lg-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerUnits="userSpaceOnUse" markerWidth="8" markerHeight="8" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" class="lg-head"/></marker></defs>',
    ]
    for col in placed.columns:
        out.append(f'<text class="lg-col" x="{_n(col.x)}" y="{_n(HEADER - 14)}">{escape(col.header)}</text>')
    for a, b in placed.edges:
        s, t = placed.boxes[a], placed.boxes[b]
        x1, y1, x2, y2 = s.x + s.w, s.mid_y, t.x - 2, t.mid_y
        bend = max((x2 - x1) / 2, 20.0)
        on = " lg-on" if a in focused or b in focused else ""
        out.append(
            f'<path class="lg-edge{on}" fill="none" marker-end="url(#lg-arrow)" '
            f'd="M{_n(x1)},{_n(y1)} C{_n(x1 + bend)},{_n(y1)} {_n(x2 - bend)},{_n(y2)} {_n(x2)},{_n(y2)}">'
            f"<title>{escape(s.node.label)} → {escape(t.node.label)}</title></path>"
        )
    for node_id, box in placed.boxes.items():
        node = box.node
        on = " lg-focus" if node_id in focused else ""
        out.append(
            f'<a href="{escape(node.href)}" class="lg-node lg-{escape(node.kind)}{on}">'
            f"<title>{escape(node.title or node.label)}</title>"
            f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.w)}" height="{_n(box.h)}" rx="5"/>'
            f'<text x="{_n(box.x + PAD_X)}" y="{_n(box.y + box.h / 2 + 4)}">{escape(box.text)}</text></a>'
        )
    out.append("</svg>")
    return "".join(out)
