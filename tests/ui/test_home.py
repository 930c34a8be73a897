"""The home page (`/ui/`: counts, freshness, approvals, latest runs) and its failing-checks part
(`/ui/partials/checks`, kept a minute per app, never deleting log days), on the demo's state."""

from __future__ import annotations

import re
from pathlib import Path

from featurestore import FeatureStore
from featurestore.server.ui.home import ChecksCache
from tests.repo_builder import make_repo
from tests.ui.conftest import KEYS, ui_client

READER = {"X-API-Key": "key-rita-read-000000"}
OLD_DAY = "date=2020-01-01"
OLD_FILE = "part-v1-20200101T000000000000-0123abcd.parquet"  # named as the log writer names its files


def main_of(html: str) -> str:
    return html.split('<main id="main">', 1)[1].split("</main>", 1)[0]


def test_home_shows_counts_freshness_approvals_and_runs(open_client):
    r = open_client.get("/ui/")
    assert r.status_code == 200
    body = main_of(r.text)
    assert body.count("<h1>") == 1 and "<h1>rides</h1>" in body
    found = re.findall(r'<span class="n">([\d,]+)</span><span class="l">([^<]+)</span>', body)
    assert {label: n for n, label in found} == {
        "entities": "3",
        "feature views": "4",
        "on-demand views": "1",
        "features": "18",
        "feature services": "1",
        "sources": "8",
        "models": "1",
        "training sets": "2",
        "pipelines": "1",
    }
    # every online view's freshness, linked
    for view in ("driver_hourly_stats", "driver_trip_activity", "customer_profile", "route_stats"):
        assert f'<a href="/ui/views/{view}">{view}</a>' in body
    assert '<span class="status status-ok">ok</span>' in body
    # the retrain waits for an approver; the run that asked is linked
    assert '<a href="/ui/models">1 candidate waiting for approval</a>' in body
    assert 'href="/ui/models/trip_completion/versions/2">trip_completion v2</a>' in body
    assert '<a href="/ui/runs/1">Run 1</a>' in body and "pending approval" in body
    # the checks come afterwards, from their partial
    assert '<div data-src="/ui/partials/checks">' in body


def test_checks_partial_lists_the_drift_breach_and_is_kept_a_minute(open_client):
    first = open_client.get("/ui/partials/checks")
    assert first.status_code == 200
    assert "<html" not in first.text  # a fragment, not a page
    assert '<span class="status status-breach">drift</span>' in first.text
    assert "trip_completion@production (v1)" in first.text and "conv_rate (psi" in first.text
    cache = open_client.app.state.ui_checks
    assert isinstance(cache, ChecksCache)
    taken = cache.get(FeatureStore.__new__(FeatureStore))  # cached: the store is not even used
    assert open_client.get("/ui/partials/checks").text == first.text
    cache.ttl = 0  # expired: the next request checks again
    again = open_client.get("/ui/partials/checks").text
    assert cache.get(open_client.app.state.fs.store).at > taken.at
    assert "trip_completion@production (v1)" in again


def old_log_day(repo: Path) -> Path:
    store = FeatureStore(repo)
    day = Path(store.monitor.log_path) / "trip_completion" / OLD_DAY
    store.close()
    day.mkdir(parents=True)
    (day / OLD_FILE).write_bytes(b"not read: older than any check window")
    return day / OLD_FILE


def test_checks_never_delete_log_days_from_a_get_but_fs_monitor_check_does(demo_repo):
    old = old_log_day(demo_repo)
    with ui_client(demo_repo) as client:
        assert client.get("/ui/partials/checks").status_code == 200
    assert old.exists()  # the UI's check enforced no retention
    store = FeatureStore(demo_repo)
    kept = store.monitor.check(enforce_retention=False)
    assert kept.deleted_log_days == 0 and old.exists()
    assert [b.target for b in kept.breaches] == ["trip_completion@production (v1)"]
    enforced = store.monitor.check()  # the default, as `fs monitor check` runs it
    assert enforced.deleted_log_days == 1 and not old.exists()
    store.close()


def test_home_needs_a_key_when_keys_are_configured(demo_repo):
    with ui_client(demo_repo, keys=KEYS) as client:
        anonymous = client.get("/ui/", follow_redirects=False)
        reader = client.get("/ui/", headers=READER)
        part = client.get("/ui/partials/checks", headers=READER)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/ui/login")
    assert reader.status_code == 200 and "<h1>rides</h1>" in reader.text
    assert part.status_code == 200


def test_an_empty_registry_says_run_fs_apply(tmp_path):
    repo = make_repo(tmp_path / "empty", {"features.py": ""}, project="blank")
    with ui_client(repo) as client:
        r = client.get("/ui/")
    assert r.status_code == 200
    body = main_of(r.text)
    assert "<h1>blank</h1>" in body and "run <code>fs apply</code>" in body
