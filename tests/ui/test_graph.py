"""The lineage graph on its own (`server/ui/graph.py`): the graph's rules, the layered layout (every
node placed once, in its kind's column, no boxes overlapping, edges between placed nodes, short
edges) and the SVG (nodes as links, escaped text), over hand-made and random DAGs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.server.ui.graph import CHAR_W, MAX_W, PAD_X, Graph, Layout, Node, draw, layout

COLUMNS = (
    ("source", "Sources"),
    ("view", "Feature views"),
    ("service", "Feature services"),
    ("training_set", "Training sets"),
    ("version", "Model versions"),
    ("alias", "Aliases"),
)
SVG = "{http://www.w3.org/2000/svg}"


def node(kind: str, name: str) -> Node:
    return Node(f"{kind}:{name}", kind, name, f"/ui/{kind}/{name}")


def chain() -> Graph:
    g = Graph(COLUMNS)
    for kind, name in [("source", "s"), ("view", "v"), ("service", "svc"), ("version", "m v1")]:
        g.add(node(kind, name))
    g.link("source:s", "view:v")
    g.link("view:v", "service:svc")
    g.link("service:svc", "version:m v1")
    return g


def check_layout(g: Graph, placed: Layout) -> None:
    """The layout's promises, for any graph."""
    assert set(placed.boxes) == set(g.nodes)  # every node placed, once
    placed_ids = [i for col in placed.columns for i in col.order]
    assert sorted(placed_ids) == sorted(g.nodes)
    kinds = [k for k, _ in g.columns]
    xs = []
    for col in placed.columns:
        assert all(g.nodes[i].kind == col.kind for i in col.order)  # a column per kind
        assert all(placed.boxes[i].x == col.x and placed.boxes[i].w == col.w for i in col.order)
        xs.append((kinds.index(col.kind), col.x, col.x + col.w))
        tops = [placed.boxes[i].y for i in col.order]
        assert tops == sorted(tops)
    xs.sort()
    for (_, _, right), (_, left, _) in zip(xs, xs[1:]):
        assert right < left  # columns left to right in the given order, apart
    boxes = list(placed.boxes.values())
    for i, a in enumerate(boxes):  # no two boxes overlap
        assert 0 <= a.x and a.x + a.w <= placed.width and 0 <= a.y and a.y + a.h <= placed.height
        for b in boxes[i + 1 :]:
            apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
            assert apart, (a, b)
    for box in boxes:  # a label is cut only when it is wider than the widest box
        if len(box.node.label) * CHAR_W + 2 * PAD_X <= MAX_W:
            assert box.text == box.node.label
        else:
            assert box.text.endswith("…") and box.node.label.startswith(box.text[:-1])
    assert set(placed.edges) == set(g.edges)
    for a, b in placed.edges:  # edges between placed nodes, left to right
        assert a in placed.boxes and b in placed.boxes
        assert placed.boxes[a].x < placed.boxes[b].x


def test_a_chain_is_laid_out_in_columns_left_to_right():
    g = chain()
    placed = layout(g)
    check_layout(g, placed)
    assert [c.kind for c in placed.columns] == ["source", "view", "service", "version"]  # empty ones left out
    assert [c.header for c in placed.columns][0] == "Sources"
    ys = {placed.boxes[i].y for i in g.nodes}
    assert len(ys) == 1  # one node a column: all on one line, the edges straight


def test_the_graph_refuses_edges_it_cannot_draw():
    g = chain()
    with pytest.raises(ValueError, match="no node 'view:missing'"):
        g.link("source:s", "view:missing")
    with pytest.raises(ValueError, match="columns go left to right"):
        g.link("service:svc", "view:v")
    g.add(node("view", "w"))
    with pytest.raises(ValueError, match="columns go left to right"):
        g.link("view:v", "view:w")
    with pytest.raises(ValueError, match="not one of the columns"):
        g.add(Node("x:y", "planet", "y", "/"))
    g.link("source:s", "view:v")  # twice: one edge
    assert g.edges.count(("source:s", "view:v")) == 1
    assert g.add(Node("view:v", "view", "other", "/")).label == "v"  # an id is added once


def test_around_keeps_what_is_upstream_and_downstream_only():
    g = chain()
    for kind, name in [("source", "s2"), ("view", "v2"), ("training_set", "t")]:
        g.add(node(kind, name))
    g.link("source:s2", "view:v2")
    g.link("view:v2", "service:svc")
    g.link("service:svc", "training_set:t")
    g.add(node("view", "lonely"))
    sub = g.around(["view:v"])
    # up: s; down: svc, then t and the version; not v2 or s2 (they feed svc, they are not upstream of v)
    assert set(sub.nodes) == {"source:s", "view:v", "service:svc", "training_set:t", "version:m v1"}
    assert ("view:v2", "service:svc") not in sub.edges and ("view:v", "service:svc") in sub.edges
    assert set(g.around(["service:svc"]).nodes) == set(g.nodes) - {"view:lonely"}
    assert set(g.around(["view:lonely"]).nodes) == {"view:lonely"}
    assert g.around(["nothing"]).nodes == {}


def test_barycenter_sweeps_untangle_crossed_edges():
    g = Graph(COLUMNS)
    for i in range(4):
        g.add(node("source", f"s{i}"))
        g.add(node("view", f"v{i}"))
    for i in range(4):  # s0 -> v3, s1 -> v2, ...: in name order every edge crosses every other
        g.link(f"source:s{i}", f"view:v{3 - i}")
    placed = layout(g)
    check_layout(g, placed)
    for a, b in g.edges:
        assert placed.boxes[a].y == placed.boxes[b].y
    tangled = layout(g, sweeps=0)  # name order kept
    assert any(tangled.boxes[a].y != tangled.boxes[b].y for a, b in g.edges)


def test_nodes_with_no_edge_come_last_in_their_column():
    g = chain()
    g.add(node("source", "a-lonely-source"))  # first by name
    g.add(node("source", "z"))
    g.link("source:z", "view:v")
    placed = layout(g)
    check_layout(g, placed)
    assert placed.columns[0].order[-1] == "source:a-lonely-source"


def test_the_drawing_has_every_node_as_a_link_and_escapes_names():
    g = Graph(COLUMNS)
    odd = Node('view:<b>&"x', "view", '<b>&"x', "/ui/views/%3Cb%3E%26%22x", title='feature view <b>&"x')
    g.add(node("source", "s"))
    g.add(odd)
    g.add(node("service", "a-very-long-service-name-that-does-not-fit-in-any-box-at-all"))
    g.link("source:s", odd.id)
    g.link(odd.id, "service:a-very-long-service-name-that-does-not-fit-in-any-box-at-all")
    text = draw(layout(g), focus=[odd.id], title="Lineage <of> me")
    assert "<b>" not in text and "&lt;b&gt;&amp;&quot;x" in text
    root = ET.fromstring(text)  # well-formed XML
    assert root.tag == f"{SVG}svg" and root.get("role") == "group"
    assert root.find(f"{SVG}title").text == "Lineage <of> me: 3 objects, 2 links"
    links = root.findall(f"{SVG}a")
    assert {a.get("href") for a in links} == {
        "/ui/source/s",
        "/ui/views/%3Cb%3E%26%22x",
        "/ui/service/a-very-long-service-name-that-does-not-fit-in-any-box-at-all",
    }
    for a in links:
        assert a.find(f"{SVG}title").text and a.find(f"{SVG}text").text and a.find(f"{SVG}rect") is not None
    focused = [a for a in links if "lg-focus" in a.get("class", "")]
    assert len(focused) == 1 and focused[0].find(f"{SVG}text").text == '<b>&"x'
    long = next(a for a in links if "service" in a.get("class", ""))
    assert long.find(f"{SVG}text").text.endswith("…")  # cut to fit its box; the full name in its title
    assert long.find(f"{SVG}title").text == "a-very-long-service-name-that-does-not-fit-in-any-box-at-all"
    paths = root.findall(f"{SVG}path")
    assert len(paths) == 2 and all("lg-on" in p.get("class", "") for p in paths)  # both touch the focus
    assert [t.text for t in root.findall(f"{SVG}text")][:3] == [
        "Sources",
        "Feature views",
        "Feature services",
    ]


def test_an_empty_graph_draws_an_empty_picture():
    placed = layout(Graph(COLUMNS))
    assert placed.boxes == {} and placed.columns == ()
    assert ET.fromstring(draw(placed)).find(f"{SVG}title").text == "Lineage graph: 0 objects, 0 links"


@st.composite
def dags(draw_: st.DrawFn) -> Graph:
    """Random graphs of the lineage's layers: nodes in any columns, edges from a column to a later one."""
    g = Graph(COLUMNS)
    kinds = [k for k, _ in COLUMNS]
    count = draw_(st.integers(0, 40))
    for i in range(count):
        kind = draw_(st.sampled_from(kinds))
        name = draw_(
            st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=30)
        )
        g.add(Node(f"{kind}:{i}", kind, name or f"n{i}", f"/x/{i}"))
    ids = list(g.nodes)
    pairs = draw_(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=80)) if ids else []
    for a, b in pairs:
        if kinds.index(g.nodes[a].kind) < kinds.index(g.nodes[b].kind):
            g.link(a, b)
    return g


@settings(max_examples=150, deadline=None)
@given(dags())
def test_any_layered_dag_is_laid_out_and_drawn(g: Graph):
    placed = layout(g)
    check_layout(g, placed)

    # the sweeps never make the edges longer than name order does
    def length(p: Layout) -> float:
        return sum(abs(p.boxes[a].mid_y - p.boxes[b].mid_y) for a, b in p.edges)

    assert length(placed) <= length(layout(g, sweeps=0)) + 1e-6
    root = ET.fromstring(draw(placed, focus=list(g.nodes)[:1]))
    assert len(root.findall(f"{SVG}a")) == len(g.nodes)
    assert len(root.findall(f"{SVG}path")) == len(g.edges)
    assert re.fullmatch(r"[\d.]+", root.get("width", "")) and float(root.get("height", "0")) > 0
