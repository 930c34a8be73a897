"""The UI's registry index (server/ui/index.py) on the demo state: it says what the store's API
says (every version, its aliases, the users of views, services and training sets, the run that made
a set), it is rebuilt after a registration, an alias move, an approval, a new training set and a new
pipeline run (and only then), and the lineage page's same-column links and capped object list."""

from __future__ import annotations

import re
from pathlib import Path

from featurestore import FeatureStore
from featurestore.server.ui import lineage
from featurestore.server.ui.index import IndexHolder, build_index
from tests.repo_builder import make_repo
from tests.ui.conftest import ui_client
from tests.ui.test_lineage import add_training_set, links_of, main_of

MODEL = "trip_completion"


def test_the_index_says_what_the_store_api_says(demo_built: Path) -> None:
    store = FeatureStore(demo_built)
    index = build_index(store)
    assert index.model_names == store.models.names() == [MODEL]
    for name in index.model_names:
        versions = list(reversed(store.models.versions(name)))  # newest first
        got = index.versions_of(name)
        assert [v.version for v in got] == [mv.version for mv in versions] == [2, 1]
        assert index.latest(name) == got[0]
        for v, mv in zip(got, versions, strict=True):
            assert (v.name, v.version, v.flavor, v.feature_service) == (
                mv.name,
                mv.version,
                mv.flavor,
                mv.feature_service,
            )
            assert (v.training_set, v.training_fingerprint) == (mv.training_set, mv.training_fingerprint)
            assert v.feature_refs == tuple(mv.feature_refs) and v.metrics == mv.metrics
            assert (v.registered_at, v.registered_by, v.description) == (
                mv.registered_at,
                mv.registered_by,
                mv.description,
            )
            assert v.aliases == mv.aliases
        assert {a: v.version for v in got for a in v.aliases} == store.models.aliases(name)
    every = [mv for n in store.models.names() for mv in store.models.versions(n)]
    catalog = store.catalog
    for view in [*catalog.views, *catalog.on_demand]:
        want = {
            (mv.name, mv.version) for mv in every if any(r.startswith(f"{view}:") for r in mv.feature_refs)
        }
        assert {(v.name, v.version) for v in index.using_view(view)} == want, view
    assert {(v.name, v.version) for v in index.using_view("trip_shape")} == {(MODEL, 1), (MODEL, 2)}
    for service in catalog.services:
        want = {(mv.name, mv.version) for mv in every if mv.feature_service == service}
        assert {(v.name, v.version) for v in index.using_service(service)} == want
    assert sorted(index.training_sets) == store.training_sets.names()
    for ts in store.training_sets.list():
        summary = index.training_sets[ts.name]
        assert (summary.fingerprint, summary.rows, summary.created_at, summary.created_by) == (
            ts.fingerprint,
            ts.rows,
            ts.created_at,
            ts.created_by,
        )
        assert summary.feature_refs == ts.feature_refs
        want = {(mv.name, mv.version) for mv in every if mv.training_set == ts.name}
        assert {(v.name, v.version) for v in index.using_training_set(ts.name)} == want
    (run,) = [
        r for r in store.pipelines.runs(MODEL) if r.record.get("training_set") == "trip_completion__run1"
    ]
    spine = index.training_sets["trip_completion__run1"].spine
    assert spine is not None and spine.run == run.id and spine.source == "trips" and spine.start is not None
    hand = index.training_sets["trip_completion_train"].spine  # saved by hand: its file's range
    assert hand is not None and hand.run is None and hand.column is not None
    assert index.using_view("nope") == [] and index.latest("nope") is None and index.versions_of("nope") == []
    store.close()


def _holder(client) -> IndexHolder:  # type: ignore[no-untyped-def]
    holder = client.app.state.ui_index
    assert isinstance(holder, IndexHolder)
    return holder


def _models_row(client) -> str:  # type: ignore[no-untyped-def]
    body = main_of(client.get("/ui/models").text)
    return body.split('<table id="models"', 1)[1]


def test_the_index_is_rebuilt_after_each_change_and_only_then(demo_repo: Path) -> None:
    other = FeatureStore(demo_repo)  # another process's changes: seen by polling the key
    with ui_client(demo_repo) as client:
        assert client.get("/ui/models").status_code == 200
        holder = _holder(client)
        holder.poll_seconds = 0.0  # poll the key on every page
        assert holder.builds == 1
        for path in ("/ui/models", "/ui/", "/ui/lineage", "/ui/training-sets", "/ui/views/trip_shape"):
            assert client.get(path).status_code == 200
        assert holder.builds == 1, "no change, no rebuild"

        other.models.set_alias(MODEL, "staging", 1)  # an alias move
        assert "staging → v1" in _models_row(client) and holder.builds == 2

        other.models.approve(MODEL, 2, reason="fine", actor="abe")  # v2 pending: production moves
        assert "production → v2" in _models_row(client) and holder.builds == 3

        mv = other.models.register(
            MODEL,
            other.models.load(f"{MODEL}@2"),
            "driver_activity",
            training_set="trip_completion__run1",
            missing_policy="null",
        )
        assert f"v{mv.version}</a>" in _models_row(client) and holder.builds == 4

        add_training_set(demo_repo, "fresh_set")
        assert "/ui/training-sets/fresh_set" in client.get("/ui/training-sets").text
        assert holder.builds == 5

        run = other.registry.backend.add_pipeline_run(
            MODEL, {"status": "succeeded", "step": "finished", "training_set": "fresh_set"}, "tester"
        )
        page = client.get("/ui/training-sets/fresh_set").text
        assert holder.builds == 6 and f'href="/ui/runs/{run["id"]}"' in page

        for path in ("/ui/models", "/ui/training-sets", "/ui/lineage"):
            client.get(path)
        assert holder.builds == 6
    other.close()


def test_the_key_is_polled_once_a_second_but_a_change_in_this_process_shows_at_once(demo_repo: Path) -> None:
    other = FeatureStore(demo_repo)
    with ui_client(demo_repo) as client:
        client.get("/ui/models")
        holder = _holder(client)
        holder.poll_seconds = 3600.0
        other.models.set_alias(MODEL, "staging", 1)
        assert "staging" not in _models_row(client) and holder.builds == 1  # not polled yet
        holder.invalidate()
        assert "staging → v1" in _models_row(client) and holder.builds == 2
        # the app's own store tells the index of its model changes
        client.app.state.fs.store.models.set_alias(MODEL, "staging", 2)
        assert "staging → v2" in _models_row(client) and holder.builds == 3
    other.close()


def test_a_push_source_links_its_batch_source_and_a_run_made_set_its_spine(demo_built: Path) -> None:
    with ui_client(demo_built) as client:
        batch = client.get("/ui/lineage", params={"focus": "source:driver_stats"})
        push = client.get("/ui/lineage", params={"focus": "source:driver_stats_push"})
        run_set = client.get("/ui/lineage", params={"focus": "training_set:trip_completion__run1"})
    assert batch.status_code == push.status_code == 200
    for r in (batch, push):
        assert ("driver_stats", "driver_stats_push") in links_of(r.text)
    assert ("driver_stats_push", "driver_hourly_stats") in links_of(batch.text)  # downstream of the push
    assert ("trips", "trip_completion__run1") in links_of(run_set.text)


def test_many_objects_are_listed_a_few_of_each_kind_with_a_search_and_pages(demo_built, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(lineage, "MAX_NODES", 10)
    monkeypatch.setattr(lineage, "PICKER_SHOWN", 2)
    monkeypatch.setattr(lineage, "PICKER_PAGE", 3)
    with ui_client(demo_built) as client:
        whole = main_of(client.get("/ui/lineage").text)
        found = main_of(client.get("/ui/lineage", params={"find": "TRIP_C"}).text)
        views = [
            main_of(client.get("/ui/lineage", params={"kind": "view", "page": p}).text) for p in (1, 2, 9)
        ]
        focused = main_of(
            client.get("/ui/lineage", params={"focus": "view:route_stats", "find": "push"}).text
        )
    items = re.findall(r'<li data-search="[^"]*"><a href="/ui/lineage\?focus=([^"]+)"', whole)
    assert 2 < len(items) <= 2 * len(lineage.COLUMNS) and len(items) < 20
    assert '<label for="lineage-search">Search all 20 objects</label>' in whole
    assert 'href="/ui/lineage?kind=view&amp;find="' in whole  # all of a kind
    found_items = re.findall(r'focus=([^"]+)">([^<]+)</a></li>', found)
    assert {label for _, label in found_items} == {
        "trip_completion__run1",
        "trip_completion_train",
        "trip_completion v1",
        "trip_completion v2",
        "trip_completion@challenger",
        "trip_completion@production",
    }
    listed = [re.findall(r"focus=view%3A([^\"]+)\"", body) for body in views]
    assert len(listed[0]) == 3 and listed[1] and not set(listed[0]) & set(listed[1])
    assert listed[2] == listed[1] and "page 2 of 2" in views[2]  # a page past the end: the last
    assert "Next</a>" in views[0] and "Previous</a>" in views[1]
    assert "<svg" in focused and '<details class="lineage-focus" open>' in focused
    assert re.findall(r'<li data-search="[^"]*"><a href="[^"]*">([^<]+)</a>', focused) == [
        "driver_stats_push",
        "trip_events_push",
    ]


def test_pages_of_a_registry_with_nothing_applied_still_show(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "empty", {"features.py": ""}, project="blank")
    with ui_client(repo) as client:
        models = client.get("/ui/models")
        _holder(client).poll_seconds = 0.0
        sets = client.get("/ui/training-sets")
        client.get("/ui/models")
        builds = _holder(client).builds  # nothing applied is one key, not a new one per poll
    assert models.status_code == sets.status_code == 200 and builds == 1
