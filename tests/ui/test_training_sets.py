"""The training set pages (`/ui/training-sets`, `/ui/training-sets/{name}`) on the demo state: what
each set was made of, its fingerprint and time range, the model versions trained on it, its column
statistics, and what the pages say of a set with no statistics, no recorded range or an odd name."""

from __future__ import annotations

import re

from tests.ui.conftest import KEYS, ui_client
from tests.ui.test_lineage import add_training_set, main_of

ODD_SET = "odd <b>&"
ODD_PATH = "/ui/training-sets/odd%20%3Cb%3E%26"
READER = {"X-API-Key": "key-rita-read-000000"}


def _facts(repo):
    """The fingerprint and the entity rows' time range ("YYYY-MM-DD HH:MM:SS UTC" both ends) of the
    demo's sets (the example data is generated relative to today: read them, don't hard-code them)."""
    from featurestore import FeatureStore

    store = FeatureStore(repo)
    ts = store.training_sets.get("trip_completion__run1")
    times = store.training_sets.entity_rows(ts.name).column("event_timestamp").to_pylist()
    fmt = "%Y-%m-%d %H:%M:%S UTC"
    return ts, min(times).strftime(fmt), max(times).strftime(fmt)


def test_the_list_shows_each_set_and_the_model_versions_trained_on_it(demo_built):
    ts, first, last = _facts(demo_built)
    fingerprint = ts.fingerprint
    with ui_client(demo_built) as client:
        r = client.get("/ui/training-sets")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "<h1>Training sets</h1>" in body
    for col in ("Name", "Fingerprint", "Entity rows", "Time range", "Created", "By", "Used by"):
        assert f'<th scope="col">{col}</th>' in body
    rows = body.split("<tbody", 1)[1].split("<tr ")[1:]
    assert len(rows) == 2
    run1, train = rows  # newest first: the retrain's set, then the demo's first
    assert '<a href="/ui/training-sets/trip_completion__run1">trip_completion__run1</a>' in run1
    assert '<a href="/ui/models/trip_completion/versions/2">trip_completion v2</a>' in run1
    assert "versions/1" not in run1 and "versions/2" not in train
    assert '<a href="/ui/models/trip_completion/versions/1">trip_completion v1</a>' in train
    for row in rows:
        short = fingerprint[:12]
        assert f'<code title="{short}' in row and f">{short}</code>" in row  # the fingerprint, short
        assert '<td class="num">2,857</td>' in row
        assert "5 columns · 11 features of 4 views" in row
        # the spine's time range: from the pipeline run (run1), from the entity rows' file (train)
        assert f"{first}<br>to {last}" in row
    assert 'data-filter="#ts-list"' in body and '<label for="ts-find">' in body


def test_a_set_shows_its_fingerprint_features_spine_hashes_statistics_and_users(demo_built):
    ts, first, last = _facts(demo_built)
    fingerprint = ts.fingerprint
    with ui_client(demo_built) as client:
        r = client.get("/ui/training-sets/trip_completion__run1")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "<h1>Training set trip_completion__run1</h1>" in body
    assert "training set of pipeline run 1 of model &#39;trip_completion&#39;" in body  # the description
    assert 'href="/ui/lineage?focus=training_set:trip_completion__run1"' in body
    assert f'<dd><code class="ts-hash">{fingerprint}</code></dd>' in body
    assert "<dt>Full feature names</dt><dd>no</dd>" in body and "<dt>Bitemporal</dt><dd>no</dd>" in body
    assert (
        '<a href="/ui/models/trip_completion/versions/2">trip_completion v2</a> <span class="muted small">(challenger)</span>'
        in body
    )
    # entity rows: columns, range and the run that made them
    assert "<code>event_timestamp</code>, <code>distance_km</code>" in body
    assert f"{first} to {last}" in body
    assert '<a href="/ui/runs/1">run 1</a> of trip_completion: 2,286 rows to train, 571 to validate' in body
    # features by view, linked
    assert (
        '<a href="/ui/views/trip_shape">trip_shape</a></td>\n    <td><code>distance_vs_usual</code>, <code>long_trip</code>'
        in body
    )
    # definitions: versions and spec hashes, sources linked
    assert '<a href="/ui/sources/driver_stats_push">driver_stats_push</a>' in body
    spec = ts.definitions["driver_hourly_stats"]["spec_sha256"]
    assert f">{spec[:12]}</code>" in body and "none (computed)" in body
    # result hashes
    assert ts.result["sha256"] in body
    assert re.search(r"<td><code>trip_completed</code></td><td>entity rows</td>", body)
    assert re.search(r"<td><code>conv_rate</code></td><td>feature</td>", body)
    # column statistics, a histogram each (with its title)
    assert '<th scope="col" class="num">Distinct (est.)</th>' in body
    assert "<td><code>acc_rate</code></td>" in body
    assert body.count('<figure class="chart">') == 11
    assert "<title>conv_rate: share of rows per bin</title>" in body
    assert "style=" not in body and "<script" not in body


def test_an_unknown_set_is_a_404_page_naming_it(demo_built):
    with ui_client(demo_built) as client:
        r = client.get("/ui/training-sets/trip_completion_trian")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "trip_completion_trian" in r.text and "trip_completion_train" in r.text  # did you mean


def test_a_set_without_statistics_range_or_models_says_so_and_odd_names_are_escaped(demo_repo):
    add_training_set(
        demo_repo,
        ODD_SET,
        extra={},  # saved before statistics were kept
        entity_path="gone/entity_rows.parquet",  # no file to read the range of
        feature_refs=["route_stats:avg_duration_min", "retired_view:x"],
    )
    with ui_client(demo_repo) as client:
        listed = main_of(client.get("/ui/training-sets").text)
        r = client.get(ODD_PATH)
    assert f'<a href="{ODD_PATH}">odd &lt;b&gt;&amp;</a>' in listed and "<b>" not in listed
    assert r.status_code == 200
    body = main_of(r.text)
    assert "<h1>Training set odd &lt;b&gt;&amp;</h1>" in body and "<b>" not in body
    assert 'href="/ui/lineage?focus=training_set:odd%20%3Cb%3E%26"' in body
    assert "saved before statistics were kept" in body and "<figure" not in body
    assert '<span class="muted">not recorded</span>' in body
    assert "no model version was registered with it" in body
    assert 'retired_view <span class="muted small">(not applied now)</span>' in body
    assert '<a href="/ui/views/route_stats">route_stats</a>' in body


def test_the_pages_follow_the_api_keys(demo_built):
    with ui_client(demo_built, KEYS) as client:
        anonymous = client.get("/ui/training-sets/trip_completion_train", follow_redirects=False)
        reader = client.get("/ui/training-sets/trip_completion_train", headers=READER)
    assert anonymous.status_code == 303 and "/ui/login" in anonymous.headers["location"]
    assert reader.status_code == 200 and "Training set trip_completion_train" in reader.text
