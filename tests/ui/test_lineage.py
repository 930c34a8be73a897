"""The lineage page (`/ui/lineage`, `?focus=kind:name`) on the demo state: the whole graph with a
link per object and the edges as a table, a focus keeping only what is upstream and downstream,
errors for unknown or malformed focuses, escaped odd names, and the object picker of a big repo."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from featurestore import FeatureStore
from featurestore.server.ui import lineage
from tests.ui.conftest import KEYS, ui_client

SVG = "{http://www.w3.org/2000/svg}"
ODD_SET = "odd <b>&"
READER = {"X-API-Key": "key-rita-read-000000"}


def main_of(html: str) -> str:
    if '<main id="main">' not in html:  # the main part already
        return html
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def svg_of(html: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg .*?</svg>", html, re.S).group(0))  # type: ignore[union-attr]


def nodes_of(html: str) -> dict[str, str]:
    """href -> visible text of each node of the page's graph."""
    return {a.get("href"): a.find(f"{SVG}text").text for a in svg_of(html).findall(f"{SVG}a")}  # type: ignore[misc, union-attr]


def links_of(html: str) -> list[tuple[str, str]]:
    """The (from, to) names of the page's table of links."""
    table = main_of(html).split('<table class="lineage-links"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr><td><a href="[^"]*">([^<]*)</a>.*?</td><td><a href="[^"]*">([^<]*)</a>', table)


def add_training_set(repo: Path, name: str, like: str = "trip_completion_train", **changes: object) -> None:
    """A training set record under `name`, copied from `like` (its data is not copied: the pages
    read only the record)."""
    store = FeatureStore(repo)
    entry = dict(store.registry.backend.training_set(like))
    entry["record"] = {**entry["record"], **changes}
    entry["name"] = name
    store.registry.backend.save_training_set(entry, lambda: None)
    store.close()


def test_the_whole_demo_lineage_links_every_object_to_its_page(demo_built):
    with ui_client(demo_built) as client:
        r = client.get("/ui/lineage")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "<h1>Lineage</h1>" in body
    assert "style=" not in body and "<script" not in body and not re.search(r'\son[a-z]+="', body)
    nodes = nodes_of(body)
    assert nodes["/ui/sources/customer_profiles"] == "customer_profiles"
    assert nodes["/ui/sources/trip_request"] == "trip_request"  # the on-demand view's request source
    assert nodes["/ui/views/driver_hourly_stats"] == "driver_hourly_stats"
    assert nodes["/ui/views/trip_shape"] == "trip_shape"  # the on-demand view
    assert nodes["/ui/services/driver_activity"] == "driver_activity"
    assert nodes["/ui/training-sets/trip_completion__run1"] == "trip_completion__run1"
    assert nodes["/ui/training-sets/trip_completion_train"] == "trip_completion_train"
    assert nodes["/ui/models/trip_completion/versions/1"] == "trip_completion v1"
    assert nodes["/ui/models/trip_completion/versions/2"] == "trip_completion v2"
    headers = [t.text for t in svg_of(body).findall(f"{SVG}text")]
    assert headers[:7] == [
        "Sources",
        "Feature views",
        "On-demand views",
        "Feature services",
        "Training sets",
        "Model versions",
        "Aliases",
    ]
    links = links_of(body)
    for edge in [
        ("driver_stats_push", "driver_hourly_stats"),  # source -> view
        ("driver_hourly_stats", "trip_shape"),  # view -> on-demand view (its projections)
        ("trip_request", "trip_shape"),
        ("trip_shape", "driver_activity"),  # (on-demand) view -> service
        ("customer_profile", "driver_activity"),
        ("driver_activity", "trip_completion_train"),  # service -> training set (the same features)
        ("trip_completion_train", "trip_completion v1"),  # training set -> version
        ("trip_completion__run1", "trip_completion v2"),
        ("driver_activity", "trip_completion v2"),  # the version's feature service
        ("trip_completion v1", "trip_completion@production"),  # version -> alias
        ("trip_completion v2", "trip_completion@challenger"),
    ]:
        assert edge in links, edge
    assert ("trip_completion__run1", "trip_completion v1") not in links
    # the table lists the graph's edges, and the batch source -> push source links (one column: not drawn)
    batch = [("driver_stats", "driver_stats_push"), ("trip_events", "trip_events_push")]
    assert all(edge in links for edge in batch)
    assert len(links) == len(svg_of(body).findall(f"{SVG}path")) + len(batch)
    assert '<th scope="col">From</th><th scope="col">To</th>' in body
    # every object can be focused on from the page
    assert 'href="/ui/lineage?focus=training_set%3Atrip_completion__run1"' in body
    assert 'href="/ui/lineage?focus=model%3Atrip_completion"' in body
    assert "lg-focus" not in body
    assert "<title>source driver_stats_push (push; batch source driver_stats)</title>" in body


def test_a_focus_keeps_what_is_upstream_and_downstream_of_it(demo_built):
    with ui_client(demo_built) as client:
        r = client.get("/ui/lineage?focus=training_set:trip_completion__run1")
        view = client.get("/ui/lineage", params={"focus": "view:route_stats"})
        od = client.get("/ui/lineage", params={"focus": "view:trip_shape"})
    assert r.status_code == 200
    body = main_of(r.text)
    assert "<h1>Lineage of training set trip_completion__run1</h1>" in body
    nodes = nodes_of(body)
    # upstream: the service, its views and their sources; downstream: v2 and its alias
    for href in (
        "/ui/services/driver_activity",
        "/ui/views/trip_shape",
        "/ui/views/customer_profile",
        "/ui/sources/trip_request",
        "/ui/models/trip_completion/versions/2",
        "/ui/models/trip_completion",
    ):
        assert href in nodes, href
    for href in (
        "/ui/models/trip_completion/versions/1",
        "/ui/training-sets/trip_completion_train",
        "/ui/views/route_stats",
    ):
        assert href not in nodes, href
    focused = [a for a in svg_of(body).findall(f"{SVG}a") if "lg-focus" in a.get("class", "")]
    assert [a.get("href") for a in focused] == ["/ui/training-sets/trip_completion__run1"]
    assert "Show the whole lineage" in body and re.search(r"Showing the \d+ of 20 objects", body)
    assert set(nodes_of(view.text)) == {
        "/ui/views/route_stats",
        "/ui/sources/route_stats_csv",
    }  # used by nothing
    od_nodes = nodes_of(od.text)
    assert "/ui/views/driver_hourly_stats" in od_nodes and "/ui/views/customer_profile" not in od_nodes


def test_a_model_or_a_version_can_be_the_focus(demo_built):
    with ui_client(demo_built) as client:
        model = client.get("/ui/lineage?focus=model:trip_completion")
        forms = [client.get(f"/ui/lineage?focus=version:trip_completion{v}") for v in ("@1", "/1", "@v1")]
    assert model.status_code == 200
    focused = {
        a.get("href") for a in svg_of(model.text).findall(f"{SVG}a") if "lg-focus" in a.get("class", "")
    }
    assert focused == {"/ui/models/trip_completion/versions/1", "/ui/models/trip_completion/versions/2"}
    assert "Lineage of model trip_completion" in model.text
    for r in forms:
        assert r.status_code == 200 and "Lineage of model trip_completion version 1" in r.text
        nodes = nodes_of(r.text)
        assert (
            "/ui/training-sets/trip_completion_train" in nodes
            and "/ui/models/trip_completion/versions/2" not in nodes
        )


def test_an_unknown_focus_is_a_404_page_naming_it_and_a_malformed_one_a_400(demo_built):
    with ui_client(demo_built) as client:
        view = client.get("/ui/lineage?focus=view:driver_hourly_stat")
        version = client.get("/ui/lineage?focus=version:trip_completion@9")
        model = client.get("/ui/lineage?focus=model:trip_complet")
        bad = [
            client.get("/ui/lineage", params={"focus": f})
            for f in ("driver_hourly_stats", "planet:x", "view:")
        ]
    assert view.status_code == 404 and "text/html" in view.headers["content-type"]
    assert "driver_hourly_stat" in view.text and "driver_hourly_stats" in view.text  # did you mean
    assert version.status_code == 404 and "trip_completion" in version.text
    assert model.status_code == 404 and "trip_complet" in model.text
    for r in bad:
        assert r.status_code == 400 and "kind:name" in r.text and "text/html" in r.headers["content-type"]


def test_odd_names_are_escaped_in_the_graph_and_quoted_in_links(demo_repo):
    add_training_set(demo_repo, ODD_SET, feature_refs=["route_stats:avg_duration_min"])
    with ui_client(demo_repo) as client:
        whole = client.get("/ui/lineage")
        focused = client.get("/ui/lineage", params={"focus": f"training_set:{ODD_SET}"})
    for r in (whole, focused):
        assert r.status_code == 200
        body = main_of(r.text)
        assert "<b>" not in body and "odd &lt;b&gt;&amp;" in body
        assert nodes_of(body)["/ui/training-sets/odd%20%3Cb%3E%26"] == ODD_SET
    # features that are no service's: linked from their views
    assert ("route_stats", "odd &lt;b&gt;&amp;") in links_of(focused.text)  # escaped in the table too
    assert set(nodes_of(focused.text)) == {
        "/ui/training-sets/odd%20%3Cb%3E%26",
        "/ui/views/route_stats",
        "/ui/sources/route_stats_csv",
    }


def test_a_big_lineage_offers_objects_to_focus_on_instead_of_a_graph(demo_built, monkeypatch):
    monkeypatch.setattr(lineage, "MAX_NODES", 10)
    with ui_client(demo_built) as client:
        r = client.get("/ui/lineage")
        focused = client.get("/ui/lineage?focus=view:route_stats")
    body = main_of(r.text)
    assert r.status_code == 200 and "<svg" not in body
    assert "has 20 objects, more than the 10" in body
    assert 'data-filter="#lineage-objects"' in body and '<label for="lineage-find">' in body
    assert body.count("<li data-search=") == 20
    assert '<a href="/ui/lineage?focus=view%3Atrip_shape">trip_shape</a>' in body
    assert "<svg" in main_of(focused.text)  # a focus is drawn however big the repo


def test_the_lineage_page_follows_the_api_keys(demo_built):
    with ui_client(demo_built, KEYS) as client:
        anonymous = client.get("/ui/lineage", follow_redirects=False)
        reader = client.get("/ui/lineage", headers=READER)
    assert anonymous.status_code == 303 and "/ui/login" in anonymous.headers["location"]
    assert reader.status_code == 200 and "<svg" in reader.text
